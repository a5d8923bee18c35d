import { describe, expect, it } from 'vitest';
import { makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';
import type { PoisonPolicy } from '../../src/memory/poison.js';
import { bootDebian, DEBIAN_KERNELS } from './helpers.js';

const POISONS: Array<[string, PoisonPolicy, number]> = [
  ['zero', { kind: 'zero' }, 1],
  ['random seed 1', { kind: 'random', seed: 1 }, 1],
  ['random seed 2', { kind: 'random', seed: 2 }, 2],
  ['random seed 3', { kind: 'random', seed: 3 }, 3],
];

const snp = (extra: Partial<VmConfig> = {}): VmConfig => makeVmConfig({ mode: 'snp', ...extra });

describe.each(DEBIAN_KERNELS)('%s as a confidential guest', (id) => {
  describe.each(POISONS)('poison %s', (_name, poison, seed) => {
    it('SEV-SNP at VMPL0: negotiates with the hypervisor and reaches extract_kernel', () => {
      const r = bootDebian(id, { poison, seed, vm: snp() });
      expect(r.verdict, r.reason).toBe('reached');
      const details = r.events.map((e) => `${e.kind} ${e.detail} -> ${e.result}`);
      // Stage-1 #VC handler: CPUID through the MSR protocol (leaf 0x8000001F, register EBX).
      expect(details).toContain('vmgexit-msr GHCB_MSR_CPUID_REQ 0x8000001f40000004 -> 0x7340000005');
      // sev_enable: protocol negotiation and hypervisor features (KVM default 0x3 without multi-VMPL).
      expect(details).toContain('vmgexit-msr GHCB_MSR_SEV_INFO_REQ 0x2 -> 0x2000133000001');
      expect(details).toContain('vmgexit-msr GHCB_MSR_HV_FT_REQ 0x80 -> 0x3081');
      // The VMPL0 probe succeeds at VMPL0.
      expect(r.events.some((e) => e.kind === 'rmpadjust' && e.result === 'rc=0')).toBe(true);
      expect(r.events.filter((e) => e.kind === 'vc').every((e) => e.detail === '#VC exit 0x72')).toBe(true);
      expect(r.termination).toBeNull();
    });

    it('SEV-ES: CPUID through #VC, no SNP requests', () => {
      const r = bootDebian(id, { poison, seed, vm: makeVmConfig({ mode: 'sev-es' }) });
      expect(r.verdict, r.reason).toBe('reached');
      expect(r.events.some((e) => e.kind === 'vc')).toBe(true);
      expect(r.events.some((e) => e.detail.startsWith('GHCB_MSR_SEV_INFO_REQ'))).toBe(true);
      expect(r.events.some((e) => e.detail.startsWith('GHCB_MSR_HV_FT_REQ') || e.kind === 'rmpadjust')).toBe(false);
    });

    it('SEV: no #VC and no VMGEXIT', () => {
      const r = bootDebian(id, { poison, seed, vm: makeVmConfig({ mode: 'sev' }) });
      expect(r.verdict, r.reason).toBe('reached');
      expect(r.coco?.sevStatus).toBe('0x1');
      expect(r.events).toEqual([]);
    });
  });

  it('gives the same trace hash twice under SNP', () => {
    const a = bootDebian(id, { poison: { kind: 'random', seed: 5 }, seed: 5, vm: snp() });
    const b = bootDebian(id, { poison: { kind: 'random', seed: 5 }, seed: 5, vm: snp() });
    expect(a.traceHash).toBe(b.traceHash);
    expect(a.events).toEqual(b.events);
  });
});

describe('VMPL and SEV feature negotiation', () => {
  it('6.1 rejects DebugSwap (SEV_STATUS bit 7) with GHCB_SNP_UNSUPPORTED and reports the mask', () => {
    const r = bootDebian('debian-6.1-cloud', { poison: { kind: 'zero' }, vm: snp({ sevFeatures: 0x80n }) });
    expect(r.verdict).toBe('guest-terminated');
    expect(r.termination).toEqual({ set: 0, code: 2, name: 'SEV_TERM_SET_GEN/GHCB_SNP_UNSUPPORTED', detail: '0x80' });
  });

  it('6.12 implements DebugSwap and carries on', () => {
    const r = bootDebian('debian-6.12', { poison: { kind: 'zero' }, vm: snp({ sevFeatures: 0x80n }) });
    expect(r.verdict, r.reason).toBe('reached');
  });

  it('6.12 rejects an unimplemented feature (SecureTSC, bit 11) with the mask', () => {
    const r = bootDebian('debian-6.12', { poison: { kind: 'zero' }, vm: snp({ sevFeatures: 0x800n }) });
    expect(r.verdict).toBe('guest-terminated');
    expect(r.termination).toEqual({ set: 0, code: 2, name: 'SEV_TERM_SET_GEN/GHCB_SNP_UNSUPPORTED', detail: '0x800' });
  });

  it('6.1 at VMPL2 without an SVSM: RMPADJUST fails, GHCB_TERM_NOT_VMPL0', () => {
    const r = bootDebian('debian-6.1-cloud', { poison: { kind: 'zero' }, vm: snp({ vmpl: 2 }) });
    expect(r.verdict).toBe('guest-terminated');
    expect(r.termination?.name).toBe('SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0');
    expect(r.events.some((e) => e.kind === 'rmpadjust' && e.result === 'rc=2')).toBe(true);
  });

  it('6.12 at VMPL2 without an SVSM: looks for one in the secrets page, GHCB_TERM_NO_SVSM', () => {
    const r = bootDebian('debian-6.12', { poison: { kind: 'zero' }, vm: snp({ vmpl: 2 }) });
    expect(r.verdict).toBe('guest-terminated');
    expect(r.termination?.name).toBe('SEV_TERM_SET_LINUX/GHCB_TERM_NO_SVSM');
  });

  it('6.12 at VMPL1 under an SVSM with multi-VMPL reaches extract_kernel', () => {
    const r = bootDebian('debian-6.12', { poison: { kind: 'zero' }, vm: snp({ svsm: true }) });
    expect(r.verdict, r.reason).toBe('reached');
    expect(r.coco).toMatchObject({ vmpl: 1, svsm: true });
  });

  it('6.1 as an SNP guest reaches kernel-entry, printing through #VC IOIO and the GHCB page', () => {
    const r = bootDebian('debian-6.1-cloud', { poison: { kind: 'random', seed: 1 }, vm: snp(), until: 'kernel-entry', budget: 4e9, cmdline: 'nokaslr earlyprintk=ttyS0,115200' });
    expect(r.verdict, r.reason).toBe('reached');
    expect(r.console).toContain("KASLR disabled: 'nokaslr' on cmdline.");
    expect(r.events.some((e) => e.kind === 'vmgexit-ghcb' && e.detail.startsWith('SVM_EXIT_IOIO'))).toBe(true);
    // The GHCB page goes shared and comes back private and validated.
    const pv = r.events.filter((e) => e.kind === 'pvalidate').map((e) => e.detail.split(' ').pop());
    expect(pv).toEqual(['rescind', 'validate']);
    expect(r.findings.filter((f) => f.startsWith('error'))).toEqual([]);
  });
});
