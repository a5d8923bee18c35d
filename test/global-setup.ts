import { execFileSync } from 'node:child_process';

/** Tests that run the CLI use the compiled JavaScript: build it once, fresh. */
export default function setup(): void {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
