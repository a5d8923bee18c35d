/**
 * The CPU identity the guest sees: one table of CPUID leaves for an AMD EPYC
 * (Zen 3 "Milan", family 0x19 model 0x01). Bare-metal CPUID answers, the GHCB
 * CPUID exits and the SNP CPUID page are all generated from it.
 */
export interface CpuidEntry {
  leaf: number;
  subleaf: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface CpuidPolicyOptions {
  /** C-bit position reported in 0x8000001F.EBX[5:0]. */
  cbit: number;
  /** Advertise SEV / SEV-ES / SEV-SNP in 0x8000001F.EAX. */
  sev: boolean;
  sevEs: boolean;
  sevSnp: boolean;
  /** Advertise BMI1/BMI2 (decompressors pick faster code paths). */
  bmi: boolean;
  /** Advertise 5-level paging (CPUID 7.ECX[16]). Off by default: the decompressor then stays in 4-level mode. */
  la57: boolean;
}

export const DEFAULT_CPUID_OPTIONS: CpuidPolicyOptions = {
  cbit: 51,
  sev: false,
  sevEs: false,
  sevSnp: false,
  bmi: true,
  la57: false,
};

/** Leaves whose answer depends on ECX. */
export const INDEXED_LEAVES = new Set([0x4, 0x7, 0xb, 0xd, 0xf, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1d, 0x1e, 0x1f, 0x24, 0x8000001d]);

const bit = (n: number): number => (1 << n) >>> 0;

export class CpuidPolicy {
  readonly entries: readonly CpuidEntry[];
  private readonly byKey = new Map<string, CpuidEntry>();
  readonly maxBasic: number;
  readonly maxExtended: number;

  constructor(readonly options: CpuidPolicyOptions = DEFAULT_CPUID_OPTIONS) {
    this.entries = buildEntries(options);
    for (const e of this.entries) this.byKey.set(`${e.leaf}:${e.subleaf}`, e);
    this.maxBasic = this.byKey.get('0:0')!.eax;
    this.maxExtended = this.byKey.get(`${0x80000000}:0`)!.eax;
  }

  /** Architectural answer for (leaf, subleaf); unknown leaves read as zeros, as on AMD parts. */
  lookup(leaf: number, subleaf: number, out: Uint32Array): void {
    leaf >>>= 0;
    const sub = INDEXED_LEAVES.has(leaf) ? subleaf >>> 0 : 0;
    const e = this.byKey.get(`${leaf}:${sub}`);
    if (e === undefined) {
      out[0] = out[1] = out[2] = out[3] = 0;
      return;
    }
    out[0] = e.eax;
    out[1] = e.ebx;
    out[2] = e.ecx;
    out[3] = e.edx;
  }
}

function buildEntries(o: CpuidPolicyOptions): CpuidEntry[] {
  const e: CpuidEntry[] = [];
  const add = (leaf: number, subleaf: number, eax: number, ebx: number, ecx: number, edx: number): void => {
    e.push({ leaf: leaf >>> 0, subleaf, eax: eax >>> 0, ebx: ebx >>> 0, ecx: ecx >>> 0, edx: edx >>> 0 });
  };
  // "AuthenticAMD"
  const VENDOR_EBX = 0x68747541, VENDOR_EDX = 0x69746e65, VENDOR_ECX = 0x444d4163;
  add(0x0, 0, 0x10, VENDOR_EBX, VENDOR_ECX, VENDOR_EDX);
  // Family 0x19 (base 0xF + ext 0xA), model 0x01, stepping 1: EPYC Milan.
  const fms = (0xa << 20) | (0x0 << 16) | (0xf << 8) | (0x0 << 4) | 0x1;
  const leaf1Ecx =
    bit(0) | bit(9) | bit(12) | bit(13) | bit(19) | bit(20) | bit(23) | bit(25) | bit(26) | bit(28) | bit(29) | bit(30) |
    bit(31); // SSE3 SSSE3 FMA CX16 SSE4.1 SSE4.2 POPCNT AES XSAVE AVX F16C RDRAND hypervisor
  const leaf1Edx =
    bit(0) | bit(3) | bit(4) | bit(5) | bit(6) | bit(8) | bit(9) | bit(11) | bit(12) | bit(13) | bit(14) | bit(15) |
    bit(16) | bit(17) | bit(19) | bit(23) | bit(24) | bit(25) | bit(26) | bit(28);
  add(0x1, 0, fms, (0 << 24) | (1 << 16) | (8 << 8), leaf1Ecx, leaf1Edx);
  const leaf7Ebx =
    bit(0) | (o.bmi ? bit(3) | bit(8) : 0) | bit(5) | bit(7) | bit(9) | bit(18) | bit(19) | bit(20) | bit(23) | bit(24) | bit(29);
  const leaf7Ecx = bit(9) | bit(10) | (o.la57 ? bit(16) : 0) | bit(22);
  add(0x7, 0, 0, leaf7Ebx, leaf7Ecx, 0);
  add(0xd, 0, 0x7, 0x340, 0x340, 0);
  add(0xd, 1, 0xf, 0x340, 0, 0);
  add(0x80000000, 0, 0x80000021, VENDOR_EBX, VENDOR_ECX, VENDOR_EDX);
  const ext1Ecx = bit(0) | bit(1) | bit(2) | bit(5) | bit(6) | bit(8) | bit(22) | bit(23);
  const ext1Edx = bit(11) | bit(20) | bit(25) | bit(26) | bit(27) | bit(29) | leaf1Edx & 0x0183f3ff;
  add(0x80000001, 0, fms, 0, ext1Ecx, ext1Edx);
  const brand = 'AMD EPYC 7B13 64-Core Processor'.padEnd(48, '\0');
  for (let i = 0; i < 3; i++) {
    const w = (j: number): number => {
      const s = brand.slice(i * 16 + j * 4, i * 16 + j * 4 + 4);
      return s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24);
    };
    add(0x80000002 + i, 0, w(0), w(1), w(2), w(3));
  }
  add(0x80000007, 0, 0, 0, 0, bit(8)); // invariant TSC
  add(0x80000008, 0, 0x3030, 0, 0, 0); // 48-bit physical and virtual addresses
  // A guest never sees SME itself; only the SEV family bits it is given.
  const sevEax = (o.sev ? bit(1) : 0) | (o.sevEs ? bit(3) : 0) | (o.sevSnp ? bit(4) : 0);
  // EBX: C-bit position, one bit of physical-address reduction, COHERENCY_SFW_NO clear.
  add(0x8000001f, 0, sevEax, (o.cbit & 0x3f) | (1 << 6), o.sev ? 509 : 0, o.sevEs ? 1 : 0);
  add(0x80000021, 0, 0, 0, 0, 0);
  return e;
}
