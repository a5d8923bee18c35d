import type { Cpu } from '../cpu.js';
import { Operand, type Handler, type Insn } from '../insn.js';
import { Mnemonic } from '../iced.js';
import { successor, type Block, type BlockFn } from '../block.js';
import { blockHashConstants, hashStep, repeatHash, type TraceRing } from '../trace.js';
import { compileBlock, type ArenaLayout } from './wasm-block.js';

/*
 * The JavaScript side of a block compiled to WebAssembly (wasm-block.ts): a
 * block function (built with `new Function`, so that each block's call into
 * its own WebAssembly function is a call site of its own) that calls the
 * compiled function, retires what it ran into the trace ring and hash in one
 * step, and then either hands the run loop the next block (as translated
 * JavaScript blocks do) or, when the function stopped before an instruction,
 * runs that instruction by its handler the way the run loop runs a lone
 * instruction: a fault it raises leaves the CPU as the interpreter would.
 */

/** What the CPU gives the WebAssembly back end: its arena memory and where its state lies there. */
export interface WasmTarget extends ArenaLayout {
  memory: WebAssembly.Memory;
  /** The exit words (RFLAGS, passes) at regAddress + 128. */
  exit: Int32Array;
}

type WasmFn = (rflags: number, budget: number) => number;

type Factory = (
  W: WasmFn, EX: Int32Array, T: TraceRing, A: Uint32Array, HP: Int32Array, HS: Int32Array,
  repeat: (h: number, pow: number, sum: number, k: number) => number, B: Block,
  S: (from: Block, exit: number, target: number) => Block | null,
  stopAt: (cpu: Cpu, k: number) => null,
) => BlockFn;

/**
 * The block as a block function running compiled WebAssembly, or null when
 * the block has an instruction without a WebAssembly form. `selfLoop`: its
 * closing jump goes back to its start and may loop inside (see translate-block.ts).
 */
export function wasmBlockFn(block: Block, trace: TraceRing, bpFilter: Uint8Array, target: WasmTarget, selfLoop: boolean): BlockFn | null {
  const compiled = compileBlock(block, target, selfLoop);
  if (compiled === null) return null;
  const instance = new WebAssembly.Instance(new WebAssembly.Module(compiled.bytes), { m: { mem: target.memory } });
  const run = instance.exports.f as WasmFn;
  const items = block.items, n = items.length, hi = block.hi, start = block.lo;
  const addrs = Uint32Array.from(items, (item) => item.lo);
  const { pow, sum } = blockHashConstants(addrs, hi);
  const insns: Insn[] = items.map((item) => item.insn);
  const handlers: Handler[] = insns.map((i) => i.exec);
  const last = items[n - 1];
  const next = last.lo + last.insn.len;
  /** Run instruction k by its handler (the function stopped before it), after what ran before it was retired. */
  const stopAt = (cpu: Cpu, k: number): null => {
    const lo = addrs[k], ic = cpu.icount, h = cpu.traceHash, i = insns[k];
    cpu.curRipLo = lo;
    cpu.ripLo = lo + i.len;
    // A compiled memory access stopped here: where its page is readable but outside the arena, it moves in afterwards.
    const access = k < compiled.count && (i.k0 === Operand.Mem || i.k1 === Operand.Mem || i.k2 === Operand.Mem) && i.mnemonic !== Mnemonic.Lea;
    let el = 0, eh = 0;
    if (access) {
      cpu.calcEA(i);
      el = cpu.eaLo;
      eh = cpu.eaHi;
    }
    handlers[k](cpu, i);
    if (access) cpu.mmu.moveIntoArena(el, eh);
    trace.add(lo, hi);
    cpu.traceHash = hashStep(h, lo, hi);
    cpu.icount = ic + 1;
    return null;
  };
  /** Leave for tLo by exit `exit`: hand on the successor when it is in this page and nothing stops it (as translate-block.ts's leaveTo). */
  const leaveTo = (exit: number, tLo: number): string => {
    if (Math.floor(tLo / 4096) !== Math.floor(start / 4096) || (hi === 0 && bpFilter[tLo & 0xffff] !== 0)) return 'return null;';
    return `{ const nb = S(B, ${exit}, ${tLo}); if (nb !== null && limit - ic >= nb.items.length) return nb; } return null;`;
  };
  const source = [
    '"use strict";',
    'const TB = T.blocks, TH = T.hi, TC = T.count;',
    'return function block(cpu, limit) {',
    'const ic0 = cpu.icount;',
    'const code = W(cpu.rflags, limit - ic0);',
    'cpu.rflags = EX[0];',
    `const done = code < ${n} ? code : ${n};`,
    selfLoop ? `const passes = EX[1]; let ic = ic0 + passes * ${n} + done; let h = cpu.traceHash; if (passes > 0) h = HR(h, ${pow[n]}, ${sum[n]}, passes);`
      : 'let ic = ic0 + done; let h = cpu.traceHash;',
    'h = (Math.imul(h, HP[done]) + HS[done]) | 0;',
    `if (ic > ic0) { const t = T.entries++ & ${trace.mask}; TB[t] = A; TH[t] = ${hi}; TC[t] = ic - ic0; }`,
    'cpu.icount = ic; cpu.traceHash = h;',
    compiled.closing !== null ? `if (code === ${n + 1}) { cpu.ripLo = ${compiled.closing.taken}; ${leaveTo(0, compiled.closing.taken)} }` : '',
    `if (code === ${n}) { cpu.ripLo = ${next}; ${leaveTo(1, next)} }`,
    'return STOP(cpu, code);',
    '};',
  ].join('\n');
  const factory = new Function('W', 'EX', 'T', 'A', 'HP', 'HS', 'HR', 'B', 'S', 'STOP', source) as Factory;
  return factory(run, target.exit, trace, addrs, pow, sum, repeatHash, block, successor, stopAt);
}
