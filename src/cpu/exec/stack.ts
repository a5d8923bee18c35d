import { Code, Mnemonic, OpKind, Register } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler } from '../insn.js';
import { Operand } from '../insn.js';
import { ACCESS_WRITE } from '../mmu.js';
import { POPF_MASK, RF } from '../flags.js';
import { RBP, RSP } from '../registers.js';
import type { Registry } from './table.js';
import { loadDataSegment } from './system.js';

/** PUSH/POP (64- and 16-bit), PUSHFQ/POPFQ, ENTER/LEAVE, PUSH/POP FS/GS. */

function push16(cpu: Cpu, v: number): void {
  const lo = cpu.regLo[RSP] - 2;
  const sLo = lo < 0 ? lo + 4294967296 : lo;
  const sHi = lo < 0 ? (cpu.regHi[RSP] - 1) >>> 0 : cpu.regHi[RSP];
  cpu.writeLinear(sLo, sHi, 2, v, 0);
  cpu.regLo[RSP] = sLo;
  cpu.regHi[RSP] = sHi;
}

function pop16(cpu: Cpu): number {
  const v = cpu.readLinear(cpu.regLo[RSP], cpu.regHi[RSP], 2);
  const n = cpu.regLo[RSP] + 2;
  cpu.regLo[RSP] = n;
  if (n > 0xffffffff) cpu.regHi[RSP] = cpu.regHi[RSP] + 1;
  return v;
}

const push: Handler = (cpu, i) => {
  const v = cpu.readOp(i, 0);
  if (i.s0 === 2) push16(cpu, v);
  else cpu.push64(v, i.k0 === Operand.Reg && i.s0 !== 8 ? 0 : cpu.vHi);
};

const pop: Handler = (cpu, i) => {
  // The destination address (if memory) uses RSP after the increment, as hardware does.
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  const v = i.s0 === 2 ? pop16(cpu) : cpu.pop64();
  const vHi = i.s0 === 2 ? 0 : cpu.vHi;
  try {
    cpu.writeOp(i, 0, v, vHi);
  } catch (e) {
    cpu.regLo[RSP] = spLo;
    cpu.regHi[RSP] = spHi;
    throw e;
  }
};

/** PUSH/POP of a segment register: insn.op = register number, plus SEG16 for a 16-bit (0x66) operand size. */
const SEG16 = 8;

const pushSegment: Handler = (cpu, i) => {
  const v = cpu.seg[i.op & 7];
  if ((i.op & SEG16) !== 0) push16(cpu, v);
  else cpu.push64(v, 0);
};

/** POP into a segment register loads it as MOV does (FS/GS take their base from the descriptor); a fault pops nothing. */
const popSegment: Handler = (cpu, i) => {
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  const sel = ((i.op & SEG16) !== 0 ? pop16(cpu) : cpu.pop64()) & 0xffff;
  try {
    loadDataSegment(cpu, i.op & 7, sel);
  } catch (e) {
    cpu.regLo[RSP] = spLo;
    cpu.regHi[RSP] = spHi;
    throw e;
  }
};

const pushf: Handler = (cpu, i) => {
  // RF and VM are never pushed.
  const v = (cpu.rflags & ~(RF | 0x20000)) >>> 0;
  if (i.op === 2) push16(cpu, v & 0xffff);
  else cpu.push64(v, 0);
};

const popf: Handler = (cpu, i) => {
  if (i.op === 2) {
    // 16-bit POPF: FLAGS[15:0] only; RF and the other upper bits stay.
    const v = pop16(cpu);
    cpu.rflags = ((cpu.rflags & ~(POPF_MASK & 0xffff)) | (v & POPF_MASK & 0xffff) | 2) >>> 0;
    return;
  }
  const v = cpu.pop64();
  cpu.rflags = ((cpu.rflags & ~(POPF_MASK | RF)) | (v & POPF_MASK) | 2) >>> 0;
};

/** Push `size` (2 or 8) bytes. */
function pushSized(cpu: Cpu, size: number, lo: number, hi: number): void {
  if (size === 2) push16(cpu, lo & 0xffff);
  else cpu.push64(lo, hi);
}

/**
 * ENTER imm16, imm8 (insn.op = operand size, 8 or 2). A fault part way (a push,
 * a read of an outer frame pointer) leaves RSP and RBP as they were.
 */
const enter: Handler = (cpu, i) => {
  const size = i.op;
  const frameSize = i.immLo & 0xffff;
  const level = i.imm2 & 31;
  const spLo = cpu.regLo[RSP], spHi = cpu.regHi[RSP];
  try {
    pushSized(cpu, size, cpu.regLo[RBP], cpu.regHi[RBP]);
    const frameLo = cpu.regLo[RSP], frameHi = cpu.regHi[RSP];
    if (level > 0) {
      let bpLo = cpu.regLo[RBP], bpHi = cpu.regHi[RBP];
      for (let k = 1; k < level; k++) {
        let l = bpLo - size;
        if (l < 0) { l += 4294967296; bpHi = (bpHi - 1) >>> 0; }
        bpLo = l;
        const v = cpu.readLinear(bpLo, bpHi, size);
        pushSized(cpu, size, v, cpu.vHi);
      }
      pushSized(cpu, size, frameLo, frameHi);
    }
    let l = cpu.regLo[RSP] - frameSize;
    let h = cpu.regHi[RSP];
    if (l < 0) { l += 4294967296; h = (h - 1) >>> 0; }
    // The final stack pointer must be writable before ENTER completes (a #PF there has CR2 = the final RSP).
    cpu.mmu.translate(l, h, ACCESS_WRITE);
    cpu.regLo[RSP] = l;
    cpu.regHi[RSP] = h;
    cpu.setReg(RBP, size, frameLo, frameHi);
  } catch (e) {
    cpu.regLo[RSP] = spLo;
    cpu.regHi[RSP] = spHi;
    throw e;
  }
};

/** LEAVE: RSP <- RBP, then pop RBP (BP only with a 16-bit operand size). */
const leave: Handler = (cpu, i) => {
  const saveLo = cpu.regLo[RSP], saveHi = cpu.regHi[RSP];
  cpu.regLo[RSP] = cpu.regLo[RBP];
  cpu.regHi[RSP] = cpu.regHi[RBP];
  try {
    if (i.op === 2) cpu.setReg(RBP, 2, pop16(cpu), 0);
    else {
      const v = cpu.pop64();
      cpu.regLo[RBP] = v;
      cpu.regHi[RBP] = cpu.vHi;
    }
  } catch (e) {
    cpu.regLo[RSP] = saveLo;
    cpu.regHi[RSP] = saveHi;
    throw e;
  }
};

export function registerStack(r: Registry): void {
  r.pick([Mnemonic.Push], (insn, ins) => {
    if (ins.op0Kind === OpKind.Register && ins.op0Register >= Register.ES && ins.op0Register <= Register.GS) {
      insn.op = (ins.op0Register - Register.ES) | (ins.stackPointerIncrement === -2 ? SEG16 : 0);
      return pushSegment;
    }
    if (insn.k0 === Operand.Imm) insn.s0 = ins.stackPointerIncrement === -2 ? 2 : 8; // 0x66 pushes a word
    return push;
  });
  r.pick([Mnemonic.Pop], (insn, ins) => {
    if (ins.op0Kind === OpKind.Register && ins.op0Register >= Register.ES && ins.op0Register <= Register.GS) {
      insn.op = (ins.op0Register - Register.ES) | (ins.stackPointerIncrement === 2 ? SEG16 : 0);
      return popSegment;
    }
    return pop;
  });
  r.pick([Mnemonic.Pushf, Mnemonic.Pushfq], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Pushf ? 2 : 8;
    return pushf;
  });
  r.pick([Mnemonic.Popf, Mnemonic.Popfq], (insn, ins) => {
    insn.op = ins.mnemonic === Mnemonic.Popf ? 2 : 8;
    return popf;
  });
  r.pick([Mnemonic.Enter], (insn, ins) => {
    insn.op = ins.code === Code.Enterw_imm16_imm8 ? 2 : 8;
    return enter;
  });
  r.pick([Mnemonic.Leave], (insn, ins) => {
    insn.op = ins.code === Code.Leavew ? 2 : 8;
    return leave;
  });
}

export { push16, pop16 };
