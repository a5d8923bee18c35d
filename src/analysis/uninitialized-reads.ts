import type { Machine } from '../machine/machine.js';

/** Reads of one location by one instruction, of memory nothing had written. */
export interface UninitializedRead {
  address: string;
  /** The data it read, by symbol when the image has symbols, else by section (".bss+0x12"). */
  symbol: string;
  /** ".bss+0x12": the location by the image's own layout, whatever the symbols say. */
  section: string | null;
  size: number;
  /** What the bytes held (poison) the first time: little-endian hex of `size` bytes. */
  value: string;
  rip: string;
  /** The function that read it. */
  reader: string;
  /** Instruction count at the first such read. */
  instruction: number;
  /** How many times this instruction read this location before anything wrote it. */
  count: number;
}

const MAX_REPORTS = 200;

function hex(v: number): string {
  return '0x' + (v >>> 0).toString(16);
}

/**
 * Shadow-memory detector for the decompressor's `.bss` as the firmware left
 * it: every byte of [_bss, _end) of the loaded image starts "never written";
 * an instruction that reads such a byte before anything wrote it is reported
 * with the symbol it belongs to, the reader and the value it got, once per
 * (reader, location) with a count. The relocated copy is cleared at
 * .Lrelocated, so only the loaded copy matters, and only until then.
 */
export class UninitializedReadDetector {
  readonly reads: UninitializedRead[] = [];
  /** Reports by (address, reader RIP). */
  private readonly byKey = new Map<string, UninitializedRead>();
  /** Every byte address some read touched while it was unwritten (the search space of a fuzz minimizer). */
  private readonly bytes = new Set<number>();
  /** Reads beyond the report cap (still counted in `bytes`). */
  dropped = 0;
  /** Told of each new report while the CPU is still at the reading instruction (a run report takes its trace window then). */
  onRead: ((read: UninitializedRead) => void) | null = null;

  constructor(private readonly machine: Machine) {}

  /** Track the loaded image's .bss and what follows it up to _end. */
  install(): { start: number; end: number } | null {
    const { kernel, addresses, mem, cpu } = this.machine;
    if (kernel.end === null) return null;
    // From _bss: the padding between the file's last byte and _bss is copied with the image but never used.
    const start = addresses.loadBase + (addresses.bss?.start ?? kernel.image.length);
    const end = addresses.loadBase + kernel.end;
    if (end <= start) return null;
    mem.trackUninitialized(start, end - start);
    cpu.uninitializedReadListener = (pa, size, lo, hi) => this.record(pa, size, lo, hi);
    return { start, end };
  }

  /**
   * Stop at the .bss clear: from then on the loaded copy is dead memory that
   * the decompressed kernel overwrites (zstd's wild copies over-read it).
   */
  stop(): void {
    this.machine.cpu.uninitializedReadListener = null;
    this.machine.mem.tracked.fill(0);
  }

  /** Physical addresses of the never-written bytes the run read, ascending. */
  unwrittenBytesRead(): number[] {
    return [...this.bytes].sort((a, b) => a - b);
  }

  private record(pa: number, size: number, lo: number, hi: number): void {
    const { cpu, addresses, mem } = this.machine;
    for (let k = 0; k < size; k++) if (mem.unwrittenBytes(pa + k, 1) > 0) this.bytes.add(pa + k);
    const key = `${pa}:${cpu.curRipLo}:${cpu.curRipHi}`;
    const known = this.byKey.get(key);
    if (known !== undefined) {
      known.count++;
      return;
    }
    if (this.reads.length >= MAX_REPORTS) {
      this.dropped++;
      return;
    }
    const bytes: string[] = [];
    for (let k = 0; k < size; k++) bytes.push((((k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4))) & 0xff)).toString(16).padStart(2, '0'));
    const read: UninitializedRead = {
      address: hex(pa),
      symbol: addresses.describeData(pa),
      section: addresses.sectionOffset(pa),
      size,
      value: '0x' + bytes.reverse().join(''),
      rip: hex(cpu.curRipLo),
      reader: addresses.describe(cpu.curRipLo, cpu.curRipHi),
      instruction: cpu.icount,
      count: 1,
    };
    this.byKey.set(key, read);
    this.reads.push(read);
    this.onRead?.(read);
  }
}
