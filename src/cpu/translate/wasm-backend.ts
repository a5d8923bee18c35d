import type { Cpu } from '../cpu.js';
import { Mnemonic } from '../iced.js';
import { Operand, type Handler, type Insn } from '../insn.js';
import { RSP } from '../registers.js';
import { successor, type Block, type BlockFn } from '../block.js';
import { blockHashConstants, hashStep, type TraceRing } from '../trace.js';
import type { WasmArena } from '../../memory/wasm-arena.js';
import { compileRegion, dispatcherBody, planBlock, settleBody, WORD, type ArenaLayout, type RegionMember } from './wasm-block.js';
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
 * Blocks are compiled a code page at a time: when one gets hot, it is
 * compiled with the blocks of its page that are warm (they will be hot
 * soon) as one region (wasm-block.ts): one function in which exits from
 * member to member are branches, on the same terms as links, and one
 * module, compiled once for all of them. The table starts each member's id
 * in the region. A block of the page that gets hot later starts a region of
 * its own and reaches the earlier ones by links: compiling a page again
 * with all its blocks cost more than it gained (Debian 6.12 to
 * kernel-entry in-process, medians of 8 alternating runs: 1.71 s with up to
 * four compilations per page, 1.62 s with one). Regions die with their page
 * as blocks do.
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
  /** What its compilation decided, for regions. */
  member: RegionMember;
  /** Whether an exit to this address may be linked (a RET's, which goes where it pops). */
  canLink: (tLo: number) => boolean;
}

/** Members a region has at most. */
const MAX_REGION_MEMBERS = 400;

/** A block not compiled yet that may be compiled with a hot one of its page, and whether its closing jump may loop inside. */
export interface WarmBlock {
  block: Block;
  selfLoop: boolean;
}

type Dispatch = (id: number) => number;

export class WasmBackend {
  private readonly table = new WebAssembly.Table({ element: 'anyfunc', initial: 64 });
  private dispatch: Dispatch | null = null;
  /** The dispatcher module's `settle`, which compiled blocks import. */
  private settle: (() => void) | null = null;
  private readonly compiled: (CompiledBlock | undefined)[] = [];
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** Blocks whose WebAssembly stopped before an instruction, and blocks compiled (diagnostics). */
  stops = 0;
  blocks = 0;
  regions = 0;
  /** Warm blocks compiled along with a hot one. */
  compiledAlong = 0;

  constructor(private readonly arena: WasmArena, private readonly layout: ArenaLayout, private readonly trace: TraceRing) {
    const buffer = arena.memory.buffer;
    this.i32 = new Int32Array(buffer, layout.regAddress, WORD.exit / 4 + 2);
    this.f64 = new Float64Array(buffer, layout.regAddress, WORD.limit / 8 + 1);
  }

  /**
   * The hot block as a block function running compiled WebAssembly, or null
   * when it has an instruction (other than its last) without a WebAssembly
   * form; `warm` blocks of its page are compiled with it where they can be
   * (their `run` is set here). `selfLoop`: its closing jump goes back to its
   * start and may loop inside.
   */
  translate(block: Block, bpFilter: Uint8Array, selfLoop: boolean, warm: readonly WarmBlock[] = []): BlockFn | null {
    if (block.wasmId === -2) return null;
    const hot = this.prepare(block, bpFilter, selfLoop);
    if (hot === null) return null;
    const members = [hot];
    for (const w of warm) {
      if (members.length >= MAX_REGION_MEMBERS) break;
      if (w.block === block || w.block.wasmId !== -1) continue;
      const c = this.prepare(w.block, bpFilter, w.selfLoop);
      if (c !== null) members.push(c);
    }
    for (const c of members) c.member.place.id = this.trace.register(c.addrs);
    // Exits to another member are branches inside the region.
    const page = block.page, index = new Map<Block, number>(members.map((c, j) => [c.block, j]));
    const specs = members.map((c): RegionMember => {
      const m = c.member, items = c.block.items, last = items[items.length - 1];
      const targets = [m.closing?.taken ?? -1, last.lo + last.insn.len];
      const intra = [0, 1].map((e) => {
        const t = c.linkable[e] ? page.blockAt(targets[e] & 0xfff) : undefined;
        return t !== undefined && t.lo === targets[e] ? (index.get(t) ?? -1) : -1;
      });
      return { ...m, intra: [intra[0], intra[1]] };
    });
    const instance = this.instantiate(specs);
    if (instance === null) {
      // Too big for the engine (code space, function size): the hot block alone, or nothing.
      return members.length > 1 ? this.translate(block, bpFilter, selfLoop) : null;
    }
    if (members.length > 1) this.regions++;
    const need = members[members.length - 1].member.place.id + 1;
    if (need > this.table.length) this.table.grow(Math.max(need - this.table.length, this.table.length));
    members.forEach((c, j) => {
      const id = c.member.place.id;
      this.table.set(id, instance.exports[members.length > 1 ? `e${j}` : 'f'] as (...args: unknown[]) => unknown);
      this.compiled[id] = c;
      c.block.wasmId = id;
      this.blocks++;
      if (c !== hot) {
        c.block.run = this.blockFn(id);
        this.compiledAlong++;
      }
    });
    return this.blockFn(hot.member.place.id);
  }

  /** The module of these members compiled and instantiated; null when the engine refuses it for its size (a RangeError). */
  private instantiate(specs: readonly RegionMember[]): WebAssembly.Instance | null {
    const bytes = compileRegion(specs, this.layout);
    if (bytes === null) return null;
    if (this.settle === null) this.makeDispatcher();
    try {
      return new WebAssembly.Instance(new WebAssembly.Module(bytes), { m: { mem: this.arena.memory, settle: this.settle! } });
    } catch (e) {
      if (e instanceof RangeError) return null;
      throw e; // a CompileError is a bug of the compiler here, not a limit
    }
  }

  private blockFn(id: number): BlockFn {
    return (cpu: Cpu, limit: number): Block | null => this.enter(cpu, limit, id);
  }

  /** A block's record for compiling: its plan (planBlock), links and exits; null when it has no WebAssembly form. Its id comes when it is compiled. */
  private prepare(block: Block, bpFilter: Uint8Array, selfLoop: boolean): CompiledBlock | null {
    const items = block.items, n = items.length, hi = block.hi, start = block.lo;
    const addrs = Uint32Array.from(items, (item) => item.lo);
    const hash = blockHashConstants(addrs, hi);
    const place = this.arena.alloc(12, 4);
    const links = new Int32Array(place.buffer, place.offset, 3).fill(-1);
    const plan = planBlock(block, this.layout, { id: 0, links: place.offset }, hash, selfLoop);
    if (plan === null) {
      block.wasmId = -2;
      return null;
    }
    /** An exit to tLo may be linked: same page, no possible breakpoint there (translate-block.ts's leaveTo). */
    const linkable = (tLo: number): boolean => Math.floor(tLo / 4096) === Math.floor(start / 4096) && !(hi === 0 && bpFilter[tLo & 0xffff] !== 0);
    const last = items[n - 1];
    const insns = items.map((item) => item.insn);
    const closing = plan.member.closing;
    return {
      block, insns, handlers: insns.map((i) => i.exec), addrs, count: plan.count, links, member: plan.member, canLink: linkable,
      linkable: [closing !== null && closing.kind !== 'ret' && linkable(closing.taken), linkable(last.lo + last.insn.len)],
    };
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
    // A RET's exit is linked for one target at a time (the one it returned to last).
    const ret = exit === 0 && from.member.closing?.kind === 'ret';
    if (ret ? !from.canLink(cpu.ripLo) : !from.linkable[exit]) return null;
    const next = successor(from.block, exit, cpu.ripLo);
    if (next === null) return null;
    if (next.wasmId >= 0) {
      from.links[exit] = next.wasmId;
      if (ret) from.links[2] = cpu.ripLo;
    }
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
    // A compiled memory access (a CALL's push, a RET's pop) stopped here: where its page is readable but outside the arena, it moves in afterwards.
    const closing = k === b.count ? b.member.closing : null;
    const stack = closing !== null && closing.kind !== 'jump';
    const access = stack || (k < b.count && (i.k0 === Operand.Mem || i.k1 === Operand.Mem || i.k2 === Operand.Mem) && i.mnemonic !== Mnemonic.Lea);
    let el = 0, eh = 0;
    if (stack) {
      const push = closing.kind === 'call' ? 8 : 0;
      el = (cpu.regLo[RSP] - push) >>> 0;
      eh = cpu.regLo[RSP] < push ? (cpu.regHi[RSP] - 1) >>> 0 : cpu.regHi[RSP];
    } else if (access) {
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
