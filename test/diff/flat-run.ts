/*
 * One family of single-instruction cases on both sides, for the harness.c
 * stub: 64-bit code (generate.ts) or, with the harness in compat mode, 32-bit
 * code (generate32.ts), which bzemu runs alternately in protected mode and in
 * compatibility mode. Shared by the vitest files and `npm run difftest`.
 */
import { diffCase, formatMismatch, runEmulator } from './compare.js';
import { generateFamily, type DiffCase, type Family } from './generate.js';
import { generate32, type Family32 } from './generate32.js';
import { runNative, type DiffOutput, type Harness } from './native.js';
import type { FamilyResult } from './paged-run.js';

/** Bounded host memory for large counts. */
const BATCH = 5000;

/** Batch 0 uses the seed itself (what the test suite runs), later batches seeds derived from it. */
function batchSeed(seed: number, batch: number): number {
  return batch === 0 ? seed : seed * 1000 + batch;
}

/** 32-bit code's view of a result: the low halves of EAX..EDI; R8..R15 cannot change there and keep their inputs. */
function low32(o: DiffOutput, inRegs: bigint[]): DiffOutput {
  return { ...o, regs: o.regs.length ? o.regs.map((v, r) => (r < 8 ? v & 0xffffffffn : inRegs[r])) : o.regs };
}

/** Where bzemu builds its page tables for 32-bit cases run in compatibility mode (the harness's state page, unused by the emulator). */
const COMPAT_TABLES = 0x1e0000;

function runBatches(h: Harness, name: string, count: number, maxReports: number, strict: boolean,
  generate: (batch: number, n: number) => DiffCase[], view: (o: DiffOutput, c: DiffCase) => DiffOutput): FamilyResult {
  const result: FamilyResult = { family: name, cases: 0, mismatches: 0, hostFaults: 0, reports: [] };
  for (let done = 0, batch = 0; done < count; batch++) {
    const n = Math.min(BATCH, count - done);
    const cases = generate(batch, n);
    const expected = runNative(h, cases);
    for (let k = 0; k < cases.length; k++) {
      const exp = view(expected[k], cases[k]);
      if (exp.fault !== null) result.hostFaults++;
      // 32-bit cases alternate between bzemu's protected mode and its compatibility mode (the host runs them in the latter).
      const compat = cases[k].bits === 32 && (done + k) % 2 === 1 ? COMPAT_TABLES : undefined;
      const diffs = diffCase(cases[k], exp, view(runEmulator(cases[k], h.insnAddr, compat), cases[k]), strict);
      if (diffs.length === 0) continue;
      result.mismatches++;
      if (result.reports.length < maxReports) result.reports.push(formatMismatch(cases[k], diffs, h.insnAddr));
    }
    done += n;
    result.cases = done;
  }
  return result;
}

/** 64-bit code with paging off, against the harness in its default mode. */
export function runFlatFamily(h: Harness, family: Family, seed: number, count: number, maxReports = 5, strict = false): FamilyResult {
  return runBatches(h, family.name, count, maxReports, strict, (b, n) => generateFamily(family, batchSeed(seed, b), n, h.insnAddr), (o) => o);
}

/** 32-bit code, against the harness built with buildHarness('compat'). */
export function run32Family(h: Harness, family: Family32, seed: number, count: number, maxReports = 5): FamilyResult {
  return runBatches(h, family.name, count, maxReports, false, (b, n) => generate32(family, batchSeed(seed, b), n, h.insnAddr), (o, c) => low32(o, c.regs));
}
