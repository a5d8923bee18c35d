/**
 * npm run fuzz-inputs [-- --cases N --seed S --workers W --time-limit SECONDS]
 * npm run fuzz-inputs -- --seed S --case I      (replay one case, with its stack)
 * npm run fuzz-inputs -- --sweep [--case I]      (every truncation boundary, every header
 *                                                 field x edge value, instead of random cases)
 *
 * Mutates real kernels (test/robustness/mutate.ts) and boots each mutant in a
 * worker thread with a small budget. Every case must end in a verdict or a
 * one-line bad-input error; anything else is a bug, printed with its replay
 * command. A worker stuck on one case past the time bound is terminated and the
 * case counted as a hang. Exit 0 when there are no bugs, 1 otherwise.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import {
  CASE_BOOT,
  cliDisagreement,
  defaultInputs,
  describeBug,
  loadInputs,
  makeScratchDir,
  outcomeKey,
  planCase,
  planSweep,
  runCase,
  sweepEntries,
  tally,
  type CasePlan,
  type CaseResult,
  type KernelInput,
  type LoadedInput,
} from '../test/robustness/cases.js';

interface Settings {
  cases: number;
  seed: number;
  /** Deterministic sweeps instead of random mutations (cases = every sweep entry). */
  sweep: boolean;
  workers: number;
  timeLimitMs: number;
}

interface WorkerSetup {
  inputs: KernelInput[];
  seed: number;
  sweep: boolean;
  timeLimitMs: number;
  dir: string;
}

type FromWorker = { ready: true } | { result: CaseResult };

function parseSettings(argv: string[]): Settings & { replay: number | null } {
  const { values } = parseArgs({
    args: argv,
    options: {
      cases: { type: 'string', default: '10000' },
      seed: { type: 'string', default: '1' },
      workers: { type: 'string', default: '2' },
      'time-limit': { type: 'string', default: '10' },
      case: { type: 'string' },
      sweep: { type: 'boolean', default: false },
    },
  });
  const int = (text: string, what: string, min: number): number => {
    const v = Number(text);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${what} must be an integer >= ${min} (got '${text}')`);
    return v;
  };
  const seconds = (text: string): number => {
    const v = Number(text);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--time-limit must be a positive number of seconds (got '${text}')`);
    return v * 1000;
  };
  return {
    cases: int(values.cases!, 'cases', 1),
    seed: int(values.seed!, 'seed', 0),
    sweep: values.sweep!,
    workers: int(values.workers!, 'workers', 1),
    timeLimitMs: seconds(values['time-limit']!),
    replay: values.case === undefined ? null : int(values.case, 'case', 0),
  };
}

/** Case index -> plan, for random cases or for the sweep entries. */
function planner(inputs: LoadedInput[], seed: number, sweep: boolean): (index: number) => CasePlan {
  if (!sweep) return (index) => planCase(inputs, seed, index);
  const entries = sweepEntries(inputs);
  return (index) => planSweep(entries[index]!, index);
}

/** Worker side: load the inputs once, then run the cases the main thread sends. */
function workerMain(setup: WorkerSetup): void {
  const port = parentPort!;
  const plan = planner(loadInputs(setup.inputs), setup.seed, setup.sweep);
  mkdirSync(setup.dir, { recursive: true });
  port.on('message', (index: number) => {
    const result = runCase(plan(index), setup.dir, setup.timeLimitMs);
    port.postMessage({ result } satisfies FromWorker);
  });
  port.postMessage({ ready: true } satisfies FromWorker);
}

function replayOne(settings: Settings, index: number): number {
  const { seed, sweep, timeLimitMs } = settings;
  const dir = makeScratchDir();
  try {
    const r = runCase(planner(loadInputs(defaultInputs()), seed, sweep)(index), dir, timeLimitMs);
    process.stdout.write(`case ${index}${sweep ? ' of the sweep' : ` (seed ${seed})`}: ${r.input} ${r.role}, ${r.family}: ${r.description}${r.coco !== 'none' ? `, --coco ${r.coco}` : ''}\n`);
    const o = r.outcome;
    if (o.kind === 'verdict') process.stdout.write(`verdict    ${o.verdict}: ${o.reason}\n`);
    else if (o.kind === 'bad-input') process.stdout.write(`bad input  ${o.message}\n`);
    else process.stdout.write(`BUG        ${o.stage}: ${o.error}\n${o.stack}\n`);
    process.stdout.write(`time       ${r.ms.toFixed(0)} ms\n`);
    return o.kind === 'bug' ? 1 : 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Slot {
  worker: Worker;
  /** Case in progress and when it was sent, or null when idle. */
  current: { index: number; since: number } | null;
}

/** Run cases 0..n-1 over a pool of workers; a worker stuck past the bound is replaced. */
function runPool(settings: Settings, inputs: KernelInput[], root: string, onResult: (r: CaseResult) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let done = 0;
    let spawned = 0;
    const slots = new Set<Slot>();
    const hangBound = settings.timeLimitMs;

    const finishIfDone = (): void => {
      if (done < settings.cases) return;
      clearInterval(watchdog);
      for (const s of slots) void s.worker.terminate();
      resolve();
    };
    const feed = (slot: Slot): void => {
      if (next >= settings.cases) {
        slot.current = null;
        return;
      }
      slot.current = { index: next, since: performance.now() };
      slot.worker.postMessage(next++);
    };
    // Describing a lost case needs the inputs in this thread too; loaded only then.
    let loaded: LoadedInput[] | null = null;
    const describeLost = (index: number, error: string, ms: number): CaseResult => {
      const plan = planner((loaded ??= loadInputs(inputs)), settings.seed, settings.sweep)(index);
      const { role, family, description, coco, entry } = plan;
      return { index, input: plan.input.input.name, role, family, description, coco, entry, outcome: { kind: 'bug', stage: 'worker', error, stack: '' }, ms };
    };
    /** A worker that hung or died takes its case with it: count that case as a bug and carry on with a new worker. */
    const replace = (slot: Slot, error: string): void => {
      slots.delete(slot);
      void slot.worker.terminate();
      if (slot.current !== null) {
        done++;
        onResult(describeLost(slot.current.index, error, performance.now() - slot.current.since));
      }
      spawn();
      finishIfDone();
    };
    const spawn = (): void => {
      if (next >= settings.cases) return;
      const setup: WorkerSetup = { inputs, seed: settings.seed, sweep: settings.sweep, timeLimitMs: settings.timeLimitMs, dir: join(root, `w${spawned++}`) };
      const slot: Slot = { worker: new Worker(new URL(import.meta.url), { workerData: setup }), current: null };
      slots.add(slot);
      slot.worker.on('message', (m: FromWorker) => {
        if (!slots.has(slot)) return; // a late message from a worker already replaced
        if ('result' in m) {
          slot.current = null;
          done++;
          onResult(m.result);
        }
        feed(slot);
        finishIfDone();
      });
      slot.worker.on('error', (e) => {
        if (!slots.has(slot)) return;
        if (slot.current === null) {
          clearInterval(watchdog);
          reject(new Error(`fuzz worker failed outside any case: ${e instanceof Error ? e.stack ?? e.message : String(e)}`));
          return;
        }
        replace(slot, `worker died: ${e instanceof Error ? e.message : String(e)}`);
      });
    };
    const watchdog = setInterval(() => {
      const now = performance.now();
      for (const slot of [...slots]) {
        if (slot.current !== null && now - slot.current.since > hangBound) {
          replace(slot, `hang: no result after ${hangBound / 1000} s (worker terminated)`);
        }
      }
    }, Math.min(250, hangBound / 4));
    for (let i = 0; i < Math.min(settings.workers, settings.cases); i++) spawn();
  });
}

/** Replay the first few bad-input and verdict cases through the CLI (one process each). */
function cliSpotCheck(settings: Settings, inputs: KernelInput[], results: readonly CaseResult[]): { checked: number; problems: string[] } {
  const sorted = [...results].sort((a, b) => a.index - b.index);
  const picked = [
    ...sorted.filter((r) => r.outcome.kind === 'bad-input').slice(0, 5),
    ...sorted.filter((r) => r.outcome.kind === 'verdict').slice(0, 3),
  ];
  const plan = planner(loadInputs(inputs), settings.seed, settings.sweep);
  const dir = makeScratchDir();
  try {
    const problems = picked.flatMap((r) => {
      const problem = cliDisagreement(plan(r.index), r, dir);
      return problem === null ? [] : [`case ${r.index}: ${problem}`];
    });
    return { checked: picked.length, problems };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function formatDuration(ms: number): string {
  const s = ms / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${(s % 60).toFixed(0)} s`;
}

/** "name  count (bucket n, ...)" rows for a grouping of the results. */
function breakdown(results: readonly CaseResult[], keyOf: (r: CaseResult) => string): string[] {
  const groups = new Map<string, CaseResult[]>();
  for (const r of results) {
    const k = keyOf(r);
    const list = groups.get(k) ?? [];
    list.push(r);
    groups.set(k, list);
  }
  const width = Math.max(...[...groups.keys()].map((k) => k.length));
  return [...groups].sort(([a], [b]) => a.localeCompare(b)).map(([k, list]) => {
    const parts = [...tally(list)].map(([bucket, n]) => `${bucket} ${n}`).join(', ');
    return `  ${k.padEnd(width)}  ${String(list.length).padStart(5)}  (${parts})`;
  });
}

async function main(argv: string[]): Promise<number> {
  const settings = parseSettings(argv);
  if (settings.replay !== null) return replayOne(settings, settings.replay);
  const inputs = defaultInputs();
  if (settings.sweep) settings.cases = sweepEntries(loadInputs(inputs)).length;
  const root = makeScratchDir();
  const started = performance.now();
  const results: CaseResult[] = [];
  let peakSampled = 0;
  process.stdout.write(
    `fuzz-inputs  ${settings.cases} ${settings.sweep ? 'sweep cases' : `cases, seed ${settings.seed}`}, ${settings.workers} workers, ` +
      `budget ${CASE_BOOT.budget} instructions to ${CASE_BOOT.until}, ${CASE_BOOT.memSize >> 20} MiB RAM, time bound ${settings.timeLimitMs / 1000} s\n`,
  );
  for (const i of inputs) process.stdout.write(`input        ${i.name}: ${i.kernel}${i.companion ? ` (setup header from ${i.companion})` : ''}${i.symbols ? ` (symbols from ${i.symbols})` : ''}\n`);
  try {
    await runPool(settings, inputs, root, (r) => {
      results.push(r);
      if (r.outcome.kind === 'bug') process.stdout.write(`BUG ${describeBug(r, settings.sweep ? '--sweep' : `--seed ${settings.seed}`)}\n`);
      if (results.length % 1000 === 0) {
        peakSampled = Math.max(peakSampled, process.memoryUsage().rss);
        process.stdout.write(`progress     ${results.length}/${settings.cases} cases, ${formatDuration(performance.now() - started)}, RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB\n`);
      }
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  const total = performance.now() - started;
  const cli = cliSpotCheck(settings, inputs, results);
  const slowest = results.reduce((a, b) => (b.ms > a.ms ? b : a));
  const bugs = results.filter((r) => r.outcome.kind === 'bug');
  const peakRss = Math.max(peakSampled, process.resourceUsage().maxRSS * 1024);
  const lines = [
    `cases        ${results.length}`,
    `outcomes     ${[...tally(results)].map(([k, n]) => `${k} ${n}`).join(', ')}`,
    'by input',
    ...breakdown(results, (r) => `${r.input} ${r.role}`),
    'by mutation',
    ...breakdown(results, (r) => r.family),
    `max case     ${slowest.ms.toFixed(0)} ms (case ${slowest.index}: ${slowest.input} ${slowest.role}, ${slowest.family}: ${slowest.description}; ${outcomeKey(slowest.outcome)})`,
    `mean case    ${(results.reduce((s, r) => s + r.ms, 0) / results.length).toFixed(1)} ms`,
    `peak RSS     ${(peakRss / 2 ** 20).toFixed(0)} MiB (whole process, all workers)`,
    `total time   ${formatDuration(total)}`,
    `CLI check    ${cli.checked} cases replayed through the CLI: ${cli.problems.length === 0 ? 'all agree' : cli.problems.join('; ')}`,
    `bugs         ${bugs.length === 0 ? 'none' : `${bugs.length} (listed above as BUG)`}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return bugs.length === 0 && cli.problems.length === 0 ? 0 : 1;
}

if (isMainThread) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`fuzz-inputs: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exitCode = 4;
    },
  );
} else {
  workerMain(workerData as WorkerSetup);
}
