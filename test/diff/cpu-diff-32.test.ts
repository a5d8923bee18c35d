/*
 * Differential tests of 32-bit code against the host CPU: each case runs
 * natively in compatibility mode (the harness's `compat` stub far-jumps to a
 * 32-bit code segment) and in bzemu as 32-bit protected-mode code. Only the
 * low halves of EAX..EDI mean anything in 32-bit code, so only they are
 * compared, with the flags, the fault and the scratch memory.
 *
 * Environment:
 *   BZEMU_DIFF32_CASES   cases per family (default 2000)
 */
import { afterAll, describe, expect, it } from 'vitest';
import { diffCase, formatMismatch, runEmulator } from './compare.js';
import { FAMILIES_32, generate32 } from './generate32.js';
import { buildHarness, runNative, type DiffOutput, type Harness } from './native.js';

const CASES = Number(process.env.BZEMU_DIFF32_CASES ?? 2000);
const SEED = Number(process.env.BZEMU_DIFF_SEED ?? 1);

const runnable = process.arch === 'x64' && process.platform === 'linux';
let harness: Harness | null = null;
if (runnable) harness = buildHarness('compat');
afterAll(() => harness?.dispose());

/** 32-bit code's view of a result: the low halves of the eight legacy registers, the others as they came in. */
function low32(o: DiffOutput, inRegs: bigint[]): DiffOutput {
  return { ...o, regs: o.regs.length ? o.regs.map((v, r) => (r < 8 ? v & 0xffffffffn : inRegs[r])) : o.regs };
}

describe.skipIf(!runnable)('32-bit code against the host CPU (compatibility mode)', () => {
  it.each(FAMILIES_32.map((f) => [f.name, f] as const))('%s', (_name, family) => {
    const cases = generate32(family, SEED, CASES, harness!.insnAddr);
    const expected = runNative(harness!, cases);
    const reports: string[] = [];
    let faults = 0;
    for (let k = 0; k < cases.length; k++) {
      const exp = low32(expected[k], cases[k].regs);
      const got = low32(runEmulator(cases[k], harness!.insnAddr), cases[k].regs);
      if (exp.fault !== null) faults++;
      const diffs = diffCase(cases[k], exp, got);
      if (diffs.length && reports.length < 5) reports.push(formatMismatch(cases[k], diffs, harness!.insnAddr));
    }
    console.log(`${family.name}: ${cases.length} cases, ${faults} faulting on the host, ${reports.length ? 'mismatches' : 'no mismatch'}`);
    expect(reports, reports.join('\n\n')).toEqual([]);
  }, 120_000);
});
