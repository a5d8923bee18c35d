import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { VerdictKind } from '../../src/kernel/verdict.js';

/** What run-guest.ts is asked to boot. */
export interface GuestRequest {
  kernelPath: string;
  memSize: number;
  budget: number;
}

/** Memory figures in bytes (process.memoryUsage fields, after a full GC). */
export interface MemoryGrowth {
  rss: number;
  arrayBuffers: number;
  heapUsed: number;
}

/** What run-guest.ts prints: the verdict, and how much the run grew the host process. */
export interface GuestOutcome {
  verdict: VerdictKind;
  reason: string;
  instructions: number;
  growth: MemoryGrowth;
}

/** A child that ended without printing an outcome: the host failed (exception, hang, out of memory). */
export interface HostFailure {
  hostFailure: string;
}

export interface ChildLimits {
  /** Wall-clock time after which the child is killed and the run counts as a hang. */
  timeoutMs: number;
  /** V8 old-space cap for the child (MiB): a runaway allocation ends early instead of exhausting the machine. */
  heapMiB: number;
}

const RUNNER = fileURLToPath(new URL('./run-guest.ts', import.meta.url));

/** Boot `request` in a fresh Node process (see run-guest.ts) and say how it ended. */
export function bootInChild(request: GuestRequest, limits: ChildLimits = { timeoutMs: 30_000, heapMiB: 1024 }): GuestOutcome | HostFailure {
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', `--max-old-space-size=${limits.heapMiB}`, '--import', 'tsx', RUNNER, JSON.stringify(request)],
    { encoding: 'utf8', timeout: limits.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
  );
  const line = r.stdout?.trim().split('\n').pop() ?? '';
  if (r.status === 0 && line.startsWith('{')) return JSON.parse(line) as GuestOutcome;
  const stderr = (r.stderr ?? '').trim();
  if (r.error !== undefined && /ETIMEDOUT/.test(String(r.error))) {
    return { hostFailure: `no verdict after ${Math.round((Date.now() - started) / 1000)} s: the emulator hung (killed)` };
  }
  const oom = /heap out of memory|allocation failed/i.test(stderr) ? ` (out of memory under --max-old-space-size=${limits.heapMiB})` : '';
  const firstError = stderr.split('\n').find((l) => /Error|FATAL/.test(l)) ?? stderr.split('\n')[0] ?? '';
  return { hostFailure: `child exited with ${r.status ?? r.signal}${oom}: ${firstError}` };
}

/** Narrow an outcome for assertions: throws the host failure as the test's error message. */
export function verdictOf(o: GuestOutcome | HostFailure): GuestOutcome {
  if ('hostFailure' in o) throw new Error(`host failure instead of a verdict: ${o.hostFailure}`);
  return o;
}
