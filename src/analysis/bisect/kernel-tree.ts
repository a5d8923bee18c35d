import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * A mistake in the bisect set-up that would make every step fail the same way
 * (not in a kernel tree, no .config, no compiler): git bisect run must stop.
 */
export class SetupError extends Error {}

/** The kernel source tree holding `from`: the nearest directory upwards with a top-level kernel Makefile and arch/x86/boot/compressed. */
export function findKernelTree(from: string): string {
  let dir = resolve(from);
  for (;;) {
    if (existsSync(join(dir, 'Kconfig')) && existsSync(join(dir, 'Makefile')) && existsSync(join(dir, 'arch', 'x86', 'boot', 'compressed'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new SetupError(`not inside a Linux kernel source tree (no Makefile, Kconfig and arch/x86/boot/compressed above ${resolve(from)})`);
    dir = up;
  }
}

/** Short hash and subject of HEAD ("(not a git tree)" outside git). */
export function describeHead(tree: string): { hash: string; subject: string } {
  const r = spawnSync('git', ['-C', tree, 'log', '-1', '--format=%h%x00%s'], { encoding: 'utf8' });
  if (r.status !== 0) return { hash: '-', subject: '(not a git tree)' };
  const [hash, subject] = r.stdout.trim().split('\0');
  return { hash, subject: subject ?? '' };
}

/** Where a step's build log goes: inside .git when there is one, so it never shows as an untracked file. */
export function buildLogPath(tree: string): string {
  const r = spawnSync('git', ['-C', tree, 'rev-parse', '--absolute-git-dir'], { encoding: 'utf8' });
  return r.status === 0 ? join(r.stdout.trim(), 'bzemu-bisect-build.log') : join(tree, '.bzemu-bisect-build.log');
}

/** Checks made before building: they would fail every step alike. */
export function checkBuildSetup(tree: string, env: NodeJS.ProcessEnv): void {
  if (!existsSync(join(tree, '.config'))) throw new SetupError(`no .config in ${tree}: configure the tree once (for example make defconfig) before bisecting`);
  const cc = (env.CC ?? 'gcc').split(/\s+/)[0];
  if (spawnSync(cc, ['--version'], { stdio: 'ignore' }).status !== 0) throw new SetupError(`no C compiler: '${cc}' does not run (install gcc or set CC)`);
  if (spawnSync('make', ['--version'], { stdio: 'ignore' }).status !== 0) throw new SetupError('make is not installed');
}

export interface BuildResult {
  ok: boolean;
  seconds: number;
  /** The compiler's (or make's) first error line when the build failed. */
  firstError: string | null;
  log: string;
}

/**
 * Build the tree as it stands: make olddefconfig, then make -jN bzImage,
 * incrementally (nothing is cleaned between steps).
 */
export function buildTree(tree: string, env: NodeJS.ProcessEnv): BuildResult {
  const log = buildLogPath(tree);
  const started = Date.now();
  let output = '';
  let ok = true;
  for (const args of [['olddefconfig'], [`-j${availableParallelism()}`, 'bzImage']]) {
    const r = spawnSync('make', ['-C', tree, ...args], { encoding: 'utf8', env, maxBuffer: 512 << 20 });
    output += `$ make ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}`;
    if (r.status !== 0) {
      ok = false;
      break;
    }
  }
  writeFileSync(log, output);
  return { ok, seconds: (Date.now() - started) / 1000, firstError: ok ? null : firstErrorLine(output), log };
}

/** The first line that says what went wrong: a compiler "error:", else make's own "***" line. */
export function firstErrorLine(output: string): string | null {
  const lines = output.split('\n');
  return lines.find((l) => /\berror:/.test(l))?.trim() ?? lines.find((l) => /\*\*\*/.test(l))?.trim() ?? null;
}

/** True when the tree's .config builds a 32-bit kernel (bzemu runs the 64-bit decompressor only). */
export function is32BitConfig(tree: string): boolean {
  const config = readFileSync(join(tree, '.config'), 'utf8');
  return !/^CONFIG_X86_64=y$/m.test(config);
}
