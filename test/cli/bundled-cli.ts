import { spawnSync } from 'node:child_process';

/** The shipped CLI (dist/bundle/main.js) run with its own bzemu cache directory. */
export function bzemuWithCache(cache: string, ...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('node', ['dist/bundle/main.js', ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, BZEMU_CACHE: cache } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A boot's --json output without its wall time (what two runs of one boot must agree on). */
export function bootResultWithoutTime(stdout: string): unknown {
  const r = JSON.parse(stdout) as Record<string, unknown>;
  delete r['elapsedMs'];
  return r;
}
