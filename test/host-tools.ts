import { spawnSync } from 'node:child_process';

/**
 * Whether a host program runs at all (`cmd args`, fed `input`, exits 0). Tests
 * that compare with, or build through, an optional host tool skip (with the
 * tool named in the reason) when it is missing, rather than returning early
 * and passing without checking anything.
 */
export function hostToolRuns(cmd: string, args: string[] = ['--version'], input?: string): boolean {
  const r = spawnSync(cmd, args, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'ignore'] });
  return !r.error && r.status === 0;
}
