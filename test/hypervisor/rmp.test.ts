import { describe, expect, it } from 'vitest';
import {
  FAIL_INPUT,
  FAIL_PERMISSION,
  FAIL_SIZEMISMATCH,
  PERM_ALL,
  RMP_PG_SIZE_2M,
  RMP_PG_SIZE_4K,
  RmpTable,
  type RmpFinding,
} from '../../src/hypervisor/rmp.js';

const MiB = 1 << 20;

describe('initial state', () => {
  it('all launch memory is private and validated', () => {
    const rmp = new RmpTable(16 * MiB);
    expect(rmp.isPrivate(0)).toBe(true);
    expect(rmp.isValidated(16 * MiB - 1)).toBe(true);
    expect(rmp.isValidated(16 * MiB)).toBe(false);
    expect(rmp.counts()).toEqual({ private: 4096, validated: 4096, shared: 0 });
  });

  it('VMPL0 holds all permissions, lower VMPLs none unless configured', () => {
    expect(new RmpTable(MiB).permissions(0x1000, 0)).toBe(PERM_ALL);
    expect(new RmpTable(MiB).permissions(0x1000, 1)).toBe(0);
    const rmp = new RmpTable(MiB, { initialLowerVmplPerms: [0xf, 0x3, 0] });
    expect(rmp.permissions(0x1000, 1)).toBe(0xf);
    expect(rmp.permissions(0x1000, 2)).toBe(0x3);
    expect(rmp.permissions(0x1000, 3)).toBe(0);
  });

  it('rejects sizes that are not whole pages', () => {
    expect(() => new RmpTable(0x1234)).toThrow(RangeError);
  });
});

describe('pvalidate', () => {
  it('validating an already valid page succeeds with CF=1 and is recorded', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.pvalidate(0x5000, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: 0, cf: true });
    expect(rmp.findings.map((f) => f.code)).toEqual(['double-validate']);
  });

  it('rescind then validate changes state with CF=0', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.pvalidate(0x5000, RMP_PG_SIZE_4K, false, 0)).toEqual({ rc: 0, cf: false });
    expect(rmp.isValidated(0x5abc)).toBe(false);
    expect(rmp.isValidated(0x6000)).toBe(true);
    expect(rmp.pvalidate(0x5000, RMP_PG_SIZE_4K, false, 0)).toEqual({ rc: 0, cf: true });
    expect(rmp.findings.at(-1)?.code).toBe('rescind-invalid');
    expect(rmp.pvalidate(0x5000, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: 0, cf: false });
    expect(rmp.isValidated(0x5000)).toBe(true);
  });

  it('FAIL_INPUT for misaligned, out of range and shared pages', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.pvalidate(0x5008, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: FAIL_INPUT, cf: false });
    expect(rmp.pvalidate(MiB, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: FAIL_INPUT, cf: false });
    expect(rmp.pvalidate(0x1000, RMP_PG_SIZE_2M, true, 0)).toEqual({ rc: FAIL_INPUT, cf: false });
    rmp.pageStateChange(7, false);
    expect(rmp.pvalidate(0x7000, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: FAIL_INPUT, cf: false });
    expect(rmp.findings.at(-1)?.code).toBe('validate-shared');
  });

  it('2M works on uniform regions and reports size mismatch on mixed ones', () => {
    const rmp = new RmpTable(8 * MiB);
    expect(rmp.pvalidate(2 * MiB, RMP_PG_SIZE_2M, false, 0)).toEqual({ rc: 0, cf: false });
    expect(rmp.isValidated(2 * MiB)).toBe(false);
    expect(rmp.isValidated(4 * MiB - 1)).toBe(false);
    expect(rmp.isValidated(4 * MiB)).toBe(true);
    // one page inside another 2M region made shared -> mixed
    rmp.pageStateChange((4 * MiB) / 0x1000 + 3, false);
    expect(rmp.pvalidate(4 * MiB, RMP_PG_SIZE_2M, false, 0)).toEqual({ rc: FAIL_SIZEMISMATCH, cf: false });
    // mixed validated state among private pages -> mismatch too
    rmp.pvalidate(6 * MiB, RMP_PG_SIZE_4K, false, 0);
    expect(rmp.pvalidate(6 * MiB, RMP_PG_SIZE_2M, true, 0)).toEqual({ rc: FAIL_SIZEMISMATCH, cf: false });
    // the 4K fallback works for the rest
    expect(rmp.pvalidate(6 * MiB, RMP_PG_SIZE_4K, true, 0)).toEqual({ rc: 0, cf: false });
  });

  it('a 2M region entirely shared is FAIL_INPUT', () => {
    const rmp = new RmpTable(4 * MiB);
    for (let g = 512; g < 1024; g++) rmp.pageStateChange(g, false);
    expect(rmp.pvalidate(2 * MiB, RMP_PG_SIZE_2M, true, 0)).toEqual({ rc: FAIL_INPUT, cf: false });
  });

  it('faults outside VMPL0', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.pvalidate(0x5000, RMP_PG_SIZE_4K, true, 1)).toMatchObject({ fault: 'gp' });
    expect(rmp.isValidated(0x5000)).toBe(true);
  });
});

describe('rmpadjust', () => {
  it('the kernel probe (RDX=1) succeeds at VMPL0', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 1n, 0)).toEqual({ rc: 0 });
    expect(rmp.permissions(0x3000, 1)).toBe(0);
  });

  it('the kernel probe fails with FAIL_PERMISSION at VMPL1..3', () => {
    const rmp = new RmpTable(MiB, { initialLowerVmplPerms: [0xf, 0xf, 0xf] });
    for (const vmpl of [1, 2, 3]) expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 1n, vmpl)).toEqual({ rc: FAIL_PERMISSION });
  });

  it('grants permissions to a lower VMPL', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 0x0f01n, 0)).toEqual({ rc: 0 });
    expect(rmp.permissions(0x3000, 1)).toBe(0xf);
    expect(rmp.permissions(0x4000, 1)).toBe(0);
    // VMPL1 may pass on what it holds to VMPL2, but not more
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 0x0302n, 1)).toEqual({ rc: 0 });
    expect(rmp.permissions(0x3000, 2)).toBe(0x3);
    expect(rmp.rmpadjust(0x4000, RMP_PG_SIZE_4K, 0x0102n, 1)).toEqual({ rc: FAIL_PERMISSION });
  });

  it('FAIL_INPUT for bad target, address, or unvalidated/shared pages', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 4n, 0)).toEqual({ rc: FAIL_INPUT });
    expect(rmp.rmpadjust(0x3001, RMP_PG_SIZE_4K, 1n, 0)).toEqual({ rc: FAIL_INPUT });
    rmp.pvalidate(0x3000, RMP_PG_SIZE_4K, false, 0);
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 1n, 0)).toEqual({ rc: FAIL_INPUT });
    rmp.pageStateChange(4, false);
    expect(rmp.rmpadjust(0x4000, RMP_PG_SIZE_4K, 1n, 0)).toEqual({ rc: FAIL_INPUT });
  });

  it('VMSA bit only from VMPL0; 2M size mismatch', () => {
    const rmp = new RmpTable(4 * MiB, { initialLowerVmplPerms: [0xf, 0, 0] });
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 0x10002n, 1)).toEqual({ rc: FAIL_PERMISSION });
    expect(rmp.rmpadjust(0x3000, RMP_PG_SIZE_4K, 0x10001n, 0)).toEqual({ rc: 0 });
    expect(rmp.isVmsa(0x3000)).toBe(true);
    rmp.pvalidate(2 * MiB + 0x1000, RMP_PG_SIZE_4K, false, 0);
    expect(rmp.rmpadjust(2 * MiB, RMP_PG_SIZE_2M, 1n, 0)).toEqual({ rc: FAIL_SIZEMISMATCH });
  });
});

describe('pageStateChange', () => {
  it('shared pages become unvalidated; private assignment leaves them unvalidated', () => {
    const rmp = new RmpTable(MiB);
    rmp.pvalidate(0x9000, RMP_PG_SIZE_4K, false, 0);
    expect(rmp.pageStateChange(9, false)).toBe(true);
    expect(rmp.isPrivate(0x9000)).toBe(false);
    expect(rmp.isValidated(0x9000)).toBe(false);
    expect(rmp.pageStateChange(9, true)).toBe(true);
    expect(rmp.isPrivate(0x9000)).toBe(true);
    expect(rmp.isValidated(0x9000)).toBe(false);
    expect(rmp.findings).toEqual([]);
  });

  it('records sharing a still-validated page and redundant changes', () => {
    const seen: RmpFinding[] = [];
    const rmp = new RmpTable(MiB, { onFinding: (f) => seen.push(f) });
    rmp.pageStateChange(9, false);
    expect(rmp.isValidated(0x9000)).toBe(false);
    rmp.pageStateChange(9, false);
    rmp.pageStateChange(10, true);
    expect(seen.map((f) => f.code)).toEqual(['psc-shared-while-validated', 'psc-redundant', 'psc-redundant']);
    expect(seen[0].gpa).toBe(0x9000);
  });

  it('clears lower-VMPL permissions', () => {
    const rmp = new RmpTable(MiB, { initialLowerVmplPerms: [0xf, 0, 0] });
    rmp.pageStateChange(9, false);
    rmp.pageStateChange(9, true);
    expect(rmp.permissions(0x9000, 1)).toBe(0);
    expect(rmp.permissions(0xa000, 1)).toBe(0xf);
  });

  it('fails beyond RAM', () => {
    const rmp = new RmpTable(MiB);
    expect(rmp.pageStateChange(256, false)).toBe(false);
    expect(rmp.findings[0].code).toBe('psc-out-of-range');
  });
});

describe('snapshot / restore', () => {
  it('round-trips state and permissions', () => {
    const rmp = new RmpTable(MiB);
    const snap = rmp.snapshot();
    rmp.pageStateChange(1, false);
    rmp.rmpadjust(0x2000, RMP_PG_SIZE_4K, 0x0f01n, 0);
    rmp.restore(snap);
    expect(rmp.isPrivate(0x1000)).toBe(true);
    expect(rmp.isValidated(0x1000)).toBe(true);
    expect(rmp.permissions(0x2000, 1)).toBe(0);
    expect(() => rmp.restore(new RmpTable(2 * MiB).snapshot())).toThrow(RangeError);
  });

  it('snapshots are independent copies', () => {
    const rmp = new RmpTable(MiB);
    const snap = rmp.snapshot();
    rmp.pageStateChange(1, false);
    const snap2 = rmp.snapshot();
    rmp.restore(snap);
    rmp.restore(snap2);
    expect(rmp.isPrivate(0x1000)).toBe(false);
  });
});
