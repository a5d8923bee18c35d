import { Code, Mnemonic, OpKind, Register } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler } from '../insn.js';
import { Operand } from '../insn.js';
import { IRET_MASK, POPF_MASK, RF } from '../flags.js';
import { RBP, RSP } from '../registers.js';
import type { Registry } from './table.js';
import { EFER_LMA, loadDataSegment } from './system.js';
import { loadCodeSegment } from './control.js';

/**
 * 32-bit code (protected mode and compatibility mode): the instructions whose
 * meaning depends on the stack width or the code segment, which is everything
 * that pushes, pops or transfers control. The stack is ESP in a flat stack
 * segment with B = 1 (segment loads in 32-bit code accept only flat
 * descriptors), slots are the operand size (4, or 2 with 0x66), and EIP wraps
 * at 4 GiB. Every other instruction shares the 64-bit handlers, which take
 * operand and address sizes from the decoded instruction.
 */

function push(cpu: Cpu, size: number, v: number): void {
  const sp = (cpu.regLo[RSP] - size) >>> 0;
  cpu.writeLinear(sp, 0, size, v, 0);
  cpu.setReg(RSP, 4, sp, 0);
}

/** Read the stack slot at ESP + offset. */
function peek(cpu: Cpu, offset: number, size: number): number {
  return cpu.readLinear((cpu.regLo[RSP] + offset) >>> 0, 0, size);
}

function discard(cpu: Cpu, bytes: number): void {
  cpu.setReg(RSP, 4, (cpu.regLo[RSP] + bytes) >>> 0, 0);
}

/** PUSH r/m, imm (insn.op = slot size). */
const pushValue: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 0);
  push(cpu, i.op, i.op === 2 ? v & 0xffff : v);
};

/** POP r/m: a memory destination is addressed with ESP already incremented; a fault there pops nothing. */
const popValue: Handler = (cpu, i) => {
  const sp = cpu.regLo[RSP];
  const v = peek(cpu, 0, i.op);
  discard(cpu, i.op);
  try {
    cpu.writeOp(i, 0, v, 0);
  } catch (e) {
    cpu.setReg(RSP, 4, sp, 0);
    throw e;
  }
};

/** PUSH sreg: the selector, zero-extended to the slot. */
const pushSegment: Handler = (cpu, i) => push(cpu, i.op >> 4, cpu.seg[i.op & 7]);

const popSegment: Handler = (cpu, i) => {
  const sel = peek(cpu, 0, i.op >> 4) & 0xffff;
  loadDataSegment(cpu, i.op & 7, sel);
  discard(cpu, i.op >> 4);
};

const pushf: Handler = (cpu, i) => {
  const v = (cpu.rflags & ~(RF | 0x20000)) >>> 0; // RF and VM are never pushed
  push(cpu, i.op, i.op === 2 ? v & 0xffff : v);
};

const popf: Handler = (cpu, i) => {
  const v = peek(cpu, 0, i.op);
  const mask = i.op === 2 ? POPF_MASK & 0xffff : POPF_MASK;
  cpu.rflags = ((cpu.rflags & ~(mask | (i.op === 2 ? 0 : RF))) | (v & mask) | 2) >>> 0;
  discard(cpu, i.op);
};

/** Near CALL: the return EIP is pushed before the branch (a stack fault leaves EIP on the CALL). */
const callRel: Handler = (cpu, i) => {
  push(cpu, 4, cpu.ripLo);
  cpu.ripLo = (cpu.ripLo + i.rel) >>> 0;
};

const callIndirect: Handler = (cpu, i) => {
  const target = cpu.readOp(i, 0);
  push(cpu, 4, cpu.ripLo);
  cpu.ripLo = target >>> 0;
};

const jmpIndirect: Handler = (cpu, i) => {
  cpu.ripLo = cpu.readOp(i, 0) >>> 0;
};

/** JMP ptr16:32 (insn.immLo = offset, insn.op = selector). */
const jmpFar: Handler = (cpu, i) => {
  loadCodeSegment(cpu, i.op);
  cpu.ripLo = i.immLo >>> 0;
  cpu.ripHi = 0;
};

/** Near RET [imm16]. */
const ret: Handler = (cpu, i) => {
  const target = peek(cpu, 0, 4);
  discard(cpu, 4 + (i.k0 === Operand.Imm ? i.immLo & 0xffff : 0));
  cpu.ripLo = target;
};

/**
 * IRETD in protected mode to the same privilege level: EIP, CS and EFLAGS from
 * the stack (no stack switch at CPL 0). A return to another privilege level or
 * an IRET in compatibility mode is not modelled.
 */
const iretd: Handler = (cpu) => {
  if ((cpu.efer & EFER_LMA) !== 0) cpu.gap('IRETD in compatibility mode is not implemented');
  const eip = peek(cpu, 0, 4);
  const cs = peek(cpu, 4, 4) & 0xffff;
  const flags = peek(cpu, 8, 4);
  if ((cs & 3) !== (cpu.seg[1] & 3)) cpu.gap(`IRETD to another privilege level (CS 0x${cs.toString(16)}) is not implemented`);
  if (cs !== cpu.seg[1]) loadCodeSegment(cpu, cs);
  cpu.rflags = ((cpu.rflags & ~IRET_MASK) | (flags & IRET_MASK) | 2) >>> 0;
  discard(cpu, 12);
  cpu.ripLo = eip;
  cpu.ripHi = 0;
};

/** LEAVE: ESP <- EBP, then pop EBP (BP with 0x66). */
const leave: Handler = (cpu, i) => {
  const sp = cpu.regLo[RSP];
  cpu.setReg(RSP, 4, cpu.regLo[RBP], 0);
  try {
    const v = peek(cpu, 0, i.op);
    discard(cpu, i.op);
    cpu.setReg(RBP, i.op, v, 0);
  } catch (e) {
    cpu.setReg(RSP, 4, sp, 0);
    throw e;
  }
};

/** ENTER imm16, 0 (nesting levels above 0 are not modelled in 32-bit code). */
const enter: Handler = (cpu, i) => {
  if ((i.imm2 & 31) !== 0 || i.op !== 4) cpu.gap('ENTER with a nesting level or a 16-bit operand size in 32-bit code is not implemented');
  const sp = cpu.regLo[RSP];
  push(cpu, 4, cpu.regLo[RBP]);
  const frame = cpu.regLo[RSP];
  const final = (frame - (i.immLo & 0xffff)) >>> 0;
  try {
    cpu.probeWrite(final, 0, 1);
  } catch (e) {
    cpu.setReg(RSP, 4, sp, 0);
    throw e;
  }
  cpu.setReg(RBP, 4, frame, 0);
  cpu.setReg(RSP, 4, final, 0);
};

const SEG_REGISTER = (reg: Register): boolean => reg >= Register.ES && reg <= Register.GS;

export function registerCode32(r: Registry): void {
  r.pick([Mnemonic.Push], (insn, ins) => {
    const size = -ins.stackPointerIncrement;
    if (ins.op0Kind === OpKind.Register && SEG_REGISTER(ins.op0Register)) {
      insn.op = (ins.op0Register - Register.ES) | (size << 4);
      return pushSegment;
    }
    insn.op = size;
    return pushValue;
  });
  r.pick([Mnemonic.Pop], (insn, ins) => {
    const size = ins.stackPointerIncrement;
    if (ins.op0Kind === OpKind.Register && SEG_REGISTER(ins.op0Register)) {
      insn.op = (ins.op0Register - Register.ES) | (size << 4);
      return popSegment;
    }
    insn.op = size;
    return popValue;
  });
  r.pick([Mnemonic.Pushf, Mnemonic.Pushfd], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Pushf ? 2 : 4;
    return pushf;
  });
  r.pick([Mnemonic.Popf, Mnemonic.Popfd], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Popf ? 2 : 4;
    return popf;
  });
  r.pick([Mnemonic.Call], (insn, ins) => {
    if (ins.code === Code.Call_rel32_32) return callRel;
    if (ins.code === Code.Call_rm32) return callIndirect;
    return (cpu: Cpu) => cpu.gap('far or 16-bit CALL in 32-bit code is not implemented');
  });
  r.pick([Mnemonic.Jmp], (insn, ins) => {
    if (ins.code === Code.Jmp_rel32_32 || ins.code === Code.Jmp_rel8_32) return (cpu, i) => { cpu.ripLo = (cpu.ripLo + i.rel) >>> 0; };
    if (ins.code === Code.Jmp_rm32) return jmpIndirect;
    if (ins.code === Code.Jmp_ptr1632) {
      insn.op = ins.farBranchSelector;
      insn.immLo = ins.farBranch32;
      return jmpFar;
    }
    return (cpu: Cpu) => cpu.gap('16-bit or far-indirect JMP in 32-bit code is not implemented');
  });
  r.pick([Mnemonic.Ret], (_insn, ins) => {
    if (ins.code === Code.Retnd || ins.code === Code.Retnd_imm16) return ret;
    return (cpu: Cpu) => cpu.gap('16-bit RET in 32-bit code is not implemented');
  });
  r.pick([Mnemonic.Iretd, Mnemonic.Iret, Mnemonic.Iretq], (_insn, ins) => {
    if (ins.mnemonic === Mnemonic.Iretd) return iretd;
    return (cpu: Cpu) => cpu.gap('16-bit IRET in 32-bit code is not implemented');
  });
  r.pick([Mnemonic.Leave], (insn, ins) => {
    insn.op = ins.code === Code.Leavew ? 2 : 4;
    return leave;
  });
  r.pick([Mnemonic.Enter], (insn, ins) => {
    insn.op = ins.code === Code.Enterw_imm16_imm8 ? 2 : 4;
    return enter;
  });
}
