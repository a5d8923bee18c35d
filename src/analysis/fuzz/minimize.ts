import { overlayPoison, poisonByte, type OverlayPoison, type PoisonPolicy } from '../../memory/poison.js';
import type { RunRecord, RunRequest } from './runner.js';

/** Runs a batch of boots (in parallel where it can) and answers in request order. */
export type BatchExecutor = (requests: RunRequest[]) => Promise<RunRecord[]>;

type BasePoison = OverlayPoison['base'];

export interface MinimizeInput {
  /** The outcome key to reproduce. */
  target: string;
  /** Poison of the failing run, and its seed (RDRAND stays that run's). */
  failing: { poison: PoisonPolicy; seed: number };
  /** Never-written bytes the failing run read: the search space. */
  candidates: number[];
  /** Poison under which the target is reached (everything the culprits do not cover). */
  baseline: BasePoison;
}

export interface ValueScan {
  address: number;
  /** Values of this byte (the other culprits at their failing values) that give the target outcome. */
  failing: number[];
  /** What the other values gave: outcome label -> values. */
  others: Array<{ label: string; values: number[] }>;
}

export interface Minimized {
  /** Culprit bytes with the failing run's values. */
  bytes: Array<{ address: number; value: number }>;
  scans: ValueScan[];
  /** Boots the minimization took. */
  tests: number;
  /** Set when the candidates alone do not reproduce the failure. */
  unreproducible: boolean;
}

/** Bytes whose values are scanned through all 256 values (the rest keep their failing value). */
const SCANNED_BYTES = 4;

/**
 * Delta debugging (ddmin) over the bytes the failing run read before anything
 * wrote them: the smallest set found whose failing-run values, on top of the
 * baseline poison, still give the same outcome. Every step tests its subsets
 * as one batch and takes the first that fails, in order, so the result does
 * not depend on how many workers ran the batch.
 */
export async function minimize(input: MinimizeInput, exec: BatchExecutor): Promise<Minimized> {
  const value = new Map<number, number>();
  for (const a of input.candidates) value.set(a, poisonByte(input.failing.poison, a));
  let tests = 0;
  const request = (bytes: readonly number[], override?: [number, number]): RunRequest => ({
    poison: overlayPoison(input.baseline, bytes.map((a) => [a, override && override[0] === a ? override[1] : value.get(a)!] as const)),
    seed: input.failing.seed,
    detail: false,
  });
  const failsAll = async (sets: number[][]): Promise<boolean[]> => {
    tests += sets.length;
    const records = await exec(sets.map((s) => request(s)));
    return records.map((r) => r.outcome.key === input.target);
  };

  let current = [...input.candidates];
  const [reproduces] = await failsAll([current]);
  if (!reproduces) return { bytes: [], scans: [], tests, unreproducible: true };

  let n = 2;
  while (current.length >= 2) {
    const chunks = split(current, n);
    const subsetFails = await failsAll(chunks);
    const s = subsetFails.indexOf(true);
    if (s >= 0) {
      current = chunks[s];
      n = 2;
      continue;
    }
    if (n > 2) {
      const complements = chunks.map((_, i) => chunks.filter((__, j) => j !== i).flat());
      const complementFails = await failsAll(complements);
      const c = complementFails.indexOf(true);
      if (c >= 0) {
        current = complements[c];
        n = Math.max(n - 1, 2);
        continue;
      }
    }
    if (n >= current.length) break;
    n = Math.min(current.length, n * 2);
  }
  // A single candidate left: it is a culprit only if the empty set (the baseline) does not fail.
  if (current.length === 1) {
    const [emptyFails] = await failsAll([[]]);
    if (emptyFails) current = [];
  }

  const scans: ValueScan[] = [];
  for (const address of current.slice(0, SCANNED_BYTES)) {
    const requests: RunRequest[] = [];
    for (let v = 0; v < 256; v++) requests.push(request(current, [address, v]));
    tests += requests.length;
    const records = await exec(requests);
    const failing: number[] = [];
    const others = new Map<string, number[]>();
    records.forEach((r, v) => {
      if (r.outcome.key === input.target) failing.push(v);
      else {
        const list = others.get(r.outcome.label) ?? [];
        list.push(v);
        others.set(r.outcome.label, list);
      }
    });
    scans.push({ address, failing, others: [...others].map(([label, values]) => ({ label, values })) });
  }
  return { bytes: current.map((address) => ({ address, value: value.get(address)! })), scans, tests, unreproducible: false };
}

function split<T>(list: T[], n: number): T[][] {
  const out: T[][] = [];
  const size = list.length / n;
  for (let i = 0; i < n; i++) {
    const part = list.slice(Math.round(i * size), Math.round((i + 1) * size));
    if (part.length > 0) out.push(part);
  }
  return out;
}

/** "any non-zero value", "any value", "0x01-0x7f, 0xff": a set of byte values for people. */
export function describeValues(values: readonly number[]): string {
  if (values.length === 256) return 'any value';
  if (values.length === 255 && !values.includes(0)) return 'any non-zero value';
  if (values.length === 0) return 'no value';
  const parts: string[] = [];
  const h = (v: number): string => '0x' + v.toString(16).padStart(2, '0');
  for (let i = 0; i < values.length; ) {
    let j = i;
    while (j + 1 < values.length && values[j + 1] === values[j] + 1) j++;
    parts.push(i === j ? h(values[i]) : `${h(values[i])}-${h(values[j])}`);
    i = j + 1;
  }
  return parts.join(', ');
}
