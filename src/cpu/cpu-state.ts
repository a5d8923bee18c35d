import type { Cpu } from './cpu.js';

/**
 * The CPU's architectural state and run counters, copied out of a Cpu so that
 * a machine can be restored to it (fuzz campaigns restart every run from the
 * state at the kernel's entry). Caches (decoded code, TLB) are not state: a
 * restored CPU starts with them empty.
 */
export interface CpuState {
  regLo: Uint32Array;
  regHi: Uint32Array;
  rip: [number, number];
  rflags: number;
  seg: Uint16Array;
  fsBase: [number, number];
  gsBase: [number, number];
  kernelGsBase: [number, number];
  cr0: number;
  cr2: [number, number];
  cr3: [number, number];
  cr4: number;
  cr8: number;
  efer: number;
  xcr0: number;
  gdtr: [number, number, number];
  idtr: [number, number, number];
  tr: [number, number, number, number];
  csLong: boolean;
  fpu: [number, number];
  msrs: Array<[number, number, number]>;
  cbitPosition: number;
  icount: number;
  rngState: number;
  traceHash: number;
}

export function saveCpuState(cpu: Cpu): CpuState {
  return {
    regLo: cpu.regLo.slice(),
    regHi: cpu.regHi.slice(),
    rip: [cpu.ripLo, cpu.ripHi],
    rflags: cpu.rflags,
    seg: cpu.seg.slice(),
    fsBase: [cpu.fsBaseLo, cpu.fsBaseHi],
    gsBase: [cpu.gsBaseLo, cpu.gsBaseHi],
    kernelGsBase: [cpu.kernelGsBaseLo, cpu.kernelGsBaseHi],
    cr0: cpu.cr0,
    cr2: [cpu.cr2Lo, cpu.cr2Hi],
    cr3: [cpu.cr3Lo, cpu.cr3Hi],
    cr4: cpu.cr4,
    cr8: cpu.cr8,
    efer: cpu.efer,
    xcr0: cpu.xcr0,
    gdtr: [cpu.gdtrBaseLo, cpu.gdtrBaseHi, cpu.gdtrLimit],
    idtr: [cpu.idtrBaseLo, cpu.idtrBaseHi, cpu.idtrLimit],
    tr: [cpu.trSel, cpu.trBaseLo, cpu.trBaseHi, cpu.trLimit],
    csLong: cpu.csLong,
    fpu: [cpu.fpuControl, cpu.fpuStatus],
    msrs: [...cpu.msrFile].map(([msr, [lo, hi]]) => [msr, lo, hi]),
    cbitPosition: cpu.mmu.cbitPosition,
    icount: cpu.icount,
    rngState: cpu.rngState,
    traceHash: cpu.traceHash,
  };
}

/** Put a saved state into a CPU (one whose caches are empty or are flushed here). */
export function loadCpuState(cpu: Cpu, s: CpuState): void {
  cpu.regLo.set(s.regLo);
  cpu.regHi.set(s.regHi);
  [cpu.ripLo, cpu.ripHi] = s.rip;
  cpu.rflags = s.rflags;
  cpu.seg.set(s.seg);
  [cpu.fsBaseLo, cpu.fsBaseHi] = s.fsBase;
  [cpu.gsBaseLo, cpu.gsBaseHi] = s.gsBase;
  [cpu.kernelGsBaseLo, cpu.kernelGsBaseHi] = s.kernelGsBase;
  cpu.cr0 = s.cr0;
  [cpu.cr2Lo, cpu.cr2Hi] = s.cr2;
  [cpu.cr3Lo, cpu.cr3Hi] = s.cr3;
  cpu.cr4 = s.cr4;
  cpu.cr8 = s.cr8;
  cpu.efer = s.efer;
  cpu.xcr0 = s.xcr0;
  [cpu.gdtrBaseLo, cpu.gdtrBaseHi, cpu.gdtrLimit] = s.gdtr;
  [cpu.idtrBaseLo, cpu.idtrBaseHi, cpu.idtrLimit] = s.idtr;
  [cpu.trSel, cpu.trBaseLo, cpu.trBaseHi, cpu.trLimit] = s.tr;
  cpu.setCodeMode(s.csLong);
  [cpu.fpuControl, cpu.fpuStatus] = s.fpu;
  cpu.msrFile.clear();
  for (const [msr, lo, hi] of s.msrs) cpu.msrFile.set(msr, [lo, hi]);
  cpu.mmu.setCbit(s.cbitPosition);
  cpu.icount = s.icount;
  cpu.rngState = s.rngState;
  cpu.traceHash = s.traceHash;
  cpu.trace.reset(); // the ring held another run's instructions
  cpu.flushTlb();
}
