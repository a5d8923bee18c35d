import { describe, expect, it } from 'vitest';
import {
  decodeIoioInfo,
  encodeIoioInfo,
  getField,
  GHCB_OFFSET,
  GhcbPageProtocol,
  type GhcbPageProtocolOptions,
  isFieldValid,
  markFieldValid,
  setField,
  validBit,
  VMGEXIT_PSC_ERROR_INVALID_ENTRY,
  VMGEXIT_PSC_ERROR_INVALID_HDR,
  VMGEXIT_PSC_ERROR_GENERIC,
  type GhcbField,
  type VmgexitGhcbEvent,
} from '../../src/hypervisor/ghcb-page.js';
import type { IoBus, MmioBus, MsrBus, SvsmHandler } from '../../src/hypervisor/interfaces.js';
import { readU64, writeU64 } from '../../src/hypervisor/mem64.js';
import { RmpTable } from '../../src/hypervisor/rmp.js';
import { cpuidOptionsFor, makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

const GHCB = 0x7000;

/** What the kernel does before VMGEXIT (vc_ghcb_invalidate + sev_es_ghcb_hv_call). */
function guestCall(
  mem: SparseMemory,
  exitCode: bigint,
  info1: bigint,
  info2: bigint,
  inputs: Partial<Record<GhcbField, bigint>> = {},
  version = 2,
): void {
  writeU64(mem, GHCB + GHCB_OFFSET.sw_exit_code, 0n);
  mem.fill(GHCB + GHCB_OFFSET.valid_bitmap, 16, 0);
  mem.write16(GHCB + GHCB_OFFSET.protocol_version, version);
  mem.write32(GHCB + GHCB_OFFSET.ghcb_usage, 0);
  for (const [f, v] of Object.entries(inputs)) setField(mem, GHCB, f as GhcbField, v);
  setField(mem, GHCB, 'sw_exit_code', exitCode);
  setField(mem, GHCB, 'sw_exit_info_1', info1);
  setField(mem, GHCB, 'sw_exit_info_2', info2);
}

function setup(config: VmConfig = makeVmConfig({ mode: 'snp' }), extra: Partial<GhcbPageProtocolOptions> = {}) {
  const mem = new SparseMemory(1 << 24, { kind: 'zero' });
  const rmp = new RmpTable(1 << 24);
  const events: VmgexitGhcbEvent[] = [];
  const registration = { registeredGhcbGpa: BigInt(GHCB) as bigint | null };
  const proto = new GhcbPageProtocol({
    config,
    memory: mem,
    cpuid: new CpuidPolicy(cpuidOptionsFor(config)),
    registration,
    rmp,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  const info = () => [readU64(mem, GHCB + GHCB_OFFSET.sw_exit_info_1), readU64(mem, GHCB + GHCB_OFFSET.sw_exit_info_2)];
  const get = (f: GhcbField) => getField(mem, GHCB, f);
  const valid = (f: GhcbField) => isFieldValid(mem, GHCB, f);
  return { mem, rmp, proto, events, registration, info, get, valid };
}

describe('layout and valid bitmap', () => {
  it('valid bit = offset / 8', () => {
    expect(validBit('cpl')).toBe(25);
    expect(validBit('xss')).toBe(40);
    expect(validBit('rip')).toBe(47);
    expect(validBit('rsp')).toBe(59);
    expect(validBit('rax')).toBe(63);
    expect(validBit('rcx')).toBe(97);
    expect(validBit('rdx')).toBe(98);
    expect(validBit('rbx')).toBe(99);
    expect(validBit('rsi')).toBe(102);
    expect(validBit('r8')).toBe(104);
    expect(validBit('sw_exit_code')).toBe(114);
    expect(validBit('sw_exit_info_1')).toBe(115);
    expect(validBit('sw_exit_info_2')).toBe(116);
    expect(validBit('sw_scratch')).toBe(117);
    expect(validBit('xcr0')).toBe(125);
  });

  it('bit n lives in byte n/8, bit n%8 of the bitmap at 0x3F0', () => {
    const mem = new SparseMemory(1 << 16, { kind: 'zero' });
    markFieldValid(mem, GHCB, 'rax');
    expect(mem.read8(GHCB + 0x3f0 + 7)).toBe(0x80);
    markFieldValid(mem, GHCB, 'rcx');
    expect(mem.read8(GHCB + 0x3f0 + 12)).toBe(0x02);
    expect(GHCB_OFFSET.protocol_version).toBe(0xffa);
    expect(GHCB_OFFSET.ghcb_usage).toBe(0xffc);
    expect(GHCB_OFFSET.shared_buffer).toBe(0x800);
  });

  it('IOIO exit_info_1 encodings from the reference', () => {
    expect(encodeIoioInfo({ in: false, port: 0x3f8, size: 1 })).toBe(0x03f80210n);
    expect(encodeIoioInfo({ in: true, port: 0x3fd, size: 1 })).toBe(0x03fd0211n);
    expect(decodeIoioInfo(0x03fd0211n)).toMatchObject({ in: true, string: false, size: 1, addressSize: 64, port: 0x3fd });
  });
});

describe('CPUID (0x72)', () => {
  it('answers from the CPUID policy and marks RAX..RDX valid', () => {
    const t = setup();
    guestCall(t.mem, 0x72n, 0n, 0n, { rax: 0x8000001fn, rcx: 0n, xcr0: 1n });
    expect(t.proto.handle(BigInt(GHCB)).kind).toBe('continue');
    expect(t.info()).toEqual([0n, 0n]);
    expect(t.get('rbx')).toBe(0x73n);
    expect(t.get('rax') & 0x1an).toBe(0x1an);
    for (const f of ['rax', 'rbx', 'rcx', 'rdx'] as const) expect(t.valid(f)).toBe(true);
    expect(t.valid('sw_exit_code')).toBe(false); // input bitmap was consumed
  });

  it('uses the subleaf (7.0 EBX)', () => {
    const t = setup();
    guestCall(t.mem, 0x72n, 0n, 0n, { rax: 7n, rcx: 0n, xcr0: 1n });
    t.proto.handle(BigInt(GHCB));
    const policy = new CpuidPolicy(cpuidOptionsFor(makeVmConfig({ mode: 'snp' })));
    const out = new Uint32Array(4);
    policy.lookup(7, 0, out);
    expect(t.get('rbx')).toBe(BigInt(out[1]));
  });

  it('missing rcx -> error 2 / missing input 4', () => {
    const t = setup();
    guestCall(t.mem, 0x72n, 0n, 0n, { rax: 1n });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });

  it('leaf 0xD needs xcr0', () => {
    const t = setup();
    guestCall(t.mem, 0x72n, 0n, 0n, { rax: 0xdn, rcx: 0n });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });
});

describe('request validation', () => {
  it('ghcb_usage != 0 -> 2 / 2', () => {
    const t = setup();
    guestCall(t.mem, 0x72n, 0n, 0n, { rax: 1n, rcx: 0n });
    t.mem.write32(GHCB + GHCB_OFFSET.ghcb_usage, 1);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 2n]);
  });

  it('exit_info_2 not valid -> 2 / 4', () => {
    const t = setup();
    guestCall(t.mem, 0x8000fffdn, 0n, 0n);
    t.mem.fill(GHCB + GHCB_OFFSET.valid_bitmap, 16, 0);
    setField(t.mem, GHCB, 'sw_exit_code', 0x8000fffdn);
    setField(t.mem, GHCB, 'sw_exit_info_1', 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });

  it('unknown exit code -> 2 / 6', () => {
    const t = setup();
    guestCall(t.mem, 0x80000011n, 0x8000n, 0x9000n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 6n]);
  });

  it('protocol_version outside 1..2: warned by default, rejected in strict mode', () => {
    const t = setup();
    guestCall(t.mem, 0x8000fffdn, 0n, 0n, {}, 0);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0x3n]);
    expect(t.events[0].note).toContain('protocol_version 0');
    const s = setup(makeVmConfig({ mode: 'snp' }), { protocolVersionCheck: 'strict' });
    guestCall(s.mem, 0x8000fffdn, 0n, 0n, {}, 3);
    s.proto.handle(BigInt(GHCB));
    expect(s.info()).toEqual([2n, 2n]);
  });

  it('SNP: an unregistered GHCB stops the VM; GPA 0 is ignored', () => {
    const t = setup();
    t.registration.registeredGhcbGpa = null;
    guestCall(t.mem, 0x8000fffdn, 0n, 0n);
    const o = t.proto.handle(BigInt(GHCB));
    expect(o.kind).toBe('terminate');
    if (o.kind === 'terminate') expect(o.reason).toMatchObject({ initiator: 'hypervisor' });
    expect(t.proto.handle(0n)).toMatchObject({ kind: 'continue', event: { result: null } });
  });

  it('SEV-ES needs no registration', () => {
    const t = setup(makeVmConfig({ mode: 'sev-es' }));
    t.registration.registeredGhcbGpa = null;
    guestCall(t.mem, 0x8000fffdn, 0n, 0n);
    expect(t.proto.handle(BigInt(GHCB)).kind).toBe('continue');
    expect(t.info()).toEqual([0n, 3n]);
  });
});

class RecordingIo implements IoBus {
  outs: [number, number, number][] = [];
  inValues: number[] = [];
  in(port: number, size: number): number {
    return this.inValues.shift() ?? (port === 0x3fd ? 0x60 : 0xff);
  }
  out(port: number, size: number, value: number): void {
    this.outs.push([port, size, value]);
  }
}

describe('IOIO (0x7B)', () => {
  it('OUT %al to 0x3F8', () => {
    const io = new RecordingIo();
    const t = setup(undefined, { io });
    guestCall(t.mem, 0x7bn, 0x03f80210n, 0n, { rax: 0x1234_5641n });
    t.proto.handle(BigInt(GHCB));
    expect(io.outs).toEqual([[0x3f8, 1, 0x41]]);
    expect(t.info()).toEqual([0n, 0n]);
  });

  it('OUT needs RAX valid', () => {
    const t = setup(undefined, { io: new RecordingIo() });
    guestCall(t.mem, 0x7bn, 0x03f80210n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });

  it('IN %al from 0x3FD returns LSR in RAX, marked valid', () => {
    const t = setup(undefined, { io: new RecordingIo() });
    guestCall(t.mem, 0x7bn, 0x03fd0211n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.get('rax')).toBe(0x60n);
    expect(t.valid('rax')).toBe(true);
  });

  it('IN merges narrow sizes into RAX and zero-extends 32-bit', () => {
    const io = new RecordingIo();
    const t = setup(undefined, { io });
    io.inValues.push(0xbeef);
    guestCall(t.mem, 0x7bn, encodeIoioInfo({ in: true, port: 0x60, size: 2 }), 0n, { rax: 0x1111_2222_3333_4444n });
    t.proto.handle(BigInt(GHCB));
    expect(t.get('rax')).toBe(0x1111_2222_3333_beefn);
    io.inValues.push(0xdeadbeef);
    guestCall(t.mem, 0x7bn, encodeIoioInfo({ in: true, port: 0x60, size: 4 }), 0n, { rax: 0x1111_2222_3333_4444n });
    t.proto.handle(BigInt(GHCB));
    expect(t.get('rax')).toBe(0xdeadbeefn);
  });

  it('REP OUTSB through the shared buffer', () => {
    const io = new RecordingIo();
    const t = setup(undefined, { io });
    t.mem.writeBytes(GHCB + 0x800, new TextEncoder().encode('abc'));
    const info1 = encodeIoioInfo({ in: false, port: 0x3f8, size: 1, string: true, rep: true, segment: 3 });
    guestCall(t.mem, 0x7bn, info1, 3n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(io.outs).toEqual([
      [0x3f8, 1, 0x61],
      [0x3f8, 1, 0x62],
      [0x3f8, 1, 0x63],
    ]);
  });

  it('INSW fills the shared buffer', () => {
    const io = new RecordingIo();
    io.inValues.push(0x1122, 0x3344);
    const t = setup(undefined, { io });
    guestCall(t.mem, 0x7bn, encodeIoioInfo({ in: true, port: 0x1f0, size: 2, string: true }), 2n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(Array.from(t.mem.readBytes(GHCB + 0x800, 4))).toEqual([0x22, 0x11, 0x44, 0x33]);
  });

  it('string I/O scratch must lie in the shared buffer (GHCB v2)', () => {
    const t = setup(undefined, { io: new RecordingIo() });
    const info1 = encodeIoioInfo({ in: false, port: 0x3f8, size: 1, string: true });
    guestCall(t.mem, 0x7bn, info1, 1n, { sw_scratch: 0x9000n });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 3n]);
    guestCall(t.mem, 0x7bn, info1, 0x10n, { sw_scratch: BigInt(GHCB + 0xff0 - 8) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 3n]);
    guestCall(t.mem, 0x7bn, info1, 1n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });

  it('GHCB v1 accepts a scratch area outside the GHCB', () => {
    const io = new RecordingIo();
    const t = setup(makeVmConfig({ mode: 'sev-es', ghcbMaxVersion: 1 }), { io });
    t.mem.write8(0x9000, 0x5a);
    guestCall(t.mem, 0x7bn, encodeIoioInfo({ in: false, port: 0x80, size: 1, string: true }), 1n, { sw_scratch: 0x9000n }, 1);
    t.proto.handle(BigInt(GHCB));
    expect(io.outs).toEqual([[0x80, 1, 0x5a]]);
  });
});

describe('MSR (0x7C)', () => {
  const msrs = new Map<number, bigint>([[0x10, 0x1_0000_0002n]]);
  const bus: MsrBus = {
    read: (m) => msrs.get(m) ?? null,
    write: (m, v) => {
      if (m !== 0x10) return false;
      msrs.set(m, v);
      return true;
    },
  };

  it('RDMSR splits into EDX:EAX', () => {
    const t = setup(undefined, { msr: bus });
    guestCall(t.mem, 0x7cn, 0n, 0n, { rcx: 0x10n });
    t.proto.handle(BigInt(GHCB));
    expect([t.get('rax'), t.get('rdx')]).toEqual([2n, 1n]);
  });

  it('WRMSR combines EDX:EAX', () => {
    const t = setup(undefined, { msr: bus });
    guestCall(t.mem, 0x7cn, 1n, 0n, { rcx: 0x10n, rax: 0xffff_ffff_0000_0005n, rdx: 7n });
    t.proto.handle(BigInt(GHCB));
    expect(msrs.get(0x10)).toBe(0x7_0000_0005n);
  });

  it('unknown MSRs inject #GP (exit_info_1 = 1)', () => {
    const t = setup(undefined, { msr: bus });
    guestCall(t.mem, 0x7cn, 0n, 0n, { rcx: 0x99n });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([1n, 0x8000030dn]);
  });
});

describe('MMIO (0x80000001/2)', () => {
  it('read and write through the shared buffer', () => {
    const writes: [number, number[]][] = [];
    const mmio: MmioBus = {
      read: (gpa, size) => Uint8Array.from({ length: size }, (_, i) => (gpa + i) & 0xff),
      write: (gpa, data) => void writes.push([gpa, Array.from(data)]),
    };
    const t = setup(undefined, { mmio });
    guestCall(t.mem, 0x80000001n, 0xfee00020n, 4n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(Array.from(t.mem.readBytes(GHCB + 0x800, 4))).toEqual([0x20, 0x21, 0x22, 0x23]);
    t.mem.writeBytes(GHCB + 0x800, Uint8Array.of(9, 8));
    guestCall(t.mem, 0x80000002n, 0xfee000b0n, 2n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(writes).toEqual([[0xfee000b0, [9, 8]]]);
  });

  it('size above 8 is invalid input; size 0 does nothing', () => {
    const t = setup();
    guestCall(t.mem, 0x80000001n, 0xfee00020n, 9n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 5n]);
    guestCall(t.mem, 0x80000001n, 0xfee00020n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0n]);
  });
});

function pscEntry(gfn: number, op: number, huge = false, curPage = 0): bigint {
  return BigInt(curPage) | (BigInt(gfn) << 12n) | (BigInt(op) << 52n) | (huge ? 1n << 56n : 0n);
}

function writePsc(mem: SparseMemory, cur: number, end: number, entries: bigint[]): void {
  const d = GHCB + 0x800;
  mem.write16(d, cur);
  mem.write16(d + 2, end);
  mem.write32(d + 4, 0);
  entries.forEach((e, i) => writeU64(mem, d + 8 + 8 * i, e));
}

describe('SNP page state change (0x80000010)', () => {
  it('processes all entries, updates the RMP and advances cur_entry', () => {
    const t = setup();
    writePsc(t.mem, 0, 1, [pscEntry(0x100, 2), pscEntry(0x400, 2, true)]);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0n]);
    expect(t.rmp.isPrivate(0x100000)).toBe(false);
    expect(t.rmp.isPrivate(0x101000)).toBe(true);
    expect(t.rmp.isPrivate(0x400000)).toBe(false);
    expect(t.rmp.isPrivate(0x5ff000)).toBe(false);
    expect(t.rmp.isPrivate(0x600000)).toBe(true);
    expect(t.mem.read16(GHCB + 0x800)).toBe(2);
    expect(readU64(t.mem, GHCB + 0x808) & 0xfffn).toBe(1n);
    expect(readU64(t.mem, GHCB + 0x810) & 0xfffn).toBe(512n);
    expect(t.mem.read32(GHCB + 0x804)).toBe(0);
  });

  it('starts at cur_entry and honours cur_page of a partial 2M entry', () => {
    const t = setup();
    writePsc(t.mem, 1, 1, [pscEntry(0x100, 2), pscEntry(0x400, 2, true, 510)]);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.rmp.isPrivate(0x100000)).toBe(true);
    expect(t.rmp.isPrivate(0x400000 + 509 * 0x1000)).toBe(true);
    expect(t.rmp.isPrivate(0x400000 + 510 * 0x1000)).toBe(false);
    expect(t.rmp.isPrivate(0x400000 + 511 * 0x1000)).toBe(false);
  });

  it('rejects a header beyond 253 entries and malformed entries', () => {
    const t = setup();
    writePsc(t.mem, 0, 253, []);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, VMGEXIT_PSC_ERROR_INVALID_HDR]);
    writePsc(t.mem, 0, 0, [pscEntry(0x401, 2, true)]);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, VMGEXIT_PSC_ERROR_INVALID_ENTRY]);
    expect(t.rmp.isPrivate(0x401000)).toBe(true);
  });

  it('entries with operations other than private/shared are completed without a change, as KVM does (snp_begin_psc: only those two are forwarded)', () => {
    const t = setup();
    writePsc(t.mem, 0, 1, [pscEntry(0x100, 3), pscEntry(0x200, 2)]); // 3 = PSMASH: not supported by KVM
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0n]);
    expect(t.rmp.isPrivate(0x100000)).toBe(true);
    expect(t.rmp.isPrivate(0x200000)).toBe(false);
    expect(t.mem.read16(GHCB + 0x800)).toBe(2); // cur_entry past both
  });

  it('GFNs outside RAM give the generic error', () => {
    const t = setup();
    writePsc(t.mem, 0, 0, [pscEntry(0x100000, 2)]);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, VMGEXIT_PSC_ERROR_GENERIC]);
  });

  it('not for SEV-ES guests', () => {
    const t = setup(makeVmConfig({ mode: 'sev-es' }));
    writePsc(t.mem, 0, 0, [pscEntry(0x100, 2)]);
    guestCall(t.mem, 0x80000010n, 0n, 0n, { sw_scratch: BigInt(GHCB + 0x800) });
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 4n]);
  });
});

describe('HV features, termination, run VMPL, misc', () => {
  it('HV features in exit_info_2', () => {
    const t = setup(makeVmConfig({ mode: 'snp', hvFeatures: 0x23n }));
    guestCall(t.mem, 0x8000fffdn, 0n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0x23n]);
  });

  it('termination carries set, code and the detail', () => {
    const t = setup();
    guestCall(t.mem, 0x8000fffen, 0x20n, 0x10n);
    const o = t.proto.handle(BigInt(GHCB));
    expect(o.kind).toBe('terminate');
    if (o.kind !== 'terminate') return;
    expect(o.reason).toMatchObject({ initiator: 'guest', form: 'ghcb', set: 0, code: 2, codeName: 'GHCB_SNP_UNSUPPORTED', detail: 0x10n });
    expect(o.event.result).toBeNull();
  });

  it('run VMPL goes to the SVSM with the target from exit_info_1', () => {
    const targets: number[] = [];
    const svsm: SvsmHandler = { enter: (t, via) => (targets.push(t), via === 'ghcb' ? { entered: true, call: null } : { entered: false, reason: 'x' }) };
    const t = setup(makeVmConfig({ mode: 'snp', vmpl: 1, svsm: true }), { svsm });
    guestCall(t.mem, 0x80000018n, 0n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(targets).toEqual([0]);
    expect(t.info()).toEqual([0n, 0n]);
  });

  it('run VMPL without an SVSM is an invalid event', () => {
    const t = setup();
    guestCall(t.mem, 0x80000018n, 0n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([2n, 6n]);
  });

  it('RDTSC/RDTSCP from the TSC source', () => {
    const t = setup(undefined, { tsc: () => 0x1_2345_6789n });
    guestCall(t.mem, 0x87n, 0n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect([t.get('rax'), t.get('rdx'), t.get('rcx')]).toEqual([0x2345_6789n, 1n, 0n]);
  });

  it('AP jump table set then get', () => {
    const t = setup();
    guestCall(t.mem, 0x80000005n, 0n, 0x9000n);
    t.proto.handle(BigInt(GHCB));
    guestCall(t.mem, 0x80000005n, 1n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.info()).toEqual([0n, 0x9000n]);
  });

  it('every exit is recorded as an event', () => {
    const t = setup();
    guestCall(t.mem, 0x8000fffdn, 0n, 0n);
    t.proto.handle(BigInt(GHCB));
    expect(t.events).toEqual([
      {
        kind: 'vmgexit-ghcb',
        ghcbGpa: BigInt(GHCB),
        exitCode: 0x8000fffdn,
        exitName: 'SVM_VMGEXIT_HV_FEATURES',
        exitInfo1: 0n,
        exitInfo2: 0n,
        result: { info1: 0n, info2: 3n },
      },
    ]);
  });
});
