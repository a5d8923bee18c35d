/**
 * `bzemu info`-style summary of a kernel file: a bzImage (setup header, payload) or an
 * x86-64 kernel ELF (decompressed vmlinux or compressed vmlinux).
 */
import { readFileSync, statSync } from 'node:fs';
import { BadInputError } from './errors.js';
import { classifyKernelElf, parseElf, type KernelElfKind } from './elf.js';
import { locatePayload, type PayloadFormat } from './payload.js';
import { budgetBasis, defaultBudget, type BudgetBasis } from './budget.js';
import { detectKernelFile, parseSetupHeader, protectedModePart, type KernelFileKind, type SetupHeader } from './setup-header.js';

export interface KernelInfo {
  path: string;
  fileSize: number;
  kind: KernelFileKind;
  /** Kernel version string (setup header for a bzImage, linux_banner for a vmlinux). */
  version: string | null;
  /** bzImage only. */
  setupHeader?: SetupHeader;
  bootProtocol?: string;
  payload?: { format: PayloadFormat; offset: number; length: number; uncompressedSize: number };
  /** Bytes to load: the protected-mode part of a bzImage. */
  loadSize?: number;
  /** Memory needed from the load address (bzImage init_size). */
  initSize?: number;
  prefAddress?: bigint;
  kernelAlignment?: number;
  relocatable?: boolean;
  xloadflags?: { value: number; flags: string[] };
  /** File offset of the 64-bit entry (protected-mode part + 0x200) for a bzImage. */
  entry64FileOffset?: number;
  /** bzImage: the instruction budgets `bzemu boot` uses without --budget (src/kernel/budget.ts). */
  defaultBudget?: { kernelEntry: number; earlier: number };
  /** ELF only. */
  elf?: {
    kernelKind: KernelElfKind;
    entry: bigint;
    type: number;
    loadSegments: number;
    sections: number;
    symbols: number;
    /** Span of the PT_LOAD segments in memory (lowest p_paddr to highest end). */
    memorySpan: number;
  };
  /** Whether the file carries a symbol table (always false for a bzImage). */
  hasSymbols: boolean;
}

function findBanner(bytes: Uint8Array): string | null {
  const needle = Buffer.from('Linux version ');
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = buf.indexOf(needle);
  while (at >= 0) {
    let end = at;
    while (end < buf.length && end - at < 512 && buf[end] !== 0 && buf[end] !== 0x0a) end++;
    const s = buf.subarray(at + needle.length, end).toString('latin1');
    // linux_banner: "Linux version <release> (<builder>) ..."; skip format strings.
    if (/^\d+\.\d+/.test(s)) return s;
    at = buf.indexOf(needle, at + 1);
  }
  return null;
}

function defaultBudgets(basis: BudgetBasis): { kernelEntry: number; earlier: number } {
  return { kernelEntry: defaultBudget('kernel-entry', basis).instructions, earlier: defaultBudget('extract_kernel', basis).instructions };
}

/** Inspect a kernel file. Throws BadInputError for anything that is not a usable kernel. */
export function kernelInfoFromBytes(bytes: Uint8Array, path = '<memory>'): KernelInfo {
  const kind = detectKernelFile(bytes);
  if (kind === 'bzimage') {
    const hdr = parseSetupHeader(bytes);
    const p = locatePayload(bytes, hdr);
    return {
      path,
      fileSize: bytes.length,
      kind,
      version: hdr.kernelVersion,
      setupHeader: hdr,
      bootProtocol: hdr.versionText,
      payload: { format: p.format, offset: p.offset, length: p.length, uncompressedSize: p.uncompressedSize },
      loadSize: hdr.protectedModeLength,
      initSize: hdr.initSize,
      prefAddress: hdr.prefAddress,
      kernelAlignment: hdr.kernelAlignment,
      relocatable: hdr.relocatableKernel,
      xloadflags: { value: hdr.xloadflags, flags: hdr.xloadflagsDecoded },
      entry64FileOffset: hdr.protectedModeOffset + 0x200,
      defaultBudget: defaultBudgets(budgetBasis({ header: hdr, image: protectedModePart(bytes, hdr) })),
      hasSymbols: false,
    };
  }
  const elf = parseElf(bytes);
  const kernelKind = classifyKernelElf(elf);
  let lo: bigint | null = null;
  let hi = 0n;
  for (const s of elf.segments) {
    if (lo === null || s.paddr < lo) lo = s.paddr;
    const end = s.paddr + BigInt(s.memsz);
    if (end > hi) hi = end;
  }
  return {
    path,
    fileSize: bytes.length,
    kind,
    version: kernelKind === 'vmlinux' ? findBanner(bytes) : null,
    elf: {
      kernelKind,
      entry: elf.entry,
      type: elf.type,
      loadSegments: elf.segments.length,
      sections: elf.sections.length,
      symbols: elf.symbolCount,
      memorySpan: lo === null ? 0 : Number(hi - lo),
    },
    hasSymbols: elf.symbolCount > 0,
  };
}

/** Read and inspect a kernel file (see kernelInfoFromBytes). */
export function kernelInfo(path: string): KernelInfo {
  let bytes: Buffer;
  try {
    if (statSync(path).isDirectory()) throw new BadInputError(`${path} is a directory, not a kernel file`, { path });
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof BadInputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new BadInputError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : e instanceof Error ? e.message : String(e)}`, {
      path,
      cause: e,
    });
  }
  try {
    return kernelInfoFromBytes(bytes, path);
  } catch (e) {
    if (e instanceof BadInputError) throw new BadInputError(`${path}: ${e.message}`, { path, cause: e });
    throw e;
  }
}

const hex = (v: number | bigint): string => '0x' + v.toString(16);

function mib(n: number): string {
  return `${n} (${(n / (1024 * 1024)).toFixed(1)} MiB)`;
}

/** A short human-readable table. */
export function renderInfo(info: KernelInfo): string {
  const rows: Array<[string, string]> = [
    ['file', info.path],
    ['size', mib(info.fileSize)],
    ['kind', info.kind === 'bzimage' ? 'bzImage' : `ELF64 x86-64 (${info.elf?.kernelKind ?? '?'})`],
    ['version', info.version ?? '-'],
  ];
  const h = info.setupHeader;
  if (h) {
    rows.push(
      ['boot protocol', info.bootProtocol ?? '-'],
      ['setup_sects', `${h.setupSects}${h.setupSects === 0 ? ' (means 4)' : ''}`],
      ['protected-mode part', `offset ${hex(h.protectedModeOffset)}, ${mib(h.protectedModeLength)}`],
      ['64-bit entry', `load address + 0x200 (file offset ${hex(info.entry64FileOffset ?? 0)})`],
      ['payload', info.payload ? `${info.payload.format}, ${mib(info.payload.length)} at file offset ${hex(info.payload.offset)}` : '-'],
      ['decompressed size', info.payload ? mib(info.payload.uncompressedSize) : '-'],
      ['init_size', mib(h.initSize)],
      ['pref_address', hex(h.prefAddress)],
      ['kernel_alignment', hex(h.kernelAlignment)],
      ['relocatable', h.relocatableKernel ? 'yes' : 'no'],
      ['min_alignment', `${h.minAlignment} (${hex(2 ** h.minAlignment)})`],
      ['loadflags', `${hex(h.loadflags)} ${h.loadflagsDecoded.join(' ')}`],
      ['xloadflags', `${hex(h.xloadflags)} ${h.xloadflagsDecoded.join(' ')}`],
      ['cmdline_size', String(h.cmdlineSize)],
      ['handover_offset', hex(h.handoverOffset)],
      ['kernel_info_offset', h.kernelInfoOffset === null ? '-' : hex(h.kernelInfoOffset)],
    );
    const b = info.defaultBudget;
    if (b) rows.push(['default budget', `kernel-entry ${b.kernelEntry}, extract_kernel ${b.earlier} instructions`]);
  }
  const e = info.elf;
  if (e) {
    rows.push(
      ['entry', hex(e.entry)],
      ['ELF type', e.type === 2 ? 'EXEC' : e.type === 3 ? 'DYN' : String(e.type)],
      ['load segments', String(e.loadSegments)],
      ['memory span', mib(e.memorySpan)],
      ['sections', String(e.sections)],
      ['symbols', e.symbols > 0 ? String(e.symbols) : 'none (stripped)'],
    );
  }
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}
