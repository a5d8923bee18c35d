import type { Cpu } from './cpu.js';

/** How an operand of a decoded instruction is supplied. */
export const enum Operand {
  None = 0,
  Reg = 1,
  Mem = 2,
  Imm = 3,
}

/**
 * Initial value for number fields that will hold unsigned 32-bit values: -0 is
 * a double, so V8 gives the field a double representation from the start
 * (a field first seen holding small integers switches when it first holds
 * 2^31 or more, deoptimizing all code compiled against the object's shape).
 * It is 0 in every arithmetic use.
 */
export const DOUBLE_ZERO = -0;

/**
 * What handler pickers (exec/table.ts) read about an instruction beyond its
 * Insn fields: the decoder's own view of it, in plain numbers, so that an
 * instruction can be rebuilt from a saved record without the decoder
 * (insn-record.ts). Named as iced names them (iced Code, Mnemonic, OpKind and
 * Register numbers).
 */
export interface DecodeFacts {
  readonly code: number;
  readonly mnemonic: number;
  readonly op0Kind: number;
  readonly op0Register: number;
  readonly op1Kind: number;
  readonly op1Register: number;
  readonly stackPointerIncrement: number;
  readonly isStringInstruction: boolean;
  /** Far direct branch (JMP ptr16:32): the selector and offset; 0 otherwise. */
  readonly farBranchSelector: number;
  readonly farBranch32: number;
}

/** Executes one decoded instruction; RIP already points at the next instruction. */
export type Handler = (cpu: Cpu, insn: Insn) => void;

/**
 * One decoded instruction in plain numbers (no iced objects, no BigInt), built
 * once per guest-physical address and reused until that page is written.
 * All fields are always present so that V8 keeps a single object shape.
 */
export class Insn {
  exec: Handler;
  /** iced Mnemonic and Code, for tables, traces and diagnostics. */
  mnemonic = 0;
  code = 0;
  len = 0;
  opCount = 0;
  /** Operand kinds, register numbers (see registers.ts) and sizes in bytes. */
  k0 = Operand.None;
  k1 = Operand.None;
  k2 = Operand.None;
  r0 = 0;
  r1 = 0;
  r2 = 0;
  s0 = 0;
  s1 = 0;
  s2 = 0;
  /** Immediate, sign- or zero-extended as the instruction defines, split in 32-bit halves. */
  immLo = DOUBLE_ZERO;
  immHi = DOUBLE_ZERO;
  /** Second immediate (ENTER's nesting level). */
  imm2 = 0;
  /** Memory operand: base/index register (-1 none, 16 = RIP), scale, 64-bit displacement halves. */
  memBase = -1;
  memIndex = -1;
  memScale = 1;
  dispLo = DOUBLE_ZERO;
  dispHi = DOUBLE_ZERO;
  /** Segment override whose base applies in 64-bit mode: -1, or FS/GS register number. */
  memSeg = -1;
  /** 4 when a 0x67 prefix truncates addresses to 32 bits, else 8. */
  addrSize = 8;
  /** Operand 0 is read and written (read-modify-write). */
  rmw = false;
  /** Branch displacement relative to the next instruction (near branches). */
  rel = 0;
  /** Condition code (iced ConditionCode) for jcc/setcc/cmovcc. */
  cc = 0;
  /** 0 none, 1 rep/repe, 2 repne. */
  rep = 0;
  lock = false;
  /** The raw bytes, kept for traces and emulator-gap reports. */
  bytes: Uint8Array;
  /** Family-specific selector decided at decode time (for example which ALU operation). */
  op = 0;

  constructor(exec: Handler, bytes: Uint8Array) {
    this.exec = exec;
    this.bytes = bytes;
  }
}
