import type { Cpu } from './cpu.js';

/**
 * What sits outside the CPU: the platform (ports, bare-metal MSRs, CPUID) or a
 * hypervisor in front of it. The CPU never knows about SEV; it hands each
 * intercept-capable instruction to the host, which either answers it or makes
 * the CPU raise an exception (for example #VC) through `cpu.raise`.
 */
export interface CpuHost {
  /** CPUID with leaf in EAX and subleaf in ECX; writes EAX..EDX. */
  cpuid(cpu: Cpu): void;
  /** RDMSR: return true and set `cpu.msrLo/msrHi` when handled; false lets the CPU's own MSR file answer. */
  rdmsr(cpu: Cpu, msr: number): boolean;
  /** WRMSR: return true when handled (the CPU's MSR file is then not updated). */
  wrmsr(cpu: Cpu, msr: number, lo: number, hi: number): boolean;
  portIn(cpu: Cpu, port: number, size: number): number;
  portOut(cpu: Cpu, port: number, size: number, value: number): void;
  /** VMGEXIT (F3 0F 01 D9). */
  vmgexit(cpu: Cpu): void;
  /** VMMCALL without REP. */
  vmmcall(cpu: Cpu): void;
  /** PVALIDATE (F2 0F 01 FF) and RMPADJUST (F3 0F 01 FE): SNP only. */
  pvalidate(cpu: Cpu): void;
  rmpadjust(cpu: Cpu): void;
  /** HLT executed (interrupts are never delivered: a halted CPU stays halted). */
  halt(cpu: Cpu): void;
  /** An instruction whose exit the host may want to see (RDTSC, WBINVD ...): return true if it took over. */
  intercept(cpu: Cpu, exitCode: number): boolean;
}

/** Why the run loop stopped. */
export const enum Stop {
  Running = 0,
  Halted = 1,
  TripleFault = 2,
  Breakpoint = 3,
  Terminated = 4,
  Budget = 5,
  Gap = 6,
  Milestone = 7,
}
