import { Mnemonic, Register } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { Operand } from '../insn.js';
import { CF, DF, IF } from '../flags.js';
import { RAX, RCX, RDX } from '../registers.js';
import type { Registry } from './table.js';

/**
 * The system family: CPUID, MSRs, control registers, descriptor tables,
 * segment loads, HLT, CLI/STI, port I/O, RDTSC/RDRAND, cache and TLB
 * maintenance, hints, and the SEV instructions (handed to the host).
 */

export const MSR_TSC = 0x10, MSR_APIC_BASE = 0x1b, MSR_PAT = 0x277, MSR_XSS = 0xda0;
export const MSR_EFER = 0xc0000080, MSR_STAR = 0xc0000081, MSR_LSTAR = 0xc0000082, MSR_CSTAR = 0xc0000083, MSR_FMASK = 0xc0000084;
export const MSR_FS_BASE = 0xc0000100, MSR_GS_BASE = 0xc0000101, MSR_KERNEL_GS_BASE = 0xc0000102, MSR_TSC_AUX = 0xc0000103;

const CR0_PE = 0x1, CR0_ET = 0x10, CR0_WP = 0x10000, CR0_NW = 0x20000000, CR0_CD = 0x40000000, CR0_PG = 0x80000000;
/** CR0 bits that exist (PE MP EM TS ET NE, WP, AM, NW CD PG): the others in 31:0 ignore writes (SDM vol. 3 2.5), 63:32 must be 0. */
const CR0_DEFINED = 0x3f | CR0_WP | 0x40000 | CR0_NW | CR0_CD | CR0_PG;
const CR4_PAE = 0x20, CR4_LA57 = 0x1000, CR4_OSXSAVE = 0x40000;
/**
 * CR4 bits MOV CR4 accepts: the AMD-defined bits (APM vol. 2 3.1.3) of the
 * features this CPU has: VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR
 * OSXMMEXCPT, LA57 (modelled; the CPUID policy decides whether it is
 * advertised), FSGSBASE OSXSAVE SMEP SMAP. Not UMIP, PCIDE, PKE or CET (not
 * advertised, not modelled), nor bits AMD reserves (13..15, 19, 63:24).
 */
const CR4_SUPPORTED = 0x7ff | CR4_LA57 | 0x10000 | CR4_OSXSAVE | 0x100000 | 0x200000;
export const EFER_LMA = 0x400;
const EFER_LME = 0x100, EFER_NXE = 0x800;
/**
 * EFER bits that exist (APM vol. 2 3.1.7): SCE, LME, LMA, NXE, SVME, LMSLE,
 * FFXSR, TCE, MCOMMIT (17), INTWB (18), UAIE (20), AIBRSE (21). The rest are
 * reserved, must be zero.
 */
const EFER_DEFINED = 0x1 | EFER_LME | EFER_LMA | EFER_NXE | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x20000 | 0x40000 | 0x100000 | 0x200000;

/** Cycles per retired instruction for the deterministic TSC. */
export const TSC_PER_INSTRUCTION = 4;

/** Default MSR values a fresh AMD CPU answers without side effects. */
export function defaultMsrs(cpu: Cpu): void {
  cpu.msrFile.set(MSR_APIC_BASE, [0xfee00900, 0]);
  cpu.msrFile.set(MSR_PAT, [0x00070406, 0x00070406]);
  for (const m of [MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_FMASK, MSR_TSC_AUX]) cpu.msrFile.set(m, [0, 0]);
  // IA32_XSS exists because CPUID 0xD.1 advertises XSAVES (the SNP CPUID code reads it with a plain RDMSR).
  cpu.msrFile.set(MSR_XSS, [0, 0]);
}

function tsc(cpu: Cpu): [number, number] {
  const t = cpu.icount * TSC_PER_INSTRUCTION;
  return [t % 4294967296, Math.floor(t / 4294967296)];
}

/**
 * RDMSR as the CPU itself answers it (after the host declined, or for a
 * hypervisor that emulates an MSR for the guest): true with the value in
 * cpu.msrLo/msrHi, false for an MSR this CPU does not have (#GP).
 */
export function architecturalRdmsr(cpu: Cpu, msr: number): boolean {
  switch (msr) {
    case MSR_EFER: cpu.msrLo = cpu.efer; cpu.msrHi = 0; return true;
    case MSR_FS_BASE: cpu.msrLo = cpu.fsBaseLo; cpu.msrHi = cpu.fsBaseHi; return true;
    case MSR_GS_BASE: cpu.msrLo = cpu.gsBaseLo; cpu.msrHi = cpu.gsBaseHi; return true;
    case MSR_KERNEL_GS_BASE: cpu.msrLo = cpu.kernelGsBaseLo; cpu.msrHi = cpu.kernelGsBaseHi; return true;
    case MSR_TSC: { const [lo, hi] = tsc(cpu); cpu.msrLo = lo; cpu.msrHi = hi; return true; }
  }
  const v = cpu.msrFile.get(msr);
  if (v === undefined) return false;
  cpu.msrLo = v[0];
  cpu.msrHi = v[1];
  return true;
}

function writeMsr(cpu: Cpu, msr: number, lo: number, hi: number): void {
  switch (msr) {
    case MSR_EFER: {
      if (hi !== 0 || (lo & ~EFER_DEFINED) !== 0) cpu.gp(0);
      // LMA is read-only; keep it as long mode requires.
      const next = (lo & ~EFER_LMA) | (cpu.efer & EFER_LMA);
      if (((next ^ cpu.efer) & EFER_LME) !== 0 && (cpu.cr0 & CR0_PG) !== 0) cpu.gp(0); // LME changes only with paging off
      if (((next ^ cpu.efer) & EFER_NXE) !== 0) cpu.flushTlb();
      cpu.efer = next >>> 0;
      return;
    }
    case MSR_FS_BASE: cpu.fsBaseLo = lo; cpu.fsBaseHi = hi; return;
    case MSR_GS_BASE: cpu.gsBaseLo = lo; cpu.gsBaseHi = hi; return;
    case MSR_KERNEL_GS_BASE: cpu.kernelGsBaseLo = lo; cpu.kernelGsBaseHi = hi; return;
    case MSR_TSC: return; // the TSC stays derived from the instruction count
  }
  if (!cpu.msrFile.has(msr)) cpu.gp(0);
  cpu.msrFile.set(msr, [lo >>> 0, hi >>> 0]);
}

/** WRMSR as the CPU itself does it; false where it would raise #GP. */
export function architecturalWrmsr(cpu: Cpu, msr: number, lo: number, hi: number): boolean {
  try {
    writeMsr(cpu, msr, lo, hi);
    return true;
  } catch (e) {
    if (e === cpu.fault) return false;
    throw e;
  }
}

const cpuid: Handler = (cpu) => cpu.host.cpuid(cpu);

const rdmsr: Handler = (cpu) => {
  const msr = cpu.regLo[RCX];
  if (!cpu.host.rdmsr(cpu, msr) && !architecturalRdmsr(cpu, msr)) cpu.gp(0);
  cpu.setReg(RAX, 4, cpu.msrLo >>> 0, 0);
  cpu.setReg(RDX, 4, cpu.msrHi >>> 0, 0);
};

const wrmsr: Handler = (cpu) => {
  const msr = cpu.regLo[RCX];
  const lo = cpu.regLo[RAX], hi = cpu.regLo[RDX];
  if (!cpu.host.wrmsr(cpu, msr, lo, hi)) writeMsr(cpu, msr, lo, hi);
};

export const movToControl: Handler = (cpu, i) => {
  const lo = cpu.getReg(i.r1, i.s1 === 4 ? 4 : 8); // 32-bit code moves EAX..EDI
  const hi = i.s1 === 4 ? 0 : cpu.vHi;
  switch (i.op) {
    case 0: {
      if (hi !== 0) cpu.gp(0);
      if ((lo & CR0_PG) !== 0 && (lo & CR0_PE) === 0) cpu.gp(0);
      if ((lo & CR0_NW) !== 0 && (lo & CR0_CD) === 0) cpu.gp(0);
      if ((lo & CR0_PE) === 0) cpu.gap('clearing CR0.PE (real mode) is not implemented');
      const next = ((lo & CR0_DEFINED) | CR0_ET) >>> 0; // ET is hard-wired to 1
      const pagingOn = (next & CR0_PG) !== 0, wasOn = (cpu.cr0 & CR0_PG) !== 0;
      if (!pagingOn && wasOn && cpu.csLong) cpu.gp(0); // long mode is left from compatibility mode only
      if (pagingOn && !wasOn) {
        // Paging on with EFER.LME activates long mode (APM vol. 2 14.6.1), which needs CR4.PAE; legacy paging is not modelled.
        if ((cpu.efer & EFER_LME) === 0) cpu.gap('paging without EFER.LME (legacy 32-bit or PAE paging) is not implemented');
        if ((cpu.cr4 & CR4_PAE) === 0) cpu.gp(0);
        cpu.efer = (cpu.efer | EFER_LMA) >>> 0;
      } else if (!pagingOn && wasOn) {
        cpu.efer = (cpu.efer & ~EFER_LMA) >>> 0;
      }
      if (((next ^ cpu.cr0) & (CR0_PG | CR0_WP)) !== 0) cpu.flushTlb();
      cpu.cr0 = next;
      return;
    }
    case 2: cpu.cr2Lo = lo; cpu.cr2Hi = hi; return;
    case 3: cpu.cr3Lo = lo; cpu.cr3Hi = hi; cpu.flushTlb(); return;
    case 4: {
      if (hi !== 0 || (lo & ~CR4_SUPPORTED) !== 0) cpu.gp(0);
      // Long mode cannot be left by clearing PAE, nor the paging depth changed under it.
      if ((cpu.efer & EFER_LMA) !== 0 && ((lo & CR4_PAE) === 0 || ((lo ^ cpu.cr4) & CR4_LA57) !== 0)) cpu.gp(0);
      cpu.cr4 = lo >>> 0;
      cpu.flushTlb();
      return;
    }
    case 8: {
      if (hi !== 0 || (lo & ~0xf) !== 0) cpu.gp(0); // bits 63:4 are reserved
      cpu.cr8 = lo;
      return;
    }
    default: cpu.ud();
  }
};

export const movFromControl: Handler = (cpu, i) => {
  switch (i.op) {
    case 0: cpu.setReg(i.r0, 8, cpu.cr0, 0); return;
    case 2: cpu.setReg(i.r0, 8, cpu.cr2Lo, cpu.cr2Hi); return;
    case 3: cpu.setReg(i.r0, 8, cpu.cr3Lo, cpu.cr3Hi); return;
    case 4: cpu.setReg(i.r0, 8, cpu.cr4, 0); return;
    case 8: cpu.setReg(i.r0, 8, cpu.cr8, 0); return;
    default: cpu.ud();
  }
};

/**
 * Read the GDT descriptor a selector names (#GP past the limit, #NP when not
 * present): returns its low dword, the high dword in cpu.vHi.
 */
export function readDescriptor(cpu: Cpu, selector: number): number {
  const index = selector & 0xfff8;
  if (index + 7 > cpu.gdtrLimit) cpu.gp(selector & 0xfffc);
  const a = cpu.gdtrBaseLo + index;
  const lo = cpu.readLinear(a >>> 0, cpu.gdtrBaseHi, 8);
  if ((cpu.vHi & 0x8000) === 0) cpu.raise(11, selector & 0xfffc);
  return lo;
}

/** The 32-bit base of a descriptor from its two dwords. */
export function descriptorBase(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0;
}

/** The 20-bit limit field of a descriptor (in pages when G is set). */
export function descriptorLimit(lo: number, hi: number): number {
  return (lo & 0xffff) | (hi & 0xf0000);
}

/** Base 0 (or any base for FS/GS), 4 GiB limit, and for SS a 32-bit stack (B). */
function isFlat(s: number, lo: number, hi: number): boolean {
  return descriptorLimit(lo, hi) === 0xfffff && (hi & 0x800000) !== 0 && (s === 4 || s === 5 || descriptorBase(lo, hi) === 0) && (s !== 2 || (hi & 0x400000) !== 0);
}

/**
 * Load a data segment register (ES, SS, DS, FS, GS) with a selector, as MOV
 * and POP do in 64-bit mode: a non-null selector's descriptor is checked, and
 * for FS/GS its 32-bit base becomes the segment base (upper half zeroed). A
 * null selector leaves the FS/GS base alone (this CPU does not advertise
 * CPUID 8000_0021h EAX[6], NullSelectorClearsBase). Nothing changes on a fault.
 */
export function loadDataSegment(cpu: Cpu, s: number, sel: number): void {
  if ((sel & 0xfffc) !== 0) {
    const lo = readDescriptor(cpu, sel);
    const hi = cpu.vHi;
    const base = descriptorBase(lo, hi);
    // 32-bit code addresses memory through segment bases and limits, which this CPU does not model for ES, SS
    // and DS: it runs 32-bit code only with the flat segments every x86-64 boot path uses, and says so otherwise.
    if (!cpu.csLong && !isFlat(s, lo, hi)) {
      const limit = descriptorLimit(lo, hi);
      cpu.gap(`a non-flat segment in 32-bit code (selector 0x${sel.toString(16)}, base 0x${base.toString(16)}, limit 0x${limit.toString(16)}${(hi & 0x800000) !== 0 ? ' pages' : ' bytes'}): segment bases and limits are not modelled`);
    }
    if (s === 4) { cpu.fsBaseLo = base; cpu.fsBaseHi = 0; }
    else if (s === 5) { cpu.gsBaseLo = base; cpu.gsBaseHi = 0; }
  } else if (s === 2 && (sel & 3) !== 0) {
    cpu.gp(0);
  }
  cpu.seg[s] = sel;
}

export const movToSegment: Handler = (cpu, i) => {
  const sel = cpu.readOp(i, 1) & 0xffff;
  if (i.op === 1) cpu.ud(); // MOV to CS does not exist
  loadDataSegment(cpu, i.op, sel);
};

export const movFromSegment: Handler = (cpu, i) => {
  const v = cpu.seg[i.op];
  if (i.k0 === Operand.Reg) cpu.setReg(i.r0, i.s0 === 2 ? 2 : i.s0, v, 0);
  else cpu.writeOp(i, 0, v, 0);
};

/** LGDT/LIDT/SGDT/SIDT: a 2-byte limit followed by an 8-byte base. */
function descriptorTable(load: boolean, gdt: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    cpu.calcEA(i);
    const lo = cpu.eaLo, hi = cpu.eaHi;
    const baseAddr = lo + 2;
    const bLo = baseAddr >>> 0, bHi = baseAddr > 0xffffffff ? (hi + 1) >>> 0 : hi;
    if (load) {
      const limit = cpu.readLinear(lo, hi, 2);
      // 32-bit code loads a 6-byte operand: a 32-bit base.
      const baseLo = cpu.csLong ? cpu.readLinear(bLo, bHi, 8) : cpu.readLinear(bLo, bHi, 4);
      const baseHi = cpu.csLong ? cpu.vHi : 0;
      if (gdt) { cpu.gdtrLimit = limit; cpu.gdtrBaseLo = baseLo; cpu.gdtrBaseHi = baseHi; }
      else { cpu.idtrLimit = limit; cpu.idtrBaseLo = baseLo; cpu.idtrBaseHi = baseHi; }
    } else {
      cpu.writeLinear(lo, hi, 2, gdt ? cpu.gdtrLimit : cpu.idtrLimit, 0);
      if (cpu.csLong) cpu.writeLinear(bLo, bHi, 8, gdt ? cpu.gdtrBaseLo : cpu.idtrBaseLo, gdt ? cpu.gdtrBaseHi : cpu.idtrBaseHi);
      else cpu.writeLinear(bLo, bHi, 4, gdt ? cpu.gdtrBaseLo : cpu.idtrBaseLo, 0);
    }
  };
}

const ltr: Handler = (cpu, i) => {
  const sel = cpu.readOp(i, 0) & 0xffff;
  if ((sel & 0xfffc) === 0) cpu.gp(0);
  const index = sel & 0xfff8;
  // A long-mode TSS descriptor takes 16 bytes; outside long mode it is an 8-byte 32-bit TSS descriptor.
  const longMode = (cpu.efer & EFER_LMA) !== 0;
  if (index + (longMode ? 15 : 7) > cpu.gdtrLimit) cpu.gp(sel & 0xfffc);
  const a = cpu.gdtrBaseLo + index;
  const lo = cpu.readLinear(a >>> 0, cpu.gdtrBaseHi, 8);
  const hi = cpu.vHi;
  const upper = longMode ? cpu.readLinear((a + 8) >>> 0, cpu.gdtrBaseHi, 4) : 0;
  const type = (hi >>> 8) & 0xf;
  if (type !== 0x9) cpu.gp(sel & 0xfffc); // must be an available (64-bit, or 32-bit outside long mode) TSS
  if ((hi & 0x8000) === 0) cpu.raise(11, sel & 0xfffc);
  cpu.trSel = sel;
  cpu.trBaseLo = descriptorBase(lo, hi);
  cpu.trBaseHi = upper;
  const limit = descriptorLimit(lo, hi);
  cpu.trLimit = (hi & 0x800000) !== 0 ? limit * 4096 + 0xfff : limit; // G: the limit counts 4 KiB units
  // Mark busy, as hardware does.
  cpu.writeLinear((a + 4) >>> 0, cpu.gdtrBaseHi, 4, (hi | 0x200) >>> 0, 0);
};

const str: Handler = (cpu, i) => cpu.writeOp(i, 0, cpu.trSel, 0);
const lldt: Handler = (cpu, i) => { cpu.readOp(i, 0); };
const sldt: Handler = (cpu, i) => cpu.writeOp(i, 0, 0, 0);

const hlt: Handler = (cpu) => cpu.host.halt(cpu);
const cli: Handler = (cpu) => { cpu.rflags &= ~IF; };
const sti: Handler = (cpu) => { cpu.rflags |= IF; };
const clc: Handler = (cpu) => { cpu.rflags &= ~CF; };
const stc: Handler = (cpu) => { cpu.rflags |= CF; };
const cmc: Handler = (cpu) => { cpu.rflags ^= CF; };
const cld: Handler = (cpu) => { cpu.rflags &= ~DF; };
const std: Handler = (cpu) => { cpu.rflags |= DF; };

/** IN: port from DX or imm8, size of the accumulator operand. */
const portIn: Handler = (cpu, i) => {
  const port = i.k1 === Operand.Imm ? i.immLo & 0xff : cpu.regLo[RDX] & 0xffff;
  const v = cpu.host.portIn(cpu, port, i.s0);
  cpu.setReg(RAX, i.s0, v >>> 0, 0);
};

const portOut: Handler = (cpu, i) => {
  const port = i.k0 === Operand.Imm ? i.immLo & 0xff : cpu.regLo[RDX] & 0xffff;
  const size = i.s1;
  cpu.host.portOut(cpu, port, size, cpu.getReg(RAX, size));
};

const rdtsc: Handler = (cpu) => {
  if (cpu.host.intercept(cpu, 0x6e)) return;
  const [lo, hi] = tsc(cpu);
  cpu.setReg(RAX, 4, lo >>> 0, 0);
  cpu.setReg(RDX, 4, hi >>> 0, 0);
};

const rdtscp: Handler = (cpu) => {
  if (cpu.host.intercept(cpu, 0x87)) return;
  const [lo, hi] = tsc(cpu);
  cpu.setReg(RAX, 4, lo >>> 0, 0);
  cpu.setReg(RDX, 4, hi >>> 0, 0);
  cpu.setReg(RCX, 4, cpu.msrFile.get(MSR_TSC_AUX)?.[0] ?? 0, 0);
};

/** RDRAND/RDSEED: values from the CPU's seeded generator; CF = 1 (always ready), other flags 0. */
const rdrand: Handler = (cpu, i) => {
  const lo = cpu.nextRandom();
  const hi = cpu.nextRandom();
  cpu.setReg(i.r0, i.s0, i.s0 === 2 ? lo & 0xffff : lo, hi);
  cpu.setArith(CF);
};

const xgetbv: Handler = (cpu) => {
  if ((cpu.cr4 & CR4_OSXSAVE) === 0) cpu.ud();
  const index = cpu.regLo[RCX];
  if (index !== 0) cpu.gp(0);
  cpu.setReg(RAX, 4, cpu.xcr0, 0);
  cpu.setReg(RDX, 4, 0, 0);
};

const xsetbv: Handler = (cpu) => {
  if ((cpu.cr4 & CR4_OSXSAVE) === 0) cpu.ud();
  if (cpu.regLo[RCX] !== 0 || (cpu.regLo[RAX] & 1) === 0) cpu.gp(0);
  cpu.xcr0 = cpu.regLo[RAX];
};

const invlpg: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.mmu.flushPage(cpu.eaLo, cpu.eaHi);
};

/** Cache write-back/invalidate: nothing to do for memory, but a hypervisor may intercept it. */
function cacheOp(exitCode: number): Handler {
  return (cpu) => { cpu.host.intercept(cpu, exitCode); };
}

/** CLFLUSH and friends touch the line (they fault like a read on an unmapped address). */
const flushLine: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.readLinear(cpu.eaLo, cpu.eaHi, 1);
};

const nothing: Handler = () => {};
/** The handler of instructions without an effect bzemu models (NOP, PAUSE, fences, prefetches): block translation inlines it as nothing. */
export const NO_EFFECT: Handler = nothing;

const swapgs: Handler = (cpu) => {
  const lo = cpu.gsBaseLo, hi = cpu.gsBaseHi;
  cpu.gsBaseLo = cpu.kernelGsBaseLo;
  cpu.gsBaseHi = cpu.kernelGsBaseHi;
  cpu.kernelGsBaseLo = lo;
  cpu.kernelGsBaseHi = hi;
};

const ud2: Handler = (cpu) => cpu.ud();

const vmgexit: Handler = (cpu) => cpu.host.vmgexit(cpu);
const vmmcall: Handler = (cpu) => cpu.host.vmmcall(cpu);
const pvalidate: Handler = (cpu) => cpu.host.pvalidate(cpu);
const rmpadjust: Handler = (cpu) => cpu.host.rmpadjust(cpu);

/** A software interrupt or breakpoint would need trap-style delivery with RIP after the instruction. */
const softInterrupt: Handler = (cpu, i) => cpu.gap(`software interrupt (${i.bytes[0] === 0xcc ? 'int3' : 'int ' + (i.immLo & 0xff)}) is not implemented`);

export function registerSystem(r: Registry): void {
  r.handle([Mnemonic.Cpuid], cpuid);
  r.handle([Mnemonic.Rdmsr], rdmsr);
  r.handle([Mnemonic.Wrmsr], wrmsr);
  r.handle([Mnemonic.Lgdt], descriptorTable(true, true));
  r.handle([Mnemonic.Lidt], descriptorTable(true, false));
  r.handle([Mnemonic.Sgdt], descriptorTable(false, true));
  r.handle([Mnemonic.Sidt], descriptorTable(false, false));
  r.handle([Mnemonic.Ltr], ltr);
  r.handle([Mnemonic.Str], str);
  r.handle([Mnemonic.Lldt], lldt);
  r.handle([Mnemonic.Sldt], sldt);
  r.handle([Mnemonic.Hlt], hlt);
  r.handle([Mnemonic.Cli], cli);
  r.handle([Mnemonic.Sti], sti);
  r.handle([Mnemonic.Clc], clc);
  r.handle([Mnemonic.Stc], stc);
  r.handle([Mnemonic.Cmc], cmc);
  r.handle([Mnemonic.Cld], cld);
  r.handle([Mnemonic.Std], std);
  r.handle([Mnemonic.In], portIn);
  r.handle([Mnemonic.Out], portOut);
  r.handle([Mnemonic.Rdtsc], rdtsc);
  r.handle([Mnemonic.Rdtscp], rdtscp);
  r.handle([Mnemonic.Rdrand, Mnemonic.Rdseed], rdrand);
  r.handle([Mnemonic.Xgetbv], xgetbv);
  r.handle([Mnemonic.Xsetbv], xsetbv);
  r.handle([Mnemonic.Invlpg], invlpg);
  r.handle([Mnemonic.Wbinvd], cacheOp(0x89));
  r.handle([Mnemonic.Invd], cacheOp(0x76));
  r.handle([Mnemonic.Clflush, Mnemonic.Clflushopt, Mnemonic.Clwb], flushLine);
  r.handle([Mnemonic.Mfence, Mnemonic.Lfence, Mnemonic.Sfence, Mnemonic.Pause, Mnemonic.Nop, Mnemonic.Endbr64, Mnemonic.Endbr32,
    Mnemonic.Prefetch, Mnemonic.Prefetchw, Mnemonic.Prefetcht0, Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Prefetchnta,
    Mnemonic.Wait], nothing);
  r.handle([Mnemonic.Swapgs], swapgs);
  r.handle([Mnemonic.Ud2, Mnemonic.Ud0, Mnemonic.Ud1], ud2);
  r.handle([Mnemonic.Vmgexit], vmgexit);
  r.handle([Mnemonic.Vmmcall], vmmcall);
  r.handle([Mnemonic.Pvalidate], pvalidate);
  r.handle([Mnemonic.Rmpadjust], rmpadjust);
  r.handle([Mnemonic.Int3, Mnemonic.Int, Mnemonic.Int1, Mnemonic.Into], softInterrupt);
}

/** Decode-time: remember which control/segment register a MOV names. */
export function prepareMov(insn: Insn, reg: Register): void {
  if (reg >= Register.CR0 && reg <= Register.CR15) insn.op = reg - Register.CR0;
  else if (reg >= Register.ES && reg <= Register.GS) insn.op = reg - Register.ES;
}
