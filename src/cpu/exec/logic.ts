import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { logic32, logic64, logicResult } from './flags-compute.js';
import { pickForm, type FormSet } from './forms.js';
import type { Registry } from './table.js';

/** AND/OR/XOR/TEST/NOT and the BMI1 ANDN. */

const AND = 0, OR = 1, XOR = 2;

function bitwise(kind: number, write: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const s = i.s0;
    const a = cpu.readOp(i, 0);
    const aHi = cpu.vHi;
    const b = cpu.readOp(i, 1);
    const bHi = cpu.vHi;
    if (kind === AND) logicResult(cpu, s, a & b, aHi & bHi);
    else if (kind === OR) logicResult(cpu, s, a | b, aHi | bHi);
    else logicResult(cpu, s, a ^ b, aHi ^ bHi);
    if (write) cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
  };
}

/** NOT changes no flags. */
const not: Handler = (cpu, i) => {
  const a = cpu.readOp(i, 0);
  const aHi = cpu.vHi;
  cpu.writeOp(i, 0, ~a >>> 0, ~aHi >>> 0);
};

/** ANDN dst, src1, src2 = ~src1 & src2 (CF = OF = 0). */
const andn: Handler = (cpu, i) => {
  const s = i.s0;
  const a = cpu.readOp(i, 1);
  const aHi = cpu.vHi;
  const b = cpu.readOp(i, 2);
  const bHi = cpu.vHi;
  logicResult(cpu, s, ~a & b, ~aHi & bHi);
  cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
};

/*
 * Operand-form specialisations (see forms.ts): same results and flags as `bitwise`.
 * 32-bit forms write zero-extended results; all set SF/ZF/PF and clear CF/OF/AF.
 */

const andRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  const lo = (R[d] & R[s]) >>> 0, hi = (H[d] & H[s]) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const andRR4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] & R[i.r1]) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const andRI8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const lo = (R[d] & i.immLo) >>> 0, hi = (H[d] & i.immHi) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const andRI4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] & i.immLo) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const orRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  const lo = (R[d] | R[s]) >>> 0, hi = (H[d] | H[s]) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const orRR4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] | R[i.r1]) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const orRI8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const lo = (R[d] | i.immLo) >>> 0, hi = (H[d] | i.immHi) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const orRI4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] | i.immLo) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const xorRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  const lo = (R[d] ^ R[s]) >>> 0, hi = (H[d] ^ H[s]) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const xorRR4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] ^ R[i.r1]) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const xorRI8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  const lo = (R[d] ^ i.immLo) >>> 0, hi = (H[d] ^ i.immHi) >>> 0;
  logic64(cpu, lo, hi);
  R[d] = lo; H[d] = hi;
};
const xorRI4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  const lo = (R[d] ^ i.immLo) >>> 0;
  logic32(cpu, lo);
  R[d] = lo; cpu.regHi[d] = 0;
};
const testRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  logic64(cpu, (R[d] & R[s]) >>> 0, (H[d] & H[s]) >>> 0);
};
const testRR4: Handler = (cpu, i) => {
  const R = cpu.regLo;
  logic32(cpu, (R[i.r0] & R[i.r1]) >>> 0);
};
/** TEST r8, r8 (AL..R15L). */
const testRR1: Handler = (cpu, i) => {
  const R = cpu.regLo;
  logicResult(cpu, 1, R[i.r0] & R[i.r1] & 0xff, 0);
};
const testRI8: Handler = (cpu, i) => {
  const d = i.r0;
  logic64(cpu, (cpu.regLo[d] & i.immLo) >>> 0, (cpu.regHi[d] & i.immHi) >>> 0);
};
const testRI4: Handler = (cpu, i) => {
  logic32(cpu, (cpu.regLo[i.r0] & i.immLo) >>> 0);
};

/** The specialised forms (block translation recognises them by identity). */
export const AND_FORMS = { rr8: andRR8, rr4: andRR4, ri8: andRI8, ri4: andRI4 } as const satisfies FormSet;
export const OR_FORMS = { rr8: orRR8, rr4: orRR4, ri8: orRI8, ri4: orRI4 } as const satisfies FormSet;
export const XOR_FORMS = { rr8: xorRR8, rr4: xorRR4, ri8: xorRI8, ri4: xorRI4 } as const satisfies FormSet;
export const TEST_FORMS = { rr8: testRR8, rr4: testRR4, rr1: testRR1, ri8: testRI8, ri4: testRI4 } as const satisfies FormSet;

export function registerLogic(r: Registry): void {
  const andG = bitwise(AND, true), orG = bitwise(OR, true), xorG = bitwise(XOR, true), testG = bitwise(AND, false);
  r.pick([Mnemonic.And], (insn) => pickForm(insn, AND_FORMS, andG));
  r.pick([Mnemonic.Or], (insn) => pickForm(insn, OR_FORMS, orG));
  r.pick([Mnemonic.Xor], (insn) => pickForm(insn, XOR_FORMS, xorG));
  r.pick([Mnemonic.Test], (insn) => pickForm(insn, TEST_FORMS, testG));
  r.handle([Mnemonic.Not], not);
  r.handle([Mnemonic.Andn], andn);
}
