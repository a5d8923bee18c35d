import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { FuzzRunner, type RunRecord, type RunRequest, type TargetConfig } from './runner.js';
import type { BatchExecutor } from './minimize.js';

/** Runs batches of boots; `close` frees its threads. */
export interface Executor {
  readonly exec: BatchExecutor;
  /** The machine snapshot's kernel as loaded by this executor's runners (for naming). */
  close(): Promise<void>;
}

/** Every boot in this thread, one after another (tests, and library use without threads). */
export function inProcessExecutor(runner: FuzzRunner): Executor {
  return {
    exec: async (requests) => requests.map((r) => runner.run(r)),
    close: async () => {},
  };
}

export function defaultWorkerCount(): number {
  return Math.max(1, availableParallelism());
}

interface Pending {
  resolve: (r: RunRecord) => void;
  reject: (e: Error) => void;
}

/**
 * W worker threads, each holding its own runner (kernel loaded and snapshot
 * taken once per thread). Requests go to whichever worker is free; answers
 * come back in request order, so results never depend on W.
 */
export function workerPoolExecutor(target: TargetConfig, workers: number): Executor {
  // The worker's entry sits next to this code: dist/src/analysis/fuzz/, or dist/bundle/ next to the bundled CLI.
  const url = new URL('./worker.js', import.meta.url);
  const threads: Worker[] = [];
  const idle: Worker[] = [];
  const queue: Array<{ id: number; request: RunRequest }> = [];
  const pending = new Map<number, Pending>();
  const busy = new Map<Worker, number>();
  let nextId = 0;
  let failure: Error | null = null;

  const pump = (): void => {
    while (idle.length > 0 && queue.length > 0) {
      const w = idle.pop()!;
      const job = queue.shift()!;
      busy.set(w, job.id);
      w.postMessage(job);
    }
  };
  const failAll = (e: Error): void => {
    failure = e;
    for (const p of pending.values()) p.reject(e);
    pending.clear();
    queue.length = 0;
  };

  for (let i = 0; i < workers; i++) {
    const w = new Worker(url, { workerData: target });
    w.on('message', (m: { id: number; record?: RunRecord; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      busy.delete(w);
      idle.push(w);
      if (p) {
        if (m.error !== undefined) p.reject(new Error(m.error));
        else p.resolve(m.record!);
      }
      pump();
    });
    w.on('error', (e) => failAll(e instanceof Error ? e : new Error(String(e))));
    w.on('exit', (code) => {
      if (code !== 0 && failure === null) failAll(new Error(`fuzz worker exited with code ${code}`));
    });
    threads.push(w);
    idle.push(w);
  }

  const runOne = (request: RunRequest): Promise<RunRecord> =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      const id = nextId++;
      pending.set(id, { resolve, reject });
      queue.push({ id, request });
      pump();
    });

  return {
    exec: (requests) => Promise.all(requests.map(runOne)),
    close: async () => {
      await Promise.all(threads.map((t) => t.terminate()));
    },
  };
}
