import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { identityMappedCpu } from '../long-mode-cpu.js';
import { RCX, RDI, RSI } from '../../src/cpu/registers.js';

/** Long mode, first 32 MiB identity-mapped with 2 MiB pages; never-written RAM reads 0xcc. */
function machine(): { cpu: Cpu; mem: SparseMemory } {
  const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
  return { cpu: identityMappedCpu(mem), mem };
}

/*
 * REP MOVS copies page-sized chunks in bulk; reads of never-written bytes
 * must still be reported per element, exactly as the architectural
 * element-by-element loop reads them (expected values from the ISA: one
 * 8-byte read per MOVSQ element, at RSI, RSI+8, ...).
 */
describe('uninitialized reads through REP MOVS', () => {
  it.each([['forward', false], ['backward (DF=1)', true]])('%s: one report per never-written element, none for written ones', (_name, back) => {
    const { cpu, mem } = machine();
    const src = 0x100000, dst = 0x200000, code = 0x300000;
    mem.trackUninitialized(src, 64);
    mem.write32(src + 8, 0x11111111); // half of element 1 written: still reported (4 bytes unwritten)
    mem.write32(src + 16, 0x22222222);
    mem.write32(src + 20, 0x33333333); // element 2 fully written: not reported
    mem.writeBytes(code, Uint8Array.of(0xf3, 0x48, 0xa5)); // rep movsq
    const seen: Array<[number, number]> = [];
    cpu.uninitializedReadListener = (pa, size) => seen.push([pa - src, size]);
    cpu.regLo[RSI] = back ? src + 56 : src;
    cpu.regLo[RDI] = back ? dst + 56 : dst;
    cpu.regLo[RCX] = 8;
    if (back) cpu.rflags |= 0x400;
    cpu.ripLo = code;
    cpu.run(1);
    const expected = [0, 8, 24, 32, 40, 48, 56].map((o) => [o, 8]);
    expect(seen).toEqual(back ? expected.reverse() : expected);
    expect(cpu.regLo[RCX]).toBe(0);
    expect(mem.read32(dst + 16)).toBe(0x22222222);
  });
});
