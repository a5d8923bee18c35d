import { Register } from './iced.js';

/** General-purpose register numbers as the hardware encodes them. */
export const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;

/** Register operand encoding inside decoded instructions: 0..15 GPR, 16..19 AH/CH/DH/BH. */
export const HIGH8 = 16;

export const GPR_NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** Segment registers in encoding order. */
export const ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5;

/** Map an iced general-purpose register to (index, size in bytes); null for anything else. */
export function gprOf(reg: Register): { index: number; size: number } | null {
  if (reg >= Register.AL && reg <= Register.BL) return { index: reg - Register.AL, size: 1 };
  if (reg >= Register.AH && reg <= Register.BH) return { index: HIGH8 + (reg - Register.AH), size: 1 };
  if (reg >= Register.SPL && reg <= Register.R15L) return { index: 4 + (reg - Register.SPL), size: 1 };
  if (reg >= Register.AX && reg <= Register.R15W) return { index: reg - Register.AX, size: 2 };
  if (reg >= Register.EAX && reg <= Register.R15D) return { index: reg - Register.EAX, size: 4 };
  if (reg >= Register.RAX && reg <= Register.R15) return { index: reg - Register.RAX, size: 8 };
  return null;
}

export function segmentOf(reg: Register): number {
  if (reg >= Register.ES && reg <= Register.GS) return reg - Register.ES;
  return -1;
}

/** Control register number for an iced register (CR0..CR15), else -1. */
export function controlRegOf(reg: Register): number {
  if (reg >= Register.CR0 && reg <= Register.CR15) return reg - Register.CR0;
  return -1;
}
