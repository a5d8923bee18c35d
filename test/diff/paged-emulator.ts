/*
 * The bzemu side of the paged differential tests: the layout of
 * paged-harness.c rebuilt with bzemu's own page tables (4- or 5-level;
 * 4 KiB pages in scattered frames, or one 2 MiB or 1 GiB page), the program
 * run from its first instruction on translated blocks, and the outcome in the
 * host's shape. Also the comparison of the two.
 */
import { Cpu } from '../../src/cpu/cpu.js';
import { Stop } from '../../src/cpu/host.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { BareMetalHost } from '../../src/platform/bare-host.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';
import { ALIAS, CODE, DATA, DATA_SIZE, GDT_PAGE, MAX_OUTSIDE, USER_CS, USER_SS, type PagedInput, type PagedOutput, type PagingMode } from './paged-native.js';

const MEM = 0x80000000;
const PML5 = 0x1000, PML4 = 0x2000, PDPT = 0x3000, PD = 0x4000, PT = 0x5000;
/** The 2 MiB region holding code and data: VA 0x3fe00000 (PD index 511). */
const REGION_2M = 0x3fe00000;
const ONE_GIB = 0x40000000;
const NX_HI = 0x80000000;
const MAX_STEPS = 100_000;

/** Pages bzemu maps in 4 KiB mode, by VA; ALIAS shares the first code page's frame. */
const CODE_PAGES = [CODE, CODE + 0x1000];
const DATA_PAGES = Array.from({ length: DATA_SIZE / 0x1000 }, (_, k) => DATA + k * 0x1000);

export interface PagedSetup {
  mem: SparseMemory;
  cpu: Cpu;
  /** Physical address of a mapped VA (the layout's pages only). */
  pa(va: number): number;
}

/** Frames for the 4 KiB mapping, scattered so that neighbouring pages are never neighbouring frames. */
function scatteredFrames(seed: number, n: number): number[] {
  const frames: number[] = [];
  let h = (seed * 0x9e3779b1) >>> 0;
  while (frames.length < n) {
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    h = (h ^ (h >>> 12)) >>> 0;
    const pfn = 0x100 + (h % 0x3f00); // 1 MiB .. 64 MiB, clear of the page tables
    if (!frames.some((f) => Math.abs(f - pfn) <= 1)) frames.push(pfn);
  }
  return frames;
}

function w64(mem: SparseMemory, pa: number, lo: number, hi = 0): void {
  mem.write32(pa, lo >>> 0);
  mem.write32(pa + 4, hi >>> 0);
}

/** Memory, page tables, GDT and a CPU in 64-bit mode at CPL 3's selectors, for `mode`. */
export function pagedMachine(mode: PagingMode & { frameSeed: number }): PagedSetup {
  const mem = new SparseMemory(MEM, { kind: 'zero' });
  if (mode.levels === 5) w64(mem, PML5, PML4 | 7);
  w64(mem, PML4, PDPT | 7);
  let pa: (va: number) => number;
  if (mode.pageSize === '1G') {
    w64(mem, PDPT, ONE_GIB | 0x87);
    pa = (va) => ONE_GIB + va;
  } else {
    w64(mem, PDPT, PD | 7);
    if (mode.pageSize === '2M') {
      const base = (0x2 + (mode.frameSeed % 0x1fd)) * 0x200000; // 4 MiB .. 1 GiB
      w64(mem, PD + 511 * 8, base | 0x87);
      pa = (va) => base + (va - REGION_2M);
    } else {
      w64(mem, PD + 511 * 8, PT | 7);
      const pages = [...CODE_PAGES, GDT_PAGE, ...DATA_PAGES];
      const frames = scatteredFrames(mode.frameSeed, pages.length);
      const frameOf = new Map<number, number>();
      pages.forEach((va, k) => frameOf.set(va, frames[k] * 0x1000));
      frameOf.set(ALIAS, frameOf.get(CODE)!);
      for (const [va, frame] of frameOf) {
        const code = va === CODE || va === CODE + 0x1000 || va === ALIAS;
        const flags = va === DATA ? 5 : 7; // DATA0 read-only
        w64(mem, PT + ((va >>> 12) & 511) * 8, frame | flags, code ? 0 : NX_HI);
      }
      pa = (va) => {
        const frame = frameOf.get(va & ~0xfff);
        if (frame === undefined) throw new Error(`VA 0x${va.toString(16)} is not mapped`);
        return frame + (va & 0xfff);
      };
    }
  }
  // GDT: index 5 = 64-bit data (DPL 3), index 6 = 64-bit code (DPL 3), as Linux's user segments.
  const gdt = pa(GDT_PAGE);
  w64(mem, gdt + 5 * 8, 0x0000ffff, 0x00cff300);
  w64(mem, gdt + 6 * 8, 0x0000ffff, 0x00affb00);
  const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()));
  cpu.cr0 = 0x80010033; // PG WP NE ET MP PE
  cpu.cr4 = 0x40620 | (mode.levels === 5 ? 0x1000 : 0); // OSXSAVE OSXMMEXCPT OSFXSR PAE (LA57)
  cpu.efer = 0xd00; // NXE LMA LME
  cpu.cr3Lo = mode.levels === 5 ? PML5 : PML4;
  cpu.cr3Hi = 0;
  cpu.seg[1] = USER_CS;
  cpu.seg[2] = USER_SS;
  cpu.gdtrBaseLo = GDT_PAGE;
  cpu.gdtrBaseHi = 0;
  cpu.gdtrLimit = 0x3f;
  cpu.idtrLimit = 0; // the first exception is recorded; its delivery then fails and stops the CPU
  cpu.flushTlb();
  return { mem, cpu, pa };
}

function writeVirt(s: PagedSetup, va: number, bytes: Uint8Array): void {
  for (let k = 0; k < bytes.length;) {
    const n = Math.min(bytes.length - k, 0x1000 - ((va + k) & 0xfff));
    s.mem.writeBytes(s.pa(va + k), bytes.subarray(k, k + n));
    k += n;
  }
}

function readVirt(s: PagedSetup, va: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let k = 0; k < length;) {
    const n = Math.min(length - k, 0x1000 - ((va + k) & 0xfff));
    out.set(s.mem.readBytes(s.pa(va + k), n), k);
    k += n;
  }
  return out;
}

interface FaultState {
  vector: number;
  errorCode: number;
  regs: bigint[];
  rip: bigint;
  rflags: number;
  cr2: bigint;
}

export interface PagedCaseSetup extends PagedInput {
  /** Picks the frames of the 4 KiB mapping and the 2 MiB page's frame. */
  frameSeed: number;
}

/** Run one case in bzemu. `translateAfter` 0 runs translated blocks from the first instruction; a large value keeps to the interpreter. */
export function runPagedEmulator(c: PagedCaseSetup, translateAfter = 0): PagedOutput {
  try {
    return runUnchecked(c, translateAfter);
  } catch (e) {
    return { regs: [], rip: 0n, rflags: 0, fault: null, errorCode: 0, cr2: 0n, code: new Uint8Array(0), windows: [], nOutside: 0, outside: [], error: String((e as Error)?.message ?? e) };
  }
}

function runUnchecked(c: PagedCaseSetup, translateAfter: number): PagedOutput {
  const s = pagedMachine({ ...c.mode, frameSeed: c.frameSeed });
  const cpu = s.cpu;
  const start = CODE + c.codeOff;
  const exit = start + c.code.length;
  writeVirt(s, start, c.code);
  for (const w of c.windows) writeVirt(s, DATA + w.off, w.bytes);
  cpu.translateAfter = translateAfter;
  c.regs.forEach((v, r) => cpu.setReg64(r, v));
  cpu.rflags = (c.rflags | 0x202) >>> 0; // IF as at CPL 3 on the host
  cpu.ripLo = start;
  cpu.ripHi = 0;
  cpu.addBreakpoint(exit);
  const recorded: FaultState[] = [];
  cpu.exceptionListener = (vector, errorCode, hasErrorCode) => {
    if (recorded.length === 0) recorded.push({
      vector,
      errorCode: hasErrorCode ? errorCode : 0,
      regs: Array.from({ length: 16 }, (_, r) => cpu.reg64(r)),
      rip: (BigInt(cpu.ripHi) << 32n) | BigInt(cpu.ripLo >>> 0),
      rflags: cpu.rflags,
      cr2: (BigInt(cpu.cr2Hi >>> 0) << 32n) | BigInt(cpu.cr2Lo >>> 0),
    });
  };
  cpu.run(MAX_STEPS);
  const f = recorded.length > 0 ? recorded[0] : null;
  if (f === null && !(cpu.stop === Stop.Breakpoint && cpu.ripLo === exit && cpu.ripHi === 0)) {
    throw new Error(`program did not end: stop ${cpu.stop} at 0x${cpu.ripHi.toString(16)}:${(cpu.ripLo >>> 0).toString(16)} after ${cpu.icount} instructions${cpu.stopDetail ? ` (${cpu.stopDetail})` : ''}`);
  }
  const windows = c.windows.map((w) => readVirt(s, DATA + w.off, w.bytes.length));
  // Nonzero data bytes outside every window, in offset order (as the host reports them).
  const data = readVirt(s, DATA, DATA_SIZE);
  for (const w of c.windows) data.fill(0, w.off, w.off + w.bytes.length);
  const outside: number[] = [];
  let nOutside = 0;
  for (let off = 0; off < DATA_SIZE; off++) {
    if (data[off] === 0) continue;
    if (nOutside < MAX_OUTSIDE) outside.push(((off << 8) | data[off]) >>> 0);
    nOutside++;
  }
  return {
    regs: f ? f.regs : Array.from({ length: 16 }, (_, r) => cpu.reg64(r)),
    rip: f ? f.rip : BigInt(exit),
    rflags: f ? f.rflags : cpu.rflags,
    fault: f ? f.vector : null,
    errorCode: f ? f.errorCode : 0,
    cr2: f ? f.cr2 : 0n,
    code: readVirt(s, start, c.code.length),
    windows,
    nOutside,
    outside,
  };
}
