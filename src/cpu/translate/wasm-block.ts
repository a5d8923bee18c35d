import { Code, Mnemonic } from '../iced.js';
import { Operand, type Insn } from '../insn.js';
import { ADD_FORMS, CMP_FORMS, NEG_FORMS, SUB_FORMS } from '../exec/arithmetic.js';
import { AND_FORMS, OR_FORMS, TEST_FORMS, XOR_FORMS } from '../exec/logic.js';
import { CONDITIONAL_FORMS, LEA_FORMS, MOVSX_FORMS, MOVZX_FORMS, MOV_FORMS } from '../exec/data.js';
import { NO_EFFECT } from '../exec/system.js';
import { JCC, type Block } from '../block.js';
import { TLB_MASK } from '../mmu.js';
import { RSP } from '../registers.js';
import { blockModuleBytes, FunctionBody, Op, regionModuleBytes, ValType } from './wasm-emitter.js';
import { groupable, signedDisp } from './inline-code.js';

/*
 * Blocks translated to WebAssembly. The guest registers live in i64 locals
 * (loaded from the register file in the arena at entry, written back when the
 * block is left), RFLAGS in an i32 local, and the arithmetic flags of the last
 * flag-setting instruction are left as its operands and result until
 * something reads them or the block is left (their kind is known here, so
 * each place that needs them gets straight-line code). Memory operands probe
 * the MMU's TLB in the arena and read or write the page's bytes in place.
 *
 * A compiled block takes nothing and returns the next block to run: it finds
 * the retired count, the budget, the trace hash and the trace ring in the
 * arena (CPU words below), retires what it ran there itself, and returns the
 * block its exit is linked to (>= 0, see wasm-backend.ts), so that the
 * dispatcher runs blocks one after another without JavaScript between them;
 * -1 when the exit is not linked (RIP is in the words) or the budget has no
 * room for the whole block at its entry; -2 when it stopped before an
 * instruction.
 *
 * Nothing in the function can fault or call out: where JavaScript code would
 * take a slow path (a TLB miss, a page without direct access), the function
 * stops before that instruction; the back end then runs that one instruction
 * by its handler, which faults or fills the TLB exactly as the interpreter
 * would. A block whose closing jump goes back to its start loops inside the
 * function while the budget allows another pass.
 */

/** Byte offsets of the CPU words from ArenaLayout.regAddress (int32 unless said). */
export const WORD = {
  regLo: 0, regHi: 64, rflags: 128, hash: 132,
  /** float64: instructions retired, and the count no block may pass. */
  icount: 136, limit: 144,
  /** The trace ring's entries written, modulo 2^32. */
  entries: 152,
  /** The low half of RIP when a block returns -1. */
  rip: 156,
  /** The instruction index a block stopped before (it returned -2). */
  stopAt: 160,
  /** The block that returned (-1: none ran, the budget stopped the first), and by which exit (0 taken, 1 fall-through). */
  lastBlock: 164, exit: 168,
  /**
   * The registers as 16 int64, which blocks load and store (one access each
   * instead of two halves): the dispatcher copies regLo/regHi here when it
   * starts and back when it returns.
   */
  reg64: 176,
  /**
   * Flags left pending across blocks: the kind (pendingCode, 0: RFLAGS is
   * exact) and the last setter's operands, result and carry in; RFLAGS then
   * holds the other bits. The dispatcher makes RFLAGS exact before it returns.
   */
  pendingKind: 172, pendingA: 304, pendingB: 312, pendingResult: 320, pendingCarry: 328,
} as const;
export const STATE_BYTES = 336;

/** Thrown where an instruction has no WebAssembly form: one plain object (an Error would capture a stack trace each time). */
const NOT_TRANSLATABLE = { reason: 'no WebAssembly form' } as const;

type FlagKind = 'add' | 'sub' | 'logic' | 'imul';
interface Pending { kind: FlagKind; size: number; carry: boolean }
/** Every kind of pending flags, numbered from 1 in the arena (pendingKind). */
const PENDINGS: readonly Pending[] = [
  ...(['add', 'sub'] as const).flatMap((kind) => [1, 2, 4, 8].flatMap((size) => [false, true].map((carry) => ({ kind, size, carry })))),
  ...[1, 2, 4, 8].map((size) => ({ kind: 'logic' as const, size, carry: false })),
  { kind: 'imul', size: 8, carry: false },
];
function pendingCode(p: Pending): number {
  return PENDINGS.findIndex((q) => q.kind === p.kind && q.size === p.size && q.carry === p.carry) + 1;
}
/** The locals materialisation works on. */
interface FlagLocals { fl: number; fa: number; fb: number; fr: number; fc: number; x: number; t: number }

/** Zero-extend the i64 on the stack from `size` bytes. */
function zext(f: FunctionBody, size: number): void {
  if (size === 4) f.i64(-1, 0).op(Op.I64And);
  else if (size === 2) f.i64(0xffff).op(Op.I64And);
  else if (size === 1) f.i64(0xff).op(Op.I64And);
}

/** OR into the i32 on the stack ZF, SF and PF of the `w`-bit result in i64 local v (zero-extended). */
function orResultFlags(f: FunctionBody, v: number, w: number): void {
  f.get(v).op(Op.I64Eqz).i32(6).op(Op.I32Shl, Op.I32Or);
  f.get(v).i64(w - 1).op(Op.I64ShrU, Op.I32WrapI64).i32(7).op(Op.I32Shl, Op.I32Or);
  f.get(v).op(Op.I32WrapI64).i32(255).op(Op.I32And, Op.I32Popcnt).i32(1).op(Op.I32And).i32(1).op(Op.I32Xor).i32(2).op(Op.I32Shl, Op.I32Or);
}

/** Code that puts pending flags of kind p (operands and result in the locals) into RFLAGS (local fl). */
function materialize(f: FunctionBody, p: Pending, L: FlagLocals): void {
  const w = p.size * 8;
  // x = the result at its width
  f.get(L.fr);
  zext(f, p.size);
  f.set(L.x);
  f.get(L.fl).i32(KEEP).op(Op.I32And);
  if (p.kind === 'imul') {
    // CF = OF = the signed 128-bit product does not fit in 64 bits (imul64Flags); AF clear
    imulOverflow(f, L);
    f.i32(0).i32(0x801).get(L.t).op(Op.I64Eqz, Op.Select, Op.I32Or);
  } else if (p.kind !== 'logic') {
    // CF
    if (p.size < 8) {
      if (p.kind === 'add') f.get(L.fr).i64(w).op(Op.I64ShrU).i64(1).op(Op.I64And, Op.I32WrapI64);
      else f.get(L.fr).i64(0).op(Op.I64LtS);
    } else {
      const [u, v] = p.kind === 'add' ? [L.fr, L.fa] : [L.fa, L.fb];
      f.get(u).get(v).op(Op.I64LtU);
      if (p.carry) f.get(u).get(v).op(Op.I64Eq).get(L.fc).op(Op.I32And, Op.I32Or);
    }
    f.op(Op.I32Or);
    // AF
    f.get(L.fa).get(L.fb).op(Op.I64Xor).get(L.fr).op(Op.I64Xor, Op.I32WrapI64).i32(16).op(Op.I32And, Op.I32Or);
    // OF
    if (p.kind === 'add') f.get(L.fa).get(L.x).op(Op.I64Xor).get(L.fb).get(L.x).op(Op.I64Xor, Op.I64And);
    else f.get(L.fa).get(L.fb).op(Op.I64Xor).get(L.fa).get(L.x).op(Op.I64Xor, Op.I64And);
    f.i64(w - 1).op(Op.I64ShrU, Op.I32WrapI64).i32(1).op(Op.I32And).i32(11).op(Op.I32Shl, Op.I32Or);
  }
  orResultFlags(f, L.x, w);
  f.set(L.fl);
}

/**
 * Local t = 0 when the signed product fa * fb fits in 64 bits (its low half
 * is fr), else nonzero: the high half of the product from 32-bit pieces, made
 * signed, against the low half's sign.
 */
function imulOverflow(f: FunctionBody, L: FlagLocals): void {
  const lo32 = (v: number): void => { f.get(v).i64(-1, 0).op(Op.I64And); };
  const hi32 = (v: number): void => { f.get(v).i64(32).op(Op.I64ShrU); };
  // t = the middle column's carry into the high half
  lo32(L.fa); lo32(L.fb); f.op(Op.I64Mul).i64(32).op(Op.I64ShrU);
  lo32(L.fa); hi32(L.fb); f.op(Op.I64Mul).i64(-1, 0).op(Op.I64And, Op.I64Add);
  hi32(L.fa); lo32(L.fb); f.op(Op.I64Mul).i64(-1, 0).op(Op.I64And, Op.I64Add);
  f.i64(32).op(Op.I64ShrU).set(L.t);
  // unsigned high half
  hi32(L.fa); hi32(L.fb); f.op(Op.I64Mul);
  lo32(L.fa); hi32(L.fb); f.op(Op.I64Mul).i64(32).op(Op.I64ShrU, Op.I64Add);
  hi32(L.fa); lo32(L.fb); f.op(Op.I64Mul).i64(32).op(Op.I64ShrU, Op.I64Add);
  f.get(L.t).op(Op.I64Add);
  // signed: minus b where a < 0, minus a where b < 0
  f.get(L.fb).i64(0).get(L.fa).i64(0).op(Op.I64LtS, Op.Select, Op.I64Sub);
  f.get(L.fa).i64(0).get(L.fb).i64(0).op(Op.I64LtS, Op.Select, Op.I64Sub);
  f.get(L.fr).i64(63).op(Op.I64ShrS, Op.I64Ne, Op.I64ExtendI32U).set(L.t);
}

/**
 * The dispatcher's `settle` (() -> ()): RFLAGS made exact from the pending
 * flags in the arena, whatever their kind, and none left pending.
 */
export function settleBody(layout: ArenaLayout): FunctionBody {
  const f = new FunctionBody([]), at = layout.regAddress;
  const L: FlagLocals = {
    fl: f.local(ValType.I32), fc: f.local(ValType.I32), fa: f.local(ValType.I64), fb: f.local(ValType.I64), fr: f.local(ValType.I64), x: f.local(ValType.I64),
    t: f.local(ValType.I64),
  };
  const kind = f.local(ValType.I32);
  f.i32(0).mem(Op.I32Load, at + WORD.pendingKind).tee(kind).op(Op.I32Eqz);
  f.open(Op.If, 'exact').op(Op.Return).close();
  f.i32(0).mem(Op.I32Load, at + WORD.rflags).set(L.fl);
  f.i32(0).mem(Op.I64Load, at + WORD.pendingA).set(L.fa);
  f.i32(0).mem(Op.I64Load, at + WORD.pendingB).set(L.fb);
  f.i32(0).mem(Op.I64Load, at + WORD.pendingResult).set(L.fr);
  f.i32(0).mem(Op.I32Load, at + WORD.pendingCarry).set(L.fc);
  PENDINGS.forEach((p, j) => {
    f.get(kind).i32(j + 1).op(Op.I32Eq);
    f.open(Op.If, 'kind');
    materialize(f, p, L);
    f.close();
  });
  f.i32(0).get(L.fl).mem(Op.I32Store, at + WORD.rflags);
  f.i32(0).i32(0).mem(Op.I32Store, at + WORD.pendingKind);
  return f;
}
type AluKind = 'add' | 'sub' | 'cmp' | 'and' | 'or' | 'xor' | 'test';

interface AluForms { rr8?: unknown; rr4?: unknown; ri8?: unknown; ri4?: unknown; rm8?: unknown; rm4?: unknown; mr8?: unknown; mr4?: unknown; mi8?: unknown; mi4?: unknown }
const ALU: Array<[AluKind, AluForms]> = [
  ['add', ADD_FORMS], ['sub', SUB_FORMS], ['cmp', CMP_FORMS], ['and', AND_FORMS], ['or', OR_FORMS], ['xor', XOR_FORMS], ['test', TEST_FORMS],
];
const ALU_MNEMONICS = new Map<number, AluKind>([
  [Mnemonic.Add, 'add'], [Mnemonic.Sub, 'sub'], [Mnemonic.Cmp, 'cmp'], [Mnemonic.And, 'and'], [Mnemonic.Or, 'or'], [Mnemonic.Xor, 'xor'], [Mnemonic.Test, 'test'],
]);
const RMW = new Map<number, AluKind>([
  [Mnemonic.Add, 'add'], [Mnemonic.Sub, 'sub'], [Mnemonic.And, 'and'], [Mnemonic.Or, 'or'], [Mnemonic.Xor, 'xor'],
]);
const SHIFTS = new Map<number, string>([
  [Mnemonic.Shl, 'shl'], [Mnemonic.Sal, 'shl'], [Mnemonic.Shr, 'shr'], [Mnemonic.Sar, 'sar'], [Mnemonic.Rol, 'rol'], [Mnemonic.Ror, 'ror'],
]);
const BMI_SHIFTS = new Map<number, 'shl' | 'shr' | 'sar'>([[Mnemonic.Shlx, 'shl'], [Mnemonic.Shrx, 'shr'], [Mnemonic.Sarx, 'sar']]);

/** RFLAGS with the six arithmetic flags cleared (~0x8d5). */
const KEEP = -2262;
const TLB_BYTES = (TLB_MASK + 1) * 4;

const LOAD = [0, Op.I64Load8U, Op.I64Load16U, 0, Op.I64Load32U, 0, 0, 0, Op.I64Load];
const STORE = [0, Op.I64Store8, Op.I64Store16, 0, Op.I64Store32, 0, 0, 0, Op.I64Store];

/** Where a compiled block finds the CPU's state in the arena. */
export interface ArenaLayout {
  /** The CPU words (WORD). */
  regAddress: number;
  /** The MMU's tagLo, tagHi, roff, woff (TLB_MASK + 1 int32 each). */
  tlbAddress: number;
  /** The trace ring: block ids and high halves (int32 each), counts (float64), `ringMask + 1` entries. */
  ringIds: number;
  ringHi: number;
  ringCount: number;
  ringMask: number;
}

/**
 * A block's own place: its id (trace ring and table), and in the arena its
 * two exit links and, for a RET, the target its exit 0 was linked for (int32
 * each).
 */
export interface BlockPlace {
  id: number;
  links: number;
}

/** An access group's shape as planned (see AccessGroup), before a compilation gives it locals. */
export type GroupShape = Pick<AccessGroup, 'id' | 'first' | 'dmin' | 'span'>;

/**
 * A compiled block as a member of a region: what its first compilation
 * decided (so that every compilation of it runs the same instructions
 * itself and stops at the same places), and where its exits go.
 */
export interface RegionMember {
  block: Block;
  place: BlockPlace;
  /** The block's trace hash constants (blockHashConstants). */
  hash: { pow: Int32Array; sum: Int32Array };
  /** Its closing jump goes back to its start and may loop inside. */
  selfLoop: boolean;
  closing: Closing | null;
  /** Whether the last instruction (not a closing branch) has a form of its own here. */
  runsLast: boolean;
  groups: readonly (GroupShape | null)[];
  /** Per exit (0 taken, 1 fall-through): the member it goes on to inside the region, or -1 (it leaves). */
  intra: [number, number];
}

class BlockCompiler {
  private readonly f: FunctionBody;
  // Function-wide: the CPU state the code works on (loaded at entry, stored at the one way out).
  private readonly fl: number;
  private readonly pk: number;
  private readonly h: number;
  private readonly ic: number;
  private readonly ic0: number;
  private readonly limit: number;
  private readonly entries: number;
  private readonly cur: number;
  /** What the way out stores: the return value, the block that returned, RIP, exit kind, the stop index. */
  private readonly retv: number;
  private readonly lastId: number;
  private readonly ripv: number;
  private readonly exitv: number;
  private readonly stopv: number;
  private readonly regs: number[] = [];
  private readonly used = new Set<number>();
  private readonly written = new Set<number>();
  private readonly fa: number; private readonly fb: number; private readonly fr: number; private readonly fc: number;
  private readonly ea: number; private readonly t: number; private readonly lo: number; private readonly hi: number; private readonly slot: number; private readonly addr: number;
  private readonly m: number; private readonly x: number; private readonly y: number; private readonly c: number;
  // The member being compiled.
  private member!: RegionMember;
  /**
   * The flags' state: as the member found them (locals pk, fl and the
   * pending operands: 'entry'), exact in fl (null), or pending with a kind
   * known here.
   */
  private pending: Pending | null | 'entry' = 'entry';
  /** The instruction being compiled (its index is where a stop resumes). */
  private k = 0;

  /** `region`: the function takes the member to start at (i32), else it is one block's, () -> i32. */
  constructor(private readonly layout: ArenaLayout, readonly region: boolean) {
    const f = this.f = new FunctionBody(region ? [ValType.I32] : []);
    this.cur = region ? 0 : f.local(ValType.I32);
    this.fl = f.local(ValType.I32); this.h = f.local(ValType.I32); this.ic = f.local(ValType.F64); this.ic0 = f.local(ValType.F64);
    this.limit = f.local(ValType.F64); this.entries = f.local(ValType.I32); this.pk = f.local(ValType.I32);
    this.retv = f.local(ValType.I32); this.lastId = f.local(ValType.I32); this.ripv = f.local(ValType.I32); this.exitv = f.local(ValType.I32); this.stopv = f.local(ValType.I32);
    for (let r = 0; r < 16; r++) this.regs.push(f.local(ValType.I64));
    this.fa = f.local(ValType.I64); this.fb = f.local(ValType.I64); this.fr = f.local(ValType.I64);
    this.ea = f.local(ValType.I64); this.t = f.local(ValType.I64); this.m = f.local(ValType.I64); this.x = f.local(ValType.I64); this.y = f.local(ValType.I64);
    this.fc = f.local(ValType.I32); this.lo = f.local(ValType.I32); this.hi = f.local(ValType.I32); this.slot = f.local(ValType.I32);
    this.addr = f.local(ValType.I32); this.c = f.local(ValType.I32);
  }

  // ---- registers ----

  private reg(n: number): number {
    if (!Number.isInteger(n) || n < 0 || n > 15) throw NOT_TRANSLATABLE;
    this.used.add(n);
    return this.regs[n];
  }

  /** Push register n's low `size` bytes, zero-extended. */
  private getReg(n: number, size: number): void {
    this.f.get(this.reg(n));
    this.zext(size);
  }

  private zext(size: number): void {
    zext(this.f, size);
  }

  /** Pop an i64 into register n as an x86 write of `size` bytes (4 zero-extends, 2 and 1 merge). */
  private setReg(n: number, size: number): void {
    const r = this.reg(n), f = this.f;
    this.noteWrite(n);
    if (size === 8) f.set(r);
    else if (size === 4) f.i64(-1, 0).op(Op.I64And).set(r);
    else {
      const mask = size === 2 ? 0xffff : 0xff;
      f.i64(mask).op(Op.I64And).set(this.y);
      f.get(r).i64(~mask, -1).op(Op.I64And).get(this.y).op(Op.I64Or).set(r);
    }
  }

  // ---- flags ----

  /**
   * Flags are about to be read or partly changed: make RFLAGS exact. Pending
   * flags of a kind known here are materialised in place; those the member
   * found at its entry (the state 'entry', kind in pk) by the dispatcher's
   * settle, through the arena, when there are any.
   */
  private settle(): void {
    const p = this.pending, f = this.f;
    if (p === 'entry') {
      const at = this.layout.regAddress;
      f.get(this.pk);
      f.open(Op.If, 'pending');
      f.i32(0).get(this.fl).mem(Op.I32Store, at + WORD.rflags);
      this.storePending();
      f.op(Op.Call, 0).i32(0).mem(Op.I32Load, at + WORD.rflags).set(this.fl).i32(0).set(this.pk);
      f.close();
    } else if (p !== null) materialize(f, p, this.flagLocals);
    this.pending = null;
  }

  private get flagLocals(): FlagLocals {
    return { fl: this.fl, fa: this.fa, fb: this.fb, fr: this.fr, fc: this.fc, x: this.x, t: this.t };
  }

  /** The flags state into pk, where code compiled later (a member's next pass, another member, the way out) finds it. */
  private exitFlags(): void {
    const p = this.pending;
    if (p !== 'entry') this.f.i32(p === null ? 0 : pendingCode(p)).set(this.pk);
  }

  /**
   * Push testCondition(cc) as an i32 (nonzero when true): straight from the
   * pending operands where their kind allows (they stay pending), else on
   * RFLAGS made exact.
   */
  private conditionNow(cc: number): void {
    const p = this.pending, f = this.f;
    if (p !== null && p !== 'entry' && !p.carry) {
      const w = p.size * 8;
      const result = (): void => { f.get(this.fr); zext(f, p.size); };
      const sign = (): void => { result(); f.i64(w - 1).op(Op.I64ShrU, Op.I32WrapI64); };
      const signed = (v: number): void => {
        f.get(v);
        if (p.size === 4) f.op(Op.I32WrapI64, Op.I64ExtendI32S);
        else if (p.size === 2) f.op(Op.I64Extend16S);
        else if (p.size === 1) f.op(Op.I64Extend8S);
      };
      const zero = (): void => { result(); f.op(Op.I64Eqz); };
      if (cc === 5 || cc === 6) { zero(); if (cc === 6) f.op(Op.I32Eqz); return; }
      if (cc === 9 || cc === 10) { sign(); if (cc === 10) f.op(Op.I32Eqz); return; }
      if (p.kind === 'sub') {
        const cmp = [0, 0, 0, Op.I64LtU, Op.I64GeU, 0, 0, Op.I64LeU, Op.I64GtU, 0, 0, 0, 0, Op.I64LtS, Op.I64GeS, Op.I64LeS, Op.I64GtS][cc];
        if (cmp !== 0 && cmp !== undefined) {
          if (cc >= 13) { signed(this.fa); signed(this.fb); } else f.get(this.fa).get(this.fb);
          f.op(cmp);
          return;
        }
      }
      if (p.kind === 'logic') {
        // CF = OF = 0
        if (cc === 3 || cc === 4) { f.i32(cc === 3 ? 0 : 1); return; }
        if (cc === 7 || cc === 8) { zero(); if (cc === 8) f.op(Op.I32Eqz); return; }
        if (cc === 13 || cc === 14) { sign(); if (cc === 14) f.op(Op.I32Eqz); return; }
        if (cc === 15 || cc === 16) { zero(); sign(); f.op(Op.I32Or); if (cc === 16) f.op(Op.I32Eqz); return; }
      }
    }
    this.settle();
    this.condition(cc);
  }

  /** Push testCondition(cc) on RFLAGS (settled) as an i32, nonzero when true. */
  private condition(cc: number): void {
    const f = this.f, fl = this.fl;
    const bit = (b: number): void => { f.get(fl).i32(b).op(Op.I32ShrU).i32(1).op(Op.I32And); };
    const sfNeOf = (): void => { f.get(fl).i32(7).op(Op.I32ShrU).get(fl).i32(11).op(Op.I32ShrU, Op.I32Xor).i32(1).op(Op.I32And); };
    switch (cc) {
      case 1: case 2: bit(11); break;
      case 3: case 4: bit(0); break;
      case 5: case 6: bit(6); break;
      case 7: case 8: f.get(fl).i32(65).op(Op.I32And); break;
      case 9: case 10: bit(7); break;
      case 11: case 12: bit(2); break;
      case 13: case 14: sfNeOf(); break;
      case 15: case 16: bit(6); sfNeOf(); f.op(Op.I32Or); break;
      default: throw NOT_TRANSLATABLE;
    }
    if (cc % 2 === 0) f.op(Op.I32Eqz);
  }

  /** `done` more instructions of the member retire: the hash and the count (the ring entry comes with ringEntry). */
  private retire(done: number): void {
    if (done === 0) return;
    const f = this.f, pow = this.member.hash.pow[done], sum = this.member.hash.sum[done];
    f.get(this.h).i32(pow).op(Op.I32Mul).i32(sum).op(Op.I32Add).set(this.h);
    f.get(this.ic).f64(done).op(Op.F64Add).set(this.ic);
  }

  /** One trace ring entry for what the member retired since its entry (ic - ic0): `known` says whether that is more than nothing. */
  private ringEntry(known: boolean): void {
    const f = this.f, L = this.layout;
    if (!known) {
      f.get(this.ic).get(this.ic0).op(Op.F64Gt);
      f.open(Op.If, 'retired');
    }
    f.get(this.entries).i32(L.ringMask).op(Op.I32And).set(this.slot);
    f.get(this.slot).i32(2).op(Op.I32Shl).i32(this.member.place.id).mem(Op.I32Store, L.ringIds);
    f.get(this.slot).i32(2).op(Op.I32Shl).i32(this.member.block.hi | 0).mem(Op.I32Store, L.ringHi);
    f.get(this.slot).i32(3).op(Op.I32Shl).get(this.ic).get(this.ic0).op(Op.F64Sub).mem(Op.F64Store, L.ringCount);
    f.get(this.entries).i32(1).op(Op.I32Add).set(this.entries);
    if (!known) f.close();
  }

  /** Leave the function before instruction k, which runs by its handler (the back end's stop path). */
  private stop(): void {
    const f = this.f, k = this.k;
    this.exitFlags();
    this.retire(k);
    if (k > 0 || this.member.selfLoop) this.ringEntry(k > 0);
    f.i32(this.member.place.id).set(this.lastId).i32(k).set(this.stopv).i32(-2).set(this.retv).br('out');
  }

  /**
   * Retire `done` more instructions and leave by exit `kind` (0 taken, 1
   * fall-through) for RIP `target`: on to another member of the region, or
   * out of the function with the block linked there (or -1).
   */
  private leave(done: number, kind: number, target: number): void {
    const f = this.f, member = this.member;
    this.exitFlags();
    this.retire(done);
    this.ringEntry(true);
    const next = member.intra[kind];
    if (next >= 0) {
      f.i32(next).set(this.cur).br('dispatch');
      return;
    }
    f.i32(member.place.id).set(this.lastId).i32(target).set(this.ripv).i32(kind).set(this.exitv);
    f.i32(0).mem(Op.I32Load, member.place.links + 4 * kind).set(this.retv).br('out');
  }

  // ---- memory ----

  /** The memory operand's linear address into `ea`, as Cpu.calcEA computes it for the forms handled here. */
  private effectiveAddress(i: Insn, nextLo: number, nextHi: number): void {
    if (i.memSeg !== -1 || i.addrSize !== 8) throw NOT_TRANSLATABLE;
    const f = this.f, b = i.memBase, x = i.memIndex;
    if (b === 16) {
      if (x !== -1) throw NOT_TRANSLATABLE;
      let lo = i.dispLo + nextLo, hi = i.dispHi + nextHi;
      if (lo > 0xffffffff) {
        hi += Math.floor(lo / 4294967296);
        lo >>>= 0;
      }
      f.i64(lo, hi >>> 0).set(this.ea);
      return;
    }
    const hasDisp = i.dispLo !== 0 || i.dispHi !== 0;
    let terms = 0;
    if (b !== -1) {
      f.get(this.reg(b));
      terms++;
    }
    if (x !== -1) {
      f.get(this.reg(x));
      const s = i.memScale;
      if (s !== 1) f.i64(Math.log2(s)).op(Op.I64Shl);
      if (terms++ > 0) f.op(Op.I64Add);
    }
    if (hasDisp || terms === 0) {
      f.i64(i.dispLo, i.dispHi);
      if (terms > 0) f.op(Op.I64Add);
    }
    f.set(this.ea);
  }

  /** The arena address of `size` bytes at `ea` into `addr`, through the TLB; else stop before this instruction. */
  private probe(size: number, write: boolean): void {
    const f = this.f, t = this.layout.tlbAddress;
    f.get(this.ea).op(Op.I32WrapI64).set(this.lo);
    f.get(this.ea).i64(32).op(Op.I64ShrU, Op.I32WrapI64).set(this.hi);
    f.get(this.lo).i32(12).op(Op.I32ShrU).get(this.hi).op(Op.I32Xor).i32(TLB_MASK).op(Op.I32And).i32(2).op(Op.I32Shl).set(this.slot);
    f.open(Op.Block, 'hit');
    f.open(Op.Block, 'miss');
    f.get(this.slot).mem(Op.I32Load, t).get(this.lo).i32(12).op(Op.I32ShrU, Op.I32Ne).brIf('miss');
    f.get(this.slot).mem(Op.I32Load, t + TLB_BYTES).get(this.hi).op(Op.I32Ne).brIf('miss');
    if (size > 1) f.get(this.lo).i32(4095).op(Op.I32And).i32(4096 - size).op(Op.I32GtU).brIf('miss');
    f.get(this.slot).mem(Op.I32Load, t + (write ? 3 : 2) * TLB_BYTES).tee(this.addr).i32(-1).op(Op.I32Eq).brIf('miss');
    f.br('hit');
    f.close();
    this.stop();
    f.close();
    f.get(this.addr).get(this.lo).i32(4095).op(Op.I32And, Op.I32Add).set(this.addr);
  }

  /**
   * The arena address of the memory operand into `addr` (or a stop before
   * this instruction): through its access group's page when it has one and
   * the group's probe found the page, else through its own probe.
   */
  private access(i: Insn, size: number, write: boolean, nextLo: number, nextHi: number): void {
    this.recordAccess(i);
    const g = this.plan[this.k] ?? null;
    if (g === null) {
      this.effectiveAddress(i, nextLo, nextHi);
      this.probe(size, write);
      return;
    }
    const f = this.f;
    if (g.first) this.groupProbe(i.memBase, g);
    const q = write ? g.qw : g.qr;
    f.get(q).i32(-1).op(Op.I32Ne);
    f.open(Op.If, 'grouped');
    f.get(q).i32(signedDisp(i)! - g.dmin).op(Op.I32Add).set(this.addr);
    f.else();
    this.effectiveAddress(i, nextLo, nextHi);
    this.probe(size, write);
    f.close();
  }

  /**
   * An access group's probe, at its first member: the arena addresses
   * (readable, writable) of base + dmin when the TLB has its page and all
   * `span` bytes of the group lie in it, else -1.
   */
  private groupProbe(base: number, g: AccessGroup): void {
    const f = this.f, t = this.layout.tlbAddress;
    f.i32(-1).set(g.qr).i32(-1).set(g.qw);
    f.get(this.reg(base)).i64(g.dmin).op(Op.I64Add).set(this.ea);
    f.get(this.ea).op(Op.I32WrapI64).set(this.lo);
    f.get(this.ea).i64(32).op(Op.I64ShrU, Op.I32WrapI64).set(this.hi);
    f.get(this.lo).i32(12).op(Op.I32ShrU).get(this.hi).op(Op.I32Xor).i32(TLB_MASK).op(Op.I32And).i32(2).op(Op.I32Shl).set(this.slot);
    f.open(Op.Block, 'group');
    f.get(this.slot).mem(Op.I32Load, t).get(this.lo).i32(12).op(Op.I32ShrU, Op.I32Ne).brIf('group');
    f.get(this.slot).mem(Op.I32Load, t + TLB_BYTES).get(this.hi).op(Op.I32Ne).brIf('group');
    f.get(this.lo).i32(4095).op(Op.I32And).i32(4096 - g.span).op(Op.I32GtU).brIf('group');
    for (const [q, table] of [[g.qr, 2], [g.qw, 3]]) {
      f.get(this.slot).mem(Op.I32Load, t + table * TLB_BYTES).tee(this.addr).i32(-1).op(Op.I32Ne);
      f.open(Op.If, 'direct');
      f.get(this.addr).get(this.lo).i32(4095).op(Op.I32And, Op.I32Add).set(q);
      f.close();
    }
    f.close();
  }

  /** Read `size` bytes of the memory operand (zero-extended) into m. */
  private read(i: Insn, size: number, nextLo: number, nextHi: number): void {
    this.access(i, size, false, nextLo, nextHi);
    this.f.get(this.addr).mem(LOAD[size], 0).set(this.m);
  }

  /** Write the i64 pushed by `value` as `size` bytes to the memory operand (the probe comes first: it may stop). */
  private write(i: Insn, size: number, nextLo: number, nextHi: number, value: () => void): void {
    this.access(i, size, true, nextLo, nextHi);
    this.f.get(this.addr);
    value();
    this.f.mem(STORE[size], 0);
  }

  // ---- ALU ----

  /**
   * An arithmetic or logic operation on `size`-byte operands pushed by a and
   * b (zero-extended): flags left pending, the result into `dest` or through
   * `store` (a memory destination), nothing for CMP/TEST.
   */
  private alu(kind: AluKind, size: number, a: () => void, b: () => void, dest: number | null, carry = false,
    store: (() => void) | null = null): void {
    const f = this.f;
    if (carry) {
      // CF in, read before the operands replace the pending flags' own
      this.settle();
      f.get(this.fl).i32(1).op(Op.I32And).set(this.fc);
    }
    a(); f.set(this.fa);
    b(); f.set(this.fb);
    f.get(this.fa).get(this.fb);
    const flagKind: FlagKind = kind === 'add' ? 'add' : kind === 'sub' || kind === 'cmp' ? 'sub' : 'logic';
    switch (kind) {
      case 'add': f.op(Op.I64Add); break;
      case 'sub': case 'cmp': f.op(Op.I64Sub); break;
      case 'and': case 'test': f.op(Op.I64And); break;
      case 'or': f.op(Op.I64Or); break;
      case 'xor': f.op(Op.I64Xor); break;
    }
    if (carry) f.get(this.fc).op(Op.I64ExtendI32U, kind === 'add' ? Op.I64Add : Op.I64Sub);
    f.set(this.fr);
    if (store !== null) store();
    else if (dest !== null) {
      f.get(this.fr);
      this.setReg(dest, size === 8 ? 8 : 4);
    }
    this.pending = { kind: flagKind, size, carry };
  }

  // ---- one instruction ----

  /** Code for instruction k (not the block's closing branch); NOT_TRANSLATABLE when it has no WebAssembly form. */
  compile(i: Insn, nextLo: number, nextHi: number): void {
    const f = this.f, h = i.exec, d = i.r0, s = i.r1;
    const rd = (size: number): void => this.read(i, size, nextLo, nextHi);
    /** The r/m source (operand 1) of `size` bytes, zero-extended, into m. */
    const source = (size: number): void => {
      if (i.k1 === Operand.Mem) rd(size);
      else {
        this.getReg(s, size);
        f.set(this.m);
      }
    };
    const wr = (size: number, value: () => void): void => this.write(i, size, nextLo, nextHi, value);
    const regTo = (n: number, size: number) => (): void => this.getReg(n, size);
    const imm = (size: number) => (): void => { f.i64(i.immLo, size === 8 ? i.immHi : 0); };
    const mem = (): void => { f.get(this.m); };
    // MOV
    if (h === MOV_FORMS.rr8) { this.getReg(s, 8); this.setReg(d, 8); return; }
    if (h === MOV_FORMS.rr4) { this.getReg(s, 4); this.setReg(d, 4); return; }
    if (h === MOV_FORMS.ri8) { f.i64(i.immLo, i.immHi); this.setReg(d, 8); return; }
    if (h === MOV_FORMS.ri4) { f.i64(i.immLo, 0); this.setReg(d, 4); return; }
    if (h === MOV_FORMS.rm8 || h === MOV_FORMS.rm4 || h === MOV_FORMS.rm2 || h === MOV_FORMS.rm1) {
      const size = h === MOV_FORMS.rm8 ? 8 : h === MOV_FORMS.rm4 ? 4 : h === MOV_FORMS.rm2 ? 2 : 1;
      this.reg(d);
      rd(size);
      f.get(this.m);
      this.setReg(d, size);
      return;
    }
    if (h === MOV_FORMS.mr8) { wr(8, regTo(s, 8)); return; }
    if (h === MOV_FORMS.mr4) { wr(4, regTo(s, 4)); return; }
    if (h === MOV_FORMS.mr2) { wr(2, regTo(s, 2)); return; }
    if (h === MOV_FORMS.mr1) { wr(1, regTo(s, 1)); return; }
    if (h === MOV_FORMS.mi8) { wr(8, imm(8)); return; }
    if (h === MOV_FORMS.mi4 && (i.s0 === 4 || i.s0 === 2 || i.s0 === 1)) { wr(i.s0, imm(4)); return; }
    // MOVZX, LEA
    if (h === MOVZX_FORMS.rm1 || h === MOVZX_FORMS.rm2) { this.reg(d); rd(h === MOVZX_FORMS.rm1 ? 1 : 2); f.get(this.m); this.setReg(d, 8); return; }
    if (h === MOVZX_FORMS.rr1) { this.getReg(s, 1); this.setReg(d, 8); return; }
    if (h === MOVZX_FORMS.rr2) { this.getReg(s, 2); this.setReg(d, 8); return; }
    if (h === LEA_FORMS.r8 || h === LEA_FORMS.r4) {
      this.effectiveAddress(i, nextLo, nextHi);
      f.get(this.ea);
      this.setReg(d, h === LEA_FORMS.r8 ? 8 : 4);
      return;
    }
    // ALU
    for (const [kind, forms] of ALU) {
      const dest = kind === 'cmp' || kind === 'test' ? null : d;
      if (h === forms.rr8) { this.alu(kind, 8, regTo(d, 8), regTo(s, 8), dest); return; }
      if (h === forms.rr4) { this.alu(kind, 4, regTo(d, 4), regTo(s, 4), dest); return; }
      if (h === forms.ri8) { this.alu(kind, 8, regTo(d, 8), imm(8), dest); return; }
      if (h === forms.ri4) { this.alu(kind, 4, regTo(d, 4), imm(4), dest); return; }
      if (h === forms.rm8) { this.reg(d); rd(8); this.alu(kind, 8, regTo(d, 8), mem, dest); return; }
      if (h === forms.rm4) { this.reg(d); rd(4); this.alu(kind, 4, regTo(d, 4), mem, dest); return; }
      if (kind === 'cmp') {
        if (h === forms.mr8) { this.reg(s); rd(8); this.alu(kind, 8, mem, regTo(s, 8), null); return; }
        if (h === forms.mr4) { this.reg(s); rd(4); this.alu(kind, 4, mem, regTo(s, 4), null); return; }
        if (h === forms.mi8) { rd(8); this.alu(kind, 8, mem, imm(8), null); return; }
        if (h === forms.mi4) { rd(4); this.alu(kind, 4, mem, imm(4), null); return; }
      }
    }
    if (h === CMP_FORMS.ri1) { this.alu('cmp', 1, regTo(d, 1), () => { f.i64(i.immLo & 255); }, null); return; }
    if (h === TEST_FORMS.rr1) { this.alu('test', 1, regTo(d, 1), regTo(s, 1), null); return; }
    if (h === NEG_FORMS.r8) { this.alu('sub', 8, () => { f.i64(0); }, regTo(d, 8), d); return; }
    if (h === NEG_FORMS.r4) { this.alu('sub', 4, () => { f.i64(0); }, regTo(d, 4), d); return; }
    // SHLX/SHRX/SARX (no flags)
    const bmi = BMI_SHIFTS.get(i.mnemonic);
    if (bmi !== undefined && i.opCount === 3 && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && i.k2 === Operand.Reg &&
      (i.k1 === Operand.Reg || (i.k1 === Operand.Mem && i.s1 === i.s0))) {
      const size = i.s0;
      this.reg(d);
      this.reg(i.r2);
      source(size);
      f.get(this.m);
      if (size === 8) {
        this.getReg(i.r2, 8);
        f.op(bmi === 'shl' ? Op.I64Shl : bmi === 'shr' ? Op.I64ShrU : Op.I64ShrS);
      } else {
        f.op(Op.I32WrapI64);
        f.get(this.reg(i.r2)).op(Op.I32WrapI64);
        f.op(bmi === 'shl' ? Op.I32Shl : bmi === 'shr' ? Op.I32ShrU : Op.I32ShrS, Op.I64ExtendI32U);
      }
      this.setReg(d, 8);
      return;
    }
    // ADC/SBB r32/r64, r/imm
    const carry = i.mnemonic === Mnemonic.Adc ? 'add' : i.mnemonic === Mnemonic.Sbb ? 'sub' : null;
    if (carry !== null && i.opCount === 2 && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && !i.lock &&
      ((i.k1 === Operand.Reg && i.s1 === i.s0) || i.k1 === Operand.Imm)) {
      const size = i.s0;
      this.alu(carry, size, regTo(d, size), i.k1 === Operand.Reg ? regTo(s, size) : imm(size), d, true);
      return;
    }
    const shift = SHIFTS.get(i.mnemonic);
    if (shift !== undefined && i.opCount === 2 && i.k0 === Operand.Reg && i.k1 === Operand.Imm && !i.lock &&
      (i.s0 === 4 || i.s0 === 8 || ((i.s0 === 2 || i.s0 === 1) && shift !== 'rol' && shift !== 'ror'))) {
      this.shiftImm(shift, i.s0, d, i.immLo);
      return;
    }
    if (shift !== undefined && shift !== 'rol' && shift !== 'ror' && i.opCount === 2 && i.k0 === Operand.Reg && i.k1 === Operand.Reg && i.r1 === 1 &&
      i.s1 === 1 && !i.lock && (i.s0 === 4 || i.s0 === 8)) {
      this.shiftCl(shift, i.s0, d);
      return;
    }
    if (i.mnemonic === Mnemonic.Bzhi && i.k1 === Operand.Reg && i.k2 === Operand.Reg && (i.s0 === 4 || i.s0 === 8)) {
      this.bzhi(i.s0, d, s, i.r2);
      return;
    }
    // IMUL r64, r/m64 and IMUL r64, r/m64, imm: the low 64 bits; flags pending (imul64Flags from the operands)
    if (i.mnemonic === Mnemonic.Imul && i.s0 === 8 && i.k0 === Operand.Reg && (i.opCount === 2 || (i.opCount === 3 && i.k2 === Operand.Imm)) &&
      (i.k1 === Operand.Reg || (i.k1 === Operand.Mem && i.s1 === 8))) {
      this.reg(d);
      source(8);
      f.get(this.m).set(this.fb); // the r/m operand
      if (i.opCount === 3) f.get(this.fb).set(this.fa).i64(i.immLo, i.immHi).set(this.fb);
      else this.getReg(d, 8), f.set(this.fa);
      f.get(this.fa).get(this.fb).op(Op.I64Mul).tee(this.fr);
      this.setReg(d, 8);
      this.pending = { kind: 'imul', size: 8, carry: false };
      return;
    }
    // IMUL r32, r/m32 and IMUL r32, r/m32, imm: the low half of the signed product; CF = OF = it does not fit in 32 bits, SF, ZF, PF
    // of the low half, AF clear (imulCore): all six flags replaced here.
    if (i.mnemonic === Mnemonic.Imul && i.s0 === 4 && i.k0 === Operand.Reg && (i.opCount === 2 || (i.opCount === 3 && i.k2 === Operand.Imm)) &&
      (i.k1 === Operand.Reg || (i.k1 === Operand.Mem && i.s1 === 4))) {
      this.reg(d);
      source(4);
      f.get(this.m).op(Op.I32WrapI64, Op.I64ExtendI32S);
      if (i.opCount === 3) f.i64(i.immLo | 0);
      else f.get(this.reg(d)).op(Op.I32WrapI64, Op.I64ExtendI32S);
      f.op(Op.I64Mul).tee(this.x);
      this.zext(4);
      f.tee(this.y);
      this.setReg(d, 4);
      f.get(this.fl).i32(KEEP).op(Op.I32And);
      f.i32(0x801).i32(0).get(this.x).get(this.x).op(Op.I32WrapI64, Op.I64ExtendI32S, Op.I64Ne, Op.Select, Op.I32Or);
      orResultFlags(f, this.y, 32);
      f.set(this.fl);
      this.pending = null;
      return;
    }
    // ADD/SUB/CMP/AND/OR/XOR/TEST on 8- and 16-bit registers (not AH..BH), and CMP/TEST of such a memory operand
    const narrow = ALU_MNEMONICS.get(i.mnemonic);
    if (narrow !== undefined && i.opCount === 2 && !i.lock && (i.s0 === 1 || i.s0 === 2) &&
      ((i.k0 === Operand.Reg && d < 16) || (i.k0 === Operand.Mem && (narrow === 'cmp' || narrow === 'test'))) &&
      ((i.k1 === Operand.Reg && s < 16 && i.s1 === i.s0) || i.k1 === Operand.Imm || (i.k1 === Operand.Mem && i.s1 === i.s0 && i.k0 === Operand.Reg))) {
      const size = i.s0, mask = size === 1 ? 0xff : 0xffff;
      const dest = narrow === 'cmp' || narrow === 'test' ? null : d;
      const b = i.k1 === Operand.Imm ? (): void => { f.i64(i.immLo & mask); } : i.k1 === Operand.Reg ? regTo(s, size) : mem;
      if (i.k1 === Operand.Reg) this.reg(s);
      if (i.k0 === Operand.Mem) {
        rd(size);
        this.alu(narrow, size, mem, b, null);
      } else {
        this.reg(d);
        if (i.k1 === Operand.Mem) rd(size);
        this.alu(narrow, size, regTo(d, size), b, dest, false, dest === null ? null : () => { f.get(this.fr); this.setReg(d, size); });
      }
      return;
    }
    // CDQE, CDQ, CQO
    if (i.mnemonic === Mnemonic.Cdqe) { this.getReg(0, 4); f.op(Op.I64Extend32S); this.setReg(0, 8); return; }
    if (i.mnemonic === Mnemonic.Cdq) { this.getReg(0, 4); f.op(Op.I64Extend32S).i64(32).op(Op.I64ShrU); this.reg(2); this.setReg(2, 4); return; }
    if (i.mnemonic === Mnemonic.Cqo) { this.getReg(0, 8); f.i64(63).op(Op.I64ShrS); this.reg(2); this.setReg(2, 8); return; }
    // NOT r32/r64 (no flags)
    if (i.mnemonic === Mnemonic.Not && i.opCount === 1 && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && !i.lock) {
      this.getReg(d, i.s0);
      f.i64(-1, -1).op(Op.I64Xor);
      this.setReg(d, i.s0);
      return;
    }
    // INC/DEC r32/r64: ADD/SUB 1 with CF kept
    if ((i.mnemonic === Mnemonic.Inc || i.mnemonic === Mnemonic.Dec) && i.opCount === 1 && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && !i.lock) {
      const size = i.s0, kind = i.mnemonic === Mnemonic.Inc ? 'add' : 'sub';
      this.settle();
      f.get(this.fl).i32(1).op(Op.I32And).set(this.c);
      this.alu(kind, size, regTo(d, size), () => { f.i64(1); }, d);
      this.settle();
      f.get(this.fl).i32(-2).op(Op.I32And).get(this.c).op(Op.I32Or).set(this.fl);
      return;
    }
    // LZCNT/TZCNT r, r/m (CF: source zero, ZF: result zero, the rest kept); BSF/BSR (ZF: source zero, then the destination is kept)
    const scan = i.mnemonic === Mnemonic.Lzcnt ? 'lzcnt' : i.mnemonic === Mnemonic.Tzcnt ? 'tzcnt' : i.mnemonic === Mnemonic.Bsr ? 'bsr' : i.mnemonic === Mnemonic.Bsf ? 'bsf' : null;
    if (scan !== null && i.opCount === 2 && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && i.s1 === i.s0 && (i.k1 === Operand.Reg || i.k1 === Operand.Mem)) {
      const size = i.s0, w = size * 8;
      this.reg(d);
      source(size);
      this.settle();
      const count = (): void => {
        f.get(this.m);
        if (size === 4) f.op(Op.I32WrapI64, scan === 'lzcnt' || scan === 'bsr' ? Op.I32Clz : Op.I32Ctz, Op.I64ExtendI32U);
        else f.op(scan === 'lzcnt' || scan === 'bsr' ? Op.I64Clz : Op.I64Ctz);
      };
      if (scan === 'lzcnt' || scan === 'tzcnt') {
        count();
        f.set(this.y);
        f.get(this.fl).i32(-66).op(Op.I32And).get(this.m).op(Op.I64Eqz, Op.I32Or).get(this.y).op(Op.I64Eqz).i32(6).op(Op.I32Shl, Op.I32Or).set(this.fl);
        f.get(this.y);
        this.setReg(d, size);
      } else {
        f.get(this.m).op(Op.I64Eqz);
        f.open(Op.If, 'zero');
        f.get(this.fl).i32(64).op(Op.I32Or).set(this.fl);
        f.else();
        f.get(this.fl).i32(-65).op(Op.I32And).set(this.fl);
        if (scan === 'bsr') f.i64(w - 1);
        count();
        if (scan === 'bsr') f.op(Op.I64Sub);
        this.setReg(d, size);
        f.close();
      }
      return;
    }
    if (h === NO_EFFECT) return;
    if (h === CONDITIONAL_FORMS.setcc && i.k0 === Operand.Reg) {
      this.reg(d);
      this.settle();
      f.get(this.reg(d)).i64(~0xff, -1).op(Op.I64And);
      this.condition(i.cc);
      f.i32(0).op(Op.I32Ne, Op.I64ExtendI32U, Op.I64Or).set(this.reg(d));
      this.noteWrite(d);
      return;
    }
    if (h === CONDITIONAL_FORMS.cmovcc && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && i.s1 === i.s0 &&
      (i.k1 === Operand.Reg || i.k1 === Operand.Mem)) {
      const size = i.s0;
      this.reg(d);
      source(size);
      this.settle();
      // select(v, old, cond); a 32-bit destination is zero-extended whichever it keeps
      f.get(this.m);
      this.getReg(d, size);
      this.condition(i.cc);
      f.op(Op.Select);
      this.setReg(d, 8);
      return;
    }
    if (h === MOVSX_FORMS.any && i.k0 === Operand.Reg && (i.s0 === 4 || i.s0 === 8) && (i.s1 === 1 || i.s1 === 2 || i.s1 === 4) && i.s1 < i.s0 &&
      (i.k1 === Operand.Reg || i.k1 === Operand.Mem)) {
      this.reg(d);
      source(i.s1);
      f.get(this.m);
      f.op(i.s1 === 1 ? Op.I64Extend8S : i.s1 === 2 ? Op.I64Extend16S : Op.I64Extend32S);
      this.setReg(d, i.s0);
      return;
    }
    // ADD/SUB/AND/OR/XOR m32/m64, r/imm (read-modify-write, not LOCKed): one probe for writing serves both accesses.
    const rmw = RMW.get(i.mnemonic);
    if (rmw !== undefined && i.opCount === 2 && i.k0 === Operand.Mem && (i.s0 === 4 || i.s0 === 8) && i.rmw && !i.lock && i.rep === 0 &&
      ((i.k1 === Operand.Reg && i.s1 === i.s0) || i.k1 === Operand.Imm)) {
      const size = i.s0;
      const b = i.k1 === Operand.Reg ? regTo(s, size) : imm(size);
      if (i.k1 === Operand.Reg) this.reg(s);
      this.access(i, size, true, nextLo, nextHi);
      f.get(this.addr).mem(LOAD[size], 0).set(this.m);
      this.alu(rmw, size, mem, b, null, false, () => { f.get(this.addr).get(this.fr).mem(STORE[size], 0); });
      return;
    }
    throw NOT_TRANSLATABLE;
  }

  /** SHL/SHR/SAR/ROL/ROR r, imm: shiftImmSource's results and flags. */
  private shiftImm(kind: string, size: number, d: number, imm: number): void {
    const f = this.f, w = size * 8;
    const c = imm & (size === 8 ? 63 : 31);
    this.reg(d);
    if (c === 0) {
      if (size === 4) {
        this.getReg(d, 4);
        this.setReg(d, 4);
      }
      return;
    }
    const a = this.x, r = this.y;
    /** The i64 on the stack, zero-extended from `size` bytes, sign-extended instead. */
    const signExtend = (): void => {
      if (size < 8) f.op(size === 4 ? Op.I64Extend32S : size === 2 ? Op.I64Extend16S : Op.I64Extend8S);
    };
    this.getReg(d, size);
    f.set(a);
    // r = the result at width w (zero-extended); a count may pass an 8- or 16-bit width (everything shifts out)
    f.get(a);
    switch (kind) {
      case 'shl': f.i64(c).op(Op.I64Shl); break;
      case 'shr': f.i64(c).op(Op.I64ShrU); break;
      case 'sar':
        signExtend();
        f.i64(c).op(Op.I64ShrS);
        break;
      case 'rol': case 'ror':
        if (size === 4) f.op(Op.I32WrapI64).i32(c).op(kind === 'rol' ? Op.I32Rotl : Op.I32Rotr, Op.I64ExtendI32U);
        else f.i64(c).op(kind === 'rol' ? Op.I64Rotl : Op.I64Rotr);
        break;
    }
    this.zext(size);
    f.set(r);
    const bitOf = (v: number, n: number): void => { f.get(v).i64(n).op(Op.I64ShrU).i64(1).op(Op.I64And, Op.I32WrapI64); };
    const top = (v: number): void => bitOf(v, w - 1);
    if (kind === 'rol' || kind === 'ror') {
      this.settle();
      // cf, then of = cf ^ (rol: top bit; ror: the bit below the top)
      if (kind === 'rol') bitOf(r, 0);
      else top(r);
      f.set(this.c);
      f.get(this.fl).i32(-2050).op(Op.I32And).get(this.c).op(Op.I32Or);
      f.get(this.c);
      if (kind === 'rol') top(r);
      else bitOf(r, w - 2);
      f.op(Op.I32Xor).i32(11).op(Op.I32Shl, Op.I32Or).set(this.fl);
    } else {
      // CF: the last bit shifted out (none is, for SHL past the width; SAR's come from the sign-extended operand)
      if (kind === 'shl') {
        if (c > w) f.i32(0);
        else bitOf(a, w - c);
      } else if (kind === 'shr') bitOf(a, c - 1);
      else {
        f.get(a);
        signExtend();
        f.i64(c - 1).op(Op.I64ShrS).i64(1).op(Op.I64And, Op.I32WrapI64);
      }
      f.set(this.c);
      this.shiftFlags(kind, w, this.c, a, r);
      this.pending = null; // all six replaced
    }
    f.get(r);
    this.setReg(d, size);
  }

  /**
   * RFLAGS after SHL/SHR/SAR by a nonzero count: CF from i32 local cf, OF
   * as for a count of one (SHL: the result's top ^ CF, SHR: the operand's
   * top, SAR: 0), SF, ZF, PF of the result, AF clear; `a` and `r` the
   * operand and the result, zero-extended from `w` bits.
   */
  private shiftFlags(kind: string, w: number, cf: number, a: number, r: number): void {
    const f = this.f;
    const top = (v: number): void => { f.get(v).i64(w - 1).op(Op.I64ShrU).i64(1).op(Op.I64And, Op.I32WrapI64); };
    f.get(this.fl).i32(KEEP).op(Op.I32And).get(cf).op(Op.I32Or);
    if (kind === 'shl') { top(r); f.get(cf).op(Op.I32Xor).i32(11).op(Op.I32Shl, Op.I32Or); }
    else if (kind === 'shr') { top(a); f.i32(11).op(Op.I32Shl, Op.I32Or); }
    orResultFlags(f, r, w);
    f.set(this.fl);
  }

  /**
   * SHL/SHR/SAR r, CL (shiftOp's results and flags): a count of zero (CL
   * masked to 5 or 6 bits) changes no flag and only zero-extends a 32-bit
   * destination; otherwise CF is the last bit shifted out, OF as for a
   * count of one (SHL: top ^ CF, SHR: the operand's top, SAR: 0), SF, ZF,
   * PF of the result, AF clear. The flags are made exact first so that both
   * cases leave them the same way.
   */
  private shiftCl(kind: string, size: number, d: number): void {
    const f = this.f, w = size * 8, a = this.x, r = this.y, cf = this.lo, c = this.c;
    this.reg(d);
    this.settle();
    f.get(this.reg(1)).op(Op.I32WrapI64).i32(w - 1).op(Op.I32And).tee(c).op(Op.I32Eqz);
    f.open(Op.If, 'none');
    if (size === 4) {
      this.getReg(d, 4);
      this.setReg(d, 4);
    }
    f.else();
    this.getReg(d, size);
    f.set(a);
    const count = (): void => { f.get(c).op(Op.I64ExtendI32U); };
    f.get(a);
    if (kind === 'sar' && size === 4) f.op(Op.I64Extend32S);
    count();
    f.op(kind === 'shl' ? Op.I64Shl : kind === 'shr' ? Op.I64ShrU : Op.I64ShrS);
    this.zext(size);
    f.set(r);
    // CF: SHL bit w - c of the operand, SHR/SAR bit c - 1 (of the sign-extended operand, the same bit for c - 1 < w)
    f.get(a);
    if (kind === 'shl') f.i64(w).get(c).op(Op.I64ExtendI32U, Op.I64Sub);
    else f.get(c).i32(1).op(Op.I32Sub, Op.I64ExtendI32U);
    f.op(Op.I64ShrU).i64(1).op(Op.I64And, Op.I32WrapI64).set(cf);
    this.shiftFlags(kind, w, cf, a, r);
    f.get(r);
    this.setReg(d, size);
    f.close();
  }

  /** BZHI r, r, r: bzhiSource's result and flags. */
  private bzhi(size: number, d: number, src: number, cnt: number): void {
    const f = this.f, w = size * 8;
    this.reg(d);
    this.getReg(cnt, 1);
    f.op(Op.I32WrapI64).set(this.c);
    // r = n < w ? v & ((1 << n) - 1) : v
    this.getReg(src, size);
    f.i64(1).get(this.c).op(Op.I64ExtendI32U, Op.I64Shl).i64(1).op(Op.I64Sub, Op.I64And);
    this.getReg(src, size);
    f.get(this.c).i32(w).op(Op.I32LtU, Op.Select).set(this.y);
    this.settle();
    f.get(this.fl).i32(-2242).op(Op.I32And);
    f.get(this.c).i32(w - 1).op(Op.I32GtU, Op.I32Or);
    f.get(this.y).op(Op.I64Eqz).i32(6).op(Op.I32Shl, Op.I32Or);
    f.get(this.y).i64(w - 1).op(Op.I64ShrU, Op.I32WrapI64).i32(7).op(Op.I32Shl, Op.I32Or).set(this.fl);
    f.get(this.y);
    this.setReg(d, 8);
  }

  /** Instructions compiled (the rest, at most the last, runs by its handler). */
  count = 0;
  /** Per instruction: the access group its memory operand belongs to (null: none, or not planned yet). */
  private plan: (AccessGroup | null)[] = [];
  /** What a first compilation saw, for planning groups: per instruction, a groupable memory operand and the registers written. */
  readonly seenAccess: ({ base: number; disp: number } | null)[] = [];
  readonly seenWrites: Set<number>[] = [];

  private noteWrite(n: number): void {
    this.written.add(n);
    (this.seenWrites[this.k] ??= new Set()).add(n);
  }

  private recordAccess(i: Insn): void {
    this.seenAccess[this.k] = groupable(i) ? { base: i.memBase, disp: signedDisp(i)! } : null;
  }

  /** Access groups for the member about to be compiled, each with locals of its own (members share a group's). */
  private usePlan(shapes: readonly (GroupShape | null)[]): void {
    const heads = new Map<number, AccessGroup>();
    this.plan = shapes.map((g) => {
      if (g === null) return null;
      let head = heads.get(g.id);
      if (head === undefined) heads.set(g.id, (head = { ...g, qr: this.f.local(ValType.I32), qw: this.f.local(ValType.I32) }));
      return { ...g, qr: head.qr, qw: head.qw };
    });
  }

  /**
   * The whole function: the members one after another (a region starts at
   * the one its argument names and goes from member to member by a branch
   * table), then the one way out. Null when an instruction has no
   * WebAssembly form.
   */
  build(members: readonly RegionMember[]): Uint8Array<ArrayBuffer> | null {
    const f = this.f, region = this.region;
    try {
      f.open(Op.Block, 'out');
      f.open(Op.Loop, 'dispatch');
      if (region) {
        for (let j = members.length - 1; j >= 0; j--) f.open(Op.Block, `m${j}`);
        f.get(this.cur).brTable(members.map((_, j) => `m${j}`), 'out');
      }
      // Every path through a member ends in a branch (to another member or out).
      for (const member of members) {
        if (region) f.close();
        this.compileMember(member);
      }
      f.close();
      f.close();
    } catch (e) {
      if (e === NOT_TRANSLATABLE) return null;
      throw e;
    }
    this.epilogue();
    f.prefix = this.prologue();
    return region ? regionModuleBytes(f, members.length) : blockModuleBytes(f);
  }

  /**
   * One member: the budget check at its entry, instructions 0..n-2 (or
   * n-1), then the closing branch or fall-through. It starts with the flags
   * as whatever came before left them (the state 'entry').
   */
  private compileMember(member: RegionMember): void {
    const f = this.f, block = member.block, items = block.items, n = items.length;
    this.member = member;
    this.pending = 'entry';
    this.usePlan(member.groups);
    const last = items[n - 1];
    const next = last.lo + last.insn.len;
    const { closing, runsLast, selfLoop } = member;
    // No room in the budget for the whole block: leave before it (the run loop takes over at its start).
    f.get(this.ic).tee(this.ic0).f64(n).op(Op.F64Add).get(this.limit).op(Op.F64Gt);
    f.open(Op.If, 'full');
    f.i32(-1).set(this.lastId).i32(block.lo | 0).set(this.ripv).i32(-1).set(this.retv).br('out');
    f.close();
    if (selfLoop) f.open(Op.Loop, 'top');
    const compiled = this.count = closing !== null || !runsLast ? n - 1 : n;
    for (let k = 0; k < compiled; k++) {
      this.k = k;
      const { insn, lo } = items[k];
      this.compile(insn, lo + insn.len, block.hi);
    }
    this.k = n - 1;
    if (closing === null && !runsLast) {
      this.stop(); // the last instruction runs by its handler
    } else if (closing === null) {
      this.leave(n, 1, next);
    } else if (closing.kind === 'ret') {
      this.ret(n);
    } else {
      if (closing.kind === 'call') this.push(next, block.hi);
      const taken = (): void => {
        if (selfLoop) {
          // A pass retires here; another follows (flags as this one left them) when the budget has room for it.
          this.exitFlags();
          this.retire(n);
          this.pending = 'entry';
          f.get(this.ic).f64(n).op(Op.F64Add).get(this.limit).op(Op.F64Le).brIf('top');
          this.leave(0, 0, closing.taken);
        } else this.leave(n, 0, closing.taken);
      };
      if (closing.cc === 0) taken();
      else {
        this.conditionNow(closing.cc);
        f.open(Op.If, 'taken');
        const before = this.pending;
        taken();
        this.pending = before;
        f.close();
        this.leave(n, 1, next);
      }
    }
    if (selfLoop) f.close();
  }

  /** A CALL's push of its return address (the probe may stop before the CALL, which then changes nothing). */
  private push(retLo: number, retHi: number): void {
    const f = this.f, sp = this.reg(RSP);
    f.get(sp).i64(8).op(Op.I64Sub).set(this.ea);
    this.probe(8, true);
    f.get(this.addr).i64(retLo, retHi).mem(Op.I64Store, 0);
    f.get(this.ea);
    this.setReg(RSP, 8);
  }

  /**
   * A RET of `n`-th instruction: pop the target and leave for it, to the
   * block the exit was last linked to when the target is the one it was
   * linked for (links word 2), else -1. A target in another 4 GiB stops
   * before the RET (its handler checks it).
   */
  private ret(n: number): void {
    const f = this.f, member = this.member, sp = this.reg(RSP);
    f.get(sp).set(this.ea);
    this.probe(8, false);
    f.get(this.addr).mem(Op.I64Load, 0).set(this.m);
    f.get(this.m).i64(32).op(Op.I64ShrU, Op.I32WrapI64).i32(this.member.block.hi | 0).op(Op.I32Ne);
    f.open(Op.If, 'far');
    this.stop();
    f.close();
    f.get(sp).i64(8).op(Op.I64Add);
    this.setReg(RSP, 8);
    this.exitFlags();
    this.retire(n);
    this.ringEntry(true);
    f.i32(member.place.id).set(this.lastId).get(this.m).op(Op.I32WrapI64).set(this.ripv).i32(0).set(this.exitv);
    f.i32(0).mem(Op.I32Load, member.place.links).i32(-1);
    f.get(this.ripv).i32(0).mem(Op.I32Load, member.place.links + 8).op(Op.I32Eq, Op.Select).set(this.retv).br('out');
  }

  /** Entry: the state the code works on, from the arena. */
  private prologue(): number[] {
    const p = new FunctionBody([]), at = this.layout.regAddress;
    p.i32(0).mem(Op.F64Load, at + WORD.icount).set(this.ic);
    p.i32(0).mem(Op.F64Load, at + WORD.limit).set(this.limit);
    p.i32(0).mem(Op.I32Load, at + WORD.rflags).set(this.fl);
    p.i32(0).mem(Op.I32Load, at + WORD.hash).set(this.h);
    p.i32(0).mem(Op.I32Load, at + WORD.entries).set(this.entries);
    p.i32(0).mem(Op.I32Load, at + WORD.pendingKind).tee(this.pk);
    p.open(Op.If, 'pending');
    p.i32(0).mem(Op.I64Load, at + WORD.pendingA).set(this.fa);
    p.i32(0).mem(Op.I64Load, at + WORD.pendingB).set(this.fb);
    p.i32(0).mem(Op.I64Load, at + WORD.pendingResult).set(this.fr);
    p.i32(0).mem(Op.I32Load, at + WORD.pendingCarry).set(this.fc);
    p.close();
    for (const r of [...this.used].sort((a, b) => a - b)) p.i32(0).mem(Op.I64Load, at + WORD.reg64 + 8 * r).set(this.regs[r]);
    return p.code;
  }

  /** The pending flags (kind pk, nonzero) into the arena. */
  private storePending(): void {
    const f = this.f, at = this.layout.regAddress;
    f.i32(0).get(this.pk).mem(Op.I32Store, at + WORD.pendingKind);
    f.i32(0).get(this.fa).mem(Op.I64Store, at + WORD.pendingA);
    f.i32(0).get(this.fb).mem(Op.I64Store, at + WORD.pendingB);
    f.i32(0).get(this.fr).mem(Op.I64Store, at + WORD.pendingResult);
    f.i32(0).get(this.fc).mem(Op.I32Store, at + WORD.pendingCarry);
  }

  /** The one way out: the state back into the arena, what the back end reads (see WORD), the return value. */
  private epilogue(): void {
    const f = this.f, at = this.layout.regAddress;
    for (const r of [...this.written].sort((a, b) => a - b)) f.i32(0).get(this.regs[r]).mem(Op.I64Store, at + WORD.reg64 + 8 * r);
    f.i32(0).get(this.fl).mem(Op.I32Store, at + WORD.rflags);
    f.i32(0).get(this.pk).mem(Op.I32Store, at + WORD.pendingKind);
    f.get(this.pk);
    f.open(Op.If, 'pending');
    this.storePending();
    f.close();
    f.i32(0).get(this.h).mem(Op.I32Store, at + WORD.hash);
    f.i32(0).get(this.ic).mem(Op.F64Store, at + WORD.icount);
    f.i32(0).get(this.entries).mem(Op.I32Store, at + WORD.entries);
    f.i32(0).get(this.lastId).mem(Op.I32Store, at + WORD.lastBlock);
    f.i32(0).get(this.ripv).mem(Op.I32Store, at + WORD.rip);
    f.i32(0).get(this.exitv).mem(Op.I32Store, at + WORD.exit);
    f.i32(0).get(this.stopv).mem(Op.I32Store, at + WORD.stopAt);
    f.get(this.retv);
  }
}

/**
 * Memory operands at [base + disp] with the same base register, unchanged in
 * between, share one TLB probe (at the first of them): an access group. Its
 * bytes (span from the lowest displacement dmin) must lie in one page; locals
 * qr/qw then hold the arena addresses of base + dmin for reading and writing
 * (-1 where the probe found no direct page: members then probe on their own).
 * Nothing in a compiled block changes the TLB, so what the first member found
 * holds for the rest.
 */
export interface AccessGroup { id: number; first: boolean; dmin: number; span: number; qr: number; qw: number }

/** Groups of two or more accesses from what a compilation saw (seenAccess, seenWrites). */
function planGroups(n: number, accesses: readonly ({ base: number; disp: number } | null)[], writes: readonly (Set<number> | undefined)[]): (AccessGroup | null)[] {
  const out: (AccessGroup | null)[] = new Array<AccessGroup | null>(n).fill(null);
  const open = new Map<number, number[]>();
  let nextId = 0;
  const spanOf = (ks: readonly number[]): number => {
    const ds = ks.map((k) => accesses[k]!.disp);
    return Math.max(...ds) + 8 - Math.min(...ds);
  };
  const close = (base: number): void => {
    const members = open.get(base);
    open.delete(base);
    if (members === undefined || members.length < 2) return;
    const id = nextId++, dmin = Math.min(...members.map((k) => accesses[k]!.disp)), span = spanOf(members);
    members.forEach((k, j) => { out[k] = { id, first: j === 0, dmin, span, qr: -1, qw: -1 }; });
  };
  for (let k = 0; k < n; k++) {
    const a = accesses[k];
    if (a !== null && a !== undefined) {
      let members = open.get(a.base);
      if (members !== undefined && spanOf([...members, k]) > 4096) {
        close(a.base);
        members = undefined;
      }
      if (members === undefined) open.set(a.base, (members = []));
      members.push(k);
    }
    for (const r of writes[k] ?? []) close(r);
  }
  for (const base of [...open.keys()]) close(base);
  return out;
}

/**
 * A closing Jcc (cc 1..16), JMP or CALL (cc 0) and the low half of its
 * target, or a RET (its target is the one it pops: `taken` -1).
 */
export interface Closing { taken: number; cc: number; kind: 'jump' | 'call' | 'ret' }

/**
 * The closing branch the function decides itself: a Jcc/JMP rel or a 64-bit
 * CALL rel32 whose target stays in the block's 4 GiB, or a 64-bit RET.
 */
export function closingBranch(i: Insn, nextLo: number): Closing | null {
  if (i.code === Code.Retnq) return { taken: -1, cc: 0, kind: 'ret' };
  const call = i.code === Code.Call_rel32_64;
  if (i.k0 !== Operand.Imm || !((JCC.has(i.mnemonic) && i.cc >= 1 && i.cc <= 16) || i.mnemonic === Mnemonic.Jmp || call)) return null;
  const t = nextLo + i.rel;
  if (t < 0 || t > 0xffffffff) return null;
  return { taken: t, cc: JCC.has(i.mnemonic) ? i.cc : 0, kind: call ? 'call' : 'jump' };
}

/**
 * What a block is as a member of a region, decided by compiling it on its
 * own (the code is thrown away), or null when one of its instructions (other
 * than the last) has no WebAssembly form. `count`: the instructions it runs
 * itself (the last one may be left to its handler).
 */
export function planBlock(block: Block, layout: ArenaLayout, place: BlockPlace, hash: { pow: Int32Array; sum: Int32Array }, selfLoop: boolean):
  { count: number; member: RegionMember } | null {
  const items = block.items, n = items.length;
  const last = items[n - 1];
  if (last.lo + last.insn.len > 0xffffffff) return null;
  const closing = closingBranch(last.insn, last.lo + last.insn.len);
  const member: RegionMember = { block, place, hash, selfLoop: selfLoop && closing?.kind === 'jump', closing, runsLast: closing === null, groups: [], intra: [-1, -1] };
  // A first compilation shows the memory operands and register writes (and whether the last instruction has a form).
  let survey = new BlockCompiler(layout, false);
  if (survey.build([member]) === null) {
    if (!member.runsLast) return null;
    member.runsLast = false;
    survey = new BlockCompiler(layout, false);
    if (survey.build([member]) === null) return null;
  }
  member.groups = planGroups(n, survey.seenAccess, survey.seenWrites);
  return { count: survey.count, member };
}

/**
 * The module for blocks planned by planBlock: one block's function (() ->
 * i32, export `f`), or a region of several, compiled blocks of one code page
 * in one function whose exits to each other (RegionMember.intra) are
 * branches inside it, so that the registers, flags and counts stay in
 * locals from block to block (exports `e<j>`, see regionModuleBytes).
 */
export function compileRegion(members: readonly RegionMember[], layout: ArenaLayout): Uint8Array<ArrayBuffer> | null {
  return new BlockCompiler(layout, members.length > 1).build(members);
}

/**
 * The dispatcher's body, run(id): the registers into their int64 copies,
 * block `id` and each block it returns (through the table) until one returns
 * a negative number, the registers back, that number.
 */
export function dispatcherBody(layout: ArenaLayout): FunctionBody {
  const f = new FunctionBody([ValType.I32]), at = layout.regAddress;
  const id = 0;
  for (let r = 0; r < 16; r++) {
    f.i32(0).i32(0).mem(Op.I64Load32U, at + WORD.regLo + 4 * r).i32(0).mem(Op.I64Load32U, at + WORD.regHi + 4 * r).i64(32).op(Op.I64Shl, Op.I64Or);
    f.mem(Op.I64Store, at + WORD.reg64 + 8 * r);
  }
  f.open(Op.Block, 'out');
  f.open(Op.Loop, 'next');
  f.get(id).op(Op.CallIndirect, 0, 0).tee(id).i32(0).op(Op.I32LtS).brIf('out');
  f.br('next');
  f.close();
  f.close();
  for (let r = 0; r < 16; r++) {
    f.i32(0).i32(0).mem(Op.I64Load, at + WORD.reg64 + 8 * r).mem(Op.I64Store32, at + WORD.regLo + 4 * r);
    f.i32(0).i32(0).mem(Op.I64Load, at + WORD.reg64 + 8 * r).i64(32).op(Op.I64ShrU).mem(Op.I64Store32, at + WORD.regHi + 4 * r);
  }
  f.op(Op.Call, 1); // settle: JavaScript reads RFLAGS as it is
  f.get(id);
  return f;
}
