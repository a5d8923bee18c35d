import { decodeRecord, type CodeBits } from './decode.js';
import { Insn } from './insn.js';
import { insnFromRecord, type InsnRecord } from './insn-record.js';

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
 *
 * Behind the windows, instructions are also kept by their own bytes, as
 * records (insn-record.ts): a window that starts with known bytes needs no
 * decoder, and records saved by an earlier process (the CLI keeps them in
 * the bzemu cache, src/cli/decoded-store.ts) serve a new one. Decoding
 * through iced's WebAssembly costs tens of microseconds an instruction in a
 * fresh process: a tenth of a verdict at extract_kernel.
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

  /** Records by a hash of the code size and the instruction's bytes (checked on a hit); `insn` is built on first use. */
  private readonly byBytes = new Map<number, Array<{ record: InsnRecord; insn: Insn | null; used: boolean }>>();
  private recordCount = 0;
  /** Instructions this memo had to decode (none known by window or bytes; windows that end too early not counted). */
  decodedCount = 0;
  /** Records this memo made from its own decoding (those a saved set lacked). */
  recordsAdded = 0;

  /**
   * At most `capacity` windows and records are kept (then it starts again:
   * code of a boot is a few thousand instructions). `sharePages`: whether
   * CPUs share whole code pages (pageInsns), which pays when many machines
   * run the same code (a fuzz runner's), not for one boot.
   */
  constructor(readonly capacity = 1 << 16, readonly sharePages = true) {}

  /** decodeInsn(bytes, ipLo, ipHi, false, bits), remembered. */
  decode(bytes: Uint8Array, ipLo: number, ipHi: number, bits: CodeBits): Insn | null {
    let key = (0x811c9dc5 ^ bits ^ (bytes.length << 8)) | 0;
    for (let k = 0; k < bytes.length; k++) key = Math.imul(key ^ bytes[k], 0x01000193);
    const known = this.byWindow.get(key);
    // An instruction's decoding depends on its own bytes alone: the window must start with them (and have held them).
    if (known !== undefined && known.bits === bits && sameStart(bytes, known.bytes)) return known.insn;
    let insn = this.byOwnBytes(bytes, bits);
    if (insn === null) {
      const decoded = decodeRecord(bytes, ipLo, ipHi, false, bits);
      if (decoded === null) return null;
      this.decodedCount++;
      if (decoded instanceof Insn) {
        insn = decoded;
      } else {
        insn = insnFromRecord(decoded);
        this.addRecord(decoded, insn, true);
      }
    }
    if (this.byWindow.size >= this.capacity) this.byWindow.clear();
    this.byWindow.set(key, { insn, bytes: insn.bytes, bits });
    return insn;
  }

  /**
   * The instruction whose bytes start the window, if a record has them.
   * x86 encodings are prefix-free (an instruction's bytes decide where it
   * ends), so at most one record can match.
   */
  private byOwnBytes(window: Uint8Array, bits: CodeBits): Insn | null {
    let key = bytesKeySeed(bits);
    for (let n = 0; n < window.length; n++) {
      key = Math.imul(key ^ window[n], 0x01000193);
      const list = this.byBytes.get(key ^ (n + 1));
      if (list === undefined) continue;
      for (const entry of list) {
        if (entry.record.bits !== bits || entry.record.bytes.length !== n + 1 || !sameStart(window, entry.record.bytes)) continue;
        entry.used = true;
        return (entry.insn ??= insnFromRecord(entry.record));
      }
    }
    return null;
  }

  private addRecord(record: InsnRecord, insn: Insn | null, used: boolean): void {
    if (this.recordCount >= this.capacity) {
      this.byBytes.clear();
      this.recordCount = 0;
    }
    let key = bytesKeySeed(record.bits);
    for (let n = 0; n < record.bytes.length; n++) key = Math.imul(key ^ record.bytes[n], 0x01000193);
    key ^= record.bytes.length;
    const list = this.byBytes.get(key);
    if (list?.some((e) => e.record.bits === record.bits && sameBytes(e.record.bytes, record.bytes))) return;
    if (list === undefined) this.byBytes.set(key, [{ record, insn, used }]);
    else list.push({ record, insn, used });
    this.recordCount++;
    if (insn !== null) this.recordsAdded++;
  }

  /** Add records (saved by an earlier run): instructions with these bytes need no decoding from now on. */
  addRecords(records: readonly InsnRecord[]): void {
    for (const record of records) this.addRecord(record, null, false);
  }

  /** The records held: those this memo used or decoded first, then the rest. */
  records(): InsnRecord[] {
    const used: InsnRecord[] = [];
    const unused: InsnRecord[] = [];
    for (const list of this.byBytes.values()) for (const e of list) (e.used ? used : unused).push(e.record);
    return used.concat(unused);
  }

  /**
   * The instructions known for code page `pfn` holding `bytes` (all 4096 of
   * them) run as `bits`-bit code, by page offset: shared by every CPU whose
   * page has the same bytes, which adds what it decodes there. Each CPU that
   * starts running in a page asks again, so pages that differ from run to run
   * are compared, never trusted (the last bytes seen win). Null when this
   * memo shares no pages.
   */
  pageInsns(pfn: number, bits: CodeBits, bytes: Uint8Array): Map<number, Insn> | null {
    if (!this.sharePages) return null;
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

/** Start of the hash by which records are found (FNV-1a over the code size, then the bytes, then xor the length). */
function bytesKeySeed(bits: CodeBits): number {
  return Math.imul(0x811c9dc5 ^ bits, 0x01000193);
}

/** Whether `window` starts with `prefix`. */
function sameStart(window: Uint8Array, prefix: Uint8Array): boolean {
  if (window.length < prefix.length) return false;
  for (let k = 0; k < prefix.length; k++) if (window[k] !== prefix[k]) return false;
  return true;
}

/** Whether two byte arrays hold the same bytes (a native compare: code pages are 4 KiB). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
