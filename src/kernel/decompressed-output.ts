import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { KernelImage } from './kernel-image.js';

/** Where the decompressor put the kernel, as seen at the jump into it. */
export interface DecompressedOutput {
  /** Physical address of the output buffer (LOAD_PHYSICAL_ADDR maps here). */
  output: number;
  /** Length of vmlinux.bin plus its relocation table (the payload's size trailer). */
  outputLength: number;
  /** KASLR virtual displacement (virt_addr - LOAD_PHYSICAL_ADDR), inferred from the relocated 64-bit pointers; null without a relocation table. */
  virtualOffset: bigint | null;
  relocationCount: number;
}

/**
 * Inspect guest memory at kernel entry. The output buffer is aligned to
 * kernel_alignment and the entry point lies in its first 2 MiB; the
 * relocation table still sits at the end of the decompressed data. The
 * virtual offset is the displacement of the lowest relocated kernel pointer,
 * rounded down to the alignment (KASLR only picks aligned offsets, and the
 * kernel always points at its own first page).
 */
export function inspectOutput(mem: PhysicalMemory, kernel: KernelImage, kernelEntry: number): DecompressedOutput {
  const h = kernel.header;
  const align = h.kernelAlignment || 0x200000;
  const output = Math.floor(kernelEntry / align) * align;
  const trailer = h.payloadOffset + h.payloadLength - 4;
  const img = kernel.image;
  const outputLength = (img[trailer] | (img[trailer + 1] << 8) | (img[trailer + 2] << 16) | (img[trailer + 3] << 24)) >>> 0;
  const pref = Number(h.prefAddress);
  let at = output + outputLength - 4;
  const lists: number[][] = [[], [], []];
  for (let list = 0; list < 3; list++) {
    for (let guard = 0; guard < 4_000_000; guard++) {
      if (at < output) return { output, outputLength, virtualOffset: null, relocationCount: 0 };
      const v = mem.read32(at);
      at -= 4;
      if (v === 0) break;
      lists[list].push(v);
    }
  }
  // Kernel pointers lie at or above START_KERNEL_MAP + pref: high half all ones, low half at least 2^31 + pref.
  // Plain numbers, not BigInt: there are tens of thousands of them.
  const floor = 0x80000000 + pref;
  let minOffset = Infinity;
  for (const entry of lists[2]) {
    // The entry is the sign-extended 32-bit virtual address of the pointer: its offset from START_KERNEL_MAP is entry + 2^31.
    const site = output + (entry | 0) + 0x80000000 - pref;
    if (site < output || site + 8 > output + outputLength) continue;
    if (mem.read32(site + 4) >>> 0 !== 0xffffffff) continue;
    const lo = mem.read32(site) >>> 0;
    if (lo < floor) continue;
    minOffset = Math.min(minOffset, lo - floor);
  }
  const virtualOffset = minOffset === Infinity ? null : BigInt(Math.floor(minOffset / align) * align);
  return { output, outputLength, virtualOffset, relocationCount: lists[0].length + lists[1].length + lists[2].length };
}
