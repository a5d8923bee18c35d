import type { WasmArena } from '../memory/wasm-arena.js';

/*
 * The retired-instruction trace: a hash over every retired RIP, and a ring of
 * the most recent ones for reports.
 *
 * Translated blocks retire a whole run of instructions at once, so both are
 * built to be updated per run rather than per instruction:
 * - the hash is a polynomial over the RIPs, h' = h * P + term(rip) mod 2^32,
 *   which over k instructions is h * P^k + S_k with constants of the block;
 * - a ring entry is either one RIP (the interpreter) or a translated
 *   block's run: its address list and how many instructions it retired.
 * A block that is running has retired its prefix without a ring entry yet
 * (`open`), so a reader in the middle of a block (an event listener) still
 * sees every instruction retired so far.
 */

export const TRACE_SEED = 0x811c9dc5 | 0;
export const TRACE_P = 0x01000193;
const TRACE_Q = 0x9e3779b1 | 0;

/** What one retired RIP adds to the hash. */
function ripTerm(lo: number, hi: number): number {
  return (lo ^ Math.imul(hi, TRACE_Q)) | 0;
}

/** The hash after one more retired RIP. */
export function hashStep(h: number, lo: number, hi: number): number {
  return (Math.imul(h, TRACE_P) + ripTerm(lo, hi)) | 0;
}

/**
 * Constants that retire the first k addresses of a block in one step:
 * hash' = hash * pow[k] + sum[k] (mod 2^32), for k = 0..addrs.length.
 */
export function blockHashConstants(addrs: Uint32Array, hi: number): { pow: Int32Array; sum: Int32Array } {
  const n = addrs.length;
  const pow = new Int32Array(n + 1);
  const sum = new Int32Array(n + 1);
  pow[0] = 1;
  for (let k = 0; k < n; k++) {
    pow[k + 1] = Math.imul(pow[k], TRACE_P);
    sum[k + 1] = hashStep(sum[k], addrs[k], hi);
  }
  return { pow, sum };
}

/**
 * The hash after `k` more runs of a block's whole pass, each one step
 * hash' = hash * pow + sum (mod 2^32): the k-th power of that affine map,
 * by repeated squaring (powers of one map commute).
 */
export function repeatHash(h: number, pow: number, sum: number, k: number): number {
  let a = 1, b = 0; // the map so far: x -> x * a + b
  let pa = pow, pb = sum; // the map applied 2^j times
  for (let r = k; r > 0; r = Math.floor(r / 2)) {
    if (r % 2 === 1) {
      b = (Math.imul(b, pa) + pb) | 0;
      a = Math.imul(a, pa);
    }
    pb = (Math.imul(pb, pa) + pb) | 0;
    pa = Math.imul(pa, pa);
  }
  return (Math.imul(h, a) + b) | 0;
}

export class TraceRing {
  readonly mask: number;
  /**
   * Per entry: a block's id (see register), or 0 for the one RIP in `lo`. A
   * block entry retired `count` instructions, the j-th at its address
   * j mod length (a block that loops on itself repeats in one entry). In the
   * arena when there is one: blocks compiled to WebAssembly write entries too.
   */
  readonly ids: Int32Array;
  readonly lo: Uint32Array;
  readonly hi: Uint32Array;
  readonly count: Float64Array;
  /** Entries written so far (the next goes to entries & mask). */
  entries = 0;
  /** The running translated block's address list, and the retired count when it was entered. */
  open: Uint32Array | null = null;
  openIcount = 0;
  /** Address lists of translated blocks by id (id 0: none). */
  private readonly blockAddrs: Uint32Array[] = [new Uint32Array(0)];
  /** Where the arrays lie in the arena (-1: not in one). */
  readonly idsAddress: number;
  readonly hiAddress: number;
  readonly countAddress: number;

  /** `size`: a power of two; the ring then holds at least the last `size` instructions. */
  constructor(readonly size: number, arena: WasmArena | null = null) {
    this.mask = size - 1;
    const at = arena?.alloc(20 * size, 8) ?? { offset: 0, buffer: new ArrayBuffer(20 * size) };
    this.countAddress = arena === null ? -1 : at.offset;
    this.idsAddress = arena === null ? -1 : at.offset + 8 * size;
    this.hiAddress = arena === null ? -1 : at.offset + 12 * size;
    this.count = new Float64Array(at.buffer, at.offset, size);
    this.ids = new Int32Array(at.buffer, at.offset + 8 * size, size);
    this.hi = new Uint32Array(at.buffer, at.offset + 12 * size, size);
    this.lo = new Uint32Array(at.buffer, at.offset + 16 * size, size);
  }

  /** An id for a translated block's address list, for its ring entries. */
  register(addrs: Uint32Array): number {
    this.blockAddrs.push(addrs);
    return this.blockAddrs.length - 1;
  }

  /** One retired RIP (the interpreter's entry). */
  add(lo: number, hi: number): void {
    const t = this.entries++ & this.mask;
    this.ids[t] = 0;
    this.lo[t] = lo;
    this.hi[t] = hi;
  }

  /** Forget everything (a restored machine starts a new trace). */
  reset(): void {
    this.entries = 0;
    this.open = null;
  }

  /**
   * The last `n` retired RIPs, oldest first, as [lo, hi] pairs, given the
   * retired count now and the high half of the running block's RIPs.
   */
  recent(n: number, icount: number, openHi: number): Array<[number, number]> {
    const want = Math.min(n, this.size, icount);
    const newestFirst: Array<[number, number]> = [];
    const open = this.open;
    if (open !== null) {
      for (let j = icount - this.openIcount - 1; j >= 0 && newestFirst.length < want; j--) newestFirst.push([open[j % open.length], openHi]);
    }
    const oldest = Math.max(0, this.entries - this.size);
    for (let e = this.entries - 1; e >= oldest && newestFirst.length < want; e--) {
      const t = e & this.mask;
      const id = this.ids[t];
      if (id === 0) {
        newestFirst.push([this.lo[t], this.hi[t]]);
        continue;
      }
      const block = this.blockAddrs[id];
      for (let j = this.count[t] - 1; j >= 0 && newestFirst.length < want; j--) newestFirst.push([block[j % block.length], this.hi[t]]);
    }
    return newestFirst.reverse();
  }
}
