import { describe, expect, it } from 'vitest';
import { PLATFORMS, POISONS, expected, runCell, type Platform } from './snp-vmpl-matrix.js';
import { selfBuiltKernels, VARIANTS } from './selfbuilt.js';

// The bzImage of each variant: same verdicts as its ELF.
describe.each(VARIANTS)('%s (bzImage, symbols borrowed from its ELF)', (variant) => {
  describe.each(Object.keys(PLATFORMS) as Platform[])('SNP %s', (platform) => {
    it.each(POISONS)('poison %s', (_name, poison, seed) => {
      const dir = selfBuiltKernels();
      const want = expected(dir, variant, platform, poison);
      const r = runCell(dir, variant, 'bzImage', platform, poison, seed);
      expect(r.verdict, `${want.why}; got: ${r.reason}`).toBe(want.verdict);
      if (want.termination) expect(r.termination?.name).toBe(want.termination);
      if (want.verdict === 'reached') expect(r.milestones.map((m) => m.name)).toContain('kernel-entry');
    });
  });
});
