/**
 * ELF64 loading for kernel images: the decompressed vmlinux (vmlinux.bin, possibly followed
 * by its relocation table) and the compressed vmlinux (arch/x86/boot/compressed/vmlinux).
 *
 * The structural parse is done by elfy (program headers, section headers, section names);
 * header sanity is checked here first so that malformed input ends in a BadInputError
 * instead of a stack trace, and 64-bit addresses are re-read as bigint because elfy returns
 * JS numbers (inexact above 2^53, e.g. 0xffffffff81xxxxxx).
 */
import { createRequire } from 'node:module';
import type Elfy from 'elfy';
import { BadInputError } from './errors.js';
import { EM_X86_64 } from './setup-header.js';

/** elfy, loaded on first use (Node caches it): it loads node:assert, which a boot that parses no ELF file never needs. */
function elfy(): typeof Elfy {
  return createRequire(import.meta.url)('elfy') as typeof Elfy;
}

export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
export const PT_NOTE = 4;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_NOBITS = 8;
export const SHT_DYNSYM = 11;
export const ET_EXEC = 2;
export const ET_DYN = 3;

export interface ElfProgramHeader {
  index: number;
  type: number;
  /** PF_X=1, PF_W=2, PF_R=4 */
  flags: number;
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: number;
  memsz: number;
  align: bigint;
}

export interface ElfSegment extends ElfProgramHeader {
  /** The segment's file bytes (filesz of them; a view, not a copy). */
  data: Uint8Array;
}

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: bigint;
  entsize: number;
}

export type ElfSymbolType = 'NOTYPE' | 'OBJECT' | 'FUNC' | 'SECTION' | 'FILE' | 'COMMON' | 'TLS' | `type${number}`;
export type ElfSymbolBind = 'LOCAL' | 'GLOBAL' | 'WEAK' | `bind${number}`;

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: bigint;
  type: ElfSymbolType;
  bind: ElfSymbolBind;
  /** Section name, or 'UNDEF' / 'ABS' / 'COMMON' / `shndx<N>` for special indices. */
  section: string;
  shndx: number;
}

export interface ElfFile {
  /** e_type: 2 EXEC, 3 DYN. */
  type: number;
  machine: number;
  entry: bigint;
  flags: number;
  programHeaders: ElfProgramHeader[];
  /** PT_LOAD program headers, in file order, with their data. */
  segments: ElfSegment[];
  sections: ElfSection[];
  /** From .symtab (preferred) or .dynsym; empty for a stripped file. */
  symbols: Map<string, ElfSymbol>;
  /** Number of named symbol table entries (duplicates included). */
  symbolCount: number;
  /** PT_INTERP contents, if any (user-space programs). */
  interpreter: string | null;
  /**
   * End of the ELF proper: the highest end of the ELF header, the program and section
   * header tables, each segment's and each non-NOBITS section's file bytes. Anything
   * after it (e.g. the appended relocation table of a decompressed kernel) is not ELF.
   */
  extent: number;
}

const SYM_TYPES: readonly ElfSymbolType[] = ['NOTYPE', 'OBJECT', 'FUNC', 'SECTION', 'FILE', 'COMMON', 'TLS'];
const SYM_BINDS: readonly ElfSymbolBind[] = ['LOCAL', 'GLOBAL', 'WEAK'];

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function safeNumber(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadInputError(`corrupt ELF file: ${what} is absurdly large (0x${v.toString(16)})`);
  return Number(v);
}

function cstr(bytes: Uint8Array, off: number): string {
  if (off >= bytes.length) return '';
  let end = off;
  while (end < bytes.length && bytes[end] !== 0) end++;
  return Buffer.from(bytes.buffer, bytes.byteOffset + off, end - off).toString('latin1');
}

/**
 * Parse an x86-64 little-endian ELF64 file. Any malformation (truncation, tables outside
 * the file, wrong class or machine) throws BadInputError.
 */
export function parseElf(input: Uint8Array): ElfFile {
  const n = input.length;
  if (n === 0) throw new BadInputError('empty file: expected an ELF file');
  if (n < 4 || input[0] !== 0x7f || input[1] !== 0x45 || input[2] !== 0x4c || input[3] !== 0x46) {
    throw new BadInputError('not an ELF file (no \\x7fELF magic)');
  }
  if (n < 64) throw new BadInputError(`truncated ELF file: ${n} bytes, shorter than an ELF64 header`);
  if (input[4] === 1) throw new BadInputError('32-bit ELF (ELFCLASS32): only x86-64 (ELFCLASS64) files are supported');
  if (input[4] !== 2) throw new BadInputError(`corrupt ELF file: bad EI_CLASS ${input[4]}`);
  if (input[5] !== 1) throw new BadInputError('not a little-endian ELF file: only x86-64 is supported');
  const dv = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const type = dv.getUint16(16, true);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_X86_64) throw new BadInputError(`ELF for e_machine ${machine}, not x86-64 (62)`);
  const entry = dv.getBigUint64(24, true);
  const phoff = safeNumber(dv.getBigUint64(32, true), 'e_phoff');
  const shoff = safeNumber(dv.getBigUint64(40, true), 'e_shoff');
  const flags = dv.getUint32(48, true);
  const phentsize = dv.getUint16(54, true);
  const phnum = dv.getUint16(56, true);
  const shentsize = dv.getUint16(58, true);
  const shnum = dv.getUint16(60, true);
  const shstrndx = dv.getUint16(62, true);

  if (phnum > 0) {
    if (phentsize !== 56) throw new BadInputError(`corrupt ELF file: e_phentsize ${phentsize}, expected 56`);
    if (phoff + phnum * 56 > n) {
      throw new BadInputError(`truncated ELF file: program headers (at ${phoff}, ${phnum} entries) run past the end (${n} bytes)`);
    }
  }
  if (shnum > 0) {
    if (shentsize !== 64) throw new BadInputError(`corrupt ELF file: e_shentsize ${shentsize}, expected 64`);
    if (shoff + shnum * 64 > n) {
      throw new BadInputError(`truncated ELF file: section headers (at ${shoff}, ${shnum} entries) run past the end (${n} bytes)`);
    }
    if (shstrndx >= shnum) throw new BadInputError(`corrupt ELF file: e_shstrndx ${shstrndx} >= e_shnum ${shnum}`);
  }

  let extent = 64;
  if (phnum > 0) extent = Math.max(extent, phoff + phnum * 56);
  if (shnum > 0) extent = Math.max(extent, shoff + shnum * 64);

  // Program headers (exact values), validated before elfy slices them.
  const programHeaders: ElfProgramHeader[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * 56;
    const ph: ElfProgramHeader = {
      index: i,
      type: dv.getUint32(o, true),
      flags: dv.getUint32(o + 4, true),
      offset: safeNumber(dv.getBigUint64(o + 8, true), `p_offset of program header ${i}`),
      vaddr: dv.getBigUint64(o + 16, true),
      paddr: dv.getBigUint64(o + 24, true),
      filesz: safeNumber(dv.getBigUint64(o + 32, true), `p_filesz of program header ${i}`),
      memsz: safeNumber(dv.getBigUint64(o + 40, true), `p_memsz of program header ${i}`),
      align: dv.getBigUint64(o + 48, true),
    };
    if (ph.offset + ph.filesz > n) {
      throw new BadInputError(
        `truncated ELF file: segment ${i} (file offset ${ph.offset}, ${ph.filesz} bytes) runs past the end (${n} bytes)`,
      );
    }
    if (ph.type === PT_LOAD && ph.memsz < ph.filesz) {
      throw new BadInputError(`corrupt ELF file: segment ${i} has p_memsz < p_filesz`);
    }
    if (ph.filesz > 0) extent = Math.max(extent, ph.offset + ph.filesz);
    programHeaders.push(ph);
  }

  // Section headers (exact values).
  const rawSections: Omit<ElfSection, 'name'>[] = [];
  const nameOffsets: number[] = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * 64;
    const sh = {
      index: i,
      type: dv.getUint32(o + 4, true),
      flags: dv.getBigUint64(o + 8, true),
      addr: dv.getBigUint64(o + 16, true),
      offset: safeNumber(dv.getBigUint64(o + 24, true), `sh_offset of section ${i}`),
      size: safeNumber(dv.getBigUint64(o + 32, true), `sh_size of section ${i}`),
      link: dv.getUint32(o + 40, true),
      info: dv.getUint32(o + 44, true),
      addralign: dv.getBigUint64(o + 48, true),
      entsize: safeNumber(dv.getBigUint64(o + 56, true), `sh_entsize of section ${i}`),
    };
    if (sh.type !== SHT_NOBITS && sh.type !== 0) {
      if (sh.offset + sh.size > n) {
        throw new BadInputError(
          `truncated ELF file: section ${i} (file offset ${sh.offset}, ${sh.size} bytes) runs past the end (${n} bytes)`,
        );
      }
      if (sh.size > 0) extent = Math.max(extent, sh.offset + sh.size);
    }
    nameOffsets.push(dv.getUint32(o, true));
    rawSections.push(sh);
  }
  if (shnum > 0 && rawSections[shstrndx]!.type !== SHT_STRTAB) {
    throw new BadInputError(`corrupt ELF file: section ${shstrndx} (e_shstrndx) is not a string table`);
  }

  // Structural parse with elfy (names; a second opinion on the tables). It needs a
  // section header string table, so it is skipped for section-less files.
  let names: string[] = [];
  if (shnum > 0) {
    let parsed: Elfy.File;
    try {
      parsed = elfy().parse(toBuffer(input));
    } catch (e) {
      throw new BadInputError(`corrupt ELF file: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (parsed.class !== '64' || parsed.body.sections.length !== shnum || parsed.body.programs.length !== phnum) {
      throw new BadInputError('corrupt ELF file: inconsistent header tables');
    }
    names = parsed.body.sections.map((s) => s.name);
  }
  const sections: ElfSection[] = rawSections.map((s, i) => ({ ...s, name: names[i] ?? `#${nameOffsets[i]}` }));

  const segments: ElfSegment[] = programHeaders
    .filter((p) => p.type === PT_LOAD)
    .map((p) => ({ ...p, data: input.subarray(p.offset, p.offset + p.filesz) }));

  let interpreter: string | null = null;
  const interp = programHeaders.find((p) => p.type === PT_INTERP);
  if (interp) interpreter = cstr(input.subarray(interp.offset, interp.offset + interp.filesz), 0);

  const { symbols, count } = readSymbols(input, dv, sections);

  return {
    type,
    machine,
    entry,
    flags,
    programHeaders,
    segments,
    sections,
    symbols,
    symbolCount: count,
    interpreter,
    extent,
  };
}

function readSymbols(
  input: Uint8Array,
  dv: DataView,
  sections: ElfSection[],
): { symbols: Map<string, ElfSymbol>; count: number } {
  const symbols = new Map<string, ElfSymbol>();
  const symtab = sections.find((s) => s.type === SHT_SYMTAB) ?? sections.find((s) => s.type === SHT_DYNSYM);
  if (!symtab) return { symbols, count: 0 };
  const strtab = sections[symtab.link];
  if (!strtab || strtab.type !== SHT_STRTAB) {
    throw new BadInputError(`corrupt ELF file: symbol table ${symtab.name} has no string table`);
  }
  const strings = input.subarray(strtab.offset, strtab.offset + strtab.size);
  const entsize = symtab.entsize || 24;
  if (entsize < 24) throw new BadInputError(`corrupt ELF file: symbol entry size ${entsize}`);
  let count = 0;
  for (let o = symtab.offset + entsize; o + 24 <= symtab.offset + symtab.size; o += entsize) {
    const nameOff = dv.getUint32(o, true);
    if (nameOff === 0) continue;
    const info = input[o + 4]!;
    const shndx = dv.getUint16(o + 6, true);
    const typeNum = info & 0xf;
    const bindNum = info >> 4;
    const sym: ElfSymbol = {
      name: cstr(strings, nameOff),
      value: dv.getBigUint64(o + 8, true),
      size: dv.getBigUint64(o + 16, true),
      type: SYM_TYPES[typeNum] ?? `type${typeNum}`,
      bind: SYM_BINDS[bindNum] ?? `bind${bindNum}`,
      section:
        shndx === 0
          ? 'UNDEF'
          : shndx === 0xfff1
            ? 'ABS'
            : shndx === 0xfff2
              ? 'COMMON'
              : (sections[shndx]?.name ?? `shndx${shndx}`),
      shndx,
    };
    count++;
    const prev = symbols.get(sym.name);
    // Keep the first definition; a global one wins over a local one of the same name.
    if (!prev || (prev.bind === 'LOCAL' && sym.bind !== 'LOCAL') || (prev.shndx === 0 && shndx !== 0)) {
      symbols.set(sym.name, sym);
    }
  }
  return { symbols, count };
}

export type KernelElfKind = 'vmlinux' | 'compressed-vmlinux';

/**
 * Decide whether an ELF is a Linux x86-64 kernel: the decompressed vmlinux (sections such
 * as __ex_table, .init.text, .data..percpu) or the compressed vmlinux (.head.text and
 * .rodata..compressed, or symbols startup_64 / input_data). Throws BadInputError otherwise.
 */
export function classifyKernelElf(elf: ElfFile): KernelElfKind {
  if (elf.interpreter !== null) {
    throw new BadInputError(
      `not a kernel: this ELF is a user-space program (it asks for the dynamic loader ${elf.interpreter})`,
    );
  }
  if (elf.type !== ET_EXEC && elf.type !== ET_DYN) {
    throw new BadInputError(`not a kernel: ELF type ${elf.type} is neither an executable nor a position-independent image`);
  }
  const names = new Set(elf.sections.map((s) => s.name));
  const has = (s: string): boolean => elf.symbols.has(s);
  if (names.has('.rodata..compressed') || has('input_data') || has('z_input_len')) return 'compressed-vmlinux';
  if (names.has('.head.text') && has('startup_64')) return 'compressed-vmlinux';
  const kernelSections = ['__ex_table', '.init.text', '.data..percpu', '__ksymtab'].filter((s) => names.has(s));
  if (kernelSections.length >= 2 || (has('_text') && has('startup_64'))) return 'vmlinux';
  if (elf.segments.length === 0) throw new BadInputError('not a kernel: this ELF has no loadable segments');
  throw new BadInputError(
    'not a kernel: x86-64 ELF without kernel sections (__ex_table, .init.text, .rodata..compressed) or symbols (startup_64)',
  );
}

/**
 * Lay out the PT_LOAD segments as the decompressor's parse_elf() does: segment data is
 * placed at (p_paddr - base) in one buffer, base defaulting to the lowest p_paddr
 * (LOAD_PHYSICAL_ADDR for a kernel). Bytes between segments and past filesz are zero.
 */
export function layoutSegments(elf: ElfFile, base?: bigint): { base: bigint; image: Uint8Array } {
  if (elf.segments.length === 0) throw new BadInputError('ELF has no PT_LOAD segments to lay out');
  const lo = base ?? elf.segments.reduce((m, s) => (s.paddr < m ? s.paddr : m), elf.segments[0]!.paddr);
  let end = 0;
  for (const s of elf.segments) {
    if (s.paddr < lo) throw new BadInputError(`segment ${s.index} lies below the layout base 0x${lo.toString(16)}`);
    end = Math.max(end, safeNumber(s.paddr - lo, 'segment address') + s.memsz);
  }
  if (end > 1 << 30) throw new BadInputError(`ELF segments span ${end} bytes: too large to lay out`);
  const image = new Uint8Array(end);
  for (const s of elf.segments) image.set(s.data, Number(s.paddr - lo));
  return { base: lo, image };
}
