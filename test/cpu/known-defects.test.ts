/*
 * Known defects of the CPU model, one block per defect. Every expected value
 * comes from the architecture (AMD64 APM vol. 2/3, Intel SDM vol. 2/3), not
 * from bzemu's own output; the comments name the rule each check relies on.
 * Instruction bytes are hand-encoded (the encoding is in the comment).
 */
import { describe, expect, it } from 'vitest';
import { Cpu } from '../../src/cpu/cpu.js';
import { Stop } from '../../src/cpu/host.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../../src/cpu/mmu.js';
import { RAX, RBX, RSI, RSP } from '../../src/cpu/registers.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { BareMetalHost } from '../../src/platform/bare-host.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';

const PML4 = 0x1000, PDPT = 0x2000, PD = 0x3000, GDT = 0x7000, IDT = 0x8000;
/** Exception handler (a HLT) every vector goes to. */
const HANDLER = 0x1e00000;
const STACK = 0x50000;

function w64(mem: SparseMemory, pa: number, lo: number, hi = 0): void {
  mem.write32(pa, lo >>> 0);
  mem.write32(pa + 4, hi >>> 0);
}

interface Machine {
  cpu: Cpu;
  mem: SparseMemory;
  /** Exceptions raised, in order. */
  faults: Array<{ vector: number; error: number }>;
}

/**
 * Long mode, CPL0, 4-level paging: the first 32 MiB identity mapped with
 * 2 MiB pages, a flat GDT (0x10 code, 0x18 data, 0x20 data with base
 * 0x12345678), and an IDT whose 32 exception gates all lead to a HLT.
 */
function machine(memSize = 64 << 20): Machine {
  const mem = new SparseMemory(memSize, { kind: 'zero' });
  const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()));
  w64(mem, PML4, PDPT | 3);
  w64(mem, PDPT, PD | 3);
  for (let i = 0; i < 16; i++) w64(mem, PD + i * 8, i * 0x200000 + 0x83);
  cpu.cr3Lo = PML4;
  cpu.cr0 = 0x80010033; // PG WP NE ET MP PE
  cpu.cr4 = 0x20; // PAE
  cpu.efer = 0xd00; // NXE LMA LME
  w64(mem, GDT + 0x10, 0x0000ffff, 0x00af9a00);
  w64(mem, GDT + 0x18, 0x0000ffff, 0x00cf9300);
  // base 0x12345678: base[15:0] in bits 31:16 of the low word, base[23:16] and base[31:24] in the high word
  w64(mem, GDT + 0x20, 0x5678ffff, 0x12cf9334);
  cpu.gdtrBaseLo = GDT;
  cpu.gdtrLimit = 0x27;
  cpu.seg.fill(0x18);
  cpu.seg[1] = 0x10;
  cpu.seg[4] = cpu.seg[5] = 0;
  for (let v = 0; v < 32; v++) {
    w64(mem, IDT + v * 16, (HANDLER & 0xffff) | (0x10 << 16), (HANDLER & 0xffff0000) | 0x8e00);
    w64(mem, IDT + v * 16 + 8, 0, 0);
  }
  cpu.idtrBaseLo = IDT;
  cpu.idtrLimit = 32 * 16 - 1;
  mem.write8(HANDLER, 0xf4); // hlt
  cpu.regLo[RSP] = STACK;
  cpu.rflags = 0x2;
  cpu.flushTlb();
  const faults: Array<{ vector: number; error: number }> = [];
  cpu.exceptionListener = (vector, error) => faults.push({ vector, error });
  return { cpu, mem, faults };
}

/** Put code at an identity-mapped address and run it for at most `steps` instructions. */
function runCode(m: Machine, at: number, code: number[], steps: number): void {
  m.mem.writeBytes(at, Uint8Array.from(code));
  runAt(m.cpu, at, 0, steps);
}

function runAt(cpu: Cpu, lo: number, hi: number, steps: number): void {
  cpu.ripLo = lo;
  cpu.ripHi = hi;
  cpu.run(cpu.icount + steps);
}

/** The 64-bit exception frame the handler sees (error code variant): [error, rip, cs, rflags, rsp, ss]. */
function frame(m: Machine): { error: number; rip: bigint; rsp: bigint } {
  const sp = m.cpu.regLo[RSP];
  const q = (k: number): bigint => (BigInt(m.mem.read32(sp + 8 * k + 4)) << 32n) | BigInt(m.mem.read32(sp + 8 * k));
  return { error: Number(q(0)), rip: q(1), rsp: q(4) };
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

const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const le64 = (v: bigint): number[] => [...le32(Number(v & 0xffffffffn)), ...le32(Number((v >> 32n) & 0xffffffffn))];
/** mov rax, imm64 */
const movRax = (v: bigint): number[] => [0x48, 0xb8, ...le64(v)];

// ---------------------------------------------------------------------------

describe('1. decode cache: an instruction crossing into a non-adjacent physical page', () => {
  /*
   * VA 0x1800000 -> PA 0x100000 and VA 0x1801000 -> PA 0x300000 (4 KiB pages).
   * mov eax, imm32 (B8 id) at VA 0x1800ffc: opcode and 3 immediate bytes in
   * PA 0x100ffc..fff, the last immediate byte at PA 0x300000, then HLT.
   * Architecturally an instruction is fetched through the current
   * translation of every byte, and self-modifying code is seen once the
   * write retires (APM vol. 2 7.6.1, SDM vol. 3 11.6), so a write to the tail's
   * physical page must change what the instruction does.
   */
  function crossing(): Machine {
    const m = machine();
    w64(m.mem, PD + 12 * 8, 0x4003); // VA 0x1800000 -> page table at 0x4000
    w64(m.mem, 0x4000, 0x100003);
    w64(m.mem, 0x4008, 0x300003);
    m.mem.writeBytes(0x100ffc, Uint8Array.of(0xb8, 0x11, 0x22, 0x33));
    m.mem.writeBytes(0x300000, Uint8Array.of(0x44, 0xf4));
    m.cpu.flushTlb();
    runAt(m.cpu, 0x1800ffc, 0, 2);
    expect(m.cpu.stop).toBe(Stop.Halted);
    expect(m.cpu.regLo[RAX]).toBe(0x44332211);
    return m;
  }

  it('a guest write to the physical page holding the tail is seen', () => {
    const m = crossing();
    // mov byte [0x300000], 0x55 (C6 04 25 disp32 ib) ; jmp rel32 to 0x1800ffc
    const at = 0x200000;
    const jmpNext = at + 8 + 5;
    runCode(m, at, [0xc6, 0x04, 0x25, ...le32(0x300000), 0x55, 0xe9, ...le32(0x1800ffc - jmpNext)], 4);
    expect(m.cpu.stop).toBe(Stop.Halted);
    expect(m.cpu.regLo[RAX]).toBe(0x55332211);
  });

  it('a write to the physically next page (not part of the instruction) changes nothing', () => {
    const m = crossing();
    m.mem.write8(0x101000, 0x99);
    runAt(m.cpu, 0x1800ffc, 0, 2);
    expect(m.cpu.regLo[RAX]).toBe(0x44332211);
  });

  it('after the tail page is remapped and the TLB flushed, the new bytes are fetched', () => {
    const m = crossing();
    m.mem.writeBytes(0x500000, Uint8Array.of(0x66, 0xf4));
    w64(m.mem, 0x4008, 0x500003);
    // mov rax, cr3 ; mov cr3, rax (flushes the TLB) ; jmp rel32 to 0x1800ffc
    const at = 0x200000;
    const jmpNext = at + 6 + 5;
    runCode(m, at, [0x0f, 0x20, 0xd8, 0x0f, 0x22, 0xd8, 0xe9, ...le32(0x1800ffc - jmpNext)], 5);
    expect(m.cpu.stop).toBe(Stop.Halted);
    expect(m.cpu.regLo[RAX]).toBe(0x66332211);
  });
});

// ---------------------------------------------------------------------------

describe('2. INVLPG inside a large page', () => {
  /*
   * INVLPG invalidates the TLB entries for the page that contains the
   * address, whatever its size (APM vol. 3 INVLPG; SDM vol. 3 4.10.4.1:
   * "invalidates all TLB entries associated with the page"). After it, any
   * 4 KiB part of a 2 MiB / 1 GiB page must use the changed entry.
   */
  it('2 MiB page: INVLPG of one address drops the translation of every other 4 KiB part', () => {
    const m = machine();
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x83); // VA 0x600000 (2 MiB) -> PA 0x600000
    m.mem.write32(0x7ff000, 0x11111111);
    m.mem.write32(0xbff000, 0x22222222);
    m.cpu.flushTlb();
    expect(m.cpu.read32(0x7ff000, 0)).toBe(0x11111111); // cached: VA 0x7ff000
    expect(m.cpu.read32(0x600000, 0)).toBe(0); // cached: VA 0x600000
    w64(m.mem, PD + 3 * 8, 0xa00000 | 0x83); // now -> PA 0xa00000
    // invlpg [0x600000] (0F 01 /7, mod=00 rm=SIB, base none: 0F 01 3C 25 disp32) ; mov eax, [0x7ff000] ; hlt
    runCode(m, 0x200000, [0x0f, 0x01, 0x3c, 0x25, ...le32(0x600000), 0x8b, 0x04, 0x25, ...le32(0x7ff000), 0xf4], 3);
    expect(m.cpu.stop).toBe(Stop.Halted);
    expect(m.cpu.regLo[RAX]).toBe(0x22222222);
  });

  it('2 MiB page: INVLPG of an address not in the TLB still drops the other parts', () => {
    const m = machine();
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x83);
    m.mem.write32(0x601000, 0x11111111);
    m.mem.write32(0xa01000, 0x22222222);
    m.cpu.flushTlb();
    expect(m.cpu.read32(0x601000, 0)).toBe(0x11111111);
    w64(m.mem, PD + 3 * 8, 0xa00000 | 0x83);
    // invlpg [0x7ff800] ; mov eax, [0x601000] ; hlt
    runCode(m, 0x200000, [0x0f, 0x01, 0x3c, 0x25, ...le32(0x7ff800), 0x8b, 0x04, 0x25, ...le32(0x601000), 0xf4], 3);
    expect(m.cpu.regLo[RAX]).toBe(0x22222222);
  });

  it('1 GiB page: INVLPG drops every 4 KiB part of it', () => {
    const m = machine(0x80000000);
    w64(m.mem, PDPT + 8, 0x00000083); // VA 1 GiB (1 GiB page) -> PA 0
    m.mem.write32(0x00201000, 0x11111111);
    m.mem.write32(0x40201000, 0x22222222);
    m.cpu.flushTlb();
    expect(m.cpu.read32(0x40201000, 0)).toBe(0x11111111);
    w64(m.mem, PDPT + 8, 0x40000083); // -> PA 1 GiB
    // invlpg [0x7fffffff] ; mov eax, [0x40201000] ; hlt
    runCode(m, 0x200000, [0x0f, 0x01, 0x3c, 0x25, ...le32(0x7fffffff), 0x8b, 0x04, 0x25, ...le32(0x40201000), 0xf4], 3);
    expect(m.cpu.regLo[RAX]).toBe(0x22222222);
  });
});

// ---------------------------------------------------------------------------

describe('3. reserved bits in page-table entries raise #PF with RSVD', () => {
  /*
   * APM vol. 2 5.3.3 / 8.4.2, SDM vol. 3 4.7: a set reserved bit in a present
   * entry is a page fault with error code P=1, RSVD=1 (bit 3), plus W/R
   * and I/D as for the access; CR2 = the linear address.
   */
  const RSVD_READ = 0x9, RSVD_WRITE = 0xb, RSVD_EXEC = 0x19;

  it('2 MiB PDE: bits 20:13 are reserved (bit 12 is PAT and is not)', () => {
    const m = machine();
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x2000 | 0x83);
    w64(m.mem, PD + 4 * 8, 0x800000 | 0x100000 | 0x83);
    w64(m.mem, PD + 5 * 8, 0xa00000 | 0x1000 | 0x83); // PAT bit
    m.cpu.flushTlb();
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x600010, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    expect([m.cpu.cr2Lo, m.cpu.cr2Hi]).toEqual([0x600010, 0]);
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x812345, 0, ACCESS_WRITE))).toEqual({ vector: 14, error: RSVD_WRITE });
    expect(m.cpu.cr2Lo).toBe(0x812345);
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x812345, 0, ACCESS_EXEC))).toEqual({ vector: 14, error: RSVD_EXEC });
    expect(m.cpu.mmu.translate(0xa00123, 0, ACCESS_READ)).toBe(0xa00123);
  });

  it('1 GiB PDPTE: bits 29:13 are reserved', () => {
    const m = machine(0x80000000);
    w64(m.mem, PDPT + 8, 0x40000000 | (1 << 21) | 0x83);
    w64(m.mem, PDPT + 16, 0x40000000 | (1 << 13) | 0x83);
    m.cpu.flushTlb();
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x40000000, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x80000008, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    expect(m.cpu.cr2Lo).toBe(0x80000008);
  });

  it('address bits above the physical-address width are reserved; the C-bit is not', () => {
    const m = machine();
    m.cpu.mmu.setPhysicalAddressWidth(48);
    m.cpu.mmu.setCbit(51);
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x83, 1 << 19); // C-bit (51): allowed
    w64(m.mem, PD + 4 * 8, 0x800000 | 0x83, 1 << 16); // bit 48: above MAXPHYADDR
    w64(m.mem, PD + 5 * 8, 0x4003, 1 << 18); // bit 50 in a non-leaf entry
    w64(m.mem, 0x4000, 0xa00003);
    m.cpu.flushTlb();
    expect(m.cpu.mmu.translate(0x600040, 0, ACCESS_READ)).toBe(0x600040);
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x800040, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0xa00040, 0, ACCESS_WRITE))).toEqual({ vector: 14, error: RSVD_WRITE });
    // A 4 KiB leaf with a bit above the width.
    w64(m.mem, PD + 6 * 8, 0x5003);
    w64(m.mem, 0x5000, 0xc00003, 1 << 17);
    m.cpu.flushTlb();
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0xc00040, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
  });

  it('NX is reserved while EFER.NXE = 0', () => {
    const m = machine();
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x83, 0x80000000);
    m.cpu.efer = 0x500;
    m.cpu.flushTlb();
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0x600040, 0, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    m.cpu.efer = 0xd00;
    m.cpu.flushTlb();
    expect(m.cpu.mmu.translate(0x600040, 0, ACCESS_READ)).toBe(0x600040);
  });

  it('PML4E: PS (bit 7) is reserved', () => {
    const m = machine();
    w64(m.mem, PML4 + 8, 0x6000 | 0x83); // VA 512 GiB
    m.cpu.flushTlb();
    expect(catchFault(m.cpu, () => m.cpu.mmu.translate(0, 0x80, ACCESS_READ))).toEqual({ vector: 14, error: RSVD_READ });
    expect([m.cpu.cr2Lo, m.cpu.cr2Hi]).toEqual([0, 0x80]);
  });

  it('delivered by an instruction: error code 9 on the stack, CR2, RIP of the load', () => {
    const m = machine();
    w64(m.mem, PD + 3 * 8, 0x600000 | 0x4000 | 0x83);
    m.cpu.flushTlb();
    // mov eax, [0x600010] (8B 04 25 disp32)
    runCode(m, 0x200000, [0x8b, 0x04, 0x25, ...le32(0x600010)], 3);
    expect(m.faults).toEqual([{ vector: 14, error: RSVD_READ }]);
    expect(m.cpu.cr2Lo).toBe(0x600010);
    expect(frame(m).rip).toBe(0x200000n);
  });
});

// ---------------------------------------------------------------------------

describe('4. reserved bits in CR0, CR4 and EFER raise #GP(0)', () => {
  /*
   * MOV CRn (SDM vol. 2, APM vol. 3): #GP(0) for a 1 in CR0[63:32], PG=1
   * with PE=0, NW=1 with CD=0, a reserved CR4 bit (on AMD: 13..15, 19, 63:24),
   * clearing CR4.PAE in long mode. WRMSR EFER (APM vol. 2 3.1.7): #GP(0)
   * for a 1 in a reserved (MBZ) bit. The instruction has no effect.
   */
  function movCr(m: Machine, v: bigint, cr: 0 | 4): void {
    // mov rax, imm64 ; mov crN, rax (0F 22 /r: C0 = cr0, E0 = cr4) ; hlt
    m.faults.length = 0;
    runCode(m, 0x200000, [...movRax(v), 0x0f, 0x22, cr === 0 ? 0xc0 : 0xe0, 0xf4], 3);
  }

  function expectGp(m: Machine, at: number): void {
    expect(m.faults).toEqual([{ vector: 13, error: 0 }]);
    expect(frame(m).rip).toBe(BigInt(at));
  }

  it('CR0: bits 63:32, PG without PE, NW without CD', () => {
    const m = machine();
    const cr0 = BigInt(m.cpu.cr0);
    for (const bad of [cr0 | (1n << 32n), cr0 | (1n << 63n), cr0 & ~1n, (cr0 | (1n << 29n)) & ~(1n << 30n)]) {
      movCr(m, bad, 0);
      expectGp(m, 0x200000 + 10);
      expect(m.cpu.cr0).toBe(0x80010033);
    }
    movCr(m, cr0 | (1n << 30n) | (1n << 29n), 0); // CD and NW together are allowed
    expect(m.faults).toEqual([]);
    expect(m.cpu.cr0 >>> 0).toBe(0xe0010033);
  });

  it('CR4: bits this AMD CPU reserves (13 VMXE, 14 SMXE, 15, 19, 24 and up)', () => {
    const m = machine();
    for (const bit of [13n, 14n, 15n, 19n, 24n, 31n, 32n, 63n]) {
      movCr(m, 0x20n | (1n << bit), 4);
      expectGp(m, 0x200000 + 10);
      expect(m.cpu.cr4).toBe(0x20);
    }
  });

  it('CR4: clearing PAE in long mode', () => {
    const m = machine();
    movCr(m, 0n, 4);
    expectGp(m, 0x200000 + 10);
  });

  it('CR4: what the Linux decompressor sets is accepted', () => {
    const m = machine();
    // PAE PGE OSFXSR OSXMMEXCPT FSGSBASE OSXSAVE SMEP SMAP MCE PSE DE TSD
    const v = 0x20 | 0x80 | 0x200 | 0x400 | 0x10000 | 0x40000 | 0x100000 | 0x200000 | 0x40 | 0x10 | 0x8 | 0x4;
    movCr(m, BigInt(v), 4);
    expect(m.faults).toEqual([]);
    expect(m.cpu.cr4).toBe(v);
  });

  it('CR8: bits 63:4 are reserved', () => {
    const m = machine();
    // mov rax, imm64 ; mov cr8, rax (44 0F 22 C0) ; hlt
    runCode(m, 0x200000, [...movRax(0x10n), 0x44, 0x0f, 0x22, 0xc0, 0xf4], 3);
    expectGp(m, 0x200000 + 10);
    m.faults.length = 0;
    runCode(m, 0x200000, [...movRax(0xfn), 0x44, 0x0f, 0x22, 0xc0, 0xf4], 3);
    expect(m.faults).toEqual([]);
    expect(m.cpu.cr8).toBe(0xf);
  });

  function wrmsrEfer(m: Machine, lo: number, hi: number): void {
    // mov ecx, 0xc0000080 ; mov eax, lo ; mov edx, hi ; wrmsr ; hlt
    m.faults.length = 0;
    runCode(m, 0x200000, [0xb9, ...le32(0xc0000080), 0xb8, ...le32(lo), 0xba, ...le32(hi), 0x0f, 0x30, 0xf4], 5);
  }

  it('EFER: reserved bits (1..7, 9, 16, 22 and up, 63:32)', () => {
    const m = machine();
    for (const [lo, hi] of [[0xd00 | 2, 0], [0xd00 | 0x80, 0], [0xd00 | 0x200, 0], [0xd00 | 0x10000, 0],
      [0xd00 | 0x400000, 0], [(0xd00 | 0x80000000) >>> 0, 0], [0xd00, 1], [0xd00, 0x80000000]]) {
      wrmsrEfer(m, lo, hi);
      expectGp(m, 0x200000 + 15);
      expect(m.cpu.efer).toBe(0xd00);
    }
  });

  it('EFER: SCE, NXE, SVME, LMSLE, FFXSR, TCE are accepted; LMA is kept', () => {
    const m = machine();
    wrmsrEfer(m, 0x1 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000, 0);
    expect(m.faults).toEqual([]);
    expect(m.cpu.efer).toBe(0xfd01);
  });

  it('EFER: changing LME while paging is on', () => {
    const m = machine();
    wrmsrEfer(m, 0x800, 0);
    expectGp(m, 0x200000 + 15);
    expect(m.cpu.efer).toBe(0xd00);
  });
});

// ---------------------------------------------------------------------------

describe('5. branches to non-canonical addresses raise #GP(0) at the branch', () => {
  /*
   * APM vol. 3 (JMP, CALL, RET, Jcc): in 64-bit mode a target that is not
   * canonical raises #GP(0); the exception is a fault on the branch itself
   * (RIP pushed = the branch), and the branch has no effect (CALL pushes
   * nothing, RET does not pop).
   */
  const NONCANON = 0x0000800000000000n;

  it('JMP, CALL and RET through registers and the stack', () => {
    for (const [name, code] of [
      ['jmp rax', [...movRax(NONCANON), 0xff, 0xe0]],
      ['call rax', [...movRax(NONCANON), 0xff, 0xd0]],
      ['ret', [...movRax(NONCANON), 0x50, 0xc3]], // push rax ; ret
      ['jmp [rsp]', [...movRax(0xffff7fffffffffffn), 0x50, 0xff, 0x24, 0x24]],
    ] as Array<[string, number[]]>) {
      const m = machine();
      runCode(m, 0x200000, code, 4);
      const at = 0x200000 + code.length - (name === 'jmp [rsp]' ? 3 : name === 'ret' ? 1 : 2);
      expect(m.faults, name).toEqual([{ vector: 13, error: 0 }]);
      expect(frame(m).rip, name).toBe(BigInt(at));
      const expectedSp = name === 'ret' || name === 'jmp [rsp]' ? STACK - 8 : STACK;
      expect(frame(m).rsp, name).toBe(BigInt(expectedSp));
    }
  });

  it('IRETQ to a non-canonical RIP: #GP(0) at the IRETQ, nothing popped', () => {
    const m = machine();
    m.cpu.rflags = 0x202;
    // mov rax, NONCANON ; push 0x18 (SS) ; push STACK (RSP) ; push 2 (RFLAGS) ; push 0x10 (CS) ; push rax (RIP) ; iretq (48 CF)
    const code = [...movRax(NONCANON), 0x6a, 0x18, 0x68, ...le32(STACK), 0x6a, 0x02, 0x6a, 0x10, 0x50, 0x48, 0xcf];
    runCode(m, 0x200000, code, 8);
    expect(m.faults).toEqual([{ vector: 13, error: 0 }]);
    expect(frame(m).rip).toBe(BigInt(0x200000 + code.length - 2));
    expect(frame(m).rsp).toBe(BigInt(STACK - 40));
  });

  /** Map VA 0x00007fffffe00000 (the top 2 MiB of the lower canonical half) -> PA 0x600000. */
  function topOfLowerHalf(): Machine {
    const m = machine();
    w64(m.mem, PML4 + 255 * 8, 0x5003);
    w64(m.mem, 0x5000 + 511 * 8, 0x6003);
    w64(m.mem, 0x6000 + 511 * 8, 0x600000 | 0x83);
    m.cpu.flushTlb();
    return m;
  }
  const TOP_HI = 0x7fff, TOP_LO = 0xfffff000, TOP_PA = 0x7ff000;

  it('relative JMP, CALL and Jcc past the top of the lower half', () => {
    for (const [name, code, at] of [
      ['jmp rel32', [0xe9, ...le32(0x2000)], 0],
      ['call rel32', [0xe8, ...le32(0x2000)], 0],
      ['jz rel32 (taken)', [0x31, 0xc0, 0x0f, 0x84, ...le32(0x2000)], 2], // xor eax,eax ; jz
      ['jmp rel8 at the last bytes', [...new Array<number>(0xffd).fill(0x90), 0xeb, 0x7f], 0xffd],
    ] as Array<[string, number[], number]>) {
      const m = topOfLowerHalf();
      m.mem.writeBytes(TOP_PA, Uint8Array.from(code));
      runAt(m.cpu, TOP_LO, TOP_HI, 0x1000);
      expect(m.faults, name).toEqual([{ vector: 13, error: 0 }]);
      expect(frame(m).rip, name).toBe(0x7ffffffff000n + BigInt(at));
      expect(frame(m).rsp, name).toBe(BigInt(STACK));
    }
  });

  it('code at linear addresses with bit 31 set runs as blocks with the right RIPs', () => {
    const m = topOfLowerHalf();
    // nop ; nop ; jmp -4 (back to the second nop) ... run 5 instructions, then look at the retired RIPs.
    m.mem.writeBytes(TOP_PA, Uint8Array.of(0x90, 0x90, 0xeb, 0xfd));
    runAt(m.cpu, TOP_LO, TOP_HI, 5);
    expect(m.faults).toEqual([]);
    expect(m.cpu.recentRips(5)).toEqual([[TOP_LO, TOP_HI], [TOP_LO + 1, TOP_HI], [TOP_LO + 2, TOP_HI], [TOP_LO + 1, TOP_HI], [TOP_LO + 2, TOP_HI]]);
    expect([m.cpu.ripLo, m.cpu.ripHi]).toEqual([TOP_LO + 1, TOP_HI]);
  });

  it('a not-taken Jcc to a non-canonical target is fine', () => {
    const m = topOfLowerHalf();
    // or eax,1 (ZF=0) ; jz rel32 ; hlt
    m.mem.writeBytes(TOP_PA, Uint8Array.of(0x83, 0xc8, 0x01, 0x0f, 0x84, ...le32(0x2000), 0xf4));
    runAt(m.cpu, TOP_LO, TOP_HI, 3);
    expect(m.faults).toEqual([]);
    expect(m.cpu.stop).toBe(Stop.Halted);
  });

  it('translated blocks: the inline JMP faults at the JMP too', () => {
    const m = topOfLowerHalf();
    m.cpu.translateAfter = 0;
    // nop ; nop ; add eax,1 ; jmp rel32 -> 0x800000001000-ish
    m.mem.writeBytes(TOP_PA, Uint8Array.of(0x90, 0x90, 0x83, 0xc0, 0x01, 0xe9, ...le32(0x2000)));
    runAt(m.cpu, TOP_LO, TOP_HI, 10);
    expect(m.faults).toEqual([{ vector: 13, error: 0 }]);
    expect(frame(m).rip).toBe(0x7ffffffff005n);
  });
});

// ---------------------------------------------------------------------------

describe('6. 0x67 with an FS/GS override: truncate the offset, then add the 64-bit base', () => {
  /*
   * APM vol. 1 2.2.3 / SDM vol. 1 3.3.7: with a 32-bit address size the
   * effective address (base + index*scale + disp) is truncated to 32 bits;
   * in 64-bit mode the FS/GS base is then added to form the 64-bit linear
   * address. VA 4 GiB .. 4 GiB + 2 MiB is mapped to PA 0xa00000 here.
   */
  function withHighMapping(): Machine {
    const m = machine();
    w64(m.mem, PDPT + 4 * 8, 0x6003);
    w64(m.mem, 0x6000, 0xa00000 | 0x83);
    m.mem.write32(0xa01000, 0xcafebabe);
    m.cpu.flushTlb();
    return m;
  }

  it.each([
    ['base above 4 GiB', 0, 1, 0x1000],
    ['base + offset carries past 4 GiB', 0xfffff000, 0, 0x2000],
  ])('mov eax, fs:[ebx] (%s)', (_name, baseLo, baseHi, ebx) => {
    const m = withHighMapping();
    m.cpu.fsBaseLo = baseLo;
    m.cpu.fsBaseHi = baseHi;
    m.cpu.regLo[RBX] = ebx;
    m.cpu.regHi[RBX] = 0xdead; // above EBX: ignored with 0x67
    // fs addr32 mov eax, [ebx] (64 67 8B 03) ; hlt
    runCode(m, 0x200000, [0x64, 0x67, 0x8b, 0x03, 0xf4], 2);
    expect(m.faults).toEqual([]);
    expect(m.cpu.regLo[RAX]).toBe(0xcafebabe);
  });

  it('gs with a disp32 that wraps the 32-bit offset', () => {
    const m = withHighMapping();
    m.cpu.gsBaseLo = 0;
    m.cpu.gsBaseHi = 1;
    m.cpu.regLo[RBX] = 0x2000;
    // gs addr32 mov eax, [ebx - 0x1000] (65 67 8B 83 disp32)
    runCode(m, 0x200000, [0x65, 0x67, 0x8b, 0x83, ...le32(-0x1000 >>> 0), 0xf4], 2);
    expect(m.cpu.regLo[RAX]).toBe(0xcafebabe);
  });

  it('lodsd with fs and 0x67: ESI, then the base', () => {
    const m = withHighMapping();
    m.cpu.fsBaseLo = 0xfffff000;
    m.cpu.fsBaseHi = 0;
    m.cpu.regLo[RSI] = 0x2000;
    m.cpu.regHi[RSI] = 0xdead;
    // fs addr32 lodsd (64 67 AD) ; hlt
    runCode(m, 0x200000, [0x64, 0x67, 0xad, 0xf4], 2);
    expect(m.cpu.regLo[RAX]).toBe(0xcafebabe);
    expect([m.cpu.regLo[RSI], m.cpu.regHi[RSI]]).toEqual([0x2004, 0]);
  });
});

// ---------------------------------------------------------------------------

describe('7. POP FS / POP GS load the segment base', () => {
  /*
   * APM vol. 2 4.5.3 / SDM vol. 3 3.4.4: in 64-bit mode, loading FS or GS
   * with a non-null selector loads the base from the descriptor (32 bits,
   * upper half zeroed), whichever instruction loads it (MOV, POP). A null
   * selector leaves the base alone on this CPU (CPUID 8000_0021h EAX[6],
   * NullSelectorClearsBase, is 0 in the policy).
   */
  it.each([['fs', 0xa1, 4], ['gs', 0xa9, 5]])('pop %s', (_name, opcode, s) => {
    const m = machine();
    m.cpu.fsBaseLo = m.cpu.gsBaseLo = 0x1111;
    m.cpu.fsBaseHi = m.cpu.gsBaseHi = 0xdead;
    // push 0x20 ; pop fs/gs (0F A1 / 0F A9) ; hlt
    runCode(m, 0x200000, [0x6a, 0x20, 0x0f, opcode, 0xf4], 3);
    expect(m.faults).toEqual([]);
    expect(m.cpu.seg[s]).toBe(0x20);
    const base = s === 4 ? [m.cpu.fsBaseLo, m.cpu.fsBaseHi] : [m.cpu.gsBaseLo, m.cpu.gsBaseHi];
    expect(base).toEqual([0x12345678, 0]);
    expect(m.cpu.regLo[RSP]).toBe(STACK);
  });

  it('pop fs with a null selector keeps the base', () => {
    const m = machine();
    m.cpu.fsBaseLo = 0x1111;
    m.cpu.fsBaseHi = 0x2222;
    runCode(m, 0x200000, [0x6a, 0x00, 0x0f, 0xa1, 0xf4], 3);
    expect(m.cpu.seg[4]).toBe(0);
    expect([m.cpu.fsBaseLo, m.cpu.fsBaseHi]).toEqual([0x1111, 0x2222]);
  });

  it('pop fs with a selector past the GDT limit: #GP(selector), nothing popped', () => {
    const m = machine();
    // push 0x40 ; pop fs
    runCode(m, 0x200000, [0x6a, 0x40, 0x0f, 0xa1, 0xf4], 3);
    expect(m.faults).toEqual([{ vector: 13, error: 0x40 }]);
    expect(frame(m).rip).toBe(0x200002n);
    expect(frame(m).rsp).toBe(BigInt(STACK - 8));
  });

  it('16-bit pop gs (66 0F A9) pops two bytes and loads the base', () => {
    const m = machine();
    // push word 0x20 (66 6A 20) ; pop gs (66 0F A9) ; hlt
    runCode(m, 0x200000, [0x66, 0x6a, 0x20, 0x66, 0x0f, 0xa9, 0xf4], 3);
    expect(m.faults).toEqual([]);
    expect([m.cpu.seg[5], m.cpu.gsBaseLo, m.cpu.gsBaseHi, m.cpu.regLo[RSP]]).toEqual([0x20, 0x12345678, 0, STACK]);
  });

  it('mov fs, ax loads the base too', () => {
    const m = machine();
    m.cpu.regLo[RAX] = 0x20;
    runCode(m, 0x200000, [0x8e, 0xe0, 0xf4], 2); // mov fs, eax
    expect([m.cpu.fsBaseLo, m.cpu.fsBaseHi]).toEqual([0x12345678, 0]);
  });
});

// ---------------------------------------------------------------------------

describe('8. POPF/POPFQ at CPL0 in 64-bit mode', () => {
  /*
   * SDM vol. 2 POPF (64-bit mode, CPL0, 64-bit operand): all non-reserved
   * flags except RF, VIP, VIF and VM can be modified; VIP, VIF, VM and the
   * reserved bits are unaffected; RF is cleared. APM vol. 3 POPF agrees.
   * Modifiable: CF PF AF ZF SF TF IF DF OF IOPL NT AC ID = 0x247fd5; bit 1 reads 1.
   */
  const VIF = 0x80000, VIP = 0x100000, RF = 0x10000;

  it('popfq of all ones sets exactly the modifiable flags, keeps VIF/VIP, clears RF', () => {
    const m = machine();
    m.cpu.rflags = 0x2 | VIF | RF;
    // push -1 (6A FF) ; popfq (9D)
    runCode(m, 0x200000, [0x6a, 0xff, 0x9d], 2);
    expect(m.cpu.rflags >>> 0).toBe(0x247fd5 | 0x2 | VIF);
  });

  it('popfq of zero keeps VIP and VIF', () => {
    const m = machine();
    m.cpu.rflags = 0x2 | VIF | VIP;
    runCode(m, 0x200000, [0x6a, 0x00, 0x9d], 2);
    expect(m.cpu.rflags >>> 0).toBe(0x2 | VIF | VIP);
  });

  it('push word imm (66 6A ib / 66 68 iw) pushes two bytes (SDM PUSH: operand size 16)', () => {
    const m = machine();
    runCode(m, 0x200000, [0x66, 0x6a, 0xfe, 0x66, 0x68, 0x34, 0x12, 0xf4], 3);
    expect(m.cpu.regLo[RSP]).toBe(STACK - 4);
    expect([m.mem.read16(STACK - 2), m.mem.read16(STACK - 4)]).toEqual([0xfffe, 0x1234]);
  });

  it('iretq, unlike popfq, loads RF, VIF and VIP (SDM vol. 2 IRET, CPL0)', () => {
    const m = machine();
    const flags = 0x2 | RF | VIF | VIP | 0x1;
    // push 0x18 ; push STACK ; push flags (68 id) ; push 0x10 ; push target (68 id) ; iretq ; at target: hlt
    const target = 0x200100;
    m.mem.write8(target, 0xf4);
    runCode(m, 0x200000, [0x6a, 0x18, 0x68, ...le32(STACK), 0x68, ...le32(flags), 0x6a, 0x10, 0x68, ...le32(target), 0x48, 0xcf], 7);
    expect(m.faults).toEqual([]);
    expect(m.cpu.stop).toBe(Stop.Halted);
    expect(m.cpu.rflags >>> 0).toBe(flags);
  });

  it('16-bit popf changes FLAGS[15:0] only', () => {
    const m = machine();
    m.cpu.rflags = 0x2 | VIF | RF | 0x40000;
    // push word -1 (66 6A FF) ; popf (66 9D)
    runCode(m, 0x200000, [0x66, 0x6a, 0xff, 0x66, 0x9d], 2);
    expect(m.cpu.rflags >>> 0).toBe(0x7fd5 | 0x2 | VIF | RF | 0x40000);
  });
});

// ---------------------------------------------------------------------------

describe('9. translated blocks: a byte or word load into a register with bit 31 set', () => {
  /*
   * MOV r8, m8 and MOV r16, m16 replace the low 8 or 16 bits and keep the
   * rest of the register (APM vol. 3, MOV; SDM vol. 1 3.4.1.1: 8- and 16-bit
   * operands leave bits 63:8 or 63:16 unchanged). With EAX = 0xffffff00 and
   * the byte 0xff loaded into AL (or EAX = 0xffff0000 and 0xffff into AX),
   * RAX is 0xffffffff, and ADD RAX, 1 makes it 0x1_00000000 (a carry into
   * bit 32). Inside a translated block the
   * registers live in JavaScript locals, where (x & 0xffffff00) | m is a
   * negative number unless made unsigned: the ADD then lost the carry.
   */
  it.each([
    ['mov al, [0x100000]', [0x8a, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00], 0xffffff00, 0x1_0000_0000n],
    ['mov ax, [0x100000]', [0x66, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00], 0xffff0000, 0x1_0000_0000n],
  ])('%s ; add rax, 1 (translated and interpreted alike)', (_name, load, eax, expected) => {
    for (const translateAfter of [0, Number.MAX_SAFE_INTEGER]) {
      const m = machine();
      m.cpu.translateAfter = translateAfter;
      m.mem.writeBytes(0x100000, Uint8Array.of(0xff, 0xff));
      m.cpu.regLo[RAX] = eax;
      // <load> ; add rax, 1 (48 83 C0 01) ; jmp $ (EB FE): the block runs whole once, then the JMP loops on itself.
      runCode(m, 0x200000, [...load, 0x48, 0x83, 0xc0, 0x01, 0xeb, 0xfe], 12);
      expect(m.faults).toEqual([]);
      expect(m.cpu.reg64(RAX), `translateAfter ${translateAfter}`).toBe(expected);
    }
  });
});
