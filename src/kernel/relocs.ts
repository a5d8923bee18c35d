/**
 * The x86-64 kernel relocation table appended to vmlinux.bin before compression
 * (CONFIG_X86_NEED_RELOCS; arch/x86/boot/compressed/Makefile: vmlinux.bin.all =
 * vmlinux.bin + vmlinux.relocs), as written by arch/x86/tools/relocs.c emit_relocs()
 * and consumed by arch/x86/boot/compressed/misc.c handle_relocations().
 *
 * Layout, in file order (all little-endian u32):
 *   0, relocs64..., 0, inverse relocs32 (relocs32neg)..., 0, relocs32...
 * each list sorted ascending. The decompressor reads it backwards from the end of the
 * decompressed output: the 32-bit list until a 0, then the inverse 32-bit list until a 0,
 * then the 64-bit list until a 0. Each entry is the kernel virtual address of the field
 * to patch, truncated to 32 bits and sign-extended back (0x81xxxxxx -> 0xffffffff81xxxxxx);
 * references inside the per-CPU section are already moved to its load address
 * (relocs.c adds __per_cpu_load).
 *
 * With delta = (KASLR virtual base) - LOAD_PHYSICAL_ADDR:
 *   32-bit:          *(u32 *)p += delta
 *   inverse 32-bit:  *(s32 *)p -= delta   (PC-relative references to per-CPU symbols)
 *   64-bit:          *(u64 *)p += delta
 * where p = output + (address - __START_KERNEL_map - LOAD_PHYSICAL_ADDR), i.e. the offset
 * in the image laid out by parse_elf() from the kernel's _text.
 */
import { BadInputError } from './errors.js';

/** __START_KERNEL_map on x86-64. */
export const START_KERNEL_MAP = 0xffffffff80000000n;
/** CONFIG_PHYSICAL_START of Debian's kernels (and the upstream default). */
export const DEFAULT_LOAD_PHYSICAL_ADDR = 0x1000000n;

export interface RelocTable {
  /** File order (ascending), raw 32-bit entries. */
  relocs32: Uint32Array;
  relocs32Inverse: Uint32Array;
  relocs64: Uint32Array;
  /** Offset of the table in the decompressed output (= end of the ELF). */
  tableOffset: number;
  /** Bytes of the table, terminators included. */
  tableLength: number;
}

/** Sign-extend a raw 32-bit relocation entry to the 64-bit kernel virtual address. */
export function relocAddress(entry: number): bigint {
  return BigInt.asUintN(64, BigInt(entry | 0));
}

/**
 * Parse the relocation table from the end of the decompressed kernel (vmlinux.bin followed
 * by the table). `elfLength` is the size of the ELF part (ElfFile.extent); the table must
 * start exactly there. Returns null if there is nothing after the ELF (a kernel built
 * without CONFIG_X86_NEED_RELOCS). Throws BadInputError if the table is malformed.
 */
export function parseRelocs(decompressed: Uint8Array, elfLength: number): RelocTable | null {
  const total = decompressed.length;
  if (elfLength > total) throw new BadInputError(`ELF length ${elfLength} exceeds the decompressed size ${total}`);
  const tail = total - elfLength;
  if (tail === 0) return null;
  if (tail % 4 !== 0) {
    throw new BadInputError(`relocation table size ${tail} after the ELF is not a multiple of 4`);
  }
  const dv = new DataView(decompressed.buffer, decompressed.byteOffset, decompressed.byteLength);
  let pos = total; // one past the next word to read, walking backwards
  const readList = (what: string): Uint32Array => {
    const start = pos;
    for (;;) {
      if (pos - 4 < elfLength) throw new BadInputError(`relocation table: ${what} list has no terminating 0`);
      pos -= 4;
      if (dv.getUint32(pos, true) === 0) break;
    }
    // Entries are [pos + 4, start) in file (ascending) order.
    const out = new Uint32Array((start - pos - 4) / 4);
    for (let i = 0; i < out.length; i++) out[i] = dv.getUint32(pos + 4 + i * 4, true);
    return out;
  };
  const relocs32 = readList('32-bit');
  const relocs32Inverse = readList('inverse 32-bit');
  const relocs64 = readList('64-bit');
  if (pos !== elfLength) {
    throw new BadInputError(
      `relocation table does not line up with the end of the ELF: it starts at ${pos}, the ELF ends at ${elfLength}`,
    );
  }
  return { relocs32, relocs32Inverse, relocs64, tableOffset: elfLength, tableLength: tail };
}

export interface ApplyRelocsOptions {
  /**
   * Kernel virtual address of image offset 0: __START_KERNEL_map + LOAD_PHYSICAL_ADDR
   * (0xffffffff81000000 by default).
   */
  imageBase?: bigint;
  /**
   * Highest image offset a relocation may touch, as in handle_relocations()
   * (max_addr = VO___bss_start - VO__text). Default: the image length.
   */
  limit?: number;
}

/**
 * Apply the relocations to an image laid out like parse_elf() output (see layoutSegments)
 * for a KASLR virtual displacement `delta` (= virt_addr - LOAD_PHYSICAL_ADDR), in place.
 * Same order and arithmetic as handle_relocations(); a target outside [0, limit] or past
 * the image throws an Error naming the list, as the kernel's error() would.
 */
export function applyRelocs(
  segmentsImage: Uint8Array,
  relocs: RelocTable,
  delta: bigint,
  options: ApplyRelocsOptions = {},
): void {
  if (delta === 0n) return; // "No relocation needed"
  const base = options.imageBase ?? START_KERNEL_MAP + DEFAULT_LOAD_PHYSICAL_ADDR;
  const limit = options.limit ?? segmentsImage.length;
  const dv = new DataView(segmentsImage.buffer, segmentsImage.byteOffset, segmentsImage.byteLength);
  const d32 = Number(BigInt.asUintN(32, delta));
  const d64 = BigInt.asUintN(64, delta);
  const target = (entry: number, width: number, what: string): number => {
    const off = relocAddress(entry) - base;
    if (off < 0n || off > BigInt(limit) || off + BigInt(width) > BigInt(segmentsImage.length)) {
      throw new Error(`${what} relocation outside of kernel! (address 0x${relocAddress(entry).toString(16)})`);
    }
    return Number(off);
  };
  // Same order as the kernel: 32-bit, inverse 32-bit, 64-bit, each read from the end.
  for (let i = relocs.relocs32.length - 1; i >= 0; i--) {
    const p = target(relocs.relocs32[i]!, 4, '32-bit');
    dv.setUint32(p, (dv.getUint32(p, true) + d32) >>> 0, true);
  }
  for (let i = relocs.relocs32Inverse.length - 1; i >= 0; i--) {
    const p = target(relocs.relocs32Inverse[i]!, 4, 'inverse 32-bit');
    dv.setUint32(p, (dv.getUint32(p, true) - d32) >>> 0, true);
  }
  for (let i = relocs.relocs64.length - 1; i >= 0; i--) {
    const p = target(relocs.relocs64[i]!, 8, '64-bit');
    dv.setBigUint64(p, BigInt.asUintN(64, dv.getBigUint64(p, true) + d64), true);
  }
}
