import type { ElfFile } from './elf.js';

/** A symbol of the compressed vmlinux, by offset from its link base (startup_32 = 0). */
export interface ImageSymbol {
  name: string;
  offset: number;
  size: number;
}

/**
 * Symbols of a compressed vmlinux, relative to its link address, so one table
 * serves every copy of the image (the loaded one and the relocated one).
 */
export class SymbolTable {
  private readonly sorted: ImageSymbol[];
  private readonly byName = new Map<string, ImageSymbol>();

  constructor(symbols: ImageSymbol[]) {
    this.sorted = symbols.filter((s) => s.name !== '').sort((a, b) => a.offset - b.offset || b.size - a.size);
    for (const s of this.sorted) if (!this.byName.has(s.name)) this.byName.set(s.name, s);
  }

  static fromElf(elf: ElfFile): SymbolTable {
    const out: ImageSymbol[] = [];
    for (const s of elf.symbols.values()) {
      if (s.type === 'SECTION' || s.type === 'FILE' || s.section === 'UNDEF' || s.section === 'ABS') continue;
      if (s.value > 0xffffffffn) continue;
      out.push({ name: s.name, offset: Number(s.value), size: Number(s.size) });
    }
    return new SymbolTable(out);
  }

  get size(): number {
    return this.sorted.length;
  }

  get(name: string): ImageSymbol | undefined {
    return this.byName.get(name);
  }

  /** "name+0xoff" for an image offset, or null when before the first symbol. */
  describe(offset: number): string | null {
    let lo = 0, hi = this.sorted.length - 1, best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.sorted[mid].offset <= offset) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best < 0) return null;
    // Prefer a sized symbol that covers the offset (functions over local labels).
    let pick = this.sorted[best];
    for (let k = best; k >= 0 && k > best - 8; k--) {
      const s = this.sorted[k];
      if (s.size > 0 && offset < s.offset + s.size) {
        pick = s;
        break;
      }
    }
    const delta = offset - pick.offset;
    return delta === 0 ? pick.name : `${pick.name}+0x${delta.toString(16)}`;
  }

  /** The symbol (sized, covering) that contains an offset, if any. */
  containing(offset: number): ImageSymbol | null {
    for (const s of this.sorted) {
      if (s.offset > offset) break;
      if (s.size > 0 && offset < s.offset + s.size) return s;
    }
    return null;
  }
}
