import { Insn, type DecodeFacts } from './insn.js';
import { handlerFor, gapHandler } from './exec/table.js';
import type { CodeBits } from './decode.js';

/*
 * A decoded instruction as plain numbers: its Insn fields as the decoder set
 * them (before a handler was picked, since pickers adjust some) and the
 * decoder facts pickers read. An instruction rebuilt from its record, also
 * one saved by an earlier run (see DecodeMemo), is what decodeInsn gives for
 * its bytes, handler and all, without the decoder
 * (test/cpu/insn-record.test.ts checks this on real code).
 */

/** Insn fields a record keeps, in order (all but the handler, the bytes and what pickers set). */
export const INSN_FIELDS = ['mnemonic', 'code', 'len', 'opCount', 'k0', 'k1', 'k2', 'r0', 'r1', 'r2', 's0', 's1', 's2',
  'immLo', 'immHi', 'imm2', 'memBase', 'memIndex', 'memScale', 'dispLo', 'dispHi', 'memSeg', 'addrSize', 'rmw', 'rel',
  'cc', 'rep', 'lock'] as const;
/** DecodeFacts fields a record keeps, after the Insn fields. */
const FACT_FIELDS = ['code', 'mnemonic', 'op0Kind', 'op0Register', 'op1Kind', 'op1Register', 'stackPointerIncrement',
  'isStringInstruction', 'farBranchSelector', 'farBranch32'] as const;
/** Numbers per record. */
export const RECORD_VALUES = INSN_FIELDS.length + FACT_FIELDS.length;
/** The layout's description: part of a saved file's fingerprint, so a changed layout never reads an old file. */
export const RECORD_LAYOUT = [...INSN_FIELDS, '|', ...FACT_FIELDS].join(',');

export interface InsnRecord {
  readonly bits: CodeBits;
  /** The instruction's own bytes (no more). */
  readonly bytes: Uint8Array;
  /** INSN_FIELDS then FACT_FIELDS (booleans as 0/1); numbers exactly as decoded (a double holds each). */
  readonly values: Float64Array;
}

/** The record of an instruction whose fields the decoder has just set (its handler not yet picked). */
export function recordOf(insn: Insn, facts: DecodeFacts, bits: CodeBits): InsnRecord {
  const values = Float64Array.of(insn.mnemonic, insn.code, insn.len, insn.opCount, insn.k0, insn.k1, insn.k2,
    insn.r0, insn.r1, insn.r2, insn.s0, insn.s1, insn.s2, insn.immLo, insn.immHi, insn.imm2, insn.memBase,
    insn.memIndex, insn.memScale, insn.dispLo, insn.dispHi, insn.memSeg, insn.addrSize, insn.rmw ? 1 : 0, insn.rel,
    insn.cc, insn.rep, insn.lock ? 1 : 0,
    facts.code, facts.mnemonic, facts.op0Kind, facts.op0Register, facts.op1Kind, facts.op1Register,
    facts.stackPointerIncrement, facts.isStringInstruction ? 1 : 0, facts.farBranchSelector, facts.farBranch32);
  return { bits, bytes: insn.bytes, values };
}

/**
 * A new Insn from a record, its handler picked as for a fresh decode. Field
 * by field in INSN_FIELDS' order, written out: the CLI rebuilds hundreds of
 * instructions in a cold process, where stores by computed name are slow.
 * Small integers go in as int32 (`| 0`): a double read from the record,
 * stored as it is, would change how V8 holds that field in every Insn (and
 * slow the handlers that read it); the four fields an Insn starts as doubles
 * (DOUBLE_ZERO) take the values as they are.
 */
export function insnFromRecord(record: InsnRecord): Insn {
  const insn = new Insn(gapHandler, record.bytes);
  const v = record.values;
  insn.mnemonic = v[0] | 0; insn.code = v[1] | 0; insn.len = v[2] | 0; insn.opCount = v[3] | 0;
  insn.k0 = v[4] | 0; insn.k1 = v[5] | 0; insn.k2 = v[6] | 0; insn.r0 = v[7] | 0; insn.r1 = v[8] | 0; insn.r2 = v[9] | 0;
  insn.s0 = v[10] | 0; insn.s1 = v[11] | 0; insn.s2 = v[12] | 0; insn.immLo = v[13]; insn.immHi = v[14]; insn.imm2 = v[15] | 0;
  insn.memBase = v[16] | 0; insn.memIndex = v[17] | 0; insn.memScale = v[18] | 0; insn.dispLo = v[19]; insn.dispHi = v[20];
  insn.memSeg = v[21] | 0; insn.addrSize = v[22] | 0; insn.rmw = v[23] !== 0; insn.rel = smallInt(v[24]); insn.cc = v[25] | 0;
  insn.rep = v[26] | 0; insn.lock = v[27] !== 0;
  // Pickers copy some of these into fields (the far branch's selector into op, its offset into the double immLo).
  const facts: DecodeFacts = {
    code: v[28] | 0, mnemonic: v[29] | 0, op0Kind: v[30] | 0, op0Register: v[31] | 0, op1Kind: v[32] | 0, op1Register: v[33] | 0,
    stackPointerIncrement: v[34] | 0, isStringInstruction: v[35] !== 0, farBranchSelector: v[36] | 0, farBranch32: v[37],
  };
  insn.exec = handlerFor(insn, facts, record.bits);
  return insn;
}

/** A whole number in int32 range as an int32 (V8 keeps it as a small integer); any other value as it is. */
function smallInt(x: number): number {
  return x === (x | 0) ? x | 0 : x;
}
