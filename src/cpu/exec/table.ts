import type { Cpu } from '../cpu.js';
import type { DecodeFacts, Handler, Insn } from '../insn.js';
import { disassemble } from '../decode.js';
import { registerArithmetic } from './arithmetic.js';
import { registerLogic } from './logic.js';
import { registerShifts } from './shift.js';
import { registerMulDiv } from './muldiv.js';
import { registerBits } from './bits.js';
import { registerDataMovement } from './data.js';
import { registerStack } from './stack.js';
import { registerControlFlow } from './control.js';
import { registerStrings } from './string.js';
import { registerSystem } from './system.js';
import { registerX87 } from './x87.js';
import { registerCode32 } from './code32.js';

/** Chooses the handler for a decoded instruction (and may fill `insn.op`). */
export type HandlerPicker = (insn: Insn, ins: DecodeFacts) => Handler;

/** How each family file adds its mnemonics. */
export interface Registry {
  /** One handler for every form of these mnemonics. */
  handle(mnemonics: readonly number[], handler: Handler): void;
  /** A decode-time choice among handlers. */
  pick(mnemonics: readonly number[], picker: HandlerPicker): void;
}

function registryFor(table: Map<number, HandlerPicker>): Registry {
  const registry: Registry = {
    handle(mnemonics, handler) {
      registry.pick(mnemonics, () => handler);
    },
    pick(mnemonics, picker) {
      for (const m of mnemonics) {
        if (table.has(m)) throw new Error(`mnemonic ${m} defined twice`);
        table.set(m, picker);
      }
    },
  };
  return registry;
}

const table = new Map<number, HandlerPicker>();
const define = registryFor(table);
/** 32-bit code's own handlers, where the stack width or the mode changes what an instruction does; the rest is shared. */
const table32 = new Map<number, HandlerPicker>();

registerArithmetic(define);
registerLogic(define);
registerShifts(define);
registerMulDiv(define);
registerBits(define);
registerDataMovement(define);
registerStack(define);
registerControlFlow(define);
registerStrings(define);
registerSystem(define);
registerX87(define);
registerCode32(registryFor(table32));

export function handlerFor(insn: Insn, ins: DecodeFacts, bits: 64 | 32 = 64): Handler {
  const pick = (bits === 32 ? table32.get(ins.mnemonic) : undefined) ?? table.get(ins.mnemonic);
  return pick === undefined ? gapHandler : pick(insn, ins);
}

/** Mnemonics with a handler (coverage reports). */
export function implementedMnemonics(): number[] {
  return [...table.keys()];
}

export const gapHandler: Handler = (cpu: Cpu, insn: Insn) => {
  cpu.ripLo = cpu.curRipLo;
  cpu.ripHi = cpu.curRipHi;
  cpu.gap(`unimplemented instruction${cpu.csLong ? '' : ' in 32-bit code'}: ${disassemble(insn.bytes, cpu.curRipLo, cpu.curRipHi, cpu.csLong ? 64 : 32)}`);
};

export const undefinedOpcode: Handler = (cpu: Cpu) => cpu.ud();
