import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { CF } from '../flags.js';
import { add, sub } from './flags-compute.js';
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

export function registerArithmetic(r: Registry): void {
  r.handle([Mnemonic.Add], binary(add, false, true));
  r.handle([Mnemonic.Adc], binary(add, true, true));
  r.handle([Mnemonic.Sub], binary(sub, false, true));
  r.handle([Mnemonic.Sbb], binary(sub, true, true));
  r.handle([Mnemonic.Cmp], binary(sub, false, false));
  r.handle([Mnemonic.Inc], incDec(false));
  r.handle([Mnemonic.Dec], incDec(true));
  r.handle([Mnemonic.Neg], neg);
}
