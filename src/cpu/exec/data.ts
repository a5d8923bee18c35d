import { Mnemonic, OpKind, Register } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { Operand } from '../insn.js';
import { AF, CF, PF, SF, ZF, testCondition } from '../flags.js';
import { RAX, RDX } from '../registers.js';
import { add, sub } from './flags-compute.js';
import { movFromControl, movFromSegment, movToControl, movToSegment, prepareMov } from './system.js';
import type { Registry } from './table.js';
import { pickForm, type FormSet } from './forms.js';
import { HIGH8 } from '../registers.js';

/** MOV and friends: MOVZX/MOVSX/MOVSXD, LEA, XCHG, CMPXCHG, XADD, CBW..CQO, SETcc, CMOVcc, LAHF/SAHF, MOVBE. */

const mov: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 1);
  cpu.writeOp(i, 0, v, cpu.vHi);
};

function signExtendToPair(cpu: Cpu, v: number, fromSize: number): number {
  const s = fromSize === 1 ? (v << 24) >> 24 : fromSize === 2 ? (v << 16) >> 16 : v | 0;
  cpu.vHi = s < 0 ? 0xffffffff : 0;
  return s >>> 0;
}

const movzx: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 1);
  cpu.setReg(i.r0, i.s0, v, 0);
};

const movsx: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 1);
  const lo = signExtendToPair(cpu, v, i.s1);
  cpu.setReg(i.r0, i.s0, i.s0 === 2 ? lo & 0xffff : lo, cpu.vHi);
};

const lea: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.setReg(i.r0, i.s0, i.s0 === 2 ? cpu.eaLo & 0xffff : cpu.eaLo, cpu.eaHi);
};

const xchg: Handler = (cpu, i) => {
  const a = cpu.readOp(i, 0);
  const aHi = cpu.vHi;
  const b = cpu.readOp(i, 1);
  const bHi = cpu.vHi;
  cpu.writeOp(i, 0, b, bHi);
  cpu.writeOp(i, 1, a, aHi);
};

const cmpxchg: Handler = (cpu, i) => {
  const size = i.s0;
  const d = cpu.readOp(i, 0);
  const dHi = size === 8 ? cpu.vHi : 0;
  const acc = cpu.getReg(RAX, size);
  const accHi = size === 8 ? cpu.vHi : 0;
  sub(cpu, size, acc, accHi, d, dHi, 0);
  if ((cpu.rflags & ZF) !== 0) {
    const s = cpu.readOp(i, 1);
    cpu.writeOp(i, 0, s, cpu.vHi);
  } else {
    // Memory gets its write cycle; a register destination is left alone (not even zero-extended).
    if (i.k0 !== Operand.Reg) cpu.writeOp(i, 0, d, dHi);
    cpu.setReg(RAX, size, d, dHi);
  }
};

const xadd: Handler = (cpu, i) => {
  const size = i.s0;
  const d = cpu.readOp(i, 0);
  const dHi = cpu.vHi;
  const s = cpu.readOp(i, 1);
  const sHi = cpu.vHi;
  add(cpu, size, d, dHi, s, sHi, 0);
  const rLo = cpu.rLo, rHi = cpu.rHi;
  cpu.writeOp(i, 1, d, dHi);
  cpu.writeOp(i, 0, rLo, rHi);
};

/** CBW/CWDE/CDQE: sign-extend the low half of the accumulator into all of it. */
const widenAccumulator: Handler = (cpu, i) => {
  const size = i.s0;
  const v = cpu.regLo[RAX];
  if (size === 2) cpu.setReg(RAX, 2, ((v << 24) >> 24) & 0xffff, 0);
  else if (size === 4) cpu.setReg(RAX, 4, ((v << 16) >> 16) >>> 0, 0);
  else cpu.setReg(RAX, 8, v, (v | 0) < 0 ? 0xffffffff : 0);
};

/** CWD/CDQ/CQO: replicate the accumulator's sign into RDX. */
const signIntoRdx: Handler = (cpu, i) => {
  const size = i.s0;
  const negative = size === 2 ? (cpu.regLo[RAX] & 0x8000) !== 0 : size === 4 ? (cpu.regLo[RAX] | 0) < 0 : (cpu.regHi[RAX] | 0) < 0;
  const fill = negative ? 0xffffffff : 0;
  cpu.setReg(RDX, size, size === 2 ? fill & 0xffff : fill, fill);
};

const setcc: Handler = (cpu, i) => {
  cpu.writeOp(i, 0, testCondition(i.cc, cpu.rflags) ? 1 : 0, 0);
};

/** CMOVcc: the source is always read; a 32-bit destination is zero-extended even when not moved. */
const cmovcc: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 1);
  const vHi = cpu.vHi;
  if (testCondition(i.cc, cpu.rflags)) cpu.setReg(i.r0, i.s0, v, vHi);
  else if (i.s0 === 4) cpu.regHi[i.r0] = 0;
};

const LAHF_BITS = SF | ZF | AF | PF | CF;
const lahf: Handler = (cpu) => {
  cpu.setReg(16, 1, (cpu.rflags & LAHF_BITS) | 2, 0);
};
const sahf: Handler = (cpu) => {
  const ah = (cpu.regLo[RAX] >>> 8) & 0xff;
  cpu.rflags = (cpu.rflags & ~LAHF_BITS) | (ah & LAHF_BITS);
};

const movbe: Handler = (cpu, i) => {
  const size = i.s0;
  const v = cpu.readOp(i, 1);
  const vHi = cpu.vHi;
  const swap = (x: number): number => (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
  if (size === 2) cpu.writeOp(i, 0, ((v & 0xff) << 8) | ((v >>> 8) & 0xff), 0);
  else if (size === 4) cpu.writeOp(i, 0, swap(v), 0);
  else cpu.writeOp(i, 0, swap(vHi), swap(v));
};

function isControl(reg: Register): boolean {
  return reg >= Register.CR0 && reg <= Register.CR15;
}
function isSegment(reg: Register): boolean {
  return reg >= Register.ES && reg <= Register.GS;
}

/*
 * Operand-form specialisations of MOV, MOVZX and LEA (see forms.ts): same
 * effects as the generic handlers above, in the same order (a faulting read
 * or write leaves the destination untouched).
 */

const movRR8: Handler = (cpu, i) => {
  const s = i.r1, d = i.r0;
  cpu.regLo[d] = cpu.regLo[s];
  cpu.regHi[d] = cpu.regHi[s];
};
const movRR4: Handler = (cpu, i) => {
  const d = i.r0;
  cpu.regLo[d] = cpu.regLo[i.r1];
  cpu.regHi[d] = 0;
};
const movRI8: Handler = (cpu, i) => {
  const d = i.r0;
  cpu.regLo[d] = i.immLo;
  cpu.regHi[d] = i.immHi;
};
const movRI4: Handler = (cpu, i) => {
  const d = i.r0;
  cpu.regLo[d] = i.immLo;
  cpu.regHi[d] = 0;
};
const movRM8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read64(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = v;
  cpu.regHi[d] = cpu.vHi;
};
const movRM4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read32(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = v;
  cpu.regHi[d] = 0;
};
const movRM2: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read16(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = (cpu.regLo[d] & 0xffff0000) | v;
};
const movRM1: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read8(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = (cpu.regLo[d] & 0xffffff00) | v;
};
const movMR8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const s = i.r1;
  cpu.write64(cpu.eaLo, cpu.eaHi, cpu.regLo[s], cpu.regHi[s]);
};
const movMR4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.write32(cpu.eaLo, cpu.eaHi, cpu.regLo[i.r1]);
};
const movMR2: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.write16(cpu.eaLo, cpu.eaHi, cpu.regLo[i.r1] & 0xffff);
};
const movMR1: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.write8(cpu.eaLo, cpu.eaHi, cpu.regLo[i.r1] & 0xff);
};
const movMI8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.write64(cpu.eaLo, cpu.eaHi, i.immLo, i.immHi);
};
const movMI: Handler = (cpu, i) => {
  cpu.calcEA(i);
  cpu.writeLinear(cpu.eaLo, cpu.eaHi, i.s0, i.immLo, 0);
};
export const MOV_FORMS = {
  rr8: movRR8, rr4: movRR4, ri8: movRI8, ri4: movRI4, rm8: movRM8, rm4: movRM4, rm2: movRM2, rm1: movRM1,
  mr8: movMR8, mr4: movMR4, mr2: movMR2, mr1: movMR1, mi8: movMI8, mi4: movMI, mi2: movMI, mi1: movMI,
} as const satisfies FormSet;

/** MOVZX to a 32/64-bit register (the upper half is zeroed either way). */
const movzxRM1: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read8(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = v;
  cpu.regHi[d] = 0;
};
const movzxRM2: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const v = cpu.read16(cpu.eaLo, cpu.eaHi);
  const d = i.r0;
  cpu.regLo[d] = v;
  cpu.regHi[d] = 0;
};
const movzxRR1: Handler = (cpu, i) => {
  const d = i.r0;
  cpu.regLo[d] = cpu.regLo[i.r1] & 0xff;
  cpu.regHi[d] = 0;
};
const movzxRR2: Handler = (cpu, i) => {
  const d = i.r0;
  cpu.regLo[d] = cpu.regLo[i.r1] & 0xffff;
  cpu.regHi[d] = 0;
};

const lea8: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const d = i.r0;
  cpu.regLo[d] = cpu.eaLo;
  cpu.regHi[d] = cpu.eaHi;
};
const lea4: Handler = (cpu, i) => {
  cpu.calcEA(i);
  const d = i.r0;
  cpu.regLo[d] = cpu.eaLo;
  cpu.regHi[d] = 0;
};

/** MOVZX and LEA specialisations (block translation recognises them by identity). */
export const MOVZX_FORMS = { rm1: movzxRM1, rm2: movzxRM2, rr1: movzxRR1, rr2: movzxRR2 } as const;
export const LEA_FORMS = { r8: lea8, r4: lea4 } as const;
/** SETcc, CMOVcc and MOVSX/MOVSXD (block translation inlines some of their operand forms, recognising them by identity). */
export const CONDITIONAL_FORMS = { setcc, cmovcc } as const;
export const MOVSX_FORMS = { any: movsx } as const;

export function registerDataMovement(r: Registry): void {
  r.pick([Mnemonic.Mov], (insn, ins) => {
    if (ins.op0Kind === OpKind.Register) prepareMov(insn, ins.op0Register);
    if (ins.op1Kind === OpKind.Register) prepareMov(insn, ins.op1Register);
    if (ins.op0Kind === OpKind.Register && isControl(ins.op0Register)) return movToControl;
    if (ins.op1Kind === OpKind.Register && isControl(ins.op1Register)) return movFromControl;
    if (ins.op0Kind === OpKind.Register && isSegment(ins.op0Register)) return movToSegment;
    if (ins.op1Kind === OpKind.Register && isSegment(ins.op1Register)) return movFromSegment;
    if (ins.op0Kind === OpKind.Register && ins.op0Register >= Register.DR0 && ins.op0Register <= Register.DR15) return movToDebug;
    if (ins.op1Kind === OpKind.Register && ins.op1Register >= Register.DR0 && ins.op1Register <= Register.DR15) return movFromDebug;
    return pickForm(insn, MOV_FORMS, mov);
  });
  r.pick([Mnemonic.Movzx], (insn) => {
    if (insn.k0 !== Operand.Reg || insn.s0 < 4 || insn.r0 >= HIGH8) return movzx;
    if (insn.k1 === Operand.Mem) return insn.s1 === 1 ? movzxRM1 : insn.s1 === 2 ? movzxRM2 : movzx;
    if (insn.k1 === Operand.Reg && insn.r1 < HIGH8) return insn.s1 === 1 ? movzxRR1 : insn.s1 === 2 ? movzxRR2 : movzx;
    return movzx;
  });
  r.handle([Mnemonic.Movsx, Mnemonic.Movsxd], movsx);
  r.pick([Mnemonic.Lea], (insn) => {
    insn.memSeg = -1; // LEA never adds a segment base
    if (insn.r0 >= HIGH8 || insn.k0 !== Operand.Reg) return lea;
    return insn.s0 === 8 ? lea8 : insn.s0 === 4 ? lea4 : lea;
  });
  r.handle([Mnemonic.Xchg], xchg);
  r.handle([Mnemonic.Cmpxchg], cmpxchg);
  r.handle([Mnemonic.Xadd], xadd);
  r.pick([Mnemonic.Cbw, Mnemonic.Cwde, Mnemonic.Cdqe], (insn, ins) => {
    insn.s0 = ins.mnemonic === Mnemonic.Cbw ? 2 : ins.mnemonic === Mnemonic.Cwde ? 4 : 8;
    return widenAccumulator;
  });
  r.pick([Mnemonic.Cwd, Mnemonic.Cdq, Mnemonic.Cqo], (insn, ins) => {
    insn.s0 = ins.mnemonic === Mnemonic.Cwd ? 2 : ins.mnemonic === Mnemonic.Cdq ? 4 : 8;
    return signIntoRdx;
  });
  r.handle([Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne, Mnemonic.Setbe, Mnemonic.Seta,
    Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp, Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg], setcc);
  r.handle([Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne, Mnemonic.Cmovbe, Mnemonic.Cmova,
    Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp, Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg], cmovcc);
  r.handle([Mnemonic.Lahf], lahf);
  r.handle([Mnemonic.Sahf], sahf);
  r.handle([Mnemonic.Movbe], movbe);
}

/** Debug registers: reads give 0 (DR6/DR7 reset values aside), writes are ignored; nothing here uses breakpoints. */
const movToDebug: Handler = () => {};
const movFromDebug: Handler = (cpu, i) => {
  cpu.setReg(i.r0, 8, 0, 0);
};
