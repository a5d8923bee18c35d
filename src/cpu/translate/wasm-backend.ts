import type { Cpu } from '../cpu.js';
import { Mnemonic } from '../iced.js';
import { Operand, type Handler, type Insn } from '../insn.js';
import { successor, type Block, type BlockFn } from '../block.js';
import { blockHashConstants, hashStep, type TraceRing } from '../trace.js';
import type { WasmArena } from '../../memory/wasm-arena.js';
import { compileBlock, dispatcherBody, settleBody, WORD, type ArenaLayout } from './wasm-block.js';
import { dispatcherModuleBytes } from './wasm-emitter.js';

/*
 * One CPU's blocks compiled to WebAssembly (wasm-block.ts), and the way in
 * and out of them. Every compiled block has an id (its trace ring id, and
 * its index in a WebAssembly table); a dispatcher function runs a block and
 * then the block it returns, inside WebAssembly, until one returns to
 * JavaScript. An exit of a block is linked to the block at its target the
 * first time it returns there, on the same terms on which translated
 * JavaScript blocks hand on their successor (same page, no possible
 * breakpoint, translated): blocks die with their code page, so a link never
 * outlives either end.
 *
 * From the run loop a compiled block is a block function like any other: it
 * puts the CPU's retired count, hash, RFLAGS, budget and ring position into
 * the arena, runs the dispatcher, takes them back, and either hands the run
 * loop the next block or, when a block stopped before an instruction, runs
 * that instruction by its handler the way the run loop runs a lone one (a
 * fault it raises leaves the CPU as the interpreter would).
 */

interface CompiledBlock {
  block: Block;
  insns: readonly Insn[];
  handlers: readonly Handler[];
  addrs: Uint32Array;
  /** Instructions the WebAssembly function runs itself (the last one may be its handler's). */
  count: number;
  /** Per exit (0 taken, 1 fall-through): whether it may be linked. */
  linkable: [boolean, boolean];
  /** The exits' links in the arena (-1: none yet). */
  links: Int32Array;
}

type Dispatch = (id: number) => number;

export class WasmBackend {
  private readonly table = new WebAssembly.Table({ element: 'anyfunc', initial: 64 });
  private dispatch: Dispatch | null = null;
  private settle: (() => void) | null = null;
  private readonly compiled: (CompiledBlock | undefined)[] = [];
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** Blocks whose WebAssembly stopped before an instruction, and blocks compiled (diagnostics). */
  stops = 0;
  blocks = 0;

  constructor(private readonly arena: WasmArena, private readonly layout: ArenaLayout, private readonly trace: TraceRing) {
    const buffer = arena.memory.buffer;
    this.i32 = new Int32Array(buffer, layout.regAddress, WORD.exit / 4 + 2);
    this.f64 = new Float64Array(buffer, layout.regAddress, WORD.limit / 8 + 1);
  }

  /**
   * The block as a block function running compiled WebAssembly, or null when
   * it has an instruction (other than its last) without a WebAssembly form.
   * `selfLoop`: its closing jump goes back to its start and may loop inside.
   */
  translate(block: Block, bpFilter: Uint8Array, selfLoop: boolean): BlockFn | null {
    const items = block.items, n = items.length, hi = block.hi, start = block.lo;
    const addrs = Uint32Array.from(items, (item) => item.lo);
    const hash = blockHashConstants(addrs, hi);
    // The block's constants (pow, sum per k) and its two links, in the arena.
    const place = this.arena.alloc(8 * (n + 1) + 8, 8);
    const words = new Int32Array(place.buffer, place.offset, 2 * (n + 1) + 2);
    for (let k = 0; k <= n; k++) {
      words[2 * k] = hash.pow[k];
      words[2 * k + 1] = hash.sum[k];
    }
    const links = words.subarray(2 * (n + 1));
    links.fill(-1);
    const id = this.trace.register(addrs);
    const result = compileBlock(block, this.layout, { id, constants: place.offset, links: place.offset + 8 * (n + 1) }, hash, selfLoop);
    if (result === null) return null;
    if (this.settle === null) this.makeDispatcher();
    const instance = new WebAssembly.Instance(new WebAssembly.Module(result.bytes), { m: { mem: this.arena.memory, settle: this.settle! } });
    if (id >= this.table.length) this.table.grow(Math.max(id + 1 - this.table.length, this.table.length));
    this.table.set(id, instance.exports.f as (...args: unknown[]) => unknown);
    /** An exit to tLo may be linked: same page, no possible breakpoint there (translate-block.ts's leaveTo). */
    const linkable = (tLo: number): boolean => Math.floor(tLo / 4096) === Math.floor(start / 4096) && !(hi === 0 && bpFilter[tLo & 0xffff] !== 0);
    const last = items[n - 1];
    const insns = items.map((item) => item.insn);
    this.compiled[id] = {
      block, insns, handlers: insns.map((i) => i.exec), addrs, count: result.count, links,
      linkable: [result.closing !== null && linkable(result.closing.taken), linkable(last.lo + last.insn.len)],
    };
    block.wasmId = id;
    this.blocks++;
    return (cpu: Cpu, limit: number): Block | null => this.enter(cpu, limit, id);
  }

  /** Run block `id` and what it chains to; then what the run loop needs (see the comment at the top). */
  private enter(cpu: Cpu, limit: number, id: number): Block | null {
    const w = this.i32, f = this.f64, trace = this.trace;
    const dispatch = this.dispatch ?? this.makeDispatcher();
    f[WORD.icount / 8] = cpu.icount;
    f[WORD.limit / 8] = limit;
    w[WORD.hash / 4] = cpu.traceHash;
    w[WORD.rflags / 4] = cpu.rflags;
    w[WORD.pendingKind / 4] = 0;
    const entries = trace.entries;
    w[WORD.entries / 4] = entries;
    const r = dispatch(id);
    trace.entries = entries + ((w[WORD.entries / 4] - entries) >>> 0);
    cpu.icount = f[WORD.icount / 8];
    cpu.traceHash = w[WORD.hash / 4];
    cpu.rflags = w[WORD.rflags / 4];
    const from = this.compiled[w[WORD.lastBlock / 4]];
    if (r === -2) return this.stopAt(cpu, from!, w[WORD.stopAt / 4]);
    cpu.ripLo = w[WORD.rip / 4] >>> 0;
    if (from === undefined) return null; // the budget stopped a chained block at its entry
    const exit = w[WORD.exit / 4];
    if (!from.linkable[exit]) return null;
    const next = successor(from.block, exit, cpu.ripLo);
    if (next === null) return null;
    if (next.wasmId >= 0) from.links[exit] = next.wasmId;
    return limit - cpu.icount >= next.items.length ? next : null;
  }

  private makeDispatcher(): Dispatch {
    const bytes = dispatcherModuleBytes(dispatcherBody(this.layout), settleBody(this.layout));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { m: { mem: this.arena.memory, table: this.table } });
    this.settle = instance.exports.settle as () => void;
    return (this.dispatch = instance.exports.run as Dispatch);
  }

  /** Run instruction k of a block by its handler (its WebAssembly stopped before it, having retired what ran before). */
  private stopAt(cpu: Cpu, b: CompiledBlock, k: number): null {
    const lo = b.addrs[k], hi = b.block.hi, ic = cpu.icount, h = cpu.traceHash, i = b.insns[k];
    this.stops++;
    cpu.curRipLo = lo;
    cpu.ripLo = lo + i.len;
    // A compiled memory access stopped here: where its page is readable but outside the arena, it moves in afterwards.
    const access = k < b.count && (i.k0 === Operand.Mem || i.k1 === Operand.Mem || i.k2 === Operand.Mem) && i.mnemonic !== Mnemonic.Lea;
    let el = 0, eh = 0;
    if (access) {
      cpu.calcEA(i);
      el = cpu.eaLo;
      eh = cpu.eaHi;
    }
    b.handlers[k](cpu, i);
    if (access) cpu.mmu.moveIntoArena(el, eh);
    this.trace.add(lo, hi);
    cpu.traceHash = hashStep(h, lo, hi);
    cpu.icount = ic + 1;
    return null;
  }
}
