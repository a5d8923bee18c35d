import { describe, expect, it } from 'vitest';
import { GhcbMsrProtocol } from '../../src/hypervisor/ghcb-msr-protocol.js';
import { GhcbPageProtocol, GHCB_OFFSET, setField } from '../../src/hypervisor/ghcb-page.js';
import type { SvsmCallEvent } from '../../src/hypervisor/interfaces.js';
import { readU64, writeU64 } from '../../src/hypervisor/mem64.js';
import { RMP_PG_SIZE_4K, RmpTable } from '../../src/hypervisor/rmp.js';
import {
  MinimalSvsm,
  SVSM_ERR_INVALID_ADDRESS,
  SVSM_ERR_INVALID_PARAMETER,
  SVSM_ERR_UNSUPPORTED_CALL,
  SVSM_ERR_UNSUPPORTED_PROTOCOL,
  SVSM_PVALIDATE_FAIL_INPUT,
  SVSM_PVALIDATE_FAIL_NO_CHANGE,
  SVSM_PVALIDATE_FAIL_SIZEMISMATCH,
  SVSM_PVALIDATE_MAX_COUNT,
  type SvsmRegs,
} from '../../src/hypervisor/svsm.js';
import { cpuidOptionsFor, makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

const CAA = 0x9000;
const MiB = 1 << 20;

function setup() {
  const mem = new SparseMemory(16 * MiB, { kind: 'zero' });
  const rmp = new RmpTable(16 * MiB, { initialLowerVmplPerms: [0xf, 0, 0] });
  const regs: SvsmRegs = { rax: 0n, rcx: 0n, rdx: 0n, r8: 0n, r9: 0n };
  const events: SvsmCallEvent[] = [];
  const svsm = new MinimalSvsm({ memory: mem, rmp, regs, caa: CAA, guestVmpl: 1, base: 0xe00000, size: 0x200000, onEvent: (e) => events.push(e) });
  return { mem, rmp, regs, svsm, events };
}

interface Entry {
  pfn: number;
  validate: boolean;
  size?: 0 | 1;
  ignoreCf?: boolean;
}

const entryValue = (e: Entry): bigint =>
  BigInt(e.size ?? 0) | (e.validate ? 4n : 0n) | (e.ignoreCf ? 8n : 0n) | (BigInt(e.pfn) << 12n);

/** What svsm_pval_4k_page / svsm_pval_pages put in the calling area, then the call itself. */
function requestPvalidate(t: ReturnType<typeof setup>, entries: Entry[], curIndex = 0): void {
  const pc = CAA + 8;
  t.mem.write16(pc, entries.length);
  t.mem.write16(pc + 2, curIndex);
  entries.forEach((e, i) => writeU64(t.mem, pc + 8 + 8 * i, entryValue(e)));
  t.mem.write8(CAA, 1); // call_pending
  t.regs.rax = 1n; // protocol 0, call 1
  t.regs.rcx = BigInt(pc);
}

describe('core PVALIDATE', () => {
  it('validates on the guest behalf, grants VMPL1 access and clears call_pending', () => {
    const t = setup();
    t.rmp.pvalidate(0x123000, RMP_PG_SIZE_4K, false, 0);
    requestPvalidate(t, [{ pfn: 0x123, validate: true }]);
    const entry = t.svsm.enter(0, 'msr');
    expect(entry.entered).toBe(true);
    expect(t.regs.rax).toBe(0n);
    expect(t.mem.read8(CAA)).toBe(0);
    expect(t.rmp.isValidated(0x123000)).toBe(true);
    expect(t.rmp.permissions(0x123000, 1)).toBe(0xf);
    expect(t.mem.read16(CAA + 10)).toBe(1);
    expect(t.events[0]).toMatchObject({ name: 'SVSM_CORE_PVALIDATE', result: 0n, resultName: 'SVSM_SUCCESS', caa: CAA });
  });

  it('rescinds and revokes access', () => {
    const t = setup();
    requestPvalidate(t, [{ pfn: 0x200, validate: false }]);
    t.svsm.enter(0, 'ghcb');
    expect(t.regs.rax).toBe(0n);
    expect(t.rmp.isValidated(0x200000)).toBe(false);
    expect(t.rmp.permissions(0x200000, 1)).toBe(0);
  });

  it('CF=1 is an error unless ignore_cf is set', () => {
    const t = setup();
    requestPvalidate(t, [{ pfn: 0x300, validate: true }]);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_PVALIDATE_FAIL_NO_CHANGE);
    requestPvalidate(t, [{ pfn: 0x300, validate: true, ignoreCf: true }]);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(0n);
  });

  it('stops at the failing entry with cur_index on it (size mismatch, then the kernel resumes)', () => {
    const t = setup();
    // 2 MiB at 4 MiB: one page rescinded -> mixed
    t.rmp.pvalidate(0x401000, RMP_PG_SIZE_4K, false, 0);
    t.rmp.pvalidate(0x100000, RMP_PG_SIZE_4K, false, 0);
    t.rmp.pvalidate(0x101000, RMP_PG_SIZE_4K, false, 0);
    requestPvalidate(t, [
      { pfn: 0x100, validate: true },
      { pfn: 0x400, validate: true, size: 1 },
      { pfn: 0x101, validate: true },
    ]);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_PVALIDATE_FAIL_SIZEMISMATCH);
    expect(t.mem.read16(CAA + 10)).toBe(1);
    expect(t.rmp.isValidated(0x100000)).toBe(true);
    expect(t.rmp.isValidated(0x101000)).toBe(false);
    // svsm_pval_pages: skip the 2M entry and call again
    t.mem.write16(CAA + 10, 2);
    t.mem.write8(CAA, 1);
    t.regs.rax = 1n;
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(0n);
    expect(t.rmp.isValidated(0x101000)).toBe(true);
    expect(t.mem.read16(CAA + 10)).toBe(3);
  });

  it('FAIL_INPUT for shared pages', () => {
    const t = setup();
    t.rmp.pageStateChange(0x500, false);
    requestPvalidate(t, [{ pfn: 0x500, validate: true }]);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_PVALIDATE_FAIL_INPUT);
  });

  it('refuses the SVSM own memory and malformed requests', () => {
    const t = setup();
    requestPvalidate(t, [{ pfn: 0xe00, validate: false }]);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_INVALID_ADDRESS);
    expect(t.rmp.isValidated(0xe00000)).toBe(true);
    requestPvalidate(t, [{ pfn: 0x100, validate: false, size: 0 }]);
    writeU64(t.mem, CAA + 16, entryValue({ pfn: 0x100, validate: false }) | 0x30n); // reserved bits
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_INVALID_PARAMETER);
    requestPvalidate(t, [{ pfn: 0x100, validate: false }], 2);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_INVALID_PARAMETER);
    requestPvalidate(t, []);
    t.mem.write16(CAA + 8, SVSM_PVALIDATE_MAX_COUNT + 1);
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_INVALID_PARAMETER);
  });
});

describe('calls, protocols and the calling area', () => {
  it('unknown core calls and protocols', () => {
    const t = setup();
    t.mem.write8(CAA, 1);
    t.regs.rax = 2n; // CREATE_VCPU
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_UNSUPPORTED_CALL);
    expect(t.mem.read8(CAA)).toBe(0);
    t.mem.write8(CAA, 1);
    t.regs.rax = (1n << 32n) | 0n; // attestation
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_UNSUPPORTED_PROTOCOL);
  });

  it('REMAP_CA moves the calling area; call_pending is cleared in the old one', () => {
    const t = setup();
    t.mem.write8(CAA, 1);
    t.regs.rax = 0n;
    t.regs.rcx = 0xa000n;
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(0n);
    expect(t.svsm.caa).toBe(0xa000);
    expect(t.mem.read8(CAA)).toBe(0);
    t.mem.write8(0xa000, 1);
    t.regs.rcx = 0xa008n;
    t.svsm.enter(0, 'msr');
    expect(t.regs.rax).toBe(SVSM_ERR_INVALID_ADDRESS);
    expect(t.svsm.caa).toBe(0xa000);
  });

  it('no pending call: registers untouched, and the event says the request was not in the calling area', () => {
    const t = setup();
    t.regs.rax = 1n;
    expect(t.svsm.enter(0, 'msr')).toMatchObject({ entered: true, call: { name: 'no call pending', callId: 1, resultName: 'nothing done' } });
    expect(t.regs.rax).toBe(1n);
  });

  it('only VMPL0 can be entered', () => {
    expect(setup().svsm.enter(1, 'msr')).toMatchObject({ entered: false });
  });
});

describe('wired to the protocols', () => {
  it('MSR 0x016 runs a PVALIDATE call and the event carries it', () => {
    const t = setup();
    const config = makeVmConfig({ mode: 'snp', vmpl: 1, svsm: true });
    const proto = new GhcbMsrProtocol({ config, cpuid: new CpuidPolicy(cpuidOptionsFor(config)), rmp: t.rmp, svsm: t.svsm });
    t.rmp.pvalidate(0x123000, RMP_PG_SIZE_4K, false, 0);
    requestPvalidate(t, [{ pfn: 0x123, validate: true }]);
    const o = proto.handle(0x016n);
    expect(o).toMatchObject({ kind: 'continue', newMsrValue: 0x017n, event: { svsm: { name: 'SVSM_CORE_PVALIDATE', result: 0n } } });
    expect(t.rmp.isValidated(0x123000)).toBe(true);
  });

  it('NAE 0x80000018 does the same through the GHCB', () => {
    const t = setup();
    const config = makeVmConfig({ mode: 'snp', vmpl: 1, svsm: true });
    const ghcb = 0x7000;
    const page = new GhcbPageProtocol({
      config,
      memory: t.mem,
      cpuid: new CpuidPolicy(cpuidOptionsFor(config)),
      registration: { registeredGhcbGpa: BigInt(ghcb) },
      rmp: t.rmp,
      svsm: t.svsm,
    });
    t.rmp.pvalidate(0x124000, RMP_PG_SIZE_4K, false, 0);
    requestPvalidate(t, [{ pfn: 0x124, validate: true }]);
    t.mem.write16(ghcb + GHCB_OFFSET.protocol_version, 2);
    setField(t.mem, ghcb, 'sw_exit_code', 0x80000018n);
    setField(t.mem, ghcb, 'sw_exit_info_1', 0n);
    setField(t.mem, ghcb, 'sw_exit_info_2', 0n);
    expect(page.handle(BigInt(ghcb)).kind).toBe('continue');
    expect(readU64(t.mem, ghcb + GHCB_OFFSET.sw_exit_info_1)).toBe(0n);
    expect(t.regs.rax).toBe(0n);
    expect(t.rmp.isValidated(0x124000)).toBe(true);
  });
});
