import type { Cpu } from '../../src/cpu/cpu.js';
import type { SparseMemory } from '../../src/memory/sparse-memory.js';

/** What two runs of the same code must agree on: the architectural state, the trace, how the run stopped, and some memory. */
export interface CpuOutcome {
  regs: bigint[];
  rflags: number;
  rip: number;
  icount: number;
  traceHash: number;
  recent: Array<[number, number]>;
  stop: number;
  bytes: Uint8Array;
}

/** The outcome of a run on `cpu`, with `length` bytes of `mem` from `at`. */
export function cpuOutcome(cpu: Cpu, mem: SparseMemory, at: number, length: number): CpuOutcome {
  return {
    regs: Array.from({ length: 16 }, (_, r) => cpu.reg64(r)),
    rflags: cpu.rflags,
    rip: cpu.ripLo,
    icount: cpu.icount,
    traceHash: cpu.traceHash,
    recent: cpu.recentRips(64),
    stop: cpu.stop,
    bytes: mem.readBytes(at, length),
  };
}
