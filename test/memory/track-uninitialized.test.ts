/*
 * SparseMemory's uninitialized-byte tracking: which bytes of a tracked range
 * count as never written (the fuzz campaigns' and the uninitialized-read
 * report's source), across partial pages, several pages tracked at once and
 * a range tracked again.
 */
import { describe, expect, it } from 'vitest';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { identityMappedCpu } from '../long-mode-cpu.js';

describe('trackUninitialized', () => {
  it('counts unwritten bytes per page, only inside the tracked range', () => {
    const mem = new SparseMemory(1 << 20, { kind: 'zero' });
    mem.trackUninitialized(0x1ff0, 0x30); // the last 16 bytes of page 1, the first 32 of page 2
    expect([mem.tracked[1], mem.tracked[2], mem.tracked[3]]).toEqual([1, 1, 0]);
    expect(mem.unwrittenBytes(0x1fe0, 16)).toBe(0); // before the range: not ours to judge
    expect(mem.unwrittenBytes(0x1ff0, 16)).toBe(16);
    expect(mem.unwrittenBytes(0x2018, 8)).toBe(8);
    expect(mem.unwrittenBytes(0x2020, 8)).toBe(0); // after it
    mem.write8(0x1ff4, 1);
    expect(mem.unwrittenBytes(0x1ff0, 8)).toBe(7);
  });

  it('keeps the pages of one call apart', () => {
    const mem = new SparseMemory(1 << 20, { kind: 'zero' });
    mem.trackUninitialized(0x3000, 0x3000);
    mem.write32(0x3ffc, 0);
    mem.write8(0x5000, 0);
    expect(mem.unwrittenBytes(0x3ff8, 8)).toBe(4);
    expect(mem.unwrittenBytes(0x4000, 8)).toBe(8);
    expect(mem.unwrittenBytes(0x4ff8, 8)).toBe(8);
    expect(mem.unwrittenBytes(0x5000, 8)).toBe(7);
  });

  it('tracking a range again starts it over', () => {
    const mem = new SparseMemory(1 << 20, { kind: 'zero' });
    mem.trackUninitialized(0x1ff0, 0x30);
    mem.write8(0x1ff4, 1);
    mem.trackUninitialized(0x1000, 0x1000);
    expect(mem.unwrittenBytes(0x1000, 8)).toBe(8);
    expect(mem.unwrittenBytes(0x1ff0, 8)).toBe(8);
    expect(mem.unwrittenBytes(0x2018, 8)).toBe(8); // page 2 as it was
  });

  it('pages the CPU already reads directly are reported once tracked', () => {
    // The TLB holds direct views of three pages before tracking starts on all of them: every one must lose its view.
    const mem = new SparseMemory(64 << 20, { kind: 'zero' });
    const cpu = identityMappedCpu(mem);
    const reads: number[] = [];
    cpu.uninitializedReadListener = (pa) => reads.push(pa);
    for (const pa of [0x400000, 0x401000, 0x402000]) {
      mem.write8(pa + 8, 0);
      cpu.read8(pa + 8, 0);
    }
    mem.trackUninitialized(0x400000, 0x3000);
    for (const pa of [0x400000, 0x401000, 0x402000]) cpu.read8(pa + 8, 0);
    expect(reads).toEqual([0x400008, 0x401008, 0x402008]);
  });
});
