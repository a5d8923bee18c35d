import { describe, expect, it } from 'vitest';
import { GhcbMsrProtocol } from '../../src/hypervisor/ghcb-msr-protocol.js';
import { GhcbPageProtocol, GHCB_OFFSET, setField } from '../../src/hypervisor/ghcb-page.js';
import { readU64 } from '../../src/hypervisor/mem64.js';
import { RmpTable } from '../../src/hypervisor/rmp.js';
import { VmgexitDispatcher } from '../../src/hypervisor/vmgexit.js';
import { cpuidOptionsFor, makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

function setup() {
  const config = makeVmConfig({ mode: 'snp' });
  const memory = new SparseMemory(1 << 24, { kind: 'zero' });
  const rmp = new RmpTable(1 << 24);
  const cpuid = new CpuidPolicy(cpuidOptionsFor(config));
  const msr = new GhcbMsrProtocol({ config, cpuid, rmp });
  const page = new GhcbPageProtocol({ config, memory, cpuid, rmp, registration: msr });
  return { memory, rmp, d: new VmgexitDispatcher(msr, page) };
}

describe('VmgexitDispatcher', () => {
  it('routes MSR-protocol values and GHCB GPAs; the page protocol sees the registration', () => {
    const { memory, rmp, d } = setup();
    const ghcb = 0x7000;
    // The decompressor's early_setup_ghcb under SNP: rescind, PSC to shared, register.
    rmp.pvalidate(ghcb, 0, false, 0);
    expect(d.handle((2n << 52n) | (BigInt(ghcb >> 12) << 12n) | 0x14n)).toMatchObject({ kind: 'continue', newMsrValue: 0x15n });
    expect(rmp.isPrivate(ghcb)).toBe(false);
    expect(d.handle(BigInt(ghcb) | 0x12n)).toMatchObject({ kind: 'continue', newMsrValue: BigInt(ghcb) | 0x13n });
    // First GHCB call: CPUID 0x21 (TDX probe) lands in the page protocol.
    memory.write16(ghcb + GHCB_OFFSET.protocol_version, 2);
    setField(memory, ghcb, 'rax', 0x21n);
    setField(memory, ghcb, 'rcx', 0n);
    setField(memory, ghcb, 'xcr0', 1n);
    setField(memory, ghcb, 'sw_exit_code', 0x72n);
    setField(memory, ghcb, 'sw_exit_info_1', 0n);
    setField(memory, ghcb, 'sw_exit_info_2', 0n);
    const o = d.handle(BigInt(ghcb));
    expect(o).toMatchObject({ kind: 'continue', newMsrValue: BigInt(ghcb), event: { kind: 'vmgexit-ghcb', exitName: 'SVM_EXIT_CPUID' } });
    expect(readU64(memory, ghcb + GHCB_OFFSET.sw_exit_info_1)).toBe(0n);
  });

  it('terminations from either protocol', () => {
    const { d } = setup();
    expect(d.handle(0x31100n)).toMatchObject({ kind: 'terminate', reason: { set: 1, code: 3 } });
    // unregistered GHCB under SNP
    expect(d.handle(0x7000n)).toMatchObject({ kind: 'terminate', reason: { initiator: 'hypervisor' } });
  });
});
