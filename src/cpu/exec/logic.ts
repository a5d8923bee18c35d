import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { logicResult } from './flags-compute.js';
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

export function registerLogic(r: Registry): void {
  r.handle([Mnemonic.And], bitwise(AND, true));
  r.handle([Mnemonic.Or], bitwise(OR, true));
  r.handle([Mnemonic.Xor], bitwise(XOR, true));
  r.handle([Mnemonic.Test], bitwise(AND, false));
  r.handle([Mnemonic.Not], not);
  r.handle([Mnemonic.Andn], andn);
}
