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
import { families } from './generate.js';
import { runFlatFamily } from './flat-run.js';
import { buildHarness, hostCpu, type Harness } from './native.js';

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
      const r = runFlatFamily(harness, family, SEED, CASES, REPORT, STRICT);
      totalCases += r.cases;
      totalMismatches += r.mismatches;
      const summary = `${family.name}: ${r.mismatches} of ${r.cases} cases differ`;
      if (r.mismatches > 0) console.log(`${summary}\n${r.reports.join('\n')}`);
      expect(r.cases).toBe(CASES);
      expect(r.mismatches, `${summary}\n${r.reports.join('\n')}`).toBe(0);
    }, 300_000);
  }
});
