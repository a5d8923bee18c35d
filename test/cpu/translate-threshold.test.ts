/*
 * When the run loop translates a block: after Cpu.translateAfter entries, or
 * a tenth of that for a block that jumps back to its own start (a loop, hot by
 * nature). Either way the answers are the interpreter's (fast-path
 * equivalence and the fill-loop tests check that); here only the threshold.
 */
import { describe, expect, it } from 'vitest';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { RCX } from '../../src/cpu/registers.js';
import { identityMappedCpu } from '../long-mode-cpu.js';

const CODE = 0x300000;

/** mov ecx, n; then the loop body; hlt. */
function program(n: number, loop: number[]): number[] {
  return [0xb9, n & 0xff, (n >>> 8) & 0xff, 0, 0, ...loop, 0xf4];
}

/** L: dec ecx; jnz L (one block that branches back to its start). */
const SELF_LOOP = [0xff, 0xc9, 0x75, 0xfc];
/** L: dec ecx; jmp M; M: jnz L (the same loop as two blocks, neither branching to its own start). */
const TWO_BLOCK_LOOP = [0xff, 0xc9, 0xeb, 0x00, 0x75, 0xfa];

function run(code: number[], translateAfter: number): { translated: number; rcx: bigint; stop: number } {
  const mem = new SparseMemory(64 << 20, { kind: 'zero' });
  const cpu = identityMappedCpu(mem);
  cpu.translateAfter = translateAfter;
  mem.writeBytes(CODE, Uint8Array.from(code));
  cpu.ripLo = CODE;
  cpu.ripHi = 0;
  cpu.rflags = 0x2;
  cpu.run(1e6);
  return { translated: cpu.blocksTranslated, rcx: cpu.reg64(RCX), stop: cpu.stop };
}

describe('translation threshold', () => {
  it('a block looping on itself is translated after a tenth of translateAfter entries', () => {
    // Entered 299 times: more than 2000 / 10.
    const hot = run(program(300, SELF_LOOP), 2000);
    expect(hot.rcx).toBe(0n);
    expect(hot.stop).toBe(1); // reached its HLT
    expect(hot.translated).toBe(1);
    // Entered 149 times: fewer.
    expect(run(program(150, SELF_LOOP), 2000).translated).toBe(0);
  });

  it('other blocks wait for translateAfter entries', () => {
    const r = run(program(300, TWO_BLOCK_LOOP), 2000);
    expect(r.rcx).toBe(0n);
    expect(r.stop).toBe(1);
    expect(r.translated).toBe(0);
    expect(run(program(2100, TWO_BLOCK_LOOP), 2000).translated).toBe(2);
  });

  it('the interpreter-only setting translates no loop either', () => {
    expect(run(program(3000, SELF_LOOP), Number.MAX_SAFE_INTEGER).translated).toBe(0);
  });
});
