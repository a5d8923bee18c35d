/**
 * How the stub hypervisor presents the VM: which confidential-computing mode,
 * where the C-bit sits, what SEV_STATUS (MSR 0xC0010131) and the GHCB
 * hypervisor-features bitmap say, and the SNP extras (VMPL, SVSM, CPUID page).
 */
import { DEFAULT_CPUID_OPTIONS, type CpuidPolicyOptions } from '../platform/cpuid-policy.js';

export type CocoMode = 'none' | 'sev' | 'sev-es' | 'snp';
export type Vmpl = 0 | 1 | 2 | 3;

export interface VmConfig {
  readonly mode: CocoMode;
  /** C-bit position reported in CPUID 0x8000001F.EBX[5:0] and in the SEV-info response. */
  readonly cbit: number;
  /**
   * A lying hypervisor: the C-bit position CPUID, the CPUID page and the
   * SEV-information response report, when it differs from `cbit` (which the
   * memory encryption really uses); null when the hypervisor is honest. Such a
   * hypervisor maps guest-physical addresses with the reported bit set onto
   * the same memory, so the guest's "encrypted" mappings are really shared.
   */
  readonly cpuidCbit: number | null;
  /** Extra SEV_STATUS bits (bit 3 and up) ORed into the value implied by `mode`. */
  readonly sevFeatures: bigint;
  /** GHCB hypervisor-features bitmap (MSR request 0x080, NAE exit 0x8000FFFD). */
  readonly hvFeatures: bigint;
  /** VMPL the guest runs at (SNP). Anything but 0 needs an SVSM at VMPL0 to boot. */
  readonly vmpl: Vmpl;
  /** Model a minimal SVSM at VMPL0 (secrets-page SVSM fields, run-VMPL requests). */
  readonly svsm: boolean;
  /** Publish an SNP CPUID page through the CC blob (the kernel requires one under SNP). */
  readonly cpuidPage: boolean;
  /** Highest GHCB protocol version the hypervisor offers (KVM: 2). */
  readonly ghcbMaxVersion: number;
  /**
   * What the firmware validated before the kernel runs (SNP): every RAM page
   * (stage0's PVALIDATE of the e820 map), only the pages populated at launch
   * (kernel image, zero page, command line, page tables, GDT, CPUID/secrets/CC
   * blob pages, the entry stack), or nothing.
   */
  readonly prevalidate: Prevalidate;
  /**
   * A private access to a shared page or a shared access to a private page is
   * an RMP nested page fault: 'convert' answers as KVM with QEMU does (the page
   * is converted implicitly, its contents lost), 'terminate' stops the run
   * (conformance runs).
   */
  readonly rmpMismatch: RmpMismatch;
}

/** SEV_STATUS bits (MSR_AMD64_SEV, 0xC0010131) with the kernel's names. */
export const SEV_STATUS_BITS: readonly { bit: number; name: string }[] = [
  { bit: 0, name: 'SEV_ENABLED' },
  { bit: 1, name: 'SEV_ES_ENABLED' },
  { bit: 2, name: 'SEV_SNP_ENABLED' },
  { bit: 3, name: 'SNP_VTOM' },
  { bit: 4, name: 'SNP_REFLECT_VC' },
  { bit: 5, name: 'SNP_RESTRICTED_INJ' },
  { bit: 6, name: 'SNP_ALT_INJ' },
  { bit: 7, name: 'SNP_DEBUG_SWAP' },
  { bit: 8, name: 'SNP_PREVENT_HOST_IBS' },
  { bit: 9, name: 'SNP_BTB_ISOLATION' },
  { bit: 10, name: 'SNP_VMPL_SSS' },
  { bit: 11, name: 'SNP_SECURE_TSC' },
  { bit: 12, name: 'SNP_VMGEXIT_PARAM' },
  { bit: 14, name: 'SNP_IBS_VIRT' },
  { bit: 16, name: 'SNP_VMSA_REG_PROT' },
  { bit: 17, name: 'SNP_SMT_PROT' },
  { bit: 23, name: 'SNP_IBPB_ON_ENTRY' },
];

/** Names of the set bits of a SEV_STATUS value; unnamed bits appear as `reserved bit N`. */
export function sevStatusBitNames(value: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if (((value >> BigInt(bit)) & 1n) === 0n) continue;
    const known = SEV_STATUS_BITS.find((b) => b.bit === bit);
    out.push(known ? known.name : `reserved bit ${bit}`);
  }
  return out;
}

/** GHCB hypervisor-feature bits (GHCB spec; the kernel names 0, 1 and 5). */
export const HV_FEATURE_BITS: readonly { bit: number; name: string }[] = [
  { bit: 0, name: 'SNP' },
  { bit: 1, name: 'SNP_AP_CREATION' },
  { bit: 2, name: 'SNP_RESTRICTED_INJECTION' },
  { bit: 3, name: 'SNP_RESTRICTED_INJECTION_TIMER' },
  { bit: 4, name: 'SNP_APIC_ID_LIST' },
  { bit: 5, name: 'SNP_MULTI_VMPL' },
];

export function hvFeatureNames(value: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 52; bit++) {
    if (((value >> BigInt(bit)) & 1n) === 0n) continue;
    const known = HV_FEATURE_BITS.find((b) => b.bit === bit);
    out.push(known ? known.name : `bit ${bit}`);
  }
  return out;
}

export const HV_FT_SNP = 1n << 0n;
export const HV_FT_SNP_AP_CREATION = 1n << 1n;
export const HV_FT_SNP_MULTI_VMPL = 1n << 5n;
/** What KVM (6.12) advertises: SNP + AP creation, no multi-VMPL. */
export const KVM_HV_FEATURES = HV_FT_SNP | HV_FT_SNP_AP_CREATION;

export type Prevalidate = 'all' | 'launch' | 'none';
export type RmpMismatch = 'convert' | 'terminate';
export const PREVALIDATE_CHOICES: readonly Prevalidate[] = ['all', 'launch', 'none'];

export const DEFAULT_VM_CONFIG: VmConfig = {
  mode: 'none',
  cbit: 51,
  cpuidCbit: null,
  sevFeatures: 0n,
  hvFeatures: KVM_HV_FEATURES,
  vmpl: 0,
  svsm: false,
  cpuidPage: true,
  ghcbMaxVersion: 2,
  prevalidate: 'all',
  rmpMismatch: 'convert',
};

export class VmConfigError extends Error {
  override readonly name = 'VmConfigError';
}

/**
 * A complete, checked configuration. When an SVSM is requested, the guest
 * VMPL defaults to 1 and, unless hypervisor features are given, multi-VMPL
 * (bit 5) is added to the KVM default, since the kernel needs it to continue
 * at VMPL > 0.
 */
export function makeVmConfig(partial: Partial<VmConfig> = {}): VmConfig {
  const svsm = partial.svsm ?? DEFAULT_VM_CONFIG.svsm;
  const config: VmConfig = {
    ...DEFAULT_VM_CONFIG,
    ...partial,
    vmpl: partial.vmpl ?? (svsm ? 1 : DEFAULT_VM_CONFIG.vmpl),
    hvFeatures: partial.hvFeatures ?? (svsm ? KVM_HV_FEATURES | HV_FT_SNP_MULTI_VMPL : KVM_HV_FEATURES),
  };
  validate(config);
  return config;
}

function validate(c: VmConfig): void {
  if (!Number.isInteger(c.cbit) || c.cbit < 32 || c.cbit > 63) {
    throw new VmConfigError(`cbit must be an integer in 32..63 (got ${c.cbit})`);
  }
  if (c.cpuidCbit !== null && (!Number.isInteger(c.cpuidCbit) || c.cpuidCbit < 32 || c.cpuidCbit > 51)) {
    throw new VmConfigError(`cpuid-cbit must be an integer in 32..51, an address bit of the 52-bit physical space (got ${c.cpuidCbit})`);
  }
  if (c.cpuidCbit !== null && c.mode === 'none') throw new VmConfigError('cpuid-cbit needs an SEV mode (sev, sev-es or snp)');
  if (c.sevFeatures < 0n || c.sevFeatures >= 1n << 64n) throw new VmConfigError('sev-features must fit in 64 bits');
  if ((c.sevFeatures & 0x7n) !== 0n) {
    throw new VmConfigError('sev-features must not contain bits 0..2; they follow from the mode');
  }
  if (c.hvFeatures < 0n || c.hvFeatures >= 1n << 52n) throw new VmConfigError('hv-features must fit in 52 bits');
  if (![0, 1, 2, 3].includes(c.vmpl)) throw new VmConfigError(`vmpl must be 0..3 (got ${c.vmpl})`);
  if (!Number.isInteger(c.ghcbMaxVersion) || c.ghcbMaxVersion < 1 || c.ghcbMaxVersion > 0xffff) {
    throw new VmConfigError(`ghcb version must be 1..65535 (got ${c.ghcbMaxVersion})`);
  }
  if (c.mode !== 'snp') {
    if (c.vmpl !== 0) throw new VmConfigError('vmpl > 0 needs mode snp');
    if (c.svsm) throw new VmConfigError('an SVSM needs mode snp');
  }
  if (!PREVALIDATE_CHOICES.includes(c.prevalidate)) throw new VmConfigError(`prevalidate must be all, launch or none (got ${String(c.prevalidate)})`);
  if (c.prevalidate !== 'all' && c.mode !== 'snp') throw new VmConfigError('prevalidate launch/none needs mode snp (only SNP has validation state)');
  if (c.rmpMismatch !== 'convert' && c.rmpMismatch !== 'terminate') throw new VmConfigError(`rmp-mismatch must be convert or terminate (got ${String(c.rmpMismatch)})`);
  if (c.svsm && c.vmpl === 0) throw new VmConfigError('an SVSM occupies VMPL0: give the guest vmpl 1..3');
}

/** SEV_STATUS as the guest reads it: SEV 0x1, SEV-ES 0x3, SNP 0x7, ORed with `sevFeatures`. */
export function sevStatusFor(config: VmConfig): bigint {
  const base = { none: 0n, sev: 0x1n, 'sev-es': 0x3n, snp: 0x7n }[config.mode];
  return config.mode === 'none' ? 0n : base | config.sevFeatures;
}

/** True when the guest's register state is encrypted (#VC and the GHCB exist). */
export function hasEncryptedState(config: VmConfig): boolean {
  return config.mode === 'sev-es' || config.mode === 'snp';
}

/** CPUID identity matching the configuration (0x8000001F bits and C-bit). */
export function cpuidOptionsFor(config: VmConfig, base: CpuidPolicyOptions = DEFAULT_CPUID_OPTIONS): CpuidPolicyOptions {
  return {
    ...base,
    cbit: reportedCbit(config),
    sev: config.mode !== 'none',
    sevEs: config.mode === 'sev-es' || config.mode === 'snp',
    sevSnp: config.mode === 'snp',
  };
}

/** The C-bit position the hypervisor tells the guest (a lie with cpuidCbit). */
export function reportedCbit(config: VmConfig): number {
  return config.cpuidCbit ?? config.cbit;
}

const MODES: readonly CocoMode[] = ['none', 'sev', 'sev-es', 'snp'];

function parseBig(key: string, text: string): bigint {
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(text)) throw new VmConfigError(`${key}: not a number: '${text}'`);
  return BigInt(text);
}

function parseBool(key: string, text: string): boolean {
  if (['1', 'on', 'yes', 'true'].includes(text)) return true;
  if (['0', 'off', 'no', 'false'].includes(text)) return false;
  throw new VmConfigError(`${key}: expected on/off (got '${text}')`);
}

/**
 * Parse a comma-separated VM option string, for example
 * `snp`, `snp,vmpl=1,svsm`, `sev-es,cbit=47`, `sev,cpuid-cbit=47`, `snp,sev-features=0x80,hv-features=0x23,cpuid-page=off`.
 * Keys: a bare mode name or `mode=`; `cbit=`; `cpuid-cbit=`; `sev-features=`; `hv-features=`; `vmpl=`;
 * `svsm[=on|off]`; `cpuid-page[=on|off]`; `ghcb-version=`. Later keys win.
 */
export function parseVmOptions(spec: string): VmConfig {
  const partial: { -readonly [K in keyof VmConfig]?: VmConfig[K] } = {};
  for (const raw of spec.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? null : item.slice(eq + 1).trim().toLowerCase();
    if (value === null && (MODES as readonly string[]).includes(key)) {
      partial.mode = key as CocoMode;
      continue;
    }
    switch (key) {
      case 'mode':
        if (value === null || !(MODES as readonly string[]).includes(value)) {
          throw new VmConfigError(`mode must be one of ${MODES.join(', ')} (got '${value ?? ''}')`);
        }
        partial.mode = value as CocoMode;
        break;
      case 'cbit':
        partial.cbit = Number(parseBig(key, value ?? ''));
        break;
      case 'cpuid-cbit':
        partial.cpuidCbit = Number(parseBig(key, value ?? ''));
        break;
      case 'sev-features':
        partial.sevFeatures = parseBig(key, value ?? '');
        break;
      case 'hv-features':
        partial.hvFeatures = parseBig(key, value ?? '');
        break;
      case 'vmpl': {
        const v = Number(parseBig(key, value ?? ''));
        if (v !== 0 && v !== 1 && v !== 2 && v !== 3) throw new VmConfigError(`vmpl must be 0..3 (got ${value})`);
        partial.vmpl = v;
        break;
      }
      case 'svsm':
        partial.svsm = value === null ? true : parseBool(key, value);
        break;
      case 'cpuid-page':
        partial.cpuidPage = value === null ? true : parseBool(key, value);
        break;
      case 'ghcb-version':
        partial.ghcbMaxVersion = Number(parseBig(key, value ?? ''));
        break;
      default:
        throw new VmConfigError(`unknown VM option '${key}'`);
    }
  }
  return makeVmConfig(partial);
}
