import { decodeInsn, type CodeBits } from './decode.js';
import type { Insn } from './insn.js';

/*
 * Decoded instructions shared by CPUs that run the same code. A fuzz
 * campaign boots one snapshot thousands of times, each time in a new
 * machine whose decode cache starts empty, and decoding (through iced's
 * WebAssembly) was about a quarter of each boot. An Insn depends only on its
 * bytes and the code size, not on its address (branch targets and
 * RIP-relative displacements are kept relative to the next instruction, see
 * decode.ts), and nothing changes it once decoded, so the same object can
 * serve every machine. Entries are found by a hash of the byte window the
 * CPU decoded from, and a hit counts only when the window starts with the
 * instruction's own bytes: then decoding the window gives that instruction
 * again (iced reads an instruction's bytes and nothing after them). Whole
 * code pages are shared the same way (pageInsns): a CPU that starts running
 * in a page whose 4,096 bytes match takes the instructions other CPUs found
 * there without looking each one up.
 */
export class DecodeMemo {
  /** By a hash of the window and the code size; a hit is checked against the instruction's own bytes. */
  private readonly byWindow = new Map<number, { insn: Insn; bytes: Uint8Array; bits: CodeBits }>();
  /**
   * Code pages by physical page number: the bytes the page held when its
   * table was made, and the instructions found there by page offset (only
   * those that end inside the page, so they depend on these bytes alone).
   */
  private readonly pages = new Map<number, { bits: CodeBits; bytes: Uint8Array; insns: Map<number, Insn> }>();

  /** At most `capacity` windows are kept (then it starts again: code of a boot is a few thousand instructions). */
  constructor(readonly capacity = 1 << 16) {}

  /** decodeInsn(bytes, ipLo, ipHi, false, bits), remembered. */
  decode(bytes: Uint8Array, ipLo: number, ipHi: number, bits: CodeBits): Insn | null {
    let key = (0x811c9dc5 ^ bits ^ (bytes.length << 8)) | 0;
    for (let k = 0; k < bytes.length; k++) key = Math.imul(key ^ bytes[k], 0x01000193);
    const known = this.byWindow.get(key);
    // An instruction's decoding depends on its own bytes alone: the window must start with them (and have held them).
    if (known !== undefined && known.bits === bits && sameStart(bytes, known.bytes)) return known.insn;
    const insn = decodeInsn(bytes, ipLo, ipHi, false, bits);
    if (insn !== null) {
      if (this.byWindow.size >= this.capacity) this.byWindow.clear();
      this.byWindow.set(key, { insn, bytes: insn.bytes, bits });
    }
    return insn;
  }

  /**
   * The instructions known for code page `pfn` holding `bytes` (all 4096 of
   * them) run as `bits`-bit code, by page offset: shared by every CPU whose
   * page has the same bytes, which adds what it decodes there. Each CPU that
   * starts running in a page asks again, so pages that differ from run to run
   * are compared, never trusted (the last bytes seen win).
   */
  pageInsns(pfn: number, bits: CodeBits, bytes: Uint8Array): Map<number, Insn> {
    const known = this.pages.get(pfn);
    if (known !== undefined && known.bits === bits && sameBytes(bytes, known.bytes)) return known.insns;
    if (this.pages.size >= this.capacity >>> 4) this.pages.clear();
    const insns = new Map<number, Insn>();
    this.pages.set(pfn, { bits, bytes, insns });
    return insns;
  }

  get size(): number {
    return this.byWindow.size;
  }
}

/** Whether `window` starts with `prefix`. */
function sameStart(window: Uint8Array, prefix: Uint8Array): boolean {
  if (window.length < prefix.length) return false;
  for (let k = 0; k < prefix.length; k++) if (window[k] !== prefix[k]) return false;
  return true;
}

/** Whether two byte arrays hold the same bytes (a native compare: code pages are 4 KiB). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
