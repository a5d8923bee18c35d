/*
 * npm run difftest -- [--cases N] [--seed S] [--workers W] [--family NAME]...
 *
 * Runs the differential tests against the host CPU at any size: the
 * paging-off instruction families (generate.ts), the 32-bit code families
 * (generate32.ts, compatibility mode on the host) and the paged families
 * (paged-generate.ts), N cases in all (default 1,000,000) spread evenly over
 * the families, on W worker processes (default: the cores). Prints one line
 * per family and a total; exit 0 when nothing differs, 1 when something does,
 * 2 for a usage error or a host that cannot run the harness.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { families } from './generate.js';
import { FAMILIES_32 } from './generate32.js';
import { run32Family, runFlatFamily } from './flat-run.js';
import { buildHarness, hostCpu } from './native.js';
import { pagedFamilies } from './paged-generate.js';
import { buildPagedHarness } from './paged-native.js';
import { runPagedFamily, type FamilyResult } from './paged-run.js';

interface Job {
  family: string;
  count: number;
}

function allFamilyNames(): string[] {
  const host = hostCpu();
  const flat = families({ amd: host.amd }).filter((f) => (f.requires ?? []).every((r) => host.flags.has(r))).map((f) => f.name);
  return [...flat, ...FAMILIES_32.map((f) => f.name), ...pagedFamilies().map((f) => f.name)];
}

/** Worker: run the jobs given as JSON on the command line, print one JSON result per family. */
function worker(jobs: Job[], seed: number): void {
  const host = hostCpu();
  const flat = new Map(families({ amd: host.amd }).map((f) => [f.name, f]));
  const paged = new Map(pagedFamilies().map((f) => [f.name, f]));
  const code32 = new Map(FAMILIES_32.map((f) => [f.name, f]));
  const harness = buildHarness();
  const compatHarness = buildHarness('compat');
  const pagedHarness = buildPagedHarness();
  try {
    for (const job of jobs) {
      const started = performance.now();
      const pf = paged.get(job.family), cf = code32.get(job.family);
      const result: FamilyResult = pf ? runPagedFamily(pagedHarness, pf, seed, job.count, 3)
        : cf ? run32Family(compatHarness, cf, seed, job.count, 3)
        : runFlatFamily(harness, flat.get(job.family)!, seed, job.count, 3);
      process.stdout.write(`${JSON.stringify({ ...result, seconds: (performance.now() - started) / 1000 })}\n`);
    }
  } finally {
    harness.dispose();
    compatHarness.dispose();
    pagedHarness.dispose();
  }
}

function usage(message: string): never {
  process.stderr.write(`difftest: ${message}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        cases: { type: 'string', default: '1000000' },
        seed: { type: 'string', default: '1' },
        workers: { type: 'string' },
        family: { type: 'string', multiple: true },
        worker: { type: 'string' },
      },
    });
  } catch (e) {
    usage((e as Error).message);
  }
  const v = parsed.values;
  const seed = Number(v.seed);
  if (!Number.isInteger(seed) || seed < 0) usage('--seed must be a non-negative integer');
  if (v.worker !== undefined) {
    worker(JSON.parse(v.worker) as Job[], seed);
    return;
  }
  if (process.arch !== 'x64' || process.platform !== 'linux') usage('the host CPU is the oracle: needs x86-64 Linux');
  const total = Number(v.cases);
  if (!Number.isInteger(total) || total < 1) usage('--cases must be a positive integer');
  const workers = v.workers !== undefined ? Number(v.workers) : availableParallelism();
  if (!Number.isInteger(workers) || workers < 1) usage('--workers must be a positive integer');
  const names = allFamilyNames();
  const chosen = v.family && v.family.length > 0 ? v.family : names;
  for (const n of chosen) if (!names.includes(n)) usage(`unknown family '${n}' (known: ${names.join(', ')})`);
  const per = Math.ceil(total / chosen.length);
  // Round-robin over workers; the paged families (slower per case) are spread first.
  const ordered = [...chosen].sort((a, b) => Number(b.startsWith('paged-')) - Number(a.startsWith('paged-')));
  const queues: Job[][] = Array.from({ length: Math.min(workers, ordered.length) }, () => []);
  ordered.forEach((family, k) => queues[k % queues.length].push({ family, count: per }));

  const started = performance.now();
  console.log(`difftest: ${per * chosen.length} cases over ${chosen.length} families, seed ${seed}, ${queues.length} workers (host ${hostCpu().vendor})`);
  const script = fileURLToPath(import.meta.url);
  const results: Array<FamilyResult & { seconds: number }> = [];
  await Promise.all(queues.map((jobs) => new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, '--seed', String(seed), '--worker', JSON.stringify(jobs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const r = JSON.parse(line) as FamilyResult & { seconds: number };
        results.push(r);
        console.log(`  ${r.family.padEnd(22)} ${String(r.cases).padStart(8)} cases  ${String(r.mismatches).padStart(5)} differ  ${String(r.hostFaults).padStart(7)} host faults  ${r.seconds.toFixed(1).padStart(7)} s`);
        for (const rep of r.reports) console.log(rep.replace(/^/gm, '      '));
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`))));
  })));
  const cases = results.reduce((n, r) => n + r.cases, 0);
  const mismatches = results.reduce((n, r) => n + r.mismatches, 0);
  const faults = results.reduce((n, r) => n + r.hostFaults, 0);
  const secs = (performance.now() - started) / 1000;
  console.log(`difftest: ${cases} cases, ${mismatches} mismatches, ${faults} faulting on the host, ${results.length} families, ${secs.toFixed(0)} s`);
  process.exitCode = mismatches === 0 ? 0 : 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`difftest: ${(e as Error).message}\n`);
  process.exit(2);
});
