import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { SparseMemory, type MemoryImage } from '../../src/memory/sparse-memory.js';
import { identityMappedCpu as machine } from '../long-mode-cpu.js';
import { RAX, RBX, RDI, RDX, RSI } from '../../src/cpu/registers.js';

const R8 = 8;

/*
 * Whole pages moved by REP MOVS, loaded from the kernel file or restored from
 * a snapshot share their bytes until written. Memory semantics must not show
 * it: every page reads as if it had been copied. The expected values are
 * those of plain copies (what REP MOVS and MOV do architecturally).
 */

const SRC = 0x100000, DST = 0x200000, CODE = 0x300000;

function runCode(cpu: Cpu, mem: SparseMemory, code: number[], instructions: number): void {
  mem.writeBytes(CODE, Uint8Array.from(code));
  cpu.ripLo = CODE;
  cpu.ripHi = 0;
  cpu.run(instructions);
}

const reg64 = (cpu: Cpu, r: number): bigint => cpu.reg64(r);

describe('pages copied whole by REP MOVS', () => {
  /*
   * The first two stores give the source page a direct (TLB) write view before
   * the copy; the store after it must not go through that view into the bytes
   * the destination now shares, and a store into the destination must not
   * show in the source.
   */
  const program = [
    0x48, 0x89, 0x06, //             mov [rsi], rax
    0x48, 0x89, 0x46, 0x08, //       mov [rsi+8], rax
    0x48, 0xc7, 0xc1, 0x00, 0x02, 0x00, 0x00, // mov rcx, 512
    0xf3, 0x48, 0xa5, //             rep movsq (one whole page)
    0x48, 0x89, 0x9e, 0x00, 0xf0, 0xff, 0xff, // mov [rsi-4096], rbx
    0x48, 0x8b, 0x97, 0x00, 0xf0, 0xff, 0xff, // mov rdx, [rdi-4096]
    0x48, 0x89, 0x9f, 0x08, 0xf0, 0xff, 0xff, // mov [rdi-4088], rbx
    0x4c, 0x8b, 0x86, 0x08, 0xf0, 0xff, 0xff, // mov r8, [rsi-4088]
  ];

  it.each([['interpreted', Number.MAX_SAFE_INTEGER], ['translated', 0]])('%s: a store into either page after the copy stays in that page', (_name, translateAfter) => {
    const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
    const cpu = machine(mem);
    cpu.translateAfter = translateAfter;
    cpu.regLo[RSI] = SRC;
    cpu.regLo[RDI] = DST;
    cpu.regLo[RAX] = 0x11111111;
    cpu.regLo[RBX] = 0x22222222;
    mem.write32(SRC + 0x800, 0x33333333);
    runCode(cpu, mem, program, 8);
    expect(cpu.regLo[RSI]).toBe(SRC + 4096); // the copy ran whole
    expect(reg64(cpu, RDX)).toBe(0x11111111n); // the destination kept the copied bytes
    expect(reg64(cpu, R8)).toBe(0x11111111n); // the source did not see the destination's store
    expect(mem.read32(SRC)).toBe(0x22222222);
    expect(mem.read32(DST + 8)).toBe(0x22222222);
    expect(mem.read32(DST + 0x800)).toBe(0x33333333);
    expect(mem.read32(DST + 0xffc)).toBe(0xcccccccc);
  });

  it('memory calls: copy, then writes of every width and kind on either side', () => {
    const mem = new SparseMemory(1 << 24, { kind: 'zero' });
    mem.fill(SRC, 4096, 0x5a);
    mem.copy(DST, SRC, 4096);
    mem.write8(SRC, 1);
    mem.write16(DST + 2, 0x0202);
    mem.write32(SRC + 4, 0x03030303);
    mem.fill(DST + 8, 4, 4);
    mem.writeBytes(SRC + 12, Uint8Array.of(5, 5));
    expect([...mem.readBytes(SRC, 16)]).toEqual([1, 0x5a, 0x5a, 0x5a, 3, 3, 3, 3, 0x5a, 0x5a, 0x5a, 0x5a, 5, 5, 0x5a, 0x5a]);
    expect([...mem.readBytes(DST, 16)]).toEqual([0x5a, 0x5a, 2, 2, 0x5a, 0x5a, 0x5a, 0x5a, 4, 4, 4, 4, 0x5a, 0x5a, 0x5a, 0x5a]);
    // A page copied over one that is itself shared: the third copy is unaffected by later writes to either.
    mem.copy(SRC + 4096, DST, 4096);
    mem.writeBytes(DST, new Uint8Array(4096).fill(9));
    expect(mem.read8(SRC + 4096 + 2)).toBe(2);
    expect(mem.read8(DST + 2)).toBe(9);
    // A whole-page fill of one side of a share (REP STOS over a copied page).
    mem.copy(DST + 4096, DST, 4096);
    mem.fill(DST + 4096, 4096, 6);
    expect(mem.read8(DST + 4096 + 100)).toBe(6);
    expect(mem.read8(DST + 100)).toBe(9);
    // A page copied onto itself counts as written, as any other copy (uninitialized-read tracking sees it).
    mem.trackUninitialized(SRC + 8192, 4096);
    mem.copy(SRC + 8192, SRC + 8192, 4096);
    expect(mem.unwrittenBytes(SRC + 8192, 8)).toBe(0);
  });
});

describe('pages that refer to a caller\'s bytes', () => {
  it('writeImage: guest stores (slow path, then the direct view) never reach the image', () => {
    const image = new Uint8Array(3 * 4096 + 100).fill(0x77);
    const mem = new SparseMemory(64 << 20, { kind: 'zero' });
    mem.writeImage(SRC, image);
    const cpu = machine(mem);
    cpu.regLo[RSI] = SRC + 4096;
    cpu.regLo[RAX] = 0x12345678;
    // mov [rsi], rax ; mov [rsi+8], rax ; mov rdx, [rsi+16]
    runCode(cpu, mem, [0x48, 0x89, 0x06, 0x48, 0x89, 0x46, 0x08, 0x48, 0x8b, 0x56, 0x10], 3);
    expect(mem.read32(SRC + 4096)).toBe(0x12345678);
    expect(mem.read32(SRC + 4096 + 8)).toBe(0x12345678);
    expect(reg64(cpu, RDX)).toBe(0x7777777777777777n);
    expect(image.every((b) => b === 0x77)).toBe(true);
    expect(mem.read8(SRC + 3 * 4096 + 99)).toBe(0x77); // the partial last page was copied in
  });

  it('a snapshot page restored whole is not changed by the run that restored it', () => {
    const saved = new Uint8Array(4096).fill(0x42);
    const image: MemoryImage = { size: 64 << 20, pages: new Map([[SRC >>> 12, saved]]), partial: new Map() };
    for (let run = 0; run < 2; run++) {
      const mem = new SparseMemory(64 << 20, { kind: 'zero' }, image);
      const cpu = machine(mem);
      cpu.regLo[RSI] = SRC;
      cpu.regLo[RAX] = 0x99999999;
      // mov rdx, [rsi] ; mov [rsi], rax ; mov [rsi+8], rax
      runCode(cpu, mem, [0x48, 0x8b, 0x16, 0x48, 0x89, 0x06, 0x48, 0x89, 0x46, 0x08], 3);
      expect(reg64(cpu, RDX), `run ${run}`).toBe(0x4242424242424242n);
      expect(mem.read32(SRC + 8)).toBe(0x99999999);
    }
    expect(saved.every((b) => b === 0x42)).toBe(true);
  });
});
