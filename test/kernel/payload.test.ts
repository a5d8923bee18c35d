import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadInputError } from '../../src/kernel/errors.js';
import { decompressPayloadNative, detectCompression, locatePayload, type NativeDecompression } from '../../src/kernel/payload.js';
import { parseElf, classifyKernelElf, layoutSegments, PT_LOAD, type ElfFile } from '../../src/kernel/elf.js';
import { parseRelocs, applyRelocs, relocAddress, START_KERNEL_MAP, type RelocTable } from '../../src/kernel/relocs.js';
import { kernelInfo, renderInfo } from '../../src/kernel/info.js';
import { systemMapFor } from '../../src/kernel/kernel-cache.js';
import { hostToolRuns } from '../host-tools.js';
import { KERNEL_IDS, FETCH_TIMEOUT_MS, realKernel, type RealKernel } from './fixtures.js';

const LOAD_PHYSICAL_ADDR = 0x1000000n;
const IMAGE_BASE = START_KERNEL_MAP + LOAD_PHYSICAL_ADDR;

describe('compression magic detection', () => {
  const cases: Array<[string, number[]]> = [
    ['gzip', [0x1f, 0x8b, 0x08]],
    ['bzip2', [0x42, 0x5a, 0x68, 0x39]],
    ['lzma', [0x5d, 0x00, 0x00, 0x80]],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0x00]],
    ['lzo', [0x89, 0x4c, 0x5a, 0x4f, 0x00]],
    ['lz4', [0x02, 0x21, 0x4c, 0x18, 0x00]],
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0x04]],
  ];
  it.each(cases)('%s', (format, magic) => {
    expect(detectCompression(new Uint8Array(magic))).toBe(format);
  });
  it('unknown data', () => {
    expect(detectCompression(new Uint8Array([0x7f, 0x45, 0x4c, 0x46]))).toBeNull();
    expect(detectCompression(new Uint8Array([0x5d, 0x00]))).toBeNull();
  });
});

/** Build a relocation table the way relocs.c emit_relocs() writes it. */
function buildTable(r64: number[], rInv: number[], r32: number[]): Uint8Array {
  const words = [0, ...r64, 0, ...rInv, 0, ...r32];
  const b = new Uint8Array(words.length * 4);
  const dv = new DataView(b.buffer);
  words.forEach((w, i) => dv.setUint32(i * 4, w >>> 0, true));
  return b;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

describe('relocation table (synthetic)', () => {
  const elfPart = new Uint8Array(64).fill(0xee);

  it('parses the three lists backwards from the end', () => {
    const t = parseRelocs(concat(elfPart, buildTable([0x81000010, 0x81000020], [0x81000030], [0x81000040, 0x81000044, 0x81000048])), 64)!;
    expect(Array.from(t.relocs64)).toEqual([0x81000010, 0x81000020]);
    expect(Array.from(t.relocs32Inverse)).toEqual([0x81000030]);
    expect(Array.from(t.relocs32)).toEqual([0x81000040, 0x81000044, 0x81000048]);
    expect(t.tableOffset).toBe(64);
    expect(t.tableLength).toBe(9 * 4);
  });

  it('empty lists and no table', () => {
    const t = parseRelocs(concat(elfPart, buildTable([], [], [])), 64)!;
    expect([t.relocs32.length, t.relocs32Inverse.length, t.relocs64.length]).toEqual([0, 0, 0]);
    expect(parseRelocs(elfPart, 64)).toBeNull();
  });

  it('rejects a table that does not line up with the ELF end', () => {
    const d = concat(elfPart, concat(new Uint8Array([1, 0, 0, 0]), buildTable([0x81000010], [], [0x81000040])));
    expect(() => parseRelocs(d, 64)).toThrow(BadInputError);
    expect(() => parseRelocs(concat(elfPart, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), 64)).toThrow(/no terminating 0/);
    expect(() => parseRelocs(concat(elfPart, new Uint8Array(6)), 64)).toThrow(/multiple of 4/);
  });

  it('sign-extends entries to kernel addresses', () => {
    expect(relocAddress(0x81234567)).toBe(0xffffffff81234567n);
    expect(relocAddress(0x01000000)).toBe(0x01000000n);
  });

  it('applies each kind with the kernel arithmetic', () => {
    const image = new Uint8Array(0x100);
    const dv = new DataView(image.buffer);
    dv.setBigUint64(0x10, 0xffffffff81000100n, true); // 64-bit absolute
    dv.setUint32(0x20, 0x81000200, true); // R_X86_64_32S
    dv.setInt32(0x30, 0x00001000, true); // PC-relative to a per-CPU symbol
    const t = parseRelocs(concat(elfPart, buildTable([0x81000010], [0x81000030], [0x81000020])), 64)!;
    const delta = 0x3e000000n;
    applyRelocs(image, t, delta);
    expect(dv.getBigUint64(0x10, true)).toBe(0xffffffff81000100n + delta);
    expect(dv.getUint32(0x20, true)).toBe((0x81000200 + 0x3e000000) >>> 0);
    expect(dv.getInt32(0x30, true)).toBe(0x1000 - 0x3e000000);
    // Applying -delta undoes it.
    applyRelocs(image, t, -delta);
    expect(dv.getBigUint64(0x10, true)).toBe(0xffffffff81000100n);
    expect(dv.getUint32(0x20, true)).toBe(0x81000200);
    expect(dv.getInt32(0x30, true)).toBe(0x1000);
  });

  it('delta 0 is a no-op and out-of-kernel targets throw', () => {
    const image = new Uint8Array(0x100);
    const t = parseRelocs(concat(elfPart, buildTable([0x81000f00], [], [])), 64)!;
    applyRelocs(image, t, 0n);
    expect(image.every((b) => b === 0)).toBe(true);
    expect(() => applyRelocs(image, t, 0x200000n)).toThrow(/64-bit relocation outside of kernel/);
    const t2 = parseRelocs(concat(elfPart, buildTable([], [], [0x81000040])), 64)!;
    expect(() => applyRelocs(image, t2, 0x200000n, { limit: 0x20 })).toThrow(/32-bit relocation outside/);
  });
});

// Skipped, not passed, on a host without gcc or ld: nothing would be checked.
const gccAndLd = hostToolRuns('gcc') && hostToolRuns('ld');

describe('compressed-vmlinux-like ELF (built with gcc/ld when available)', () => {
  it.skipIf(!gccAndLd)(`is classified as a compressed vmlinux and its symbols are read${gccAndLd ? '' : ' (skipped: no gcc/ld on this host)'}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'bzemu-zo-'));
    try {
      const s = join(dir, 'head.S');
      const o = join(dir, 'head.o');
      const out = join(dir, 'vmlinux');
      writeFileSync(
        s,
        [
          '.section .head.text,"ax"',
          '.code32',
          '.globl startup_32',
          'startup_32: jmp startup_32',
          '.org 0x200',
          '.code64',
          '.globl startup_64',
          'startup_64: jmp startup_64',
          '.section .rodata..compressed,"a"',
          '.globl input_data',
          'input_data: .byte 0x28, 0xb5, 0x2f, 0xfd',
          '',
        ].join('\n'),
      );
      const as = spawnSync('gcc', ['-c', s, '-o', o], { encoding: 'utf8' });
      expect(as.status, as.stderr).toBe(0);
      const ld = spawnSync('ld', ['-pie', '--no-dynamic-linker', '-e', 'startup_64', '-Ttext-segment=0', o, '-o', out], { encoding: 'utf8' });
      expect(ld.status, ld.stderr).toBe(0);
      const elf = parseElf(readFileSync(out));
      expect(classifyKernelElf(elf)).toBe('compressed-vmlinux');
      const sym = elf.symbols.get('startup_64');
      expect(sym).toBeDefined();
      expect(sym!.value - elf.symbols.get('startup_32')!.value).toBe(0x200n);
      expect(sym!.section).toBe('.head.text');
      expect(elf.entry).toBe(sym!.value);
      const info = kernelInfo(out);
      expect(info.elf?.kernelKind).toBe('compressed-vmlinux');
      expect(info.hasSymbols).toBe(true);
      expect(info.elf!.symbols).toBeGreaterThanOrEqual(3);
      expect(renderInfo(info)).toMatch(/symbols\s+\d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.each(KERNEL_IDS)('native decompression of the real Debian kernel %s', (id) => {
  let k: RealKernel;
  let d: NativeDecompression;
  let elf: ElfFile;
  let relocs: RelocTable;
  let sysmap: Map<string, bigint>;
  let dir: string;
  beforeAll(() => {
    k = realKernel(id, { systemMap: true });
    sysmap = systemMapFor(id);
    dir = mkdtempSync(join(tmpdir(), 'bzemu-payload-'));
    d = decompressPayloadNative(k.bytes, join(dir, 'vmlinux.bin'));
    elf = parseElf(d.elfBytes);
    relocs = d.relocs!;
    return () => rmSync(dir, { recursive: true, force: true });
  }, FETCH_TIMEOUT_MS);

  const sym = (name: string): bigint => {
    const v = sysmap.get(name);
    if (v === undefined) throw new Error(`System.map has no ${name}`);
    return v;
  };

  it('yields exactly the size recorded in the payload trailer', () => {
    const p = locatePayload(k.bytes);
    expect(d.format).toBe(p.format);
    expect(d.decompressed.length).toBe(p.uncompressedSize);
  });

  it('starts with an x86-64 ELF executable (raw e_machine check)', () => {
    const b = d.elfBytes;
    expect(Array.from(b.subarray(0, 4))).toEqual([0x7f, 0x45, 0x4c, 0x46]);
    expect(b[4]).toBe(2); // ELFCLASS64
    expect(b[18]! | (b[19]! << 8)).toBe(62); // EM_X86_64
    expect(elf.machine).toBe(62);
    expect(classifyKernelElf(elf)).toBe('vmlinux');
    expect(elf.symbolCount).toBe(0); // vmlinux.bin is objcopy -S
  });

  it('wrote the ELF and the raw relocation table to the output path', () => {
    expect(readFileSync(join(dir, 'vmlinux.bin')).equals(Buffer.from(d.elfBytes))).toBe(true);
    expect(existsSync(join(dir, 'vmlinux.bin.relocs'))).toBe(true);
    expect(readFileSync(join(dir, 'vmlinux.bin.relocs')).length).toBe(relocs.tableLength);
    const info = kernelInfo(join(dir, 'vmlinux.bin'));
    expect(info.kind).toBe('elf64');
    expect(info.elf?.kernelKind).toBe('vmlinux');
    expect(info.version).toContain(k.cached.fetched.kernelRelease);
  });

  it('has segments and entry that agree with System.map', () => {
    expect(elf.entry).toBe(sym('phys_startup_64'));
    expect(elf.entry).toBe(sym('startup_64') - START_KERNEL_MAP);
    const loads = elf.programHeaders.filter((p) => p.type === PT_LOAD);
    expect(loads.length).toBe(elf.segments.length);
    expect(elf.segments[0]!.vaddr).toBe(sym('_text'));
    expect(elf.segments[0]!.paddr).toBe(LOAD_PHYSICAL_ADDR);
    // The per-CPU segment is linked at 0 and loaded at __per_cpu_load.
    const percpu = elf.segments.find((s) => s.vaddr === 0n)!;
    expect(percpu.paddr + START_KERNEL_MAP).toBe(sym('__per_cpu_load'));
    // init_size covers the whole decompressed kernel (VO__end - VO__text).
    const initSize = new DataView(k.bytes.buffer, k.bytes.byteOffset).getUint32(0x260, true);
    expect(BigInt(initSize)).toBeGreaterThanOrEqual(sym('_end') - sym('_text'));
  });

  it('lays out like parse_elf(): linux_banner is where System.map says', () => {
    const { base, image } = layoutSegments(elf);
    expect(base).toBe(LOAD_PHYSICAL_ADDR);
    const off = Number(sym('linux_banner') - IMAGE_BASE);
    const text = Buffer.from(image.subarray(off, off + 64)).toString('latin1');
    expect(text.startsWith(`Linux version ${k.cached.fetched.kernelRelease} `)).toBe(true);
  });

  it('has a relocation table that parses and lines up with the ELF end', () => {
    expect(relocs).toBeDefined();
    expect(relocs.tableOffset).toBe(elf.extent);
    expect(relocs.relocs32.length).toBeGreaterThan(1000);
    expect(relocs.relocs64.length).toBeGreaterThan(1000);
    expect(relocs.relocs32Inverse.length).toBeGreaterThan(100);
    expect(relocs.tableLength).toBe(4 * (3 + relocs.relocs32.length + relocs.relocs32Inverse.length + relocs.relocs64.length));
    for (const list of [relocs.relocs32, relocs.relocs32Inverse, relocs.relocs64]) {
      let unsorted = 0; // emit_relocs() sorts each list; entries are unique
      for (let i = 1; i < list.length; i++) if (!(list[i]! > list[i - 1]!)) unsorted++;
      expect(unsorted).toBe(0);
    }
  });

  it('relocates only inside [_text, __bss_start] and patches kernel addresses', () => {
    const lo = sym('_text');
    const hi = sym('__bss_start');
    const { image } = layoutSegments(elf);
    const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
    let outside = 0;
    let kernelPtr64 = 0;
    for (const r of relocs.relocs64) {
      const a = relocAddress(r);
      if (!(a >= lo && a <= hi)) outside++;
      else if (dv.getBigUint64(Number(a - IMAGE_BASE), true) >= START_KERNEL_MAP) kernelPtr64++;
    }
    let kernelPtr32 = 0;
    for (const r of relocs.relocs32) {
      const a = relocAddress(r);
      if (!(a >= lo && a <= hi)) outside++;
      else if (dv.getUint32(Number(a - IMAGE_BASE), true) >= 0x80000000) kernelPtr32++;
    }
    // A few are physical-address expressions (page tables, __pa_symbol); nearly all
    // are pointers into the kernel image.
    expect(kernelPtr64 / relocs.relocs64.length).toBeGreaterThan(0.99);
    expect(kernelPtr32 / relocs.relocs32.length).toBeGreaterThan(0.99);
    // Inverse relocations are PC-relative offsets to per-CPU variables from code.
    for (const r of relocs.relocs32Inverse) {
      const a = relocAddress(r);
      if (!(a >= lo && a <= hi)) outside++;
    }
    expect(outside).toBe(0);
  });

  it('KASLR relocation by delta changes exactly the listed fields and is reversible', () => {
    const { image } = layoutSegments(elf);
    const moved = image.slice();
    const delta = 0x2a000000n; // virt_addr - LOAD_PHYSICAL_ADDR, 2 MiB aligned
    applyRelocs(moved, relocs, delta, { limit: Number(sym('__bss_start') - sym('_text')) });
    const a = new DataView(image.buffer);
    const b = new DataView(moved.buffer);
    for (const r of relocs.relocs64.subarray(0, 2000)) {
      const off = Number(relocAddress(r) - IMAGE_BASE);
      expect(b.getBigUint64(off, true)).toBe(BigInt.asUintN(64, a.getBigUint64(off, true) + delta));
    }
    for (const r of relocs.relocs32.subarray(0, 2000)) {
      const off = Number(relocAddress(r) - IMAGE_BASE);
      expect(b.getUint32(off, true)).toBe((a.getUint32(off, true) + Number(delta)) >>> 0);
    }
    for (const r of relocs.relocs32Inverse.subarray(0, 2000)) {
      const off = Number(relocAddress(r) - IMAGE_BASE);
      expect(b.getInt32(off, true)).toBe((a.getInt32(off, true) - Number(delta)) | 0);
    }
    // Bytes outside the relocated fields are untouched: count differing bytes.
    let changed = 0;
    for (let i = 0; i < image.length; i++) if (image[i] !== moved[i]) changed++;
    const maxChanged = 8 * relocs.relocs64.length + 4 * (relocs.relocs32.length + relocs.relocs32Inverse.length);
    expect(changed).toBeGreaterThan(0);
    expect(changed).toBeLessThanOrEqual(maxChanged);
    applyRelocs(moved, relocs, -delta);
    expect(Buffer.from(moved).equals(Buffer.from(image))).toBe(true);
  });

  it('a truncated or corrupted decompressed kernel is rejected cleanly', () => {
    expect(() => parseElf(d.decompressed.subarray(0, 100000))).toThrow(BadInputError);
    // Only the first terminator left: the lists after it have no terminating 0.
    expect(() => parseRelocs(d.decompressed.subarray(0, elf.extent + 4), elf.extent)).toThrow(/no terminating 0/);
    // A wrong ELF length: the table no longer starts where the ELF ends.
    expect(() => parseRelocs(d.decompressed, elf.extent + 4)).toThrow(BadInputError);
    expect(() => parseRelocs(d.decompressed, elf.extent - 4)).toThrow(BadInputError);
  });
});
