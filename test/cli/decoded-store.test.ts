import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { decodeRecord, type CodeBits } from '../../src/cpu/decode.js';
import { Insn } from '../../src/cpu/insn.js';
import type { InsnRecord } from '../../src/cpu/insn-record.js';
import { readRecords, writeRecords } from '../../src/cli/decoded-store.js';
import { kernelPath } from '../boot/helpers.js';

/*
 * The file the CLI keeps decoded instructions in (src/cli/decoded-store.ts):
 * records read back exactly as written, and only from a whole, undamaged
 * file saved under the same fingerprint. (test/cli/cli-decoded-cache.test.ts
 * checks the CLI's use of it.)
 */

/** Records of real code: the Debian 6.12 bzImage's decompressor, at every byte offset of its first 3,000 bytes. */
function records(bits: CodeBits): InsnRecord[] {
  const image = readFileSync(kernelPath('debian-6.12'));
  const code = ((image[0x1f1] || 4) + 1) * 512;
  const out: InsnRecord[] = [];
  for (let k = 0; k < 3000; k++) {
    const r = decodeRecord(image.subarray(code + k, code + k + 15), 0x1000000 + code + k, 0, false, bits);
    if (r !== null && !(r instanceof Insn)) out.push(r);
  }
  return out;
}

const FINGERPRINT = 'test fingerprint';
const plain = (r: InsnRecord): unknown => ({ bits: r.bits, bytes: [...r.bytes], values: [...r.values] });

describe('the saved decoded instructions file', () => {
  it('reads back every record exactly as written', () => {
    const all = [...records(64), ...records(32)];
    expect(all.length).toBeGreaterThan(5000);
    const back = readRecords(writeRecords(all, FINGERPRINT), FINGERPRINT);
    expect(back.map(plain)).toEqual(all.map(plain));
    expect(readRecords(writeRecords([], FINGERPRINT), FINGERPRINT)).toEqual([]);
  });

  it('reads as nothing when incomplete, damaged or saved under another fingerprint', () => {
    const saved = writeRecords(records(64).slice(0, 200), FINGERPRINT);
    expect(readRecords(saved, FINGERPRINT)).toHaveLength(200);
    expect(readRecords(saved, 'another fingerprint')).toEqual([]);
    expect(readRecords(saved, FINGERPRINT.slice(0, -1) + 'x')).toEqual([]);
    for (const length of [0, 10, saved.length >> 1, saved.length - 1]) expect(readRecords(saved.subarray(0, length), FINGERPRINT)).toEqual([]);
    const longer = new Uint8Array(saved.length + 1);
    longer.set(saved);
    expect(readRecords(longer, FINGERPRINT)).toEqual([]);
    for (const at of [0, 5, 40, saved.length >> 1, saved.length - 12, saved.length - 1]) {
      const damaged = Uint8Array.from(saved);
      damaged[at] ^= 0x10;
      expect(readRecords(damaged, FINGERPRINT)).toEqual([]);
    }
  });
});
