import { describe, expect, it } from 'vitest';
import { readU64 } from '../../src/hypervisor/mem64.js';
import {
  CC_BLOB_SEV_HDR_MAGIC,
  installSnpBootData,
  prependSetupData,
  readSnpCpuidPage,
  snpCpuidEntries,
  writeCcBlob,
  writeCcBlobSetupData,
  writeSecretsPage,
  writeSnpCpuidPage,
  type SnpCpuidEntry,
} from '../../src/hypervisor/snp-structures.js';
import { cpuidOptionsFor, makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy, INDEXED_LEAVES } from '../../src/platform/cpuid-policy.js';

const policy = new CpuidPolicy(cpuidOptionsFor(makeVmConfig({ mode: 'snp' })));
const mem = () => new SparseMemory(1 << 24, { kind: 'zero' });

/** The kernel's snp_cpuid_get_validated_func over a page in memory. */
function kernelLookup(m: SparseMemory, page: number, fn: number, subfn: number): [number, number, number, number] | null {
  const count = m.read32(page);
  for (let i = 0; i < count; i++) {
    const e = page + 0x10 + i * 48;
    if (m.read32(e) !== fn) continue;
    if (INDEXED_LEAVES.has(fn) && m.read32(e + 4) !== subfn) continue;
    if (fn === 0xd && (subfn === 0 || subfn === 1)) {
      const xcr0 = readU64(m, e + 8), xss = readU64(m, e + 0x10);
      if (!(xcr0 === 1n || xcr0 === 3n) || xss !== 0n) continue;
    }
    return [m.read32(e + 0x18), m.read32(e + 0x1c), m.read32(e + 0x20), m.read32(e + 0x24)];
  }
  return null;
}

describe('SNP CPUID page', () => {
  it('carries the leaves the decompressor needs, found the way the kernel looks', () => {
    const m = mem();
    writeSnpCpuidPage(m, 0x3000, snpCpuidEntries(policy));
    const count = m.read32(0x3000);
    expect(count).toBeGreaterThanOrEqual(6);
    expect(count).toBeLessThanOrEqual(64);
    const vendor = kernelLookup(m, 0x3000, 0, 0)!;
    expect([vendor[1], vendor[3], vendor[2]]).toEqual([0x68747541, 0x69746e65, 0x444d4163]);
    expect(kernelLookup(m, 0x3000, 0x80000000, 0)![0]).toBeGreaterThanOrEqual(0x8000001f);
    const sev = kernelLookup(m, 0x3000, 0x8000001f, 0)!;
    expect(sev[0] & 0x1a).toBe(0x1a);
    expect(sev[1] & 0x3f).toBe(51);
    expect(kernelLookup(m, 0x3000, 1, 0)![2] & (1 << 30)).not.toBe(0); // RDRAND
    expect(kernelLookup(m, 0x3000, 7, 0)![2] & (1 << 16)).toBe(0); // no LA57
    expect(kernelLookup(m, 0x3000, 0xd, 0)).not.toBeNull();
    expect(kernelLookup(m, 0x3000, 0xd, 1)).not.toBeNull();
    expect(kernelLookup(m, 0x3000, 0x80000001, 0)).not.toBeNull();
  });

  it('entry layout: count @0, entries of 48 bytes from 0x10', () => {
    const m = mem();
    const e: SnpCpuidEntry = { eaxIn: 0x11, ecxIn: 0x22, xcr0In: 0x33n, xssIn: 0x44n, eax: 0x55, ebx: 0x66, ecx: 0x77, edx: 0x88 };
    writeSnpCpuidPage(m, 0x3000, [e, { ...e, eaxIn: 0x99 }]);
    expect(m.read32(0x3000)).toBe(2);
    expect(m.read32(0x3004)).toBe(0);
    const at = 0x3000 + 0x10;
    expect([m.read32(at), m.read32(at + 4), m.read32(at + 8), m.read32(at + 0x10)]).toEqual([0x11, 0x22, 0x33, 0x44]);
    expect([m.read32(at + 0x18), m.read32(at + 0x1c), m.read32(at + 0x20), m.read32(at + 0x24)]).toEqual([0x55, 0x66, 0x77, 0x88]);
    expect(m.read32(at + 48)).toBe(0x99);
    expect(readSnpCpuidPage(m, 0x3000).entries[1]).toEqual({ ...e, eaxIn: 0x99 });
  });

  it('0xD subleaves 0/1 are tagged XCR0_IN = 1, everything else 0', () => {
    const entries = snpCpuidEntries(policy);
    for (const e of entries) {
      expect(e.xcr0In).toBe(e.eaxIn === 0xd && e.ecxIn <= 1 ? 1n : 0n);
      expect(e.xssIn).toBe(0n);
    }
  });

  it('forces the SEV family bits on 0x8000001F and drops out-of-range leaves', () => {
    const plain = new CpuidPolicy(cpuidOptionsFor(makeVmConfig({ mode: 'none' })));
    const e = snpCpuidEntries(plain).find((x) => x.eaxIn === 0x8000001f)!;
    expect(e.eax & 0x1a).toBe(0x1a);
    const custom = {
      entries: [
        { leaf: 0, subleaf: 0, eax: 1, ebx: 0, ecx: 0, edx: 0 },
        { leaf: 1, subleaf: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 },
        { leaf: 7, subleaf: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 },
        { leaf: 0x80000000, subleaf: 0, eax: 0x80000001, ebx: 0, ecx: 0, edx: 0 },
        { leaf: 0x8000001f, subleaf: 0, eax: 0, ebx: 0, ecx: 0, edx: 0 },
      ],
    };
    expect(snpCpuidEntries(custom).map((x) => x.eaxIn)).toEqual([0, 1, 0x80000000]);
  });

  it('refuses more than 64 entries; countOverride writes a bad count', () => {
    const many = Array.from({ length: 65 }, (_, i) => ({ leaf: i, subleaf: 0, eax: i === 0 ? 100 : 0, ebx: 0, ecx: 0, edx: 0 }));
    expect(() => snpCpuidEntries({ entries: many })).toThrow(RangeError);
    const m = mem();
    writeSnpCpuidPage(m, 0x3000, [], { countOverride: 0 });
    expect(m.read32(0x3000)).toBe(0);
  });
});

describe('secrets page', () => {
  it('writes version, fms and the SVSM fields at 0x140..0x15C', () => {
    const m = mem();
    m.fill(0x4000, 4096, 0xcc);
    writeSecretsPage(m, 0x4000, {
      fms: 0xa00f01,
      svsm: { base: 0x800000n, size: 0x400000n, caa: 0x9000n, maxVersion: 1, guestVmpl: 2 },
      apJumpTablePa: 0x6000n,
    });
    expect(m.read32(0x4000)).toBe(2);
    expect(m.read32(0x4008)).toBe(0xa00f01);
    expect(readU64(m, 0x40b0)).toBe(0x6000n);
    expect(readU64(m, 0x4140)).toBe(0x800000n);
    expect(readU64(m, 0x4148)).toBe(0x400000n);
    expect(readU64(m, 0x4150)).toBe(0x9000n);
    expect(m.read32(0x4158)).toBe(1);
    expect(m.read8(0x415c)).toBe(2);
    expect(m.read8(0x415d)).toBe(0);
    expect(m.read8(0x4fff)).toBe(0);
  });

  it('without an SVSM svsm_size stays 0', () => {
    const m = mem();
    writeSecretsPage(m, 0x4000, { fms: 1 });
    expect(readU64(m, 0x4148)).toBe(0n);
  });

  it('places VMPCKs at 0x20 + 32*i', () => {
    const m = mem();
    const keys = [0, 1, 2, 3].map((i) => new Uint8Array(32).fill(i + 1));
    writeSecretsPage(m, 0x4000, { fms: 1, vmpcks: keys });
    expect([m.read8(0x4020), m.read8(0x4040), m.read8(0x4060), m.read8(0x409f)]).toEqual([1, 2, 3, 4]);
  });
});

describe('CC blob and setup_data', () => {
  it('blob: "AMDE" magic, version, secrets and CPUID pointers (40 bytes)', () => {
    const m = mem();
    writeCcBlob(m, 0x5000, { secretsPhys: 0x4000n, cpuidPhys: 0x3000n });
    expect(Array.from(m.readBytes(0x5000, 4))).toEqual([0x41, 0x4d, 0x44, 0x45]);
    expect(m.read32(0x5000)).toBe(CC_BLOB_SEV_HDR_MAGIC);
    expect(m.read16(0x5004)).toBe(1);
    expect(readU64(m, 0x5008)).toBe(0x4000n);
    expect(m.read32(0x5010)).toBe(4096);
    expect(readU64(m, 0x5018)).toBe(0x3000n);
    expect(m.read32(0x5020)).toBe(4096);
  });

  it('setup_data node type 7, len 4, u32 blob address', () => {
    const m = mem();
    writeCcBlobSetupData(m, 0x5100, 0x5000, 0x7000n);
    expect(readU64(m, 0x5100)).toBe(0x7000n);
    expect(m.read32(0x5108)).toBe(7);
    expect(m.read32(0x510c)).toBe(4);
    expect(m.read32(0x5110)).toBe(0x5000);
    expect(() => writeCcBlobSetupData(m, 0x5100, 0x1_0000_0000)).toThrow(RangeError);
  });

  it('prepends to the zero page list', () => {
    const m = mem();
    const bp = 0x10000;
    m.write32(bp + 0x250, 0x8000);
    writeCcBlobSetupData(m, 0x5100, 0x5000);
    prependSetupData(m, bp, 0x5100);
    expect(readU64(m, bp + 0x250)).toBe(0x5100n);
    expect(readU64(m, 0x5100)).toBe(0x8000n);
  });

  it('installSnpBootData wires everything the kernel follows', () => {
    const m = mem();
    const bp = 0x10000;
    const layout = installSnpBootData(m, {
      policy,
      cpuidPageGpa: 0x3000,
      secretsPageGpa: 0x4000,
      ccBlobGpa: 0x5000,
      setupDataGpa: 0x5100,
      bootParamsGpa: bp,
    });
    // Follow the chain like find_cc_blob_setup_data + setup_cpuid_table.
    const node = Number(readU64(m, bp + 0x250));
    expect(m.read32(node + 8)).toBe(7);
    const blob = m.read32(node + 16);
    expect(m.read32(blob)).toBe(CC_BLOB_SEV_HDR_MAGIC);
    const cpuid = Number(readU64(m, blob + 0x18));
    expect(m.read32(blob + 0x20)).toBeGreaterThanOrEqual(4096);
    expect(kernelLookup(m, cpuid, 0x8000001f, 0)![1] & 0x3f).toBe(51);
    expect(layout.cpuidPage).toEqual({ gpa: 0x3000, count: m.read32(0x3000) });
    expect(m.read32(Number(readU64(m, blob + 8)) + 8)).toBe(policy.entries.find((e) => e.leaf === 1)!.eax);
  });

  it('cpuidPage: false leaves cpuid_phys 0 (kernel: GHCB_TERM_CPUID)', () => {
    const m = mem();
    const layout = installSnpBootData(m, { policy, cpuidPageGpa: 0x3000, secretsPageGpa: 0x4000, ccBlobGpa: 0x5000, setupDataGpa: 0x5100, cpuidPage: false });
    expect(layout.cpuidPage).toBeNull();
    expect(readU64(m, 0x5018)).toBe(0n);
    expect(m.read32(0x5020)).toBe(0);
  });
});
