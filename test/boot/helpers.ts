import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';
import { boot, type BootOptions, type BootResult } from '../../src/machine/boot.js';
import type { Machine } from '../../src/machine/machine.js';
import type { PoisonPolicy } from '../../src/memory/poison.js';

/** The Debian kernel series the boot tests run (see kernels/debian.json). */
export const DEBIAN_KERNELS = ['debian-6.12', 'debian-6.1-cloud'] as const;

export function kernelPath(id: string): string {
  return ensureDebianKernel(id);
}

export function bootDebian(id: string, overrides: Partial<BootOptions> & { poison?: PoisonPolicy } = {}, inspect?: (m: Machine) => void): BootResult {
  return boot({
    kernelPath: kernelPath(id),
    memSize: 1 << 30,
    poison: { kind: 'random', seed: 1 },
    seed: 1,
    cmdline: 'console=ttyS0 earlyprintk=ttyS0,115200',
    loadAddress: 0x2000000,
    gdt: 'boot-protocol',
    until: 'extract_kernel',
    budget: 2e8,
    traceLength: 0,
    inspect,
    ...overrides,
  });
}
