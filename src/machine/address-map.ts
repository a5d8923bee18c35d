import type { KernelImage } from '../kernel/kernel-image.js';

/**
 * Where the two copies of the decompressor live at run time: the one the
 * firmware loaded, and the one startup_64 moves to the end of the
 * decompression buffer. Computed the way head_64.S computes it:
 *   rbp = max(ALIGN_UP(load, kernel_alignment), LOAD_PHYSICAL_ADDR)
 *   rbx = rbp + init_size - _end
 */
export class AddressMap {
  readonly loadBase: number;
  readonly outputBase: number;
  /** From the setup header at first; set from the guest's own arithmetic once it has done it (setRelocBase). */
  relocBase: number | null;
  readonly imageLength: number;

  constructor(private readonly kernel: KernelImage, loadAddress: number) {
    const h = kernel.header;
    const pref = Number(h.prefAddress);
    this.loadBase = loadAddress;
    const align = h.kernelAlignment || 0x200000;
    const aligned = Math.ceil(loadAddress / align) * align;
    this.outputBase = h.relocatableKernel ? Math.max(aligned, pref) : pref;
    this.relocBase = kernel.end !== null ? this.outputBase + h.initSize - kernel.end : null;
    this.imageLength = kernel.end ?? kernel.image.length;
  }

  /** Image offset of a linear address in either copy, or -1. */
  offsetOf(lo: number, hi: number): number {
    if (hi !== 0) return -1;
    if (this.relocBase !== null && lo >= this.relocBase && lo < this.relocBase + this.imageLength) return lo - this.relocBase;
    if (lo >= this.loadBase && lo < this.loadBase + this.imageLength) return lo - this.loadBase;
    return -1;
  }

  /** Image offsets of .bss [start, end): from symbols, else from the image's own .bss clear. */
  get bss(): { start: number; end: number } | null {
    const sym = this.kernel.symbols;
    const start = sym?.get('_bss')?.offset, end = sym?.get('_ebss')?.offset;
    if (start !== undefined && end !== undefined && end > start) return { start, end };
    return this.kernel.landmarks.bss;
  }

  /**
   * Name of a data address: "symbol+0x2" with symbols, else by section of
   * the image's own layout (".bss+0x12"), else "image+0x1234".
   */
  describeData(pa: number): string {
    const off = this.offsetOf(pa, 0);
    if (off < 0) return '';
    const name = this.kernel.symbols?.describe(off);
    if (name) return name;
    const bss = this.bss;
    if (bss !== null && off >= bss.start && off < bss.end) return `.bss+0x${(off - bss.start).toString(16)}`;
    return `image+0x${off.toString(16)}`;
  }

  /** The sized symbol holding a data address, when the image has symbols. */
  symbolContaining(pa: number): { name: string; offset: number; size: number } | null {
    const off = this.offsetOf(pa, 0);
    return off < 0 ? null : this.kernel.symbols?.containing(off) ?? null;
  }

  /** ".bss+0x12" for an address inside either copy's .bss, else null (names independent of symbols). */
  sectionOffset(pa: number): string | null {
    const off = this.offsetOf(pa, 0);
    const bss = this.bss;
    if (off < 0 || bss === null || off < bss.start || off >= bss.end) return null;
    return `.bss+0x${(off - bss.start).toString(16)}`;
  }

  /** Human name of an address: "symbol+0x10", "image+0x1234", or the bare address. */
  describe(lo: number, hi = 0): string {
    const off = this.offsetOf(lo, hi);
    if (off < 0) return '';
    const name = this.kernel.symbols?.describe(off);
    return name ?? `image+0x${off.toString(16)}`;
  }
}
