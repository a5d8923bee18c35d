import type { Shard } from './plan.js';

/** One culprit of a minimized failure: bytes of one symbol (or of one place in .bss when there are no symbols). */
export interface Culprit {
  /** "snp_vmpl", "snp_vmpl+0x2", or ".bss+0x12" without symbols. */
  name: string;
  symbol: string | null;
  /** By the image's own layout, whatever the symbols say. */
  section: string | null;
  /** Physical address of the first culprit byte in the loaded image. */
  address: string;
  /** Culprit bytes. */
  size: number;
  /** What the failing run's poison put there (little-endian hex). */
  failingRunValue: string;
  /** Values of the first culprit byte that reproduce the failure, for people ("any non-zero value"). */
  failingValues: string | null;
  /** What the other values of that byte give: "0x00 -> reached". */
  otherValues: string[];
  /** The first instruction that read it before anything wrote it. */
  readerRip: string | null;
  reader: string | null;
}

export type GroupCause =
  | 'target-reached'
  | 'uninitialized-memory'
  | 'not-uninitialized-memory'
  | 'outside-tracked-memory'
  | 'no-baseline';

export interface GroupReport {
  key: string;
  outcome: string;
  verdict: string;
  termination: { set: number; code: number; name: string } | null;
  runs: number;
  /** Smallest run index in the group (minimization starts from it). */
  firstRun: number;
  /** First few runs, with the `bzemu boot` options that reproduce each. */
  examples: Array<{ run: number; reproduce: string }>;
  cause: GroupCause;
  /** One line: the verdict on the cause. */
  explanation: string;
  culprits: Culprit[];
  /** Boots spent minimizing. */
  minimizationBoots: number;
}

/** A whole campaign (or a shard of one): deterministic for its kernel, options and seed. */
export interface CampaignReport {
  kernel: { path: string; version: string | null };
  /** The boot options every run shared, as given on the command line. */
  bootOptions: string[];
  seed: number;
  runs: number;
  /** Set on a shard's report; null for a whole (or merged) campaign. */
  shard: Shard | null;
  /** Pattern the minimizer builds on: the first fixed pattern that reached the target. */
  baseline: string | null;
  summary: { runs: number; reached: number; failed: number; groups: number; failingGroups: number };
  groups: GroupReport[];
}

export const EXAMPLES_PER_GROUP = 5;

/** Groups in report order: reached first, then by runs (descending), then by first run. */
export function sortGroups(groups: GroupReport[]): GroupReport[] {
  return [...groups].sort((a, b) => Number(b.cause === 'target-reached') - Number(a.cause === 'target-reached') || b.runs - a.runs || a.firstRun - b.firstRun);
}

export function summarize(groups: GroupReport[]): CampaignReport['summary'] {
  const runs = groups.reduce((n, g) => n + g.runs, 0);
  const reached = groups.filter((g) => g.cause === 'target-reached').reduce((n, g) => n + g.runs, 0);
  const failing = groups.filter((g) => g.cause !== 'target-reached');
  return { runs, reached, failed: runs - reached, groups: groups.length, failingGroups: failing.length };
}

export class MergeError extends Error {}

/**
 * The report of the whole campaign from its shards' reports: the same, field
 * for field, as running it unsharded (each group's minimization is the one of
 * the shard that holds the group's first run, as the unsharded campaign
 * minimizes from its first run too).
 */
export function mergeReports(parts: CampaignReport[]): CampaignReport {
  if (parts.length === 0) throw new MergeError('merge needs at least one shard report');
  const first = parts[0];
  const n = first.shard?.n ?? 1;
  const seen = new Set<number>();
  for (const p of parts) {
    if (p.seed !== first.seed || p.runs !== first.runs || JSON.stringify(p.bootOptions) !== JSON.stringify(first.bootOptions) || p.kernel.version !== first.kernel.version) {
      throw new MergeError('shard reports are from different campaigns (kernel, options, seed or runs differ)');
    }
    const k = p.shard?.k ?? 1;
    if ((p.shard?.n ?? 1) !== n) throw new MergeError('shard reports disagree on the number of shards');
    if (seen.has(k)) throw new MergeError(`shard ${k}/${n} given twice`);
    seen.add(k);
  }
  if (seen.size !== n) throw new MergeError(`have ${seen.size} of ${n} shards: missing ${[...Array(n).keys()].map((i) => i + 1).filter((k) => !seen.has(k)).join(', ')}`);
  const byKey = new Map<string, GroupReport>();
  for (const p of parts) {
    for (const g of p.groups) {
      const known = byKey.get(g.key);
      if (!known) {
        byKey.set(g.key, { ...g, examples: [...g.examples] });
        continue;
      }
      const examples = [...known.examples, ...g.examples].sort((a, b) => a.run - b.run).slice(0, EXAMPLES_PER_GROUP);
      const earlier = g.firstRun < known.firstRun ? g : known;
      byKey.set(g.key, { ...earlier, runs: known.runs + g.runs, firstRun: Math.min(known.firstRun, g.firstRun), examples });
    }
  }
  const groups = sortGroups([...byKey.values()]);
  return { ...first, shard: null, summary: summarize(groups), groups };
}
