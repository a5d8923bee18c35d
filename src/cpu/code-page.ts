import type { Insn } from './insn.js';
import type { Block } from './block.js';

/** Key of an empty slot. */
const EMPTY = -1;
/** Slots of a new page's table. */
const INITIAL_SLOTS = 8;
/** Slots of a full-size table: one per byte of the page, so slot = offset, no probing. */
const PAGE_SLOTS = 4096;

/**
 * Decoded instructions and translated blocks of one physical code page, by
 * page offset. An open-addressed table (linear probing from `offset & mask`)
 * that doubles while more than half full, up to one slot per byte: most pages
 * run a handful of instructions and cost a few hundred bytes, and a page that
 * runs many ends up indexed directly by offset, as a plain array would be. An
 * instruction and the block starting at it share a slot.
 */
export class CodePage {
  /** Page offset stored in each slot (EMPTY: none). */
  private keys: Int16Array;
  insns: (Insn | undefined)[];
  blocks: (Block | undefined)[];
  private mask: number;
  /** Instructions stored. */
  count = 0;
  /** For an instruction that runs into the next linear page: the physical page its tail bytes were read from, by offset (most pages have none). */
  tails: Map<number, number> | null = null;
  /** Cpu.codeClock when execution last entered this page from elsewhere (eviction order). */
  used = 0;
  /**
   * Instructions other CPUs found in a page with these same bytes, by offset
   * (a fuzz runner's DecodeMemo.pageInsns; null: none shared). Only
   * instructions that end inside the page are in it or added to it.
   */
  shared: Map<number, Insn> | null = null;

  constructor() {
    this.keys = new Int16Array(INITIAL_SLOTS).fill(EMPTY);
    this.insns = new Array<Insn | undefined>(INITIAL_SLOTS);
    this.blocks = new Array<Block | undefined>(INITIAL_SLOTS);
    this.mask = INITIAL_SLOTS - 1;
  }

  /** Slot of the instruction at page offset `off`, or -1. */
  find(off: number): number {
    const keys = this.keys, mask = this.mask;
    let s = off & mask;
    for (;;) {
      const k = keys[s];
      if (k === off) return s;
      if (k === EMPTY) return -1;
      s = (s + 1) & mask;
    }
  }

  /** The instruction at `off`, if decoded. */
  insnAt(off: number): Insn | undefined {
    const s = this.find(off);
    return s < 0 ? undefined : this.insns[s];
  }

  /** The block starting at `off`, if built. */
  blockAt(off: number): Block | undefined {
    const s = this.find(off);
    return s < 0 ? undefined : this.blocks[s];
  }

  /** Store (or replace) the instruction at `off`; returns its slot. Slots of other offsets may move. */
  setInsn(off: number, insn: Insn): number {
    let s = this.find(off);
    if (s < 0) {
      if (2 * (this.count + 1) > this.mask + 1 && this.mask + 1 < PAGE_SLOTS) this.grow();
      s = this.freeSlot(off);
      this.keys[s] = off;
      this.count++;
    }
    this.insns[s] = insn;
    return s;
  }

  /** Store the block starting at `off` (its first instruction must be stored). */
  setBlock(off: number, block: Block): void {
    this.blocks[this.find(off)] = block;
  }

  private freeSlot(off: number): number {
    const keys = this.keys, mask = this.mask;
    let s = off & mask;
    while (keys[s] !== EMPTY) s = (s + 1) & mask;
    return s;
  }

  private grow(): void {
    const oldKeys = this.keys, oldInsns = this.insns, oldBlocks = this.blocks;
    const size = Math.min(PAGE_SLOTS, (this.mask + 1) * 2);
    this.keys = new Int16Array(size).fill(EMPTY);
    this.insns = new Array<Insn | undefined>(size);
    this.blocks = new Array<Block | undefined>(size);
    this.mask = size - 1;
    for (let k = 0; k < oldKeys.length; k++) {
      const off = oldKeys[k];
      if (off === EMPTY) continue;
      const s = this.freeSlot(off);
      this.keys[s] = off;
      this.insns[s] = oldInsns[k];
      this.blocks[s] = oldBlocks[k];
    }
  }
}
