import { describe, expect, it } from 'vitest';
import { PLATFORMS, POISONS, type Platform } from './snp-vmpl-matrix.js';
import { bootDebian } from '../boot/helpers.js';

// Debian's stock 6.12 (the "good" row on a distribution kernel): both platforms, every poison.
// Whole decompression for zero and seed 1; to extract_kernel (past every early SEV decision) for the rest.
describe.each(Object.keys(PLATFORMS) as Platform[])('Debian 6.12, SNP %s', (platform) => {
  it.each(POISONS)('poison %s', (name, poison, seed) => {
    const full = name === 'zero' || name === 'random-1';
    const r = bootDebian('debian-6.12', {
      poison,
      seed,
      vm: PLATFORMS[platform],
      until: full ? 'kernel-entry' : 'extract_kernel',
      budget: 4e9,
      cmdline: 'nokaslr earlyprintk=ttyS0,115200',
    });
    expect(r.verdict, r.reason).toBe('reached');
    expect(r.termination).toBeNull();
    if (full) expect(r.console).toContain("KASLR disabled: 'nokaslr' on cmdline.");
  });
});
