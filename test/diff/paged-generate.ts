/*
 * Case generator for the paged differential tests (paged-harness.c and
 * paged-emulator.ts): short programs whose memory operands, stack, string
 * pointers, branch targets and self-modifying stores are steered at page
 * boundaries, the read-only page, the absent pages and the second mapping of
 * a code page, under 4- and 5-level tables with 4 KiB, 2 MiB and 1 GiB pages.
 * Deterministic from a seed.
 */
import { Code, Instruction, MemoryOperand, Register } from 'iced-x86';
import { Ctx, Rng, codesMatching, createInstruction, edgeValue, encode, icedFlagsToEflags, makeMemory, randomFlags } from './generate.js';
import { ALIAS, CODE, CODE_GUARD, CODE_SIZE, DATA, DATA_GUARD, DATA_SIZE, EXIT_JUMP, USER_CS, USER_SS, type DataWindow, type PagingMode } from './paged-native.js';
import type { PagedCaseSetup } from './paged-emulator.js';

export interface PagedCase extends PagedCaseSetup {
  family: string;
  /** EFLAGS bits the program leaves undefined. */
  undefFlags: number;
  /** Registers (bit per number) not compared. */
  skipRegs: number;
  note: string;
}

export interface PagedFamily {
  name: string;
  make(g: Rng): PagedCase | null;
}

const GPRS = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const PAGE = 0x1000;

function randomMode(g: Rng): PagingMode {
  const r = g.below(10);
  return { levels: g.chance(0.5) ? 5 : 4, pageSize: r < 6 ? '4K' : r < 8 ? '2M' : '1G' };
}

function randomBytes(g: Rng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  const zeroish = g.chance(0.2);
  for (let k = 0; k < n; k++) b[k] = zeroish && g.chance(0.7) ? 0 : g.below(256);
  return b;
}

/** A window of `len` random bytes around DATA offset `center`, clamped to the data area. */
function windowAround(g: Rng, center: number, before: number, after: number): DataWindow {
  const off = Math.max(0, center - before);
  const end = Math.min(DATA_SIZE, center + after);
  return { off, bytes: randomBytes(g, Math.max(0, end - off)) };
}

/** Merge overlapping windows into disjoint ones; where windows overlap, the later one's bytes win. */
function mergeWindows(ws: DataWindow[]): DataWindow[] {
  const live = ws.filter((w) => w.bytes.length > 0);
  const ranges = live.map((w) => [w.off, w.off + w.bytes.length]).sort((x, y) => x[0] - y[0]);
  const merged: number[][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else merged.push([...r]);
  }
  return merged.map(([start, end]) => {
    const bytes = new Uint8Array(end - start);
    for (const w of live) if (w.off >= start && w.off < end) bytes.set(w.bytes, w.off - start);
    return { off: start, bytes };
  });
}

/**
 * A data address for an access of `size` bytes: usually straddling or touching
 * a page boundary of the data area (the read-only page below, the absent page
 * at its top), sometimes anywhere.
 */
function dataTarget(g: Rng, size: number): number {
  if (g.chance(0.25)) return DATA + g.below(DATA_SIZE - size);
  const boundary = DATA + PAGE * (1 + g.below(DATA_SIZE / PAGE)); // 1..6: the last is the absent page
  return boundary - size + g.below(2 * size);
}

function baseCase(g: Rng, family: string): Omit<PagedCase, 'code' | 'codeOff'> {
  const regs = Array.from({ length: 16 }, () => g.u64());
  regs[4] = BigInt(DATA + 0x3000); // a harmless stack unless the family sets one
  return { family, mode: randomMode(g), frameSeed: g.u32(), regs, rflags: randomFlags(g), windows: [], undefFlags: 0, skipRegs: 0, note: '' };
}

/** Where a program of `len` bytes goes: anywhere, or straddling the boundary between the two code pages. */
function placeProgram(g: Rng, len: number, straddleAt = -1): number {
  if (straddleAt >= 0) return PAGE - straddleAt;
  if (g.chance(0.3)) return PAGE - 1 - g.below(Math.min(len, 15)); // crosses into the second page
  return g.below(CODE_SIZE - len - EXIT_JUMP);
}

// ---------------------------------------------------------------------------
// Memory operands: loads, stores, read-modify-write

const MEM_CODES = codesMatching(
  /^(Mov_rm\d+_r\d+|Mov_r\d+_rm\d+|Mov_rm\d+_imm\d+|Movzx_r\d+_rm(8|16)|Movsx_r\d+_rm(8|16)|Movsxd_r64_rm32|(Add|Adc|Sub|Sbb|And|Or|Xor|Cmp)_(rm\d+_r\d+|r\d+_rm\d+|rm\d+_imm\d+)|Test_rm\d+_(r|imm)\d+|(Inc|Dec|Neg|Not)_rm\d+|(Shl|Shr|Sar|Rol|Ror)_rm\d+_1|(Xchg|Xadd|Cmpxchg)_rm\d+_r\d+|(Bt|Bts|Btr|Btc)_rm\d+_imm8|Cmov[a-z]+_r\d+_rm\d+|Set[a-z]+_rm8|Imul_r\d+_rm\d+|Mul_rm\d+|Div_rm(32|64))$/,
);

type Tok = { t: 'r' | 'rm' | 'imm'; bits: number };

function tokens(name: string): Tok[] {
  const out: Tok[] = [];
  for (const p of name.split('_').slice(1)) {
    const m = /^(r|rm|imm)(8|16|32|64)$/.exec(p);
    if (m) out.push({ t: m[1] as Tok['t'], bits: Number(m[2]) });
    else if (p === '1') out.push({ t: 'imm', bits: 0 });
  }
  return out;
}

function regOf(index: number, bits: number): Register {
  switch (bits) {
    case 64: return Register.RAX + index;
    case 32: return Register.EAX + index;
    case 16: return Register.AX + index;
    default: return index < 4 ? Register.AL + index : Register.SPL + (index - 4);
  }
}

function memCase(g: Rng): PagedCase | null {
  const code = g.pick(MEM_CODES);
  const name = Code[code];
  const toks = tokens(name);
  const memTok = toks.find((t) => t.t === 'rm');
  if (!memTok) return null;
  const bytes = memTok.bits / 8;
  const c = baseCase(g, 'paged-mem');
  const ctx = new Ctx(g, name);
  ctx.regs = c.regs;
  const target = dataTarget(g, bytes);
  const implicit = /^(Mul|Div|Cmpxchg)/.test(name) ? [0, 2] : [];
  const avoid = new Set<number>([4, ...implicit]);
  const explicit: number[] = [];
  for (const t of toks) if (t.t === 'r') explicit.push(g.pick(GPRS.filter((r) => !avoid.has(r) && !explicit.includes(r))));
  for (const r of explicit) avoid.add(r);
  const mem = makeMemory(ctx, target, avoid, 0.15);
  let ri = 0;
  const args: Array<Register | MemoryOperand | { imm: number; signed: boolean }> = [];
  for (const t of toks) {
    if (t.t === 'rm') args.push(mem);
    else if (t.t === 'r') args.push(regOf(explicit[ri++], t.bits));
    else if (t.bits > 0) args.push({ imm: Number(BigInt.asIntN(t.bits, edgeValue(g, t.bits))), signed: true });
  }
  const instr = createInstruction(code, args as Parameters<typeof createInstruction>[1]);
  const rmw = /^(Add|Adc|Sub|Sbb|And|Or|Xor|Inc|Dec|Neg|Not|Xchg|Xadd|Cmpxchg|Bts|Btr|Btc)_rm/.test(name);
  if (rmw && g.chance(0.3)) instr.hasLockPrefix = true;
  const undef = instr.rflagsUndefined;
  const codeOff = placeProgram(g, instr.length || 15);
  const bytesOut = encode(instr, CODE + codeOff);
  instr.free();
  if (bytesOut === null || codeOff + bytesOut.length + EXIT_JUMP > CODE_SIZE) return null;
  // Divisors: mostly small dividends so DIV does not always raise #DE.
  if (/^Div/.test(name) && g.chance(0.7)) c.regs[2] = 0n;
  c.windows = [windowAround(g, target - DATA, 24, 24 + bytes)];
  c.undefFlags = icedFlagsToEflags(undef);
  c.note = `mem 0x${target.toString(16)} (${bytes} bytes)`;
  return { ...c, codeOff, code: bytesOut };
}

// ---------------------------------------------------------------------------
// Stack: push/pop of every width, near and far calls and returns, enter/leave, iretq

/** A marker instruction: mov eax, imm32 (shows whether it ran). */
function marker(g: Rng): Uint8Array {
  const v = g.u32();
  return Uint8Array.of(0xb8, v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function le(value: bigint, bytes: number): Uint8Array {
  const b = new Uint8Array(bytes);
  for (let k = 0; k < bytes; k++) b[k] = Number((value >> BigInt(8 * k)) & 0xffn);
  return b;
}

function enc(instr: Instruction, rip: number): Uint8Array | null {
  const b = encode(instr, rip);
  instr.free();
  return b;
}

/** A stack pointer near a page boundary of the data area (or the absent page above it), often misaligned. */
function stackPointer(g: Rng): number {
  const boundary = DATA + PAGE * (1 + g.below(DATA_SIZE / PAGE));
  let sp = boundary - 24 + g.below(48);
  if (g.chance(0.6)) sp &= ~7;
  return Math.max(DATA, Math.min(DATA_GUARD + 8, sp));
}

/** A return/jump target: the program's end, its marker, or (rarely) non-canonical. */
function returnTarget(g: Rng, markerAt: number, end: number): bigint {
  const r = g.below(10);
  if (r < 5) return BigInt(end);
  if (r < 9) return BigInt(markerAt);
  return g.pick([0x0100000000000000n, 0xfe00000000000000n, 0x8000000000000000n]); // non-canonical with 4- and 5-level paging
}

function stackCase(g: Rng): PagedCase | null {
  const c = baseCase(g, 'paged-stack');
  const sp = stackPointer(g);
  c.regs[4] = BigInt(sp);
  const kind = g.below(15);
  const codeOff = g.below(CODE_SIZE - 64);
  const at = CODE + codeOff;
  const mk = marker(g);
  let body: Uint8Array | null = null;
  let frame: Uint8Array | null = null; // bytes at the stack pointer
  let frameOff = sp - DATA;
  const reg = g.pick(GPRS);
  switch (kind) {
    case 0: { // push r64 / r16
      const wide = g.chance(0.7);
      body = enc(Instruction.createReg(wide ? Code.Push_r64 : Code.Push_r16, regOf(reg, wide ? 64 : 16)), at);
      break;
    }
    case 1: { // pop r64 / r16
      const wide = g.chance(0.7);
      body = enc(Instruction.createReg(wide ? Code.Pop_r64 : Code.Pop_r16, regOf(reg, wide ? 64 : 16)), at);
      break;
    }
    case 2: { // push imm8/imm16/imm32
      const form = g.below(3);
      const code = form === 0 ? Code.Pushq_imm8 : form === 1 ? Code.Push_imm16 : Code.Pushq_imm32;
      const bits = form === 0 ? 8 : form === 1 ? 16 : 32;
      body = enc(Instruction.createI32(code, Number(BigInt.asIntN(bits, edgeValue(g, bits)))), at);
      break;
    }
    case 3: { // push/pop m64/m16 (the operand may straddle pages too; pop [rsp+d] uses the incremented RSP)
      const push = g.chance(0.5);
      const wide = g.chance(0.7);
      const code = push ? (wide ? Code.Push_rm64 : Code.Push_rm16) : (wide ? Code.Pop_rm64 : Code.Pop_rm16);
      let memOp: MemoryOperand;
      let target: number;
      if (g.chance(0.3)) {
        const disp = g.below(32) - 8;
        memOp = new MemoryOperand(Register.RSP, Register.None, 1, BigInt(disp), 1, false, Register.None);
        target = sp + disp;
      } else {
        const ctx = new Ctx(g, 'stack-mem');
        ctx.regs = c.regs;
        target = dataTarget(g, wide ? 8 : 2);
        memOp = makeMemory(ctx, target, new Set([4]), 0.1);
      }
      body = enc(Instruction.createMem(code, memOp), at);
      if (target >= DATA && target < DATA_GUARD) c.windows.push(windowAround(g, target - DATA, 16, 24));
      break;
    }
    case 4: // pushfq / pushf (16-bit)
      body = g.chance(0.7) ? Uint8Array.of(0x9c) : Uint8Array.of(0x66, 0x9c);
      break;
    case 5: { // popfq / popf (16-bit): arithmetic flags, DF and the fixed bits only (TF or AC would trap on the host)
      body = g.chance(0.7) ? Uint8Array.of(0x9d) : Uint8Array.of(0x66, 0x9d);
      frame = le(BigInt(randomFlags(g, 0.5) | 0x200), 8);
      break;
    }
    case 6: { // call rel32 over the marker / call r64 / call m64
      const form = g.below(3);
      if (form === 0) {
        const len = 5;
        const call = enc(Instruction.createBranch(Code.Call_rel32_64, BigInt(at + len + mk.length)), at);
        if (call === null) return null;
        body = concat(call, mk);
      } else if (form === 1) {
        const len = reg >= 8 ? 3 : 2;
        c.regs[reg] = returnTarget(g, at + len, at + len + mk.length);
        const call = enc(Instruction.createReg(Code.Call_rm64, regOf(reg, 64)), at);
        if (call === null) return null;
        body = concat(call, mk);
      } else {
        const slot = dataTarget(g, 8);
        const ctx = new Ctx(g, 'call-mem');
        ctx.regs = c.regs;
        const memOp = makeMemory(ctx, slot, new Set([4]), 0);
        const call = enc(Instruction.createMem(Code.Call_rm64, memOp), at);
        if (call === null) return null;
        const win = windowAround(g, slot - DATA, 8, 16);
        const target = returnTarget(g, at + call.length, at + call.length + mk.length);
        const k = slot - DATA - win.off;
        if (k >= 0 && k + 8 <= win.bytes.length) win.bytes.set(le(target, 8), k);
        c.windows.push(win);
        body = concat(call, mk);
      }
      break;
    }
    case 7: { // ret / ret imm16: to the marker, the end, or a non-canonical address
      const imm = g.chance(0.3) ? g.pick([0, 8, 16, 0x18, 0xfff8]) : -1;
      const ret = imm < 0 ? Uint8Array.of(0xc3) : Uint8Array.of(0xc2, imm & 0xff, imm >> 8);
      body = concat(ret, mk);
      frame = le(returnTarget(g, at + ret.length, at + ret.length + mk.length), 8);
      break;
    }
    case 8: { // far return (64-, 32- and 16-bit) to the same privilege level (selector 0x33, the host's user code segment)
      const size = g.pick([8, 8, 4, 2]);
      if (size === 2) c.mode = { ...c.mode, pageSize: g.pick(['4K', '2M'] as const) }; // a 16-bit offset lands in low memory: absent on both sides
      const op = g.chance(0.8) ? [0xcb] : [0xca, 0x10, 0x00];
      const ret = Uint8Array.from([...(size === 8 ? [0x48] : size === 2 ? [0x66] : []), ...op]);
      body = concat(ret, mk);
      const target = size === 8 ? returnTarget(g, at + ret.length, at + ret.length + mk.length) : BigInt(g.pick([at + ret.length, at + ret.length + mk.length]));
      frame = concat(le(target, size), le(BigInt(USER_CS), size));
      break;
    }
    case 9: { // iretq: RIP, CS, RFLAGS, RSP, SS
      body = concat(Uint8Array.of(0x48, 0xcf), mk);
      const newSp = BigInt(DATA + 0x1000 + g.below(0x3000));
      frame = concat(
        le(returnTarget(g, at + 2, at + 2 + mk.length), 8), le(BigInt(USER_CS), 8),
        le(BigInt(randomFlags(g, 0.5) | 0x200), 8), le(newSp, 8), le(BigInt(USER_SS), 8),
      );
      break;
    }
    case 10: { // enter imm16, level 0..3 (RBP into the data area: the outer frame pointers are copied)
      const level = g.pick([0, 0, 1, 2, 3]);
      // Large frames only where the host's absent pages below DATA are absent for bzemu too (4 KiB pages).
      const size = g.pick([0, 8, 16, 0x20, g.below(0x100), ...(c.mode.pageSize === '4K' ? [0x1000 - 8, 0x3000] : [])]);
      const bp = dataTarget(g, 8);
      c.regs[5] = BigInt(bp);
      body = Uint8Array.of(0xc8, size & 0xff, size >> 8, level);
      if (g.chance(0.2)) body = concat(Uint8Array.of(0x66), body);
      c.windows.push(windowAround(g, bp - DATA, 8 * level + 8, 16));
      break;
    }
    case 11: { // leave (and 16-bit leave): RSP <- RBP, pop RBP
      const bp = dataTarget(g, 8);
      c.regs[5] = BigInt(bp);
      body = g.chance(0.8) ? Uint8Array.of(0xc9) : Uint8Array.of(0x66, 0xc9);
      c.windows.push(windowAround(g, bp - DATA, 16, 24));
      break;
    }
    case 12: case 13: { // call/jmp far through memory: m16:32, m16:16, and REX.W (AMD reads m16:32 then)
      const call = kind === 12;
      const form = g.pick([4, 4, 8, 2]);
      if (form === 2) c.mode = { ...c.mode, pageSize: g.pick(['4K', '2M'] as const) };
      let slot = dataTarget(g, 6);
      while (Math.abs(slot - sp) < 64) slot = dataTarget(g, 6); // the far pointer stays clear of the frame the CALL pushes
      const prefix = form === 8 ? [0x48] : form === 2 ? [0x66] : [];
      const insn = Uint8Array.from([...prefix, 0xff, call ? 0x1c : 0x2c, 0x25, ...le(BigInt(slot), 4)]);
      body = concat(insn, mk);
      const target = g.pick([at + insn.length, at + insn.length + mk.length]);
      const win = windowAround(g, slot - DATA, 8, 16);
      const k = slot - DATA - win.off;
      const ptr = form === 8 ? concat(le(BigInt(target), 8), le(BigInt(USER_CS), 2)) : concat(le(BigInt(target), form === 2 ? 2 : 4), le(BigInt(g.chance(0.9) ? USER_CS : g.pick([0, 0x2b])), 2));
      for (let j = 0; j < ptr.length; j++) if (k + j >= 0 && k + j < win.bytes.length) win.bytes[k + j] = ptr[j];
      c.windows.push(win);
      break;
    }
    case 14: { // push fs/gs (64- and 16-bit): the selectors are 0 on both sides
      const gs = g.chance(0.5);
      body = Uint8Array.from([...(g.chance(0.3) ? [0x66] : []), 0x0f, gs ? 0xa8 : 0xa0]);
      break;
    }
  }
  if (body === null) return null;
  const stackWin = windowAround(g, sp - DATA, 40, 48);
  if (frame !== null) {
    const k = frameOff - stackWin.off;
    // Frames are written where they fit inside the data area; the rest of the stack is random.
    for (let j = 0; j < frame.length; j++) if (k + j >= 0 && k + j < stackWin.bytes.length) stackWin.bytes[k + j] = frame[j];
  }
  c.windows = mergeWindows([stackWin, ...c.windows]); // explicit operands (pointers, targets) over the random stack
  c.note = `rsp=0x${sp.toString(16)} kind=${kind}`;
  return { ...c, codeOff, code: body };
}

// ---------------------------------------------------------------------------
// Control flow: jcc, loop/loope/loopne, jrcxz/jecxz, jmp, and fetches that fault

const JCC_SHORT = codesMatching(/^J[a-z]+_rel8_64$/).filter((c) => !/^Jmp|^Jrcxz|^Jecxz|^Loop/.test(Code[c]));
const JCC_NEAR = codesMatching(/^J[a-z]+_rel32_64$/).filter((c) => !/^Jmp/.test(Code[c]));

function controlCase(g: Rng): PagedCase | null {
  const c = baseCase(g, 'paged-control');
  c.rflags = randomFlags(g, 0.1);
  const kind = g.below(7);
  const mk = marker(g);
  let prog: Uint8Array | null = null;
  let codeOff = 0;
  switch (kind) {
    case 0: case 1: { // jcc over the marker, the jump possibly straddling the code pages
      const near = kind === 1;
      const len = near ? 6 : 2;
      codeOff = placeProgram(g, len + mk.length);
      const at = CODE + codeOff;
      prog = enc(Instruction.createBranch(g.pick(near ? JCC_NEAR : JCC_SHORT), BigInt(at + len + mk.length)), at);
      if (prog) prog = concat(prog, mk);
      break;
    }
    case 2: { // counted loop: L: inc rdx; loop/loope/loopne/jrcxz L   (0x67: ECX); the count is never 0 for LOOP*
      const which = g.below(4);
      const a32 = g.chance(0.3);
      const high = a32 ? BigInt(g.u32()) << 32n : 0n;
      const zero = which === 3 && g.chance(0.5);
      c.regs[1] = high | BigInt(zero ? 0 : 1 + g.below(40));
      // jrcxz jumps back while the count is zero: the body then increments RCX so it jumps once
      const body = zero ? Uint8Array.of(0x48, 0xff, 0xc1) : Uint8Array.of(0x48, 0xff, 0xc2);
      const op = [0xe2, 0xe1, 0xe0, 0xe3][which];
      const len = body.length + (a32 ? 3 : 2);
      codeOff = placeProgram(g, len);
      prog = concat(body, a32 ? Uint8Array.of(0x67, op, (-len) & 0xff) : Uint8Array.of(op, (-len) & 0xff));
      // loope/loopne also stop on ZF (inc sets it when RDX wraps): start RDX near -1 sometimes
      if (which === 1 || which === 2) if (g.chance(0.5)) c.regs[2] = BigInt.asUintN(64, -BigInt(g.below(20)));
      break;
    }
    case 3: { // jmp r64 / m64 to the end, the marker or a non-canonical address
      const reg = g.pick(GPRS);
      const len = reg >= 8 ? 3 : 2;
      codeOff = placeProgram(g, len + mk.length);
      const at = CODE + codeOff;
      c.regs[reg] = returnTarget(g, at + len, at + len + mk.length);
      prog = enc(Instruction.createReg(Code.Jmp_rm64, regOf(reg, 64)), at);
      if (prog) prog = concat(prog, mk);
      break;
    }
    case 4: { // jmp into a place the fetch faults: an absent page, a data page (NX), or an instruction running into the absent page
      c.mode = { ...c.mode, pageSize: '4K' };
      const where = g.below(3);
      codeOff = g.below(CODE_SIZE - 0x40);
      const at = CODE + codeOff;
      if (where === 0) prog = enc(Instruction.createBranch(Code.Jmp_rel32_64, BigInt(CODE_GUARD + g.below(2) * g.below(PAGE))), at);
      else if (where === 1) prog = enc(Instruction.createBranch(Code.Jmp_rel32_64, BigInt(DATA + g.below(DATA_SIZE))), at);
      else {
        // The last k bytes of the code area start a 10-byte mov r64, imm64 whose rest would be in the absent page.
        const k = 1 + g.below(9);
        const tail = Uint8Array.of(0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8).subarray(0, k);
        codeOff = CODE_SIZE - 0x20;
        const jmp = enc(Instruction.createBranch(Code.Jmp_rel32_64, BigInt(CODE + CODE_SIZE - k)), CODE + codeOff);
        if (!jmp) return null;
        const fill = new Uint8Array(0x20 - jmp.length - k).fill(0x90);
        prog = concat(jmp, fill, tail);
      }
      break;
    }
    case 5: { // a branch whose target crosses into the other code page with an instruction that straddles it
      const straddle = 1 + g.below(4);
      const ins = Uint8Array.of(0x48, 0x81, 0xc0, 1, 2, 3, 4); // add rax, imm32
      codeOff = PAGE - 0x10;
      const at = CODE + codeOff;
      const jmp = enc(Instruction.createBranch(Code.Jmp_rel8_64, BigInt(CODE + PAGE - straddle)), at);
      if (!jmp) return null;
      prog = concat(jmp, new Uint8Array(0x10 - straddle - jmp.length).fill(0xcc), ins);
      break;
    }
    default: { // call rel32 forward then ret from the callee: the return address lands on the stack
      codeOff = placeProgram(g, 16);
      const at = CODE + codeOff;
      // call +mk; (skipped marker) ; callee: ret -> marker runs after return; then jmp over the callee
      const call = enc(Instruction.createBranch(Code.Call_rel32_64, BigInt(at + 5 + 2 + mk.length)), at);
      if (!call) return null;
      prog = concat(call, mk, Uint8Array.of(0xeb, 0x01), Uint8Array.of(0xc3));
      c.regs[4] = BigInt(stackPointer(g));
      c.windows = [windowAround(g, Number(c.regs[4]) - DATA, 24, 24)];
      break;
    }
  }
  if (prog === null || codeOff + prog.length > CODE_SIZE) return null;
  c.note = `kind=${kind}`;
  return { ...c, codeOff, code: prog };
}

// ---------------------------------------------------------------------------
// Strings: every instruction, size, prefix and direction, across page boundaries and into faults

type StringKind = 'movs' | 'stos' | 'lods' | 'cmps' | 'scas';
const STRING_OPS: Record<StringKind, number> = { movs: 0xa4, cmps: 0xa6, stos: 0xaa, lods: 0xac, scas: 0xae };

function stringCase(g: Rng): PagedCase | null {
  const c = baseCase(g, 'paged-string');
  const kind = g.pick(Object.keys(STRING_OPS) as StringKind[]);
  const sizeIdx = g.below(4);
  const size = 1 << sizeIdx;
  const rep = g.pick([0, 0xf3, 0xf3, 0xf2]);
  const a32 = g.chance(0.2);
  const back = g.chance(0.4);
  c.rflags = randomFlags(g, 0) | (back ? 0x400 : 0);
  const prefixes: number[] = [];
  // Segment overrides that change nothing in 64-bit mode (FS/GS bases differ between the host and bzemu), and now and then LOCK (#UD).
  if (g.chance(0.15)) prefixes.push(g.pick([0x26, 0x2e, 0x36, 0x3e]));
  if (g.chance(0.03)) prefixes.push(0xf0);
  if (a32) prefixes.push(0x67);
  if (rep) prefixes.push(rep);
  if (size === 2) prefixes.push(0x66);
  const op = STRING_OPS[kind] + (size === 1 ? 0 : 1);
  const code = Uint8Array.from([...prefixes, ...(size === 8 ? [0x48] : []), op]);
  const count = rep === 0 ? 1 : g.chance(0.1) ? 0 : g.chance(0.6) ? g.below(9) : g.below(Math.floor(600 / size));
  const span = count * size;
  // Pointers placed so the run crosses a page boundary, reaches the read-only page, or runs into the absent page.
  const aim = (): number => {
    const boundary = DATA + PAGE * (1 + g.below(DATA_SIZE / PAGE));
    const p = back ? boundary + g.below(Math.min(span, 64) + 16) - 8 : boundary - g.below(Math.min(span, 64) + 16) + 8 - size;
    return Math.max(DATA, Math.min(DATA_GUARD + 16, p));
  };
  const src = aim();
  const dst = g.chance(0.3) ? Math.max(DATA, Math.min(DATA_GUARD, src + g.below(49) - 24)) : aim();
  const hi = (): bigint => (a32 ? BigInt(g.u32()) << 32n : 0n);
  c.regs[6] = hi() | BigInt(src);
  c.regs[7] = hi() | BigInt(dst);
  if (rep) c.regs[1] = hi() | BigInt(count);
  const win = (p: number): DataWindow => (back ? windowAround(g, p - DATA, span + 16, 16 + size) : windowAround(g, p - DATA, 16, span + 16 + size));
  const ws = [win(src), win(dst)];
  // Equal runs so REPE/REPNE stop early.
  if ((kind === 'cmps' || kind === 'scas') && g.chance(0.6)) {
    const fill = g.below(256);
    for (const w of ws) if (g.chance(0.8)) w.bytes.fill(fill);
    if (kind === 'scas') c.regs[0] = BigInt(fill) * 0x0101010101010101n;
  }
  c.windows = mergeWindows(ws);
  const codeOff = placeProgram(g, code.length);
  c.note = `${kind}${size * 8} rep=${rep.toString(16)} a32=${a32} rsi=0x${src.toString(16)} rdi=0x${dst.toString(16)} count=${count}${back ? ' DF=1' : ''}`;
  return { ...c, codeOff, code };
}

// ---------------------------------------------------------------------------
// Self-modifying code: a store into the instruction stream (same page, next page, second mapping), also in a loop

function smcCase(g: Rng): PagedCase | null {
  const c = baseCase(g, 'paged-smc');
  const where = g.below(4); // 0 same page, 1 next page, 2 through the second mapping, 3 in a loop
  if (where === 2) c.mode = { ...c.mode, pageSize: '4K' };
  const SAFE = [0, 5, 6, 7]; // never RCX (loop counter), RDX (store value) or RBX (store address)
  const width = g.pick([1, 2, 4, 8]);
  // The target: mov r32, imm32; a qword store also covers the three NOPs after it.
  const target = concat(Uint8Array.of(0xb8 + g.pick(SAFE), ...le(BigInt(g.u32()), 4)), width === 8 ? Uint8Array.of(0x90, 0x90, 0x90) : new Uint8Array(0));
  const offInTarget = width === 8 ? 0 : g.below(6 - width);
  // What is stored: random immediate bytes; where it covers the opcode, another mov r32, imm32.
  let value = g.u64();
  if (offInTarget === 0) value = (value & ~0xffn) | BigInt(0xb8 + g.pick(SAFE));
  if (width === 8) value = (value & 0xffffffffffn) | 0x9090900000000000n;
  const disp = g.below(16) - 8; // the store addresses [rbx + disp8]
  const d = disp & 0xff;
  const store = width === 1 ? Uint8Array.of(0xc6, 0x43, d, Number(value & 0xffn))
    : width === 2 ? Uint8Array.of(0x66, 0xc7, 0x43, d, ...le(value, 2))
      : width === 4 ? Uint8Array.of(0xc7, 0x43, d, ...le(value, 4))
        : Uint8Array.of(0x48, 0x89, 0x53, d); // mov [rbx+d], rdx
  if (width === 8) c.regs[2] = value;
  const gap = g.chance(0.3) ? new Uint8Array(0) : new Uint8Array(g.below(40)).fill(0x90);
  let prog: Uint8Array;
  let targetAt: number; // offset of the target inside the program
  if (where === 3) {
    // L: target; nops; store (into target); dec ecx; jnz L   -- later passes run the modified target
    const body = concat(target, gap.subarray(0, 8), store, Uint8Array.of(0xff, 0xc9));
    prog = concat(body, Uint8Array.of(0x75, (-(body.length + 2)) & 0xff));
    c.regs[1] = BigInt(1 + g.below(3));
    targetAt = 0;
  } else {
    prog = concat(store, gap, target);
    targetAt = store.length + gap.length;
  }
  let codeOff: number;
  if (where === 1) {
    // The target begins on the second code page, or straddles into it.
    codeOff = PAGE - (targetAt + g.below(target.length + 1));
    if (codeOff < 0) return null;
  } else {
    codeOff = g.below(PAGE - prog.length - EXIT_JUMP);
  }
  if (codeOff + prog.length + EXIT_JUMP > CODE_SIZE) return null;
  const targetVa = CODE + codeOff + targetAt;
  const storeVa = where === 2 ? ALIAS + (targetVa - CODE) : targetVa;
  c.regs[3] = BigInt(storeVa + offInTarget - disp);
  c.note = `${['same page', 'next page', 'second mapping', 'loop'][where]}, ${width}-byte store at +${offInTarget} of the target`;
  return { ...c, codeOff, code: prog };
}

// ---------------------------------------------------------------------------
// Straight-line blocks: several dependent instructions in a row, which bzemu runs as one translated block (registers in
// JavaScript locals, deferred flags, inline memory probes), so what one instruction leaves in a register or in RFLAGS is
// what the next one reads inside the block, and a fault part way leaves the state after the instructions before it.

const BLOCK_CODES = codesMatching(
  /^(Mov_r\d+_rm\d+|Mov_rm\d+_r\d+|Mov_r(32|64)_imm\d+|Mov_rm\d+_imm\d+|Movzx_r\d+_rm(8|16)|Movsx_r\d+_rm(8|16)|Movsxd_r64_rm32|(Add|Adc|Sub|Sbb|And|Or|Xor|Cmp)_(rm\d+_r\d+|r\d+_rm\d+|rm\d+_imm\d+)|Test_rm\d+_(r|imm)\d+|(Inc|Dec|Neg|Not)_rm\d+|(Shl|Shr|Sar|Rol|Ror)_rm\d+_imm8|Cmov[a-z]+_r\d+_rm\d+|Set[a-z]+_rm8|Imul_r\d+_rm\d+(_imm\d+)?|VEX_(Bzhi|Shlx|Shrx|Sarx)_r\d+_rm\d+_r\d+)$/,
);

/** Half the picks: loads of every width and 64-bit arithmetic, so a narrow write is often followed by a wide read of the same register. */
const BLOCK_CORE = codesMatching(/^(Mov_r(8|16|32|64)_rm(8|16|32|64)|(Add|Adc|Sub|Sbb|Cmp|And|Or|Xor)_r64_rm64|(Add|Sub|And|Or|Xor|Cmp)_rm(32|64)_(r(32|64)|imm8)|Imul_r64_rm64)$/);

/** Registers the block's instructions use: not RSP, not RBP (the base of every memory operand). */
const BLOCK_REGS = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11];

function blockCase(g: Rng): PagedCase | null {
  const c = baseCase(g, 'paged-block');
  // Operands reach 16 bytes below RBP: never below DATA, which only bzemu maps with 2 MiB and 1 GiB pages.
  const base = Math.max(DATA + 16, dataTarget(g, 8) - 32 + g.below(32));
  c.regs[5] = BigInt(base);
  const pool = Array.from({ length: 2 + g.below(3) }, () => g.pick(BLOCK_REGS));
  // Register values that make byte and word results carry into the upper halves.
  for (const r of pool) if (g.chance(0.3)) c.regs[r] = g.pick([0xffffff00n, 0xffff0000n, 0x80000000n, 0xffffffffn, 0x7fffffffffffff00n]) | BigInt(g.below(256));
  const n = 3 + g.below(10);
  const parts: Uint8Array[] = [];
  let undefined_ = 0; // iced RflagsBits the program has left undefined so far
  let anyUndefined = 0; // and after any of its instructions: a fault part way shows RFLAGS as it was then
  const codeOff = g.below(CODE_SIZE - 16 * n - EXIT_JUMP);
  let at = CODE + codeOff;
  let lowest = 0, highest = 0;
  for (let k = 0; k < n; k++) {
    let bytes: Uint8Array | null = null;
    for (let attempt = 0; attempt < 20 && bytes === null; attempt++) {
      const code = g.pick(g.chance(0.5) ? BLOCK_CORE : BLOCK_CODES);
      const toks = tokens(Code[code]);
      const args: Array<Register | MemoryOperand | { imm: number; signed: boolean }> = [];
      let memUsed = false;
      for (const t of toks) {
        if (t.t === 'imm') {
          if (t.bits > 0) args.push({ imm: Number(BigInt.asIntN(t.bits, edgeValue(g, t.bits))), signed: true });
        } else if (t.t === 'rm' && !memUsed && g.chance(0.5)) {
          memUsed = true;
          const disp = g.below(48) - 16;
          lowest = Math.min(lowest, disp);
          highest = Math.max(highest, disp + t.bits / 8);
          args.push(new MemoryOperand(Register.RBP, Register.None, 1, BigInt(disp), 1, false, Register.None));
        } else args.push(regOf(g.pick(pool), t.bits));
      }
      const instr = createInstruction(code, args as Parameters<typeof createInstruction>[1]);
      // Nothing may read a flag an earlier instruction left undefined (the host and bzemu need not agree on it).
      if ((instr.rflagsRead & undefined_) !== 0) {
        instr.free();
        continue;
      }
      undefined_ = (undefined_ & ~instr.rflagsModified) | instr.rflagsUndefined;
      anyUndefined |= undefined_;
      bytes = enc(instr, at);
    }
    if (bytes === null) return null;
    parts.push(bytes);
    at += bytes.length;
  }
  const prog = concat(...parts);
  if (codeOff + prog.length + EXIT_JUMP > CODE_SIZE) return null;
  c.windows = [windowAround(g, base - DATA, 16 - lowest, highest + 8)];
  c.undefFlags = icedFlagsToEflags(anyUndefined);
  c.note = `${n} instructions, rbp 0x${base.toString(16)}`;
  return { ...c, codeOff, code: prog };
}

export function pagedFamilies(): PagedFamily[] {
  return [
    { name: 'paged-mem', make: memCase },
    { name: 'paged-stack', make: stackCase },
    { name: 'paged-control', make: controlCase },
    { name: 'paged-string', make: stringCase },
    { name: 'paged-smc', make: smcCase },
    { name: 'paged-block', make: blockCase },
  ];
}

export function generatePaged(f: PagedFamily, seed: number, count: number): PagedCase[] {
  const g = new Rng(seed, f.name);
  const out: PagedCase[] = [];
  let failures = 0;
  while (out.length < count) {
    const c = f.make(g);
    if (c) out.push(c);
    else if (++failures > 100 + count * 4) throw new Error(`family ${f.name}: too many unusable attempts`);
  }
  return out;
}

