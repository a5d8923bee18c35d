import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseElf } from '../../src/kernel/elf.js';
import { decompressPayloadNative } from '../../src/kernel/payload.js';
import { applyRelocs, parseRelocs } from '../../src/kernel/relocs.js';
import type { Machine } from '../../src/machine/machine.js';
import { bootDebian, DEBIAN_KERNELS, kernelPath } from './helpers.js';

/**
 * The decompressor's output must equal what the native tools make of the same
 * payload: every PT_LOAD segment's file bytes, at output + (p_paddr - LOAD_PHYSICAL_ADDR).
 */
interface Native {
  segments: Array<{ paddr: number; data: Uint8Array }>;
  entry: number;
  relocs: ReturnType<typeof parseRelocs>;
  loadPhysical: number;
}

function nativeOf(id: string): Native {
  const bz = new Uint8Array(readFileSync(kernelPath(id)));
  const n = decompressPayloadNative(bz);
  const elf = parseElf(n.elfBytes);
  const loadPhysical = Number(elf.segments.reduce((m, s) => (s.paddr < m ? s.paddr : m), elf.segments[0].paddr));
  return {
    segments: elf.segments.map((s) => ({ paddr: Number(s.paddr), data: s.data })),
    entry: Number(elf.entry),
    relocs: parseRelocs(n.decompressed, elf.extent),
    loadPhysical,
  };
}

/** Lay the native segments out as one image starting at LOAD_PHYSICAL_ADDR (file bytes only). */
function nativeImage(native: Native): Uint8Array {
  const end = Math.max(...native.segments.map((s) => s.paddr - native.loadPhysical + s.data.length));
  const img = new Uint8Array(end);
  for (const s of native.segments) img.set(s.data, s.paddr - native.loadPhysical);
  return img;
}

function compareSegments(machine: Machine, output: number, native: Native, image: Uint8Array): string[] {
  const problems: string[] = [];
  for (const s of native.segments) {
    const off = s.paddr - native.loadPhysical;
    const want = image.subarray(off, off + s.data.length);
    const got = machine.mem.readBytes(output + off, s.data.length);
    if (!Buffer.from(got).equals(Buffer.from(want))) {
      let first = 0;
      while (got[first] === want[first]) first++;
      problems.push(`segment at paddr 0x${s.paddr.toString(16)} differs first at +0x${first.toString(16)}`);
    }
  }
  return problems;
}

describe.each(DEBIAN_KERNELS)('%s reaches kernel-entry with the native decompressor\'s bytes', (id) => {
  let native: Native;
  beforeAll(() => {
    native = nativeOf(id);
  }, 300_000);

  for (const loadAddress of [0x2000000, 0x1000000]) {
    it(`nokaslr, loaded at 0x${loadAddress.toString(16)}`, () => {
      let machine: Machine | null = null;
      const r = bootDebian(id, { until: 'kernel-entry', budget: 4e9, loadAddress, cmdline: 'nokaslr console=ttyS0', poison: { kind: 'random', seed: 1 } }, (m) => { machine = m; });
      expect(r.verdict, r.reason).toBe('reached');
      expect(r.output).not.toBeNull();
      const output = Number(r.output!.address);
      // Without KASLR the kernel lands at the aligned load address (never below LOAD_PHYSICAL_ADDR) and is not relocated.
      expect(output).toBe(Math.max(loadAddress, native.loadPhysical));
      expect(Number(r.kernelEntry)).toBe(output + native.entry - native.loadPhysical);
      expect(r.output!.virtualOffset).toBe('0x0');
      expect(compareSegments(machine!, output, native, nativeImage(native))).toEqual([]);
    }, 900_000);
  }

  it('with KASLR, equal after applying the relocations with the reported virtual offset', () => {
    let machine: Machine | null = null;
    const r = bootDebian(id, { until: 'kernel-entry', budget: 4e9, cmdline: 'console=ttyS0', poison: { kind: 'random', seed: 2 }, seed: 2 }, (m) => { machine = m; });
    expect(r.verdict, r.reason).toBe('reached');
    const delta = BigInt(r.output!.virtualOffset!);
    expect(native.relocs).not.toBeNull();
    const image = nativeImage(native);
    applyRelocs(image, native.relocs!, delta);
    expect(compareSegments(machine!, Number(r.output!.address), native, image)).toEqual([]);
  }, 900_000);
});
