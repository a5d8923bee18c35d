import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import type { Handler, Insn } from '../insn.js';
import { ACCESS_READ, ACCESS_WRITE } from '../mmu.js';
import { DF, ZF } from '../flags.js';
import { RAX, RCX, RDI, RDX, RSI } from '../registers.js';
import { sub } from './flags-compute.js';
import type { Registry } from './table.js';

/**
 * MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS with REP/REPE/REPNE in both directions.
 * REP MOVS and REP STOS copy or fill page-sized chunks in bulk; everything
 * else runs element by element. Registers advance per completed element or
 * chunk, so a fault part way leaves a restartable state, as on hardware.
 */

const MOVS = 0, STOS = 1, LODS = 2, CMPS = 3, SCAS = 4, INS = 5, OUTS = 6;
const TWO32 = 4294967296;
/**
 * Steps (one element, or a bulk chunk of up to a page) one execution of a REP
 * instruction may take before it is interrupted (Cpu.interruptRep): over a
 * hundred times what real decompressors take at once (a few thousand), so
 * real boots retire each REP once, as before; yet a REP with a count of 2^64
 * cannot keep the run from ending. A REP resumed right after such an
 * interruption takes one step per execution, each one retired, so an endless
 * REP uses up the instruction budget like a loop.
 */
const REP_QUOTA = 1 << 20;

/** The count (RCX, or ECX with 0x67): exact below 2^53, which is all the loop needs of it above. */
function counter(cpu: Cpu, i: Insn): number {
  return i.addrSize === 4 ? cpu.regLo[RCX] : cpu.regHi[RCX] * TWO32 + cpu.regLo[RCX];
}

/** Subtract `k` (at most 2^32) elements from the count register, exactly in its halves. */
function countDown(cpu: Cpu, i: Insn, k: number): void {
  const l = cpu.regLo[RCX] - k;
  if (i.addrSize === 4) cpu.setReg(RCX, 4, l >>> 0, 0);
  else if (l < 0) {
    cpu.regLo[RCX] = l + TWO32;
    cpu.regHi[RCX] = (cpu.regHi[RCX] - 1) >>> 0;
  } else cpu.regLo[RCX] = l;
}

/** Add a signed delta to an index register (64-bit, or 32-bit with 0x67). */
function advance(cpu: Cpu, r: number, delta: number, i: Insn): void {
  if (i.addrSize === 4) {
    cpu.setReg(r, 4, (cpu.regLo[r] + delta) >>> 0, 0);
    return;
  }
  const l = cpu.regLo[r] + delta;
  if (l < 0) {
    cpu.regLo[r] = l + TWO32;
    cpu.regHi[r] = (cpu.regHi[r] - 1) >>> 0;
  } else if (l > 0xffffffff) {
    cpu.regLo[r] = l - TWO32;
    cpu.regHi[r] = (cpu.regHi[r] + 1) >>> 0;
  } else cpu.regLo[r] = l;
}

/** Source address (DS:RSI, with an FS/GS override's base) into eaLo/eaHi. */
function sourceAddress(cpu: Cpu, i: Insn): void {
  let lo = cpu.regLo[RSI], hi = i.addrSize === 4 ? 0 : cpu.regHi[RSI];
  if (i.memSeg === 4) { lo += cpu.fsBaseLo; hi += cpu.fsBaseHi; }
  else if (i.memSeg === 5) { lo += cpu.gsBaseLo; hi += cpu.gsBaseHi; }
  if (lo > 0xffffffff) { lo -= TWO32; hi += 1; }
  cpu.eaLo = lo;
  cpu.eaHi = hi >>> 0;
}

function destHi(cpu: Cpu, i: Insn): number {
  return i.addrSize === 4 ? 0 : cpu.regHi[RDI];
}

function stringOp(kind: number): Handler {
  return (cpu: Cpu, i: Insn) => {
    const size = i.op;
    const back = (cpu.rflags & DF) !== 0;
    const step = back ? -size : size;
    if (i.rep === 0) {
      element(cpu, i, kind, size, step);
      return;
    }
    let n = counter(cpu, i);
    let steps = cpu.resumingRep() ? 1 : REP_QUOTA;
    while (n > 0) {
      if (steps-- === 0) {
        cpu.interruptRep();
        return;
      }
      if ((kind === MOVS || kind === STOS) && n > 1) {
        const done = bulk(cpu, i, kind, size, back, n);
        if (done > 0) {
          n -= done;
          countDown(cpu, i, done);
          continue;
        }
      }
      element(cpu, i, kind, size, step);
      n -= 1;
      countDown(cpu, i, 1);
      if (kind === CMPS || kind === SCAS) {
        const z = (cpu.rflags & ZF) !== 0;
        if (i.rep === 1 ? !z : z) break;
      }
    }
  };
}

/** One element of the operation. */
function element(cpu: Cpu, i: Insn, kind: number, size: number, step: number): void {
  switch (kind) {
    case MOVS: {
      sourceAddress(cpu, i);
      const v = cpu.readLinear(cpu.eaLo, cpu.eaHi, size);
      cpu.writeLinear(cpu.regLo[RDI], destHi(cpu, i), size, v, cpu.vHi);
      advance(cpu, RSI, step, i);
      advance(cpu, RDI, step, i);
      return;
    }
    case STOS:
      cpu.writeLinear(cpu.regLo[RDI], destHi(cpu, i), size, cpu.regLo[RAX], cpu.regHi[RAX]);
      advance(cpu, RDI, step, i);
      return;
    case LODS: {
      sourceAddress(cpu, i);
      const v = cpu.readLinear(cpu.eaLo, cpu.eaHi, size);
      cpu.setReg(RAX, size, v, cpu.vHi);
      advance(cpu, RSI, step, i);
      return;
    }
    case CMPS: {
      // DS:rSI is read first, as AMD EPYC does (its #PF CR2 says so when both operands fault; the order is not architectural).
      sourceAddress(cpu, i);
      const a = cpu.readLinear(cpu.eaLo, cpu.eaHi, size);
      const aHi = cpu.vHi;
      const b = cpu.readLinear(cpu.regLo[RDI], destHi(cpu, i), size);
      sub(cpu, size, a, aHi, b, cpu.vHi, 0);
      advance(cpu, RSI, step, i);
      advance(cpu, RDI, step, i);
      return;
    }
    case SCAS: {
      const b = cpu.readLinear(cpu.regLo[RDI], destHi(cpu, i), size);
      const bHi = cpu.vHi;
      const a = cpu.getReg(RAX, size);
      sub(cpu, size, a, cpu.regHi[RAX], b, bHi, 0);
      advance(cpu, RDI, step, i);
      return;
    }
    case INS: {
      const v = cpu.host.portIn(cpu, cpu.regLo[RDX] & 0xffff, size);
      cpu.writeLinear(cpu.regLo[RDI], destHi(cpu, i), size, v, 0);
      advance(cpu, RDI, step, i);
      return;
    }
    default: {
      sourceAddress(cpu, i);
      const v = cpu.readLinear(cpu.eaLo, cpu.eaHi, size);
      cpu.host.portOut(cpu, cpu.regLo[RDX] & 0xffff, size, v);
      advance(cpu, RSI, step, i);
    }
  }
}

/**
 * Copy or fill as many whole elements as fit in the current source and
 * destination pages; returns how many were done (0 = use the element path).
 */
function bulk(cpu: Cpu, i: Insn, kind: number, size: number, back: boolean, n: number): number {
  const dLo = cpu.regLo[RDI];
  const dOff = dLo & 0xfff;
  // Elements that stay inside the destination page (each element must not straddle it).
  let fit = back ? Math.floor((dOff + size) / size) : Math.floor((4096 - dOff) / size);
  if (dOff % size !== 0) return 0;
  let sOff = 0;
  if (kind === MOVS) {
    sourceAddress(cpu, i);
    sOff = cpu.eaLo & 0xfff;
    if (sOff % size !== 0) return 0;
    fit = Math.min(fit, back ? Math.floor((sOff + size) / size) : Math.floor((4096 - sOff) / size));
  }
  const count = Math.min(fit, n);
  if (count < 2) return 0;
  const bytes = count * size;
  // Translate at the first element's own address (a fault's CR2), the source before the destination as one element does.
  let sPa = 0;
  if (kind === MOVS) {
    const first = cpu.mmu.translate(cpu.eaLo >>> 0, cpu.eaHi, ACCESS_READ);
    sPa = back ? first - (count - 1) * size : first;
  }
  const firstDst = cpu.mmu.translate(dLo >>> 0, destHi(cpu, i), ACCESS_WRITE);
  const dPa = back ? firstDst - (count - 1) * size : firstDst;
  if (kind === STOS) {
    const vLo = cpu.regLo[RAX], vHi = cpu.regHi[RAX];
    const b0 = vLo & 0xff;
    const uniform = size === 1 || (size === 2 ? (vLo & 0xffff) === b0 * 0x101 : (vLo >>> 0) === (b0 * 0x1010101) >>> 0 && (size === 4 || vHi === vLo));
    if (uniform) cpu.mem.fill(dPa, bytes, b0);
    else {
      const p = cpu.stosPattern.of(size, vLo, vHi);
      cpu.mem.writeBytes(dPa, bytes === p.length ? p : p.subarray(0, bytes));
    }
    advance(cpu, RDI, back ? -bytes : bytes, i);
    return count;
  }
  // A source page under uninitialized-read tracking goes element by element, so each read is reported as it would be.
  if (cpu.mem.tracked[sPa >>> 12] !== 0) return 0;
  // Element order matters only when the ranges overlap in the "wrong" direction.
  const overlaps = dPa < sPa + bytes && sPa < dPa + bytes;
  if (overlaps && (back ? dPa < sPa : dPa > sPa)) return 0;
  cpu.mem.copy(dPa, sPa, bytes);
  advance(cpu, RSI, back ? -bytes : bytes, i);
  advance(cpu, RDI, back ? -bytes : bytes, i);
  return count;
}

export function registerStrings(r: Registry): void {
  const families: Array<[number, number[]]> = [
    [MOVS, [Mnemonic.Movsb, Mnemonic.Movsw, Mnemonic.Movsd, Mnemonic.Movsq]],
    [STOS, [Mnemonic.Stosb, Mnemonic.Stosw, Mnemonic.Stosd, Mnemonic.Stosq]],
    [LODS, [Mnemonic.Lodsb, Mnemonic.Lodsw, Mnemonic.Lodsd, Mnemonic.Lodsq]],
    [CMPS, [Mnemonic.Cmpsb, Mnemonic.Cmpsw, Mnemonic.Cmpsd, Mnemonic.Cmpsq]],
    [SCAS, [Mnemonic.Scasb, Mnemonic.Scasw, Mnemonic.Scasd, Mnemonic.Scasq]],
    [INS, [Mnemonic.Insb, Mnemonic.Insw, Mnemonic.Insd]],
    [OUTS, [Mnemonic.Outsb, Mnemonic.Outsw, Mnemonic.Outsd]],
  ];
  for (const [kind, mnemonics] of families) {
    const handler = stringOp(kind);
    r.pick(mnemonics, (insn, ins) => {
      if (!ins.isStringInstruction) return (cpu: Cpu) => cpu.gap('SSE instruction sharing a string mnemonic is not implemented');
      const m = ins.mnemonic;
      const idx = mnemonics.indexOf(m);
      insn.op = [1, 2, 4, 8][idx];
      return handler;
    });
  }
}
