import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import { Operand, type Handler, type Insn } from '../insn.js';
import { PARITY } from '../flags.js';
import { JCC, successor, type Block, type BlockFn, type BlockInsn } from '../block.js';
import { blockHashConstants, repeatHash, type TraceRing } from '../trace.js';
import type { Mmu } from '../mmu.js';
import { fillLoop, fillLoopSource } from './fill-loop.js';
import type { WarmBlock, WasmBackend } from './wasm-backend.js';
import { conditionSource, DROP, groupable, imulFlags, inlineSource, materialize, signedDisp, STATE, SYNC, type AccessGroup, type Inline } from './inline-code.js';

/*
 * Block translation. A basic block (a straight-line run of instructions
 * inside one code page, see Cpu.buildBlock) that the run loop has entered
 * often enough becomes one JavaScript function (built with `new Function`),
 * entered only at its first instruction, only for the linear address it was
 * built for, and only with budget for all of it. The function does what the
 * run loop does around each handler, so a fault (thrown from inside, as from
 * a handler) leaves the same state as in the loop: curRip/rip/icount are
 * stored before each handler call and on the paths of inline code that can
 * fault or be observed (see STATE), and the trace ring and hash take the
 * block's retired instructions in one step when it is left (see trace.ts).
 * The hottest operand forms become inline code that mirrors their
 * specialised handler; every other instruction calls its handler.
 *
 * Only the last instruction of a block may change RIP, stop the CPU or change
 * paging or modes (CONTINUES lists the mnemonics that can be followed by more
 * of the block). The function returns after a whole instruction when a write
 * dropped decoded code (cpu.codeEpoch changed), so self-modifying code is
 * seen as in the loop. A jump back to its own start loops inside the
 * function; a jump or fall-through to another translated block of the same
 * page hands that block back to the run loop, which runs it next without
 * looking anything up. Breakpoints are never inside a block or at a target
 * handed on this way (adding one invalidates every block).
 */

const TWO32 = 4294967296;

/** RIP after a near branch (Cpu.jumpRel's arithmetic at translation time). */
function branchTarget(nextLo: number, nextHi: number, rel: number): [number, number] {
  const t = nextLo + rel;
  if (t < 0) return [t + TWO32, (nextHi - 1) >>> 0];
  if (t > 0xffffffff) return [t - TWO32, (nextHi + 1) >>> 0];
  return [t, nextHi];
}

/*
 * Registers in locals. Inside a block function the guest registers it uses
 * live in JavaScript locals (g<n> low half, gh<n> high half), loaded at its
 * entry: typed-array accesses are real loads and stores that V8 cannot keep
 * in machine registers. The register file (cpu.regLo/regHi) is brought up to
 * date wherever code outside the block may look at it: before a handler or
 * calcEA call (and reloaded after a handler), when the block is left, and
 * when something is thrown out of inline code (which writes registers only
 * after its last access that can fault, so the locals then hold the state
 * before the faulting instruction). The placeholders (SYNC in inline-code.ts, LOAD
 * and DECL here) are filled in once the block's register use is known.
 */
const LOAD = '\u0001LOAD\u0001';
/** Where code outside the block may run (slow paths, handlers): the ring's open entry is stored there, not at entry. */
const OPEN = '\u0001OPEN\u0001';
/** The try and the catch line, kept only for a block that calls out. */
const TRY = '\u0001TRY\u0001';
const CATCH = '\u0001CATCH\u0001';
const DECL = '\u0001DECL\u0001';

/** An assignment to a register-file half in inline code: R[n] = or RH[n] = . */
const ASSIGNED = /\b(R|RH)\[(\d+)\] = /g;

/** Rewrite R[n]/RH[n] and cpu.rflags as locals, noting which are used and which written. */
function localise(code: string, used: Set<string>, dirty: Set<string>): string {
  for (const m of code.matchAll(ASSIGNED)) dirty.add(`${m[1]}[${m[2]}]`);
  return code.replace(/\b(R|RH)\[(\d+)\]/g, (ref: string, file: string, n: string) => {
    used.add(ref);
    return `${file === 'R' ? 'g' : 'gh'}${n}`;
  }).replace(/cpu\.rflags/g, 'fl');
}

/** The local standing for a register-file reference R[n] or RH[n]. */
function localName(ref: string): string {
  const n = ref.slice(ref.indexOf('[') + 1, -1);
  return `${ref.startsWith('RH') ? 'gh' : 'g'}${n}`;
}

/**
 * Whether the block's last instruction is a near jump or Jcc back to the
 * block's start (Block.loopsBack) that needs no look from the run loop first
 * (no possible breakpoint there) and does not end past the low half's 4 GiB:
 * the block function then loops itself.
 */
function jumpsBackToStart(block: Block, bpFilter: Uint8Array): boolean {
  const { insn: i, lo } = block.items[block.items.length - 1];
  return block.loopsBack && lo + i.len <= 0xffffffff && !(block.hi === 0 && bpFilter[block.lo & 0xffff] !== 0);
}

/** Whether the instruction is translated to inline code (not a handler call). */
function hasInlineForm(item: BlockInsn): boolean {
  const i = item.insn;
  if (inlineSource(i, 0, 0, 0, false) !== null) return true;
  return (JCC.has(i.mnemonic) || i.mnemonic === Mnemonic.Jmp) && i.k0 === Operand.Imm;
}

/** Registers (R/RH index) that inline code writes. */
function writtenRegisters(code: string): Set<number> {
  return new Set([...code.matchAll(ASSIGNED)].map((m) => Number(m[2])));
}

/**
 * Access groups of the block (see inline-code.ts): runs of inline memory
 * operands at [base + disp] with the same base register, unchanged in
 * between, no handler call in between, all within 4096 bytes of the lowest
 * displacement; only runs of two or more pay for their probe.
 */
function planGroups(items: readonly BlockInsn[], plainCode: readonly (Inline | null)[]): (AccessGroup | null)[] {
  const n = items.length;
  const out: (AccessGroup | null)[] = new Array<AccessGroup | null>(n).fill(null);
  const open = new Map<number, number[]>(); // base register -> members (indices into items)
  let nextId = 0;
  const disps = (members: readonly number[]): number[] => members.map((k) => signedDisp(items[k].insn)!);
  // 8 bytes past the highest displacement covers any member's size.
  const spanOf = (ds: readonly number[]): number => Math.max(...ds) + 8 - Math.min(...ds);
  const close = (base: number): void => {
    const members = open.get(base);
    open.delete(base);
    if (members === undefined || members.length < 2) return;
    const ds = disps(members);
    const group = { id: nextId++, dmin: Math.min(...ds), span: spanOf(ds) };
    members.forEach((k, j) => { out[k] = { ...group, first: j === 0 }; });
  };
  const probe: AccessGroup = { id: -1, first: false, dmin: 0, span: 8 };
  for (let k = 0; k < n; k++) {
    const i = items[k].insn;
    const plain = plainCode[k];
    if (plain === null) {
      for (const base of [...open.keys()]) close(base);
      continue;
    }
    // A member is an instruction whose inline code takes the group's view (not LEA, not a NOP with an operand).
    if (groupable(i) && /\bq[rw]-1\b/.test(inlineSource(i, k, 0, 0, false, probe)!.code)) {
      const base = i.memBase;
      let members = open.get(base);
      if (members !== undefined && spanOf(disps([...members, k])) > 4096) {
        close(base);
        members = undefined;
      }
      if (members === undefined) open.set(base, (members = []));
      members.push(k);
    }
    for (const r of writtenRegisters(plain.code)) close(r);
  }
  for (const base of [...open.keys()]) close(base);
  return out;
}

/** Whether translation gains anything over the run loop: not for a lone instruction without inline code. */
function worthTranslating(block: Block): boolean {
  const items = block.items;
  return items.length > 0 && !(items.length === 1 && !hasInlineForm(items[0]));
}

/** A fill loop keeps its bulk path in JavaScript. */
function isFillLoop(block: Block, bpFilter: Uint8Array): boolean {
  return jumpsBackToStart(block, bpFilter) && fillLoop(block.items) !== null;
}

/**
 * The other blocks of the block's page, current and not translated, that
 * ran at least `warmAfter` times (a tenth of that for loops): compiled with
 * it, they need not each become hot (and be compiled) on their own.
 */
function warmBlocks(block: Block, bpFilter: Uint8Array, warmAfter: number): WarmBlock[] {
  const out: WarmBlock[] = [];
  if (warmAfter === Infinity) return out;
  const page = block.page;
  for (const b of page.blocks) {
    if (b === undefined || b === block || b.run !== null || !b.translatable || b.wasmId !== -1 || b.gen !== block.gen || b.hi !== block.hi) continue;
    if (b.heat < (b.loopsBack ? warmAfter / 10 : warmAfter) || page.blockAt(b.lo & 0xfff) !== b) continue;
    if (!worthTranslating(b) || isFillLoop(b, bpFilter)) continue;
    out.push({ block: b, selfLoop: jumpsBackToStart(b, bpFilter) });
  }
  return out;
}

type Factory = (
  insns: readonly Insn[], handlers: readonly Handler[], parity: Uint8Array,
  materialize: (cpu: Cpu, flags: number, kind: number, a: number, ah: number, b: number, bh: number) => number,
  imulFlags: (cpu: Cpu, flags: number, a: number, ah: number, b: number, bh: number) => number,
  self: Block, successorOf: (from: Block, exit: number, target: number) => Block | null,
  repeat: (h: number, pow: number, sum: number, k: number) => number, trace: TraceRing, addrs: Uint32Array, hashPow: Int32Array, hashSum: Int32Array, mmu: Mmu,
) => BlockFn;

/**
 * Translate instructions at consecutive addresses (all in one page, high half
 * `hi`) into a block function (null for a lone instruction without inline
 * code). The trace ring is the CPU's own.
 */
export function translateBlock(block: Block, trace: TraceRing, bpFilter: Uint8Array, mmu: Mmu, wasm: WasmBackend | null = null, warmAfter = Infinity): BlockFn | null {
  const items = block.items, hi = block.hi;
  if (!worthTranslating(block)) return null;
  if (wasm !== null && !isFillLoop(block, bpFilter)) {
    // WebAssembly where every instruction but the last has a form there, with the warm blocks of the page.
    const fn = wasm.translate(block, bpFilter, jumpsBackToStart(block, bpFilter), warmBlocks(block, bpFilter, warmAfter));
    if (fn !== null) return fn;
  }
  const n = items.length;
  // Which instructions are inline, and which of those set all arithmetic flags.
  const inlineAt: boolean[] = [];
  const setsFlags: boolean[] = [];
  // Each instruction's inline code without deferral or group (null: a handler call), for the analyses below.
  const plainCode = items.map((item, k) => inlineSource(item.insn, k, 0, 0, false));
  for (let k = 0; k < n; k++) {
    const probe = plainCode[k];
    // Code that keeps some flags settles deferred ones: deferring past it gains nothing.
    inlineAt.push(probe !== null && !probe.partialFlags);
    setsFlags.push(probe !== null && probe.setsFlags);
  }
  // defer[k]: a later inline instruction sets all flags before anything reads them (only inline code in between).
  const defer: boolean[] = new Array<boolean>(n).fill(false);
  for (let k = 0; k < n; k++) {
    // Only forms that can record their operands instead of flags (the ALU and IMUL forms) are deferred.
    if (!setsFlags[k] || !/pk = [1-9]/.test(inlineSource(items[k].insn, k, 0, 0, true)!.code)) continue;
    for (let j = k + 1; j < n && inlineAt[j]; j++) {
      if (setsFlags[j]) {
        defer[k] = true;
        break;
      }
    }
  }
  const anyDeferred = defer.some((x) => x);
  const groups = planGroups(items, plainCode);
  const groupIds = [...new Set(groups.filter((g) => g !== null).map((g) => g!.id))];
  // Code outside the block function can change the TLB: the views are dropped on every way out to it.
  const drop = groupIds.map((g) => `qr${g} = null; qw${g} = null;`).join(' ');
  const addrs = Uint32Array.from(items, (item) => item.lo);
  const ringId = trace.register(addrs);
  const { pow, sum } = blockHashConstants(addrs, hi);
  const lines: string[] = [];
  const insns: Insn[] = [];
  const handlers: Handler[] = [];
  const consts: string[] = [];
  const start = items[0].lo;
  const flush = 'if (pk !== 0) fl = M(cpu, fl, pk, pa, pah, pb, pbh);';
  /** Retire instructions 0..k-1 of this pass: one hash step; `close` then makes the ring entry for the whole run. */
  const advance = (k: number): string => `ic += ${k}; h = (Math.imul(h, ${pow[k]}) + ${sum[k]}) | 0;`;
  const close = `${SYNC} { const t = T.entries++ & ${trace.mask}; TB[t] = ${ringId}; TH[t] = ${hi}; TC[t] = ic - ic0; } T.open = null; cpu.icount = ic; cpu.traceHash = h;`;
  const used = new Set<string>(), dirty = new Set<string>();
  const retire = (k: number): string => `${advance(k)} ${close}`;
  /**
   * Leave the block for (tLo, tHi) by exit `exit`: hand the run loop the
   * successor block when it is in this page, translated, and nothing stops it
   * (budget for all of it, dropped code, a possible breakpoint there); else
   * return to the run loop (RIP is already set).
   */
  const leaveTo = (exit: number, tLo: number, tHi: number): string => {
    if (tHi !== hi || Math.floor(tLo / 4096) !== Math.floor(start / 4096) || (hi === 0 && bpFilter[tLo & 0xffff] !== 0)) return 'return null;';
    return `if (cpu.codeEpoch === e0) { const nb = S(B, ${exit}, ${tLo}); if (nb !== null && limit - ic >= nb.items.length) return nb; } return null;`;
  };
  lines.push('return function block(cpu, limit) {');
  lines.push('const R = cpu.regLo, RH = cpu.regHi, e0 = cpu.codeEpoch;');
  lines.push('let ic = cpu.icount, h = cpu.traceHash, el = 0, eh = 0, pk = 0, pa = 0, pah = 0, pb = 0, pbh = 0;');
  lines.push('const ic0 = ic;');
  lines.push(`let inH = 0; ${DECL}`);
  if (groupIds.length > 0) lines.push(`let ${groupIds.map((g) => `qr${g} = null, qw${g} = null, qo${g} = 0`).join(', ')};`);
  // (cpu.curRipHi is already this block's: the run loop set it, and blocks hand on only to blocks of their own page.)
  // The block's last instruction jumps back to its start: the function loops there (see `again` below).
  const selfLoop = jumpsBackToStart(block, bpFilter);
  lines.push(TRY);
  lines.push('for (;;) {');
  const fill = selfLoop ? fillLoop(items) : null;
  if (fill !== null) {
    const storeNext = items[0].lo + items[0].insn.len;
    lines.push(localise(fillLoopSource(fill, items[0].insn, items[2].insn, storeNext >>> 0, hi, n, pow[n], sum[n]), used, dirty));
  }
  let pending = false;
  for (let k = 0; k < n; k++) {
    const { insn: i, lo } = items[k];
    insns.push(i);
    handlers.push(i.exec);
    consts.push(`const i${k} = I[${k}];`);
    const next = lo + i.len;
    const nextLo = next > 0xffffffff ? next - TWO32 : next;
    const nextHi = next > 0xffffffff ? (hi + 1) >>> 0 : hi;
    const last = k === n - 1;
    const state = `cpu.curRipLo = ${lo}; cpu.ripLo = ${nextLo};${nextHi !== hi ? ` cpu.ripHi = ${nextHi};` : ''} cpu.icount = ic${k > 0 ? ` + ${k}` : ''};`;
    const inline = inlineSource(i, k, nextLo, nextHi, defer[k], groups[k]);
    if (inline !== null) {
      // Inline code faults or is observed only on its slow paths, which store the state themselves; the last instruction
      // (or one ending past the 4 GiB boundary) stores it for leaving.
      if (last || nextHi !== hi) lines.push(state);
      lines.push(`{ ${localise(inline.code, used, dirty).split(STATE).join(`${state} ${OPEN} ${DROP}`)} }`);
      if (inline.setsFlags) pending = defer[k];
      if (inline.partialFlags) pending = false;
      if (inline.writes && !last) lines.push(`if (cpu.codeEpoch !== e0) { ${pending ? flush : ''} ${retire(k + 1)} return null; }`);
      if (last) lines.push(`${retire(n)} ${pending ? 'return null;' : leaveTo(1, nextLo, nextHi)}`);
    } else if (last && ((JCC.has(i.mnemonic) && i.cc >= 1 && i.cc <= 16) || i.mnemonic === Mnemonic.Jmp) && i.k0 === Operand.Imm &&
      branchTarget(nextLo, nextHi, i.rel)[1] === hi) {
      // Inline only a target in the block's 4 GiB, hence canonical; the handler checks any other (#GP on a non-canonical one).
      const [tLo, tHi] = branchTarget(nextLo, nextHi, i.rel);
      // Another pass retires into the same ring entry (closed when the loop is left).
      const again = `${advance(n)} if (limit - ic >= ${n} && cpu.codeEpoch === e0) continue; ${close} return null;`;
      const taken = `cpu.ripLo = ${tLo};${tHi !== nextHi ? ` cpu.ripHi = ${tHi};` : ''} ${selfLoop ? again : `${retire(n)} ${leaveTo(0, tLo, tHi)}`}`;
      lines.push(state);
      if (i.mnemonic === Mnemonic.Jmp) lines.push(taken);
      else lines.push(`{ const f = fl; if (${conditionSource(i.cc)}) { ${taken} } } ${retire(n)} ${leaveTo(1, nextLo, nextHi)}`);
    } else {
      consts.push(`const x${k} = X[${k}];`);
      lines.push(state);
      lines.push(`${OPEN} ${SYNC} inH = 1; x${k}(cpu, i${k}); inH = 0; ${LOAD} ${DROP}`);
      if (!last) lines.push(`if (cpu.codeEpoch !== e0) { ${retire(k + 1)} return null; }`);
      else lines.push(`${retire(n)} return null;`);
    }
  }
  lines.push('}');
  // A fault (or anything thrown) in instruction k of a pass: cpu.icount = ic + k was stored before it; the k before it retired.
  // (A handler runs with no deferred flags: deferral never reaches past one.)
  lines.push(`${CATCH} ${anyDeferred ? flush : ''} if (inH === 0) { ${SYNC} } if (T.open === A) { const k = cpu.icount - ic; h = (Math.imul(h, HP[k]) + HS[k]) | 0;` +
    ` if (cpu.icount > ic0) { const t = T.entries++ & ${trace.mask}; TB[t] = ${ringId}; TH[t] = ${hi}; TC[t] = cpu.icount - ic0; }` +
    ' T.open = null; cpu.traceHash = h; } throw e; }');
  lines.push('};');
  // RFLAGS lives in `fl` like a register (always loaded and written back: cheaper than knowing which blocks touch it).
  const refs = [...used].sort();
  const decl = `let fl = cpu.rflags${refs.map((r) => `, ${localName(r)} = ${r}`).join('')};`;
  const load = `fl = cpu.rflags; ${refs.map((r) => `${localName(r)} = ${r};`).join(' ')}`;
  const sync = `cpu.rflags = fl; ${[...dirty].sort().map((r) => `${r} = ${localName(r)};`).join(' ')}`;
  let text = lines.join('\n');
  // Only code that calls out of the block (slow paths, handlers) can throw or look at the trace ring mid-block: without
  // any, the block needs neither the open ring entry nor the try.
  const callsOut = text.includes(OPEN);
  const catchAt = text.indexOf(CATCH);
  text = callsOut ? text.split(TRY).join('try {').split(CATCH).join('} catch (e) {')
    : `${text.slice(0, catchAt).split(TRY).join('')}${text.slice(text.indexOf('\n', catchAt))}`;
  const body = text.split(OPEN).join('T.open = A; T.openIcount = ic0;')
    .split(DECL).join(decl).split(LOAD).join(load).split(SYNC).join(sync).split(DROP).join(drop);
  const source = `"use strict";\nconst TB = T.ids, TH = T.hi, TC = T.count, TLO = MMU.tagLo, THI = MMU.tagHi, RP = MMU.rpage, WP = MMU.wpage;\n${consts.join('\n')}\n${body}`;
  const factory = new Function('I', 'X', 'P', 'M', 'IMF', 'B', 'S', 'HR', 'T', 'A', 'HP', 'HS', 'MMU', source) as Factory;
  return factory(insns, handlers, PARITY, materialize, imulFlags, block, successor, repeatHash, trace, addrs, pow, sum, mmu);
}
