import { afterAll, describe, expect, it } from 'vitest';
import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';
import type { VerdictKind } from '../../src/kernel/verdict.js';
import { bootInChild, verdictOf, type GuestOutcome } from './child.js';
import {
  assemble, guestKernel, interruptGate, removeGuestKernels, layout, le32, le64, lgdt, lidt, nasmNumber, pseudoDescriptor, shortJump, storeDword,
  STARTUP_64, type AsmLine,
} from './guest.js';

/*
 * Hostile guests: small hand-assembled programs written over the Debian
 * kernel's startup_64, entered as the firmware enters a kernel (long mode,
 * identity map of the first GiB with 2 MiB pages, RSP 0x80000, a GDT, an IDT
 * with limit 0). Each one tries to break the emulator rather than boot; each
 * must end in a verdict whose reason says where (the RIP) and why (the vector,
 * the budget, the halt), never in a host exception, a hang or unbounded host
 * memory. Every guest runs in its own Node process (child.ts) so that a hang
 * or a runaway allocation fails its own test only.
 */

const MEM = 256 << 20;
const kernel = ensureDebianKernel('debian-6.12');
afterAll(removeGuestKernels);

/** Guest-physical scratch areas: above the entry stack (0x80000, growing down), below the image (0x2000000). */
const IDT = 0x100000, GDT = 0x101000, TSS = 0x102000, DESC = 0x103000;
/** Linear addresses past the firmware's identity map (1 GiB for a 256 MiB machine): any access is a #PF. */
const UNMAPPED = 0x40000123;
/** Mapped by the identity map, but above RAM: reads see an empty bus (all-ones), writes vanish. */
const ABOVE_RAM = 0x30000000;

function hex(v: number): string {
  return '0x' + v.toString(16);
}

/** Boot `code` at startup_64 in a child process. */
function run(name: string, code: readonly number[], budget = 1_000_000): GuestOutcome {
  return verdictOf(bootInChild({ kernelPath: guestKernel(kernel, name, code), memSize: MEM, budget }));
}

/** Address of the instruction after `prefix` (code at startup_64). */
function after(prefix: readonly AsmLine[]): number {
  return STARTUP_64 + assemble(prefix).length;
}

/** The verdict, and a reason naming the vector and the RIP it happened at. */
function expectTripleFault(o: GuestOutcome, vector: number | null, rip: number): void {
  expect(o.verdict, o.reason).toBe('triple-fault');
  expect(o.reason).toMatch(vector === null ? /vector \d+/ : new RegExp(`vector ${vector}\\b`));
  expect(o.reason).toMatch(new RegExp(`\\bat ${hex(rip)}\\b`));
}

const UD2: AsmLine = ['0f 0b', 'ud2'];
const HLT: AsmLine = ['f4', 'hlt'];
const JMP_RAX: AsmLine = ['ff e0', 'jmp rax'];
const movRax64 = (v: bigint): AsmLine => [`48 b8 ${le64(v)}`, `mov rax,${nasmNumber(v)}`];
const movEax = (v: number): AsmLine => [`b8 ${le32(v)}`, `mov eax,${nasmNumber(v)}`];
const MOV_DS_EAX: AsmLine = ['8e d8', 'mov ds,eax'];

describe('hostile guests end in a verdict that says where and why', () => {
  it('a guest that loops forever runs out of budget at the loop', () => {
    const o = run('loop', assemble([shortJump(0xeb, 'jmp', 0, 0)]), 1_000_000);
    expect(o.verdict).toBe('budget-exhausted');
    expect(o.instructions).toBe(1_000_000);
    expect(o.reason).toMatch(/budget of 1000000 exhausted at 0x2000200 \(image\+0x200\)/);
  });

  /*
   * One instruction that never ends: RAX = 0x21003 is the firmware's PDPT
   * (0x21000) marked present and writable. Stored over the PML4 (0x20000)
   * and then the PDPT itself, it makes every table entry point at the PDPT
   * page, so from then on every linear address maps to that one page, and
   * the stores keep writing the same value into it: RDI walks on through
   * 128 TiB of "mapped" memory with RCX = 2^64-1. The budget counts retired
   * instructions; it must still bound the work one instruction can do.
   */
  it('a REP STOSQ that rewrites the page tables into a self-map and never finishes runs out of budget', () => {
    const prefix: AsmLine[] = [['bf 00 00 02 00', 'mov edi,20000h'], movEax(0x21003), ['48 c7 c1 ff ff ff ff', 'mov rcx,0FFFFFFFFFFFFFFFFh']];
    const code = assemble([...prefix, ['f3 48 ab', 'rep stosq'], HLT]);
    const o = verdictOf(bootInChild({ kernelPath: guestKernel(kernel, 'endless-rep', code), memSize: MEM, budget: 1_000_000 }, { timeoutMs: 20_000, heapMiB: 1024 }));
    expect(o.verdict, o.reason).toBe('budget-exhausted');
    expect(o.reason).toContain(`at ${hex(after(prefix))}`);
  });

  describe('jumps to where there is no code', () => {
    // JMP lists #GP(0) for a non-canonical target (APM vol. 3, SDM vol. 2): the fault is the jump's.
    it('a non-canonical address: #GP at the jump, then a triple fault (no IDT)', () => {
      const prefix = [movRax64(0x0000_8000_0000_0123n)];
      expectTripleFault(run('noncanonical', assemble([...prefix, JMP_RAX])), 13, after(prefix));
    });

    it('a canonical address no page table maps: #PF', () => {
      const o = run('high-half', assemble([movRax64(0xffff_8000_0000_0123n), JMP_RAX]));
      expect(o.verdict).toBe('triple-fault');
      expect(o.reason).toMatch(/vector 14\b/);
      expect(o.reason).toMatch(/at 0xffff800000000123\b/);
    });

    it('mapped addresses above RAM read as all-ones (ff ff is no instruction): #UD', () => {
      expectTripleFault(run('above-ram', assemble([movEax(ABOVE_RAM), JMP_RAX])), 6, ABOVE_RAM);
    });
  });

  describe('garbage in CR3, the IDT register or the GDT register, then a fault', () => {
    // All-ones entries have their reserved bits set (APM vol. 2 5.3.3): the walk ends in #PF.
    it('CR3 above RAM: the next fetch walks all-ones tables: #PF', () => {
      const prefix: AsmLine[] = [movRax64(0xdead_beef_123n), ['0f 22 d8', 'mov cr3,rax']];
      expectTripleFault(run('cr3-above-ram', assemble([...prefix, ['90', 'nop']])), 14, after(prefix));
    });

    it('CR3 at a page of poisoned RAM: the walk of random entries faults at the next fetch', () => {
      const prefix: AsmLine[] = [movEax(0x5000000), ['0f 22 d8', 'mov cr3,rax']];
      expectTripleFault(run('cr3-poison', assemble([...prefix, ['90', 'nop']])), null, after(prefix));
    });

    const idtBases: Array<[string, string, bigint]> = [
      ['a non-canonical base', 'idt-noncanonical', 0x8000_0000_0000_1000n],
      ['a base above RAM (all-ones gates)', 'idt-above-ram', BigInt(ABOVE_RAM)],
      ['a base in poisoned RAM (random gates)', 'idt-poison', 0x800_0000n],
    ];
    it.each(idtBases)('LIDT with %s, then UD2: delivering #UD fails, a triple fault at the UD2', (_name, file, base) => {
      const prefix = [...pseudoDescriptor(DESC, 0xfff, base), lidt(DESC)];
      expectTripleFault(run(file, assemble([...prefix, UD2])), null, after(prefix));
    });

    it('LGDT with a non-canonical base, then a data segment load: #GP at the load', () => {
      const prefix = [...pseudoDescriptor(DESC, 0xffff, 0x8000_0000_0000_1000n), lgdt(DESC), movEax(0x18)];
      expectTripleFault(run('gdt-noncanonical', assemble([...prefix, MOV_DS_EAX])), 13, after(prefix));
    });

    it('LGDT with limit 0, then a data segment load: the selector is past the limit, #GP', () => {
      const prefix = [...pseudoDescriptor(DESC, 0, BigInt(GDT)), lgdt(DESC), movEax(0x18)];
      expectTripleFault(run('gdt-empty', assemble([...prefix, MOV_DS_EAX])), 13, after(prefix));
    });
  });

  it('a guest that recurses until the stack runs out (over its page tables, then a #PF)', () => {
    const o = run('recursion', assemble([['e8 fb ff ff ff', `call ${STARTUP_64.toString(16).toUpperCase().padStart(16, '0')}h`]]));
    expectTripleFault(o, 14, STARTUP_64);
    // It really recursed: the 0x80000 entry stack was eaten down into the page tables at 0x20000-0x22fff.
    expect(o.instructions).toBeGreaterThan((0x80000 - 0x23000) / 8);
  });

  it('REP STOSQ over all of RAM from address 0 tramples the page tables on its way: #PF at the REP', () => {
    const prefix: AsmLine[] = [
      ['31 ff', 'xor edi,edi'],
      ['b9 ' + le32(MEM / 8), `mov ecx,${nasmNumber(MEM / 8)}`],
      movRax64(0xf4f4_f4f4_f4f4_f4f4n),
    ];
    // The PML4 (0x20000) becomes 0xf4 bytes (not present): the next page's translation faults, before the fill reaches the code.
    expectTripleFault(run('stos-all', assemble([...prefix, ['f3 48 ab', 'rep stosq'], HLT])), 14, after(prefix));
  });

  describe('faults inside the fault handler', () => {
    it('a #UD handler that executes UD2 nests until the stack runs out, then triple-faults', () => {
      const handler = 0x100;
      const code = layout([
        [0, [...interruptGate(IDT, 6, STARTUP_64 + handler), ...pseudoDescriptor(DESC, 0xfff, BigInt(IDT)), lidt(DESC), UD2]],
        [handler, [['90', 'nop'], UD2]],
      ]);
      const o = run('ud-in-ud', code);
      expectTripleFault(o, null, STARTUP_64 + handler + 1);
      // Nested: the handler ran once per frame the 0x80000 stack could hold.
      expect(o.instructions).toBeGreaterThan(1000);
    });

    it('a #PF handler at an unmapped address: each delivery faults again, frames pile up until the stack runs out', () => {
      const code = assemble([
        ...interruptGate(IDT, 14, UNMAPPED), ...interruptGate(IDT, 13, UNMAPPED),
        ...pseudoDescriptor(DESC, 0xfff, BigInt(IDT)), lidt(DESC),
        movEax(UNMAPPED), JMP_RAX,
      ]);
      expectTripleFault(run('pf-handler-unmapped', code), 14, UNMAPPED);
    });

    /*
     * Same, with the #PF gate on IST 1 of a proper TSS: every delivery starts
     * from the same stack, so nothing ever runs out and no instruction ever
     * retires. Real hardware would spin forever; the emulator must still stop
     * within its budget (a delivery is work like an instruction).
     */
    it('a #PF handler at an unmapped address on an IST stack: no instruction retires, yet the run ends', () => {
      const tssLow = ((TSS & 0xffff) << 16) | 0x67; // base 15:0, limit 0x67
      const tssHigh = ((TSS >>> 16) & 0xff) | 0x8900 | (TSS & 0xff000000); // present, type 9 (available 64-bit TSS)
      const code = assemble([
        // GDT: 0x10 64-bit code, 0x18 data, 0x20 the TSS (a 16-byte system descriptor)
        storeDword(GDT + 0x10, 0x0000ffff), storeDword(GDT + 0x14, 0x00af9a00),
        storeDword(GDT + 0x18, 0x0000ffff), storeDword(GDT + 0x1c, 0x00cf9300),
        storeDword(GDT + 0x20, tssLow >>> 0), storeDword(GDT + 0x24, tssHigh >>> 0),
        storeDword(GDT + 0x28, 0), storeDword(GDT + 0x2c, 0),
        storeDword(TSS + 0x24, 0x90000), storeDword(TSS + 0x28, 0), // IST1
        ...pseudoDescriptor(DESC, 0x2f, BigInt(GDT)), lgdt(DESC),
        movEax(0x20), ['0f 00 d8', 'ltr ax'],
        ...interruptGate(IDT, 14, UNMAPPED, 1),
        ...pseudoDescriptor(DESC, 0xfff, BigInt(IDT)), lidt(DESC),
        movEax(UNMAPPED), JMP_RAX,
      ]);
      const o = verdictOf(bootInChild({ kernelPath: guestKernel(kernel, 'pf-storm-ist', code), memSize: MEM, budget: 1_000_000 }, { timeoutMs: 20_000, heapMiB: 1024 }));
      expect(['budget-exhausted', 'triple-fault'] satisfies VerdictKind[]).toContain(o.verdict);
      expect(o.reason).toContain(hex(UNMAPPED));
    });
  });
});

/*
 * "A guest cannot make the host allocate more than --mem plus bounded
 * overhead." Growth is measured in the child from the machine's entry state
 * (kernel loaded, firmware done) to the end of the run, after a full GC.
 * RAM is 4 KiB pages allocated on first touch, each its own ArrayBuffer, so:
 *  - arrayBuffers may grow by RAM itself plus 16 MiB of slack, nothing more
 *    (addresses above RAM must cost nothing);
 *  - the JS heap may hold up to 1 KiB of bookkeeping per 4 KiB page of RAM
 *    (a Uint8Array and a DataView per page, directory slots, the decoded
 *    instructions and blocks of a page that runs code: a few hundred bytes),
 *    i.e. RAM/4, whatever the guest touches or executes;
 *  - RSS is both, plus allocator headers and 48 MiB for JIT code and slack.
 */
describe('a guest cannot make the host allocate more than its RAM plus bounded overhead', () => {
  const MiB = 1 << 20;
  function expectBounded(o: GuestOutcome): void {
    const g = o.growth;
    const shown = `growth: rss ${(g.rss / MiB).toFixed(1)} MiB, arrayBuffers ${(g.arrayBuffers / MiB).toFixed(1)} MiB, heap ${(g.heapUsed / MiB).toFixed(1)} MiB for ${MEM / MiB} MiB of RAM`;
    expect(g.arrayBuffers, shown).toBeLessThanOrEqual(MEM + 16 * MiB);
    expect(g.heapUsed, shown).toBeLessThanOrEqual(MEM / 4);
    expect(g.rss, shown).toBeLessThanOrEqual(MEM + MEM / 4 + 48 * MiB);
  }

  it('writing and reading one qword in every 4 KiB page of RAM and of the mapped GiB above it', () => {
    // The value written, 0x83, is a present 2 MiB mapping of address 0 wherever it lands on a
    // page-table entry (offset 0xff8 of the PML4, PDPT and PD pages): the loop survives its own writes.
    const loop = 12;
    const code = assemble([
      ['31 ff', 'xor edi,edi'],
      movEax(0x40000000),
      ['ba 83 00 00 00', 'mov edx,83h'],
      ['48 89 97 f8 0f 00 00', 'mov [rdi+0FF8h],rdx'],
      ['48 8b 0f', 'mov rcx,[rdi]'],
      ['48 81 c7 00 10 00 00', 'add rdi,1000h'],
      ['48 39 c7', 'cmp rdi,rax'],
      shortJump(0x72, 'jb', loop + 20, loop),
      HLT,
    ]);
    const o = verdictOf(bootInChild({ kernelPath: guestKernel(kernel, 'touch-every-page', code), memSize: MEM, budget: 10_000_000 }, { timeoutMs: 120_000, heapMiB: 1024 }));
    expect(o.verdict, o.reason).toBe('guest-halted');
    expect(o.instructions).toBe(3 + 5 * (0x40000000 / 4096) + 1); // every page visited, then the HLT
    expectBounded(o);
  });

  it('running one instruction on each of 53248 pages (the decode cache must not grow per page beyond the page itself)', () => {
    // Every page from 48 MiB to the top of RAM starts with "jmp <next page>"; the last one with HLT.
    const loop = 15;
    const code = assemble([
      ['bf 00 00 00 03', 'mov edi,3000000h'],
      movEax(MEM - 0x1000),
      ['ba e9 fb 0f 00', 'mov edx,0FFBE9h'], // e9 fb 0f 00 00 = jmp $+0x1000, then three zero bytes
      ['48 89 17', 'mov [rdi],rdx'],
      ['48 81 c7 00 10 00 00', 'add rdi,1000h'],
      ['48 39 c7', 'cmp rdi,rax'],
      shortJump(0x72, 'jb', loop + 13, loop),
      ['c6 07 f4', 'mov byte [rdi],0F4h'],
      ['bf 00 00 00 03', 'mov edi,3000000h'],
      ['ff e7', 'jmp rdi'],
    ]);
    const pages = (MEM - 0x3000000) / 4096;
    const o = verdictOf(bootInChild({ kernelPath: guestKernel(kernel, 'code-on-every-page', code), memSize: MEM, budget: 10_000_000 }, { timeoutMs: 120_000, heapMiB: 1024 }));
    expect(o.verdict, o.reason).toBe('guest-halted');
    expect(o.reason).toMatch(new RegExp(`at ${hex(MEM - 0x1000)}\\b`));
    expect(o.instructions).toBe(3 + 4 * (pages - 1) + 3 + (pages - 1) + 1); // fill, then one jmp per page, then the HLT
    expectBounded(o);
  });
});
