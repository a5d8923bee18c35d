/**
 * The real-mode setup header of a bzImage (Documentation/arch/x86/boot.rst, "THE REAL-MODE
 * KERNEL HEADER"), and detection of kernel file kinds.
 *
 * Offsets below are file offsets; they are also zero-page (struct boot_params) offsets.
 */
import { BadInputError } from './errors.js';

/** Lowest boot protocol accepted: 2.12 introduced xloadflags (and so XLF_KERNEL_64). */
export const MIN_BOOT_PROTOCOL = 0x020c;
/** "HdrS" read as a little-endian u32. */
export const HDRS_MAGIC = 0x53726448;
export const BOOT_FLAG = 0xaa55;

/** First byte of the setup header (setup_sects). */
export const SETUP_HEADER_START = 0x1f1;
/** Bytes the parser needs: everything up to and including kernel_info_offset. */
export const SETUP_HEADER_MIN_FILE = 0x26c;

export const XLF = {
  KERNEL_64: 1 << 0,
  CAN_BE_LOADED_ABOVE_4G: 1 << 1,
  EFI_HANDOVER_32: 1 << 2,
  EFI_HANDOVER_64: 1 << 3,
  EFI_KEXEC: 1 << 4,
  FIVE_LEVEL: 1 << 5,
  FIVE_LEVEL_ENABLED: 1 << 6,
  MEM_ENCRYPTION: 1 << 7,
} as const;

const XLF_NAMES: ReadonlyArray<readonly [number, string]> = [
  [XLF.KERNEL_64, 'KERNEL_64'],
  [XLF.CAN_BE_LOADED_ABOVE_4G, 'CAN_BE_LOADED_ABOVE_4G'],
  [XLF.EFI_HANDOVER_32, 'EFI_HANDOVER_32'],
  [XLF.EFI_HANDOVER_64, 'EFI_HANDOVER_64'],
  [XLF.EFI_KEXEC, 'EFI_KEXEC'],
  [XLF.FIVE_LEVEL, '5LEVEL'],
  [XLF.FIVE_LEVEL_ENABLED, '5LEVEL_ENABLED'],
  [XLF.MEM_ENCRYPTION, 'MEM_ENCRYPTION'],
];

export const LOADFLAGS = {
  LOADED_HIGH: 1 << 0,
  KASLR_FLAG: 1 << 1,
  QUIET_FLAG: 1 << 5,
  KEEP_SEGMENTS: 1 << 6,
  CAN_USE_HEAP: 1 << 7,
} as const;

const LOADFLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [LOADFLAGS.LOADED_HIGH, 'LOADED_HIGH'],
  [LOADFLAGS.KASLR_FLAG, 'KASLR_FLAG'],
  [LOADFLAGS.QUIET_FLAG, 'QUIET_FLAG'],
  [LOADFLAGS.KEEP_SEGMENTS, 'KEEP_SEGMENTS'],
  [LOADFLAGS.CAN_USE_HEAP, 'CAN_USE_HEAP'],
];

function flagNames(value: number, table: ReadonlyArray<readonly [number, string]>): string[] {
  const out: string[] = [];
  let known = 0;
  for (const [bit, name] of table) {
    known |= bit;
    if (value & bit) out.push(name);
  }
  const rest = value & ~known;
  for (let bit = 0; bit < 32; bit++) if (rest & (1 << bit)) out.push(`bit${bit}`);
  return out;
}

export function decodeXloadflags(value: number): string[] {
  return flagNames(value, XLF_NAMES);
}

export function decodeLoadflags(value: number): string[] {
  return flagNames(value, LOADFLAG_NAMES);
}

export interface SetupHeader {
  /** Raw byte 0x1F1; 0 means 4. */
  setupSects: number;
  /** setup_sects with the 0 -> 4 rule applied. */
  effectiveSetupSects: number;
  rootFlags: number;
  /** u32 at 0x1F4: protected-mode size in 16-byte paragraphs (protocol >= 2.04). */
  syssize: number;
  vidMode: number;
  rootDev: number;
  bootFlag: number;
  /** Raw `jump` instruction word at 0x200. */
  jump: number;
  /** Offset just past the setup header: 0x202 + byte[0x201]. */
  headerEnd: number;
  header: number;
  /** Boot protocol, e.g. 0x020F for 2.15. */
  version: number;
  /** "2.15" */
  versionText: string;
  realmodeSwtch: number;
  startSysSeg: number;
  /** Raw kernel_version field at 0x20E: the string is at 0x200 + this value. */
  kernelVersionOffset: number;
  /** The NUL-terminated version string, or null if there is none. */
  kernelVersion: string | null;
  typeOfLoader: number;
  loadflags: number;
  loadflagsDecoded: string[];
  setupMoveSize: number;
  code32Start: number;
  ramdiskImage: number;
  ramdiskSize: number;
  heapEndPtr: number;
  cmdLinePtr: number;
  initrdAddrMax: number;
  kernelAlignment: number;
  relocatableKernel: boolean;
  /** log2 of the minimum alignment. */
  minAlignment: number;
  xloadflags: number;
  xloadflagsDecoded: string[];
  cmdlineSize: number;
  hardwareSubarch: number;
  hardwareSubarchData: bigint;
  /** Relative to the start of the protected-mode part. */
  payloadOffset: number;
  payloadLength: number;
  setupData: bigint;
  prefAddress: bigint;
  initSize: number;
  handoverOffset: number;
  /** Protocol >= 2.15 only, else null. */
  kernelInfoOffset: number | null;
  /** File offset of the protected-mode part: (effectiveSetupSects + 1) * 512. */
  protectedModeOffset: number;
  /** Bytes of the file from protectedModeOffset to the end. */
  protectedModeLength: number;
  /** syssize * 16: what the header says the protected-mode part occupies. */
  protectedModeSizeFromHeader: number;
  /** Total file length. */
  fileLength: number;
}

function hex(n: number | bigint, width = 0): string {
  return '0x' + n.toString(16).toUpperCase().padStart(width, '0');
}

export function protocolText(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function readCString(bytes: Uint8Array, offset: number, max: number): string | null {
  if (offset <= 0 || offset >= bytes.length) return null;
  let end = offset;
  const limit = Math.min(bytes.length, offset + max);
  while (end < limit && bytes[end] !== 0) end++;
  if (end === offset) return null;
  let s = '';
  for (let i = offset; i < end; i++) {
    const c = bytes[i]!;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return s;
}

/**
 * Parse and validate the setup header. Throws BadInputError for anything that a 64-bit
 * boot loader could not boot: empty or truncated file, missing boot flag or "HdrS",
 * protocol older than 2.12, no 64-bit entry point.
 */
export function parseSetupHeader(bytes: Uint8Array): SetupHeader {
  const n = bytes.length;
  if (n === 0) throw new BadInputError('empty file: expected a bzImage');
  if (n < 0x200) {
    throw new BadInputError(
      `file too short for a bzImage: ${n} bytes, the setup header alone ends past 0x${SETUP_HEADER_MIN_FILE.toString(16)}`,
    );
  }
  const dv = view(bytes);
  const bootFlag = dv.getUint16(0x1fe, true);
  if (bootFlag !== BOOT_FLAG) {
    throw new BadInputError(
      `not a bzImage: boot_flag at 0x1FE is ${hex(bootFlag, 4)}, expected 0xAA55`,
    );
  }
  if (n < 0x206) {
    throw new BadInputError(`truncated bzImage: ${n} bytes, ends inside the setup header`);
  }
  const header = dv.getUint32(0x202, true);
  if (header !== HDRS_MAGIC) {
    throw new BadInputError(
      `not a bzImage: no "HdrS" magic at 0x202 (found ${hex(header, 8)}); boot protocol before 2.00 or not a kernel`,
    );
  }
  if (n < 0x208) {
    throw new BadInputError(`truncated bzImage: ${n} bytes, ends inside the setup header`);
  }
  const version = dv.getUint16(0x206, true);
  if (version < MIN_BOOT_PROTOCOL) {
    throw new BadInputError(
      `boot protocol ${protocolText(version)} is too old: 2.12 or newer is needed (64-bit entry is announced by xloadflags since 2.12)`,
    );
  }
  const headerEnd = 0x202 + bytes[0x201]!;
  if (n < Math.max(SETUP_HEADER_MIN_FILE, headerEnd)) {
    throw new BadInputError(
      `truncated bzImage: ${n} bytes, ends inside the setup header (which needs ${hex(Math.max(SETUP_HEADER_MIN_FILE, headerEnd))} bytes)`,
    );
  }
  const xloadflags = dv.getUint16(0x236, true);
  if (!(xloadflags & XLF.KERNEL_64)) {
    throw new BadInputError(
      'this is a 32-bit-only kernel: xloadflags lacks XLF_KERNEL_64 (bit 0), so it has no 64-bit entry point',
    );
  }

  const setupSects = bytes[0x1f1]!;
  const effectiveSetupSects = setupSects === 0 ? 4 : setupSects;
  const protectedModeOffset = (effectiveSetupSects + 1) * 512;
  const syssize = dv.getUint32(0x1f4, true);
  const protectedModeSizeFromHeader = syssize * 16;
  if (n < protectedModeOffset) {
    throw new BadInputError(
      `truncated bzImage: ${n} bytes, but the real-mode setup (${effectiveSetupSects} sectors + boot sector) alone needs ${protectedModeOffset}`,
    );
  }
  const protectedModeLength = n - protectedModeOffset;
  if (protectedModeLength === 0) {
    throw new BadInputError('truncated bzImage: nothing follows the real-mode setup (no protected-mode part)');
  }
  if (protectedModeSizeFromHeader > protectedModeLength) {
    throw new BadInputError(
      `truncated bzImage: the header's syssize says the protected-mode part is ${protectedModeSizeFromHeader} bytes, only ${protectedModeLength} are in the file`,
    );
  }
  const payloadOffset = dv.getUint32(0x248, true);
  const payloadLength = dv.getUint32(0x24c, true);
  if (payloadOffset + payloadLength > protectedModeLength) {
    throw new BadInputError(
      `truncated bzImage: the compressed payload (offset ${hex(payloadOffset)}, ${payloadLength} bytes) runs past the end of the file (protected-mode part is ${protectedModeLength} bytes)`,
    );
  }
  const kernelAlignment = dv.getUint32(0x230, true);
  const kernelVersionOffset = dv.getUint16(0x20e, true);
  const loadflags = bytes[0x211]!;

  return {
    setupSects,
    effectiveSetupSects,
    rootFlags: dv.getUint16(0x1f2, true),
    syssize,
    vidMode: dv.getUint16(0x1fa, true),
    rootDev: dv.getUint16(0x1fc, true),
    bootFlag,
    jump: dv.getUint16(0x200, true),
    headerEnd,
    header,
    version,
    versionText: protocolText(version),
    realmodeSwtch: dv.getUint32(0x208, true),
    startSysSeg: dv.getUint16(0x20c, true),
    kernelVersionOffset,
    kernelVersion:
      kernelVersionOffset === 0 ? null : readCString(bytes, 0x200 + kernelVersionOffset, 512),
    typeOfLoader: bytes[0x210]!,
    loadflags,
    loadflagsDecoded: decodeLoadflags(loadflags),
    setupMoveSize: dv.getUint16(0x212, true),
    code32Start: dv.getUint32(0x214, true),
    ramdiskImage: dv.getUint32(0x218, true),
    ramdiskSize: dv.getUint32(0x21c, true),
    heapEndPtr: dv.getUint16(0x224, true),
    cmdLinePtr: dv.getUint32(0x228, true),
    initrdAddrMax: dv.getUint32(0x22c, true),
    kernelAlignment,
    relocatableKernel: bytes[0x234]! !== 0,
    minAlignment: bytes[0x235]!,
    xloadflags,
    xloadflagsDecoded: decodeXloadflags(xloadflags),
    cmdlineSize: dv.getUint32(0x238, true),
    hardwareSubarch: dv.getUint32(0x23c, true),
    hardwareSubarchData: dv.getBigUint64(0x240, true),
    payloadOffset,
    payloadLength,
    setupData: dv.getBigUint64(0x250, true),
    prefAddress: dv.getBigUint64(0x258, true),
    initSize: dv.getUint32(0x260, true),
    handoverOffset: dv.getUint32(0x264, true),
    kernelInfoOffset: version >= 0x020f ? dv.getUint32(0x268, true) : null,
    protectedModeOffset,
    protectedModeLength,
    protectedModeSizeFromHeader,
    fileLength: n,
  };
}

/** The protected-mode part (compressed vmlinux flat binary) of a validated bzImage. */
export function protectedModePart(bytes: Uint8Array, hdr: SetupHeader = parseSetupHeader(bytes)): Uint8Array {
  return bytes.subarray(hdr.protectedModeOffset);
}

/**
 * The setup header bytes to copy into a zero page: file bytes 0x1F1 .. headerEnd
 * (place them at zero-page offset 0x1F1).
 */
export function setupHeaderBytes(bytes: Uint8Array, hdr: SetupHeader = parseSetupHeader(bytes)): Uint8Array {
  return bytes.subarray(SETUP_HEADER_START, hdr.headerEnd);
}

export type KernelFileKind = 'bzimage' | 'elf64';

const ELF_MACHINES: Readonly<Record<number, string>> = {
  3: 'i386',
  8: 'MIPS',
  20: 'PowerPC',
  21: 'PowerPC64',
  40: 'ARM',
  43: 'SPARC v9',
  50: 'IA-64',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
  258: 'LoongArch',
};

/** e_machine of x86-64. */
export const EM_X86_64 = 62;

/** A short description of well-known compressed or archive formats, for messages. */
function sniffOther(bytes: Uint8Array): string | null {
  const starts = (...m: number[]): boolean => m.every((b, i) => bytes[i] === b);
  if (starts(0x1f, 0x8b)) return 'gzip-compressed data';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'zstd-compressed data';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'xz-compressed data';
  if (starts(0x42, 0x5a, 0x68)) return 'bzip2-compressed data';
  if (starts(0x02, 0x21, 0x4c, 0x18) || starts(0x04, 0x22, 0x4d, 0x18)) return 'lz4-compressed data';
  if (starts(0x89, 0x4c, 0x5a, 0x4f)) return 'lzo-compressed data';
  if (starts(0x21, 0x3c, 0x61, 0x72, 0x63, 0x68, 0x3e)) return 'an ar archive (a .deb?)';
  if (starts(0x4d, 0x5a)) return 'a PE/MZ executable without a Linux setup header';
  return null;
}

/**
 * Tell a bzImage from an x86-64 ELF (vmlinux or compressed vmlinux). Anything else throws
 * BadInputError: empty or unknown data, a 32-bit ELF, an ELF for another machine.
 * A bzImage is recognised by boot_flag 0xAA55 and "HdrS"; parseSetupHeader does the rest.
 */
export function detectKernelFile(bytes: Uint8Array): KernelFileKind {
  const n = bytes.length;
  if (n === 0) throw new BadInputError('empty file: expected a bzImage or an x86-64 kernel ELF');
  if (n >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46) {
    if (n < 64) throw new BadInputError(`truncated ELF file: ${n} bytes, shorter than an ELF64 header`);
    const cls = bytes[4];
    const data = bytes[5];
    if (cls === 1) {
      const m = bytes[18]! | (bytes[19]! << 8);
      throw new BadInputError(
        `32-bit ELF (ELFCLASS32, ${ELF_MACHINES[m] ?? `machine ${m}`}): only x86-64 (ELFCLASS64) kernels are supported`,
      );
    }
    if (cls !== 2) throw new BadInputError(`not a valid ELF file: bad EI_CLASS ${cls}`);
    if (data !== 1) {
      throw new BadInputError(
        data === 2 ? 'big-endian ELF: only little-endian x86-64 kernels are supported' : `not a valid ELF file: bad EI_DATA ${data}`,
      );
    }
    const machine = bytes[18]! | (bytes[19]! << 8);
    if (machine !== EM_X86_64) {
      throw new BadInputError(
        `ELF for ${ELF_MACHINES[machine] ?? `machine ${machine}`} (e_machine ${machine}), not x86-64`,
      );
    }
    return 'elf64';
  }
  if (n >= 0x206 && bytes[0x1fe] === 0x55 && bytes[0x1ff] === 0xaa) {
    const dv = view(bytes);
    if (dv.getUint32(0x202, true) === HDRS_MAGIC) return 'bzimage';
    throw new BadInputError('not a bzImage: boot sector flag 0xAA55 present but no "HdrS" setup header at 0x202');
  }
  const other = sniffOther(bytes);
  if (other) throw new BadInputError(`not a kernel image: this looks like ${other}`);
  throw new BadInputError(
    'not a kernel image: neither a bzImage (no 0xAA55 boot flag and "HdrS" at 0x1FE/0x202) nor an ELF file',
  );
}
