/*
 * SparseMemory's uninitialized-byte tracking: which bytes of a tracked range
 * count as never written (the fuzz campaigns' and the uninitialized-read
 * report's source), across partial pages, several pages tracked at once and
 * a range tracked again.
 */
import { describe, expect, it } from 'vitest';
import { SparseMemory } from '../../src/memory/sparse-memory.js';

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
});
