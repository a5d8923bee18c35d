/*
 * Differential tests of bzemu's integer instructions against the host CPU.
 *
 *   BZEMU_DIFF_CASES   cases per family (default 3000; 43 families, about 129k cases)
 *   BZEMU_DIFF_SEED    generator seed (default 1)
 *   BZEMU_DIFF_STRICT  =1 on an AMD host: also compare flags the ISA leaves undefined
 *   BZEMU_DIFF_REPORT  mismatches printed per family (default 5)
 *
 * The harness (harness.c) is compiled with gcc into a temporary directory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffCase, formatMismatch, runEmulator } from './compare.js';
import { families, generateFamily } from './generate.js';
import { buildHarness, hostCpu, runNative, type Harness } from './native.js';

const CASES = Number(process.env.BZEMU_DIFF_CASES ?? 3000);
const SEED = Number(process.env.BZEMU_DIFF_SEED ?? 1);
const REPORT = Number(process.env.BZEMU_DIFF_REPORT ?? 5);
// The host CPU is the oracle: only an x86-64 Linux host can run the harness.
const runnable = process.arch === 'x64' && process.platform === 'linux';
const host = runnable ? hostCpu() : { vendor: 'none', amd: false, flags: new Set<string>() };
const STRICT = process.env.BZEMU_DIFF_STRICT === '1' && host.amd;

let harness: Harness;
let totalCases = 0;
let totalMismatches = 0;
const started = performance.now();

beforeAll(() => {
  if (runnable) harness = buildHarness();
});

afterAll(() => {
  harness?.dispose();
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`differential tests: ${totalCases} cases, ${totalMismatches} mismatches, ${secs} s (host ${host.vendor}${STRICT ? ', strict flags' : ''})`);
});

describe.skipIf(!runnable)('bzemu vs host CPU, integer instructions', () => {
  for (const family of families({ amd: host.amd })) {
    const missing = (family.requires ?? []).filter((f) => !host.flags.has(f));
    it.skipIf(missing.length > 0)(`${family.name}${missing.length ? ` (host lacks ${missing.join(', ')})` : ''}`, () => {
      const cases = generateFamily(family, SEED, CASES, harness.insnAddr);
      const expected = runNative(harness, cases);
      const reports: string[] = [];
      let mismatches = 0;
      for (let k = 0; k < cases.length; k++) {
        const got = runEmulator(cases[k], harness.insnAddr);
        const diffs = diffCase(cases[k], expected[k], got, STRICT);
        if (diffs.length === 0) continue;
        mismatches++;
        if (reports.length < REPORT) reports.push(formatMismatch(cases[k], diffs, harness.insnAddr));
      }
      totalCases += cases.length;
      totalMismatches += mismatches;
      const summary = `${family.name}: ${mismatches} of ${cases.length} cases differ`;
      if (mismatches > 0) console.log(`${summary}\n${reports.join('\n')}`);
      expect(cases.length).toBe(CASES);
      expect(mismatches, `${summary}\n${reports.join('\n')}`).toBe(0);
    }, 300_000);
  }
});
