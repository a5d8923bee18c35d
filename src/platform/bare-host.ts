import type { Cpu } from '../cpu/cpu.js';
import { Stop, type CpuHost } from '../cpu/host.js';
import { RAX, RBX, RCX, RDX } from '../cpu/registers.js';
import type { CpuidPolicy } from './cpuid-policy.js';

/** Port-mapped devices as the host sees them. */
export interface PortBus {
  portIn(port: number, size: number): number;
  portOut(port: number, size: number, value: number): void;
}

/** A bus with nothing on it: reads float high, writes vanish. */
export const EMPTY_BUS: PortBus = {
  portIn: (_port, size) => (size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff),
  portOut: () => {},
};

export const MSR_SEV_ES_GHCB = 0xc0010130, MSR_SEV_STATUS = 0xc0010131;

/**
 * A machine without a hypervisor in the way: CPUID from the policy, SEV MSRs
 * reading as zero, ports to the device bus, HLT stops the run, the SEV
 * instructions raise #UD as on a CPU without SEV enabled for the guest.
 */
export class BareMetalHost implements CpuHost {
  private readonly out = new Uint32Array(4);

  constructor(
    private readonly policy: CpuidPolicy,
    private readonly bus: PortBus = EMPTY_BUS,
  ) {}

  cpuid(cpu: Cpu): void {
    const leaf = cpu.regLo[RAX], sub = cpu.regLo[RCX];
    this.policy.lookup(leaf, sub, this.out);
    // OSXSAVE mirrors CR4 and the APIC ID is 0, as on a single-CPU machine.
    if (leaf === 1) this.out[2] = cpu.cr4 & 0x40000 ? this.out[2] | 0x8000000 : this.out[2] & ~0x8000000;
    cpu.setReg(RAX, 4, this.out[0], 0);
    cpu.setReg(RBX, 4, this.out[1], 0);
    cpu.setReg(RCX, 4, this.out[2] >>> 0, 0);
    cpu.setReg(RDX, 4, this.out[3], 0);
  }

  rdmsr(cpu: Cpu, msr: number): boolean {
    if (msr === MSR_SEV_STATUS || msr === MSR_SEV_ES_GHCB) {
      cpu.msrLo = 0;
      cpu.msrHi = 0;
      return true;
    }
    return false;
  }

  wrmsr(_cpu: Cpu, msr: number): boolean {
    return msr === MSR_SEV_ES_GHCB;
  }

  portIn(_cpu: Cpu, port: number, size: number): number {
    return this.bus.portIn(port, size);
  }

  portOut(_cpu: Cpu, port: number, size: number, value: number): void {
    this.bus.portOut(port, size, value);
  }

  vmgexit(cpu: Cpu): void {
    cpu.ud();
  }

  vmmcall(cpu: Cpu): void {
    cpu.ud();
  }

  pvalidate(cpu: Cpu): void {
    cpu.ud();
  }

  rmpadjust(cpu: Cpu): void {
    cpu.ud();
  }

  halt(cpu: Cpu): void {
    cpu.stop = Stop.Halted;
    cpu.stopDetail = 'hlt';
  }

  intercept(): boolean {
    return false;
  }
}
