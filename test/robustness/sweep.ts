/**
 * Deterministic sweeps, the systematic half of the hostile-image cases: every
 * truncation boundary, and every field of every header and of the symbols
 * bzemu looks up set to each edge value. Mutations are made lazily (one copy of
 * a 12 MB file at a time).
 */
import {
  ELF_HEADER_FIELDS,
  PHDR_FIELDS,
  SETUP_HEADER_FIELDS,
  SHDR_FIELDS,
  SYM_FIELDS,
  type Field,
  type FileLayout,
} from './layout.js';
import { edgeValues, readField, withField, type Family } from './mutate.js';

export interface SweepItem {
  family: Family;
  description: string;
  make: () => Uint8Array;
}

/** Symbols whose values bzemu uses (breakpoints, .bss, _end). */
export const SWEPT_SYMBOLS = ['_end', '_bss', '_ebss', 'extract_kernel', 'sev_enable', 'startup_64'] as const;

function* fieldSweep(bytes: Uint8Array, family: Family, base: number, fields: readonly Field[], prefix: string): Generator<SweepItem> {
  for (const f of fields) {
    const at = base + f.offset;
    for (const value of edgeValues(readField(bytes, at, f.width), f.width)) {
      const name = `${prefix}${f.name}`;
      yield { family, description: `${name} -> 0x${value.toString(16)}`, make: () => withField(bytes, at, f.width, value, name).bytes };
    }
  }
}

export function* truncations(bytes: Uint8Array, layout: FileLayout): Generator<SweepItem> {
  for (const b of layout.boundaries) {
    yield { family: 'truncate', description: `truncated at 0x${b.offset.toString(16)} (${b.name})`, make: () => bytes.subarray(0, b.offset) };
  }
}

/** Header fields: the setup header of a bzImage; the ELF header, every program and section header and the key symbols of an ELF. */
export function* fieldSweeps(bytes: Uint8Array, layout: FileLayout, setupFields: readonly Field[] = SETUP_HEADER_FIELDS): Generator<SweepItem> {
  if (layout.kind === 'bzimage') {
    yield* fieldSweep(bytes, 'setup-header', 0, setupFields, '');
    return;
  }
  yield* fieldSweep(bytes, 'elf-header', 0, ELF_HEADER_FIELDS, '');
  for (let i = 0; i < layout.phnum; i++) yield* fieldSweep(bytes, 'program-header', layout.phoff + i * 56, PHDR_FIELDS, `program header ${i} `);
  for (let i = 0; i < layout.shnum; i++) yield* fieldSweep(bytes, 'section-header', layout.shoff + i * 64, SHDR_FIELDS, `section header ${i} `);
  if (layout.symtab) {
    for (const name of SWEPT_SYMBOLS) {
      const index = layout.symbolIndex.get(name);
      if (index !== undefined) yield* fieldSweep(bytes, 'symbol-table', layout.symtab.offset + index * 24, SYM_FIELDS, `symbol ${name} `);
    }
  }
}
