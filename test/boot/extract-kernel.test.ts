import { describe, expect, it } from 'vitest';
import type { PoisonPolicy } from '../../src/memory/poison.js';
import { bootDebian, DEBIAN_KERNELS, kernelPath } from './helpers.js';
import { loadKernel } from '../../src/kernel/kernel-image.js';

const POISONS: Array<[string, PoisonPolicy, number]> = [
  ['zero', { kind: 'zero' }, 1],
  ['0xff', { kind: 'byte', value: 0xff }, 1],
  ['random seed 1', { kind: 'random', seed: 1 }, 1],
  ['random seed 2', { kind: 'random', seed: 2 }, 2],
  ['random seed 3', { kind: 'random', seed: 3 }, 3],
];

describe.each(DEBIAN_KERNELS)('%s reaches extract_kernel', (id) => {
  it.each(POISONS)('with poison %s', (_name, poison, seed) => {
    const r = bootDebian(id, { poison, seed });
    expect(r.verdict, r.reason).toBe('reached');
    const names = r.milestones.map((m) => m.name);
    expect(names).toEqual(['startup_64', 'bss-clear', 'extract_kernel']);
    // extract_kernel runs in the relocated copy: above the loaded image, inside the decompression buffer.
    const k = loadKernel(kernelPath(id));
    const ek = Number(r.milestones[2].rip);
    expect(ek).toBeGreaterThan(0x2000000 + k.image.length);
    expect(ek).toBeLessThan(0x2000000 + k.header.initSize + 0x200000);
    expect(r.milestones[2].instruction).toBeGreaterThan(r.milestones[1].instruction);
  }, 120_000);

  it('gives the same trace hash twice', () => {
    const a = bootDebian(id, { poison: { kind: 'random', seed: 7 }, seed: 7 });
    const b = bootDebian(id, { poison: { kind: 'random', seed: 7 }, seed: 7 });
    expect(a.verdict).toBe('reached');
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.instructions).toBe(a.instructions);
  }, 120_000);
});
