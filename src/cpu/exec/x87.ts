import { Mnemonic } from '../iced.js';
import type { Handler } from '../insn.js';
import { Operand } from '../insn.js';
import type { Registry } from './table.js';

/**
 * The x87 control/status probe the decompressor runs (get_cpuflags): FNINIT,
 * FNSTSW, FNSTCW, FLDCW, FNCLEX. No floating-point arithmetic is modelled.
 */

const fninit: Handler = (cpu) => {
  cpu.fpuControl = 0x37f;
  cpu.fpuStatus = 0;
};

const fnstsw: Handler = (cpu, i) => {
  if (i.k0 === Operand.Reg) cpu.setReg(i.r0, 2, cpu.fpuStatus, 0);
  else cpu.writeOp(i, 0, cpu.fpuStatus, 0);
};

const fnstcw: Handler = (cpu, i) => cpu.writeOp(i, 0, cpu.fpuControl, 0);

const fldcw: Handler = (cpu, i) => {
  cpu.fpuControl = cpu.readOp(i, 0) & 0xffff;
};

const fnclex: Handler = (cpu) => {
  cpu.fpuStatus &= 0x7f00;
};

export function registerX87(r: Registry): void {
  r.handle([Mnemonic.Fninit], fninit);
  r.handle([Mnemonic.Fnstsw], fnstsw);
  r.handle([Mnemonic.Fnstcw], fnstcw);
  r.handle([Mnemonic.Fldcw], fldcw);
  r.handle([Mnemonic.Fnclex], fnclex);
}
