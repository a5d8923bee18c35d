import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { RAX, RBX, RCX, RDI, RDX, RSI } from '../../src/cpu/registers.js';
import { identityMappedCpu } from '../long-mode-cpu.js';
import { cpuOutcome, type CpuOutcome } from './cpu-outcome.js';
import { decodeInsn } from '../../src/cpu/decode.js';
import { fillLoop } from '../../src/cpu/translate/fill-loop.js';
import type { BlockInsn } from '../../src/cpu/block.js';

/*
 * Fill loops (translate/fill-loop.ts): a translated loop that stores one
 * value at consecutive addresses does many passes at once. Nothing of that
 * may show. Each loop below runs twice from the same state, translated from
 * its first entry and in the interpreter alone, and the two runs must agree
 * on every register, RFLAGS, RIP, the retired count, the trace hash, the last
 * 64 retired RIPs and the bytes around the filled range (the interpreter's
 * values are bzemu's own, the reference for the fast path). The filled bytes
 * are also checked against what the loop stores architecturally.
 */

const CODE = 0x300000, FILL = 0x100ff3;
const HLT = 0xf4;

interface Case {
  name: string;
  code: number[];
  regs: Array<[number, number, number?]>;
  /** What the loop stores architecturally: `length` bytes from FILL + `start`, repeating `pattern`. */
  expectFill?: { start: number; length: number; pattern: number[] };
}

// mov [rax], sil; add rax, 1; cmp rax, rdx; jne (the decompressor's byte-wise memset, as GCC builds it)
const BYTE_LOOP = [0x40, 0x88, 0x30, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xd0, 0x75, 0xf4, HLT];

const CASES: Case[] = [
  {
    name: 'byte stores through [p], add/cmp p, q/jne, over three pages from an odd address',
    code: BYTE_LOOP,
    regs: [[RAX, FILL], [RDX, FILL + 10_000], [RSI, 0x1a7]],
    expectFill: { start: 0, length: 10_000, pattern: [0xa7] },
  },
  {
    // mov [rdi+rax], cl; inc rax; cmp rdx, rax; jne (the index form, q compared first)
    name: 'byte stores through [base + p], inc p, cmp q, p/jne',
    code: [0x88, 0x0c, 0x07, 0x48, 0xff, 0xc0, 0x48, 0x39, 0xc2, 0x75, 0xf5, HLT],
    regs: [[RDI, FILL], [RAX, 5], [RDX, 9_000], [RCX, 0x55]],
    expectFill: { start: 5, length: 8_995, pattern: [0x55] },
  },
  {
    // mov [rax], rbx; add rax, 8; cmp rax, rcx; jb (a value whose bytes differ, and an end that is not a multiple away)
    name: 'qword stores of a mixed value, cmp p, q/jb with q not a whole number of steps away',
    code: [0x48, 0x89, 0x18, 0x48, 0x83, 0xc0, 0x08, 0x48, 0x39, 0xc8, 0x72, 0xf4, HLT],
    regs: [[RAX, 0x101000], [RCX, 0x101000 + 8 * 1500 + 3], [RBX, 0x44332211, 0x88776655]],
    expectFill: { start: 0x101000 - FILL, length: 8 * 1501, pattern: [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88] },
  },
  {
    // mov [rax], rbx; add rax, 8; cmp rax, rcx; jne, with a value whose low half alone has equal bytes
    name: 'qword stores of a value with equal bytes in its low half only, cmp p, q/jne',
    code: [0x48, 0x89, 0x18, 0x48, 0x83, 0xc0, 0x08, 0x48, 0x39, 0xc8, 0x75, 0xf4, HLT],
    regs: [[RAX, 0x101000], [RCX, 0x101000 + 8 * 1000], [RBX, 0x11111111, 0x22222222]],
    expectFill: { start: 0x101000 - FILL, length: 8 * 1000, pattern: [0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22] },
  },
  {
    // mov [rdi+rax], cl; inc rax; cmp rdx, rax; jne, with p (RAX) going from 2^32 - 4096 past 2^32 (RDI = 0x102000 - 2^32)
    name: 'byte stores through [base + p] with p crossing 2^32',
    code: [0x88, 0x0c, 0x07, 0x48, 0xff, 0xc0, 0x48, 0x39, 0xc2, 0x75, 0xf5, HLT],
    regs: [[RDI, 0x102000, 0xffffffff], [RAX, 0xfffff000], [RDX, 0x1000, 1], [RCX, 0x3c]],
    expectFill: { start: 0x101000 - FILL, length: 0x2000, pattern: [0x3c] },
  },
  {
    // mov dword [rax+16], 0x01010101; add rax, 4; cmp rax, 0x104004; jne
    name: 'dword immediate stores at [p + 16], cmp p, imm/jne',
    code: [0xc7, 0x40, 0x10, 0x01, 0x01, 0x01, 0x01, 0x48, 0x83, 0xc0, 0x04, 0x48, 0x3d, 0x04, 0x40, 0x10, 0x00, 0x75, 0xed, HLT],
    regs: [[RAX, 0x101004]],
    expectFill: { start: 0x101014 - FILL, length: 0x3000, pattern: [1] },
  },
  {
    // mov [rax], bx; add rax, 2; cmp rcx, rax; ja
    name: 'word stores, cmp q, p/ja',
    code: [0x66, 0x89, 0x18, 0x48, 0x83, 0xc0, 0x02, 0x48, 0x39, 0xc1, 0x77, 0xf4, HLT],
    regs: [[RAX, 0x100ffe], [RCX, 0x100ffe + 2 * 3000], [RBX, 0xbeef]],
    expectFill: { start: 0x100ffe - FILL, length: 6000, pattern: [0xef, 0xbe] },
  },
  {
    // mov [rax], rbx; add rax, 8; cmp rax, rcx; jne, with q 3 bytes past p: p never equals q.
    name: 'qword stores that never meet q (jne, q an odd number of bytes away) until the identity map ends in a #PF',
    code: [0x48, 0x89, 0x18, 0x48, 0x83, 0xc0, 0x08, 0x48, 0x39, 0xc8, 0x75, 0xf4, HLT],
    regs: [[RAX, 0x1ff0000], [RCX, 0x1ff0003], [RBX, 0]],
  },
];

function run(c: Case, translated: boolean, budget: number): CpuOutcome {
  const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
  const cpu: Cpu = identityMappedCpu(mem);
  cpu.translateAfter = translated ? 0 : Number.MAX_SAFE_INTEGER;
  for (const [r, lo, hi] of c.regs) {
    cpu.regLo[r] = lo;
    cpu.regHi[r] = hi ?? 0;
  }
  cpu.rflags = 0x2;
  mem.writeBytes(CODE, Uint8Array.from(c.code));
  cpu.ripLo = CODE;
  cpu.ripHi = 0;
  cpu.run(budget);
  return cpuOutcome(cpu, mem, FILL - 64, 0x5000);
}

describe('fill loops: the translated loop does what the interpreter does', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const fast = run(c, true, 1e6);
    const slow = run(c, false, 1e6);
    expect(fast).toEqual(slow);
    if (c.expectFill !== undefined) {
      const { start, length, pattern } = c.expectFill;
      expect(fast.stop).toBe(1); // the loop ended and reached its HLT
      const filled = fast.bytes.subarray(64 + start, 64 + start + length);
      expect(filled.every((b, k) => b === pattern[k % pattern.length])).toBe(true);
      expect(fast.bytes[64 + start - 1]).toBe(0xcc);
      expect(fast.bytes[64 + start + length]).toBe(0xcc);
    } else {
      expect(fast.stop).toBe(2); // #PF with no IDT: a triple fault, at the first store past the identity map
      expect(fast.regs[RAX]).toBe(0x2000000n);
    }
  });

  // (The loop retires 40,000 instructions: these all stop it before its end, in and between passes.)
  it.each([1, 2, 3, 5, 4097, 9_999, 39_996, 39_998])('the byte memset stopped by the budget after %i instructions', (budget) => {
    const c = CASES[0];
    const fast = run(c, true, budget);
    const slow = run(c, false, budget);
    expect(fast.icount).toBe(budget);
    expect(fast).toEqual(slow);
  });
});

/** The loop's instructions (all but the HLT) decoded at CODE, as a block's items. */
function loopItems(code: number[]): BlockInsn[] {
  const items: BlockInsn[] = [];
  const bytes = Uint8Array.from(code);
  for (let at = 0; bytes[at] !== HLT; ) {
    const insn = decodeInsn(bytes.subarray(at), CODE + at, 0)!;
    items.push({ insn, lo: CODE + at });
    at += insn.len;
  }
  return items;
}

describe('fill loops: which loops are recognised', () => {
  // Each case above must take the fast path, or the comparisons above would test only the ordinary loop.
  it.each(CASES.map((c) => [c.name, c] as const))('recognised: %s', (_name, c) => {
    expect(fillLoop(loopItems(c.code))).not.toBeNull();
  });

  it.each([
    // The stored value is the pointer itself: it changes from pass to pass.
    ['mov [rax], al', [0x88, 0x00, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xd0, 0x75, 0xf5, HLT]],
    // A step that is not the store's size leaves gaps.
    ['add rax, 2 after a byte store', [0x40, 0x88, 0x30, 0x48, 0x83, 0xc0, 0x02, 0x48, 0x39, 0xd0, 0x75, 0xf4, HLT]],
    // JE leaves the loop where JNE stays in it.
    ['je', [0x40, 0x88, 0x30, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xd0, 0x74, 0xf4, HLT]],
    // JB after cmp q, p goes on while q < p: not a loop towards q.
    ['jb after cmp rdx, rax', [0x40, 0x88, 0x30, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xc2, 0x72, 0xf4, HLT]],
    // The compare does not involve the pointer.
    ['cmp rcx, rdx', [0x40, 0x88, 0x30, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xd1, 0x75, 0xf4, HLT]],
  ])('not a fill loop: %s', (_name, code) => {
    expect(fillLoop(loopItems(code as number[]))).toBeNull();
  });
});
