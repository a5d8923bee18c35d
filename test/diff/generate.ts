/*
 * Case generator for the differential tests: instructions encoded with
 * iced-x86, inputs biased towards edges, deterministic from a seed.
 *
 * Most families are driven by iced `Code` names: the operand pattern in the
 * name (`Add_rm64_imm8`, `Shld_rm16_r16_CL`, `VEX_Bzhi_r32_rm32_r32`) says what
 * to create. Memory operands always point into the scratch window through a
 * base and/or index register (64- or 32-bit addressing). Families that need
 * more than that (strings, LEA, the accumulator conversions, flag operations)
 * have their own builders.
 */
import { Code, Encoder, Instruction, MemoryOperand, Register, RepPrefixKind, RflagsBits } from 'iced-x86';
import { SCRATCH, type DiffInput } from './native.js';

// ---------------------------------------------------------------------------
// Cases

export interface DiffCase extends DiffInput {
  family: string;
  /** EFLAGS bits (architectural positions) the instruction leaves undefined. */
  undefFlags: number;
  /** Registers (bit per number) whose result is vendor-undefined on this host: not compared. */
  skipRegs: number;
  /** Memory result vendor-undefined on this host: not compared. */
  skipMem: boolean;
  /** Registers the instruction reads or writes (reports show their inputs). */
  usedRegs: number;
  /** Scratch offset and size of the memory operand, -1 if none (reports). */
  memOff: number;
  memBytes: number;
  note: string;
  /** 32: 32-bit code (compatibility mode on the host, protected mode in bzemu); default 64-bit code. */
  bits?: 32;
}

/** Window of the scratch area that each case initialises (offset from SCRATCH). */
export const WIN_OFF = 0x7f00;
export const WIN_LEN = 0x200;
/** RSP value handed to both sides (never used: rsp-touching forms are not generated). */
export const RSP_VALUE = 0x1c0000n;

/** Map iced RflagsBits to EFLAGS bit positions. */
export function icedFlagsToEflags(f: number): number {
  let e = 0;
  if (f & RflagsBits.OF) e |= 0x800;
  if (f & RflagsBits.SF) e |= 0x80;
  if (f & RflagsBits.ZF) e |= 0x40;
  if (f & RflagsBits.AF) e |= 0x10;
  if (f & RflagsBits.CF) e |= 0x1;
  if (f & RflagsBits.PF) e |= 0x4;
  if (f & RflagsBits.DF) e |= 0x400;
  return e;
}

// ---------------------------------------------------------------------------
// Deterministic PRNG (xoshiro128**)

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number, salt: string) {
    let h = (seed ^ 0x9e3779b9) >>> 0;
    for (let k = 0; k < salt.length; k++) h = Math.imul(h ^ salt.charCodeAt(k), 0x01000193) >>> 0;
    const next = (): number => {
      h = (h + 0x9e3779b9) >>> 0;
      let z = h;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  u32(): number {
    const r = Math.imul(((Math.imul(this.b, 5) << 7) | (Math.imul(this.b, 5) >>> 25)), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = (this.d << 11) | (this.d >>> 21);
    return r;
  }

  /** Uniform in [0, n), n <= 2^32. */
  below(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)];
  }

  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  bits(n: number): bigint {
    return n >= 64 ? this.u64() : this.u64() & ((1n << BigInt(n)) - 1n);
  }
}

// ---------------------------------------------------------------------------
// Value biasing

function maskOf(bits: number): bigint {
  return (1n << BigInt(bits)) - 1n;
}

/** A `bits`-wide value, biased towards edges. */
export function edgeValue(g: Rng, bits: number): bigint {
  const mask = maskOf(bits);
  const sign = 1n << BigInt(bits - 1);
  const small = BigInt(g.below(64));
  switch (g.below(18)) {
    case 0: return 0n;
    case 1: return 1n;
    case 2: return mask;
    case 3: return sign;
    case 4: return sign - 1n;
    case 5: return sign + 1n;
    case 6: return mask - 1n;
    case 7: return 2n;
    case 8: return 1n << BigInt(g.below(bits));
    case 9: return mask ^ (1n << BigInt(g.below(bits)));
    case 10: return small;
    case 11: return (mask - small) & mask;
    case 12: return maskOf(g.below(bits) + 1);
    case 13: return (sign - small) & mask;
    case 14: return (sign + small) & mask;
    case 15: return g.bits(bits) & g.bits(bits) & mask; // sparse
    default: return g.bits(bits);
  }
}

/** Fill for the bits of a register above an operand of `bits` width. */
function upperFill(g: Rng, bits: number): bigint {
  if (bits >= 64) return 0n;
  const r = g.below(10);
  const upper = r < 6 ? g.u64() : r < 8 ? 0n : ~0n;
  return BigInt.asUintN(64, upper & ~maskOf(bits));
}

/** Shift/rotate counts: 0, 1, width-1, width, 31, 32, 63, 64 and friends. */
export function countValue(g: Rng, bits: number): number {
  if (g.chance(0.2)) return g.below(256);
  return g.pick([0, 1, 2, 3, bits - 1, bits, bits + 1, bits / 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 96, 200]) & 0xff;
}

/** Random arithmetic flags (and DF with probability `df`), bit 1 set. */
export function randomFlags(g: Rng, df = 0.25): number {
  return (g.u32() & 0x8d5) | 2 | (g.chance(df) ? 0x400 : 0);
}

// ---------------------------------------------------------------------------
// Registers

const GPRS = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]; // no rsp

function icedReg(index: number, bits: number, high: boolean): Register {
  switch (bits) {
    case 64: return Register.RAX + index;
    case 32: return Register.EAX + index;
    case 16: return Register.AX + index;
    default:
      if (high) return Register.AH + index;
      return index < 4 ? Register.AL + index : Register.SPL + (index - 4);
  }
}

// ---------------------------------------------------------------------------
// Generic builder from Code names

type Token =
  | { t: 'r'; bits: number }
  | { t: 'rm'; bits: number }
  | { t: 'm'; bits: number }
  | { t: 'imm'; bits: number }
  | { t: 'fixed'; reg: number; bits: number } // AL/AX/EAX/RAX/CL
  | { t: 'one' };

function parseTokens(name: string): Token[] {
  const parts = name.replace(/^VEX_/, '').split('_').slice(1);
  const out: Token[] = [];
  for (const p of parts) {
    let m: RegExpExecArray | null;
    if ((m = /^r(8|16|32|64)$/.exec(p))) out.push({ t: 'r', bits: Number(m[1]) });
    else if ((m = /^rm(8|16|32|64)$/.exec(p))) out.push({ t: 'rm', bits: Number(m[1]) });
    else if (p === 'm') out.push({ t: 'm', bits: 0 });
    else if ((m = /^m(8|16|32|64)$/.exec(p))) out.push({ t: 'm', bits: Number(m[1]) });
    else if ((m = /^imm(8|16|32|64)$/.exec(p))) out.push({ t: 'imm', bits: Number(m[1]) });
    else if (p === 'AL') out.push({ t: 'fixed', reg: 0, bits: 8 });
    else if (p === 'AX') out.push({ t: 'fixed', reg: 0, bits: 16 });
    else if (p === 'EAX') out.push({ t: 'fixed', reg: 0, bits: 32 });
    else if (p === 'RAX') out.push({ t: 'fixed', reg: 0, bits: 64 });
    else if (p === 'CL') out.push({ t: 'fixed', reg: 1, bits: 8 });
    else if (p === '1') out.push({ t: 'one' });
    // anything else (F6r1, F7r1) names an encoding variant, not an operand
  }
  return out;
}

/** An operand of a built instruction, for hooks. */
export type Op =
  | { kind: 'reg'; reg: number; bits: number; high: boolean }
  | { kind: 'mem'; bits: number; off: number }
  | { kind: 'imm'; bits: number; value: number };

/** Instruction under construction: operands chosen, values being assigned. */
export class Ctx {
  regs: bigint[];
  rflags: number;
  window: Uint8Array;
  ops: Op[] = [];
  usedRegs = 0;
  skipRegs = 0;
  skipMem = false;
  extraUndef = 0;
  memOff = -1;
  memBytes = 0;
  note = '';

  constructor(readonly g: Rng, readonly name: string) {
    this.regs = Array.from({ length: 16 }, () => g.u64());
    this.regs[4] = RSP_VALUE;
    this.rflags = randomFlags(g);
    this.window = randomWindow(g);
  }

  /** Current value of operand k (zero-extended). */
  get(k: number): bigint {
    const op = this.ops[k];
    if (op.kind === 'imm') return BigInt(op.value);
    if (op.kind === 'reg') return this.getReg(op.reg, op.bits, op.high);
    let v = 0n;
    for (let b = op.bits / 8 - 1; b >= 0; b--) v = (v << 8n) | BigInt(this.window[op.off - WIN_OFF + b]);
    return v;
  }

  /** Set operand k (registers keep or bias their upper bits, see upperFill). */
  set(k: number, value: bigint, upper = true): void {
    const op = this.ops[k];
    if (op.kind === 'reg') this.setReg(op.reg, op.bits, op.high, value, upper);
    else if (op.kind === 'mem') this.setMem(op.off, op.bits / 8, value);
    else throw new Error('cannot set an immediate after encoding');
  }

  getReg(reg: number, bits: number, high = false): bigint {
    if (high) return (this.regs[reg] >> 8n) & 0xffn;
    return this.regs[reg] & maskOf(bits);
  }

  setReg(reg: number, bits: number, high: boolean, value: bigint, upper = true): void {
    if (high) {
      this.regs[reg] = (this.regs[reg] & ~0xff00n) | ((value & 0xffn) << 8n);
      return;
    }
    const low = value & maskOf(bits);
    const rest = upper ? upperFill(this.g, bits) : this.regs[reg] & ~maskOf(bits) & maskOf(64);
    this.regs[reg] = BigInt.asUintN(64, rest | low);
  }

  setMem(off: number, bytes: number, value: bigint): void {
    for (let b = 0; b < bytes; b++) this.window[off - WIN_OFF + b] = Number((value >> BigInt(8 * b)) & 0xffn);
  }

  use(reg: number): void {
    this.usedRegs |= 1 << reg;
  }
}

/** Window contents: random bytes, sometimes with runs of equal bytes. */
function randomWindow(g: Rng): Uint8Array {
  const w = new Uint8Array(WIN_LEN);
  const mode = g.below(4);
  for (let k = 0; k < WIN_LEN; k += 4) {
    const v = mode === 0 ? g.pick([0, 0xffffffff, 0x80808080, 0x01010101]) : g.u32();
    w[k] = v;
    w[k + 1] = v >>> 8;
    w[k + 2] = v >>> 16;
    w[k + 3] = v >>> 24;
  }
  return w;
}

/**
 * A memory operand addressing `target` (absolute) through registers not in
 * `avoid`: 64-bit forms [b], [b+d], [b+i*s+d], [i*s+d], [d32], and with
 * probability `p32` 32-bit (0x67) forms whose registers carry garbage above
 * bit 31. Sets the base/index register values in ctx.
 */
export function makeMemory(ctx: Ctx, target: number, avoid: Set<number>, p32 = 0.2): MemoryOperand {
  const g = ctx.g;
  const free = GPRS.filter((r) => !avoid.has(r));
  const base = g.pick(free);
  const index = g.pick(free.filter((r) => r !== base));
  const scale = g.pick([1, 2, 4, 8]);
  const t = BigInt(target);
  // ES/CS/SS/DS overrides have no effect in 64-bit mode (FS/GS bases differ between host and bzemu: not used).
  const seg = g.chance(0.05) ? g.pick([Register.ES, Register.CS, Register.SS, Register.DS]) : Register.None;
  if (g.chance(p32)) {
    const disp = BigInt.asIntN(32, g.chance(0.5) ? BigInt(g.below(256) - 128) : BigInt(g.u32()));
    const useIndex = g.chance(0.6);
    const iv = useIndex ? BigInt(g.u32()) : 0n;
    const bv = BigInt.asUintN(32, t - iv * BigInt(scale) - disp);
    ctx.regs[base] = (BigInt(g.u32()) << 32n) | bv;
    ctx.use(base);
    if (useIndex) {
      ctx.regs[index] = (BigInt(g.u32()) << 32n) | iv;
      ctx.use(index);
    }
    const displSize = disp === 0n && g.chance(0.5) ? 0 : disp >= -128n && disp < 128n ? 1 : 4;
    return new MemoryOperand(Register.EAX + base, useIndex ? Register.EAX + index : Register.None, useIndex ? scale : 1, disp, displSize, false, seg);
  }
  switch (g.below(5)) {
    case 0:
      ctx.regs[base] = t;
      ctx.use(base);
      return new MemoryOperand(Register.RAX + base, Register.None, 1, 0n, 0, false, seg);
    case 1: {
      const disp = g.chance(0.5) ? BigInt(g.below(256) - 128) : BigInt.asIntN(32, BigInt(g.u32()));
      ctx.regs[base] = BigInt.asUintN(64, t - disp);
      ctx.use(base);
      return new MemoryOperand(Register.RAX + base, Register.None, 1, disp, disp >= -128n && disp < 128n ? 1 : 4, false, seg);
    }
    case 2: {
      const disp = g.chance(0.5) ? BigInt(g.below(256) - 128) : BigInt.asIntN(32, BigInt(g.u32()));
      const iv = g.chance(0.5) ? BigInt(g.below(4096) - 2048) : g.u64();
      ctx.regs[index] = BigInt.asUintN(64, iv);
      ctx.regs[base] = BigInt.asUintN(64, t - iv * BigInt(scale) - disp);
      ctx.use(base);
      ctx.use(index);
      return new MemoryOperand(Register.RAX + base, Register.RAX + index, scale, disp, disp >= -128n && disp < 128n ? 1 : 4, false, seg);
    }
    case 3: {
      const iv = BigInt(g.below(0x2000) - 0x1000);
      const disp = t - iv * BigInt(scale);
      ctx.regs[index] = BigInt.asUintN(64, iv);
      ctx.use(index);
      return new MemoryOperand(Register.None, Register.RAX + index, scale, disp, 4, false, seg);
    }
    default:
      return new MemoryOperand(Register.None, Register.None, 1, t, 4, false, seg);
  }
}

type Imm = { imm: number; signed: boolean; big?: bigint };
type Arg = Register | MemoryOperand | Imm;

function isMem(a: Arg): a is MemoryOperand {
  return a instanceof MemoryOperand;
}

function isImm(a: Arg): a is Imm {
  return typeof a === 'object' && !(a instanceof MemoryOperand);
}

/** Call the Instruction.create* that matches the operand kinds. */
export function createInstruction(code: Code, args: Arg[]): Instruction {
  const sig = args.map((a) => (isMem(a) ? 'M' : isImm(a) ? 'I' : 'R')).join('');
  const imm = args.find(isImm);
  const signed = imm?.signed ?? true;
  const R = (k: number): Register => args[k] as Register;
  const M = (k: number): MemoryOperand => args[k] as MemoryOperand;
  const I = (k: number): number => (args[k] as { imm: number }).imm;
  switch (sig) {
    case '': return Instruction.create(code);
    case 'R': return Instruction.createReg(code, R(0));
    case 'M': return Instruction.createMem(code, M(0));
    case 'RR': return Instruction.createRegReg(code, R(0), R(1));
    case 'RM': return Instruction.createRegMem(code, R(0), M(1));
    case 'MR': return Instruction.createMemReg(code, M(0), R(1));
    case 'RI':
      if (imm?.big !== undefined) return Instruction.createRegU64(code, R(0), imm.big);
      return signed ? Instruction.createRegI32(code, R(0), I(1)) : Instruction.createRegU32(code, R(0), I(1));
    case 'MI': return signed ? Instruction.createMemI32(code, M(0), I(1)) : Instruction.createMemU32(code, M(0), I(1));
    case 'RRR': return Instruction.createRegRegReg(code, R(0), R(1), R(2));
    case 'RRM': return Instruction.createRegRegMem(code, R(0), R(1), M(2));
    case 'RMR': return Instruction.createRegMemReg(code, R(0), M(1), R(2));
    case 'RRI': return signed ? Instruction.createRegRegI32(code, R(0), R(1), I(2)) : Instruction.createRegRegU32(code, R(0), R(1), I(2));
    case 'RMI': return signed ? Instruction.createRegMemI32(code, R(0), M(1), I(2)) : Instruction.createRegMemU32(code, R(0), M(1), I(2));
    case 'MRR': return Instruction.createMemRegReg(code, M(0), R(1), R(2));
    case 'MRI': return signed ? Instruction.createMemRegI32(code, M(0), R(1), I(2)) : Instruction.createMemRegU32(code, M(0), R(1), I(2));
    default: throw new Error(`no create for ${sig}`);
  }
}

/** Shared encoder. */
let encoder: Encoder | null = null;

/** Encode at `rip`; null when iced refuses (invalid register combination etc.). */
export function encode(instr: Instruction, rip: number): Uint8Array | null {
  encoder ??= new Encoder(64);
  try {
    encoder.encode(instr, BigInt(rip));
    return encoder.takeBuffer();
  } catch {
    encoder.free();
    encoder = null;
    return null;
  }
}

/** How a family fills immediates. */
export type ImmKind = 'signed' | 'count' | 'bitoff';

export interface GenericOptions {
  /** Probability that an rm operand is memory. */
  memProb?: number;
  /** Probability of 32-bit (0x67) addressing for memory operands. */
  p32?: number;
  imm?: ImmKind;
  /** Registers the instruction uses implicitly (mask), for reports. */
  implicit?: number;
  /** Adjust values after the default assignment (operand values, flags, skips). */
  tweak?: (ctx: Ctx, code: Code, name: string) => void;
  /** Memory operand offsets are aligned to this (default: any). */
  align?: number;
  /** Probability that two register operands are the same register. */
  sameReg?: number;
  /** Probability of a LOCK prefix when operand 0 is memory, and otherwise. */
  lockMem?: number;
  lockOther?: number;
  /** Register operands must differ from each other (and from the fixed ones). */
  distinct?: boolean;
}

function immediate(g: Rng, bits: number, kind: ImmKind, opBits: number): Imm {
  if (bits === 64) {
    const big = edgeValue(g, 64);
    return { imm: Number(big & 0xffffffffn), signed: false, big };
  }
  if (kind === 'count') return { imm: countValue(g, opBits), signed: false };
  if (kind === 'bitoff') return { imm: g.chance(0.6) ? g.below(opBits) : g.below(256), signed: false };
  const v = Number(BigInt.asIntN(bits, edgeValue(g, bits)));
  return { imm: v, signed: true };
}

/** Build one case for `code` (null if this attempt could not be encoded). */
export function buildGeneric(g: Rng, family: string, code: Code, rip: number, opt: GenericOptions): DiffCase | null {
  const name = Code[code] as string;
  const tokens = parseTokens(name);
  const ctx = new Ctx(g, name);
  const opBits = tokens.reduce((b, t) => (t.t === 'r' || t.t === 'rm' || t.t === 'fixed' ? Math.max(b, t.bits) : b), 0) || 64;
  // Decide memory operands (at most one) and registers.
  const memIdx = (() => {
    const cand = tokens.map((t, k) => (t.t === 'rm' || t.t === 'm' ? k : -1)).filter((k) => k >= 0);
    if (cand.length === 0) return -1;
    if (tokens[cand[0]].t === 'm') return cand[0];
    return g.chance(opt.memProb ?? 0.35) ? cand[g.below(cand.length)] : -1;
  })();
  const avoid = new Set<number>();
  for (const t of tokens) if (t.t === 'fixed') avoid.add(t.reg);
  // Registers of explicit operands.
  const regChoice: number[] = [];
  const highChoice: boolean[] = [];
  const explicitRegs = new Set<number>();
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if ((t.t === 'r' || t.t === 'rm') && k !== memIdx) {
      let reg: number;
      const prev = regChoice.filter((r) => r >= 0);
      if (!opt.distinct && prev.length > 0 && g.chance(opt.sameReg ?? 0.1)) reg = g.pick(prev);
      else {
        const pool = GPRS.filter((r) => !(opt.distinct && (explicitRegs.has(r) || avoid.has(r))));
        reg = g.pick(pool);
      }
      const high = t.bits === 8 && reg < 4 && g.chance(0.25);
      regChoice.push(reg);
      highChoice.push(high);
      explicitRegs.add(reg);
    } else {
      regChoice.push(-1);
      highChoice.push(false);
    }
  }
  // Memory operand.
  let mem: MemoryOperand | null = null;
  let memOff = -1;
  let memBits = 0;
  if (memIdx >= 0) {
    const memTok = tokens[memIdx];
    memBits = memTok.t === 'one' ? 0 : memTok.bits;
    const bytes = memBits / 8 || 1;
    const align = opt.align ?? 1;
    memOff = WIN_OFF + 64 + g.below(WIN_LEN - 128);
    if (align > 1 || g.chance(0.3)) memOff -= memOff % Math.max(align, bytes);
    const avoidMem = new Set([...avoid, ...explicitRegs]);
    for (let r = 0; r < 16; r++) if ((opt.implicit ?? 0) & (1 << r)) avoidMem.add(r);
    mem = makeMemory(ctx, SCRATCH + memOff, avoidMem, opt.p32 ?? 0.2);
    ctx.memOff = memOff;
    ctx.memBytes = bytes;
  }
  // Arguments.
  const args: Arg[] = [];
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    switch (t.t) {
      case 'r':
      case 'rm':
        if (k === memIdx) {
          args.push(mem!);
          ctx.ops.push({ kind: 'mem', bits: t.bits, off: memOff });
        } else {
          args.push(icedReg(regChoice[k], t.bits, highChoice[k]));
          ctx.ops.push({ kind: 'reg', reg: regChoice[k], bits: t.bits, high: highChoice[k] });
          ctx.use(regChoice[k]);
        }
        break;
      case 'm':
        args.push(mem!);
        ctx.ops.push({ kind: 'mem', bits: t.bits, off: memOff });
        break;
      case 'fixed':
        args.push(icedReg(t.reg, t.bits, false));
        ctx.ops.push({ kind: 'reg', reg: t.reg, bits: t.bits, high: false });
        ctx.use(t.reg);
        break;
      case 'one':
        args.push({ imm: 1, signed: true });
        ctx.ops.push({ kind: 'imm', bits: 8, value: 1 });
        break;
      case 'imm': {
        const im = immediate(g, t.bits, opt.imm ?? 'signed', opBits);
        args.push(im);
        ctx.ops.push({ kind: 'imm', bits: t.bits, value: im.imm });
        if (im.big !== undefined) ctx.note = `imm64=0x${im.big.toString(16)}`;
        break;
      }
    }
  }
  const instr = createInstruction(code, args);
  // LOCK: valid only on read-modify-write memory forms; elsewhere the host raises #UD.
  if (g.chance(memIdx === 0 ? opt.lockMem ?? 0.15 : opt.lockOther ?? 0.02)) instr.hasLockPrefix = true;
  const bytes = encode(instr, rip);
  const undef = instr.rflagsUndefined;
  instr.free();
  if (bytes === null) return null;
  // Values: explicit register and memory operands, biased to edges. Base and
  // index registers were set by makeMemory and are not operands.
  for (let k = 0; k < ctx.ops.length; k++) {
    const op = ctx.ops[k];
    if (op.kind === 'reg') ctx.set(k, edgeValue(g, op.bits));
    else if (op.kind === 'mem' && op.bits > 0) ctx.set(k, edgeValue(g, op.bits));
  }
  if (opt.implicit) ctx.usedRegs |= opt.implicit;
  opt.tweak?.(ctx, code, name);
  return finish(ctx, family, bytes, icedFlagsToEflags(undef) | ctx.extraUndef);
}

export function finish(ctx: Ctx, family: string, code: Uint8Array, undefFlags: number): DiffCase {
  return {
    family,
    code,
    regs: ctx.regs,
    rflags: ctx.rflags,
    winOff: WIN_OFF,
    window: ctx.window,
    undefFlags,
    skipRegs: ctx.skipRegs,
    skipMem: ctx.skipMem,
    usedRegs: ctx.usedRegs,
    memOff: ctx.memOff,
    memBytes: ctx.memBytes,
    note: ctx.note,
  };
}

/** All iced Codes whose name matches. */
export function codesMatching(re: RegExp): Code[] {
  const out: Code[] = [];
  for (const [name, value] of Object.entries(Code)) {
    if (typeof value === 'number' && re.test(name)) out.push(value);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Families

export interface GenEnv {
  /** Host is AuthenticAMD: vendor-undefined results are compared (bzemu models AMD). */
  amd: boolean;
}

export interface Family {
  name: string;
  /** /proc/cpuinfo flags the host needs for this family. */
  requires?: string[];
  /** Iced Codes covered (generic families), for the log. */
  codes?: Code[];
  make(g: Rng, rip: number): DiffCase | null;
}

/** A family over all Codes matching `re`, dropping Codes iced cannot encode in 64-bit mode. */
function generic(name: string, re: RegExp, opt: GenericOptions = {}, requires?: string[]): Family {
  const all = codesMatching(re);
  const probe = new Rng(1, `probe:${name}`);
  const codes = all.filter((code) => {
    for (let k = 0; k < 12; k++) if (buildGeneric(probe, name, code, 0x1000, opt) !== null) return true;
    return false;
  });
  if (codes.length === 0) throw new Error(`family ${name}: no encodable codes for ${re}`);
  return { name, requires, codes, make: (g, rip) => buildGeneric(g, name, g.pick(codes), rip, opt) };
}

const RAX_RDX = 0b101;

function opBitsOf(ctx: Ctx): number {
  const op = ctx.ops[0];
  return op.kind === 'imm' ? 64 : op.bits;
}

/** The count operand (CL or imm8) of a shift: set CL to a biased count; return the count. */
function shiftCount(ctx: Ctx, name: string, bits: number): number {
  const last = ctx.ops.length - 1;
  const op = ctx.ops[last];
  if (name.endsWith('_CL')) {
    const c = countValue(ctx.g, bits);
    ctx.set(last, BigInt(c));
    return c;
  }
  if (op.kind === 'imm') return op.value & 0xff;
  return 1;
}

/**
 * Flags the SDM leaves undefined for a shift/rotate count that iced's static
 * table does not capture: OF for any masked count other than 1, and CF for
 * SHL/SHR counts at least the operand width (8/16-bit).
 */
function shiftUndef(ctx: Ctx, name: string, count: number): void {
  const bits = opBitsOf(ctx);
  const masked = count & (bits === 64 ? 63 : 31);
  if (masked > 1) ctx.extraUndef |= 0x800;
  if (/^(Shl|Sal|Shr)_/.test(name) && masked >= bits) ctx.extraUndef |= 0x1;
}

/** Skip the destination (operand 0) and all arithmetic flags: vendor-undefined on this host. */
function skipDest(ctx: Ctx, why: string): void {
  const op = ctx.ops[0];
  if (op.kind === 'reg') ctx.skipRegs |= 1 << op.reg;
  else ctx.skipMem = true;
  ctx.note = why;
}

function biasedDividend(ctx: Ctx, signed: boolean): void {
  const g = ctx.g;
  const bits = opBitsOf(ctx);
  const op = ctx.ops[0];
  if (op.kind === 'reg' && (op.reg === 0 || op.reg === 2)) return; // divisor is part of the dividend: leave it random
  const B = BigInt(bits);
  const d = ctx.get(0);
  let n: bigint; // dividend, 2*bits wide, unsigned representation
  const mode = g.below(10);
  if (!signed) {
    const lo = edgeValue(g, bits);
    const hi = mode < 6 && d > 0n ? g.bits(bits) % d : mode < 8 ? 0n : edgeValue(g, bits);
    n = (hi << B) | lo;
  } else {
    const ds = BigInt.asIntN(bits, d);
    if (mode < 4 || ds === 0n) n = BigInt.asUintN(2 * bits, BigInt.asIntN(bits, edgeValue(g, bits)));
    else if (mode < 8) {
      const q = BigInt.asIntN(bits, edgeValue(g, bits));
      const ad = ds < 0n ? -ds : ds;
      const prod = q * ds;
      let r = g.bits(bits) % ad;
      if (prod < 0n) r = -r;
      n = BigInt.asUintN(2 * bits, prod + r);
    } else n = g.chance(0.5) ? g.bits(2 * bits) : BigInt.asUintN(2 * bits, -(1n << BigInt(2 * bits - 1)) + BigInt(g.below(3)));
  }
  if (bits === 8) ctx.setReg(0, 16, false, n);
  else {
    ctx.setReg(0, bits, false, n & maskOf(bits));
    ctx.setReg(2, bits, false, n >> B);
  }
}

/** Bit offset for BT* with a memory operand and register offset: mostly inside the window, sometimes anywhere in scratch. */
function btMemOffset(ctx: Ctx, wide: number): void {
  const g = ctx.g;
  const op = ctx.ops[0];
  if (op.kind !== 'mem' || ctx.ops[1].kind !== 'reg') return;
  const bits = op.bits;
  const bytes = bits / 8;
  let lo: number, hi: number; // byte delta range
  if (g.chance(wide)) {
    lo = -(op.off - 8);
    hi = 0x10000 - op.off - 16;
  } else {
    lo = -(op.off - WIN_OFF);
    hi = WIN_OFF + WIN_LEN - op.off - bytes;
  }
  if (bits === 16) {
    lo = Math.max(lo, -4096);
    hi = Math.min(hi, 4095);
  }
  const byteDelta = lo + g.below(hi - lo);
  const offset = byteDelta * 8 + g.below(8);
  ctx.set(1, BigInt.asUintN(64, BigInt(offset)));
}

function zeroSometimes(ctx: Ctx, k: number, p: number): boolean {
  if (ctx.g.chance(p)) ctx.set(k, 0n);
  return ctx.get(k) === 0n;
}

/** BEXTR control: start in bits 0..7, length in 8..15, garbage above. */
function bextrControl(g: Rng, bits: number): bigint {
  const pickField = (): number => (g.chance(0.25) ? g.below(256) : g.pick([0, 1, 2, 7, 8, 15, 16, 17, 31, 32, 33, bits - 1, bits, bits + 1, 63, 64, 65, 127, 128, 255]));
  const start = pickField(), len = pickField();
  const garbage = g.chance(0.5) ? g.u64() & ~0xffffn : 0n;
  return BigInt.asUintN(64, garbage | BigInt(start) | (BigInt(len) << 8n));
}

export function families(env: GenEnv): Family[] {
  const arith = (m: string): RegExp => new RegExp(`^${m}_(?!.*_82$)`);
  const list: Family[] = [
    generic('add', arith('Add')),
    generic('adc', arith('Adc')),
    generic('sub', arith('Sub')),
    generic('sbb', arith('Sbb')),
    generic('cmp', arith('Cmp')),
    generic('inc-dec', /^(Inc|Dec)_rm/),
    generic('neg', /^Neg_/),
    generic('not', /^Not_/),
    generic('and-or-xor', /^(And|Or|Xor)_(?!.*_82$)/),
    generic('test', /^Test_/),
    generic('shl-shr-sar', /^(Shl|Sal|Shr|Sar)_rm/, { imm: 'count', tweak: (ctx, _c, name) => shiftUndef(ctx, name, shiftCount(ctx, name, opBitsOf(ctx))) }),
    generic('rol-ror', /^(Rol|Ror)_rm/, { imm: 'count', tweak: (ctx, _c, name) => shiftUndef(ctx, name, shiftCount(ctx, name, opBitsOf(ctx))) }),
    generic('rcl-rcr', /^(Rcl|Rcr)_rm/, { imm: 'count', tweak: (ctx, _c, name) => shiftUndef(ctx, name, shiftCount(ctx, name, opBitsOf(ctx))) }),
    generic('shld-shrd', /^(Shld|Shrd)_/, {
      imm: 'count',
      tweak: (ctx, _c, name) => {
        const bits = opBitsOf(ctx);
        const c = shiftCount(ctx, name, bits) & 31;
        shiftUndef(ctx, name, c);
        if (bits === 16 && c > 16 && !env.amd) {
          skipDest(ctx, `16-bit count ${c} > 16: result undefined`);
          ctx.extraUndef |= 0x8d5;
        }
      },
    }),
    generic('mul', /^Mul_/, { implicit: RAX_RDX, tweak: (ctx) => ctx.setReg(0, opBitsOf(ctx), false, edgeValue(ctx.g, opBitsOf(ctx))) }),
    generic('imul', /^Imul_/, {
      implicit: RAX_RDX,
      tweak: (ctx) => {
        if (ctx.ops.length === 1) ctx.setReg(0, opBitsOf(ctx), false, edgeValue(ctx.g, opBitsOf(ctx)));
      },
    }),
    generic('div', /^Div_/, { implicit: RAX_RDX, tweak: (ctx) => biasedDividend(ctx, false) }),
    generic('idiv', /^Idiv_/, { implicit: RAX_RDX, tweak: (ctx) => biasedDividend(ctx, true) }),
    generic('bt-bts-btr-btc', /^(Bt|Bts|Btr|Btc)_/, { imm: 'bitoff', tweak: (ctx) => btMemOffset(ctx, 0.1) }),
    generic('bt-mem-regoffset', /^(Bt|Bts|Btr|Btc)_rm(16|32|64)_r/, { memProb: 1, tweak: (ctx) => btMemOffset(ctx, 0.5) }),
    generic('bsf-bsr', /^(Bsf|Bsr)_/, {
      tweak: (ctx) => {
        if (zeroSometimes(ctx, 1, 0.25) && !env.amd) skipDest(ctx, 'zero source: destination undefined');
      },
    }),
    generic('tzcnt', /^Tzcnt_/, { tweak: (ctx) => void zeroSometimes(ctx, 1, 0.15) }, ['bmi1']),
    generic('lzcnt', /^Lzcnt_/, { tweak: (ctx) => void zeroSometimes(ctx, 1, 0.15) }, ['abm']),
    generic('popcnt', /^Popcnt_/, { tweak: (ctx) => void zeroSometimes(ctx, 1, 0.15) }, ['popcnt']),
    generic('bmi1', /^VEX_(Andn|Blsr|Blsi|Blsmsk|Bextr)_/, {
      tweak: (ctx, _c, name) => {
        if (name.startsWith('VEX_Bextr')) ctx.set(2, bextrControl(ctx.g, opBitsOf(ctx)), false);
        else if (ctx.g.chance(0.1)) ctx.set(ctx.ops.length - 1, 0n);
      },
    }, ['bmi1']),
    generic('bmi2', /^VEX_(Bzhi|Shlx|Shrx|Sarx|Rorx|Mulx)_/, {
      imm: 'count',
      implicit: 0b100,
      tweak: (ctx, _c, name) => {
        const bits = opBitsOf(ctx);
        if (name.startsWith('VEX_Mulx')) ctx.setReg(2, bits, false, edgeValue(ctx.g, bits));
        else if (!name.startsWith('VEX_Rorx')) {
          const garbage = ctx.g.chance(0.5) ? ctx.g.u64() & ~0xffn : 0n;
          ctx.set(2, BigInt.asUintN(64, garbage | BigInt(countValue(ctx.g, bits))), false);
        }
      },
    }, ['bmi2']),
    generic('setcc', /^Set(o|no|b|ae|e|ne|be|a|s|ns|p|np|l|ge|le|g)_rm8$/),
    generic('cmovcc', /^Cmov(o|no|b|ae|e|ne|be|a|s|ns|p|np|l|ge|le|g)_/),
    generic('movzx-movsx-movsxd', /^(Movzx|Movsx|Movsxd)_/),
    { name: 'lea', make: (g, rip) => leaCase(g, rip) },
    generic('mov', /^Mov_(r|rm)(8|16|32|64)_(r|rm|imm)(8|16|32|64)$/),
    generic('movbe', /^Movbe_/, {}, ['movbe']),
    generic('xchg', /^Xchg_/),
    generic('cmpxchg', /^Cmpxchg_rm/, {
      implicit: 0b1,
      tweak: (ctx) => {
        if (ctx.g.chance(0.5)) ctx.setReg(0, opBitsOf(ctx), false, ctx.get(0));
      },
    }),
    generic('xadd', /^Xadd_/),
    generic('bswap', /^Bswap_/, {
      tweak: (ctx) => {
        if (opBitsOf(ctx) === 16 && !env.amd) skipDest(ctx, '16-bit BSWAP: result undefined');
      },
    }),
    { name: 'cbw-cwd-family', make: (g, rip) => simpleCase(g, rip, 'cbw-cwd-family', [Code.Cbw, Code.Cwde, Code.Cdqe, Code.Cwd, Code.Cdq, Code.Cqo]) },
    { name: 'flag-ops', make: (g, rip) => simpleCase(g, rip, 'flag-ops', [Code.Clc, Code.Stc, Code.Cmc, Code.Cld, Code.Std, Code.Lahf, Code.Sahf]), requires: ['lahf_lm'] },
    { name: 'movs', make: (g, rip) => stringCase(g, rip, 'movs') },
    { name: 'stos', make: (g, rip) => stringCase(g, rip, 'stos') },
    { name: 'lods', make: (g, rip) => stringCase(g, rip, 'lods') },
    { name: 'cmps', make: (g, rip) => stringCase(g, rip, 'cmps') },
    { name: 'scas', make: (g, rip) => stringCase(g, rip, 'scas') },
  ];
  return list;
}

/** Generate `count` cases of a family, deterministically from `seed`. */
export function generateFamily(f: Family, seed: number, count: number, rip: number): DiffCase[] {
  const g = new Rng(seed, f.name);
  const out: DiffCase[] = [];
  let failures = 0;
  while (out.length < count) {
    const c = f.make(g, rip);
    if (c) out.push(c);
    else if (++failures > 100 + count * 4) throw new Error(`family ${f.name}: too many unencodable attempts`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Custom builders

/** Accumulator conversions and flag operations: no explicit operands. */
function simpleCase(g: Rng, rip: number, family: string, codes: Code[]): DiffCase | null {
  const code = g.pick(codes);
  const ctx = new Ctx(g, Code[code] as string);
  ctx.rflags = randomFlags(g, 0.5);
  const bits = g.pick([8, 16, 32, 64]);
  ctx.setReg(0, bits, false, edgeValue(g, bits));
  if (g.chance(0.5)) ctx.setReg(0, 16, true, edgeValue(g, 8)); // AH for SAHF
  ctx.usedRegs = 0b101;
  const instr = Instruction.create(code);
  const bytes = encode(instr, rip);
  const undef = instr.rflagsUndefined;
  instr.free();
  return bytes && finish(ctx, family, bytes, icedFlagsToEflags(undef));
}

/** LEA with every addressing form, 16/32/64-bit destinations, 0x67 and RIP-relative forms. */
function leaCase(g: Rng, rip: number): DiffCase | null {
  const ctx = new Ctx(g, 'lea');
  const bits = g.pick([16, 32, 64]);
  const code = bits === 16 ? Code.Lea_r16_m : bits === 32 ? Code.Lea_r32_m : Code.Lea_r64_m;
  const dest = g.pick(GPRS);
  const addr32 = g.chance(0.35);
  const regOf = (r: number): Register => (addr32 ? Register.EAX + r : Register.RAX + r);
  let mem: MemoryOperand;
  const form = g.below(10);
  if (form === 0) {
    // RIP/EIP-relative: iced takes the absolute target.
    const disp = BigInt(g.chance(0.5) ? g.below(256) - 128 : g.u32() | 0);
    const target = addr32 ? BigInt.asUintN(32, BigInt(rip) + disp) : BigInt.asUintN(64, BigInt(rip) + disp);
    mem = new MemoryOperand(addr32 ? Register.EIP : Register.RIP, Register.None, 1, target, 4, false, Register.None);
  } else {
    const base = form === 1 ? -1 : g.pick(GPRS);
    const index = form === 2 ? -1 : g.pick(GPRS);
    const scale = g.pick([1, 2, 4, 8]);
    const disp = g.chance(0.2) ? 0n : g.chance(0.5) ? BigInt(g.below(256) - 128) : BigInt(g.u32() | 0);
    for (const r of [base, index]) if (r >= 0) {
      ctx.regs[r] = BigInt.asUintN(64, g.chance(0.5) ? edgeValue(g, 64) : g.u64());
      ctx.use(r);
    }
    const displSize = disp === 0n ? 0 : disp >= -128n && disp < 128n ? 1 : 4;
    mem = new MemoryOperand(base < 0 ? Register.None : regOf(base), index < 0 ? Register.None : regOf(index), index < 0 ? 1 : scale, disp, base < 0 ? 4 : displSize, false, Register.None);
  }
  ctx.use(dest);
  const instr = Instruction.createRegMem(code, icedReg(dest, bits, false), mem);
  const bytes = encode(instr, rip);
  instr.free();
  return bytes && finish(ctx, 'lea', bytes, 0);
}

type StringKind = 'movs' | 'stos' | 'lods' | 'cmps' | 'scas';

const STRING_CREATORS: Record<StringKind, Array<(addr: number, seg: Register, rep: RepPrefixKind) => Instruction>> = {
  movs: [
    (a, s, r) => Instruction.createMovsb(a, s, r), (a, s, r) => Instruction.createMovsw(a, s, r),
    (a, s, r) => Instruction.createMovsd(a, s, r), (a, s, r) => Instruction.createMovsq(a, s, r),
  ],
  stos: [
    (a, _s, r) => Instruction.createStosb(a, r), (a, _s, r) => Instruction.createStosw(a, r),
    (a, _s, r) => Instruction.createStosd(a, r), (a, _s, r) => Instruction.createStosq(a, r),
  ],
  lods: [
    (a, s, r) => Instruction.createLodsb(a, s, r), (a, s, r) => Instruction.createLodsw(a, s, r),
    (a, s, r) => Instruction.createLodsd(a, s, r), (a, s, r) => Instruction.createLodsq(a, s, r),
  ],
  cmps: [
    (a, s, r) => Instruction.createCmpsb(a, s, r), (a, s, r) => Instruction.createCmpsw(a, s, r),
    (a, s, r) => Instruction.createCmpsd(a, s, r), (a, s, r) => Instruction.createCmpsq(a, s, r),
  ],
  scas: [
    (a, _s, r) => Instruction.createScasb(a, r), (a, _s, r) => Instruction.createScasw(a, r),
    (a, _s, r) => Instruction.createScasd(a, r), (a, _s, r) => Instruction.createScasq(a, r),
  ],
};

/**
 * String instructions with and without REP/REPE/REPNE, both directions, 64-
 * and 32-bit addressing; RSI/RDI inside the window, small counts, runs of
 * equal elements so that REPE/REPNE stop early.
 */
function stringCase(g: Rng, rip: number, kind: StringKind): DiffCase | null {
  const sizeIdx = g.below(4);
  const size = 1 << sizeIdx;
  const bits = size * 8;
  const addr32 = g.chance(0.2);
  const compare = kind === 'cmps' || kind === 'scas';
  const r = g.below(20);
  const rep = compare
    ? (r < 6 ? RepPrefixKind.None : r < 13 ? RepPrefixKind.Repe : RepPrefixKind.Repne)
    : (r < 7 ? RepPrefixKind.None : r < 18 ? RepPrefixKind.Repe : RepPrefixKind.Repne);
  const seg = g.chance(0.15) ? g.pick([Register.ES, Register.CS, Register.SS, Register.DS]) : Register.None;
  const instr = STRING_CREATORS[kind][sizeIdx](addr32 ? 32 : 64, seg, rep);
  const code = encode(instr, rip);
  const undef = instr.rflagsUndefined;
  instr.free();
  if (code === null) return null;

  const ctx = new Ctx(g, kind);
  const back = g.chance(0.5);
  ctx.rflags = randomFlags(g, 0) | (back ? 0x400 : 0);
  const maxCount = Math.floor(160 / size);
  const count = rep === RepPrefixKind.None ? 1 : g.chance(0.1) ? 0 : g.chance(0.7) ? g.below(9) : g.below(maxCount + 1);
  const lo = WIN_OFF + 168, hi = WIN_OFF + WIN_LEN - 168;
  let src = lo + g.below(hi - lo);
  let dst = g.chance(0.3) ? Math.min(hi, Math.max(lo, src + g.below(49) - 24)) : lo + g.below(hi - lo);
  if (g.chance(0.5)) {
    src -= src % size;
    dst -= dst % size;
  }
  const upper = (): bigint => (addr32 ? BigInt(g.u32()) << 32n : 0n);
  ctx.regs[6] = upper() | BigInt(SCRATCH + src);
  ctx.regs[7] = upper() | BigInt(SCRATCH + dst);
  if (rep !== RepPrefixKind.None) ctx.regs[1] = upper() | BigInt(count);
  ctx.setReg(0, bits, false, edgeValue(g, bits));
  ctx.usedRegs = 0b11000011;

  // Equal runs for REPE/REPNE.
  const step = back ? -size : size;
  if (kind === 'cmps') {
    const k = g.below(count + 2);
    for (let j = 0; j < k; j++) {
      for (let b = 0; b < size; b++) ctx.window[dst - WIN_OFF + j * step + b] = ctx.window[src - WIN_OFF + j * step + b];
    }
  } else if (kind === 'scas' && g.chance(0.7)) {
    const v = ctx.getReg(0, bits);
    const k = g.below(count + 2);
    for (let j = 0; j < k; j++) ctx.setMem(dst + j * step, size, v);
    if (g.chance(0.3)) ctx.setMem(dst + g.below(count + 1) * step, size, v ^ 1n);
  }
  ctx.note = `rsi=+${(src - WIN_OFF).toString(16)} rdi=+${(dst - WIN_OFF).toString(16)} count=${count}${back ? ' DF=1' : ''}`;
  return finish(ctx, kind, code, icedFlagsToEflags(undef));
}
