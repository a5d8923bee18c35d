import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BadInputError } from './errors.js';
import { classifyKernelElf, parseElf, type ElfFile } from './elf.js';
import { findLandmarks, type Landmarks } from './landmarks.js';
import { detectKernelFile, parseSetupHeader, protectedModePart, setupHeaderBytes, type SetupHeader } from './setup-header.js';
import { SymbolTable } from './symbols.js';

/**
 * Everything bzemu needs from a kernel file: the compressed vmlinux as a flat
 * image (what a 64-bit loader copies to the load address), the setup header
 * the zero page gets, symbols when an ELF is at hand, and landmarks.
 */
export interface KernelImage {
  path: string;
  kind: 'bzimage' | 'compressed-elf';
  header: SetupHeader;
  /** Bytes 0x1F1.. of the setup header, for the zero page. */
  setupBytes: Uint8Array;
  /** The flat protected-mode image (startup_32 at offset 0), file bytes only: no .bss. */
  image: Uint8Array;
  symbols: SymbolTable | null;
  landmarks: Landmarks;
  /** Image offset where `_end` lies (from symbols or landmarks). */
  end: number | null;
  /** Path of the file that supplied the setup header (the bzImage itself, or its companion). */
  headerSource: string;
}

function readKernelFile(path: string): Uint8Array {
  if (!existsSync(path)) throw new BadInputError(`no such file: ${path}`);
  try {
    const b = readFileSync(path);
    // A plain Uint8Array view (no second copy of a 12 MB file; Buffer's slice() would not copy).
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    throw new BadInputError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Image offset of startup_64, the 64-bit boot protocol entry. */
const STARTUP_64 = 0x200;

const hex = (n: number): string => '0x' + n.toString(16);

/**
 * Flat binary of a compressed-vmlinux ELF, as objcopy -O binary makes it (file bytes of
 * each PT_LOAD at its address). It must fit in `initSize`: the decompressor relocates
 * itself into the top of that buffer (checked before allocating, so a wild p_vaddr
 * cannot cost a gigabyte).
 */
function flatten(elf: ElfFile, initSize: number): Uint8Array {
  let end = 0;
  for (const s of elf.segments) {
    if (s.vaddr > 0x40000000n) throw new BadInputError('compressed vmlinux segment linked above 1 GiB: not a decompressor image');
    end = Math.max(end, Number(s.vaddr) + s.data.length);
  }
  if (end > initSize) {
    throw new BadInputError(`compressed vmlinux segments end at ${hex(end)}, past the setup header's init_size ${hex(initSize)}`);
  }
  const flat = new Uint8Array(end);
  for (const s of elf.segments) flat.set(s.data, Number(s.vaddr));
  return flat;
}

/**
 * The symbols of a compressed vmlinux, once the ones that size and place things (the
 * relocated copy, .bss tracking) agree with the segments. In a real build
 *   end of the file bytes <= _bss <= _ebss <= _end <= end of the segments in memory.
 * `where` names a file other than the kernel in messages.
 */
function symbolsOf(elf: ElfFile, where = ''): SymbolTable {
  const symbols = SymbolTable.fromElf(elf);
  let fileEnd = 0;
  let memEnd = 0;
  for (const s of elf.segments) {
    fileEnd = Math.max(fileEnd, Number(s.vaddr) + s.filesz);
    memEnd = Math.max(memEnd, Number(s.vaddr) + s.memsz);
  }
  const chain: Array<{ name: string; at: number | undefined }> = [
    { name: "the end of the segments' file bytes", at: fileEnd },
    { name: '_bss', at: symbols.get('_bss')?.offset },
    { name: '_ebss', at: symbols.get('_ebss')?.offset },
    { name: '_end', at: symbols.get('_end')?.offset },
    // Page slack: a linker script may align _end past the last section.
    { name: 'the end of the loadable segments', at: Math.ceil(memEnd / 0x1000) * 0x1000 },
  ];
  const present = chain.filter((c): c is { name: string; at: number } => c.at !== undefined);
  for (let i = 1; i < present.length; i++) {
    const a = present[i - 1]!, b = present[i]!;
    if (b.at >= a.at) continue;
    const what = i === 1 ? `${b.name} (${hex(b.at)}) lies inside the segments' file bytes (they end at ${hex(a.at)})` : `${a.name} (${hex(a.at)}) lies past ${b.name} (${hex(b.at)})`;
    throw new BadInputError(`corrupt symbol table${where ? ` in ${where}` : ''}: ${what}`);
  }
  return symbols;
}

/** Places where the bzImage built with a compressed vmlinux usually sits. */
function companionCandidates(elfPath: string): string[] {
  const dir = dirname(elfPath);
  return [join(dir, 'bzImage'), join(dir, '..', 'bzImage')];
}

export interface LoadKernelOptions {
  /** bzImage that supplies the setup header when the kernel is a compressed-vmlinux ELF. */
  bzImage?: string;
  /** Compressed-vmlinux ELF that supplies symbols when the kernel is a bzImage. */
  symbols?: string;
}

export function loadKernel(path: string, options: LoadKernelOptions = {}): KernelImage {
  const bytes = readKernelFile(path);
  const kind = detectKernelFile(bytes);
  if (kind === 'bzimage') {
    const header = parseSetupHeader(bytes);
    // A view into the file's buffer, not a copy: nothing writes the image (the machine copies it into guest RAM).
    const image = protectedModePart(bytes, header);
    let symbols: SymbolTable | null = null;
    if (options.symbols) {
      const elf = parseElf(readKernelFile(options.symbols));
      if (classifyKernelElf(elf) !== 'compressed-vmlinux') throw new BadInputError(`${options.symbols} is not a compressed vmlinux`);
      symbols = symbolsOf(elf, options.symbols);
    }
    return finish({ path, kind: 'bzimage', header, setupBytes: setupHeaderBytes(bytes, header), image, symbols, headerSource: path });
  }
  const elf = parseElf(bytes);
  const elfKind = classifyKernelElf(elf);
  if (elfKind === 'vmlinux') {
    throw new BadInputError('this is the decompressed kernel (vmlinux); bzemu runs the decompressor: give the bzImage or arch/x86/boot/compressed/vmlinux');
  }
  const companion = options.bzImage ?? companionCandidates(path).find((p) => existsSync(p));
  if (!companion) {
    throw new BadInputError(`a compressed vmlinux needs its bzImage for the setup header (init_size, alignment): pass --bzimage PATH`);
  }
  const bz = readKernelFile(companion);
  if (detectKernelFile(bz) !== 'bzimage') throw new BadInputError(`${companion} is not a bzImage`);
  const header = parseSetupHeader(bz);
  const image = flatten(elf, header.initSize);
  return finish({ path, kind: 'compressed-elf', header, setupBytes: setupHeaderBytes(bz, header), image, symbols: symbolsOf(elf), headerSource: companion });
}

function finish(k: Omit<KernelImage, 'landmarks' | 'end'>): KernelImage {
  if (k.image.length <= STARTUP_64) {
    throw new BadInputError(`the decompressor image is only ${k.image.length} bytes: it ends before the 64-bit entry point (startup_64 at ${hex(STARTUP_64)})`);
  }
  // head_64.S rounds its load address up with the mask ~(kernel_alignment - 1), and
  // asm/boot.h refuses any other CONFIG_PHYSICAL_ALIGN: anything else relocates the
  // decompressor where neither the boot protocol nor bzemu's milestones expect it.
  const align = k.header.kernelAlignment;
  if (align === 0 || (align & (align - 1)) !== 0) {
    throw new BadInputError(`kernel_alignment ${hex(align)} is not a power of two: the decompressor uses it as an alignment mask`);
  }
  const landmarks = findLandmarks(k.image);
  const fromSymbol = k.symbols?.get('_end')?.offset;
  const end = fromSymbol ?? landmarks.end;
  // The decompressor copies [0, _end) to the top of its init_size buffer: a bigger _end
  // means the header and the image disagree (and would size .bss tracking past reason).
  if (end !== null && end > k.header.initSize) {
    const source = fromSymbol !== undefined ? 'the symbol table' : "startup_64's code";
    throw new BadInputError(`the setup header's init_size ${hex(k.header.initSize)} is smaller than the decompressor's _end ${hex(end)} (from ${source})`);
  }
  return { ...k, landmarks, end };
}
