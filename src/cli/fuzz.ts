import { readFileSync, writeFileSync } from 'node:fs';
import { loadKernel } from '../kernel/kernel-image.js';
import { BadInputError } from '../kernel/errors.js';
import { runCampaign, type CampaignProgress } from '../analysis/fuzz/campaign.js';
import { defaultWorkerCount, workerPoolExecutor } from '../analysis/fuzz/executor.js';
import { parseShard, ShardError, type Shard } from '../analysis/fuzz/plan.js';
import { mergeReports, MergeError, type CampaignReport } from '../analysis/fuzz/report.js';
import type { TargetConfig } from '../analysis/fuzz/runner.js';
import { parseBootArgs, parseNumber, UsageError } from './options.js';
import { checkReportPath } from '../analysis/report/run-report.js';
import { writeCampaignReport } from '../analysis/report/campaign-report.js';

/** Options only a campaign has; everything else is a boot option every run shares. */
const OWN_VALUE_OPTIONS = new Set(['--runs', '--workers', '--shard', '--out', '--report']);

interface FuzzCliOptions {
  runs: number;
  workers: number;
  shard: Shard | null;
  out: string | null;
  /** HTML report of the campaign (and one run report per failing group beside it). */
  report: string | null;
  json: boolean;
  seed: number;
  target: TargetConfig;
  bootOptions: string[];
}

function splitArgs(argv: string[]): { own: Map<string, string>; rest: string[] } {
  const own = new Map<string, string>();
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (OWN_VALUE_OPTIONS.has(name)) {
      const value = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value`);
      own.set(name, value);
    } else rest.push(a);
  }
  return { own, rest };
}

/** The shared boot options as given, minus the kernel, the campaign's own options and output switches. */
function sharedBootOptions(rest: string[], kernel: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === kernel || a === '--json') continue;
    if (a === '--seed') { i++; continue; }
    if (a.startsWith('--seed=')) continue;
    out.push(a);
  }
  return out;
}

export function parseFuzzArgs(argv: string[], resolveKernel: (name: string) => string): FuzzCliOptions {
  const { own, rest } = splitArgs(argv);
  if (rest.some((a) => a === '--poison' || a.startsWith('--poison='))) throw new UsageError('fuzz chooses the poison of each run itself: drop --poison');
  const boot = parseBootArgs(rest);
  const runs = parseNumber(own.get('--runs') ?? '200', '--runs');
  if (!Number.isInteger(runs) || runs < 1 || runs > 1e9) throw new UsageError('--runs must be a whole number of at least 1');
  const workers = own.has('--workers') ? parseNumber(own.get('--workers')!, '--workers') : defaultWorkerCount();
  if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new UsageError('--workers must be between 1 and 256');
  let shard: Shard | null = null;
  if (own.has('--shard')) {
    try {
      shard = parseShard(own.get('--shard')!, process.env);
    } catch (e) {
      if (e instanceof ShardError) throw new UsageError(e.message);
      throw e;
    }
  }
  const { kernel, json, trace: _trace, poison: _poison, seed, report: _report, ...target } = boot;
  return {
    runs,
    workers,
    shard,
    out: own.get('--out') ?? null,
    report: own.get('--report') ?? null,
    json,
    seed,
    target: { ...target, kernelPath: resolveKernel(kernel) },
    bootOptions: sharedBootOptions(rest, kernel),
  };
}

function progressBar(): ((p: CampaignProgress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  const started = Date.now();
  return (p) => {
    const secs = (Date.now() - started) / 1000;
    const rate = p.done / Math.max(secs, 1e-3);
    const width = 24;
    const filled = Math.round((p.done / Math.max(1, p.total)) * width);
    const left = p.phase === 'minimizing' ? 'minimizing' : `${Math.ceil((p.total - p.done) / Math.max(rate, 1e-9))} s left`;
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total} runs, ${p.failures} failing, ${p.outcomes} outcomes, ${rate.toFixed(1)} runs/s, ${left}   `);
  };
}

export async function runFuzz(argv: string[], resolveKernel: (name: string) => string): Promise<number> {
  if (argv[0] === 'merge') return runMerge(argv.slice(1));
  const o = parseFuzzArgs(argv, resolveKernel);
  if (o.report !== null) checkReportPath(o.report);
  // Loaded here once to fail early on bad input and to name culprits; each worker loads its own copy once.
  const kernel = loadKernel(o.target.kernelPath, { bzImage: o.target.bzImage, symbols: o.target.symbols });
  const started = Date.now();
  const executor = workerPoolExecutor(o.target, o.workers);
  const progress = o.json ? undefined : progressBar();
  let report: CampaignReport;
  try {
    report = await runCampaign(
      { kernel, loadAddress: o.target.loadAddress, runs: o.runs, seed: o.seed, shard: o.shard, bootOptions: o.bootOptions, onProgress: progress },
      executor.exec,
    );
  } finally {
    await executor.close();
    if (progress) process.stderr.write('\r\x1b[K');
  }
  const elapsedMs = Date.now() - started;
  const timing = { elapsedMs, runsPerSecond: Math.round((report.summary.runs / (elapsedMs / 1000)) * 10) / 10, workers: o.workers };
  if (o.out) writeFileSync(o.out, JSON.stringify({ ...report, timing }, null, 2) + '\n');
  if (o.json) process.stdout.write(JSON.stringify({ ...report, timing }, null, 2) + '\n');
  else process.stdout.write(renderCampaign(report, timing) + '\n');
  if (o.report !== null) {
    const files = writeCampaignReport(o.report, report, o.target);
    if (!o.json) for (const f of files) process.stdout.write(`report       ${f.path} (${(f.bytes / 2 ** 20).toFixed(1)} MB)\n`);
  }
  return report.summary.failingGroups > 0 ? 1 : 0;
}

function runMerge(argv: string[]): number {
  const json = argv.includes('--json');
  const files = argv.filter((a) => a !== '--json');
  if (files.length === 0) throw new UsageError('fuzz merge takes the shard reports: bzemu fuzz merge FILE...');
  const parts = files.map((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      throw new BadInputError(`cannot read ${f}`);
    }
    try {
      const { timing: _timing, ...report } = JSON.parse(text) as CampaignReport & { timing?: unknown };
      if (!Array.isArray(report.groups) || typeof report.runs !== 'number') throw new Error('no groups');
      return report;
    } catch {
      throw new BadInputError(`${f} is not a bzemu fuzz report`);
    }
  });
  let merged: CampaignReport;
  try {
    merged = mergeReports(parts);
  } catch (e) {
    if (e instanceof MergeError) throw new BadInputError(e.message);
    throw e;
  }
  process.stdout.write(json ? JSON.stringify(merged, null, 2) + '\n' : renderCampaign(merged, null) + '\n');
  return merged.summary.failingGroups > 0 ? 1 : 0;
}

export function renderCampaign(r: CampaignReport, timing: { elapsedMs: number; runsPerSecond: number; workers: number } | null): string {
  const lines: string[] = [];
  lines.push(`kernel       ${r.kernel.path}${r.kernel.version ? ` (${r.kernel.version.split(' ')[0]})` : ''}`);
  lines.push(`campaign     ${r.runs} runs, seed ${r.seed}${r.shard ? `, shard ${r.shard.k}/${r.shard.n}` : ''}${r.bootOptions.length ? `, boot options ${r.bootOptions.join(' ')}` : ''}`);
  const s = r.summary;
  lines.push(`result       ${s.runs} runs: ${s.reached} reached, ${s.failed} failed, ${s.failingGroups} failing group${s.failingGroups === 1 ? '' : 's'}; baseline ${r.baseline ?? 'none (no fixed pattern reaches)'}`);
  for (const g of r.groups) {
    lines.push('');
    lines.push(`${g.cause === 'target-reached' ? 'reached ' : 'FAILURE '} ${g.runs} run${g.runs === 1 ? '' : 's'}: ${g.outcome}`);
    if (g.cause !== 'target-reached') lines.push(`  cause    ${g.explanation}`);
    for (const c of g.culprits) {
      lines.push(`  culprit  ${c.name} (${c.size} byte${c.size > 1 ? 's' : ''} at ${[c.section !== c.name ? c.section : null, c.address].filter((x) => x).join(', ')}), read first by ${c.reader ?? c.readerRip ?? '?'}${c.readerRip && c.reader ? ` (${c.readerRip})` : ''}; failing run had ${c.failingRunValue}`);
      if (c.failingValues) lines.push(`           fails with ${c.failingValues}${c.otherValues.length ? `; ${c.otherValues.join('; ')}` : ''}`);
    }
    if (g.minimizationBoots > 0) lines.push(`  minimized in ${g.minimizationBoots} boots`);
    lines.push(`  e.g.     ${g.examples.map((e) => `run ${e.run}: ${e.reproduce}`).join(' | ')}`);
  }
  if (timing) lines.push('', `time         ${(timing.elapsedMs / 1000).toFixed(1)} s on ${timing.workers} worker${timing.workers === 1 ? '' : 's'}, ${timing.runsPerSecond} runs/s`);
  return lines.join('\n');
}
