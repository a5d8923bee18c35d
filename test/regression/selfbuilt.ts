import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const VARIANTS = ['good', 'regress', 'naive-fix', 'fix'] as const;
export type Variant = (typeof VARIANTS)[number];

let cached: string | null = null;

/**
 * Build (or reuse from the cache) the four self-built kernels with the
 * project's script and return the directory holding <variant>/{bzImage,vmlinux}.
 */
export function selfBuiltKernels(): string {
  if (cached) return cached;
  const out = execFileSync('bash', ['scripts/build-test-kernels.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60 * 60 * 1000 });
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('KERNELS_DIR='));
  if (!line) throw new Error('build-test-kernels.sh did not print KERNELS_DIR=');
  const dir = line.slice('KERNELS_DIR='.length);
  for (const v of VARIANTS) if (!existsSync(join(dir, v, 'vmlinux')) || !existsSync(join(dir, v, 'bzImage'))) throw new Error(`missing ${v} in ${dir}`);
  cached = dir;
  return dir;
}

/** Symbol address from a variant's System.map (nm -n of the compressed vmlinux). */
export function symbolOffset(dir: string, variant: Variant, name: string): number {
  const map = readFileSync(join(dir, variant, 'System.map'), 'utf8');
  for (const line of map.split('\n')) {
    const [addr, , sym] = line.trim().split(/\s+/);
    if (sym === name) return parseInt(addr, 16);
  }
  throw new Error(`${name} not in ${variant}'s System.map`);
}
