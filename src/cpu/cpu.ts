import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { WasmArena } from '../memory/wasm-arena.js';
import { CpuFault, EmulatorGap } from './fault.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE, Mmu, TLB_MASK, type PagingControl } from './mmu.js';
import { DOUBLE_ZERO, Operand, type Insn } from './insn.js';
import { HIGH8, RSP } from './registers.js';
import { Stop, type CpuHost } from './host.js';
import { decodeInsn, type CodeBits } from './decode.js';
import type { DecodeMemo } from './decode-memo.js';
import { deliverException } from './interrupts.js';
import { Block, continuesBlock, type BlockInsn } from './block.js';
import { translateBlock } from './translate/translate-block.js';
import { WasmBackend } from './translate/wasm-backend.js';
import { STATE_BYTES } from './translate/wasm-block.js';
import { CodePage } from './code-page.js';
import { FillPattern } from './fill-pattern.js';
import { TraceRing, TRACE_SEED, hashStep } from './trace.js';
import { undefinedOpcode } from './exec/table.js';

/** What the CPU needs from memory beyond plain access: page-write watching for the decode cache, and uninitialized-read tracking. */
export interface CpuMemoryHooks {
  readonly watched: Uint8Array;
  setWriteListener(listener: ((pfn: number) => void) | null): void;
  /** Per page: 1 when reads must be checked for never-written bytes. */
  readonly tracked: Uint8Array;
  unwrittenBytes(pa: number, size: number): number;
  /** Told the first page number and the count whenever what direct access to pages may do changes (read tracking, sharing, new bytes). */
  setAccessListener(listener: ((pfn: number, pages: number) => void) | null): void;
  /** Per page: 1 when its bytes are shared and must be copied by the memory before a write. */
  readonly shared: Uint8Array;
  /** A view of a materialised RAM page, null when unbacked or not materialised yet. */
  pageData(pfn: number): DataView | null;
  /** The WebAssembly address of a pageData view's bytes, or -1 when they are not in the arena. */
  arenaOffset(data: DataView): number;
  moveIntoArena(pfn: number): void;
  /** Where registers, TLB and RAM pages live for code translated to WebAssembly. */
  readonly arena: WasmArena;
}

const TWO32 = 4294967296;
const CR4_LA57 = 0x1000;
/** Most instructions in one basic block. */
const MAX_BLOCK = 64;
/**
 * Bounds of the decode cache, so that no guest can make it grow without
 * limit (real decompressors use a few dozen pages and ~10^4 instructions).
 * Past either, the least recently entered pages are dropped: decoded code is
 * a pure function of the bytes, so re-decoding them later changes nothing.
 * An instruction costs ~600 bytes of heap with its share of blocks, so the
 * instruction bound is one per page of RAM (within these limits): the cache
 * stays under the 1 KiB of host heap per page of RAM a guest may cost.
 */
const MAX_CODE_PAGES = 4096;
const MIN_CODE_INSNS = 16384;
const MAX_CODE_INSNS = 65536;
/**
 * Exception deliveries in a row with no instruction retiring after which the
 * run stops: a handler whose first fetch faults again (on an IST stack, which
 * never runs out) would otherwise spin forever without using up the budget.
 */
const STORM_LIMIT = 100_000;
/** A block that ran translateAfter / WARM_FRACTION times is compiled to WebAssembly with a hot block of its page (see WasmBackend.translate). */
const WARM_FRACTION = 8;

/**
 * The x86-64 CPU: architectural state, memory access through the MMU, operand
 * access for decoded instructions, and the fetch-decode-execute loop with its
 * per-physical-page decode cache. No SEV knowledge lives here.
 */
export class Cpu implements PagingControl {
  // ---- architectural state (64-bit values as unsigned 32-bit halves) ----
  // Fields that hold 32-bit halves start as DOUBLE_ZERO (see insn.ts): V8 then
  // stores them as doubles from the start instead of switching the first time
  // one holds 2^31 or more, which would deoptimize all code compiled so far.
  /** In the memory's arena (regLo at regAddress, regHi 64 bytes on), where code translated to WebAssembly finds them. */
  readonly regLo: Uint32Array;
  readonly regHi: Uint32Array;
  readonly regAddress: number;
  ripLo = DOUBLE_ZERO;
  ripHi = DOUBLE_ZERO;
  /** RIP of the instruction being executed (RIP itself already points past it). */
  curRipLo = DOUBLE_ZERO;
  curRipHi = DOUBLE_ZERO;
  rflags = 0x2;
  readonly seg = new Uint16Array(6);
  fsBaseLo = DOUBLE_ZERO;
  fsBaseHi = DOUBLE_ZERO;
  gsBaseLo = DOUBLE_ZERO;
  gsBaseHi = DOUBLE_ZERO;
  kernelGsBaseLo = DOUBLE_ZERO;
  kernelGsBaseHi = DOUBLE_ZERO;
  cr0 = 0x80050033;
  cr2Lo = DOUBLE_ZERO;
  cr2Hi = DOUBLE_ZERO;
  cr3Lo = DOUBLE_ZERO;
  cr3Hi = DOUBLE_ZERO;
  cr4 = 0x20;
  cr8 = 0;
  efer = 0x500;
  xcr0 = 1;
  gdtrBaseLo = DOUBLE_ZERO;
  gdtrBaseHi = DOUBLE_ZERO;
  gdtrLimit = 0;
  idtrBaseLo = DOUBLE_ZERO;
  idtrBaseHi = DOUBLE_ZERO;
  idtrLimit = 0;
  trSel = 0;
  trBaseLo = DOUBLE_ZERO;
  trBaseHi = DOUBLE_ZERO;
  trLimit = 0;
  /** Descriptor of the current code segment: true when CS.L = 1 (64-bit mode). */
  csLong = true;
  fpuControl = 0x37f;
  fpuStatus = 0;
  /** Model-specific registers without special behaviour, keyed by number. */
  readonly msrFile = new Map<number, [number, number]>();
  /** Instructions retired. */
  icount = 0;
  /** State of the RDRAND/RDSEED generator (xorshift32, seeded by the run's seed). */
  rngState = 0x2545f491;
  /** Told when an instruction reads bytes of a tracked page that nothing ever wrote. */
  uninitializedReadListener: ((pa: number, size: number, valueLo: number, valueHi: number) => void) | null = null;
  /** Told about every exception before it is delivered (events, diagnostics). */
  exceptionListener: ((vector: number, errorCode: number, hasErrorCode: boolean) => void) | null = null;

  // ---- scratch outputs (no allocation on the hot path) ----
  /** High half of the last 64-bit value read. */
  vHi = DOUBLE_ZERO;
  /** Result halves written by ALU helpers. */
  rLo = DOUBLE_ZERO;
  rHi = DOUBLE_ZERO;
  /** The repeated element a bulk REP STOS writes (exec/string.ts). */
  readonly stosPattern = new FillPattern();
  /** The words of a 128-bit product, least significant first, and a 32x32 product's high half (exec/muldiv.ts). */
  readonly productWords = new Uint32Array(5);
  /** Result halves of the 64-bit pair shifts (exec/pair64.ts). */
  pairLo = DOUBLE_ZERO;
  pairHi = DOUBLE_ZERO;
  /** Last effective (linear) address and, for read-modify-write operands, its physical address. */
  eaLo = DOUBLE_ZERO;
  eaHi = DOUBLE_ZERO;
  private rmwPa = -1.5;
  msrLo = DOUBLE_ZERO;
  msrHi = DOUBLE_ZERO;

  // ---- run control ----
  stop: Stop = Stop.Running;
  stopDetail = '';
  readonly fault = new CpuFault();
  readonly mmu: Mmu;
  /** Linear addresses (low half, high half 0) that stop the loop before executing; filtered by a 64 Ki bitmap. */
  private readonly bpFilter = new Uint8Array(65536);
  private readonly breakpoints = new Set<number>();
  /** Address of the breakpoint that stopped the loop. */
  hitBreakpoint = -1;
  /** Skip the breakpoint check once (to resume from a breakpoint). */
  private resumeFrom = -1;

  // ---- tracing ----
  readonly trace: TraceRing;
  traceHash = TRACE_SEED;

  // ---- decode cache: per physical page, decoded instructions and translated blocks by page offset ----
  private readonly codeCache = new Map<number, CodePage>();
  /**
   * Per physical page holding the tail of an instruction that starts on
   * another page: the pages of those instructions' starts, whose decoded code
   * must go when the tail page is written. The tail page is wherever the
   * next linear page maps, not necessarily the physically next one.
   */
  private readonly tailHeads = new Map<number, number[]>();
  /** Physical page decodeAt read an instruction's tail from (-1: none). */
  private decodedTailPfn = -1;
  private fetchVpn = -1;
  /** A double (see DOUBLE_ZERO) that matches no high half. */
  private fetchVhi = -0.5;
  private fetchCode: CodePage | null = null;
  private fetchPfn = -1;
  /** Instructions held by the decode cache, and a clock stamping pages as execution enters them (eviction order). */
  private codeInsns = 0;
  private codeClock = 0;
  private readonly maxCodeInsns: number;
  /**
   * Bumped whenever decoded code is dropped (a write to a code page) or an
   * instruction leaves RIP on itself (an interrupted REP): a running block
   * stops after that instruction.
   */
  codeEpoch = 0;
  /** Bumped when a breakpoint is added: blocks built before may run over it. */
  private blockGen = 0;
  /**
   * Entries into a basic block before it is translated (the run loop steps
   * through it until then): only hot code is worth V8's compile time, which
   * competes with the run itself on a busy machine. A block that loops on
   * itself is translated after a tenth of that: it is hot by nature, and its
   * passes are what interpreting it costs (the decompressor's byte-wise
   * memset of .bss runs 2,000 passes interpreted otherwise, a tenth of a fuzz
   * run's time). Tests set 0 to run translated code at once, or
   * Number.MAX_SAFE_INTEGER to stay in the interpreter.
   */
  translateAfter = 2000;
  /** Whether hot blocks are compiled to WebAssembly where they can be (else to JavaScript only; never without a back end). */
  wasmBlocks: boolean;
  /** This CPU's blocks compiled to WebAssembly (null: it has no WebAssembly memory, see the constructor). */
  readonly wasm: WasmBackend | null;
  /** Blocks the run loop translated when they got hot. */
  private translatedHot = 0;
  private fetchGen = -1;
  /** Retired count at the last exception delivery, and deliveries since an instruction last retired. */
  private stormIcount = -1;
  private stormDeliveries = 0;
  /** Retired count and RIP at which an interrupted REP string instruction resumes (see interruptRep). */
  private repResumeIcount = -1;
  private repResumeLo = -1;
  private repResumeHi = -1;

  constructor(
    readonly mem: PhysicalMemory & CpuMemoryHooks,
    public host: CpuHost,
    traceSize = 4096,
    /** Instructions decoded by CPUs running the same code, shared with them (null: decode everything here). */
    private readonly decoded: DecodeMemo | null = null,
    /**
     * Whether hot blocks may be compiled to WebAssembly: the registers, TLB,
     * trace ring and RAM pages then live in the memory's WebAssembly memory.
     * Short runs made by the thousand (fuzz campaigns) do better without.
     */
    wasm = true,
  ) {
    const arena = wasm ? mem.arena : null;
    const regs = arena?.alloc(STATE_BYTES, 64) ?? { offset: -1, buffer: new ArrayBuffer(STATE_BYTES) };
    this.regAddress = regs.offset;
    this.regLo = new Uint32Array(regs.buffer, Math.max(regs.offset, 0), 16);
    this.regHi = new Uint32Array(regs.buffer, Math.max(regs.offset, 0) + 64, 16);
    this.rmwPa = -1;
    this.maxCodeInsns = Math.min(MAX_CODE_INSNS, Math.max(MIN_CODE_INSNS, Math.floor(mem.size / 4096)));
    this.mmu = new Mmu(this, mem, this.fault, arena);
    this.trace = new TraceRing(traceSize, arena);
    this.wasm = arena === null ? null : new WasmBackend(arena, {
      regAddress: regs.offset, tlbAddress: this.mmu.tlbAddress,
      ringIds: this.trace.idsAddress, ringHi: this.trace.hiAddress, ringCount: this.trace.countAddress, ringMask: this.trace.mask,
    }, this.trace);
    this.wasmBlocks = wasm;
    mem.setWriteListener((pfn) => this.invalidateCode(pfn));
    mem.setAccessListener((pfn, pages) => this.mmu.pageAttributesChanged(pfn, pages));
    this.mmu.pages = mem;
  }

  // ======================= faults =======================

  /** Throw an architectural exception from inside an instruction. */
  raise(vector: number, errorCode = -1): never {
    const f = this.fault;
    f.vector = vector;
    f.hasErrorCode = errorCode >= 0;
    f.errorCode = errorCode >= 0 ? errorCode : 0;
    throw f;
  }

  gp(errorCode = 0): never {
    return this.raise(13, errorCode);
  }

  ud(): never {
    return this.raise(6);
  }

  gap(message: string): never {
    throw new EmulatorGap(message);
  }

  // ======================= registers =======================

  /** Read a register operand (number from registers.ts) of `size` bytes; 64-bit reads set vHi. */
  getReg(r: number, size: number): number {
    switch (size) {
      case 1:
        return r >= HIGH8 ? (this.regLo[r - HIGH8] >>> 8) & 0xff : this.regLo[r] & 0xff;
      case 2:
        return this.regLo[r] & 0xffff;
      case 4:
        return this.regLo[r];
      default:
        this.vHi = this.regHi[r];
        return this.regLo[r];
    }
  }

  /** Write a register operand; 32-bit writes zero the upper half, 8/16-bit writes merge. */
  setReg(r: number, size: number, lo: number, hi: number): void {
    switch (size) {
      case 1:
        if (r >= HIGH8) this.regLo[r - HIGH8] = (this.regLo[r - HIGH8] & 0xffff00ff) | ((lo & 0xff) << 8);
        else this.regLo[r] = (this.regLo[r] & 0xffffff00) | (lo & 0xff);
        return;
      case 2:
        this.regLo[r] = (this.regLo[r] & 0xffff0000) | (lo & 0xffff);
        return;
      case 4:
        this.regLo[r] = lo;
        this.regHi[r] = 0;
        return;
      default:
        this.regLo[r] = lo;
        this.regHi[r] = hi;
    }
  }

  // ======================= linear memory =======================
  //
  // Fast paths: a hit in the MMU's TLB whose slot carries a direct page
  // (mmu.rpage / mmu.wpage) reads or writes the page's bytes in place. Such a
  // slot exists only when the slow path would do nothing else (no fault, no
  // accessed/dirty update, no write watch, no read tracking), so both paths
  // have the same effects. Everything else takes the translate-and-access path.

  /** Read 1 byte at a linear address. */
  read8(lo: number, hi: number): number {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0)) {
      const p = mmu.rpage[slot];
      if (p !== null) return p.getUint8(lo & 0xfff);
    }
    return this.readSlow(lo, hi, 1);
  }

  /** Read 2 bytes at a linear address. */
  read16(lo: number, hi: number): number {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4094) {
      const p = mmu.rpage[slot];
      if (p !== null) return p.getUint16(o, true);
    }
    return this.readSlow(lo, hi, 2);
  }

  /** Read 4 bytes at a linear address (unsigned). */
  read32(lo: number, hi: number): number {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4092) {
      const p = mmu.rpage[slot];
      if (p !== null) return p.getUint32(o, true);
    }
    return this.readSlow(lo, hi, 4);
  }

  /** Read 8 bytes at a linear address: returns the low half, high half in vHi. */
  read64(lo: number, hi: number): number {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4088) {
      const p = mmu.rpage[slot];
      if (p !== null) {
        this.vHi = p.getUint32(o + 4, true);
        return p.getUint32(o, true);
      }
    }
    return this.readSlow(lo, hi, 8);
  }

  /** Write 1 byte at a linear address. */
  write8(lo: number, hi: number, v: number): void {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0)) {
      const p = mmu.wpage[slot];
      if (p !== null) {
        p.setUint8(lo & 0xfff, v);
        return;
      }
    }
    this.writeSlow(lo, hi, 1, v, 0);
  }

  /** Write 2 bytes at a linear address. */
  write16(lo: number, hi: number, v: number): void {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4094) {
      const p = mmu.wpage[slot];
      if (p !== null) {
        p.setUint16(o, v, true);
        return;
      }
    }
    this.writeSlow(lo, hi, 2, v, 0);
  }

  /** Write 4 bytes at a linear address. */
  write32(lo: number, hi: number, v: number): void {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4092) {
      const p = mmu.wpage[slot];
      if (p !== null) {
        p.setUint32(o, v, true);
        return;
      }
    }
    this.writeSlow(lo, hi, 4, v, 0);
  }

  /** Write 8 bytes (halves vlo, vhi) at a linear address. */
  write64(lo: number, hi: number, vlo: number, vhi: number): void {
    const vpn = lo >>> 12;
    const slot = (vpn ^ hi) & TLB_MASK;
    const mmu = this.mmu;
    const o = lo & 0xfff;
    if (mmu.tagLo[slot] === vpn && mmu.tagHi[slot] === (hi | 0) && o <= 4088) {
      const p = mmu.wpage[slot];
      if (p !== null) {
        p.setUint32(o, vlo, true);
        p.setUint32(o + 4, vhi, true);
        return;
      }
    }
    this.writeSlow(lo, hi, 8, vlo, vhi);
  }

  /** Read `size` (1, 2, 4, 8) bytes at a linear address; 8-byte reads set vHi. */
  readLinear(lo: number, hi: number, size: number): number {
    switch (size) {
      case 1: return this.read8(lo, hi);
      case 2: return this.read16(lo, hi);
      case 4: return this.read32(lo, hi);
      default: return this.read64(lo, hi);
    }
  }

  private readSlow(lo: number, hi: number, size: number): number {
    const off = lo & 0xfff;
    if (off + size <= 4096) {
      const pa = this.mmu.translate(lo, hi, ACCESS_READ);
      const v = this.readPhys(pa, size);
      this.mmu.refreshDirect(lo, hi);
      return v;
    }
    return this.readCrossing(lo, hi, size);
  }

  private readPhys(pa: number, size: number): number {
    const mem = this.mem;
    if (mem.tracked[pa >>> 12] === 1) return this.readTracked(pa, size);
    switch (size) {
      case 1: return mem.read8(pa);
      case 2: return mem.read16(pa);
      case 4: return mem.read32(pa);
      default:
        this.vHi = mem.read32(pa + 4);
        return mem.read32(pa);
    }
  }

  private readTracked(pa: number, size: number): number {
    const mem = this.mem;
    const lo = size === 1 ? mem.read8(pa) : size === 2 ? mem.read16(pa) : mem.read32(pa);
    const hi = size === 8 ? mem.read32(pa + 4) : 0;
    if (mem.unwrittenBytes(pa, size) > 0) this.uninitializedReadListener?.(pa, size, lo, hi);
    this.vHi = hi;
    return lo;
  }

  private readCrossing(lo: number, hi: number, size: number): number {
    let vlo = 0, vhi = 0;
    for (let k = 0; k < size; k++) {
      const a = lo + k;
      const b = this.mmu.translate(a >>> 0, a > 0xffffffff ? (hi + 1) >>> 0 : hi, ACCESS_READ);
      const byte = this.mem.read8(b);
      if (k < 4) vlo |= byte << (8 * k);
      else vhi |= byte << (8 * (k - 4));
    }
    this.vHi = vhi >>> 0;
    return vlo >>> 0;
  }

  /** Fault as a write of `size` bytes at a linear address would (both pages of a split one), without writing. */
  probeWrite(lo: number, hi: number, size: number): void {
    this.mmu.translate(lo, hi, ACCESS_WRITE);
    if ((lo & 0xfff) + size > 4096) {
      const endLo = lo + size - 1;
      this.mmu.translate((endLo >>> 0) & 0xfffff000, endLo > 0xffffffff ? (hi + 1) >>> 0 : hi, ACCESS_WRITE);
    }
  }

  /** Fault as pushing 8 bytes would, without pushing. */
  probePush64(): void {
    const lo = this.regLo[RSP] - 8;
    if (lo < 0) this.probeWrite(lo + TWO32, (this.regHi[RSP] - 1) >>> 0, 8);
    else this.probeWrite(lo, this.regHi[RSP], 8);
  }

  /** Write `size` bytes at a linear address (hi word used for 8-byte writes). */
  writeLinear(lo: number, hi: number, size: number, vlo: number, vhi: number): void {
    switch (size) {
      case 1: this.write8(lo, hi, vlo); return;
      case 2: this.write16(lo, hi, vlo); return;
      case 4: this.write32(lo, hi, vlo); return;
      default: this.write64(lo, hi, vlo, vhi);
    }
  }

  private writeSlow(lo: number, hi: number, size: number, vlo: number, vhi: number): void {
    const off = lo & 0xfff;
    if (off + size <= 4096) {
      const pa = this.mmu.translate(lo, hi, ACCESS_WRITE);
      this.writePhys(pa, size, vlo, vhi);
      this.mmu.refreshDirect(lo, hi);
      return;
    }
    this.writeCrossing(lo, hi, size, vlo, vhi);
  }

  private writePhys(pa: number, size: number, vlo: number, vhi: number): void {
    const mem = this.mem;
    switch (size) {
      case 1: mem.write8(pa, vlo); return;
      case 2: mem.write16(pa, vlo); return;
      case 4: mem.write32(pa, vlo); return;
      default:
        mem.write32(pa, vlo);
        mem.write32(pa + 4, vhi);
    }
  }

  private writeCrossing(lo: number, hi: number, size: number, vlo: number, vhi: number): void {
    // Translate both pages before writing anything so a fault leaves memory untouched.
    const endLo = lo + size - 1;
    const hi2 = endLo > 0xffffffff ? (hi + 1) >>> 0 : hi;
    const firstPa = this.mmu.translate(lo, hi, ACCESS_WRITE);
    const secondPa = this.mmu.translate(endLo >>> 0 & 0xfffff000, hi2, ACCESS_WRITE);
    const firstLen = 4096 - (lo & 0xfff);
    for (let k = 0; k < size; k++) {
      const byte = k < 4 ? (vlo >>> (8 * k)) & 0xff : (vhi >>> (8 * (k - 4))) & 0xff;
      const pa = k < firstLen ? firstPa + k : secondPa + (k - firstLen);
      this.mem.write8(pa, byte);
    }
  }

  // ======================= operands =======================

  /** Compute the effective linear address of the instruction's memory operand into eaLo/eaHi. */
  calcEA(i: Insn): void {
    let lo = i.dispLo, hi = i.dispHi;
    const base = i.memBase;
    if (base >= 0) {
      if (base === 16) {
        lo += this.ripLo;
        hi += this.ripHi;
      } else {
        lo += this.regLo[base];
        hi += this.regHi[base];
      }
    }
    const index = i.memIndex;
    if (index >= 0) {
      const s = i.memScale;
      const il = this.regLo[index] * s;
      lo += il;
      hi += this.regHi[index] * s;
    }
    // A 32-bit address size truncates the offset; the FS/GS base is then added in 64 bits (APM vol. 1 2.2.3).
    if (i.addrSize === 4) {
      lo = lo >>> 0;
      hi = 0;
    }
    if (i.memSeg >= 0) {
      if (i.memSeg === 4) {
        lo += this.fsBaseLo;
        hi += this.fsBaseHi;
      } else {
        lo += this.gsBaseLo;
        hi += this.gsBaseHi;
      }
    }
    if (lo > 0xffffffff) {
      hi += Math.floor(lo / TWO32);
      lo = lo >>> 0;
    }
    this.eaLo = lo;
    this.eaHi = hi >>> 0;
  }

  /** Read operand n (0..2). 64-bit values set vHi; immediates are pre-extended. */
  readOp(i: Insn, n: number): number {
    let kind: Operand, r: number, size: number;
    if (n === 0) { kind = i.k0; r = i.r0; size = i.s0; }
    else if (n === 1) { kind = i.k1; r = i.r1; size = i.s1; }
    else { kind = i.k2; r = i.r2; size = i.s2; }
    if (kind === Operand.Reg) return this.getReg(r, size);
    if (kind === Operand.Imm) {
      this.vHi = i.immHi;
      return i.immLo;
    }
    this.calcEA(i);
    const lo = this.eaLo, hi = this.eaHi;
    if (n === 0 && i.rmw) {
      // Translate for write now, so the later write-back cannot fault half way.
      if ((lo & 0xfff) + size <= 4096) {
        const pa = this.mmu.translate(lo, hi, ACCESS_WRITE);
        this.rmwPa = pa;
        return this.readPhys(pa, size);
      }
      // Split across pages: both must be writable before anything changes (the hardware
      // checks an RMW operand for write on the read, so its #PF has W set and no flag moves).
      this.rmwPa = -1;
      this.probeWrite(lo, hi, size);
    }
    return this.readLinear(lo, hi, size);
  }

  /** Write operand n. For read-modify-write memory operands the address from readOp is reused. */
  writeOp(i: Insn, n: number, lo: number, hi: number): void {
    let kind: Operand, r: number, size: number;
    if (n === 0) { kind = i.k0; r = i.r0; size = i.s0; }
    else { kind = i.k1; r = i.r1; size = i.s1; }
    if (kind === Operand.Reg) {
      this.setReg(r, size, lo, hi);
      return;
    }
    if (n === 0 && i.rmw) {
      if (this.rmwPa >= 0) this.writePhys(this.rmwPa, size, lo, hi);
      else this.writeLinear(this.eaLo, this.eaHi, size, lo, hi);
      return;
    }
    this.calcEA(i);
    this.writeLinear(this.eaLo, this.eaHi, size, lo, hi);
  }

  // ======================= stack =======================

  push64(lo: number, hi: number): void {
    let spLo = this.regLo[RSP] - 8;
    let spHi = this.regHi[RSP];
    if (spLo < 0) {
      spLo += TWO32;
      spHi = (spHi - 1) >>> 0;
    }
    this.writeLinear(spLo, spHi, 8, lo, hi);
    this.regLo[RSP] = spLo;
    this.regHi[RSP] = spHi;
  }

  /** Pop 8 bytes: returns the low half, sets vHi. */
  pop64(): number {
    const spLo = this.regLo[RSP], spHi = this.regHi[RSP];
    const lo = this.readLinear(spLo, spHi, 8);
    const hi = this.vHi;
    const n = spLo + 8;
    this.regLo[RSP] = n;
    if (n > 0xffffffff) this.regHi[RSP] = spHi + 1;
    this.vHi = hi;
    return lo;
  }

  /** Whether linear addresses with high half `hi` are canonical (bits 63:47, or 63:56 with CR4.LA57, all equal). */
  canonical(hi: number): boolean {
    const top = (this.cr4 & CR4_LA57) !== 0 ? hi >> 24 : hi >> 15;
    return top === 0 || top === -1;
  }

  /**
   * Near branch relative to the next instruction. A non-canonical target is
   * #GP(0) on the branch itself (RIP is rewound to it), before anything changes.
   */
  jumpRel(rel: number): void {
    const t = this.ripLo + rel;
    if (t >= 0 && t <= 0xffffffff) {
      this.ripLo = t;
      return;
    }
    if (!this.csLong) {
      this.ripLo = t >>> 0; // EIP wraps at 4 GiB
      return;
    }
    // Only a change of the high half can leave the canonical range (RIP itself is canonical).
    const hi = t < 0 ? (this.ripHi - 1) >>> 0 : (this.ripHi + 1) >>> 0;
    if (!this.canonical(hi)) this.gp(0);
    this.ripLo = t < 0 ? t + TWO32 : t - TWO32;
    this.ripHi = hi;
  }

  /** Near branch to an absolute target: #GP(0) on the branch if it is not canonical. */
  jumpTo(lo: number, hi: number): void {
    if (!this.canonical(hi)) this.gp(0);
    this.ripLo = lo;
    this.ripHi = hi;
  }

  // ======================= MSRs and control =======================

  flushTlb(): void {
    this.mmu.flush();
  }

  // ======================= breakpoints =======================

  addBreakpoint(lo: number): void {
    this.breakpoints.add(lo >>> 0);
    this.bpFilter[lo & 0xffff] = 1;
    this.blockGen++;
  }

  removeBreakpoint(lo: number): void {
    this.breakpoints.delete(lo >>> 0);
    let any = false;
    for (const b of this.breakpoints) if ((b & 0xffff) === (lo & 0xffff)) any = true;
    if (!any) this.bpFilter[lo & 0xffff] = 0;
  }

  // ======================= decode cache =======================

  /**
   * Enter 64-bit code (true) or 32-bit code (false). The same bytes decode
   * differently in each, so all decoded code goes (a boot switches a handful
   * of times), and a running block stops.
   */
  setCodeMode(long: boolean): void {
    if (long === this.csLong) return;
    this.csLong = long;
    this.codeEpoch++;
    // Only code pages and the pages instructions run into are watched.
    for (const pfn of [...this.codeCache.keys()]) {
      this.dropCode(pfn);
      this.setWatched(pfn, 0);
    }
    for (const pfn of this.tailHeads.keys()) if (pfn < this.mem.watched.length) this.setWatched(pfn, 0);
    this.tailHeads.clear();
    this.fetchCode = null;
    this.fetchVpn = -1;
  }

  private invalidateCode(pfn: number): void {
    this.codeEpoch++;
    this.dropCode(pfn);
    this.setWatched(pfn, 0);
    const heads = this.tailHeads.get(pfn);
    if (heads === undefined) return;
    this.tailHeads.delete(pfn);
    for (const head of heads) {
      this.dropCode(head);
      // A head page without code stays watched only while instructions of other pages end in it.
      if (!this.tailHeads.has(head)) this.setWatched(head, 0);
    }
  }

  private dropCode(pfn: number): void {
    const code = this.codeCache.get(pfn);
    if (code === undefined) return;
    this.codeInsns -= code.count;
    this.codeCache.delete(pfn);
    if (pfn === this.fetchPfn) this.fetchCode = null;
  }

  /**
   * Keep the decode cache within its bounds: drop the least recently entered
   * half of its pages (one sort per many drops), never page `keep` (the one
   * being run). Writes to a dropped page need no watch any more, except where
   * instructions of other pages end in it.
   */
  private evictCode(keep: number): void {
    const stamps: number[] = [];
    for (const code of this.codeCache.values()) stamps.push(code.used);
    stamps.sort((a, b) => a - b);
    const cut = stamps[stamps.length >>> 1];
    for (const [pfn, code] of this.codeCache) {
      if (code.used >= cut || pfn === keep) continue;
      this.dropCode(pfn);
      if (code.tails !== null) {
        for (const tail of code.tails.values()) {
          const heads = this.tailHeads.get(tail);
          if (heads === undefined) continue;
          const at = heads.indexOf(pfn);
          if (at >= 0) heads.splice(at, 1);
          if (heads.length === 0) {
            this.tailHeads.delete(tail);
            if (!this.codeCache.has(tail) && tail < this.mem.watched.length) this.setWatched(tail, 0);
          }
        }
      }
      if (!this.tailHeads.has(pfn)) this.setWatched(pfn, 0);
    }
  }

  /** Set a page's write watch; the MMU's direct write pointers must follow it. */
  private setWatched(pfn: number, value: number): void {
    const watched = this.mem.watched;
    if (watched[pfn] === value) return;
    watched[pfn] = value;
    this.mmu.pageAttributesChanged(pfn);
  }

  /**
   * Find (or decode and cache) the instruction at the current RIP: makes its
   * page the fetch page (fetchCode) and returns the instruction's slot there.
   */
  private fetch(): number {
    const lo = this.ripLo, hi = this.ripHi;
    const vpn = lo >>> 12;
    if (vpn === this.fetchVpn && hi === this.fetchVhi && this.fetchCode !== null && this.fetchGen === this.mmu.generation) {
      const s = this.fetchCode.find(lo & 0xfff);
      if (s >= 0) return s;
    }
    const pa = this.mmu.translate(lo, hi, ACCESS_EXEC);
    const pfn = Math.floor(pa / 4096);
    let code = this.codeCache.get(pfn);
    if (code === undefined) {
      if (this.codeCache.size >= MAX_CODE_PAGES) this.evictCode(-1);
      code = new CodePage();
      // Decoded by other machines with the same bytes here (the page is watched from now on, so its bytes stay these).
      if (this.decoded?.sharePages) code.shared = this.decoded.pageInsns(pfn, this.csLong ? 64 : 32, this.mem.readBytes(pfn * 4096, 4096));
      this.codeCache.set(pfn, code);
      this.setWatched(pfn, 1);
    }
    code.used = ++this.codeClock;
    this.fetchVpn = vpn;
    this.fetchVhi = hi;
    this.fetchCode = code;
    this.fetchPfn = pfn;
    this.fetchGen = this.mmu.generation;
    const off = lo & 0xfff;
    let s = code.find(off);
    let insn = s < 0 ? undefined : code.insns[s];
    // An instruction running into the next page was decoded with that page's mapping then: after a
    // translation change (this slow path) its tail must still come from the same physical page.
    if (insn !== undefined && off + insn.len > 4096 && code.tails?.get(off) !== this.nextPagePfn(lo, hi)) insn = undefined;
    if (insn === undefined) {
      insn = code.shared?.get(off);
      if (insn === undefined) {
        insn = this.decodeAt(lo, hi, pa);
        if (off + insn.len > 4096) this.recordTail(code, off, pfn, this.decodedTailPfn);
        else if (insn.exec !== undefinedOpcode) code.shared?.set(off, insn);
      }
      const before = code.count;
      s = code.setInsn(off, insn);
      this.codeInsns += code.count - before;
      if (this.codeInsns > this.maxCodeInsns) this.evictCode(pfn);
    }
    return s;
  }

  /** Physical page behind the linear page after the one at (lo, hi), as an instruction fetch sees it. */
  private nextPagePfn(lo: number, hi: number): number {
    const nLo = ((lo & 0xfffff000) >>> 0) + 4096;
    return Math.floor(this.mmu.translate(nLo >>> 0, nLo > 0xffffffff ? (hi + 1) >>> 0 : hi, ACCESS_EXEC) / 4096);
  }

  /** Remember that the instruction at `off` of page `headPfn` ends in page `tailPfn`, and watch that page for writes. */
  private recordTail(code: CodePage, off: number, headPfn: number, tailPfn: number): void {
    (code.tails ??= new Map<number, number>()).set(off, tailPfn);
    const heads = this.tailHeads.get(tailPfn);
    if (heads === undefined) this.tailHeads.set(tailPfn, [headPfn]);
    else if (!heads.includes(headPfn)) heads.push(headPfn);
    if (tailPfn < this.mem.watched.length) this.setWatched(tailPfn, 1);
  }

  /**
   * The block starting at `lo` (the instruction there is `first`, already
   * fetched: the fetch page is this page). Later instructions are taken from
   * the decode cache or decoded from this page's bytes alone (no translation,
   * nothing else touched); the block ends at the page end, at an instruction
   * that cannot be followed (control transfer, system), at a possible
   * breakpoint, or at bytes that do not decode inside the page.
   */
  private buildBlock(lo: number, hi: number, first: Insn): Block {
    const page = this.fetchCode!;
    if (first.len + (lo & 0xfff) > 4096) {
      const straddling = new Block(lo, hi, this.blockGen, [], page);
      if (!this.csLong) straddling.translatable = false;
      return straddling;
    }
    const items: BlockInsn[] = [{ insn: first, lo }];
    const before = page.count;
    let off = (lo & 0xfff) + first.len;
    let last = first;
    while (items.length < MAX_BLOCK && continuesBlock(last) && off < 4096) {
      const at = ((lo & 0xfffff000) >>> 0) + off; // unsigned: code at addresses with bit 31 set
      if (hi === 0 && this.bpFilter[at & 0xffff] !== 0) break;
      let insn = page.insnAt(off);
      if (insn === undefined) {
        insn = page.shared?.get(off);
        if (insn === undefined) {
          const bytes = this.mem.readBytes(this.fetchPfn * 4096 + off, Math.min(15, 4096 - off));
          const decoded = this.decode(bytes, at, hi, this.csLong ? 64 : 32);
          if (decoded === null || decoded.exec === undefinedOpcode) break;
          insn = decoded;
          if (off + insn.len <= 4096) page.shared?.set(off, insn);
        }
        page.setInsn(off, insn);
      }
      if (off + insn.len > 4096) break;
      items.push({ insn, lo: at });
      off += insn.len;
      last = insn;
    }
    this.codeInsns += page.count - before;
    if (this.codeInsns > this.maxCodeInsns) this.evictCode(this.fetchPfn);
    const block = new Block(lo, hi, this.blockGen, items, page);
    if (!this.csLong) block.translatable = false; // translation emits 64-bit semantics; 32-bit code is short-lived boot code
    return block;
  }

  private decode(bytes: Uint8Array, lo: number, hi: number, bits: CodeBits): Insn | null {
    return this.decoded !== null ? this.decoded.decode(bytes, lo, hi, bits) : decodeInsn(bytes, lo, hi, false, bits);
  }

  private decodeAt(lo: number, hi: number, pa: number): Insn {
    const off = lo & 0xfff;
    const inPage = Math.min(15, 4096 - off);
    const bytes = new Uint8Array(15);
    bytes.set(this.mem.readBytes(pa, inPage));
    let avail = inPage;
    let nextFault = false;
    this.decodedTailPfn = -1;
    if (inPage < 15) {
      const nLo = (lo - off + 4096) >>> 0;
      const nHi = nLo === 0 ? (hi + 1) >>> 0 : hi;
      try {
        const pa2 = this.mmu.translate(nLo, nHi, ACCESS_EXEC);
        bytes.set(this.mem.readBytes(pa2, 15 - inPage), inPage);
        avail = 15;
        this.decodedTailPfn = Math.floor(pa2 / 4096);
      } catch (e) {
        if (e !== this.fault) throw e;
        nextFault = true;
      }
    }
    const bits = this.csLong ? 64 : 32;
    const insn = this.decode(bytes.subarray(0, avail), lo, hi, bits);
    if (insn === null) {
      if (nextFault) throw this.fault; // the instruction runs into an unmapped page
      return decodeInsn(bytes.subarray(0, avail), lo, hi, true, bits)!;
    }
    return insn;
  }

  // ======================= interrupted REP =======================

  /**
   * Stop a REP string instruction part way, its registers advanced: RIP stays
   * on it, so it resumes where it left off, as after an interrupt on hardware.
   * The execution still retires (and is traced) like any other, so the budget
   * bounds the work an endless REP does.
   */
  interruptRep(): void {
    this.ripLo = this.curRipLo;
    this.ripHi = this.curRipHi;
    this.repResumeIcount = this.icount + 1;
    this.repResumeLo = this.curRipLo;
    this.repResumeHi = this.curRipHi;
    // A breakpoint here stopped the instruction when it started, not again when it resumes.
    this.resumeFrom = this.curRipLo;
    this.codeEpoch++; // a running block must not go on to the next instruction
  }

  /** Whether the executing instruction resumes an interrupted REP, with nothing retired in between. */
  resumingRep(): boolean {
    return this.icount === this.repResumeIcount && this.curRipLo === this.repResumeLo && this.curRipHi === this.repResumeHi;
  }

  // ======================= the run loop =======================

  /** Blocks translated so far, the warm ones compiled along with a hot one included (a diagnostic: how much code got hot). */
  get blocksTranslated(): number {
    return this.translatedHot + (this.wasm?.compiledAlong ?? 0);
  }

  /**
   * Execute until `limit` instructions have retired in total or something stops
   * the loop (see `stop`). Exceptions are delivered through the IDT in-line.
   */
  run(limit: number): void {
    this.stop = Stop.Running;
    // Faults unwind out of the hot loop; the loop is re-entered after delivery.
    for (;;) {
      try {
        this.runUntilFault(limit);
        break;
      } catch (e) {
        if (e !== this.fault) throw e;
        this.ripLo = this.curRipLo;
        this.ripHi = this.curRipHi;
        if (this.icount !== this.stormIcount) {
          this.stormIcount = this.icount;
          this.stormDeliveries = 0;
        }
        if (++this.stormDeliveries > STORM_LIMIT) {
          this.stop = Stop.TripleFault;
          this.stopDetail = `exception storm: vector ${this.fault.vector} raised after ${STORM_LIMIT} exception deliveries in a row without an instruction retiring`;
          return;
        }
        deliverException(this, this.fault.vector, this.fault.hasErrorCode, this.fault.errorCode);
        if (this.stop !== Stop.Running) return;
      }
    }
    if (this.stop === Stop.Running) this.stop = Stop.Budget;
  }

  private runUntilFault(limit: number): void {
    const trace = this.trace;
    const bpFilter = this.bpFilter;
    let icount = this.icount;
    let hash = this.traceHash;
    try {
      while (icount < limit) {
        const lo = this.ripLo;
        const hi = this.ripHi;
        if (bpFilter[lo & 0xffff] !== 0 && hi === 0 && this.breakpoints.has(lo) && this.resumeFrom !== lo) {
          this.hitBreakpoint = lo;
          this.resumeFrom = lo;
          this.stop = Stop.Breakpoint;
          return;
        }
        this.resumeFrom = -1;
        this.curRipLo = lo;
        this.curRipHi = hi;
        const cached = this.fetchCode;
        let slot = -1;
        if (cached !== null && (lo >>> 12) === this.fetchVpn && hi === this.fetchVhi && this.fetchGen === this.mmu.generation) {
          slot = cached.find(lo & 0xfff);
        }
        if (slot < 0) slot = this.fetch();
        // The fetch page is now lo's page: run the block starting here (translating it first if need be).
        const code = this.fetchCode!;
        const insn = code.insns[slot]!;
        let b = code.blocks[slot];
        if (b === undefined || b.lo !== lo || b.hi !== hi || b.gen !== this.blockGen) {
          b = this.buildBlock(lo, hi, insn);
          code.setBlock(lo & 0xfff, b); // buildBlock may have moved the slot
        }
        let run = b.run;
        if (run === null && b.translatable && ++b.heat > (b.loopsBack ? this.translateAfter / 10 : this.translateAfter)) {
          run = b.run = translateBlock(b, trace, this.bpFilter, this.mmu, this.wasmBlocks ? this.wasm : null, this.translateAfter / WARM_FRACTION);
          if (run === null) b.translatable = false;
          else this.translatedHot++;
        }
        // A translated block runs whole (the budget is checked once, at its entry); blocks it leaves to run here in turn.
        if (run !== null && limit - icount >= b.items.length) {
          this.icount = icount;
          this.traceHash = hash;
          try {
            let next = run(this, limit);
            while (next !== null) next = next.run!(this, limit);
          } finally {
            icount = this.icount;
            hash = this.traceHash;
          }
          if (this.stop !== Stop.Running) return;
          continue;
        }
        const items = b.items;
        if (items.length > 1) {
          // Interpret the block: the loop's own steps, without coming back here between its instructions.
          const epoch = this.codeEpoch;
          for (let k = 0; k < items.length; k++) {
            const item = items[k].insn;
            const ilo = items[k].lo;
            if (k > 0) {
              if (icount >= limit || this.codeEpoch !== epoch) break;
              this.curRipLo = ilo;
            }
            const inext = ilo + item.len;
            if (inext > 0xffffffff) {
              this.ripLo = inext - TWO32;
              this.ripHi = (hi + 1) >>> 0;
            } else {
              this.ripLo = inext;
            }
            this.icount = icount;
            item.exec(this, item);
            trace.add(ilo, hi);
            hash = hashStep(hash, ilo, hi);
            icount++;
            if (this.stop !== Stop.Running) return;
          }
          continue;
        }
        const next = lo + insn.len;
        if (next > 0xffffffff) {
          this.ripLo = next - TWO32;
          this.ripHi = (hi + 1) >>> 0;
        } else {
          this.ripLo = next;
        }
        this.icount = icount; // handlers (RDTSC) read the retired count
        insn.exec(this, insn);
        trace.add(lo, hi);
        hash = hashStep(hash, lo, hi);
        icount++;
        if (this.stop !== Stop.Running) return;
      }
    } finally {
      this.icount = icount;
      this.traceHash = hash;
    }
  }

  /** The last `n` retired RIPs, oldest first, as [lo, hi] pairs. */
  recentRips(n: number): Array<[number, number]> {
    // A running block's RIPs share curRipHi (a block never leaves its page).
    return this.trace.recent(n, this.icount, this.curRipHi);
  }

  /** Bytes at a linear address for reports (no faults: unmapped bytes are omitted). */
  peekLinear(lo: number, hi: number, length: number): Uint8Array {
    const out: number[] = [];
    for (let k = 0; k < length; k++) {
      const a = lo + k;
      try {
        const pa = this.mmu.translate(a >>> 0, a > 0xffffffff ? (hi + 1) >>> 0 : hi, ACCESS_READ);
        out.push(this.mem.read8(pa));
      } catch (e) {
        if (e !== this.fault) throw e;
        break;
      }
    }
    return Uint8Array.from(out);
  }

  /** Next 32 bits of the deterministic RDRAND stream. */
  nextRandom(): number {
    let s = this.rngState;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.rngState = s;
    return s >>> 0;
  }

  /** Set RFLAGS arithmetic bits from a computed flags word. */
  setArith(flags: number): void {
    this.rflags = (this.rflags & ~0x8d5) | flags;
  }

  /** Full 64-bit register as a BigInt (reports and tests, never the hot path). */
  reg64(r: number): bigint {
    return (BigInt(this.regHi[r]) << 32n) | BigInt(this.regLo[r]);
  }

  setReg64(r: number, v: bigint): void {
    this.regLo[r] = Number(v & 0xffffffffn);
    this.regHi[r] = Number((v >> 32n) & 0xffffffffn);
  }

  get rip(): bigint {
    return (BigInt(this.ripHi) << 32n) | BigInt(this.ripLo);
  }

  set rip(v: bigint) {
    this.ripLo = Number(v & 0xffffffffn);
    this.ripHi = Number((v >> 32n) & 0xffffffffn);
  }
}

export { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE };
