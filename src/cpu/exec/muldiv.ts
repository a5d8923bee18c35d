import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { CF, OF } from '../flags.js';
import { RAX, RDX } from '../registers.js';
import { szp } from './flags-compute.js';
import type { Registry } from './table.js';

/** MUL/IMUL (all forms), DIV/IDIV with #DE, and MULX. */

/*
 * Products go into the CPU's productWords (W): the 128-bit product's words,
 * least significant first, in W[0..3], and a 32x32 product's high half in
 * W[4] (no allocation per instruction).
 */

/** Unsigned 32x32 -> 64, exact: returns the low 32 bits, high 32 bits in W[4]. */
function mul32(W: Uint32Array, a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const mid = ah * bl + al * bh; // < 2^33
  const low = al * bl + (mid % 65536) * 65536; // < 2^33
  const carry = low > 0xffffffff ? 1 : 0;
  W[4] = ah * bh + Math.floor(mid / 65536) + carry;
  return low >>> 0;
}

/** Unsigned 64x64 -> 128 into W, from four exact 32x32 products. */
function mulu64(W: Uint32Array, aLo: number, aHi: number, bLo: number, bHi: number): void {
  const p00 = mul32(W, aLo, bLo), p00h = W[4];
  const p01 = mul32(W, aLo, bHi), p01h = W[4];
  const p10 = mul32(W, aHi, bLo), p10h = W[4];
  const p11 = mul32(W, aHi, bHi), p11h = W[4];
  // Column sums below 2^35: exact in doubles.
  const c1 = p00h + p01 + p10;
  const c2 = p01h + p10h + p11 + Math.floor(c1 / 4294967296);
  const c3 = p11h + Math.floor(c2 / 4294967296);
  W[0] = p00;
  W[1] = c1 % 4294967296;
  W[2] = c2 % 4294967296;
  W[3] = c3;
}

/** Signed 64x64 -> 128: unsigned product corrected in the high half. */
function muls64(W: Uint32Array, aLo: number, aHi: number, bLo: number, bHi: number): void {
  mulu64(W, aLo, aHi, bLo, bHi);
  if (aHi >>> 31) subHigh(W, bLo, bHi);
  if (bHi >>> 31) subHigh(W, aLo, aHi);
}

function subHigh(W: Uint32Array, lo: number, hi: number): void {
  const l = W[2] - lo;
  W[2] = l;
  W[3] = W[3] - hi - (l < 0 ? 1 : 0);
}

function signExtend(v: number, size: number): number {
  return size === 1 ? (v << 24) >> 24 : size === 2 ? (v << 16) >> 16 : v | 0;
}

function mulFlags(cpu: Cpu, overflow: boolean, size: number, lo: number, hi: number): void {
  cpu.setArith((overflow ? CF | OF : 0) | szp(size, lo, hi));
}

/** MUL: unsigned, implicit accumulator. */
const mul: Handler = (cpu, i) => {
  const size = i.s0;
  const b = cpu.readOp(i, 0);
  const bHi = cpu.vHi;
  if (size === 1) {
    const r = (cpu.regLo[RAX] & 0xff) * b;
    cpu.setReg(RAX, 2, r, 0);
    mulFlags(cpu, r > 0xff, 1, r & 0xff, 0);
  } else if (size === 2) {
    const r = (cpu.regLo[RAX] & 0xffff) * b;
    cpu.setReg(RAX, 2, r & 0xffff, 0);
    cpu.setReg(RDX, 2, r >>> 16, 0);
    mulFlags(cpu, r > 0xffff, 2, r & 0xffff, 0);
  } else if (size === 4) {
    mulu64(cpu.productWords, cpu.regLo[RAX], 0, b, 0);
    const lo = cpu.productWords[0], hi = cpu.productWords[1];
    cpu.setReg(RAX, 4, lo, 0);
    cpu.setReg(RDX, 4, hi, 0);
    mulFlags(cpu, hi !== 0, 4, lo, 0);
  } else {
    mulu64(cpu.productWords, cpu.regLo[RAX], cpu.regHi[RAX], b, bHi);
    const w0 = cpu.productWords[0], w1 = cpu.productWords[1], w2 = cpu.productWords[2], w3 = cpu.productWords[3];
    cpu.setReg(RAX, 8, w0, w1);
    cpu.setReg(RDX, 8, w2, w3);
    mulFlags(cpu, (w2 | w3) !== 0, 8, w0, w1);
  }
};

/** Signed product of two operands of `size`, result truncated to `size` in rLo/rHi, flags set. */
function imulCore(cpu: Cpu, size: number, a: number, aHi: number, b: number, bHi: number): void {
  if (size === 8) {
    muls64(cpu.productWords, a, aHi, b, bHi);
    const lo = cpu.productWords[0], hi = cpu.productWords[1];
    const ext = hi >>> 31 ? 0xffffffff : 0;
    cpu.rLo = lo;
    cpu.rHi = hi;
    mulFlags(cpu, cpu.productWords[2] !== ext || cpu.productWords[3] !== ext, 8, lo, hi);
    return;
  }
  const sa = signExtend(a, size), sb = signExtend(b, size);
  if (size === 4) {
    muls64(cpu.productWords, sa >>> 0, sa < 0 ? 0xffffffff : 0, sb >>> 0, sb < 0 ? 0xffffffff : 0);
    const lo = cpu.productWords[0];
    const ext = lo >>> 31 ? 0xffffffff : 0;
    cpu.rLo = lo;
    cpu.rHi = cpu.productWords[1];
    mulFlags(cpu, cpu.productWords[1] !== ext, 4, lo, 0);
    return;
  }
  const p = sa * sb;
  const mask = size === 1 ? 0xff : 0xffff;
  const lo = p & mask;
  cpu.rLo = lo;
  cpu.rHi = (p >> (size * 8)) & mask;
  mulFlags(cpu, signExtend(lo, size) !== p, size, lo, 0);
}

/**
 * The flags of IMUL with a 64-bit operand size (as imulCore sets them, without
 * the result): CF = OF = the signed product does not fit in 64 bits.
 */
export function imul64Flags(cpu: Cpu, a: number, aHi: number, b: number, bHi: number): void {
  muls64(cpu.productWords, a, aHi, b, bHi);
  const lo = cpu.productWords[0], hi = cpu.productWords[1];
  const ext = hi >>> 31 ? 0xffffffff : 0;
  mulFlags(cpu, cpu.productWords[2] !== ext || cpu.productWords[3] !== ext, 8, lo, hi);
}

const imul: Handler = (cpu, i) => {
  const size = i.s0;
  if (i.opCount === 1) {
    const b = cpu.readOp(i, 0);
    const bHi = cpu.vHi;
    const a = cpu.regLo[RAX];
    const aHi = cpu.regHi[RAX];
    imulCore(cpu, size, size === 1 ? a & 0xff : size === 2 ? a & 0xffff : a, aHi, b, bHi);
    if (size === 1) cpu.setReg(RAX, 2, (cpu.rLo | (cpu.rHi << 8)) & 0xffff, 0);
    else if (size === 2) { cpu.setReg(RAX, 2, cpu.rLo, 0); cpu.setReg(RDX, 2, cpu.rHi, 0); }
    else if (size === 4) { cpu.setReg(RAX, 4, cpu.rLo, 0); cpu.setReg(RDX, 4, cpu.rHi, 0); }
    else { cpu.setReg(RAX, 8, cpu.productWords[0], cpu.productWords[1]); cpu.setReg(RDX, 8, cpu.productWords[2], cpu.productWords[3]); }
    return;
  }
  const srcA = i.opCount === 3 ? 1 : 0;
  const srcB = i.opCount === 3 ? 2 : 1;
  const a = cpu.readOp(i, srcA);
  const aHi = cpu.vHi;
  const b = cpu.readOp(i, srcB);
  const bHi = cpu.vHi;
  imulCore(cpu, size, a, aHi, b, bHi);
  cpu.setReg(i.r0, size, cpu.rLo, size === 8 ? cpu.rHi : 0);
};

/** MULX: unsigned RDX * src, no flags; high half to op0, low half to op1. */
const mulx: Handler = (cpu, i) => {
  const size = i.s0;
  const b = cpu.readOp(i, 2);
  const bHi = cpu.vHi;
  if (size === 8) {
    mulu64(cpu.productWords, cpu.regLo[RDX], cpu.regHi[RDX], b, bHi);
    const w0 = cpu.productWords[0], w1 = cpu.productWords[1], w2 = cpu.productWords[2], w3 = cpu.productWords[3];
    cpu.setReg(i.r1, 8, w0, w1);
    cpu.setReg(i.r0, 8, w2, w3);
  } else {
    mulu64(cpu.productWords, cpu.regLo[RDX], 0, b, 0);
    const lo = cpu.productWords[0], hi = cpu.productWords[1];
    cpu.setReg(i.r1, 4, lo, 0);
    cpu.setReg(i.r0, 4, hi, 0);
  }
};


function divide(signed: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const d = cpu.readOp(i, 0);
    const dHi = cpu.vHi;
    if (size === 1) {
      const n = cpu.regLo[RAX] & 0xffff;
      if ((d & 0xff) === 0) cpu.raise(0);
      const nn = signed ? (n << 16) >> 16 : n;
      const dd = signed ? signExtend(d, 1) : d;
      const q = Math.trunc(nn / dd);
      const r = nn - q * dd;
      if (signed ? q < -128 || q > 127 : q > 0xff) cpu.raise(0);
      cpu.setReg(RAX, 2, (q & 0xff) | ((r & 0xff) << 8), 0);
      return;
    }
    if (size === 2) {
      const n = ((cpu.regLo[RDX] & 0xffff) * 65536) + (cpu.regLo[RAX] & 0xffff);
      if ((d & 0xffff) === 0) cpu.raise(0);
      const nn = signed ? n | 0 : n;
      const dd = signed ? signExtend(d, 2) : d;
      const q = Math.trunc(nn / dd);
      const r = nn - q * dd;
      if (signed ? q < -32768 || q > 32767 : q > 0xffff) cpu.raise(0);
      cpu.setReg(RAX, 2, q & 0xffff, 0);
      cpu.setReg(RDX, 2, r & 0xffff, 0);
      return;
    }
    // 32- and 64-bit: BigInt is acceptable here (division is rare in decompressors).
    const bits = BigInt(size * 8);
    const width = 1n << bits;
    let n: bigint, dv: bigint;
    if (size === 4) {
      n = (BigInt(cpu.regLo[RDX]) << 32n) | BigInt(cpu.regLo[RAX]);
      dv = BigInt(d >>> 0);
    } else {
      n = (((BigInt(cpu.regHi[RDX]) << 32n) | BigInt(cpu.regLo[RDX])) << 64n) | (BigInt(cpu.regHi[RAX]) << 32n) | BigInt(cpu.regLo[RAX]);
      dv = (BigInt(dHi) << 32n) | BigInt(d >>> 0);
    }
    if (dv === 0n) cpu.raise(0);
    if (signed) {
      n = BigInt.asIntN(Number(bits) * 2, n);
      dv = BigInt.asIntN(Number(bits), dv);
    }
    const q = n / dv;
    const r = n % dv;
    if (signed ? q < -(width >> 1n) || q >= width >> 1n : q >= width) cpu.raise(0);
    const qu = BigInt.asUintN(Number(bits), q);
    const ru = BigInt.asUintN(Number(bits), r);
    if (size === 4) {
      cpu.setReg(RAX, 4, Number(qu), 0);
      cpu.setReg(RDX, 4, Number(ru), 0);
    } else {
      cpu.setReg(RAX, 8, Number(qu & 0xffffffffn), Number(qu >> 32n));
      cpu.setReg(RDX, 8, Number(ru & 0xffffffffn), Number(ru >> 32n));
    }
  };
}

export function registerMulDiv(r: Registry): void {
  r.handle([Mnemonic.Mul], mul);
  r.handle([Mnemonic.Imul], imul);
  r.handle([Mnemonic.Mulx], mulx);
  r.handle([Mnemonic.Div], divide(false));
  r.handle([Mnemonic.Idiv], divide(true));
}
