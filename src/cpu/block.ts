import { Mnemonic } from './iced.js';
import type { Cpu } from './cpu.js';
import { Operand, type Insn } from './insn.js';
import type { CodePage } from './code-page.js';

/*
 * Basic blocks: straight-line runs of instructions inside one code page (see
 * Cpu.buildBlock), which the run loop steps through and, once hot, runs as
 * translated functions (translate/translate-block.ts).
 */

/**
 * Runs a translated block, entered only with budget for all of it; returns
 * the translated block to run next (checked the same way), or null to go
 * back to the run loop.
 */
export type BlockFn = (cpu: Cpu, limit: number) => Block | null;

/** One instruction of a block with its linear address. */
export interface BlockInsn {
  insn: Insn;
  lo: number;
}

/**
 * A basic block found at a linear address: its instructions (none when the
 * first one runs into the next page), run by the run loop until it has been
 * entered often enough to be translated.
 */
export class Block {
  /** The translation (null: not yet, or not worth it). */
  run: BlockFn | null = null;
  /** Its id among the CPU's blocks compiled to WebAssembly (-1: not compiled there, -2: it has no WebAssembly form). */
  wasmId = -1;
  /** Entries so far while untranslated. */
  heat = 0;
  /** False once translation was found pointless (a lone instruction without inline code). */
  translatable = true;
  /** Successor blocks handed on, by exit (0: taken branch or jump, 1: fall-through). */
  readonly next: (Block | null)[] = [null, null];
  /**
   * Whether the last instruction is a direct jump or branch back to the
   * block's start: a loop, so it is translated sooner (see Cpu.translateAfter).
   */
  readonly loopsBack: boolean;

  constructor(
    readonly lo: number,
    readonly hi: number,
    /** cpu.blockGen when built (breakpoints added later invalidate it). */
    readonly gen: number,
    readonly items: readonly BlockInsn[],
    /** The code page this one is in (its blocks are the successors it may hand on). */
    readonly page: CodePage,
  ) {
    const last = items[items.length - 1];
    this.loopsBack = last !== undefined && last.insn.k0 === Operand.Imm && BRANCHES.has(last.insn.mnemonic) &&
      last.lo + last.insn.len + last.insn.rel === lo;
  }
}

/** The conditional near branches (Jcc). */
export const JCC: ReadonlySet<number> = new Set<number>([
  Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
  Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg,
]);

/** Direct near jumps and conditional branches (with an immediate operand, their target is the next instruction's address plus `rel`). */
const BRANCHES: ReadonlySet<number> = new Set<number>([...JCC, Mnemonic.Jmp]);

/**
 * The translated successor at `target` on exit `exit` of `from`, or null: it
 * must be a current block of the same page (same linear mapping and
 * breakpoint generation) that is already translated.
 */
export function successor(from: Block, exit: number, target: number): Block | null {
  const cached = from.next[exit];
  if (cached !== null && cached.lo === target) return cached;
  const b = from.page.blockAt(target & 0xfff);
  if (b === undefined || b.lo !== target || b.hi !== from.hi || b.gen !== from.gen || b.run === null) return null;
  from.next[exit] = b;
  return b;
}

/** Instructions after which a block may continue: no RIP change, no stop, no paging or mode change. */
const CONTINUES = new Set<number>([
  Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Movsxd, Mnemonic.Lea, Mnemonic.Movbe,
  Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.Cmp, Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg,
  Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Test, Mnemonic.Not, Mnemonic.Andn,
  Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr,
  Mnemonic.Shld, Mnemonic.Shrd, Mnemonic.Shlx, Mnemonic.Shrx, Mnemonic.Sarx, Mnemonic.Rorx,
  Mnemonic.Mul, Mnemonic.Imul, Mnemonic.Mulx, Mnemonic.Div, Mnemonic.Idiv,
  Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr, Mnemonic.Tzcnt, Mnemonic.Lzcnt,
  Mnemonic.Popcnt, Mnemonic.Bzhi, Mnemonic.Blsr, Mnemonic.Blsi, Mnemonic.Blsmsk, Mnemonic.Bextr, Mnemonic.Bswap,
  Mnemonic.Xchg, Mnemonic.Cmpxchg, Mnemonic.Xadd,
  Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cdqe, Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Cqo,
  Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
  Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
  Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
  Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
  Mnemonic.Lahf, Mnemonic.Sahf, Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std,
  Mnemonic.Push, Mnemonic.Pop, Mnemonic.Pushf, Mnemonic.Pushfq, Mnemonic.Enter, Mnemonic.Leave,
  Mnemonic.Nop, Mnemonic.Pause, Mnemonic.Endbr64, Mnemonic.Lfence, Mnemonic.Mfence, Mnemonic.Sfence,
  Mnemonic.Prefetch, Mnemonic.Prefetchw, Mnemonic.Prefetcht0, Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Prefetchnta,
  Mnemonic.Movsb, Mnemonic.Movsw, Mnemonic.Movsd, Mnemonic.Movsq, Mnemonic.Stosb, Mnemonic.Stosw, Mnemonic.Stosd, Mnemonic.Stosq,
  Mnemonic.Lodsb, Mnemonic.Lodsw, Mnemonic.Lodsd, Mnemonic.Lodsq, Mnemonic.Cmpsb, Mnemonic.Cmpsw, Mnemonic.Cmpsd, Mnemonic.Cmpsq,
  Mnemonic.Scasb, Mnemonic.Scasw, Mnemonic.Scasd, Mnemonic.Scasq,
]);

/** Whether a block may go on after this instruction (operands that are not GPR/memory/immediate end it: segment, control, vector registers). */
export function continuesBlock(insn: Insn): boolean {
  if (!CONTINUES.has(insn.mnemonic)) return false;
  const n = Math.min(insn.opCount, 3);
  if (n > 0 && insn.k0 === Operand.None) return false;
  if (n > 1 && insn.k1 === Operand.None) return false;
  if (n > 2 && insn.k2 === Operand.None) return false;
  return true;
}
