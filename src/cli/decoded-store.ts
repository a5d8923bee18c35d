import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { threadId } from 'node:worker_threads';
import { DecodeMemo } from '../cpu/decode-memo.js';
import { recordDependencies } from '../cpu/decode.js';
import { INSN_FIELDS, RECORD_VALUES, type InsnRecord } from '../cpu/insn-record.js';
import { cacheDir } from '../kernel/cache-dir.js';

/*
 * Decoded instructions kept between CLI runs, in the bzemu cache: a boot
 * starts from what earlier boots of the same kernel file decoded
 * (DecodeMemo) and, if it decoded more, saves the lot when it is done. A
 * file's name carries a hash of everything a record depends on (decode.ts's
 * recordDependencies: the decoder's version and bzemu's own decoding code),
 * so a new iced or a changed decoder never reads an old file, and a hash of
 * the kernel file's path, size and modification time. The kernel part only
 * keeps each set as small as one kernel's code (a record serves any code
 * with its bytes): reading a set costs time in proportion to its size, and a
 * set shared by every kernel booted would grow past what a boot saves. A
 * damaged file reads as empty; an unusable cache directory costs the
 * decoding only.
 */

/** Records saved at most: those a boot used first, then older ones (a Debian kernel to its banner uses about 5,000). */
const KEPT_RECORDS = 1 << 14;
/** Sets kept in the directory (the newest): the kernels booted last, across checkouts sharing the cache. */
const KEPT_FILES = 24;
const PREFIX = 'instructions-';

export interface DecodedStore {
  /** The memo to boot with, holding the saved records. */
  readonly memo: DecodeMemo;
  /** Save the memo's records if this run decoded any the file lacked. */
  save(): void;
}

/** The kernel file's identity for naming its set: path, size and modification time. */
function kernelKey(kernelPath: string): string {
  let identity = resolve(kernelPath);
  try {
    const stat = statSync(kernelPath);
    identity += `\0${stat.size}\0${stat.mtimeMs}`;
  } catch {
    // not a file we can stat: named by its path alone
  }
  return createHash('sha256').update(identity).digest('hex').slice(0, 16);
}

/** The saved set for a boot of `kernelPath`. */
export function openDecodedStore(kernelPath: string, dir = join(cacheDir(), 'decoded')): DecodedStore {
  const fingerprint = createHash('sha256').update(recordDependencies()).digest('hex').slice(0, 24);
  const file = join(dir, `${PREFIX}${fingerprint}-${kernelKey(kernelPath)}.bin`);
  const memo = new DecodeMemo(1 << 16, false); // one boot at a time: no code pages to share
  try {
    memo.addRecords(readRecords(readFileSync(file), fingerprint));
  } catch {
    // no file yet, or an unreadable one: decode
  }
  return {
    memo,
    save(): void {
      if (memo.recordsAdded === 0) return;
      try {
        mkdirSync(dir, { recursive: true });
        // Aside and renamed: concurrent runs (the test suite's) never read half a file; the last one to finish wins.
        const part = `${file}.${process.pid}.${threadId}.part`;
        writeFileSync(part, writeRecords(memo.records().slice(0, KEPT_RECORDS), fingerprint));
        renameSync(part, file);
        const sets = readdirSync(dir).filter((f) => f.startsWith(PREFIX) && f.endsWith('.bin')).map((f) => join(dir, f));
        const byAge = sets.map((f) => ({ f, t: statSync(f).mtimeMs })).sort((a, b) => b.t - a.t);
        for (const { f } of byAge.slice(KEPT_FILES)) rmSync(f, { force: true });
      } catch {
        // a read-only or vanished cache directory, or another process pruning: nothing to do
      }
    },
  };
}

/*
 * The file: "BZDI", a format version, the fingerprint's length and text
 * (padded to 8 bytes), the record count (8 bytes), every record's values as
 * one block of little-endian doubles, then per record its code size, byte
 * count and bytes, and last the first 8 bytes of a SHA-256 of everything
 * before them. Reading checks all of it; anything off reads as no records.
 * The values are one aligned block so that reading them is one copy.
 */
const MAGIC = 0x4944_5a42; // "BZDI" as a little-endian uint32
const FORMAT = 2;
const DIGEST = 8;

function digest(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest().subarray(0, DIGEST);
}

const align8 = (n: number): number => (n + 7) & ~7;

export function writeRecords(records: readonly InsnRecord[], fingerprint: string): Uint8Array {
  const fp = Buffer.from(fingerprint, 'utf8');
  const valuesAt = align8(12 + fp.length) + 8;
  let codeBytes = 0;
  for (const r of records) codeBytes += 2 + r.bytes.length;
  const body = valuesAt + records.length * RECORD_VALUES * 8 + codeBytes;
  const out = Buffer.alloc(body + DIGEST);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(FORMAT, 4);
  out.writeUInt32LE(fp.length, 8);
  fp.copy(out, 12);
  out.writeUInt32LE(records.length, valuesAt - 8);
  let at = valuesAt;
  for (const r of records) {
    for (let k = 0; k < RECORD_VALUES; k++, at += 8) out.writeDoubleLE(r.values[k], at);
  }
  for (const r of records) {
    out[at] = r.bits;
    out[at + 1] = r.bytes.length;
    out.set(r.bytes, at + 2);
    at += 2 + r.bytes.length;
  }
  digest(out.subarray(0, body)).copy(out, body);
  return out;
}

const LEN_FIELD = INSN_FIELDS.indexOf('len');
/** Doubles are stored little-endian; a big-endian host reads them one by one. */
const LITTLE_ENDIAN = new Uint8Array(Float64Array.of(1).buffer)[7] === 0x3f;

/** The records saved in `data` under this fingerprint; [] for another fingerprint or format, or any damage. */
export function readRecords(data: Uint8Array, fingerprint: string): InsnRecord[] {
  const fp = Buffer.from(fingerprint, 'utf8');
  const file = Buffer.from(data.buffer, data.byteOffset, data.length);
  const valuesAt = align8(12 + fp.length) + 8;
  if (file.length < valuesAt + DIGEST) return [];
  if (file.readUInt32LE(0) !== MAGIC || file.readUInt32LE(4) !== FORMAT || file.readUInt32LE(8) !== fp.length) return [];
  if (!file.subarray(12, 12 + fp.length).equals(fp)) return [];
  const body = file.length - DIGEST;
  if (!digest(file.subarray(0, body)).equals(file.subarray(body))) return [];
  const count = file.readUInt32LE(valuesAt - 8);
  const codeAt = valuesAt + count * RECORD_VALUES * 8;
  if (codeAt > body) return [];
  const values = new Float64Array(count * RECORD_VALUES);
  if (LITTLE_ENDIAN) new Uint8Array(values.buffer).set(file.subarray(valuesAt, codeAt));
  else for (let k = 0; k < values.length; k++) values[k] = file.readDoubleLE(valuesAt + 8 * k);
  const records: InsnRecord[] = [];
  let at = codeAt;
  for (let n = 0; n < count; n++) {
    if (at + 2 > body) return [];
    const bits = file[at], len = file[at + 1];
    if ((bits !== 64 && bits !== 32) || len < 1 || len > 15 || at + 2 + len > body) return [];
    const own = values.subarray(n * RECORD_VALUES, (n + 1) * RECORD_VALUES);
    if (own[LEN_FIELD] !== len) return [];
    records.push({ bits, bytes: new Uint8Array(file.subarray(at + 2, at + 2 + len)), values: own });
    at += 2 + len;
  }
  return at === body ? records : [];
}
