import { describe, expect, it } from 'vitest';
import { Cpu } from '../../src/cpu/cpu.js';
import { Stop } from '../../src/cpu/host.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';
import { PlatformPorts } from '../../src/platform/port-bus.js';
import { getField, markFieldValid, setField, clearValidBitmap, isFieldValid } from '../../src/hypervisor/ghcb-page.js';
import { MSR_SVSM_CAA, SevHost, VC_CPUID, VC_IOIO } from '../../src/hypervisor/sev-host.js';
import { HostStop } from '../../src/hypervisor/host-stop.js';
import { cpuidOptionsFor, makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';

const GHCB = 0x10000;

function setup(vm: VmConfig): { cpu: Cpu; host: SevHost; mem: SparseMemory } {
  const mem = new SparseMemory(64 << 20, { kind: 'zero' });
  const policy = new CpuidPolicy(cpuidOptionsFor(vm));
  const host = new SevHost({ config: vm, memory: mem, policy, ports: new PlatformPorts(), svsm: vm.svsm ? { caa: 0x3000, base: 48 << 20, size: 16 << 20 } : undefined });
  const cpu = new Cpu(mem, host);
  host.attach(cpu);
  cpu.cr0 = 0x11; // paging off: linear = physical
  return { cpu, host, mem };
}

function faultOf(cpu: Cpu, f: () => void): [number, number] | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e !== cpu.fault) throw e;
    return [cpu.fault.vector, cpu.fault.errorCode];
  }
}

/** Write the GHCB MSR and execute VMGEXIT, as the guest does. */
function vmgexit(cpu: Cpu, host: SevHost, value: bigint): bigint {
  host.wrmsr(cpu, 0xc0010130, Number(value & 0xffffffffn), Number(value >> 32n));
  host.vmgexit(cpu);
  host.rdmsr(cpu, 0xc0010130);
  return (BigInt(cpu.msrHi) << 32n) | BigInt(cpu.msrLo);
}

describe('SevHost: what becomes #VC', () => {
  it('SNP: CPUID and port I/O raise #VC with the SVM exit code; SEV_STATUS and the GHCB MSR never do', () => {
    const { cpu, host } = setup(makeVmConfig({ mode: 'snp', sevFeatures: 0x80n }));
    expect(faultOf(cpu, () => host.cpuid(cpu))).toEqual([29, VC_CPUID]);
    expect(faultOf(cpu, () => host.portOut(cpu, 0x3f8, 1, 0x41))).toEqual([29, VC_IOIO]);
    expect(host.rdmsr(cpu, 0xc0010131)).toBe(true);
    expect([cpu.msrLo, cpu.msrHi]).toEqual([0x87, 0]);
  });

  it('plain SEV: CPUID is answered directly with the SEV bit', () => {
    const { cpu, host } = setup(makeVmConfig({ mode: 'sev' }));
    cpu.setReg(0, 4, 0x8000001f, 0);
    host.cpuid(cpu);
    expect(cpu.regLo[0] & 0x1a).toBe(0x2); // SEV, no SEV-ES, no SNP
    expect(cpu.regLo[3] & 0x3f).toBe(51); // C-bit position in EBX
  });
});

describe('SevHost: VMGEXIT', () => {
  it('answers the MSR protocol and stops the VM on a termination request', () => {
    const { cpu, host } = setup(makeVmConfig({ mode: 'snp' }));
    expect(vmgexit(cpu, host, 0x2n)).toBe(0x0002000133000001n);
    expect(vmgexit(cpu, host, 0x080n)).toBe(0x3081n);
    host.wrmsr(cpu, 0xc0010130, 0x31100, 0);
    host.vmgexit(cpu);
    expect(cpu.stop).toBe(Stop.Terminated);
    expect(cpu.stopDetail).toMatch(/GHCB_TERM_NOT_VMPL0/);
  });

  it('under an SVSM, the GHCB MSR exit for MSR_SVSM_CAA returns the calling area', () => {
    const { cpu, host, mem } = setup(makeVmConfig({ mode: 'snp', vmpl: 2, svsm: true }));
    // Share the GHCB page (page-state change, as the kernel does) and register it (SNP requires it),
    // then ask for RDMSR 0xC001F000 through the page.
    host.rmp.pageStateChange(GHCB >> 12, false);
    expect(vmgexit(cpu, host, (BigInt(GHCB >> 12) << 12n) | 0x12n)).toBe((BigInt(GHCB >> 12) << 12n) | 0x13n);
    clearValidBitmap(mem, GHCB);
    setField(mem, GHCB, 'sw_exit_code', 0x7cn);
    setField(mem, GHCB, 'sw_exit_info_1', 0n);
    setField(mem, GHCB, 'sw_exit_info_2', 0n);
    setField(mem, GHCB, 'rcx', BigInt(MSR_SVSM_CAA));
    for (const f of ['sw_exit_code', 'sw_exit_info_1', 'sw_exit_info_2', 'rcx'] as const) markFieldValid(mem, GHCB, f);
    mem.write16(GHCB + 0xffa, 2);
    vmgexit(cpu, host, BigInt(GHCB));
    expect(getField(mem, GHCB, 'sw_exit_info_1')).toBe(0n);
    expect(isFieldValid(mem, GHCB, 'rax')).toBe(true);
    expect(getField(mem, GHCB, 'rax')).toBe(0x3000n);
    expect(getField(mem, GHCB, 'rdx')).toBe(0n);
  });
});

describe('SevHost: PVALIDATE and RMPADJUST', () => {
  it('PVALIDATE takes a virtual address, returns the RMP result in EAX and CF', () => {
    const { cpu, host } = setup(makeVmConfig({ mode: 'snp' }));
    cpu.setReg(0, 8, 0x200000, 0); // rax: page
    cpu.setReg(1, 8, 0, 0); // rcx: 4K
    cpu.setReg(2, 8, 0, 0); // rdx: rescind
    host.pvalidate(cpu);
    expect([cpu.regLo[0], cpu.rflags & 1]).toEqual([0, 0]);
    expect(host.rmp.isValidated(0x200000)).toBe(false);
    cpu.setReg(0, 8, 0x200000, 0); // EAX got the return code: address again
    host.pvalidate(cpu); // rescinding again: nothing changes, CF=1
    expect([cpu.regLo[0], cpu.rflags & 1]).toEqual([0, 1]);
    expect(host.events.map((e) => e.result)).toEqual(['rc=0', 'rc=0 CF=1']);
  });

  it('a private access to an unvalidated page raises #VC 0x404', () => {
    const { cpu, host } = setup(makeVmConfig({ mode: 'snp' }));
    cpu.mmu.setCbit(51);
    host.rmp.pvalidate(0x400000, 0, false, 0);
    expect(() => cpu.mmu.observer!.onFill(0x400000, true, 0, 0x400000, 0)).toThrow();
    expect([cpu.fault.vector, cpu.fault.errorCode]).toEqual([29, 0x404]);
    expect(() => cpu.mmu.observer!.onFill(0x400000, false, 0, 0x400000, 0)).not.toThrow();
  });

  it('RMPADJUST succeeds at VMPL0 and fails with FAIL_PERMISSION at VMPL2', () => {
    for (const [vmpl, rc] of [[0, 0], [2, 2]] as const) {
      const { cpu, host } = setup(makeVmConfig({ mode: 'snp', vmpl, svsm: vmpl > 0 }));
      cpu.setReg(0, 8, 0x200000, 0);
      cpu.setReg(1, 8, 0, 0);
      cpu.setReg(2, 8, 1, 0);
      host.rmpadjust(cpu);
      expect(cpu.regLo[0]).toBe(rc);
    }
  });
});

describe('SevHost: a C-bit that disagrees with the RMP', () => {
  /** Paging on: identity 2 MiB pages, the first with the C-bit (private), the second without (an alias). */
  function aliased(vm: VmConfig): ReturnType<typeof setup> {
    const t = setup(vm);
    const { cpu, mem } = t;
    const w64 = (pa: number, lo: number, hi = 0): void => { mem.write32(pa, lo); mem.write32(pa + 4, hi); };
    w64(0x1000, 0x2003, 1 << 19);
    w64(0x2000, 0x3003, 1 << 19);
    w64(0x3000, 0x83, 1 << 19); // VA 0 -> PA 0, C=1
    w64(0x3008, 0x83, 0); // VA 2 MiB -> PA 0, C=0 (a shared alias of private memory)
    cpu.mmu.setCbit(51);
    cpu.cr3Lo = 0x1000;
    cpu.cr0 = 0x80010033;
    cpu.cr4 = 0x20;
    cpu.efer = 0x500;
    cpu.flushTlb();
    return t;
  }

  it('a shared (C=0) read of a private page is converted to shared as KVM with QEMU does: its contents are lost, an event says so', () => {
    const { cpu, host, mem } = aliased(makeVmConfig({ mode: 'snp' }));
    mem.writeBytes(0x8000, Uint8Array.from({ length: 64 }, (_, i) => i + 1));
    expect(cpu.readLinear(0x8000, 0, 4)).toBe(0x04030201); // private view: plaintext
    expect(cpu.readLinear(0x208000, 0, 4)).toBe(0); // shared view after the implicit conversion
    expect(host.rmp.isPrivate(0x8000)).toBe(false);
    expect(host.events.find((e) => e.kind === 'rmp-conversion')?.detail).toMatch(/shared \(C=0\) read of page 0x8000 .* which the RMP holds as private/);
    // Back through the private mapping: the page is shared now, so it is converted to private, unvalidated: #VC 0x404.
    expect(faultOf(cpu, () => cpu.readLinear(0x8000, 0, 4))).toEqual([29, 0x404]);
    expect(host.rmp.isPrivate(0x8000)).toBe(true);
  });

  it('with --rmp-mismatch terminate the run stops at the first mismatch, naming GPA, access and state', () => {
    const { cpu, host } = aliased(makeVmConfig({ mode: 'snp', rmpMismatch: 'terminate' }));
    expect(() => cpu.writeLinear(0x208000, 0, 4, 0xdeadbeef, 0)).toThrow(HostStop);
    try {
      cpu.writeLinear(0x208000, 0, 4, 0xdeadbeef, 0);
    } catch (e) {
      expect((e as Error).message).toMatch(/shared \(C=0\) write of page 0x8000 \(linear 0x208000\), which the RMP holds as private/);
    }
    expect(host.rmp.isPrivate(0x8000)).toBe(true);
  });

  it('after a page-state change to shared, the C=0 alias reads the plaintext (no mismatch)', () => {
    const { cpu, host, mem } = aliased(makeVmConfig({ mode: 'snp' }));
    mem.write32(0x8000, 0x03020100);
    host.rmp.pvalidate(0x8000, 0, false, 0);
    host.rmp.pageStateChange(0x8, false);
    cpu.flushTlb();
    expect(cpu.readLinear(0x208000, 0, 4)).toBe(0x03020100);
    expect(host.events.some((e) => e.kind === 'rmp-conversion')).toBe(false);
  });
});
