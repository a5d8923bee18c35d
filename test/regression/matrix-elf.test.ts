import { describe, expect, it } from 'vitest';
import { PLATFORMS, POISONS, expected, runCell, type Platform } from './snp-vmpl-matrix.js';
import { selfBuiltKernels, VARIANTS } from './selfbuilt.js';

// The compressed-vmlinux ELF of each variant (symbols for every address).
describe.each(VARIANTS)('%s (compressed vmlinux ELF)', (variant) => {
  describe.each(Object.keys(PLATFORMS) as Platform[])('SNP %s', (platform) => {
    it.each(POISONS)('poison %s', (_name, poison, seed) => {
      const dir = selfBuiltKernels();
      const want = expected(dir, variant, platform, poison);
      const r = runCell(dir, variant, 'vmlinux', platform, poison, seed);
      expect(r.verdict, `${want.why}; got: ${r.reason}`).toBe(want.verdict);
      if (want.termination) expect(r.termination?.name).toBe(want.termination);
      if (want.verdict === 'reached') expect(r.milestones.map((m) => m.name)).toContain('kernel-entry');
    });
  });
});
