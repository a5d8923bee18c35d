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
import { FAMILIES_32 } from './generate32.js';
import { run32Family } from './flat-run.js';
import { buildHarness, type Harness } from './native.js';

const CASES = Number(process.env.BZEMU_DIFF32_CASES ?? 2000);
const SEED = Number(process.env.BZEMU_DIFF_SEED ?? 1);

const runnable = process.arch === 'x64' && process.platform === 'linux';
let harness: Harness | null = null;
if (runnable) harness = buildHarness('compat');
afterAll(() => harness?.dispose());

describe.skipIf(!runnable)('32-bit code against the host CPU (compatibility mode)', () => {
  it.each(FAMILIES_32.map((f) => [f.name, f] as const))('%s', (_name, family) => {
    const r = run32Family(harness!, family, SEED, CASES);
    console.log(`${family.name}: ${r.cases} cases, ${r.hostFaults} faulting on the host, ${r.mismatches} differ`);
    expect(r.cases).toBe(CASES);
    expect(r.mismatches, r.reports.join('\n\n')).toBe(0);
  }, 120_000);
});
