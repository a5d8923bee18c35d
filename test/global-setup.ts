import { execFileSync } from 'node:child_process';

/** Tests that run the CLI use the compiled JavaScript (the bundle users run): build it once, fresh. */
export default function setup(): void {
  execFileSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
}
