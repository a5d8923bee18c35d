import { describe, expect, it } from 'vitest';
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { bootImage, machineConfigFor, runMachine, type BootOptions } from '../../src/machine/boot.js';
import { Machine } from '../../src/machine/machine.js';
import { DecodeMemo } from '../../src/cpu/decode-memo.js';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';
import type { PoisonPolicy } from '../../src/memory/poison.js';
import { kernelPath } from '../boot/helpers.js';

/*
 * A run restored from the entry snapshot must be the run `bzemu boot` makes
 * with the same poison and seed: same verdict, instruction count, trace hash,
 * uninitialized reads, also when restored machines share decoded instructions
 * (src/cpu/decode-memo.ts). Both sides are bzemu; the claim checked is that they agree.
 */
describe.each(['debian-6.12', 'debian-6.1-cloud'])('%s: a restored snapshot boots exactly as a fresh machine', (id) => {
  const kernel = loadKernel(kernelPath(id));
  const options: Omit<BootOptions, 'kernelPath'> = {
    memSize: 1 << 30, poison: { kind: 'zero' }, seed: 1, cmdline: 'console=ttyS0', loadAddress: 0x2000000, gdt: 'boot-protocol',
    until: 'extract_kernel', budget: 2e8, traceLength: 0, vm: makeVmConfig({ mode: 'snp' }),
  };
  const snapshot = new Machine(kernel, machineConfigFor(options)).snapshot();
  const cases: Array<[string, PoisonPolicy, number]> = [['random seed 3', { kind: 'random', seed: 3 }, 3], ['0xff', { kind: 'byte', value: 0xff }, 1]];
  it.each(cases)('poison %s', (_name, poison, seed) => {
    const fresh = bootImage(kernel, { ...options, kernelPath: kernel.path, poison, seed });
    // Restore three times from the same snapshot (a run must not change it): alone, then twice sharing decoded
    // instructions as a fuzz runner's boots do (the second of those decodes nothing itself).
    const decoded = new DecodeMemo();
    for (let k = 0; k < 3; k++) {
      const restored = runMachine(Machine.fromSnapshot(snapshot, poison, seed, k === 0 ? undefined : decoded), options);
      expect(restored.verdict).toBe(fresh.verdict);
      expect(restored.instructions).toBe(fresh.instructions);
      expect(restored.traceHash).toBe(fresh.traceHash);
      expect(restored.uninitializedReads).toEqual(fresh.uninitializedReads);
      expect(restored.events.length).toBe(fresh.events.length);
    }
    expect(fresh.verdict).toBe('reached');
    expect(decoded.size).toBeGreaterThan(500);
  });
});
