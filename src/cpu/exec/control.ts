import { Code, Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { Operand } from '../insn.js';
import { CF, IRET_MASK, OF, PF, SF, ZF, testCondition } from '../flags.js';
import { RCX, RSP } from '../registers.js';
import type { Registry } from './table.js';
import { descriptorBase, descriptorLimit, EFER_LMA, readDescriptor } from './system.js';

/** JMP/CALL/RET (near, direct and indirect), Jcc, LOOPcc, JrCXZ, far return and IRETQ. */

const jmpRel: Handler = (cpu, i) => cpu.jumpRel(i.rel);

const jmpIndirect: Handler = (cpu, i) => {
  const lo = cpu.readOp(i, 0);
  cpu.jumpTo(lo, cpu.vHi);
};

const jcc: Handler = (cpu, i) => {
  if (testCondition(i.cc, cpu.rflags)) cpu.jumpRel(i.rel);
};

/** Jcc specialised per condition code at decode time (index = iced ConditionCode), same tests as testCondition. */
const JCC_BY_CC: readonly Handler[] = [
  jcc,
  (cpu, i) => { if ((cpu.rflags & OF) !== 0) cpu.jumpRel(i.rel); }, // o
  (cpu, i) => { if ((cpu.rflags & OF) === 0) cpu.jumpRel(i.rel); }, // no
  (cpu, i) => { if ((cpu.rflags & CF) !== 0) cpu.jumpRel(i.rel); }, // b
  (cpu, i) => { if ((cpu.rflags & CF) === 0) cpu.jumpRel(i.rel); }, // ae
  (cpu, i) => { if ((cpu.rflags & ZF) !== 0) cpu.jumpRel(i.rel); }, // e
  (cpu, i) => { if ((cpu.rflags & ZF) === 0) cpu.jumpRel(i.rel); }, // ne
  (cpu, i) => { if ((cpu.rflags & (CF | ZF)) !== 0) cpu.jumpRel(i.rel); }, // be
  (cpu, i) => { if ((cpu.rflags & (CF | ZF)) === 0) cpu.jumpRel(i.rel); }, // a
  (cpu, i) => { if ((cpu.rflags & SF) !== 0) cpu.jumpRel(i.rel); }, // s
  (cpu, i) => { if ((cpu.rflags & SF) === 0) cpu.jumpRel(i.rel); }, // ns
  (cpu, i) => { if ((cpu.rflags & PF) !== 0) cpu.jumpRel(i.rel); }, // p
  (cpu, i) => { if ((cpu.rflags & PF) === 0) cpu.jumpRel(i.rel); }, // np
  (cpu, i) => { const f = cpu.rflags; if (((f & SF) !== 0) !== ((f & OF) !== 0)) cpu.jumpRel(i.rel); }, // l
  (cpu, i) => { const f = cpu.rflags; if (((f & SF) !== 0) === ((f & OF) !== 0)) cpu.jumpRel(i.rel); }, // ge
  (cpu, i) => { const f = cpu.rflags; if ((f & ZF) !== 0 || ((f & SF) !== 0) !== ((f & OF) !== 0)) cpu.jumpRel(i.rel); }, // le
  (cpu, i) => { const f = cpu.rflags; if ((f & ZF) === 0 && ((f & SF) !== 0) === ((f & OF) !== 0)) cpu.jumpRel(i.rel); }, // g
];

/*
 * The stack is checked first, then the target: a CALL whose push would fault
 * raises #PF even when its target is not canonical (AMD, paged differential
 * tests); a faulting CALL changes nothing.
 */
const callRel: Handler = (cpu, i) => {
  const retLo = cpu.ripLo, retHi = cpu.ripHi;
  cpu.probePush64();
  cpu.jumpRel(i.rel);
  cpu.push64(retLo, retHi); // a stack fault rewinds RIP to the CALL
};

const callIndirect: Handler = (cpu, i) => {
  const lo = cpu.readOp(i, 0);
  const hi = cpu.vHi;
  const retLo = cpu.ripLo, retHi = cpu.ripHi;
  cpu.probePush64();
  cpu.jumpTo(lo, hi);
  cpu.push64(retLo, retHi);
};

const ret: Handler = (cpu, i) => {
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  const lo = cpu.pop64();
  const hi = cpu.vHi;
  if (!cpu.canonical(hi)) {
    // #GP(0) on the RET, which then has popped nothing.
    cpu.regLo[RSP] = spLo;
    cpu.regHi[RSP] = spHi;
    cpu.gp(0);
  }
  if (i.k0 === Operand.Imm) {
    const n = cpu.regLo[RSP] + (i.immLo & 0xffff);
    cpu.regLo[RSP] = n;
    if (n > 0xffffffff) cpu.regHi[RSP] = cpu.regHi[RSP] + 1;
  }
  cpu.ripLo = lo;
  cpu.ripHi = hi;
};

/** Decrement RCX (or ECX with a 0x67 prefix) and report whether it is now non-zero. */
function decrementCounter(cpu: Cpu, i: Insn): boolean {
  if (i.addrSize === 4) {
    const v = (cpu.regLo[RCX] - 1) >>> 0;
    cpu.setReg(RCX, 4, v, 0);
    return v !== 0;
  }
  const lo = cpu.regLo[RCX];
  const nl = (lo - 1) >>> 0;
  const nh = lo === 0 ? (cpu.regHi[RCX] - 1) >>> 0 : cpu.regHi[RCX];
  cpu.regLo[RCX] = nl;
  cpu.regHi[RCX] = nh;
  return (nl | nh) !== 0;
}

const LOOP = 0, LOOPE = 1, LOOPNE = 2;
function loop(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const nonZero = decrementCounter(cpu, i);
    const z = (cpu.rflags & ZF) !== 0;
    if (nonZero && (kind === LOOP || (kind === LOOPE && z) || (kind === LOOPNE && !z))) cpu.jumpRel(i.rel);
  };
}

const jrcxz: Handler = (cpu, i) => {
  const zero = i.op === 4 ? cpu.regLo[RCX] === 0 : (cpu.regLo[RCX] | cpu.regHi[RCX]) === 0;
  if (zero) cpu.jumpRel(i.rel);
};

/**
 * Load CS from the GDT. In long mode a code segment is 64-bit (L = 1) or
 * compatibility-mode 32-bit code (L = 0, D = 1); outside long mode L is
 * ignored and D = 1 makes it 32-bit code. 16-bit code is not modelled.
 */
export function loadCodeSegment(cpu: Cpu, selector: number): void {
  if ((selector & 0xfff8) === 0) cpu.gp(selector & 0xfffc);
  const lo = readDescriptor(cpu, selector);
  const hi = cpu.vHi;
  if ((hi & 0x1800) !== 0x1800) cpu.gp(selector & 0xfffc); // not a code segment
  const long = (hi & 0x200000) !== 0 && (cpu.efer & EFER_LMA) !== 0;
  if (!long) {
    if ((hi & 0x400000) === 0) cpu.gap(`far transfer to a 16-bit code segment (selector ${hex(selector)}) is not implemented`);
    const base = descriptorBase(lo, hi);
    if (base !== 0 || descriptorLimit(lo, hi) !== 0xfffff || (hi & 0x800000) === 0) {
      cpu.gap(`a non-flat 32-bit code segment (selector ${hex(selector)}, base ${hex(base)}): segment bases and limits are not modelled`);
    }
  }
  cpu.seg[1] = selector;
  cpu.setCodeMode(long);
}

function hex(v: number): string {
  return '0x' + v.toString(16);
}

/**
 * Far return (insn.op = operand size 8, 4 or 2): the offset and CS from
 * operand-sized stack slots, CS read first as AMD hardware does (a #PF's
 * CR2, paged differential tests); RSP changes only when the return completes.
 */
const retFar: Handler = (cpu, i) => {
  const size = i.op;
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  const cs = stackRead(cpu, spLo, spHi, size, size) & 0xffff;
  const lo = stackRead(cpu, spLo, spHi, 0, size);
  const hi = size === 8 ? cpu.vHi : 0;
  const oldCs = cpu.seg[1], oldLong = cpu.csLong;
  try {
    loadCodeSegment(cpu, cs);
    if (!cpu.canonical(hi)) cpu.gp(0); // checked after CS, as the SDM's RET pseudocode does
  } catch (e) {
    cpu.seg[1] = oldCs;
    cpu.setCodeMode(oldLong);
    throw e;
  }
  let n = spLo + 2 * size + (i.k0 === Operand.Imm ? i.immLo & 0xffff : 0);
  let h = spHi;
  if (n > 0xffffffff) {
    n -= TWO32;
    h = (h + 1) >>> 0;
  }
  cpu.regLo[RSP] = n;
  cpu.regHi[RSP] = h;
  cpu.ripLo = lo;
  cpu.ripHi = hi;
};

/**
 * CALL/JMP far through memory (insn.op = offset size: 4 for m16:32, 2 for
 * m16:16). AMD ignores REX.W here (m16:64 is read as m16:32, so its selector
 * comes from bits 32..47 of the offset), as the host CPU does. The offset is
 * zero-extended; CALL pushes CS, then the return offset, each in a slot of the
 * operand size. A fault (the selector, the stack) changes nothing.
 */
function farIndirect(call: boolean): Handler {
  return (cpu, i) => {
    const size = i.op;
    cpu.calcEA(i);
    const eaLo = cpu.eaLo, eaHi = cpu.eaHi;
    const offset = cpu.readLinear(eaLo, eaHi, size);
    const selLo = eaLo + size;
    const sel = cpu.readLinear(selLo > 0xffffffff ? selLo - TWO32 : selLo, selLo > 0xffffffff ? (eaHi + 1) >>> 0 : eaHi, 2);
    const retLo = size === 2 ? cpu.ripLo & 0xffff : cpu.ripLo;
    const oldCs = cpu.seg[1], oldLong = cpu.csLong;
    const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
    loadCodeSegment(cpu, sel);
    if (call) {
      try {
        pushSized(cpu, size, oldCs);
        pushSized(cpu, size, retLo);
      } catch (e) {
        cpu.seg[1] = oldCs;
        cpu.setCodeMode(oldLong);
        cpu.regLo[RSP] = spLo;
        cpu.regHi[RSP] = spHi;
        throw e;
      }
    }
    cpu.ripLo = size === 2 ? offset & 0xffff : offset >>> 0;
    cpu.ripHi = 0;
  };
}

/** Push a 2- or 4-byte value. */
function pushSized(cpu: Cpu, size: number, v: number): void {
  let lo = cpu.regLo[RSP] - size;
  let hi = cpu.regHi[RSP];
  if (lo < 0) {
    lo += TWO32;
    hi = (hi - 1) >>> 0;
  }
  cpu.writeLinear(lo, hi, size, v, 0);
  cpu.regLo[RSP] = lo;
  cpu.regHi[RSP] = hi;
}

const TWO32 = 4294967296;

/** Read `size` bytes of the stack at RSP + `offset` (8 bytes set vHi). */
function stackRead(cpu: Cpu, spLo: number, spHi: number, offset: number, size: number): number {
  const lo = spLo + offset;
  return lo > 0xffffffff ? cpu.readLinear(lo - TWO32, (spHi + 1) >>> 0, size) : cpu.readLinear(lo, spHi, size);
}

/** The 8-byte stack slot at RSP + `offset` (sets vHi). */
function stackSlot(cpu: Cpu, spLo: number, spHi: number, offset: number): number {
  return stackRead(cpu, spLo, spHi, offset, 8);
}

/**
 * IRETQ: RIP, CS, RFLAGS, RSP, SS from the stack (always all five in 64-bit
 * mode). The frame is read before anything changes, in the order AMD
 * hardware reads it: RFLAGS, then SS and RSP, then CS and RIP (which slot a
 * #PF's CR2 names, seen in the paged differential tests on an AMD host).
 */
const iretq: Handler = (cpu, i) => {
  if (i.op !== 8) cpu.gap('IRET with a 16/32-bit operand size is not implemented');
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  const flags = stackSlot(cpu, spLo, spHi, 16);
  const ss = stackSlot(cpu, spLo, spHi, 32) & 0xffff;
  const newSpLo = stackSlot(cpu, spLo, spHi, 24);
  const newSpHi = cpu.vHi;
  const cs = stackSlot(cpu, spLo, spHi, 8) & 0xffff;
  const ripLo = stackSlot(cpu, spLo, spHi, 0);
  const ripHi = cpu.vHi;
  const oldCs = cpu.seg[1], oldLong = cpu.csLong;
  try {
    if (cs !== cpu.seg[1]) loadCodeSegment(cpu, cs);
    if (!cpu.canonical(ripHi)) cpu.gp(0);
  } catch (e) {
    cpu.seg[1] = oldCs;
    cpu.setCodeMode(oldLong);
    throw e;
  }
  cpu.rflags = ((cpu.rflags & ~IRET_MASK) | (flags & IRET_MASK) | 2) >>> 0;
  cpu.seg[2] = ss;
  cpu.regLo[RSP] = newSpLo;
  cpu.regHi[RSP] = newSpHi;
  cpu.ripLo = ripLo;
  cpu.ripHi = ripHi;
};

const farCall = farIndirect(true);
const farJmp = farIndirect(false);

export function registerControlFlow(r: Registry): void {
  r.pick([Mnemonic.Jmp], (insn, ins) => {
    if (ins.code === Code.Jmp_m1632 || ins.code === Code.Jmp_m1664 || ins.code === Code.Jmp_m1616) {
      insn.op = ins.code === Code.Jmp_m1616 ? 2 : 4;
      return farJmp;
    }
    if (insn.k0 === Operand.Imm) return jmpRel;
    if (insn.k0 === Operand.Reg || insn.k0 === Operand.Mem) {
      if (insn.s0 === 8) return jmpIndirect;
    }
    return (cpu: Cpu) => cpu.gap('far or 16/32-bit indirect JMP is not implemented');
  });
  r.pick([Mnemonic.Call], (insn, ins) => {
    if (ins.code === Code.Call_m1632 || ins.code === Code.Call_m1664 || ins.code === Code.Call_m1616) {
      insn.op = ins.code === Code.Call_m1616 ? 2 : 4;
      return farCall;
    }
    if (insn.k0 === Operand.Imm) return callRel;
    if (insn.s0 === 8) return callIndirect;
    return (cpu: Cpu) => cpu.gap('far or 16/32-bit indirect CALL is not implemented');
  });
  r.handle([Mnemonic.Ret], ret);
  r.pick([Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
    Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg],
  (insn) => (insn.k0 === Operand.Imm && insn.cc >= 1 && insn.cc <= 16 ? JCC_BY_CC[insn.cc] : jcc));
  r.handle([Mnemonic.Loop], loop(LOOP));
  r.handle([Mnemonic.Loope], loop(LOOPE));
  r.handle([Mnemonic.Loopne], loop(LOOPNE));
  r.pick([Mnemonic.Jrcxz, Mnemonic.Jecxz], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Jecxz ? 4 : 8;
    return jrcxz;
  });
  r.pick([Mnemonic.Retf], (insn, ins) => {
    insn.op = ins.code === Code.Retfq || ins.code === Code.Retfq_imm16 ? 8 : ins.code === Code.Retfw || ins.code === Code.Retfw_imm16 ? 2 : 4;
    return retFar;
  });
  r.pick([Mnemonic.Iretq, Mnemonic.Iretd, Mnemonic.Iret], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Iretq ? 8 : 4;
    return iretq;
  });
}
