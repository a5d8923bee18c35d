/**
 * Where the structures of a good kernel file lie: the fields a mutation may
 * rewrite and the offsets a truncation should cut at. Read straight from the
 * bytes (not through src/kernel), so the map does not share the loaders' bugs.
 */

export interface Field {
  name: string;
  offset: number;
  width: 1 | 2 | 4 | 8;
}

/** A named file offset where a structure starts or ends. */
export interface Boundary {
  name: string;
  offset: number;
}

/** Setup-header fields (Documentation/arch/x86/boot.rst); the first nine are the list. */
export const SETUP_HEADER_FIELDS: readonly Field[] = [
  { name: 'setup_sects', offset: 0x1f1, width: 1 },
  { name: 'version', offset: 0x206, width: 2 },
  { name: 'xloadflags', offset: 0x236, width: 2 },
  { name: 'payload_offset', offset: 0x248, width: 4 },
  { name: 'payload_length', offset: 0x24c, width: 4 },
  { name: 'init_size', offset: 0x260, width: 4 },
  { name: 'pref_address', offset: 0x258, width: 8 },
  { name: 'kernel_alignment', offset: 0x230, width: 4 },
  { name: 'relocatable_kernel', offset: 0x234, width: 1 },
  { name: 'syssize', offset: 0x1f4, width: 4 },
  { name: 'boot_flag', offset: 0x1fe, width: 2 },
  { name: 'jump (header length byte)', offset: 0x201, width: 1 },
  { name: 'header', offset: 0x202, width: 4 },
  { name: 'kernel_version', offset: 0x20e, width: 2 },
  { name: 'loadflags', offset: 0x211, width: 1 },
  { name: 'code32_start', offset: 0x214, width: 4 },
  { name: 'min_alignment', offset: 0x235, width: 1 },
  { name: 'cmdline_size', offset: 0x238, width: 4 },
  { name: 'setup_data', offset: 0x250, width: 8 },
  { name: 'handover_offset', offset: 0x264, width: 4 },
  { name: 'kernel_info_offset', offset: 0x268, width: 4 },
];

export const ELF_HEADER_FIELDS: readonly Field[] = [
  { name: 'EI_MAG', offset: 0, width: 4 },
  { name: 'EI_CLASS', offset: 4, width: 1 },
  { name: 'EI_DATA', offset: 5, width: 1 },
  { name: 'EI_VERSION', offset: 6, width: 1 },
  { name: 'e_type', offset: 16, width: 2 },
  { name: 'e_machine', offset: 18, width: 2 },
  { name: 'e_version', offset: 20, width: 4 },
  { name: 'e_entry', offset: 24, width: 8 },
  { name: 'e_phoff', offset: 32, width: 8 },
  { name: 'e_shoff', offset: 40, width: 8 },
  { name: 'e_flags', offset: 48, width: 4 },
  { name: 'e_ehsize', offset: 52, width: 2 },
  { name: 'e_phentsize', offset: 54, width: 2 },
  { name: 'e_phnum', offset: 56, width: 2 },
  { name: 'e_shentsize', offset: 58, width: 2 },
  { name: 'e_shnum', offset: 60, width: 2 },
  { name: 'e_shstrndx', offset: 62, width: 2 },
];

/** Fields of one Elf64_Phdr, relative to the entry. */
export const PHDR_FIELDS: readonly Field[] = [
  { name: 'p_type', offset: 0, width: 4 },
  { name: 'p_flags', offset: 4, width: 4 },
  { name: 'p_offset', offset: 8, width: 8 },
  { name: 'p_vaddr', offset: 16, width: 8 },
  { name: 'p_paddr', offset: 24, width: 8 },
  { name: 'p_filesz', offset: 32, width: 8 },
  { name: 'p_memsz', offset: 40, width: 8 },
  { name: 'p_align', offset: 48, width: 8 },
];

/** Fields of one Elf64_Shdr, relative to the entry. */
export const SHDR_FIELDS: readonly Field[] = [
  { name: 'sh_name', offset: 0, width: 4 },
  { name: 'sh_type', offset: 4, width: 4 },
  { name: 'sh_flags', offset: 8, width: 8 },
  { name: 'sh_addr', offset: 16, width: 8 },
  { name: 'sh_offset', offset: 24, width: 8 },
  { name: 'sh_size', offset: 32, width: 8 },
  { name: 'sh_link', offset: 40, width: 4 },
  { name: 'sh_info', offset: 44, width: 4 },
  { name: 'sh_addralign', offset: 48, width: 8 },
  { name: 'sh_entsize', offset: 56, width: 8 },
];

/** Fields of one Elf64_Sym, relative to the entry. */
export const SYM_FIELDS: readonly Field[] = [
  { name: 'st_name', offset: 0, width: 4 },
  { name: 'st_info', offset: 4, width: 1 },
  { name: 'st_other', offset: 5, width: 1 },
  { name: 'st_shndx', offset: 6, width: 2 },
  { name: 'st_value', offset: 8, width: 8 },
  { name: 'st_size', offset: 16, width: 8 },
];

export interface BzImageLayout {
  kind: 'bzimage';
  length: number;
  /** File offset of the protected-mode part (startup_32). */
  protectedMode: number;
  boundaries: Boundary[];
}

export interface ElfTableRange {
  index: number;
  name: string;
  offset: number;
  size: number;
  entsize: number;
}

export interface ElfLayout {
  kind: 'elf';
  length: number;
  phoff: number;
  phnum: number;
  shoff: number;
  shnum: number;
  /** .symtab and its string table, when present. */
  symtab: ElfTableRange | null;
  strtab: ElfTableRange | null;
  /** Symbol index by name, for the names bzemu looks up. */
  symbolIndex: Map<string, number>;
  boundaries: Boundary[];
}

export type FileLayout = BzImageLayout | ElfLayout;

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Boundaries and the offsets either side of them, inside [0, length). */
function withNeighbours(list: Boundary[], length: number): Boundary[] {
  const out: Boundary[] = [];
  const seen = new Set<number>();
  for (const b of list) {
    for (const d of [-1, 0, 1]) {
      const offset = b.offset + d;
      if (offset < 0 || offset >= length || seen.has(offset)) continue;
      seen.add(offset);
      out.push({ name: d === 0 ? b.name : `${b.name}${d < 0 ? '-1' : '+1'}`, offset });
    }
  }
  return out.sort((a, b) => a.offset - b.offset);
}

function findBytes(bytes: Uint8Array, pattern: readonly number[], from: number): number {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(Buffer.from(pattern), from);
}

export function bzImageLayout(bytes: Uint8Array): BzImageLayout {
  const v = dv(bytes);
  const sects = bytes[0x1f1] || 4;
  const pm = (sects + 1) * 512;
  const payloadOffset = v.getUint32(0x248, true);
  const payloadLength = v.getUint32(0x24c, true);
  const list: Boundary[] = [
    { name: 'start', offset: 1 },
    { name: 'setup_sects', offset: 0x1f1 },
    { name: 'boot_flag', offset: 0x1fe },
    { name: 'jump', offset: 0x200 },
    { name: 'HdrS', offset: 0x202 },
    { name: 'version', offset: 0x206 },
    { name: 'kernel_alignment', offset: 0x230 },
    { name: 'xloadflags', offset: 0x236 },
    { name: 'payload_offset', offset: 0x248 },
    { name: 'pref_address', offset: 0x258 },
    { name: 'init_size', offset: 0x260 },
    { name: 'kernel_info_offset', offset: 0x268 },
    { name: 'setup header minimum end', offset: 0x26c },
    { name: 'setup header end', offset: 0x202 + bytes[0x201]! },
    { name: 'protected-mode part', offset: pm },
    { name: 'startup_64', offset: pm + 0x200 },
    { name: 'payload', offset: pm + payloadOffset },
    { name: 'payload end', offset: pm + payloadOffset + payloadLength },
    { name: 'syssize end', offset: pm + v.getUint32(0x1f4, true) * 16 },
    { name: 'last word', offset: bytes.length - 4 },
  ];
  // The decompressor's own landmarks: the .bss clear and the call to extract_kernel.
  const jump = findBytes(bytes, [0x4c, 0x89, 0xfe, 0xff, 0xe0], pm);
  if (jump >= 0) list.push({ name: 'call extract_kernel', offset: jump - 5 }, { name: 'jmp *%rax', offset: jump + 3 });
  return { kind: 'bzimage', length: bytes.length, protectedMode: pm, boundaries: withNeighbours(list, bytes.length) };
}

function cstr(bytes: Uint8Array, at: number): string {
  let end = at;
  while (end < bytes.length && bytes[end] !== 0) end++;
  return Buffer.from(bytes.subarray(at, end)).toString('latin1');
}

export function elfLayout(bytes: Uint8Array): ElfLayout {
  const v = dv(bytes);
  const phoff = Number(v.getBigUint64(32, true));
  const shoff = Number(v.getBigUint64(40, true));
  const phnum = v.getUint16(56, true);
  const shnum = v.getUint16(60, true);
  const shstrndx = v.getUint16(62, true);
  const list: Boundary[] = [
    { name: 'e_ident', offset: 1 },
    { name: 'EI_CLASS', offset: 4 },
    { name: 'e_type', offset: 16 },
    { name: 'e_machine', offset: 18 },
    { name: 'e_phoff', offset: 32 },
    { name: 'e_shnum', offset: 60 },
    { name: 'ELF header end', offset: 64 },
  ];
  for (let i = 0; i <= phnum; i++) list.push({ name: `program header ${i}`, offset: phoff + i * 56 });
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * 56;
    const off = Number(v.getBigUint64(o + 8, true));
    const filesz = Number(v.getBigUint64(o + 32, true));
    list.push({ name: `segment ${i}`, offset: off }, { name: `segment ${i} end`, offset: off + filesz });
  }
  const sections: ElfTableRange[] = [];
  const shstr = shstrndx < shnum ? Number(v.getBigUint64(shoff + shstrndx * 64 + 24, true)) : 0;
  for (let i = 0; i <= shnum; i++) list.push({ name: `section header ${i}`, offset: shoff + i * 64 });
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * 64;
    const type = v.getUint32(o + 4, true);
    const range: ElfTableRange = {
      index: i,
      name: cstr(bytes, shstr + v.getUint32(o, true)),
      offset: Number(v.getBigUint64(o + 24, true)),
      size: Number(v.getBigUint64(o + 32, true)),
      entsize: Number(v.getBigUint64(o + 56, true)),
    };
    sections.push(range);
    if (type !== 8 && type !== 0) {
      list.push({ name: `section ${range.name}`, offset: range.offset }, { name: `section ${range.name} end`, offset: range.offset + range.size });
    }
  }
  const symtabIndex = sections.findIndex((_, i) => v.getUint32(shoff + i * 64 + 4, true) === 2);
  const symtab = symtabIndex >= 0 ? sections[symtabIndex]! : null;
  const strtab = symtab ? (sections[v.getUint32(shoff + symtab.index * 64 + 40, true)] ?? null) : null;
  const symbolIndex = new Map<string, number>();
  if (symtab && strtab) {
    const count = Math.floor(symtab.size / 24);
    for (let k = 1; k < count; k++) {
      const name = cstr(bytes, strtab.offset + v.getUint32(symtab.offset + k * 24, true));
      if (name !== '' && !symbolIndex.has(name)) symbolIndex.set(name, k);
    }
  }
  return { kind: 'elf', length: bytes.length, phoff, phnum, shoff, shnum, symtab, strtab, symbolIndex, boundaries: withNeighbours(list, bytes.length) };
}

export function layoutOf(bytes: Uint8Array): FileLayout {
  return bytes[0] === 0x7f && bytes[1] === 0x45 ? elfLayout(bytes) : bzImageLayout(bytes);
}
