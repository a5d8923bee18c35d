import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { CF, OF, SF, ZF } from '../flags.js';
import { Operand } from '../insn.js';
import type { Registry } from './table.js';

/** BT/BTS/BTR/BTC, BSF/BSR, TZCNT/LZCNT/POPCNT, BMI1/BMI2 bit-field ops, BSWAP. */

const BT = 0, BTS = 1, BTR = 2, BTC = 3;

function ctz32(x: number): number {
  return x === 0 ? 32 : 31 - Math.clz32(x & -x);
}

function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

function setFlagBits(cpu: Cpu, affect: number, value: number): void {
  cpu.rflags = (cpu.rflags & ~affect) | (value & affect);
}

function bitTest(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const bits = size * 8;
    let offset = cpu.readOp(i, 1);
    if (i.k0 === Operand.Mem && i.k1 === Operand.Reg) {
      // Register bit offsets address memory beyond the operand (signed).
      const signed = size === 2 ? (offset << 16) >> 16 : size === 4 ? offset | 0 : 0;
      let wordIndex: number;
      if (size === 8) {
        const hiSigned = cpu.vHi | 0;
        wordIndex = Math.floor((hiSigned * 4294967296 + offset) / 64);
      } else wordIndex = Math.floor(signed / bits);
      cpu.calcEA(i);
      const delta = wordIndex * size;
      let lo = cpu.eaLo + delta;
      let hi = cpu.eaHi;
      while (lo < 0) { lo += 4294967296; hi = (hi - 1) >>> 0; }
      while (lo > 0xffffffff) { lo -= 4294967296; hi = (hi + 1) >>> 0; }
      offset = ((offset % bits) + bits) % bits;
      const v = cpu.readLinear(lo, hi, size);
      const vHi = cpu.vHi;
      const word = offset < 32 ? v : vHi;
      const bit = offset & 31;
      const old = (word >>> bit) & 1;
      setFlagBits(cpu, CF, old ? CF : 0);
      if (kind === BT) return;
      const nw = kind === BTS ? word | (1 << bit) : kind === BTR ? word & ~(1 << bit) : word ^ (1 << bit);
      if (offset < 32) cpu.writeLinear(lo, hi, size, nw >>> 0, vHi);
      else cpu.writeLinear(lo, hi, size, v, nw >>> 0);
      return;
    }
    offset &= bits - 1;
    const v = cpu.readOp(i, 0);
    const vHi = cpu.vHi;
    const word = offset < 32 ? v : vHi;
    const bit = offset & 31;
    const old = (word >>> bit) & 1;
    setFlagBits(cpu, CF, old ? CF : 0);
    if (kind === BT) return;
    const nw = (kind === BTS ? word | (1 << bit) : kind === BTR ? word & ~(1 << bit) : word ^ (1 << bit)) >>> 0;
    if (offset < 32) cpu.writeOp(i, 0, size < 4 ? nw & (size === 1 ? 0xff : 0xffff) : nw, vHi);
    else cpu.writeOp(i, 0, v, nw);
  };
}

/** BSF/BSR: destination unchanged when the source is zero (AMD documents this). */
function bitScan(reverse: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const v = cpu.readOp(i, 1);
    const vHi = size === 8 ? cpu.vHi : 0;
    if ((v | vHi) === 0) {
      setFlagBits(cpu, ZF, ZF);
      return;
    }
    let idx: number;
    if (reverse) idx = vHi !== 0 ? 63 - Math.clz32(vHi) : 31 - Math.clz32(v);
    else idx = v !== 0 ? ctz32(v) : 32 + ctz32(vHi);
    setFlagBits(cpu, ZF, 0);
    cpu.setReg(i.r0, size, idx, 0);
  };
}

/** TZCNT/LZCNT: CF = source zero, ZF = result zero. */
function count(leading: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const bits = size * 8;
    let v = cpu.readOp(i, 1);
    const vHi = size === 8 ? cpu.vHi : 0;
    let n: number;
    if (size === 8) {
      if (leading) n = vHi !== 0 ? Math.clz32(vHi) : 32 + Math.clz32(v);
      else n = v !== 0 ? ctz32(v) : 32 + ctz32(vHi);
    } else {
      if (size === 2) v &= 0xffff;
      if (leading) n = Math.clz32(v) - (32 - bits);
      else n = v === 0 ? bits : ctz32(v);
    }
    const zeroSrc = (v | vHi) === 0;
    setFlagBits(cpu, CF | ZF, (zeroSrc ? CF : 0) | (n === 0 ? ZF : 0));
    cpu.setReg(i.r0, size, n, 0);
  };
}

const popcnt: Handler = (cpu, i) => {
  const size = i.s0;
  const v = cpu.readOp(i, 1);
  const vHi = size === 8 ? cpu.vHi : 0;
  const n = popcount32(size === 2 ? v & 0xffff : v) + popcount32(vHi);
  cpu.setArith(n === 0 ? ZF : 0);
  cpu.setReg(i.r0, size, n, 0);
};

/** Result flags for the BMI group: ZF and SF from the result, OF = 0, CF as given. */
function bmiFlags(cpu: Cpu, size: number, lo: number, hi: number, carry: boolean): void {
  const sign = size === 8 ? hi >>> 31 : lo >>> 31;
  const zero = size === 8 ? (lo | hi) === 0 : lo === 0;
  setFlagBits(cpu, CF | ZF | SF | OF, (carry ? CF : 0) | (zero ? ZF : 0) | (sign ? SF : 0));
}

const bzhi: Handler = (cpu, i) => {
  const size = i.s0;
  const bits = size * 8;
  const v = cpu.readOp(i, 1);
  const vHi = size === 8 ? cpu.vHi : 0;
  const n = cpu.readOp(i, 2) & 0xff;
  let lo = v, hi = vHi;
  if (n < bits) {
    if (n < 32) { lo = n === 0 ? 0 : (v & (0xffffffff >>> (32 - n))) >>> 0; hi = 0; }
    else { hi = n === 32 ? 0 : (vHi & (0xffffffff >>> (64 - n))) >>> 0; }
  }
  cpu.setReg(i.r0, size, lo, hi);
  bmiFlags(cpu, size, lo, size === 8 ? hi : 0, n > bits - 1);
};

const BLSR = 0, BLSI = 1, BLSMSK = 2;
function blsOp(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const v = cpu.readOp(i, 1);
    const vHi = size === 8 ? cpu.vHi : 0;
    // v - 1 across halves
    const mLo = (v - 1) >>> 0;
    const mHi = size === 8 ? (v === 0 ? (vHi - 1) >>> 0 : vHi) : 0;
    let lo: number, hi: number;
    if (kind === BLSR) { lo = (v & mLo) >>> 0; hi = (vHi & mHi) >>> 0; }
    else if (kind === BLSMSK) { lo = (v ^ mLo) >>> 0; hi = size === 8 ? (vHi ^ mHi) >>> 0 : 0; }
    else {
      // v & -v
      const nLo = (-v) >>> 0;
      const nHi = size === 8 ? (v === 0 ? (-vHi) >>> 0 : (~vHi) >>> 0) : 0;
      lo = (v & nLo) >>> 0; hi = (vHi & nHi) >>> 0;
    }
    const zeroSrc = (v | vHi) === 0;
    cpu.setReg(i.r0, size, lo, hi);
    bmiFlags(cpu, size, lo, hi, kind === BLSI ? !zeroSrc : zeroSrc);
  };
}

const bextr: Handler = (cpu, i) => {
  const size = i.s0;
  const bits = size * 8;
  const v = cpu.readOp(i, 1);
  const vHi = size === 8 ? cpu.vHi : 0;
  const ctl = cpu.readOp(i, 2);
  const start = ctl & 0xff, len = (ctl >>> 8) & 0xff;
  let lo = 0, hi = 0;
  if (start < bits && len > 0) {
    // shift right by start
    let sLo: number, sHi: number;
    if (start === 0) { sLo = v; sHi = vHi; }
    else if (start < 32) { sLo = ((v >>> start) | (vHi << (32 - start))) >>> 0; sHi = vHi >>> start; }
    else { sLo = vHi >>> (start - 32); sHi = 0; }
    const l = Math.min(len, bits);
    if (l >= 64) { lo = sLo; hi = sHi; }
    else if (l >= 32) { lo = sLo; hi = l === 32 ? 0 : (sHi & (0xffffffff >>> (64 - l))) >>> 0; }
    else { lo = (sLo & (0xffffffff >>> (32 - l))) >>> 0; hi = 0; }
    if (size === 4) hi = 0;
  }
  cpu.setReg(i.r0, size, lo, hi);
  setFlagBits(cpu, CF | ZF | OF, (lo | hi) === 0 ? ZF : 0);
};

const bswap: Handler = (cpu, i) => {
  const r = i.r0;
  const swap = (x: number): number => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
  if (i.s0 === 8) {
    const lo = cpu.regLo[r], hi = cpu.regHi[r];
    cpu.setReg(r, 8, swap(hi), swap(lo));
  } else if (i.s0 === 4) {
    cpu.setReg(r, 4, swap(cpu.regLo[r]), 0);
  } else {
    cpu.setReg(r, 2, 0, 0); // 16-bit BSWAP is undefined; AMD and Intel both produce zero
  }
};

export function registerBits(r: Registry): void {
  r.handle([Mnemonic.Bt], bitTest(BT));
  r.handle([Mnemonic.Bts], bitTest(BTS));
  r.handle([Mnemonic.Btr], bitTest(BTR));
  r.handle([Mnemonic.Btc], bitTest(BTC));
  r.handle([Mnemonic.Bsf], bitScan(false));
  r.handle([Mnemonic.Bsr], bitScan(true));
  r.handle([Mnemonic.Tzcnt], count(false));
  r.handle([Mnemonic.Lzcnt], count(true));
  r.handle([Mnemonic.Popcnt], popcnt);
  r.handle([Mnemonic.Bzhi], bzhi);
  r.handle([Mnemonic.Blsr], blsOp(BLSR));
  r.handle([Mnemonic.Blsi], blsOp(BLSI));
  r.handle([Mnemonic.Blsmsk], blsOp(BLSMSK));
  r.handle([Mnemonic.Bextr], bextr);
  r.handle([Mnemonic.Bswap], bswap);
}
