/*
 * One family of paged cases on both sides: the host runs the batch, bzemu
 * runs each case, alternately on translated blocks (from the first
 * instruction) and in the interpreter, so both paths are checked.
 */
import { diffPaged, formatPagedMismatch } from './paged-compare.js';
import { runPagedEmulator } from './paged-emulator.js';
import { generatePaged, type PagedFamily } from './paged-generate.js';
import { runPagedNative, type PagedHarness } from './paged-native.js';

export interface FamilyResult {
  family: string;
  cases: number;
  mismatches: number;
  /** Cases in which the host raised an exception (faulting accesses and fetches). */
  hostFaults: number;
  reports: string[];
}

/** Never reached by a generated program: keeps bzemu in the interpreter. */
const INTERPRET_ONLY = 1 << 30;

export function runPagedFamily(h: PagedHarness, family: PagedFamily, seed: number, count: number, maxReports = 5): FamilyResult {
  const result: FamilyResult = { family: family.name, cases: 0, mismatches: 0, hostFaults: 0, reports: [] };
  const BATCH = 5000; // bounded host memory for large counts
  for (let done = 0, batch = 0; done < count; batch++) {
    const n = Math.min(BATCH, count - done);
    const cases = generatePaged(family, seed * 1000 + batch, n);
    const expected = runPagedNative(h, cases);
    for (let k = 0; k < cases.length; k++) {
      const got = runPagedEmulator(cases[k], (done + k) % 2 === 0 ? 0 : INTERPRET_ONLY);
      if (expected[k].fault !== null) result.hostFaults++;
      const diffs = diffPaged(cases[k], expected[k], got);
      if (diffs.length === 0) continue;
      result.mismatches++;
      if (result.reports.length < maxReports) result.reports.push(formatPagedMismatch(cases[k], diffs));
    }
    done += n;
    result.cases = done;
  }
  return result;
}
