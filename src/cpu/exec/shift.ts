import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { AF, CF, OF, SIZE_MASK } from '../flags.js';
import { Operand } from '../insn.js';
import { szp } from './flags-compute.js';
import * as P from './pair64.js';
import type { Registry } from './table.js';

/** SHL/SHR/SAR/ROL/ROR/RCL/RCR, SHLD/SHRD and the BMI2 SHLX/SHRX/SARX/RORX. */

const SHL = 0, SHR = 1, SAR = 2, ROL = 3, ROR = 4, RCL = 5, RCR = 6;

/** Shift count: CL or imm8 or the implicit 1 of the D0/D1 forms. */
function countOf(cpu: Cpu, i: Insn): number {
  if (i.opCount < 2) return 1;
  if (i.k1 === Operand.Reg) return cpu.regLo[1] & 0xff;
  return i.immLo & 0xff;
}

function setFlagsKeepOthers(cpu: Cpu, flags: number, affect: number): void {
  cpu.rflags = (cpu.rflags & ~affect) | (flags & affect);
}

function shiftOp(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const bits = size * 8;
    const raw = countOf(cpu, i);
    const c = raw & (size === 8 ? 63 : 31);
    const a = cpu.readOp(i, 0);
    const aHi = size === 8 ? cpu.vHi : 0;
    if (c === 0) {
      // No flags change, but a 32-bit register destination is still written (upper half zeroed).
      if (size === 4 && i.k0 === Operand.Reg) cpu.setReg(i.r0, 4, a, 0);
      return;
    }
    let rl = 0, rh = 0, cf = 0, of = 0;
    const mask = SIZE_MASK[size];
    switch (kind) {
      case SHL:
        if (size === 8) {
          P.shl64(cpu, a, aHi, c); rl = cpu.pairLo; rh = cpu.pairHi;
          cf = P.bit64(a, aHi, 64 - c);
          of = (rh >>> 31) ^ cf;
        } else {
          // c may exceed the width for 8/16-bit operands: everything shifts out.
          rl = c >= 32 ? 0 : (a << c) & mask;
          if (size === 4) rl = rl >>> 0;
          cf = c > bits ? 0 : (a >>> (bits - c)) & 1;
          of = ((rl >>> (bits - 1)) & 1) ^ cf;
        }
        cpu.rLo = rl; cpu.rHi = rh;
        cpu.setArith((cf ? CF : 0) | (of ? OF : 0) | szp(size, rl, rh));
        break;
      case SHR:
        if (size === 8) {
          P.shr64(cpu, a, aHi, c); rl = cpu.pairLo; rh = cpu.pairHi;
          cf = P.bit64(a, aHi, c - 1);
          of = aHi >>> 31;
        } else {
          rl = c >= 32 ? 0 : a >>> c;
          cf = c > bits ? 0 : (a >>> (c - 1)) & 1;
          of = (a >>> (bits - 1)) & 1;
        }
        cpu.rLo = rl; cpu.rHi = rh;
        cpu.setArith((cf ? CF : 0) | (of ? OF : 0) | szp(size, rl, rh));
        break;
      case SAR: {
        if (size === 8) {
          P.sar64(cpu, a, aHi, c); rl = cpu.pairLo; rh = cpu.pairHi;
          cf = P.bit64(a, aHi, c - 1);
        } else {
          const signed = size === 4 ? a | 0 : size === 2 ? (a << 16) >> 16 : (a << 24) >> 24;
          const cc = Math.min(c, 31);
          rl = (signed >> cc) & mask;
          if (size === 4) rl = rl >>> 0;
          cf = (signed >> Math.min(c - 1, 31)) & 1;
        }
        cpu.rLo = rl; cpu.rHi = rh;
        cpu.setArith((cf ? CF : 0) | szp(size, rl, rh));
        break;
      }
      case ROL: case ROR: {
        const n = c % bits;
        if (size === 8) {
          if (kind === ROL) { P.shl64(cpu, a, aHi, n); const l = cpu.pairLo, h = cpu.pairHi; P.shr64(cpu, a, aHi, (64 - n) & 63); rl = (n === 0 ? a : (l | cpu.pairLo) >>> 0); rh = (n === 0 ? aHi : (h | cpu.pairHi) >>> 0); }
          else { P.shr64(cpu, a, aHi, n); const l = cpu.pairLo, h = cpu.pairHi; P.shl64(cpu, a, aHi, (64 - n) & 63); rl = (n === 0 ? a : (l | cpu.pairLo) >>> 0); rh = (n === 0 ? aHi : (h | cpu.pairHi) >>> 0); }
        } else if (n === 0) {
          rl = a;
        } else if (kind === ROL) {
          rl = ((a << n) | (a >>> (bits - n))) & mask;
        } else {
          rl = ((a >>> n) | (a << (bits - n))) & mask;
        }
        if (size === 4) rl = rl >>> 0;
        const msb = size === 8 ? rh >>> 31 : (rl >>> (bits - 1)) & 1;
        if (kind === ROL) {
          cf = rl & 1;
          of = msb ^ cf;
        } else {
          cf = msb;
          const msb2 = size === 8 ? (rh >>> 30) & 1 : (rl >>> (bits - 2)) & 1;
          of = msb ^ msb2;
        }
        cpu.rLo = rl; cpu.rHi = rh;
        setFlagsKeepOthers(cpu, (cf ? CF : 0) | (of ? OF : 0), CF | OF);
        break;
      }
      default: {
        // RCL/RCR: rotate through CF one bit at a time (rare; counts are small).
        const n = size === 1 ? c % 9 : size === 2 ? c % 17 : c;
        let l = a, h = aHi, carry = cpu.rflags & CF;
        const origMsb = size === 8 ? aHi >>> 31 : (a >>> (bits - 1)) & 1;
        const origCf = carry;
        for (let k = 0; k < n; k++) {
          if (kind === RCL) {
            const out = size === 8 ? h >>> 31 : (l >>> (bits - 1)) & 1;
            if (size === 8) { h = ((h << 1) | (l >>> 31)) >>> 0; l = ((l << 1) | carry) >>> 0; }
            else { l = ((l << 1) | carry) & mask; if (size === 4) l = l >>> 0; }
            carry = out;
          } else {
            const out = l & 1;
            if (size === 8) { l = ((l >>> 1) | (h << 31)) >>> 0; h = ((h >>> 1) | (carry << 31)) >>> 0; }
            else { l = ((l >>> 1) | (carry << (bits - 1))) & mask; if (size === 4) l = l >>> 0; }
            carry = out;
          }
        }
        rl = l; rh = h;
        if (n === 0) {
          // Masked count non-zero but a multiple of the width+1: value and CF unchanged; OF as for one step.
          cpu.rLo = rl; cpu.rHi = rh;
          cpu.writeOp(i, 0, rl, rh);
          return;
        }
        const msb = size === 8 ? rh >>> 31 : (rl >>> (bits - 1)) & 1;
        of = kind === RCL ? msb ^ carry : origMsb ^ origCf;
        if (kind === RCR && n !== 1) of = msb ^ (size === 8 ? (rh >>> 30) & 1 : (rl >>> (bits - 2)) & 1);
        cpu.rLo = rl; cpu.rHi = rh;
        setFlagsKeepOthers(cpu, (carry ? CF : 0) | (of ? OF : 0), CF | OF);
      }
    }
    cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
  };
}

/** SHLD/SHRD dst, src, count. */
function doubleShift(left: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const bits = size * 8;
    const c = (i.k2 === Operand.Reg ? cpu.regLo[1] : i.immLo) & (size === 8 ? 63 : 31);
    const a = cpu.readOp(i, 0);
    const aHi = size === 8 ? cpu.vHi : 0;
    const b = cpu.readOp(i, 1);
    const bHi = size === 8 ? cpu.vHi : 0;
    if (c === 0) {
      if (size === 4 && i.k0 === Operand.Reg) cpu.setReg(i.r0, 4, a, 0);
      return;
    }
    if (size === 2 && c > 16) {
      // Undefined architecturally. AMD (checked on Zen 3) rotates the source by c - 16,
      // clears CF, sets AF; OF is 0 for SHLD and bit 15 ^ bit 14 of the result for SHRD.
      const n = c - 16;
      const r = (left ? (b << n) | (b >>> (16 - n)) : (b >>> n) | (b << (16 - n))) & 0xffff;
      const of = left ? 0 : ((r >>> 15) ^ (r >>> 14)) & 1;
      cpu.rLo = r; cpu.rHi = 0;
      cpu.setArith(AF | (of ? OF : 0) | szp(2, r, 0));
      cpu.writeOp(i, 0, r, 0);
      return;
    }
    let rl: number, rh = 0, cf: number;
    if (size === 8) {
      if (left) {
        P.shl64(cpu, a, aHi, c); const l = cpu.pairLo, h = cpu.pairHi;
        P.shr64(cpu, b, bHi, 64 - c);
        rl = (l | cpu.pairLo) >>> 0; rh = (h | cpu.pairHi) >>> 0;
        cf = P.bit64(a, aHi, 64 - c);
      } else {
        P.shr64(cpu, a, aHi, c); const l = cpu.pairLo, h = cpu.pairHi;
        P.shl64(cpu, b, bHi, 64 - c);
        rl = (l | cpu.pairLo) >>> 0; rh = (h | cpu.pairHi) >>> 0;
        cf = P.bit64(a, aHi, c - 1);
      }
    } else if (size === 4) {
      if (left) { rl = ((a << c) | (b >>> (32 - c))) >>> 0; cf = (a >>> (32 - c)) & 1; }
      else { rl = ((a >>> c) | (b << (32 - c))) >>> 0; cf = (a >>> (c - 1)) & 1; }
    } else {
      // 16-bit, count 1..16 (larger counts are handled above): shift the 32-bit concatenation.
      if (left) {
        const cat = ((a << 16) | b) >>> 0;
        rl = ((cat << c) >>> 16) & 0xffff;
        cf = (cat >>> (32 - c)) & 1;
      } else {
        const cat = ((b << 16) | a) >>> 0;
        rl = (cat >>> c) & 0xffff;
        cf = (cat >>> (c - 1)) & 1;
      }
    }
    const msbNew = size === 8 ? rh >>> 31 : (rl >>> (bits - 1)) & 1;
    const msbOld = size === 8 ? aHi >>> 31 : (a >>> (bits - 1)) & 1;
    cpu.rLo = rl; cpu.rHi = rh;
    cpu.setArith((cf ? CF : 0) | (msbNew !== msbOld ? OF : 0) | szp(size, rl, rh));
    cpu.writeOp(i, 0, rl, rh);
  };
}

/** BMI2 shifts: no flags; count from the third operand masked to the width. */
function bmiShift(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.s0;
    const a = cpu.readOp(i, 1);
    const aHi = size === 8 ? cpu.vHi : 0;
    const c = (i.k2 === Operand.Imm ? i.immLo : cpu.readOp(i, 2)) & (size === 8 ? 63 : 31);
    let rl: number, rh = 0;
    if (size === 8) {
      if (kind === SHL) P.shl64(cpu, a, aHi, c);
      else if (kind === SHR) P.shr64(cpu, a, aHi, c);
      else if (kind === SAR) P.sar64(cpu, a, aHi, c);
      else { P.shr64(cpu, a, aHi, c); const l = cpu.pairLo, h = cpu.pairHi; P.shl64(cpu, a, aHi, (64 - c) & 63); P.setOut(cpu, c === 0 ? a : (l | cpu.pairLo) >>> 0, c === 0 ? aHi : (h | cpu.pairHi) >>> 0); }
      rl = cpu.pairLo; rh = cpu.pairHi;
    } else if (kind === SHL) rl = (a << c) >>> 0;
    else if (kind === SHR) rl = a >>> c;
    else if (kind === SAR) rl = (a >> c) >>> 0;
    else rl = c === 0 ? a : ((a >>> c) | (a << (32 - c))) >>> 0;
    cpu.setReg(i.r0, size, rl, rh);
  };
}

/*
 * Operand-form specialisations (decode time): SHL/SHR/SAR of a 32/64-bit
 * register by an immediate, and the all-register SHLX/SHRX. Same results and
 * flags as shiftOp/bmiShift.
 */

const shlRI8: Handler = (cpu, i) => {
  const c = i.immLo & 63;
  if (c === 0) return;
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const a = R[d], aHi = H[d];
  P.shl64(cpu, a, aHi, c);
  const rl = cpu.pairLo, rh = cpu.pairHi;
  const cf = P.bit64(a, aHi, 64 - c);
  const of = (rh >>> 31) ^ cf;
  cpu.setArith((cf ? CF : 0) | (of ? OF : 0) | szp(8, rl, rh));
  R[d] = rl;
  H[d] = rh;
};
const shlRI4: Handler = (cpu, i) => {
  const c = i.immLo & 31;
  const R = cpu.regLo, d = i.r0;
  const a = R[d];
  cpu.regHi[d] = 0;
  if (c === 0) return;
  const rl = (a << c) >>> 0;
  const cf = (a >>> (32 - c)) & 1;
  const of = (rl >>> 31) ^ cf;
  cpu.setArith((cf ? CF : 0) | (of ? OF : 0) | szp(4, rl, 0));
  R[d] = rl;
};
const shrRI8: Handler = (cpu, i) => {
  const c = i.immLo & 63;
  if (c === 0) return;
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const a = R[d], aHi = H[d];
  P.shr64(cpu, a, aHi, c);
  const rl = cpu.pairLo, rh = cpu.pairHi;
  const cf = P.bit64(a, aHi, c - 1);
  cpu.setArith((cf ? CF : 0) | (aHi >>> 31 ? OF : 0) | szp(8, rl, rh));
  R[d] = rl;
  H[d] = rh;
};
const shrRI4: Handler = (cpu, i) => {
  const c = i.immLo & 31;
  const R = cpu.regLo, d = i.r0;
  const a = R[d];
  cpu.regHi[d] = 0;
  if (c === 0) return;
  const rl = a >>> c;
  const cf = (a >>> (c - 1)) & 1;
  cpu.setArith((cf ? CF : 0) | (a >>> 31 ? OF : 0) | szp(4, rl, 0));
  R[d] = rl;
};
const sarRI8: Handler = (cpu, i) => {
  const c = i.immLo & 63;
  if (c === 0) return;
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const a = R[d], aHi = H[d];
  P.sar64(cpu, a, aHi, c);
  const rl = cpu.pairLo, rh = cpu.pairHi;
  const cf = P.bit64(a, aHi, c - 1);
  cpu.setArith((cf ? CF : 0) | szp(8, rl, rh));
  R[d] = rl;
  H[d] = rh;
};
const sarRI4: Handler = (cpu, i) => {
  const c = i.immLo & 31;
  const R = cpu.regLo, d = i.r0;
  const a = R[d];
  cpu.regHi[d] = 0;
  if (c === 0) return;
  const signed = a | 0;
  const rl = (signed >> c) >>> 0;
  const cf = (signed >> (c - 1)) & 1;
  cpu.setArith((cf ? CF : 0) | szp(4, rl, 0));
  R[d] = rl;
};

const shlxRRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, s = i.r1;
  P.shl64(cpu, R[s], H[s], R[i.r2] & 63);
  R[i.r0] = cpu.pairLo;
  H[i.r0] = cpu.pairHi;
};
const shlxRRR4: Handler = (cpu, i) => {
  const R = cpu.regLo;
  R[i.r0] = (R[i.r1] << (R[i.r2] & 31)) >>> 0;
  cpu.regHi[i.r0] = 0;
};
const shrxRRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, s = i.r1;
  P.shr64(cpu, R[s], H[s], R[i.r2] & 63);
  R[i.r0] = cpu.pairLo;
  H[i.r0] = cpu.pairHi;
};
const shrxRRR4: Handler = (cpu, i) => {
  const R = cpu.regLo;
  R[i.r0] = R[i.r1] >>> (R[i.r2] & 31);
  cpu.regHi[i.r0] = 0;
};

/** Register destination (not AH..BH) shifted by an immediate: the 32/64-bit specialisation, else `generic`. */
function pickShiftImm(insn: Insn, h8: Handler, h4: Handler, generic: Handler): Handler {
  if (insn.opCount !== 2 || insn.k0 !== Operand.Reg || insn.r0 >= 16 || insn.k1 !== Operand.Imm || insn.lock) return generic;
  return insn.s0 === 8 ? h8 : insn.s0 === 4 ? h4 : generic;
}

function pickBmiShift(insn: Insn, h8: Handler, h4: Handler, generic: Handler): Handler {
  if (insn.k1 !== Operand.Reg || insn.k2 !== Operand.Reg) return generic;
  return insn.s0 === 8 ? h8 : insn.s0 === 4 ? h4 : generic;
}

export function registerShifts(r: Registry): void {
  const shl = shiftOp(SHL), shr = shiftOp(SHR), sar = shiftOp(SAR);
  r.pick([Mnemonic.Shl, Mnemonic.Sal], (insn) => pickShiftImm(insn, shlRI8, shlRI4, shl));
  r.pick([Mnemonic.Shr], (insn) => pickShiftImm(insn, shrRI8, shrRI4, shr));
  r.pick([Mnemonic.Sar], (insn) => pickShiftImm(insn, sarRI8, sarRI4, sar));
  r.handle([Mnemonic.Rol], shiftOp(ROL));
  r.handle([Mnemonic.Ror], shiftOp(ROR));
  r.handle([Mnemonic.Rcl], shiftOp(RCL));
  r.handle([Mnemonic.Rcr], shiftOp(RCR));
  r.handle([Mnemonic.Shld], doubleShift(true));
  r.handle([Mnemonic.Shrd], doubleShift(false));
  const shlx = bmiShift(SHL), shrx = bmiShift(SHR);
  r.pick([Mnemonic.Shlx], (insn) => pickBmiShift(insn, shlxRRR8, shlxRRR4, shlx));
  r.pick([Mnemonic.Shrx], (insn) => pickBmiShift(insn, shrxRRR8, shrxRRR4, shrx));
  r.handle([Mnemonic.Sarx], bmiShift(SAR));
  r.handle([Mnemonic.Rorx], bmiShift(ROR));
}
