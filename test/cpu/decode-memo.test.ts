import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { decodeInsn } from '../../src/cpu/decode.js';
import { DecodeMemo } from '../../src/cpu/decode-memo.js';
import { kernelPath } from '../boot/helpers.js';
import { Cpu } from '../../src/cpu/cpu.js';
import { RAX } from '../../src/cpu/registers.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { BareMetalHost } from '../../src/platform/bare-host.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

/*
 * Decoded instructions shared between machines (src/cpu/decode-memo.ts): a
 * memo's answer for a byte window must be what decoding that window gives
 * (decodeInsn is the reference), wherever the window is decoded from.
 */

/** An Insn's fields as plain data (the handler by name), to compare decodes. */
function fields(i: ReturnType<typeof decodeInsn>): unknown {
  if (i === null) return null;
  return { ...i, exec: i.exec.name, bytes: [...i.bytes] };
}

describe('decode memo', () => {
  it('gives what decodeInsn gives for every window of real kernel code, and the same object again', () => {
    // 6,000 windows of the Debian 6.12 bzImage's decompressor code (from startup_32 on), at every byte offset (so also
    // starting mid-instruction), all decoded as 64-bit code.
    const image = readFileSync(kernelPath('debian-6.12'));
    const code = ((image[0x1f1] || 4) + 1) * 512;
    const memo = new DecodeMemo();
    const first = new Map<number, ReturnType<typeof decodeInsn>>();
    for (let pass = 0; pass < 2; pass++) {
      for (let at = code; at < code + 6000; at++) {
        const window = image.subarray(at, at + 15);
        const got = memo.decode(window, 0x1000000 + at, 0, 64);
        if (pass === 0) {
          expect(fields(got)).toEqual(fields(decodeInsn(window, 0x1000000 + at, 0, false, 64)));
          first.set(at, got);
        } else {
          expect(got).toBe(first.get(at)); // a hit: no decode, the same object
        }
      }
    }
    expect(memo.size).toBeGreaterThan(1000);
  });

  it('is the same at another address (branch and RIP-relative displacements are relative)', () => {
    const memo = new DecodeMemo();
    const jmp = Uint8Array.of(0xe9, 0x10, 0x00, 0x00, 0x00, 0x48, 0x8b, 0x05, 0x20, 0, 0, 0); // jmp +0x10; mov rax, [rip+0x20]
    const a = memo.decode(jmp, 0x1000, 0, 64)!;
    const b = memo.decode(jmp, 0x7654321, 0xffffffff, 64)!;
    expect(b).toBe(a);
    expect(fields(a)).toEqual(fields(decodeInsn(jmp, 0x7654321, 0xffffffff, false, 64)));
    const load = jmp.subarray(5);
    expect(fields(memo.decode(load, 0x2000, 0, 64))).toEqual(fields(decodeInsn(load, 0x90000, 0, false, 64)));
  });

  it('tells code sizes, windows that end too early and different bytes apart', () => {
    const memo = new DecodeMemo();
    const bytes = Uint8Array.of(0x48, 0x01, 0xd8, 0x90); // add rax, rbx in 64-bit code; dec eax, add eax, ebx in 32-bit code
    const long = memo.decode(bytes, 0, 0, 64)!;
    const legacy = memo.decode(bytes, 0, 0, 32)!;
    expect(long.len).toBe(3);
    expect(legacy.len).toBe(1);
    expect(fields(legacy)).toEqual(fields(decodeInsn(bytes, 0, 0, false, 32)));
    // A window that ends inside an instruction has no answer, and does not stand in the way of the whole one.
    const mov = Uint8Array.of(0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8); // mov rax, imm64
    expect(memo.decode(mov.subarray(0, 6), 0, 0, 64)).toBeNull();
    expect(memo.decode(mov, 0, 0, 64)!.len).toBe(10);
    // One different byte inside the instruction: a different instruction, whatever the memo holds.
    const other = Uint8Array.from(mov);
    other[9] = 9;
    const o = memo.decode(other, 0, 0, 64)!;
    expect(o.immHi).toBe(0x09070605);
    expect(memo.decode(mov, 0, 0, 64)!.immHi).toBe(0x08070605);
  });

  it('starts again when full', () => {
    const memo = new DecodeMemo(4);
    for (let k = 0; k < 6; k++) memo.decode(Uint8Array.of(0xb8, k, 0, 0, 0), 0, 0, 64);
    expect(memo.size).toBeLessThanOrEqual(4);
    expect(memo.decode(Uint8Array.of(0xb8, 5, 0, 0, 0), 0, 0, 64)!.immLo).toBe(5);
  });

  it('shares a code page\'s instructions only with a page of the same bytes and code size', () => {
    const memo = new DecodeMemo();
    const page = new Uint8Array(4096).fill(0x90);
    const insns = memo.pageInsns(7, 64, page)!;
    const nop = decodeInsn(page, 0, 0, false, 64)!;
    insns.set(0, nop);
    // The same bytes (another copy): the same instructions.
    expect(memo.pageInsns(7, 64, page.slice())!.get(0)).toBe(nop);
    // One byte different, or 32-bit code: nothing known.
    const changed = page.slice();
    changed[4095] = 0xc3;
    expect(memo.pageInsns(7, 64, changed)!.size).toBe(0);
    expect(memo.pageInsns(7, 32, changed)!.size).toBe(0);
    // A memo for one boot shares no pages.
    expect(new DecodeMemo(1 << 16, false).pageInsns(7, 64, page)).toBeNull();
  });

  it('machines sharing a memo run what their own page holds', () => {
    // CPUs run code at the same physical page (paging off, 64-bit code as runSnippet sets it up), sharing one memo;
    // the page holds mov eax, 1; hlt or mov eax, 2; hlt.
    const memo = new DecodeMemo();
    let decodes = 0;
    const decode = memo.decode.bind(memo);
    memo.decode = (...args) => {
      decodes++;
      return decode(...args);
    };
    const run = (value: number): { rax: bigint; decoded: number } => {
      const mem = new SparseMemory(1 << 24, { kind: 'zero' });
      mem.writeBytes(0x400000, Uint8Array.of(0xb8, value, 0, 0, 0, 0xf4));
      const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()), 4096, memo);
      cpu.cr0 = 0x11;
      cpu.efer = 0x500;
      cpu.ripLo = 0x400000;
      cpu.ripHi = 0;
      decodes = 0;
      cpu.run(100);
      return { rax: cpu.reg64(RAX), decoded: decodes };
    };
    expect(run(1)).toEqual({ rax: 1n, decoded: 2 });
    // The same bytes again: the instructions come from the shared page (not even looked up by window).
    expect(run(1)).toEqual({ rax: 1n, decoded: 0 });
    // Other bytes at the same page: its own instructions.
    expect(run(2)).toEqual({ rax: 2n, decoded: 2 });
    expect(run(1)).toEqual({ rax: 1n, decoded: 2 });
  });
});
