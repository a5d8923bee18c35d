import { SparseMemory } from '../memory/sparse-memory.js';
import { CpuidPolicy } from '../platform/cpuid-policy.js';
import { BareMetalHost } from '../platform/bare-host.js';
import { Cpu } from './cpu.js';
import { Stop } from './host.js';

/** Initial state for running a short code snippet (differential tests, unit tests). */
export interface SnippetState {
  /** 16 general-purpose registers in encoding order (rax, rcx, rdx, rbx, rsp, ...). */
  regs: bigint[];
  rflags: number;
  /** Extra memory contents: physical = linear (paging off). */
  memory?: Array<{ addr: number; bytes: Uint8Array }>;
  /** 32: run as 32-bit code (flat segments, ESP stack) instead of 64-bit code. */
  bits?: 64 | 32;
  /**
   * With bits 32: run in compatibility mode (long mode active, a 32-bit code
   * segment) instead of protected mode, with an identity map of the low 4 GiB
   * (1 GiB pages) built at this physical address (two pages).
   */
  compatTables?: number;
}

export interface SnippetResult {
  regs: bigint[];
  rflags: number;
  /** Vector of the first exception raised, or null. */
  fault: number | null;
  /** Instructions retired. */
  retired: number;
  /** Read back guest memory after the run. */
  read(addr: number, length: number): Uint8Array;
}

/**
 * Run `code` placed at `codeAddr` (flat, paging off, identity addresses
 * below 4 GiB) until RIP leaves the code, an exception is raised, or `maxSteps`
 * instructions have retired. Every byte not given reads as zero.
 */
export function runSnippet(code: Uint8Array, state: SnippetState, codeAddr = 0x400000, maxSteps = 1000, memSize = 0x80000000): SnippetResult {
  const mem = new SparseMemory(memSize, { kind: 'zero' });
  mem.writeBytes(codeAddr, code);
  for (const m of state.memory ?? []) mem.writeBytes(m.addr, m.bytes);
  // Stepped one instruction at a time (below), only one-instruction blocks ever run translated: as JavaScript here,
  // since a WebAssembly memory per snippet costs more than the snippet (blocks compiled to WebAssembly are run by the
  // paged differential tests and test/cpu/wasm-blocks.test.ts).
  const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()), 4096, null, false);
  cpu.translateAfter = 0; // run translated blocks from the first instruction, so tests cover them
  cpu.cr0 = 0x11; // protected mode, paging off: linear = physical
  cpu.cr4 = 0x40620; // OSXSAVE etc. so XGETBV works
  cpu.efer = 0x500;
  if (state.bits === 32) {
    const t = state.compatTables;
    if (t === undefined) {
      cpu.efer = 0; // protected mode, not long mode
    } else {
      mem.write32(t, (t + 0x1000) | 3);
      mem.write32(t + 4, 0);
      for (let g = 0; g < 4; g++) {
        mem.write32(t + 0x1000 + 8 * g, ((g << 30) | 0x83) >>> 0); // present, writable, 1 GiB page
        mem.write32(t + 0x1004 + 8 * g, 0);
      }
      cpu.cr3Lo = t;
      cpu.cr0 = 0x80000011; // paging on: with EFER.LME, long mode is active
    }
    cpu.setCodeMode(false);
  }
  state.regs.forEach((v, r) => cpu.setReg64(r, v));
  cpu.rflags = (state.rflags | 2) >>> 0;
  cpu.ripLo = codeAddr;
  cpu.ripHi = 0;
  let fault: number | null = null;
  cpu.exceptionListener = (vector) => {
    if (fault === null) fault = vector;
  };
  const end = codeAddr + code.length;
  while (cpu.icount < maxSteps) {
    cpu.run(cpu.icount + 1);
    if (fault !== null || cpu.stop === Stop.TripleFault || cpu.stop === Stop.Halted) break;
    if (cpu.ripHi !== 0 || cpu.ripLo < codeAddr || cpu.ripLo >= end) break;
  }
  return {
    regs: Array.from({ length: 16 }, (_, r) => cpu.reg64(r)),
    rflags: cpu.rflags,
    fault,
    retired: cpu.icount,
    read: (addr, length) => mem.readBytes(addr, length),
  };
}
