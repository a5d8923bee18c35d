/*
 * Differential tests with paging on: short programs run on the host CPU and
 * in bzemu under 4- and 5-level tables with 4 KiB, 2 MiB and 1 GiB pages,
 * with operands straddling pages, read-modify-write forms, faulting accesses
 * (#PF vector, error code, CR2, state left as it was), the stack, control
 * flow, strings and self-modifying code. See paged-harness.c for the layout.
 *
 *   BZEMU_PDIFF_CASES  cases per family (default 2000; 5 families)
 *   BZEMU_PDIFF_SEED   generator seed (default 1)
 *
 * `npm run difftest` runs these with the paging-off families at any count.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pagedFamilies } from './paged-generate.js';
import { buildPagedHarness, type PagedHarness } from './paged-native.js';
import { runPagedFamily } from './paged-run.js';

const CASES = Number(process.env.BZEMU_PDIFF_CASES ?? 2000);
const SEED = Number(process.env.BZEMU_PDIFF_SEED ?? 1);
// The host CPU is the oracle: only an x86-64 Linux host can run the harness.
const runnable = process.arch === 'x64' && process.platform === 'linux';

let harness: PagedHarness;
let total = 0;
let faults = 0;
const started = performance.now();

beforeAll(() => {
  if (runnable) harness = buildPagedHarness();
});

afterAll(() => {
  harness?.dispose();
  console.log(`paged differential tests: ${total} cases (${faults} faulting on the host), ${((performance.now() - started) / 1000).toFixed(1)} s`);
});

describe.skipIf(!runnable)('bzemu vs host CPU with paging on', () => {
  for (const family of pagedFamilies()) {
    it(family.name, () => {
      const r = runPagedFamily(harness, family, SEED, CASES);
      total += r.cases;
      faults += r.hostFaults;
      const summary = `${family.name}: ${r.mismatches} of ${r.cases} cases differ\n${r.reports.join('\n')}`;
      expect(r.cases).toBe(CASES);
      // Every family reaches faults on the host except self-modifying code, whose programs never fault.
      if (family.name !== 'paged-smc') expect(r.hostFaults, 'the generator steers some accesses into faults').toBeGreaterThan(0);
      expect(r.mismatches, summary).toBe(0);
    }, 600_000);
  }
});
