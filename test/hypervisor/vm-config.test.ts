import { describe, expect, it } from 'vitest';
import {
  cpuidOptionsFor,
  makeVmConfig,
  parseVmOptions,
  sevStatusBitNames,
  sevStatusFor,
  hvFeatureNames,
  VmConfigError,
} from '../../src/hypervisor/vm-config.js';

describe('sevStatusFor', () => {
  it('maps each mode to the architectural SEV_STATUS bits', () => {
    expect(sevStatusFor(makeVmConfig({ mode: 'none' }))).toBe(0n);
    expect(sevStatusFor(makeVmConfig({ mode: 'sev' }))).toBe(0x1n);
    expect(sevStatusFor(makeVmConfig({ mode: 'sev-es' }))).toBe(0x3n);
    expect(sevStatusFor(makeVmConfig({ mode: 'snp' }))).toBe(0x7n);
  });

  it('ORs extra feature bits (DebugSwap is bit 7)', () => {
    expect(sevStatusFor(makeVmConfig({ mode: 'snp', sevFeatures: 0x80n }))).toBe(0x87n);
  });

  it('reports nothing for a plain guest even with features configured', () => {
    expect(sevStatusFor(makeVmConfig({ mode: 'none', sevFeatures: 0x80n }))).toBe(0n);
  });
});

describe('makeVmConfig defaults and checks', () => {
  it('defaults to C-bit 51 and KVM hypervisor features 0x3', () => {
    const c = makeVmConfig();
    expect(c.cbit).toBe(51);
    expect(c.hvFeatures).toBe(0x3n);
    expect(c.vmpl).toBe(0);
    expect(c.cpuidPage).toBe(true);
    expect(c.ghcbMaxVersion).toBe(2);
  });

  it('adds multi-VMPL when an SVSM is modelled without explicit features', () => {
    expect(makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1 }).hvFeatures).toBe(0x23n);
    expect(makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1, hvFeatures: 0x3n }).hvFeatures).toBe(0x3n);
  });

  it('an SVSM puts the guest at VMPL1 unless told otherwise', () => {
    expect(parseVmOptions('snp,svsm').vmpl).toBe(1);
    expect(parseVmOptions('snp,svsm,vmpl=3').vmpl).toBe(3);
  });

  it('rejects inconsistent combinations', () => {
    expect(() => makeVmConfig({ mode: 'sev-es', vmpl: 1 })).toThrow(VmConfigError);
    expect(() => makeVmConfig({ mode: 'snp', svsm: true, vmpl: 0 })).toThrow(/VMPL0/);
    expect(() => makeVmConfig({ mode: 'snp', sevFeatures: 0x4n })).toThrow(/bits 0..2/);
    expect(() => makeVmConfig({ cbit: 12 })).toThrow(/cbit/);
  });
});

describe('parseVmOptions', () => {
  it('parses a bare mode', () => {
    expect(parseVmOptions('snp').mode).toBe('snp');
    expect(parseVmOptions('sev-es').mode).toBe('sev-es');
  });

  it('parses all keys', () => {
    const c = parseVmOptions('mode=snp, cbit=47, cpuid-cbit=51, sev-features=0x80, hv-features=0x21, vmpl=2, svsm, cpuid-page=off, ghcb-version=1');
    expect(c).toEqual({
      mode: 'snp',
      cbit: 47,
      cpuidCbit: 51,
      sevFeatures: 0x80n,
      hvFeatures: 0x21n,
      vmpl: 2,
      svsm: true,
      cpuidPage: false,
      ghcbMaxVersion: 1,
      prevalidate: 'all',
      rmpMismatch: 'convert',
    });
  });

  it('allows vmpl > 0 without an SVSM (tests the NOT_VMPL0 path)', () => {
    const c = parseVmOptions('snp,vmpl=1');
    expect(c.vmpl).toBe(1);
    expect(c.svsm).toBe(false);
  });

  it('rejects unknown keys and bad values', () => {
    expect(() => parseVmOptions('snp,foo=1')).toThrow(/unknown VM option/);
    expect(() => parseVmOptions('snp,vmpl=4')).toThrow(/vmpl/);
    expect(() => parseVmOptions('snp,cbit=x')).toThrow(/not a number/);
    expect(() => parseVmOptions('mode=tdx')).toThrow(/mode/);
    expect(() => parseVmOptions('snp,svsm=maybe')).toThrow(/on\/off/);
  });
});

describe('bit naming and CPUID options', () => {
  it('names SEV_STATUS bits like the kernel', () => {
    expect(sevStatusBitNames(0x87n)).toEqual(['SEV_ENABLED', 'SEV_ES_ENABLED', 'SEV_SNP_ENABLED', 'SNP_DEBUG_SWAP']);
    expect(sevStatusBitNames(1n << 13n)).toEqual(['reserved bit 13']);
  });

  it('names hypervisor feature bits', () => {
    expect(hvFeatureNames(0x23n)).toEqual(['SNP', 'SNP_AP_CREATION', 'SNP_MULTI_VMPL']);
  });

  it('derives the CPUID 0x8000001F options', () => {
    expect(cpuidOptionsFor(makeVmConfig({ mode: 'sev-es', cbit: 47 }))).toMatchObject({
      cbit: 47,
      sev: true,
      sevEs: true,
      sevSnp: false,
    });
    expect(cpuidOptionsFor(makeVmConfig({ mode: 'snp' }))).toMatchObject({ sev: true, sevEs: true, sevSnp: true });
    expect(cpuidOptionsFor(makeVmConfig({ mode: 'none' }))).toMatchObject({ sev: false, sevEs: false, sevSnp: false });
  });
});
