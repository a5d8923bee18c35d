import { describe, expect, it } from 'vitest';
import { GhcbMsrProtocol, type VmgexitMsrEvent } from '../../src/hypervisor/ghcb-msr-protocol.js';
import type { SvsmEntry, SvsmHandler } from '../../src/hypervisor/interfaces.js';
import { RmpTable } from '../../src/hypervisor/rmp.js';
import { cpuidOptionsFor, makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

function setup(config: VmConfig, extra: { svsm?: SvsmHandler; unknownRequest?: 'ignore' | 'terminate' } = {}) {
  const events: VmgexitMsrEvent[] = [];
  const rmp = new RmpTable(1 << 26);
  const proto = new GhcbMsrProtocol({
    config,
    cpuid: new CpuidPolicy(cpuidOptionsFor(config)),
    rmp,
    onEvent: (e) => events.push(e),
    ...extra,
  });
  return { proto, rmp, events };
}

const snp = makeVmConfig({ mode: 'snp' });

function cont(outcome: ReturnType<GhcbMsrProtocol['handle']>): bigint {
  if (outcome.kind !== 'continue') throw new Error(`expected continue, got ${outcome.kind}`);
  return outcome.newMsrValue;
}

describe('SEV information', () => {
  it('answers max 2, min 1, C-bit 51', () => {
    expect(cont(setup(snp).proto.handle(0x002n))).toBe(0x0002000133000001n);
  });

  it('reflects configured C-bit and max version', () => {
    const { proto } = setup(makeVmConfig({ mode: 'sev-es', cbit: 47, ghcbMaxVersion: 1 }));
    expect(cont(proto.handle(0x002n))).toBe(0x000100012f000001n);
  });
});

describe('CPUID', () => {
  it('0x8000001F/EBX returns the C-bit and reduction with the register echo', () => {
    // EBX = 51 | 1 << 6 = 0x73
    expect(cont(setup(snp).proto.handle(0x8000001f40000004n))).toBe(0x0000007340000005n);
  });

  it('0x8000001F/EAX advertises SEV, SEV-ES and SNP for an SNP guest', () => {
    const eax = cont(setup(snp).proto.handle(0x8000001f00000004n)) >> 32n;
    expect(eax & 0x1an).toBe(0x1an);
    const esOnly = cont(setup(makeVmConfig({ mode: 'sev-es' })).proto.handle(0x8000001f00000004n)) >> 32n;
    expect(esOnly & 0x1an).toBe(0xan);
  });

  it('selects registers by bits 31:30 (vendor string EBX/ECX/EDX)', () => {
    const { proto } = setup(snp);
    expect(cont(proto.handle(0x0000000040000004n))).toBe(0x6874754140000005n);
    expect(cont(proto.handle(0x0000000080000004n))).toBe(0x444d416380000005n);
    expect(cont(proto.handle(0x00000000c0000004n))).toBe(0x69746e65c0000005n);
  });

  it('0x80000000 EAX >= 0x8000001F', () => {
    expect(cont(setup(snp).proto.handle(0x8000000000000004n)) >> 32n).toBeGreaterThanOrEqual(0x8000001fn);
  });

  it('records the request in an event', () => {
    const { proto, events } = setup(snp);
    proto.handle(0x8000001f40000004n);
    expect(events).toEqual([
      {
        kind: 'vmgexit-msr',
        request: 'GHCB_MSR_CPUID_REQ',
        valueIn: 0x8000001f40000004n,
        valueOut: 0x0000007340000005n,
        note: 'CPUID 0x8000001f.EBX = 0x73',
      },
    ]);
  });
});

describe('hypervisor features', () => {
  it('KVM default 0x3 -> 0x3081', () => {
    expect(cont(setup(snp).proto.handle(0x080n))).toBe(0x3081n);
  });

  it('multi-VMPL with an SVSM -> 0x23081', () => {
    expect(cont(setup(makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1 })).proto.handle(0x080n))).toBe(0x23081n);
  });
});

describe('GHCB GPA', () => {
  it('preferred GPA: none', () => {
    expect(cont(setup(snp).proto.handle(0x010n))).toBe(0xfffffffffffff011n);
  });

  it('registration echoes the GFN and records the GPA', () => {
    const { proto } = setup(snp);
    expect(proto.registeredGhcbGpa).toBeNull();
    expect(cont(proto.handle(0x7abc012n))).toBe(0x7abc013n);
    expect(proto.registeredGhcbGpa).toBe(0x7abc000n);
  });

  it('SNP-only requests stop a SEV-ES VM like KVM', () => {
    const { proto } = setup(makeVmConfig({ mode: 'sev-es' }));
    for (const req of [0x010n, 0x7abc012n, 0x0020000002345014n]) {
      const o = proto.handle(req);
      expect(o.kind).toBe('terminate');
      if (o.kind === 'terminate') expect(o.reason.initiator).toBe('hypervisor');
    }
  });
});

describe('page state change', () => {
  it('GFN 0x2345 to shared updates the RMP and answers 0x015', () => {
    const { proto, rmp } = setup(snp);
    rmp.pvalidate(0x2345000, 0, false, 0);
    expect(cont(proto.handle(0x0020000002345014n))).toBe(0x015n);
    expect(rmp.isPrivate(0x2345000)).toBe(false);
    expect(rmp.isPrivate(0x2344000)).toBe(true);
    expect(cont(proto.handle(0x0010000002345014n))).toBe(0x015n);
    expect(rmp.isPrivate(0x2345000)).toBe(true);
    expect(rmp.isValidated(0x2345000)).toBe(false);
  });

  it('GFN uses bits 51:12 and op bits 55:52', () => {
    const { proto, rmp } = setup(snp);
    proto.handle((2n << 52n) | (0xabcn << 12n) | 0x14n);
    expect(rmp.isPrivate(0xabc000)).toBe(false);
    expect(rmp.isPrivate(0xabb000)).toBe(true);
    expect(rmp.isPrivate(0xabd000)).toBe(true);
  });

  it('errors answer bit 63 | 0x015', () => {
    const { proto } = setup(snp);
    expect(cont(proto.handle((3n << 52n) | (0x10n << 12n) | 0x14n))).toBe(0x8000000000000015n);
    expect(cont(proto.handle((1n << 52n) | (0x100000n << 12n) | 0x14n))).toBe(0x8000000000000015n);
  });
});

describe('termination', () => {
  it('0x31100 terminates with (1,3)', () => {
    const { proto, events } = setup(snp);
    const o = proto.handle(0x31100n);
    expect(o.kind).toBe('terminate');
    if (o.kind !== 'terminate') return;
    expect(o.reason).toMatchObject({ initiator: 'guest', form: 'msr', set: 1, code: 3, codeName: 'GHCB_TERM_NOT_VMPL0' });
    expect(events[0]).toMatchObject({ request: 'GHCB_MSR_TERM_REQ', valueOut: null });
  });
});

describe('run at VMPL', () => {
  it('delegates to the SVSM and answers 0x017', () => {
    const calls: [number, string][] = [];
    const svsm: SvsmHandler = {
      enter(target, via): SvsmEntry {
        calls.push([target, via]);
        return { entered: true, call: null };
      },
    };
    const { proto } = setup(makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1 }), { svsm });
    expect(cont(proto.handle(0x016n))).toBe(0x017n);
    expect(calls).toEqual([[0, 'msr']]);
  });

  it('passes the target VMPL from bits 39:32 and reports refusal in 63:32', () => {
    const svsm: SvsmHandler = { enter: (t) => (t === 0 ? { entered: true, call: null } : { entered: false, reason: 'no VMPL2' }) };
    const { proto } = setup(makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1 }), { svsm });
    expect(cont(proto.handle((2n << 32n) | 0x016n))).toBe(0x100000017n);
  });

  it('without an SVSM it is an unknown request (KVM 6.12 has no 0x016)', () => {
    expect(cont(setup(snp).proto.handle(0x016n))).toBe(0x016n);
  });
});

describe('unknown requests', () => {
  it('leave the value unchanged by default', () => {
    const { proto, events } = setup(snp);
    expect(cont(proto.handle(0x123n))).toBe(0x123n);
    expect(events[0].request).toBe('unknown 0x123');
    expect(events[0].note).toContain('unchanged');
  });

  it('a response code sent as a request is unknown too', () => {
    expect(cont(setup(snp).proto.handle(0x005n))).toBe(0x005n);
  });

  it('can terminate instead', () => {
    const o = setup(snp, { unknownRequest: 'terminate' }).proto.handle(0x123n);
    expect(o.kind).toBe('terminate');
  });

  it('AP reset hold stops the only vCPU', () => {
    expect(setup(snp).proto.handle(0x006n).kind).toBe('terminate');
  });

  it('no MSR protocol without SEV-ES', () => {
    expect(setup(makeVmConfig({ mode: 'sev' })).proto.handle(0x002n).kind).toBe('terminate');
  });
});
