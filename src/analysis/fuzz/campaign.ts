import { AddressMap } from '../../machine/address-map.js';
import type { KernelImage } from '../../kernel/kernel-image.js';
import { describePoison, type OverlayPoison } from '../../memory/poison.js';
import { describeValues, minimize, type BatchExecutor, type Minimized } from './minimize.js';
import { FIXED_PATTERNS, poisonArgs, runSpec, shardRuns, type Shard } from './plan.js';
import type { RunRecord } from './runner.js';
import { EXAMPLES_PER_GROUP, sortGroups, summarize, type CampaignReport, type Culprit, type GroupReport } from './report.js';

export interface CampaignOptions {
  kernel: KernelImage;
  loadAddress: number;
  runs: number;
  seed: number;
  shard: Shard | null;
  /** The shared boot options as given, for the report and reproduction lines. */
  bootOptions: string[];
  onProgress?: (p: CampaignProgress) => void;
}

export interface CampaignProgress {
  done: number;
  total: number;
  failures: number;
  outcomes: number;
  phase: 'running' | 'minimizing';
}

/** Runs per batch handed to the executor (progress is reported between batches). */
const BATCH = 32;

/**
 * A campaign: the shard's runs (every run of an unsharded campaign), grouped
 * by outcome; each failing group explained. The fixed patterns run in every
 * shard as probes (they decide the minimizer's baseline and whether a failure
 * happens with zeroed memory too), counted only by the shard they belong to.
 */
export async function runCampaign(o: CampaignOptions, exec: BatchExecutor): Promise<CampaignReport> {
  if (!(o.runs >= 1)) throw new RangeError('a campaign needs at least one run');
  const mine = shardRuns(o.runs, o.shard);
  const records = new Map<number, RunRecord>();
  const probeCount = Math.min(FIXED_PATTERNS.length, o.runs);
  const probes = await exec([...Array(probeCount).keys()].map((i) => ({ ...runSpec(i, o.seed), detail: false })));
  probes.forEach((r, i) => records.set(i, r));

  const groups = new Map<string, { record: RunRecord; runs: number[] }>();
  const add = (index: number, r: RunRecord): void => {
    const g = groups.get(r.outcome.key);
    if (g) g.runs.push(index);
    else groups.set(r.outcome.key, { record: r, runs: [index] });
  };
  let failures = 0;
  const progress = (phase: CampaignProgress['phase'], done: number): void =>
    o.onProgress?.({ done, total: mine.length, failures, outcomes: groups.size, phase });
  let done = 0;
  for (let at = 0; at < mine.length; at += BATCH) {
    const slice = mine.slice(at, at + BATCH);
    const todo = slice.filter((i) => !records.has(i));
    const got = await exec(todo.map((i) => ({ ...runSpec(i, o.seed), detail: false })));
    todo.forEach((i, k) => records.set(i, got[k]));
    for (const i of slice) {
      const r = records.get(i)!;
      if (r.outcome.key !== 'reached') failures++;
      add(i, r);
    }
    done += slice.length;
    progress('running', done);
  }

  const baselineIndex = probes.findIndex((r) => r.outcome.key === 'reached');
  const baseline = baselineIndex >= 0 ? runSpec(baselineIndex, o.seed).poison as OverlayPoison['base'] : null;
  const zeroKey = probes[0].outcome.key;
  const addresses = new AddressMap(o.kernel, o.loadAddress);

  const reports: GroupReport[] = [];
  for (const [key, g] of [...groups].sort((a, b) => a[1].runs[0] - b[1].runs[0])) {
    const firstRun = g.runs[0];
    const spec = runSpec(firstRun, o.seed);
    const base: GroupReport = {
      key,
      outcome: g.record.outcome.label,
      verdict: g.record.outcome.verdict,
      termination: g.record.outcome.termination,
      runs: g.runs.length,
      firstRun,
      examples: g.runs.slice(0, EXAMPLES_PER_GROUP).map((run) => ({ run, reproduce: poisonArgs(runSpec(run, o.seed)) })),
      cause: 'target-reached',
      explanation: 'reached the target',
      culprits: [],
      minimizationBoots: 0,
    };
    if (key === 'reached') {
      reports.push(base);
      continue;
    }
    if (key === zeroKey) {
      reports.push({ ...base, cause: 'not-uninitialized-memory', explanation: 'not caused by uninitialized memory: the boot fails the same way with zero-filled memory' });
      continue;
    }
    if (baseline === null) {
      reports.push({ ...base, cause: 'no-baseline', explanation: `no fixed pattern reaches the target, so there is no clean baseline to minimize against` });
      continue;
    }
    progress('minimizing', done);
    const [detail] = await exec([{ ...spec, detail: true }]);
    const m = await minimize({ target: key, failing: spec, candidates: detail.unwrittenBytes ?? [], baseline }, exec);
    const boots = m.tests + 1;
    if (m.unreproducible || m.bytes.length === 0) {
      reports.push({
        ...base,
        cause: 'outside-tracked-memory',
        explanation: `the ${detail.unwrittenBytes?.length ?? 0} never-written .bss bytes this run read do not reproduce it on the ${describePoison(baseline)} baseline: the cause lies in other uninitialized memory or in the run's seed`,
        minimizationBoots: boots,
      });
      continue;
    }
    const culprits = nameCulprits(m, detail, addresses);
    reports.push({
      ...base,
      cause: 'uninitialized-memory',
      explanation: `${culprits.map((c) => `${c.name} (${c.size} byte${c.size > 1 ? 's' : ''}${c.section && c.section !== c.name ? `, ${c.section}` : ''})${c.failingValues ? ` = ${c.failingValues}` : ''}`).join(' and ')} -> ${g.record.outcome.label}${otherValuesText(culprits)}`,
      culprits,
      minimizationBoots: boots,
    });
  }
  const sorted = sortGroups(reports);
  return {
    kernel: { path: o.kernel.path, version: o.kernel.header.kernelVersion },
    bootOptions: o.bootOptions,
    seed: o.seed,
    runs: o.runs,
    shard: o.shard,
    baseline: baseline ? describePoison(baseline) : null,
    summary: summarize(sorted),
    groups: sorted,
  };
}

function otherValuesText(culprits: Culprit[]): string {
  const c = culprits.find((x) => x.otherValues.length > 0);
  return c ? `; ${c.otherValues.join('; ')}` : '';
}

/** Culprit bytes grouped by the symbol that holds them (or, without symbols, by run of adjacent .bss bytes). */
function nameCulprits(m: Minimized, detail: RunRecord, addresses: AddressMap): Culprit[] {
  const culprits: Culprit[] = [];
  const bytes = [...m.bytes].sort((a, b) => a.address - b.address);
  let i = 0;
  while (i < bytes.length) {
    const first = bytes[i];
    const owner = addresses.symbolContaining(first.address);
    let j = i + 1;
    while (
      j < bytes.length &&
      (owner !== null ? addresses.symbolContaining(bytes[j].address)?.name === owner.name : bytes[j].address === bytes[j - 1].address + 1)
    ) j++;
    const run = bytes.slice(i, j);
    const scan = m.scans.find((s) => s.address === first.address) ?? null;
    const read = (detail.reads ?? []).find((r) => {
      const a = Number(r.address);
      return first.address >= a && first.address < a + r.size;
    });
    culprits.push({
      name: addresses.describeData(first.address),
      symbol: owner?.name ?? null,
      section: addresses.sectionOffset(first.address),
      address: '0x' + first.address.toString(16),
      size: run.length,
      failingRunValue: '0x' + run.map((b) => b.value.toString(16).padStart(2, '0')).reverse().join(''),
      failingValues: scan ? describeValues(scan.failing) + (run.length > 1 ? ' (first byte, the others at the failing run\'s values)' : '') : null,
      otherValues: scan ? scan.others.map((o) => `${describeValues(o.values)} -> ${o.label}`) : [],
      readerRip: read?.rip ?? null,
      reader: read?.reader ?? null,
    });
    i = j;
  }
  return culprits;
}
