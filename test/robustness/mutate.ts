/**
 * Mutations of kernel files for the hostile-image fuzzer: bit flips, truncation
 * at structure boundaries, setup-header / ELF header / program and section
 * header / symbol table fields set to edge values, random bytes. Every choice
 * comes from the Rng, so (seed, case) names a mutation exactly.
 */
import {
  ELF_HEADER_FIELDS,
  PHDR_FIELDS,
  SETUP_HEADER_FIELDS,
  SHDR_FIELDS,
  SYM_FIELDS,
  type ElfLayout,
  type Field,
  type FileLayout,
} from './layout.js';
import type { Rng } from './rng.js';

export const BZIMAGE_FAMILIES = ['bitflip', 'truncate', 'setup-header', 'random-bytes', 'garbage'] as const;
export const ELF_FAMILIES = [
  'bitflip',
  'truncate',
  'elf-header',
  'program-header',
  'section-header',
  'symbol-table',
  'string-table',
  'random-bytes',
  'garbage',
] as const;
export type Family = (typeof BZIMAGE_FAMILIES)[number] | (typeof ELF_FAMILIES)[number];

export interface Mutation {
  family: Family;
  /** What was done, precise enough to redo by hand ("init_size 0x1f3a000 -> 0xffffffff"). */
  description: string;
  bytes: Uint8Array;
}

/** Symbols bzemu itself looks up: corrupting these reaches the most code. */
const KEY_SYMBOLS = ['_end', '_bss', '_ebss', 'extract_kernel', 'sev_enable', 'startup_64', 'startup_32', 'input_data', 'z_input_len', '_head'];

const hex = (v: number | bigint): string => '0x' + v.toString(16);

export function familiesFor(layout: FileLayout): readonly Family[] {
  return layout.kind === 'elf' ? ELF_FAMILIES : BZIMAGE_FAMILIES;
}

export function readField(bytes: Uint8Array, at: number, width: number): bigint {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[at + i] ?? 0);
  return v;
}

/** Write a little-endian field; bytes past the end (after a truncation) are skipped. */
function writeField(bytes: Uint8Array, at: number, width: number, value: bigint): void {
  for (let i = 0; i < width; i++) {
    if (at + i < bytes.length) bytes[at + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  }
}

/** The fixed edge values for a field of `width` bytes that held `original` (all distinct from it). */
export function edgeValues(original: bigint, width: number): bigint[] {
  const bits = BigInt(width * 8);
  const max = (1n << bits) - 1n;
  const top = 1n << (bits - 1n);
  const raw = [
    0n, 1n, max, max - 1n, top, top - 1n,
    original + 1n, original - 1n, original * 2n, original >> 1n, original + 0x1000n,
    0x1000n, 0x200000n, 0x1000000n, 0x40000000n, 0x80000000n, 0x100000000n,
  ].map((v) => BigInt.asUintN(width * 8, v));
  return [...new Set(raw)].filter((v) => v !== original);
}

/** An edge value, a single flipped bit, or a random value. */
function edgeValue(rng: Rng, original: bigint, width: number): bigint {
  const bits = width * 8;
  switch (rng.below(4)) {
    case 0: return BigInt.asUintN(bits, original ^ (1n << BigInt(rng.below(bits))));
    case 1: return BigInt.asUintN(bits, rng.chance(0.5) ? BigInt(rng.below(256)) : rng.u64());
    default: return rng.pick(edgeValues(original, width));
  }
}

/** Set a field of a copy of `original` to `value`; returns the copy and "name 0xold -> 0xnew". */
export function withField(original: Uint8Array, at: number, width: number, value: bigint, name: string): { bytes: Uint8Array; description: string } {
  const bytes = original.slice();
  const before = readField(bytes, at, width);
  writeField(bytes, at, width, value);
  return { bytes, description: `${name} ${hex(before)} -> ${hex(value)}` };
}

function mutateField(rng: Rng, bytes: Uint8Array, at: number, field: Field, what: string): string {
  const before = readField(bytes, at, field.width);
  let after = edgeValue(rng, before, field.width);
  if (after === before) after = BigInt.asUintN(field.width * 8, before ^ 1n);
  writeField(bytes, at, field.width, after);
  return `${what} ${hex(before)} -> ${hex(after)}`;
}

/** An offset: usually inside the headers and early code (where a loader looks), sometimes anywhere. */
function hotOffset(rng: Rng, layout: FileLayout, length: number): number {
  if (length === 0) return 0;
  if (rng.chance(0.4)) return rng.below(length);
  if (layout.kind === 'bzimage') return rng.below(Math.min(length, layout.protectedMode + 0x4000));
  const regions: Array<[number, number]> = [[0, 64], [layout.phoff, layout.phnum * 56], [layout.shoff, layout.shnum * 64]];
  if (layout.symtab) regions.push([layout.symtab.offset, layout.symtab.size]);
  if (layout.strtab) regions.push([layout.strtab.offset, layout.strtab.size]);
  const [start, size] = rng.pick(regions);
  return Math.min(length - 1, start + rng.below(Math.max(1, size)));
}

function bitflip(rng: Rng, bytes: Uint8Array, layout: FileLayout): string {
  const n = rng.chance(0.5) ? 1 : rng.between(2, 16);
  const flips: string[] = [];
  for (let i = 0; i < n && bytes.length > 0; i++) {
    const at = hotOffset(rng, layout, bytes.length);
    const bit = rng.below(8);
    bytes[at]! ^= 1 << bit;
    flips.push(`${hex(at)}.${bit}`);
  }
  return `flip bit${n > 1 ? 's' : ''} ${flips.join(' ')}`;
}

function randomBytes(rng: Rng, bytes: Uint8Array, layout: FileLayout): string {
  if (bytes.length === 0) return 'random bytes into an empty file (none)';
  const at = hotOffset(rng, layout, bytes.length);
  const len = Math.min(bytes.length - at, rng.chance(0.7) ? rng.between(1, 16) : rng.between(17, 4096));
  rng.fill(bytes.subarray(at, at + len));
  return `${len} random bytes at ${hex(at)}`;
}

function setupHeaderField(rng: Rng, bytes: Uint8Array): string {
  // The issue's nine fields first; the rest of the header less often.
  const field = rng.chance(0.75) ? SETUP_HEADER_FIELDS[rng.below(9)]! : rng.pick(SETUP_HEADER_FIELDS);
  return mutateField(rng, bytes, field.offset, field, field.name);
}

function elfHeaderField(rng: Rng, bytes: Uint8Array): string {
  const field = rng.pick(ELF_HEADER_FIELDS);
  return mutateField(rng, bytes, field.offset, field, field.name);
}

function programHeaderField(rng: Rng, bytes: Uint8Array, layout: ElfLayout): string {
  const index = rng.below(Math.max(1, layout.phnum));
  const field = rng.pick(PHDR_FIELDS);
  return mutateField(rng, bytes, layout.phoff + index * 56 + field.offset, field, `program header ${index} ${field.name}`);
}

function sectionHeaderField(rng: Rng, bytes: Uint8Array, layout: ElfLayout): string {
  const index = rng.below(Math.max(1, layout.shnum));
  const field = rng.pick(SHDR_FIELDS);
  return mutateField(rng, bytes, layout.shoff + index * 64 + field.offset, field, `section header ${index} ${field.name}`);
}

function symbolField(rng: Rng, bytes: Uint8Array, layout: ElfLayout): string {
  const symtab = layout.symtab;
  if (!symtab) return elfHeaderField(rng, bytes);
  const known = KEY_SYMBOLS.filter((s) => layout.symbolIndex.has(s));
  const count = Math.max(1, Math.floor(symtab.size / 24));
  const name = known.length > 0 && rng.chance(0.6) ? rng.pick(known) : null;
  const index = name !== null ? layout.symbolIndex.get(name)! : rng.below(count);
  const field = rng.pick(SYM_FIELDS);
  return mutateField(rng, bytes, symtab.offset + index * 24 + field.offset, field, `symbol ${name ?? `#${index}`} ${field.name}`);
}

/** Break the symbol string table: drop its terminators, zero it, or garble a stretch. */
function stringTable(rng: Rng, bytes: Uint8Array, layout: ElfLayout): string {
  const strtab = layout.strtab;
  if (!strtab || strtab.size === 0) return elfHeaderField(rng, bytes);
  const end = Math.min(bytes.length, strtab.offset + strtab.size);
  const at = strtab.offset + rng.below(strtab.size);
  switch (rng.below(3)) {
    case 0: {
      // No NUL from `at` to the end: names run into each other and off the table.
      for (let i = at; i < end; i++) if (bytes[i] === 0) bytes[i] = 0x41;
      return `string table NULs replaced from ${hex(at)} to its end`;
    }
    case 1:
      bytes.fill(0, strtab.offset, end);
      return 'string table zeroed';
    default: {
      const len = Math.min(end - at, rng.between(1, 256));
      rng.fill(bytes.subarray(at, at + len));
      return `${len} random bytes in the string table at ${hex(at)}`;
    }
  }
}

/** A whole file of noise, or the real headers followed by noise (the CPU then runs garbage). */
function garbage(rng: Rng, bytes: Uint8Array, layout: FileLayout): { description: string; bytes: Uint8Array } {
  if (rng.chance(0.4)) {
    const out = rng.fill(new Uint8Array(rng.below(rng.chance(0.5) ? 1024 : 65536)));
    return { description: `replaced by ${out.length} random bytes`, bytes: out };
  }
  const keep = layout.kind === 'bzimage' ? Math.min(bytes.length, layout.protectedMode) : Math.min(bytes.length, 64 + rng.below(4096));
  const out = bytes.slice();
  rng.fill(out.subarray(keep));
  return { description: `random bytes from ${hex(keep)} to the end`, bytes: out };
}

/** Apply one mutation of `family` to a copy of `original` (`layout` describes the original). */
export function mutateWith(rng: Rng, family: Family, original: Uint8Array, layout: FileLayout): Mutation {
  if (family === 'truncate') {
    const b = rng.pick(layout.boundaries);
    return { family, description: `truncated at ${hex(b.offset)} (${b.name})`, bytes: original.subarray(0, b.offset) };
  }
  if (family === 'garbage') return { family, ...garbage(rng, original, layout) };
  const bytes = original.slice();
  let description: string;
  switch (family) {
    case 'bitflip': description = bitflip(rng, bytes, layout); break;
    case 'random-bytes': description = randomBytes(rng, bytes, layout); break;
    case 'setup-header': description = setupHeaderField(rng, bytes); break;
    case 'elf-header': description = elfHeaderField(rng, bytes); break;
    default: {
      if (layout.kind !== 'elf') throw new Error(`mutation ${family} needs an ELF`);
      if (family === 'program-header') description = programHeaderField(rng, bytes, layout);
      else if (family === 'section-header') description = sectionHeaderField(rng, bytes, layout);
      else if (family === 'symbol-table') description = symbolField(rng, bytes, layout);
      else description = stringTable(rng, bytes, layout);
    }
  }
  return { family, description, bytes };
}

/** One random mutation of the file, now and then two or three stacked. */
export function mutateFile(rng: Rng, original: Uint8Array, layout: FileLayout): Mutation {
  const families = familiesFor(layout);
  const first = mutateWith(rng, rng.pick(families), original, layout);
  if (!rng.chance(0.15)) return first;
  let current = first;
  const steps = [first.description];
  for (let extra = rng.between(1, 2); extra > 0; extra--) {
    // A truncation or garbage replaces the file: only cheap in-place steps follow it.
    const next = mutateWith(rng, rng.pick(families.filter((f) => f !== 'garbage')), current.bytes, layout);
    steps.push(next.description);
    current = next;
  }
  return { family: first.family, description: steps.join(' + '), bytes: current.bytes };
}
