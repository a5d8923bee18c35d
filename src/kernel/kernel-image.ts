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
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new BadInputError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Flat binary of a compressed-vmlinux ELF, as objcopy -O binary makes it (file bytes of each PT_LOAD at its address). */
function flatten(elf: ElfFile): Uint8Array {
  let end = 0;
  for (const s of elf.segments) {
    if (s.vaddr > 0x40000000n) throw new BadInputError('compressed vmlinux segment linked above 1 GiB: not a decompressor image');
    end = Math.max(end, Number(s.vaddr) + s.data.length);
  }
  const flat = new Uint8Array(end);
  for (const s of elf.segments) flat.set(s.data, Number(s.vaddr));
  return flat;
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
    const image = protectedModePart(bytes, header).slice();
    let symbols: SymbolTable | null = null;
    if (options.symbols) {
      const elf = parseElf(readKernelFile(options.symbols));
      if (classifyKernelElf(elf) !== 'compressed-vmlinux') throw new BadInputError(`${options.symbols} is not a compressed vmlinux`);
      symbols = SymbolTable.fromElf(elf);
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
  const image = flatten(elf);
  return finish({ path, kind: 'compressed-elf', header, setupBytes: setupHeaderBytes(bz, header), image, symbols: SymbolTable.fromElf(elf), headerSource: companion });
}

function finish(k: Omit<KernelImage, 'landmarks' | 'end'>): KernelImage {
  const landmarks = findLandmarks(k.image);
  const end = k.symbols?.get('_end')?.offset ?? landmarks.end;
  return { ...k, landmarks, end };
}
