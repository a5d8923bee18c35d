import type { Machine } from '../machine/machine.js';

/** One read of memory nothing had written: the first per address. */
export interface UninitializedRead {
  address: string;
  /** The data it read, by symbol when the image has symbols. */
  symbol: string;
  size: number;
  /** What the bytes held (poison): little-endian hex of `size` bytes. */
  value: string;
  rip: string;
  /** The function that read it. */
  reader: string;
  instruction: number;
}

const MAX_REPORTS = 200;

function hex(v: number): string {
  return '0x' + (v >>> 0).toString(16);
}

/**
 * Shadow-memory detector for the decompressor's `.bss` as the firmware left
 * it: every byte of [_bss, _end) of the loaded image starts "never written";
 * an instruction that reads such a byte before anything wrote it is reported
 * with the symbol it belongs to, the reader and the value it got. The
 * relocated copy is cleared at .Lrelocated, so only the loaded copy matters,
 * and only until then.
 */
export class UninitializedReadDetector {
  readonly reads: UninitializedRead[] = [];
  private readonly seen = new Set<number>();

  constructor(private readonly machine: Machine) {}

  /** Track the loaded image's .bss (and anything else past the file bytes up to _end). */
  install(): { start: number; end: number } | null {
    const { kernel, addresses, mem, cpu } = this.machine;
    if (kernel.end === null) return null;
    const bssOffset = kernel.symbols?.get('_bss')?.offset ?? kernel.image.length;
    const start = addresses.loadBase + bssOffset;
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

  private record(pa: number, size: number, lo: number, hi: number): void {
    if (this.seen.has(pa) || this.reads.length >= MAX_REPORTS) return;
    this.seen.add(pa);
    const { cpu, addresses } = this.machine;
    const bytes: string[] = [];
    for (let k = 0; k < size; k++) bytes.push((((k < 4 ? lo >>> (8 * k) : hi >>> (8 * (k - 4))) & 0xff)).toString(16).padStart(2, '0'));
    this.reads.push({
      address: hex(pa),
      symbol: addresses.describe(pa),
      size,
      value: '0x' + bytes.reverse().join(''),
      rip: hex(cpu.curRipLo),
      reader: addresses.describe(cpu.curRipLo, cpu.curRipHi),
      instruction: cpu.icount,
    });
  }
}
