import { parentPort, workerData } from 'node:worker_threads';
import { FuzzRunner, type RunRequest, type TargetConfig } from './runner.js';

/** A fuzz worker thread: one runner (kernel and snapshot), answering run requests in turn. */
const runner = new FuzzRunner(workerData as TargetConfig);
parentPort!.on('message', (job: { id: number; request: RunRequest }) => {
  try {
    parentPort!.postMessage({ id: job.id, record: runner.run(job.request) });
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error)?.message ?? String(e) });
  }
});
