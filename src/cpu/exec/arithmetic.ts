import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { CF } from '../flags.js';
import { add, add32, add64, sub, sub32, sub64 } from './flags-compute.js';
import { pickForm, type FormSet } from './forms.js';
import { Operand } from '../insn.js';
import { HIGH8 } from '../registers.js';
import type { Registry } from './table.js';

/** ADD/ADC/SUB/SBB/CMP/INC/DEC/NEG with exact flags. */

function binary(op: (cpu: Cpu, s: number, a: number, aHi: number, b: number, bHi: number, c: number) => void, carry: boolean, write: boolean): Handler {
  return (cpu: Cpu, i: Insn) => {
    const s = i.s0;
    const a = cpu.readOp(i, 0);
    const aHi = cpu.vHi;
    const b = cpu.readOp(i, 1);
    const bHi = cpu.vHi;
    op(cpu, s, a, aHi, b, bHi, carry ? cpu.rflags & CF : 0);
    if (write) cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
  };
}

const incDec = (decrement: boolean): Handler => (cpu: Cpu, i: Insn) => {
  const s = i.s0;
  const a = cpu.readOp(i, 0);
  const aHi = cpu.vHi;
  const carry = cpu.rflags & CF;
  if (decrement) sub(cpu, s, a, aHi, 1, 0, 0);
  else add(cpu, s, a, aHi, 1, 0, 0);
  cpu.rflags = (cpu.rflags & ~CF) | carry;
  cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
};

const neg: Handler = (cpu, i) => {
  const s = i.s0;
  const a = cpu.readOp(i, 0);
  const aHi = s === 8 ? cpu.vHi : 0;
  sub(cpu, s, 0, 0, a, aHi, 0);
  cpu.writeOp(i, 0, cpu.rLo, cpu.rHi);
};

/*
 * Operand-form specialisations (chosen at decode time, see forms.ts) of
 * ADD/SUB/CMP: same results and flags as `binary`.
 */

const addRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  R[d] = add64(cpu, R[d], H[d], R[s], H[s]);
  H[d] = cpu.rHi;
};
const addRR4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  R[d] = add32(cpu, R[d], R[i.r1]);
  cpu.regHi[d] = 0;
};
const addRI8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  R[d] = add64(cpu, R[d], H[d], i.immLo, i.immHi);
  H[d] = cpu.rHi;
};
const addRI4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  R[d] = add32(cpu, R[d], i.immLo);
  cpu.regHi[d] = 0;
};
const addRM8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read64(cpu.eaLo, cpu.eaHi);
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  R[d] = add64(cpu, R[d], H[d], b, cpu.vHi);
  H[d] = cpu.rHi;
};
const addRM4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read32(cpu.eaLo, cpu.eaHi);
  const R = cpu.regLo, d = i.r0;
  R[d] = add32(cpu, R[d], b);
  cpu.regHi[d] = 0;
};

const subRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  R[d] = sub64(cpu, R[d], H[d], R[s], H[s]);
  H[d] = cpu.rHi;
};
const subRR4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  R[d] = sub32(cpu, R[d], R[i.r1]);
  cpu.regHi[d] = 0;
};
const subRI8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  R[d] = sub64(cpu, R[d], H[d], i.immLo, i.immHi);
  H[d] = cpu.rHi;
};
const subRI4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  R[d] = sub32(cpu, R[d], i.immLo);
  cpu.regHi[d] = 0;
};
const subRM8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read64(cpu.eaLo, cpu.eaHi);
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  R[d] = sub64(cpu, R[d], H[d], b, cpu.vHi);
  H[d] = cpu.rHi;
};
const subRM4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read32(cpu.eaLo, cpu.eaHi);
  const R = cpu.regLo, d = i.r0;
  R[d] = sub32(cpu, R[d], b);
  cpu.regHi[d] = 0;
};

const cmpRR8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0, s = i.r1;
  sub64(cpu, R[d], H[d], R[s], H[s]);
};
const cmpRR4: Handler = (cpu, i) => {
  const R = cpu.regLo;
  sub32(cpu, R[i.r0], R[i.r1]);
};
const cmpRI8: Handler = (cpu, i) => {
  const d = i.r0;
  sub64(cpu, cpu.regLo[d], cpu.regHi[d], i.immLo, i.immHi);
};
const cmpRI4: Handler = (cpu, i) => {
  sub32(cpu, cpu.regLo[i.r0], i.immLo);
};
/** CMP r8, imm8 (AL..R15L; the high-byte registers take the generic path). */
const cmpRI1: Handler = (cpu, i) => {
  sub(cpu, 1, cpu.regLo[i.r0], 0, i.immLo, i.immHi, 0);
};
const cmpRM8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read64(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  sub64(cpu, cpu.regLo[d], cpu.regHi[d], b, cpu.vHi);
};
const cmpRM4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const b = cpu.read32(cpu.eaLo, cpu.eaHi);
  sub32(cpu, cpu.regLo[i.r0], b);
};
const cmpMR8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const a = cpu.read64(cpu.eaLo, cpu.eaHi);
  const s = i.r1;
  sub64(cpu, a, cpu.vHi, cpu.regLo[s], cpu.regHi[s]);
};
const cmpMR4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const a = cpu.read32(cpu.eaLo, cpu.eaHi);
  sub32(cpu, a, cpu.regLo[i.r1]);
};
const cmpMI8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const a = cpu.read64(cpu.eaLo, cpu.eaHi);
  sub64(cpu, a, cpu.vHi, i.immLo, i.immHi);
};
const cmpMI4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const a = cpu.read32(cpu.eaLo, cpu.eaHi);
  sub32(cpu, a, i.immLo);
};

const neg8: Handler = (cpu, i) => {
  const R = cpu.regLo, H = cpu.regHi, d = i.r0;
  R[d] = sub64(cpu, 0, 0, R[d], H[d]);
  H[d] = cpu.rHi;
};
const neg4: Handler = (cpu, i) => {
  const R = cpu.regLo, d = i.r0;
  R[d] = sub32(cpu, 0, R[d]);
  cpu.regHi[d] = 0;
};
/** NEG of a 64/32-bit register (block translation inlines exactly these: 0 - r with SUB's flags). */
export const NEG_FORMS = { r8: neg8, r4: neg4 } as const;

/** The specialised forms (block translation recognises them by identity). */
export const ADD_FORMS = { rr8: addRR8, rr4: addRR4, ri8: addRI8, ri4: addRI4, rm8: addRM8, rm4: addRM4 } as const satisfies FormSet;
export const SUB_FORMS = { rr8: subRR8, rr4: subRR4, ri8: subRI8, ri4: subRI4, rm8: subRM8, rm4: subRM4 } as const satisfies FormSet;
export const CMP_FORMS = {
  rr8: cmpRR8, rr4: cmpRR4, ri8: cmpRI8, ri4: cmpRI4, ri1: cmpRI1, rm8: cmpRM8, rm4: cmpRM4, mr8: cmpMR8, mr4: cmpMR4, mi8: cmpMI8, mi4: cmpMI4,
} as const satisfies FormSet;

export function registerArithmetic(r: Registry): void {
  const addG = binary(add, false, true), subG = binary(sub, false, true), cmpG = binary(sub, false, false);
  r.pick([Mnemonic.Add], (insn) => pickForm(insn, ADD_FORMS, addG));
  r.handle([Mnemonic.Adc], binary(add, true, true));
  r.pick([Mnemonic.Sub], (insn) => pickForm(insn, SUB_FORMS, subG));
  r.handle([Mnemonic.Sbb], binary(sub, true, true));
  r.pick([Mnemonic.Cmp], (insn) => pickForm(insn, CMP_FORMS, cmpG));
  r.handle([Mnemonic.Inc], incDec(false));
  r.handle([Mnemonic.Dec], incDec(true));
  r.pick([Mnemonic.Neg], (insn) => {
    if (insn.k0 === Operand.Reg && insn.r0 < HIGH8 && !insn.lock) return insn.s0 === 8 ? neg8 : insn.s0 === 4 ? neg4 : neg;
    return neg;
  });
}
