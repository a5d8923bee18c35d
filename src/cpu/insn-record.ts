import { Insn, type DecodeFacts } from './insn.js';
import { handlerFor, gapHandler } from './exec/table.js';
import type { CodeBits } from './decode.js';

/*
 * A decoded instruction as plain numbers: its Insn fields as the decoder set
 * them (before a handler was picked, since pickers adjust some) and the
 * decoder facts pickers read. Every instruction decode.ts decodes is built
 * from its record, so one rebuilt from a saved record (a decode cache kept
 * between runs, see DecodeMemo) is the same instruction by construction,
 * handler and all, without the decoder.
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

type InsnNumbers = Record<(typeof INSN_FIELDS)[number], number | boolean>;

/** The record of an instruction whose fields the decoder has just set (its handler not yet picked). */
export function recordOf(insn: Insn, facts: DecodeFacts, bits: CodeBits): InsnRecord {
  const values = new Float64Array(RECORD_VALUES);
  const fields = insn as unknown as InsnNumbers;
  for (let k = 0; k < INSN_FIELDS.length; k++) values[k] = Number(fields[INSN_FIELDS[k]]);
  for (let k = 0; k < FACT_FIELDS.length; k++) values[INSN_FIELDS.length + k] = Number(facts[FACT_FIELDS[k]]);
  return { bits, bytes: insn.bytes, values };
}

/** A new Insn from a record, its handler picked as for a fresh decode. */
export function insnFromRecord(record: InsnRecord): Insn {
  const insn = new Insn(gapHandler, record.bytes);
  const v = record.values;
  const fields = insn as unknown as InsnNumbers;
  for (let k = 0; k < INSN_FIELDS.length; k++) {
    const name = INSN_FIELDS[k];
    fields[name] = name === 'rmw' || name === 'lock' ? v[k] !== 0 : v[k];
  }
  const f = INSN_FIELDS.length;
  const facts: DecodeFacts = {
    code: v[f], mnemonic: v[f + 1], op0Kind: v[f + 2], op0Register: v[f + 3], op1Kind: v[f + 4], op1Register: v[f + 5],
    stackPointerIncrement: v[f + 6], isStringInstruction: v[f + 7] !== 0, farBranchSelector: v[f + 8], farBranch32: v[f + 9],
  };
  insn.exec = handlerFor(insn, facts, record.bits);
  return insn;
}

/*
 * Saved form of many records: "BZDI", a format version, the fingerprint's
 * length and text, the record count, then per record its code size, byte
 * count, bytes and values (little-endian doubles), and last a checksum of
 * everything before it. Reading checks all of it; anything off reads as no
 * records.
 */
const MAGIC = 0x4944_5a42; // "BZDI" read as a little-endian uint32
const FORMAT = 1;

export function encodeRecords(records: readonly InsnRecord[], fingerprint: string): Uint8Array {
  const fp = Buffer.from(fingerprint, 'utf8');
  let size = 16 + fp.length + 4;
  for (const r of records) size += 2 + r.bytes.length + RECORD_VALUES * 8;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT, true);
  view.setUint32(8, fp.length, true);
  out.set(fp, 12);
  let at = 12 + fp.length;
  view.setUint32(at, records.length, true);
  at += 4;
  for (const r of records) {
    out[at] = r.bits;
    out[at + 1] = r.bytes.length;
    out.set(r.bytes, at + 2);
    at += 2 + r.bytes.length;
    for (let k = 0; k < RECORD_VALUES; k++, at += 8) view.setFloat64(at, r.values[k], true);
  }
  view.setUint32(at, checksum(out, at), true);
  return out;
}

/** The records saved in `data` with this fingerprint; [] for another fingerprint, format or any damage. */
export function decodeRecords(data: Uint8Array, fingerprint: string): InsnRecord[] {
  const fp = Buffer.from(fingerprint, 'utf8');
  if (data.length < 20) return [];
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  if (view.getUint32(0, true) !== MAGIC || view.getUint32(4, true) !== FORMAT || view.getUint32(8, true) !== fp.length) return [];
  if (data.length < 16 + fp.length + 4 || !Buffer.from(data.buffer, data.byteOffset + 12, fp.length).equals(fp)) return [];
  if (view.getUint32(data.length - 4, true) !== checksum(data, data.length - 4)) return [];
  let at = 12 + fp.length;
  const count = view.getUint32(at, true);
  at += 4;
  const records: InsnRecord[] = [];
  const end = data.length - 4;
  for (let n = 0; n < count; n++) {
    if (at + 2 > end) return [];
    const bits = data[at], len = data[at + 1];
    if ((bits !== 64 && bits !== 32) || len < 1 || len > 15 || at + 2 + len + RECORD_VALUES * 8 > end) return [];
    const bytes = data.slice(at + 2, at + 2 + len);
    at += 2 + len;
    const values = new Float64Array(RECORD_VALUES);
    for (let k = 0; k < RECORD_VALUES; k++, at += 8) values[k] = view.getFloat64(at, true);
    if (values[INSN_FIELDS.indexOf('len')] !== len) return [];
    records.push({ bits, bytes, values });
  }
  return at === end ? records : [];
}

/** FNV-1a over the first `length` bytes. */
function checksum(data: Uint8Array, length: number): number {
  let h = 0x811c9dc5;
  for (let k = 0; k < length; k++) h = Math.imul(h ^ data[k], 0x01000193);
  return h >>> 0;
}
