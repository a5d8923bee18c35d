import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { DecodeMemo } from '../cpu/decode-memo.js';
import { recordDependencies } from '../cpu/decode.js';
import { decodeRecords, encodeRecords } from '../cpu/insn-record.js';
import { cacheDir } from '../kernel/cache-dir.js';

/*
 * Decoded instructions kept between CLI runs, in the bzemu cache: a boot
 * starts from what earlier boots decoded (DecodeMemo) and, if it decoded
 * more, saves the lot when it is done. The file is named by a hash of
 * everything a record depends on (decode.ts's recordDependencies: the
 * decoder's version and bzemu's own decoding code), so a new iced or a
 * changed decoder starts a new file and never reads an old one. A damaged
 * file reads as empty; an unusable cache directory costs the decoding only.
 */

/** Records saved at most: those a boot used first, then older ones (a Debian kernel to its banner uses about 4,000). */
const KEPT_RECORDS = 1 << 15;
/** Saved sets kept in the directory (the newest): checkouts of different versions sharing a cache each keep theirs. */
const KEPT_FILES = 4;
const PREFIX = 'instructions-';

export interface DecodedStore {
  /** The memo to boot with, holding the saved records. */
  readonly memo: DecodeMemo;
  /** How many records were read from the cache. */
  readonly loaded: number;
  /** Save the memo's records if this run decoded any the file lacked. */
  save(): void;
}

export function openDecodedStore(dir = join(cacheDir(), 'decoded')): DecodedStore {
  const fingerprint = createHash('sha256').update(recordDependencies()).digest('hex').slice(0, 24);
  const file = join(dir, `${PREFIX}${fingerprint}.bin`);
  const memo = new DecodeMemo();
  let loaded = 0;
  try {
    const records = decodeRecords(readFileSync(file), fingerprint);
    memo.addRecords(records);
    loaded = records.length;
  } catch {
    // no file yet, or an unreadable one: decode
  }
  return {
    memo,
    loaded,
    save(): void {
      if (memo.recordsAdded === 0) return;
      try {
        mkdirSync(dir, { recursive: true });
        // Aside and renamed: concurrent runs (the test suite's) never read half a file; the last one to finish wins.
        const part = `${file}.${process.pid}.${threadId}.part`;
        writeFileSync(part, encodeRecords(memo.records().slice(0, KEPT_RECORDS), fingerprint));
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
