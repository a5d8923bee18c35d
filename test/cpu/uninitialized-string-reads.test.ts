import { describe, expect, it } from 'vitest';
import { Cpu } from '../../src/cpu/cpu.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { BareMetalHost } from '../../src/platform/bare-host.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';
import { RCX, RDI, RSI } from '../../src/cpu/registers.js';

/** Long mode, first 32 MiB identity-mapped with 2 MiB pages. */
function machine(): { cpu: Cpu; mem: SparseMemory } {
  const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
  const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()));
  const w64 = (pa: number, lo: number): void => { mem.write32(pa, lo >>> 0); mem.write32(pa + 4, 0); };
  w64(0x1000, 0x2003);
  w64(0x2000, 0x3003);
  for (let i = 0; i < 16; i++) w64(0x3000 + i * 8, i * 0x200000 + 0x83);
  cpu.cr3Lo = 0x1000;
  cpu.cr0 = 0x80010033;
  cpu.cr4 = 0x20;
  cpu.efer = 0xd00;
  cpu.flushTlb();
  return { cpu, mem };
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
