import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { Stop } from '../../src/cpu/host.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../../src/cpu/mmu.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { identityMappedCpu } from '../long-mode-cpu.js';

const MEM = 64 << 20;

function w64(mem: SparseMemory, pa: number, lo: number, hi = 0): void {
  mem.write32(pa, lo >>> 0);
  mem.write32(pa + 4, hi >>> 0);
}

/** A long-mode CPU whose first 32 MiB are identity mapped with 2 MiB pages (PML4 at 0x1000), on zeroed RAM. */
function machine(): { cpu: Cpu; mem: SparseMemory } {
  const mem = new SparseMemory(MEM, { kind: 'zero' });
  return { cpu: identityMappedCpu(mem), mem };
}

function catchFault(cpu: Cpu, f: () => unknown): { vector: number; error: number } | null {
  try {
    f();
    return null;
  } catch (e) {
    if (e !== cpu.fault) throw e;
    return { vector: cpu.fault.vector, error: cpu.fault.errorCode };
  }
}

describe('MMU', () => {
  it('walks 4-level tables: 2 MiB and 4 KiB leaves, A/D bits', () => {
    const { cpu, mem } = machine();
    expect(cpu.mmu.translate(0x345678, 0, ACCESS_READ)).toBe(0x345678);
    // A 4 KiB page at VA 0x1800000 (PD entry 12 -> page table at 0x4000) mapped to PA 0x123000.
    w64(mem, 0x3000 + 12 * 8, 0x4003);
    w64(mem, 0x4000 + 5 * 8, 0x123003);
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x1805abc, 0, ACCESS_WRITE)).toBe(0x123abc);
    expect(mem.read32(0x4000 + 5 * 8) & 0x60).toBe(0x60); // accessed and dirty
  });

  it('raises #PF with CR2 and the error code: not present, write to read-only (CR0.WP), NX fetch', () => {
    const { cpu, mem } = machine();
    expect(catchFault(cpu, () => cpu.mmu.translate(0x3000000, 0, ACCESS_READ))).toEqual({ vector: 14, error: 0 });
    expect([cpu.cr2Lo, cpu.cr2Hi]).toEqual([0x3000000, 0]);
    w64(mem, 0x3000 + 8, 0x200000 | 0x81); // present, read-only 2 MiB page
    w64(mem, 0x3000 + 16, 0x400000 | 0x83, 0x80000000); // NX
    cpu.flushTlb();
    expect(catchFault(cpu, () => cpu.mmu.translate(0x200010, 0, ACCESS_WRITE))).toEqual({ vector: 14, error: 3 });
    expect(catchFault(cpu, () => cpu.mmu.translate(0x400010, 0, ACCESS_EXEC))).toEqual({ vector: 14, error: 0x11 });
    expect(cpu.mmu.translate(0x400010, 0, ACCESS_READ)).toBe(0x400010);
    cpu.cr0 &= ~0x10000; // WP off: supervisor writes ignore R/W
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x200010, 0, ACCESS_WRITE)).toBe(0x200010);
  });

  /*
   * TLB misses in a large page the last walk ended in reuse that walk (a
   * paging-structure cache); what they return and raise must be what a walk
   * gives (APM vol. 2, 5.4 and 5.6: a write through a leaf with D clear sets D;
   * writes to a read-only page under CR0.WP and fetches from an NX page fault),
   * and a changed entry must be seen after INVLPG or a CR3 reload.
   */
  it('other 4 KiB parts of a 2 MiB page: dirty bit, protection faults, INVLPG and CR3 reloads', () => {
    const { cpu, mem } = machine();
    const pde = 0x3000 + 8; // VA 0x200000..0x3fffff
    expect(cpu.mmu.translate(0x200010, 0, ACCESS_READ)).toBe(0x200010);
    expect(mem.read32(pde) & 0x60).toBe(0x20); // accessed, not dirty
    expect(cpu.mmu.translate(0x201010, 0, ACCESS_READ)).toBe(0x201010);
    expect(cpu.mmu.translate(0x202010, 0, ACCESS_WRITE)).toBe(0x202010);
    expect(mem.read32(pde) & 0x60).toBe(0x60); // the first write set D
    // Read-only, then NX: each access to a new 4 KiB part after a read that filled the cache.
    w64(mem, pde, 0x200000 | 0xc1); // read-only, already dirty
    cpu.mmu.flushPage(0x200000, 0);
    expect(cpu.mmu.translate(0x203010, 0, ACCESS_READ)).toBe(0x203010);
    expect(catchFault(cpu, () => cpu.mmu.translate(0x204010, 0, ACCESS_WRITE))).toEqual({ vector: 14, error: 3 });
    w64(mem, pde, 0x200000 | 0x83, 0x80000000);
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x205010, 0, ACCESS_READ)).toBe(0x205010);
    expect(catchFault(cpu, () => cpu.mmu.translate(0x206010, 0, ACCESS_EXEC))).toEqual({ vector: 14, error: 0x11 });
    // Remapped to another frame: seen after a CR3 reload (MOV CR3 flushes).
    w64(mem, pde, 0xa00000 | 0x83);
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x207010, 0, ACCESS_READ)).toBe(0xa07010);
    expect(cpu.mmu.translate(0x208010, 0, ACCESS_EXEC)).toBe(0xa08010);
  });

  it('non-canonical addresses raise #GP', () => {
    const { cpu } = machine();
    expect(catchFault(cpu, () => cpu.mmu.translate(0, 0x00008000, ACCESS_READ))?.vector).toBe(13);
  });

  it('1 GiB pages and a high-half mapping', () => {
    const { cpu, mem } = machine();
    // PML4[511] -> PDPT at 0x5000; PDPT[510] = 1 GiB page at PA 0 (VA 0xffffffff80000000).
    w64(mem, 0x1000 + 511 * 8, 0x5003);
    w64(mem, 0x5000 + 510 * 8, 0x83);
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x80123456, 0xffffffff, ACCESS_READ)).toBe(0x123456);
    // Other 4 KiB parts of the same 1 GiB page, in the same 2 MiB and beyond it, interleaved with a low 2 MiB page.
    expect(cpu.mmu.translate(0x80125456, 0xffffffff, ACCESS_READ)).toBe(0x125456);
    expect(cpu.mmu.translate(0x345678, 0, ACCESS_READ)).toBe(0x345678);
    expect(cpu.mmu.translate(0x9abcd010, 0xffffffff, ACCESS_WRITE)).toBe(0x1abcd010);
    expect(cpu.mmu.translate(0x346678, 0, ACCESS_READ)).toBe(0x346678);
    expect(cpu.mmu.translate(0x9abce010, 0xffffffff, ACCESS_READ)).toBe(0x1abce010);
  });

  it('5-level paging with CR4.LA57', () => {
    const { cpu, mem } = machine();
    // PML5 at 0x6000: entry 1 (VA bit 48) -> the same PML4.
    w64(mem, 0x6000, 0x1003);
    w64(mem, 0x6000 + 8, 0x1003);
    cpu.cr3Lo = 0x6000;
    cpu.cr4 |= 0x1000;
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x123456, 0x00010000, ACCESS_READ)).toBe(0x123456);
    expect(cpu.mmu.translate(0x123456, 0, ACCESS_READ)).toBe(0x123456);
    // Bit 48 set is canonical in 5-level mode only up to bit 56.
    expect(catchFault(cpu, () => cpu.mmu.translate(0, 0x01000000, ACCESS_READ))?.vector).toBe(13);
  });

  it('strips the C-bit from table entries and reports private mappings', () => {
    const { cpu, mem } = machine();
    cpu.mmu.setCbit(51);
    w64(mem, 0x3000 + 3 * 8, 0x600000 | 0x83, 1 << 19); // C-bit 51 = bit 19 of the high word
    const seen: Array<[number, boolean]> = [];
    cpu.mmu.observer = { onFill: (pa, enc) => { seen.push([pa, enc]); return 0; }, uncacheable: false };
    cpu.flushTlb();
    expect(cpu.mmu.translate(0x600040, 0, ACCESS_READ)).toBe(0x600040);
    expect(cpu.mmu.translate(0x100040, 0, ACCESS_READ)).toBe(0x100040);
    expect(seen).toEqual([[0x600000, true], [0x100000, false]]);
  });
});

/** Write a 64-bit interrupt gate for `vector` at IDT 0x8000. */
function gate(mem: SparseMemory, vector: number, handler: number, ist = 0, present = true): void {
  const lo = (handler & 0xffff) | (0x10 << 16);
  const hi = (handler & 0xffff0000) | (present ? 0x8e00 : 0x0e00) | ist;
  w64(mem, 0x8000 + vector * 16, lo, hi);
  w64(mem, 0x8000 + vector * 16 + 8, 0, 0);
}

function withIdt(): { cpu: Cpu; mem: SparseMemory } {
  const m = machine();
  const { cpu, mem } = m;
  // GDT: null, 0x08 unused, 0x10 64-bit code, 0x18 data, 0x20 TSS (16 bytes) at 0x9000.
  w64(mem, 0x7000 + 0x10, 0x0000ffff, 0x00af9a00);
  w64(mem, 0x7000 + 0x18, 0x0000ffff, 0x00cf9200);
  cpu.gdtrBaseLo = 0x7000;
  cpu.gdtrLimit = 0x2f;
  cpu.seg[1] = 0x10;
  cpu.idtrBaseLo = 0x8000;
  cpu.idtrLimit = 32 * 16 - 1;
  w64(mem, 0x9000 + 0x24, 0xa0000); // TSS IST1
  cpu.trBaseLo = 0x9000;
  cpu.regLo[4] = 0x50000; // RSP
  return m;
}

function runCode(cpu: Cpu, mem: SparseMemory, at: number, code: number[], steps: number): void {
  mem.writeBytes(at, Uint8Array.from(code));
  cpu.ripLo = at;
  cpu.run(cpu.icount + steps);
}

describe('exception delivery', () => {
  it('#DE through an IST gate: 64-bit frame on the IST stack, RIP of the faulting instruction', () => {
    const { cpu, mem } = withIdt();
    gate(mem, 0, 0x700000, 1);
    mem.writeBytes(0x700000, Uint8Array.from([0xf4])); // handler: hlt
    cpu.rflags = 0x202;
    // xor ecx,ecx ; div ecx
    runCode(cpu, mem, 0x600000, [0x31, 0xc9, 0xf7, 0xf1], 10);
    expect(cpu.stop).toBe(Stop.Halted);
    expect(cpu.curRipLo).toBe(0x700000);
    const sp = cpu.regLo[4];
    expect(sp).toBe(0xa0000 - 5 * 8); // no error code for #DE
    const q = (k: number): number => mem.read32(sp + 8 * k);
    expect([q(0), q(1), q(2) & 0x200, q(3), q(4)]).toEqual([0x600002, 0x10, 0x200, 0x50000, cpu.seg[2]]);
    expect(cpu.rflags & 0x200).toBe(0); // interrupt gate clears IF
  });

  it('#PF pushes its error code and sets CR2; IRETQ returns', () => {
    const { cpu, mem } = withIdt();
    gate(mem, 14, 0x700000);
    // handler: add rsp,8 (drop error code) ; mov qword [rsp],0x600010 (skip to the hlt) ; iretq
    mem.writeBytes(0x700000, Uint8Array.from([0x48, 0x83, 0xc4, 0x08, 0x48, 0xc7, 0x04, 0x24, 0x10, 0x00, 0x60, 0x00, 0x48, 0xcf]));
    // mov rax,[0x3000000] ; (padding) ; hlt at 0x600010
    mem.writeBytes(0x600010, Uint8Array.from([0xf4]));
    runCode(cpu, mem, 0x600000, [0x48, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x03], 20);
    expect(cpu.stop).toBe(Stop.Halted);
    expect(cpu.curRipLo).toBe(0x600010);
    expect(cpu.cr2Lo).toBe(0x3000000);
    expect(mem.read32(0x50000 - 6 * 8)).toBe(0); // error code: read, not present
    expect(cpu.regLo[4]).toBe(0x50000);
  });

  it('a fault while delivering a contributory fault is a double fault', () => {
    const { cpu, mem } = withIdt();
    gate(mem, 0, 0x700000, 0, false); // #DE gate not present -> #NP -> #DF
    gate(mem, 8, 0x710000);
    mem.writeBytes(0x710000, Uint8Array.from([0xf4]));
    const seen: number[] = [];
    cpu.exceptionListener = (v) => seen.push(v);
    runCode(cpu, mem, 0x600000, [0x31, 0xc9, 0xf7, 0xf1], 10);
    expect(seen).toEqual([0, 8]);
    expect(cpu.curRipLo).toBe(0x710000);
  });

  it('a fault while delivering #DF is a triple fault', () => {
    const { cpu, mem } = withIdt();
    gate(mem, 0, 0x700000, 0, false);
    runCode(cpu, mem, 0x600000, [0x31, 0xc9, 0xf7, 0xf1], 10);
    expect(cpu.stop).toBe(Stop.TripleFault);
  });
});
