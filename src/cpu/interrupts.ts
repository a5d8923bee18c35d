import type { Cpu } from './cpu.js';
import { Stop } from './host.js';
import { IF, NT, RF, TF } from './flags.js';
import { EFER_LMA } from './exec/system.js';
import { loadCodeSegment } from './exec/control.js';

/** Benign (0), contributory (1) or page fault (2), for the double-fault rules. */
function faultClass(vector: number): number {
  if (vector === 14) return 2;
  if (vector === 0 || (vector >= 10 && vector <= 13)) return 1;
  return 0;
}

/**
 * Deliver an exception through the long-mode IDT: 64-bit gates, IST stacks,
 * error codes. A fault while delivering escalates to #DF, and a fault while
 * delivering #DF is a triple fault, which stops the CPU like a shutdown.
 */
export function deliverException(cpu: Cpu, vector: number, hasError: boolean, errorCode: number): void {
  cpu.exceptionListener?.(vector, errorCode, hasError);
  let v = vector, has = hasError, err = errorCode;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      pushFrame(cpu, v, has, err);
      return;
    } catch (e) {
      if (e !== cpu.fault) throw e;
      const second = cpu.fault.vector;
      if (v === 8) break;
      const c1 = faultClass(v), c2 = faultClass(second);
      if ((c1 === 1 && c2 === 1) || (c1 === 2 && c2 !== 0)) {
        v = 8;
        has = true;
        err = 0;
        cpu.exceptionListener?.(8, 0, true);
      } else {
        v = second;
        has = cpu.fault.hasErrorCode;
        err = cpu.fault.errorCode;
        cpu.exceptionListener?.(v, err, has);
      }
    }
  }
  cpu.stop = Stop.TripleFault;
  cpu.stopDetail = `triple fault while delivering vector ${vector}`;
}

function pushFrame(cpu: Cpu, vector: number, hasError: boolean, errorCode: number): void {
  if ((cpu.efer & EFER_LMA) === 0) {
    pushFrame32(cpu, vector, hasError, errorCode);
    return;
  }
  const gateOffset = vector * 16;
  if (gateOffset + 15 > cpu.idtrLimit) cpu.raise(13, vector * 8 + 2);
  const baseLo = cpu.idtrBaseLo + gateOffset;
  const gLo = cpu.readLinear(baseLo >>> 0, cpu.idtrBaseHi + (baseLo > 0xffffffff ? 1 : 0), 8);
  const gHi = cpu.vHi;
  const gLo2 = cpu.readLinear((baseLo + 8) >>> 0, cpu.idtrBaseHi + (baseLo + 8 > 0xffffffff ? 1 : 0), 4);
  const type = (gHi >>> 8) & 0xf;
  const present = (gHi & 0x8000) !== 0;
  if (!present) cpu.raise(11, vector * 8 + 2);
  if (type !== 0xe && type !== 0xf) cpu.raise(13, vector * 8 + 2);
  const selector = (gLo >>> 16) & 0xffff;
  const ist = gHi & 7;
  const targetLo = ((gLo & 0xffff) | (gHi & 0xffff0000)) >>> 0;
  const targetHi = gLo2 >>> 0;

  const oldSpLo = cpu.regLo[4], oldSpHi = cpu.regHi[4];
  let spLo: number, spHi: number;
  if (ist !== 0) {
    const slot = 0x24 + (ist - 1) * 8;
    // The IST pointer must lie inside the TSS, else #TS(TSS selector), EXT set: the event is an exception
    // (SDM vol. 2 INT n, IA-32e mode). A TR no LTR loaded (selector 0) is taken as it stands, as
    // hardware's reset TR (base 0, limit 0xffff) would be.
    if (cpu.trSel !== 0 && slot + 7 > cpu.trLimit) cpu.raise(10, (cpu.trSel & 0xfffc) | 1);
    const a = cpu.trBaseLo + slot;
    spLo = cpu.readLinear(a >>> 0, (cpu.trBaseHi + (a > 0xffffffff ? 1 : 0)) >>> 0, 8);
    spHi = cpu.vHi;
  } else {
    spLo = oldSpLo;
    spHi = oldSpHi;
  }
  spLo = (spLo & 0xfffffff0) >>> 0;
  // Build the frame below the (aligned) new stack pointer, then commit.
  const frame: Array<[number, number]> = [
    [cpu.seg[2], 0],
    [oldSpLo, oldSpHi],
    [cpu.rflags >>> 0, 0],
    [cpu.seg[1], 0],
    [cpu.ripLo, cpu.ripHi],
  ];
  if (hasError) frame.push([errorCode >>> 0, 0]);
  let lo = spLo, hi = spHi;
  for (const [vlo, vhi] of frame) {
    lo -= 8;
    if (lo < 0) {
      lo += 4294967296;
      hi = (hi - 1) >>> 0;
    }
    cpu.writeLinear(lo, hi, 8, vlo, vhi);
  }
  if (!cpu.csLong) loadCodeSegment(cpu, selector); // from compatibility mode: the handler's CS decides its mode
  cpu.regLo[4] = lo;
  cpu.regHi[4] = hi;
  cpu.seg[1] = selector;
  cpu.rflags &= ~(TF | NT | RF | (type === 0xe ? IF : 0));
  cpu.ripLo = targetLo;
  cpu.ripHi = targetHi;
}

/**
 * Protected-mode delivery (EFER.LMA = 0) through 8-byte 32-bit interrupt and
 * trap gates, at the same privilege level (CPL 0 code, so no stack switch):
 * EFLAGS, CS, EIP and any error code pushed as 4-byte slots on ESP.
 */
function pushFrame32(cpu: Cpu, vector: number, hasError: boolean, errorCode: number): void {
  const gateOffset = vector * 8;
  if (gateOffset + 7 > cpu.idtrLimit) cpu.raise(13, vector * 8 + 2);
  const gLo = cpu.readLinear((cpu.idtrBaseLo + gateOffset) >>> 0, 0, 8);
  const gHi = cpu.vHi;
  const type = (gHi >>> 8) & 0x1f;
  if ((gHi & 0x8000) === 0) cpu.raise(11, vector * 8 + 2);
  if (type !== 0xe && type !== 0xf) cpu.raise(13, vector * 8 + 2); // 32-bit interrupt or trap gate
  const selector = (gLo >>> 16) & 0xffff;
  if ((selector & 3) !== (cpu.seg[1] & 3)) cpu.gap(`a 32-bit interrupt gate to another privilege level (vector ${vector}) is not implemented`);
  const target = ((gLo & 0xffff) | (gHi & 0xffff0000)) >>> 0;
  const frame = hasError ? [cpu.rflags >>> 0, cpu.seg[1], cpu.ripLo >>> 0, errorCode >>> 0] : [cpu.rflags >>> 0, cpu.seg[1], cpu.ripLo >>> 0];
  let sp = cpu.regLo[4];
  for (const v of frame) {
    sp = (sp - 4) >>> 0;
    cpu.writeLinear(sp, 0, 4, v, 0);
  }
  loadCodeSegment(cpu, selector);
  cpu.regLo[4] = sp;
  cpu.regHi[4] = 0;
  cpu.rflags &= ~(TF | NT | RF | (type === 0xe ? IF : 0));
  cpu.ripLo = target;
  cpu.ripHi = 0;
}
