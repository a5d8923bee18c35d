import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeInsn, decodeRecord, type CodeBits } from '../../src/cpu/decode.js';
import { DecodeMemo } from '../../src/cpu/decode-memo.js';
import { Insn } from '../../src/cpu/insn.js';
import { INSN_FIELDS, insnFromRecord, type InsnRecord } from '../../src/cpu/insn-record.js';
import { gapHandler } from '../../src/cpu/exec/table.js';
import { bootDebian, kernelPath } from '../boot/helpers.js';

/*
 * Decoded instructions as records (src/cpu/insn-record.ts), which the CLI
 * saves between runs (test/cli/decoded-store.test.ts checks the saving): an
 * instruction rebuilt from a record must be what decoding its bytes gives
 * (decodeInsn is the reference; both sides are bzemu, the claim checked is
 * that they agree).
 */

/** An Insn's fields as plain data (the handler by name), to compare decodes. */
function fields(i: Insn | null): unknown {
  if (i === null) return null;
  return { ...i, exec: i.exec.name, bytes: [...i.bytes] };
}

/** Windows at every byte offset of the Debian 6.12 bzImage's first 6,000 bytes of decompressor code (also mid-instruction). */
function windows(): Array<{ window: Uint8Array; at: number }> {
  const image = readFileSync(kernelPath('debian-6.12'));
  const code = ((image[0x1f1] || 4) + 1) * 512;
  return Array.from({ length: 6000 }, (_, k) => ({ window: image.subarray(code + k, code + k + 15), at: 0x1000000 + code + k }));
}

describe('instruction records', () => {
  for (const bits of [64, 32] as CodeBits[]) {
    it(`rebuild what decoding gives (${bits}-bit code)`, () => {
      let kept = 0;
      for (const { window, at } of windows()) {
        const r = decodeRecord(window, at, 0, false, bits);
        if (r === null || r instanceof Insn) continue; // no record: undefined opcodes and forms without a handler
        kept++;
        expect(fields(insnFromRecord(r))).toEqual(fields(decodeInsn(window, at, 0, false, bits)));
      }
      expect(kept).toBeGreaterThan(5000); // nearly every offset decodes to something with a handler
    });
  }

  it('rebuild instructions V8 holds as it holds decoded ones (small integers stay small integers)', () => {
    // A double stored in a field V8 holds as a small integer changes that field for every Insn and slows the
    // handlers that read it (kernel-entry ran 4 % slower). V8 tells through %HaveSameMap, in a process of its own.
    const src = resolve('src/cpu');
    const script = join(mkdtempSync(join(tmpdir(), 'bzemu-insn-map-')), 'check.ts');
    writeFileSync(script, [
      `import { decodeInsn, decodeRecord } from ${JSON.stringify(join(src, 'decode.ts'))};`,
      `import { insnFromRecord } from ${JSON.stringify(join(src, 'insn-record.ts'))};`,
      'const sameMap = new Function("a", "b", "return %HaveSameMap(a, b)");',
      // A store, a register add, a call, a movzx with an index and a negative displacement, a far jump (32-bit code).
      'const codes = [[0x48, 0x89, 0x44, 0x24, 0x08], [0x48, 0x01, 0xc8], [0xe8, 0, 0, 0, 0], [0x0f, 0xb6, 0x4c, 0x0f, 0xf0]];',
      'const before = decodeInsn(Uint8Array.from(codes[0]), 0x1000, 0, false, 64);',
      'const rebuilt = codes.map((c) => insnFromRecord(decodeRecord(Uint8Array.from(c), 0x1000, 0, false, 64)));',
      'rebuilt.push(insnFromRecord(decodeRecord(Uint8Array.of(0xea, 0x78, 0x56, 0x34, 0x12, 0x10, 0x00), 0x1000, 0, false, 32)));',
      'const after = decodeInsn(Uint8Array.from(codes[1]), 0x1000, 0, false, 64);',
      'console.log(JSON.stringify([sameMap(before, after), ...rebuilt.map((r) => sameMap(before, r))]));',
    ].join('\n'));
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([true, true, true, true, true, true]);
  });

  it('keep every field of an instruction but its handler, its bytes and the pickers\' selector', () => {
    const own = Object.keys(new Insn(gapHandler, new Uint8Array(1))).filter((k) => k !== 'exec' && k !== 'bytes' && k !== 'op');
    expect([...INSN_FIELDS].sort()).toEqual(own.sort());
  });
});

describe('a decode memo holding records', () => {
  it('decodes nothing that its records have, and gives what decoding gives', () => {
    const all = windows();
    const first = new DecodeMemo();
    for (const { window, at } of all) first.decode(window, at, 0, 64);
    const second = new DecodeMemo();
    second.addRecords(first.records());
    let withoutRecord = 0;
    for (const { window, at } of all) {
      const fresh = decodeRecord(window, at, 0, false, 64);
      if (fresh instanceof Insn) withoutRecord++;
      expect(fields(second.decode(window, at, 0, 64))).toEqual(fields(decodeInsn(window, at, 0, false, 64)));
    }
    // Only windows no record describes (undefined opcodes, forms without a handler) went to the decoder.
    expect(second.decodedCount).toBe(withoutRecord);
    expect(withoutRecord).toBeLessThan(all.length / 4);
    expect(second.recordsAdded).toBe(0);
  });

  it('tells code sizes apart: a 32-bit record does not serve 64-bit code with the same first bytes', () => {
    const memo = new DecodeMemo();
    const incEax = decodeRecord(Uint8Array.of(0x40), 0, 0, false, 32); // 32-bit: inc eax (one byte)
    expect(incEax).not.toBeNull();
    memo.addRecords([incEax as InsnRecord]);
    const window = Uint8Array.of(0x40, 0x01, 0xc8, 0x90); // 64-bit: REX + add eax, ecx (three bytes)
    const got = memo.decode(window, 0, 0, 64)!;
    expect(got.len).toBe(3);
    expect(fields(got)).toEqual(fields(decodeInsn(window, 0, 0, false, 64)));
    expect(memo.decodedCount).toBe(1);
    expect(fields(memo.decode(Uint8Array.of(0x40, 0x90), 0, 0, 32))).toEqual(fields(decodeInsn(Uint8Array.of(0x40, 0x90), 0, 0, false, 32)));
    expect(memo.decodedCount).toBe(1); // served by the record
  });

  it('boots a kernel to extract_kernel without decoding, as a boot without records does', () => {
    const plain = bootDebian('debian-6.1-cloud', { poison: { kind: 'zero' } });
    const learning = new DecodeMemo();
    bootDebian('debian-6.1-cloud', { poison: { kind: 'zero' }, decoded: learning });
    expect(learning.recordsAdded).toBeGreaterThan(300);
    const saved = new DecodeMemo();
    saved.addRecords(learning.records());
    const replay = bootDebian('debian-6.1-cloud', { poison: { kind: 'zero' }, decoded: saved });
    expect(saved.decodedCount).toBe(0);
    const same = (r: typeof plain): unknown => ({ verdict: r.verdict, instructions: r.instructions, traceHash: r.traceHash, console: r.console, milestones: r.milestones });
    expect(plain.verdict).toBe('reached');
    expect(same(replay)).toEqual(same(plain));
  });
});
