/**
 * Builders for the SNP launch data a firmware hands to the decompressor:
 * the SNP CPUID page, the secrets page, the CC blob (struct cc_blob_sev_info)
 * and the setup_data node of type SETUP_CC_BLOB that points at it.
 * Layouts: arch/x86/include/asm/sev.h and arch/x86/coco/sev/shared.c (6.12).
 */
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { CpuidEntry } from '../platform/cpuid-policy.js';
import { readU64, writeU64 } from './mem64.js';

const PAGE = 4096;

// ---------------------------------------------------------------------------
// SNP CPUID page

export const SNP_CPUID_COUNT_MAX = 64;
export const SNP_CPUID_TABLE_OFFSET = 0x10;
export const SNP_CPUID_ENTRY_SIZE = 48;
/** Bytes the kernel copies (struct snp_cpuid_table). */
export const SNP_CPUID_TABLE_SIZE = SNP_CPUID_TABLE_OFFSET + SNP_CPUID_COUNT_MAX * SNP_CPUID_ENTRY_SIZE; // 0xC10

export interface SnpCpuidEntry {
  readonly eaxIn: number;
  readonly ecxIn: number;
  readonly xcr0In: bigint;
  readonly xssIn: bigint;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

/** 0x8000001F.EAX: SEV (1), SEV-ES (3), SEV-SNP (4). */
const SEV_FAMILY_BITS = (1 << 1) | (1 << 3) | (1 << 4);

/**
 * The entries a PSP-validated CPUID page would carry for this CPU identity:
 * every leaf of the policy inside its advertised ranges (basic up to leaf 0's
 * EAX, extended up to 0x80000000's EAX, hypervisor range up to 0x40000000's EAX),
 * 0xD subleaves 0/1 tagged with XCR0_IN = 1 and XSS_IN = 0 (the entries the
 * kernel looks up), and 0x8000001F.EAX with SEV, SEV-ES and SNP set.
 * Throws if more than 64 entries remain.
 */
export function snpCpuidEntries(policy: { readonly entries: readonly CpuidEntry[] }): SnpCpuidEntry[] {
  const max = (leaf: number): number => policy.entries.find((e) => e.leaf === leaf && e.subleaf === 0)?.eax ?? -1;
  const maxBasic = max(0), maxHyp = max(0x40000000), maxExt = max(0x80000000);
  const inRange = (leaf: number): boolean =>
    leaf >= 0x80000000 ? leaf <= maxExt : leaf >= 0x40000000 ? leaf <= maxHyp : leaf <= maxBasic;
  const out: SnpCpuidEntry[] = [];
  for (const e of policy.entries) {
    if (!inRange(e.leaf >>> 0)) continue;
    const xsaveBase = e.leaf === 0xd && (e.subleaf === 0 || e.subleaf === 1);
    out.push({
      eaxIn: e.leaf >>> 0,
      ecxIn: e.subleaf >>> 0,
      xcr0In: xsaveBase ? 1n : 0n,
      xssIn: 0n,
      eax: (e.leaf >>> 0 === 0x8000001f ? e.eax | SEV_FAMILY_BITS : e.eax) >>> 0,
      ebx: e.ebx >>> 0,
      ecx: e.ecx >>> 0,
      edx: e.edx >>> 0,
    });
  }
  if (out.length > SNP_CPUID_COUNT_MAX) throw new RangeError(`SNP CPUID page holds at most 64 entries (got ${out.length})`);
  return out;
}

export interface CpuidPageOptions {
  /** Write this count instead of the number of entries (to provoke GHCB_TERM_CPUID). */
  readonly countOverride?: number;
}

/** Zero the 4 KiB page at `gpa` and write the table. */
export function writeSnpCpuidPage(mem: PhysicalMemory, gpa: number, entries: readonly SnpCpuidEntry[], options: CpuidPageOptions = {}): void {
  if (entries.length > SNP_CPUID_COUNT_MAX) throw new RangeError(`SNP CPUID page holds at most 64 entries (got ${entries.length})`);
  mem.fill(gpa, PAGE, 0);
  mem.write32(gpa, options.countOverride ?? entries.length);
  entries.forEach((e, i) => {
    const at = gpa + SNP_CPUID_TABLE_OFFSET + i * SNP_CPUID_ENTRY_SIZE;
    mem.write32(at + 0x00, e.eaxIn);
    mem.write32(at + 0x04, e.ecxIn);
    writeU64(mem, at + 0x08, e.xcr0In);
    writeU64(mem, at + 0x10, e.xssIn);
    mem.write32(at + 0x18, e.eax);
    mem.write32(at + 0x1c, e.ebx);
    mem.write32(at + 0x20, e.ecx);
    mem.write32(at + 0x24, e.edx);
  });
}

/** Read a CPUID page back (entries up to min(count, 64)). */
export function readSnpCpuidPage(mem: PhysicalMemory, gpa: number): { count: number; entries: SnpCpuidEntry[] } {
  const count = mem.read32(gpa);
  const entries: SnpCpuidEntry[] = [];
  for (let i = 0; i < Math.min(count, SNP_CPUID_COUNT_MAX); i++) {
    const at = gpa + SNP_CPUID_TABLE_OFFSET + i * SNP_CPUID_ENTRY_SIZE;
    entries.push({
      eaxIn: mem.read32(at),
      ecxIn: mem.read32(at + 4),
      xcr0In: readU64(mem, at + 8),
      xssIn: readU64(mem, at + 0x10),
      eax: mem.read32(at + 0x18),
      ebx: mem.read32(at + 0x1c),
      ecx: mem.read32(at + 0x20),
      edx: mem.read32(at + 0x24),
    });
  }
  return { count, entries };
}

// ---------------------------------------------------------------------------
// Secrets page (struct snp_secrets_page)

export const SECRETS_OFFSET = {
  version: 0x000,
  imien: 0x004,
  fms: 0x008,
  gosvw: 0x010,
  vmpck0: 0x020,
  vmpck1: 0x040,
  vmpck2: 0x060,
  vmpck3: 0x080,
  osArea: 0x0a0,
  msgSeqno0: 0x0a0,
  apJumpTablePa: 0x0b0,
  guestUsage: 0x0e0,
  vmsaTweakBitmap: 0x100,
  svsmBase: 0x140,
  svsmSize: 0x148,
  svsmCaa: 0x150,
  svsmMaxVersion: 0x158,
  svsmGuestVmpl: 0x15c,
} as const;

export interface SvsmSecretsInfo {
  readonly base: bigint;
  /** Must be non-zero for the kernel to accept the SVSM. */
  readonly size: bigint;
  /** Calling area GPA (4 KiB aligned for the kernel to accept it). */
  readonly caa: bigint;
  readonly maxVersion: number;
  /** VMPL the guest runs at (non-zero for the kernel to accept it). */
  readonly guestVmpl: number;
}

export interface SecretsPageOptions {
  /** Secrets page format version (the kernel does not check it). Default 2. */
  readonly version?: number;
  /** CPUID 1 EAX of the guest. */
  readonly fms: number;
  readonly imien?: boolean;
  /** Four 32-byte VM platform communication keys; default all zero (a stub has no PSP). */
  readonly vmpcks?: readonly Uint8Array[];
  readonly apJumpTablePa?: bigint;
  /** SVSM fields at 0x140..0x15C (the firmware ABI's guest-reserved area, filled by an SVSM). */
  readonly svsm?: SvsmSecretsInfo;
}

export function writeSecretsPage(mem: PhysicalMemory, gpa: number, o: SecretsPageOptions): void {
  mem.fill(gpa, PAGE, 0);
  mem.write32(gpa + SECRETS_OFFSET.version, o.version ?? 2);
  mem.write32(gpa + SECRETS_OFFSET.imien, o.imien ? 1 : 0);
  mem.write32(gpa + SECRETS_OFFSET.fms, o.fms >>> 0);
  const vmpckOffsets = [SECRETS_OFFSET.vmpck0, SECRETS_OFFSET.vmpck1, SECRETS_OFFSET.vmpck2, SECRETS_OFFSET.vmpck3];
  (o.vmpcks ?? []).forEach((key, i) => {
    if (i > 3 || key.length !== 32) throw new RangeError('vmpcks: at most four 32-byte keys');
    mem.writeBytes(gpa + vmpckOffsets[i], key);
  });
  if (o.apJumpTablePa !== undefined) writeU64(mem, gpa + SECRETS_OFFSET.apJumpTablePa, o.apJumpTablePa);
  if (o.svsm !== undefined) {
    writeU64(mem, gpa + SECRETS_OFFSET.svsmBase, o.svsm.base);
    writeU64(mem, gpa + SECRETS_OFFSET.svsmSize, o.svsm.size);
    writeU64(mem, gpa + SECRETS_OFFSET.svsmCaa, o.svsm.caa);
    mem.write32(gpa + SECRETS_OFFSET.svsmMaxVersion, o.svsm.maxVersion >>> 0);
    mem.write8(gpa + SECRETS_OFFSET.svsmGuestVmpl, o.svsm.guestVmpl & 0xff);
  }
}

// ---------------------------------------------------------------------------
// CC blob and its setup_data node

export const CC_BLOB_SEV_HDR_MAGIC = 0x45444d41; // "AMDE"
export const CC_BLOB_SIZE = 40;
export const CC_BLOB_OFFSET = {
  magic: 0x00,
  version: 0x04,
  secretsPhys: 0x08,
  secretsLen: 0x10,
  cpuidPhys: 0x18,
  cpuidLen: 0x20,
} as const;

export interface CcBlobOptions {
  readonly secretsPhys: bigint;
  readonly secretsLen?: number;
  readonly cpuidPhys: bigint;
  readonly cpuidLen?: number;
  readonly version?: number;
  /** Override the magic (to provoke GHCB_SNP_UNSUPPORTED). */
  readonly magic?: number;
}

export function writeCcBlob(mem: PhysicalMemory, gpa: number, o: CcBlobOptions): void {
  mem.fill(gpa, CC_BLOB_SIZE, 0);
  mem.write32(gpa + CC_BLOB_OFFSET.magic, o.magic ?? CC_BLOB_SEV_HDR_MAGIC);
  mem.write16(gpa + CC_BLOB_OFFSET.version, o.version ?? 1);
  writeU64(mem, gpa + CC_BLOB_OFFSET.secretsPhys, o.secretsPhys);
  mem.write32(gpa + CC_BLOB_OFFSET.secretsLen, o.secretsLen ?? (o.secretsPhys === 0n ? 0 : PAGE));
  writeU64(mem, gpa + CC_BLOB_OFFSET.cpuidPhys, o.cpuidPhys);
  mem.write32(gpa + CC_BLOB_OFFSET.cpuidLen, o.cpuidLen ?? (o.cpuidPhys === 0n ? 0 : PAGE));
}

export const SETUP_CC_BLOB = 7;
export const SETUP_DATA_HEADER_SIZE = 16;
/** Header (16) + u32 cc_blob_address. */
export const CC_SETUP_DATA_SIZE = 20;

/** Write a setup_data node {next, type 7, len 4, cc_blob_address}. The blob must be below 4 GiB. */
export function writeCcBlobSetupData(mem: PhysicalMemory, gpa: number, blobGpa: number, next: bigint = 0n): void {
  if (!Number.isInteger(blobGpa) || blobGpa < 0 || blobGpa > 0xffffffff) {
    throw new RangeError('the CC blob must lie below 4 GiB (setup_data carries a u32 address)');
  }
  writeU64(mem, gpa, next);
  mem.write32(gpa + 8, SETUP_CC_BLOB);
  mem.write32(gpa + 12, 4);
  mem.write32(gpa + 16, blobGpa);
}

/** boot_params.hdr.setup_data (zero page offset 0x250). */
export const BOOT_PARAMS_SETUP_DATA = 0x250;

/** Put the node at `nodeGpa` at the head of the zero page's setup_data list. */
export function prependSetupData(mem: PhysicalMemory, bootParamsGpa: number, nodeGpa: number): void {
  writeU64(mem, nodeGpa, readU64(mem, bootParamsGpa + BOOT_PARAMS_SETUP_DATA));
  writeU64(mem, bootParamsGpa + BOOT_PARAMS_SETUP_DATA, BigInt(nodeGpa));
}

// ---------------------------------------------------------------------------
// Everything at once

export interface SnpBootDataOptions {
  readonly policy: { readonly entries: readonly CpuidEntry[] };
  /** 4 KiB-aligned pages for the CPUID and secrets pages. */
  readonly cpuidPageGpa: number;
  readonly secretsPageGpa: number;
  /** Where the 40-byte blob and the 20-byte setup_data node go (below 4 GiB). */
  readonly ccBlobGpa: number;
  readonly setupDataGpa: number;
  /** When given, the node is linked into this zero page's setup_data list. */
  readonly bootParamsGpa?: number;
  /** false: the blob carries no CPUID page (the kernel then terminates with (1,4)). */
  readonly cpuidPage?: boolean;
  readonly svsm?: SvsmSecretsInfo;
}

export interface SnpBootLayout {
  readonly cpuidPage: { readonly gpa: number; readonly count: number } | null;
  readonly secretsPage: number;
  readonly ccBlob: number;
  readonly setupData: number;
}

export function installSnpBootData(mem: PhysicalMemory, o: SnpBootDataOptions): SnpBootLayout {
  for (const [name, gpa] of [
    ['cpuidPageGpa', o.cpuidPageGpa],
    ['secretsPageGpa', o.secretsPageGpa],
  ] as const) {
    if (gpa % PAGE !== 0) throw new RangeError(`${name} must be 4 KiB aligned`);
  }
  const withCpuid = o.cpuidPage ?? true;
  let cpuid: SnpBootLayout['cpuidPage'] = null;
  if (withCpuid) {
    const entries = snpCpuidEntries(o.policy);
    writeSnpCpuidPage(mem, o.cpuidPageGpa, entries);
    cpuid = { gpa: o.cpuidPageGpa, count: entries.length };
  }
  const fms = o.policy.entries.find((e) => e.leaf === 1 && e.subleaf === 0)?.eax ?? 0;
  writeSecretsPage(mem, o.secretsPageGpa, { fms, ...(o.svsm ? { svsm: o.svsm } : {}) });
  writeCcBlob(mem, o.ccBlobGpa, { secretsPhys: BigInt(o.secretsPageGpa), cpuidPhys: withCpuid ? BigInt(o.cpuidPageGpa) : 0n });
  writeCcBlobSetupData(mem, o.setupDataGpa, o.ccBlobGpa);
  if (o.bootParamsGpa !== undefined) prependSetupData(mem, o.bootParamsGpa, o.setupDataGpa);
  return { cpuidPage: cpuid, secretsPage: o.secretsPageGpa, ccBlob: o.ccBlobGpa, setupData: o.setupDataGpa };
}
