import { describe, expect, it } from 'vitest';
import type { Cpu } from '../../src/cpu/cpu.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { RAX, RBX, RCX, RDI, RDX, RSI, RSP } from '../../src/cpu/registers.js';

const R8 = 8, R9 = 9;
import { identityMappedCpu } from '../long-mode-cpu.js';
import { cpuOutcome, type CpuOutcome } from './cpu-outcome.js';

/*
 * Blocks compiled to WebAssembly (translate/wasm-block.ts, wasm-backend.ts)
 * against the interpreter and against translated JavaScript blocks. Each
 * program runs three times from the same state: compiled to WebAssembly from
 * its first entry, translated to JavaScript only, interpreted only; the three
 * must agree on every register, RFLAGS, RIP, the retired count, the trace
 * hash, the last 64 retired RIPs, how the run stopped and the bytes of the
 * data page (the interpreter's values are bzemu's own, the reference for
 * both fast paths). Each case also checks that WebAssembly ran it (blocks
 * compiled, and where it matters, stops taken), or the comparison would test
 * the JavaScript path twice.
 */

const CODE = 0x300000, DATA = 0x100000;
const HLT = 0xf4;

type Mode = 'wasm' | 'js' | 'interpreter';

interface Program {
  code: number[];
  regs: Array<[number, number, number?]>;
  /** Bytes at DATA before the run. */
  data?: number[];
}

/** `translateAfter`: the fast paths' threshold (0: every block is compiled at its first entry, on its own). */
function run(p: Program, mode: Mode, budget = 1e6, prepare?: (mem: SparseMemory, cpu: Cpu) => void, translateAfter = 0): { out: CpuOutcome; cpu: Cpu; mem: SparseMemory } {
  const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
  const cpu: Cpu = identityMappedCpu(mem);
  cpu.translateAfter = mode === 'interpreter' ? Number.MAX_SAFE_INTEGER : translateAfter;
  cpu.wasmBlocks = mode === 'wasm';
  for (const [r, lo, hi] of p.regs) {
    cpu.regLo[r] = lo >>> 0;
    cpu.regHi[r] = (hi ?? 0) >>> 0;
  }
  cpu.rflags = 0x2;
  if (p.data !== undefined) mem.writeBytes(DATA, Uint8Array.from(p.data));
  mem.writeBytes(CODE, Uint8Array.from(p.code));
  prepare?.(mem, cpu);
  cpu.ripLo = CODE;
  cpu.ripHi = 0;
  cpu.run(budget);
  return { out: cpuOutcome(cpu, mem, DATA, 0x2000), cpu, mem };
}

/** Run all three ways; they must agree. The WebAssembly run's CPU is returned for further checks. */
function agree(p: Program, budget = 1e6, prepare?: (mem: SparseMemory, cpu: Cpu) => void, translateAfter = 0): { out: CpuOutcome; cpu: Cpu; mem: SparseMemory } {
  const wasm = run(p, 'wasm', budget, prepare, translateAfter);
  const js = run(p, 'js', budget, prepare, translateAfter);
  const interpreted = run(p, 'interpreter', budget, prepare);
  expect(wasm.out).toEqual(interpreted.out);
  expect(js.out).toEqual(interpreted.out);
  expect(wasm.cpu.wasm!.blocks).toBeGreaterThan(0);
  return wasm;
}

const M64 = 0xffffffff;

/*
 * Flags pending from one block read at the next block's entry, with the
 * blocks in one region (the loop's second pass on runs inside WebAssembly):
 * L0: cmp rax, rbx; jmp L1 | L1: setb dl; adc rsi, rdi; cmovl r8, r9; add r10, rdx; add rax, r11; sub rcx, 1; jne L0; hlt
 */
const CMP_READERS = [0x48, 0x39, 0xd8, 0xeb, 0x00, 0x0f, 0x92, 0xc2, 0x48, 0x11, 0xfe, 0x4d, 0x0f, 0x4c, 0xc1, 0x49, 0x01, 0xd2, 0x4c, 0x01, 0xd8,
  0x48, 0x83, 0xe9, 0x01, 0x75, 0xe5, HLT];

describe('WebAssembly blocks agree with the interpreter', () => {
  /*
   * Each Jcc decided in the block of the instruction that set the flags
   * (from its operands where the kind allows). Per pair of values: mov rax,
   * mov rbx, then for each of the 16 conditions the setter and Jcc +7 over
   * or r8, 1 << cc (so r8 holds the conditions not taken), then mov [DATA +
   * 8 * pair], r8 and xor r8d, r8d.
   */
  const PAIRS: Array<[bigint, bigint]> = [
    [1n, 2n], [2n, 1n], [5n, 5n], [0n, 0n], [1n << 63n, 1n], [1n, 1n << 63n], [(1n << 63n) - 1n, (1n << 64n) - 1n],
    [0xffn, 1n], [0x80000000n, 0x7fffffffn], [0x1_0000_0000n, 0x1_0000_0000n], [0x7fn, 0x80n],
  ];
  const le64 = (v: bigint): number[] => Array.from({ length: 8 }, (_, k) => Number((v >> BigInt(8 * k)) & 0xffn));
  const conditionProgram = (setter: number[]): number[] => {
    const code: number[] = [];
    PAIRS.forEach(([a, b], p) => {
      code.push(0x48, 0xb8, ...le64(a), 0x48, 0xbb, ...le64(b));
      for (let cc = 1; cc <= 16; cc++) code.push(...setter, 0x70 + cc - 1, 7, 0x49, 0x81, 0xc8, ...le64(BigInt(1 << cc)).slice(0, 4));
      code.push(0x4c, 0x89, 0x04, 0x25, ...le64(BigInt(DATA + 8 * p)).slice(0, 4), 0x45, 0x31, 0xc0);
      code.push(0x48, 0x89, 0x14, 0x25, ...le64(BigInt(DATA + 0x800 + 8 * p)).slice(0, 4)); // mov [DATA + 0x800 + 8 * pair], rdx
    });
    return [...code, HLT];
  };
  it.each([
    ['cmp rax, rbx', [0x48, 0x39, 0xd8]],
    ['cmp eax, ebx', [0x39, 0xd8]],
    ['cmp al, 0x80', [0x80, 0xf8, 0x80]],
    ['test rax, rbx', [0x48, 0x85, 0xd8]],
    ['test eax, ebx', [0x85, 0xd8]],
    ['mov rdx, rax; sub rdx, rbx', [0x48, 0x89, 0xc2, 0x48, 0x29, 0xda]],
    ['mov rdx, rax; add rdx, rbx', [0x48, 0x89, 0xc2, 0x48, 0x01, 0xda]],
    ['mov edx, eax; add edx, ebx', [0x89, 0xc2, 0x01, 0xda]],
    ['mov rdx, rax; xor rdx, rbx', [0x48, 0x89, 0xc2, 0x48, 0x31, 0xda]],
    ['mov rdx, rax; imul rdx, rbx', [0x48, 0x89, 0xc2, 0x48, 0x0f, 0xaf, 0xd3]],
    ['cmp al, bl', [0x38, 0xd8]],
    ['cmp ax, bx', [0x66, 0x39, 0xd8]],
    ['test al, bl', [0x84, 0xd8]],
    ['mov edx, eax; and dl, bl', [0x89, 0xc2, 0x20, 0xda]],
    ['mov edx, eax; add dx, bx', [0x89, 0xc2, 0x66, 0x01, 0xda]],
    ['mov edx, eax; sub dl, 0x80', [0x89, 0xc2, 0x80, 0xea, 0x80]],
    ['cmp rax, rbx; mov edx, eax; inc edx (CF kept)', [0x48, 0x39, 0xd8, 0x89, 0xc2, 0xff, 0xc2]],
    ['cmp rax, rbx; mov rdx, rax; dec rdx (CF kept)', [0x48, 0x39, 0xd8, 0x48, 0x89, 0xc2, 0x48, 0xff, 0xca]],
    ['cmp rax, rbx; lzcnt rdx, rax', [0x48, 0x39, 0xd8, 0xf3, 0x48, 0x0f, 0xbd, 0xd0]],
    ['cmp rax, rbx; tzcnt edx, eax', [0x48, 0x39, 0xd8, 0xf3, 0x0f, 0xbc, 0xd0]],
    ['cmp rax, rbx; bsr rdx, rax', [0x48, 0x39, 0xd8, 0x48, 0x0f, 0xbd, 0xd0]],
    ['cmp rax, rbx; bsf edx, eax', [0x48, 0x39, 0xd8, 0x0f, 0xbc, 0xd0]],
    ['cmp rax, rbx; mov rdx, rax; not edx; cqo', [0x48, 0x39, 0xd8, 0x48, 0x89, 0xc2, 0xf7, 0xd2, 0x48, 0x99]],
    ['cmp rax, rbx; cdq; cdqe', [0x48, 0x39, 0xd8, 0x99, 0x48, 0x98]],
    ['mov edx, eax; imul edx, ebx', [0x89, 0xc2, 0x0f, 0xaf, 0xd3]],
    ['imul edx, eax, 0x12345', [0x69, 0xd0, 0x45, 0x23, 0x01, 0x00]],
    ['imul edx, eax, -3', [0x6b, 0xd0, 0xfd]],
    ['mov edx, eax; mov ecx, ebx; shl edx, cl (counts of zero keep the flags)', [0x89, 0xc2, 0x89, 0xd9, 0xd3, 0xe2]],
    ['mov rdx, rax; mov ecx, ebx; shr rdx, cl', [0x48, 0x89, 0xc2, 0x89, 0xd9, 0x48, 0xd3, 0xea]],
    ['mov edx, eax; mov ecx, ebx; sar edx, cl', [0x89, 0xc2, 0x89, 0xd9, 0xd3, 0xfa]],
    ['mov edx, eax; shr dx, 3', [0x89, 0xc2, 0x66, 0xc1, 0xea, 0x03]],
    ['mov edx, eax; sar dl, 5', [0x89, 0xc2, 0xc0, 0xfa, 0x05]],
    ['mov edx, eax; shl dx, 17 (past the width)', [0x89, 0xc2, 0x66, 0xc1, 0xe2, 0x11]],
    ['mov edx, eax; sar dx, 20 (past the width)', [0x89, 0xc2, 0x66, 0xc1, 0xfa, 0x14]],
  ])('all 16 Jcc conditions after %s', (_name, setter) => {
    const { out } = agree({ code: conditionProgram(setter as number[]), regs: [] });
    expect(out.stop).toBe(1); // reached the HLT
  });

  it.each([
    ['rax climbing past rbx', [0, 0], [4, 0], [1, 0]],
    ['rax climbing past a negative rbx', [0xfffffffc, M64], [0, 0x80000000], [1, 0]],
    ['rax stepping down across zero', [3, 0], [0, 0], [M64, M64]],
  ])('CMP flags read by SETB, ADC and CMOVL at the next block\'s entry: %s', (_name, a, b, step) => {
    agree({ code: CMP_READERS, regs: [[RAX, a[0], a[1]], [RBX, b[0], b[1]], [11, step[0], step[1]], [RCX, 8], [RSI, M64, M64], [RDI, 0], [R8, 11], [R9, 22]] });
  });

  /*
   * IMUL's flags read by JO in the next block, linked:
   * L0: imul rax, rbx; jmp L1 | L1: mov edx, 5; jo L2 | add r8, 1; jmp L4 | L2: add r9, 1 | L4: add rbx, r10; mov rax, r11; sub rcx, 1; jne L0; hlt
   */
  const IMUL_JO = [0x48, 0x0f, 0xaf, 0xc3, 0xeb, 0x00, 0xba, 0x05, 0, 0, 0, 0x70, 0x06, 0x49, 0x83, 0xc0, 0x01, 0xeb, 0x04, 0x49, 0x83, 0xc1, 0x01,
    0x4c, 0x01, 0xd3, 0x4c, 0x89, 0xd8, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xdd, HLT];
  it.each([
    ['2^62 by 1, 2, 3, ...', [0, 0x40000000], [1, 0], [1, 0]],
    ['-2^62 by -1, 0, 1, 2, ...', [0, 0xc0000000], [M64, M64], [1, 0]],
    ['2^32 by 2^31 - 2, 2^31 - 1, 2^31, ...', [0, 1], [0x7ffffffe, 0], [1, 0]],
    ['-1 by -2^63, -2^63 + 2^62, ...', [M64, M64], [0, 0x80000000], [0, 0x40000000]],
  ])('IMUL r64 flags read by JO in the next block: %s', (_name, a, b, step) => {
    const { out } = agree({ code: IMUL_JO, regs: [[RAX, a[0], a[1]], [11, a[0], a[1]], [RBX, b[0], b[1]], [10, step[0], step[1]], [RCX, 6]] });
    expect(out.regs[R8] + out.regs[9]).toBe(6n);
  });

  // L0: add rax, rcx; sub rcx, 1; jne L0; hlt (a loop on itself: its passes run inside one call)
  const SUM_LOOP = { code: [0x48, 0x01, 0xc8, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xf7, HLT], regs: [[RCX, 1000]] as Array<[number, number]> };
  it('a loop on itself runs to its end', () => {
    const { out } = agree(SUM_LOOP);
    expect(out.regs[RAX]).toBe(500500n); // 1000 + 999 + ... + 1, architecturally
    expect(out.icount).toBe(3001);
  });
  it('a CPU made without WebAssembly runs translated JavaScript and leaves its memory without a WebAssembly memory', () => {
    const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
    const cpu = identityMappedCpu(mem, false);
    cpu.translateAfter = 0;
    mem.writeBytes(CODE, Uint8Array.from(SUM_LOOP.code));
    cpu.regLo[RCX] = 1000;
    cpu.ripLo = CODE;
    cpu.run(1e6);
    expect(cpu.wasm).toBeNull();
    expect(cpu.regLo[RAX]).toBe(500500);
    expect(cpu.blocksTranslated).toBeGreaterThan(0);
    expect(mem.arenaOffset(mem.pageData(CODE / 4096)!)).toBe(-1);
  });
  it.each([1, 2, 3, 4, 5, 6, 1500, 2999, 3000])('the loop stopped by the budget after %i instructions', (budget) => {
    const { out } = agree(SUM_LOOP, budget);
    expect(out.icount).toBe(budget);
  });

  // add rdx, 1; mov rax, [rbx]; add rdx, 1; hlt, RBX past the 32 MiB identity map: #PF in the middle of a block
  it('a page fault in the middle of a block leaves the state the interpreter leaves', () => {
    const { out, cpu } = agree({ code: [0x48, 0x83, 0xc2, 0x01, 0x48, 0x8b, 0x03, 0x48, 0x83, 0xc2, 0x01, HLT], regs: [[RBX, 0x3000000], [RDX, 10]] });
    expect(out.stop).toBe(2); // no IDT: the #PF ends in a triple fault
    expect(out.regs[RDX]).toBe(11n);
    expect(cpu.wasm!.stops).toBeGreaterThan(0);
  });

  // L: add rax, [rbx]; add rbx, 8; cmp rbx, rdx; jne L; hlt, over a page written as a loaded image (its bytes are the
  // image's, outside the WebAssembly memory): the first read stops, the page moves in, the next passes read it in place.
  it('a loop reading a page whose bytes lie outside the WebAssembly memory', () => {
    const image = Uint8Array.from({ length: 0x1000 }, (_, k) => (k * 7 + 3) & 0xff);
    const program: Program = {
      code: [0x48, 0x03, 0x03, 0x48, 0x83, 0xc3, 0x08, 0x48, 0x39, 0xd3, 0x75, 0xf4, HLT],
      regs: [[RBX, DATA], [RDX, DATA + 0x1000]],
    };
    const load = (mem: SparseMemory): void => mem.writeImage(DATA, image);
    const { out, cpu, mem } = agree(program, 1e6, load);
    let sum = 0n;
    for (let k = 0; k < 0x1000; k++) sum += BigInt(image[k]) << BigInt(8 * (k % 8));
    expect(out.regs[RAX]).toBe(sum & 0xffffffffffffffffn);
    expect(cpu.wasm!.stops).toBeGreaterThan(0);
    expect(mem.arenaOffset(mem.pageData(DATA / 4096)!)).toBeGreaterThanOrEqual(0);
  });
});

describe('regions: the blocks of a page in one WebAssembly function', () => {
  /*
   * translateAfter 16: the block that gets hot first is compiled with the
   * other blocks of the loop (warm: they ran an eighth as often), so the
   * exits between them are branches inside one function, not returns to
   * the dispatcher.
   * L0: add rax, rcx; jmp L1 | L1: sub rcx, 1; jne L0 | hlt
   */
  const HOT = 16;
  const TWO_BLOCKS: Program = { code: [0x48, 0x01, 0xc8, 0xeb, 0x00, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xf5, HLT], regs: [[RCX, 1000]] };
  it('a loop of two blocks runs to its end inside its region', () => {
    const { out, cpu } = agree(TWO_BLOCKS, 1e6, undefined, HOT);
    expect(out.regs[RAX]).toBe(500500n); // 1000 + 999 + ... + 1, architecturally
    expect(out.icount).toBe(4001);
    expect(cpu.wasm!.regions).toBeGreaterThan(0);
  });
  it.each([100, 101, 102, 103, 104, 105, 106, 107, 2001, 2002, 2003, 3999, 4000])('the loop of two blocks stopped by the budget after %i instructions', (budget) => {
    const { out } = agree(TWO_BLOCKS, budget, undefined, HOT);
    expect(out.icount).toBe(budget);
  });

  // L0: mov rdx, [rbx]; jmp L1 | L1: add rbx, 0x1000; sub rcx, 1; jne L0 | hlt, RBX walking past the 32 MiB identity map
  it('a page fault in a block entered from another block of its region', () => {
    const { out, cpu } = agree({
      code: [0x48, 0x8b, 0x13, 0xeb, 0x00, 0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xee, HLT],
      regs: [[RBX, 0x2000000 - 0x40000], [RCX, 100]],
    }, 1e6, undefined, HOT);
    expect(out.stop).toBe(2); // no IDT: the #PF ends in a triple fault
    expect(out.regs[RBX]).toBe(0x2000000n);
    expect(cpu.wasm!.regions).toBeGreaterThan(0);
  });

  it('CMP flags pending from one member are read at the next member\'s entry', () => {
    const { cpu } = agree({ code: CMP_READERS, regs: [[RAX, 0], [RBX, 40], [11, 1], [RCX, 80], [RSI, M64, M64], [RDI, 0], [R8, 11], [R9, 22]] }, 1e6, undefined, HOT);
    expect(cpu.wasm!.regions).toBeGreaterThan(0);
  });

  it('a breakpoint added after its blocks were compiled into a region stops there', () => {
    const outcomes = (['wasm', 'interpreter'] as const).map((mode) => {
      const mem = new SparseMemory(64 << 20, { kind: 'byte', value: 0xcc });
      const cpu = identityMappedCpu(mem);
      cpu.translateAfter = mode === 'wasm' ? HOT : Number.MAX_SAFE_INTEGER;
      cpu.regLo[RCX] = 1000;
      cpu.rflags = 0x2;
      mem.writeBytes(CODE, Uint8Array.from(TWO_BLOCKS.code));
      cpu.ripLo = CODE;
      cpu.run(2001);
      if (mode === 'wasm') expect(cpu.wasm!.regions).toBeGreaterThan(0);
      cpu.addBreakpoint(CODE + 5); // L1
      cpu.run(1e6);
      return cpuOutcome(cpu, mem, DATA, 16);
    });
    expect(outcomes[0]).toEqual(outcomes[1]);
    expect(outcomes[0].stop).toBe(3); // Stop.Breakpoint
    expect(outcomes[0].rip).toBe(CODE + 5);
  });
});

describe('a region the engine refuses', () => {
  it('falls back to the hot block compiled alone', () => {
    // The engine's limits (code space, function size) show as a RangeError from WebAssembly.Module: refuse every region of two or more.
    const Real = WebAssembly.Module;
    const isRegion = (b: Uint8Array): boolean => b.some((x, k) => x === 2 && b[k + 1] === 0x65 && b[k + 2] === 0x31); // the export name "e1"
    class Refusing extends Real {
      constructor(bytes: BufferSource) {
        if (isRegion(new Uint8Array(bytes instanceof ArrayBuffer ? bytes : bytes.buffer))) throw new RangeError('too big');
        super(bytes);
      }
    }
    WebAssembly.Module = Refusing;
    try {
      const code = [0x48, 0x01, 0xc8, 0xeb, 0x00, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xf5, HLT]; // the loop of two blocks above
      const { out, cpu } = agree({ code, regs: [[RCX, 1000]] }, 1e6, undefined, 16);
      expect(out.regs[RAX]).toBe(500500n);
      expect(cpu.wasm!.regions).toBe(0);
      expect(cpu.wasm!.blocks).toBe(2);
    } finally {
      WebAssembly.Module = Real;
    }
  });
});

describe('CALL and RET in WebAssembly', () => {
  /*
   * L: call F; sub rcx, 1; jne L; hlt | F: add rax, rcx; ret. The CALL
   * pushes and goes on to F inside WebAssembly (linked, or a branch in a
   * region), the RET pops and goes on to the block it returned to last time.
   */
  const CALLS: Program = {
    code: [0xe8, 0x07, 0, 0, 0, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xf5, HLT, 0x48, 0x01, 0xc8, 0xc3],
    regs: [[RCX, 1000], [RSP, DATA + 0x1000]],
  };
  it.each([0, 16])('a loop calling a function runs inside WebAssembly (translateAfter %i)', (translateAfter) => {
    const { out, cpu } = agree(CALLS, 1e6, undefined, translateAfter);
    expect(out.regs[RAX]).toBe(500500n); // 1000 + 999 + ... + 1, architecturally
    expect(out.icount).toBe(5001);
    expect(out.regs[RSP]).toBe(BigInt(DATA + 0x1000));
    // Stops only before the blocks were compiled and linked: a CALL or RET by its handler would stop on every pass.
    expect(cpu.wasm!.stops).toBeLessThan(50);
  });
  // L: call F; add rdx, rax; call F; sub rcx, 1; jne L; hlt | F: add rax, rcx; ret: one RET returning to two places in turn
  it('a RET returning to two places in turn goes to each', () => {
    const { out } = agree({
      code: [0xe8, 0x0f, 0, 0, 0, 0x48, 0x01, 0xc2, 0xe8, 0x07, 0, 0, 0, 0x48, 0x83, 0xe9, 0x01, 0x75, 0xed, HLT, 0x48, 0x01, 0xc8, 0xc3],
      regs: [[RCX, 300], [RSP, DATA + 0x1000]],
    }, 1e6, undefined, 16);
    expect(out.regs[RAX]).toBe(2n * 45150n); // twice 300 + 299 + ... + 1
    expect(out.icount).toBe(300 * 9 + 1);
  });
  it.each([100, 101, 102, 103, 104, 4000, 5000])('the calling loop stopped by the budget after %i instructions', (budget) => {
    const { out } = agree(CALLS, budget, undefined, 16);
    expect(out.icount).toBe(budget);
  });

  // add rax, 1; call F with RSP 8 bytes above the 32 MiB identity map: the push faults, the CALL changes nothing
  it('a CALL whose push faults stops before it, and its handler raises the #PF', () => {
    const { out, cpu } = agree({ code: [0x48, 0x83, 0xc0, 0x01, 0xe8, 0x00, 0, 0, 0, HLT], regs: [[RSP, 0x2000008]] });
    expect(out.stop).toBe(2); // no IDT: the #PF ends in a triple fault
    expect(out.regs[RSP]).toBe(0x2000008n);
    expect(cpu.wasm!.stops).toBeGreaterThan(0);
  });

  // add rax, 1; ret, popping a non-canonical address (high half 0x8000): the RET stops, its handler raises #GP(0)
  it('a RET to another 4 GiB stops before it, and its handler checks the target', () => {
    const popped = [0x34, 0x12, 0, 0, 0, 0x80, 0, 0];
    const { out, cpu } = agree({ code: [0x48, 0x83, 0xc0, 0x01, 0xc3], regs: [[RSP, DATA]], data: popped });
    expect(out.stop).toBe(2);
    expect(out.regs[RSP]).toBe(BigInt(DATA));
    expect(cpu.wasm!.stops).toBeGreaterThan(0);
  });
});
