/*
 * The fast path (translated blocks, chained, with deferred flags) must change
 * none of bzemu's answers: each Debian kernel runs through the decompressor
 * and on through the kernel's own start-up to its banner (--until
 * linux-banner), twice, on translated blocks and in the interpreter alone,
 * under --coco none and snp (the kernel proper's SEV code with the same stub
 * hypervisor), and the two runs must agree on the verdict, the
 * retired-instruction count, the trace hash, the console, the events and a
 * digest of guest memory. The same runs check the banner itself: each is the
 * one full decompression of its kernel and mode in the suite.
 * (Self-modifying code on both paths is checked against the host CPU by
 * test/diff's paged-smc family.)
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { machineConfigFor, runMachine, type BootOptions, type BootResult } from '../../src/machine/boot.js';
import { Machine } from '../../src/machine/machine.js';
import { DEBIAN_KERNELS, kernelPath } from './helpers.js';

interface Outcome {
  result: BootResult;
  memoryDigest: string;
}

/** SHA-256 over every materialised page of guest RAM, with its frame number. */
function memoryDigest(m: Machine): string {
  const h = createHash('sha256');
  const frame = Buffer.alloc(4);
  for (const pfn of m.mem.materialisedPages().sort((a, b) => a - b)) {
    frame.writeUInt32LE(pfn);
    h.update(frame);
    h.update(m.mem.readBytes(pfn * 4096, 4096));
  }
  return h.digest('hex');
}

function run(id: string, coco: 'none' | 'snp', interpretOnly: boolean): Outcome {
  const path = kernelPath(id);
  const options: BootOptions = {
    kernelPath: path,
    memSize: 1 << 30,
    poison: { kind: 'random', seed: 3 },
    seed: 3,
    cmdline: 'nokaslr console=ttyS0 earlyprintk=ttyS0,115200',
    loadAddress: 0x2000000,
    gdt: 'boot-protocol',
    until: 'linux-banner',
    budget: 4.5e9,
    traceLength: 0,
    ...(coco === 'snp' ? { vm: makeVmConfig({ mode: 'snp' }) } : {}),
  };
  const machine = new Machine(loadKernel(path), machineConfigFor(options));
  // A block is translated after this many entries: never, for the interpreter-only run.
  if (interpretOnly) machine.cpu.translateAfter = Number.MAX_SAFE_INTEGER;
  const result = runMachine(machine, options);
  return { result, memoryDigest: memoryDigest(machine) };
}

describe.each(DEBIAN_KERNELS)('%s: translated blocks and the interpreter agree', (id) => {
  for (const coco of ['none', 'snp'] as const) {
    it(`to linux-banner, --coco ${coco}`, () => {
      const fast = run(id, coco, false);
      const slow = run(id, coco, true);
      expect(fast.result.verdict, fast.result.reason).toBe('reached');
      const names = fast.result.milestones.map((m) => m.name);
      expect(names.slice(-2)).toEqual(['kernel-entry', 'linux-banner']);
      // The kernel's own banner, as its version string in the image header says (via earlyprintk on COM1).
      const version = loadKernel(kernelPath(id)).header.kernelVersion!.split(' ')[0];
      expect(fast.result.console).toMatch(new RegExp(`^\\[ +0\\.0+\\] Linux version ${version.replace(/[+.]/g, '\\$&')} `, 'm'));
      if (coco === 'snp') {
        // Past kernel-entry the kernel proper talks to the hypervisor itself: its GHCB registration and #VC for its console.
        const entry = fast.result.milestones.find((m) => m.name === 'kernel-entry')!.instruction;
        const late = fast.result.events.filter((e) => e.instruction > entry).map((e) => e.detail);
        expect(late.some((d) => d.startsWith('GHCB_MSR_REG_GPA_REQ'))).toBe(true);
        expect(late.some((d) => d.startsWith('SVM_EXIT_IOIO'))).toBe(true);
      }
      expect(slow.result.verdict).toBe(fast.result.verdict);
      expect(slow.result.reason).toBe(fast.result.reason);
      expect(slow.result.instructions).toBe(fast.result.instructions);
      expect(slow.result.traceHash).toBe(fast.result.traceHash);
      expect(slow.result.console).toBe(fast.result.console);
      expect(slow.result.events).toEqual(fast.result.events);
      expect(slow.result.kernelEntry).toBe(fast.result.kernelEntry);
      expect(slow.memoryDigest).toBe(fast.memoryDigest);
    }, 1_500_000);
  }
});
