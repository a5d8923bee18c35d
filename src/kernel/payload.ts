/**
 * The compressed kernel inside a bzImage, and its decompression with Debian's command-line
 * tools (the reference the emulated decompressor is compared against).
 *
 * The payload is vmlinux.bin.<suffix> (arch/x86/boot/compressed/Makefile): the compressed
 * concatenation of vmlinux.bin (the ELF kernel, objcopy -S) and, with
 * CONFIG_X86_NEED_RELOCS, vmlinux.relocs. For every format but gzip the build appends the
 * uncompressed size as a little-endian u32 (scripts/Makefile.lib size_append); gzip's own
 * trailer already ends with it (ISIZE). mkpiggy reads those last 4 bytes as z_output_len.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { BadInputError } from './errors.js';
import { parseElf } from './elf.js';
import { parseRelocs, type RelocTable } from './relocs.js';
import { parseSetupHeader, type SetupHeader } from './setup-header.js';

export type PayloadFormat = 'gzip' | 'bzip2' | 'lzma' | 'xz' | 'lzo' | 'lz4' | 'zstd';

export interface PayloadInfo {
  format: PayloadFormat;
  /** Offset of the payload in the bzImage file. */
  offset: number;
  length: number;
  /** payload_offset from the header: relative to the protected-mode part. */
  offsetInProtectedMode: number;
  /** The trailing u32 = size of the decompressed output (vmlinux.bin + relocs). */
  uncompressedSize: number;
}

const MAGICS: ReadonlyArray<readonly [PayloadFormat, readonly number[]]> = [
  ['gzip', [0x1f, 0x8b]],
  ['bzip2', [0x42, 0x5a, 0x68]], // "BZh"
  ['lzma', [0x5d, 0x00, 0x00]],
  ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]],
  ['lzo', [0x89, 0x4c, 0x5a, 0x4f]],
  ['lz4', [0x02, 0x21, 0x4c, 0x18]], // legacy frame (lz4 -l)
  ['zstd', [0x28, 0xb5, 0x2f, 0xfd]],
];

/** Identify a compressed stream by its magic bytes; null if none matches. */
export function detectCompression(data: Uint8Array): PayloadFormat | null {
  for (const [format, magic] of MAGICS) {
    if (data.length >= magic.length && magic.every((b, i) => data[i] === b)) return format;
  }
  return null;
}

/** Locate and identify the compressed payload of a bzImage. */
export function locatePayload(bzImage: Uint8Array, hdr: SetupHeader = parseSetupHeader(bzImage)): PayloadInfo {
  if (hdr.payloadLength < 8) {
    throw new BadInputError(`bzImage has no compressed payload (payload_length ${hdr.payloadLength})`);
  }
  const offset = hdr.protectedModeOffset + hdr.payloadOffset;
  const data = bzImage.subarray(offset, offset + hdr.payloadLength);
  const format = detectCompression(data);
  if (!format) {
    const head = Buffer.from(data.subarray(0, 8)).toString('hex');
    throw new BadInputError(`unknown compression format of the kernel payload (first bytes ${head})`);
  }
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return {
    format,
    offset,
    length: hdr.payloadLength,
    offsetInProtectedMode: hdr.payloadOffset,
    uncompressedSize: dv.getUint32(data.length - 4, true),
  };
}

interface Tool {
  /** Debian package that provides the command. */
  pkg: string;
  argv: string[];
  /** Strip the 4-byte size_append trailer before feeding the tool. */
  stripSize: boolean;
}

const TOOLS: Readonly<Record<PayloadFormat, Tool>> = {
  gzip: { pkg: 'gzip', argv: ['gzip', '-d', '-c'], stripSize: false },
  bzip2: { pkg: 'bzip2', argv: ['bzip2', '-d', '-c'], stripSize: true },
  lzma: { pkg: 'xz-utils', argv: ['xz', '-d', '-c', '--format=lzma'], stripSize: true },
  xz: { pkg: 'xz-utils', argv: ['xz', '-d', '-c', '--format=xz'], stripSize: true },
  lzo: { pkg: 'lzop', argv: ['lzop', '-d', '-c'], stripSize: true },
  lz4: { pkg: 'lz4', argv: ['lz4', '-d', '-c'], stripSize: true },
  zstd: { pkg: 'zstd', argv: ['zstd', '-d', '-c', '-q'], stripSize: true },
};

/** Decompress one payload with the matching command-line tool. */
export function decompressNative(format: PayloadFormat, payload: Uint8Array): Uint8Array {
  const tool = TOOLS[format];
  const input = tool.stripSize ? payload.subarray(0, payload.length - 4) : payload;
  const [cmd, ...args] = tool.argv as [string, ...string[]];
  const r = spawnSync(cmd, args, {
    input,
    maxBuffer: 2 ** 31 - 1,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new Error(`${cmd} not found: install the Debian package ${tool.pkg} to decompress ${format} kernels`);
    }
    throw new Error(`${cmd} failed: ${r.error.message}`);
  }
  if (r.status !== 0) {
    // gzip warns about trailing garbage with status 2 but still writes the data.
    const stderr = r.stderr.toString().trim().split('\n')[0] ?? '';
    if (!(format === 'gzip' && r.status === 2 && r.stdout.length > 0)) {
      throw new BadInputError(`${cmd} could not decompress the ${format} kernel payload: ${stderr || `exit ${r.status}`}`);
    }
  }
  return new Uint8Array(r.stdout.buffer, r.stdout.byteOffset, r.stdout.byteLength);
}

export interface NativeDecompression {
  format: PayloadFormat;
  /** Everything the tool produced: vmlinux.bin, then the relocation table if any. */
  decompressed: Uint8Array;
  /** The vmlinux ELF (a view of `decompressed`, ElfFile.extent bytes). */
  elfBytes: Uint8Array;
  /** Parsed relocation table; undefined when nothing follows the ELF. */
  relocs?: RelocTable;
}

/**
 * Decompress a bzImage's payload with the Debian CLI tool for its format, check the size
 * against the payload's trailer, split the ELF from the appended relocation table, and
 * (if outPath is given) write the ELF there (and the raw table to outPath + '.relocs').
 */
export function decompressPayloadNative(bzImage: Uint8Array, outPath?: string): NativeDecompression {
  const info = locatePayload(bzImage);
  const decompressed = decompressNative(info.format, bzImage.subarray(info.offset, info.offset + info.length));
  if (decompressed.length !== info.uncompressedSize) {
    throw new BadInputError(
      `decompressed kernel is ${decompressed.length} bytes, the payload trailer says ${info.uncompressedSize}`,
    );
  }
  const elf = parseElf(decompressed);
  const elfBytes = decompressed.subarray(0, elf.extent);
  const relocs = parseRelocs(decompressed, elf.extent) ?? undefined;
  if (outPath !== undefined) {
    writeFileSync(outPath, elfBytes);
    if (relocs) writeFileSync(outPath + '.relocs', decompressed.subarray(elf.extent));
  }
  const out: NativeDecompression = { format: info.format, decompressed, elfBytes };
  if (relocs) out.relocs = relocs;
  return out;
}
