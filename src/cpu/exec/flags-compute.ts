import type { Cpu } from '../cpu.js';
import { AF, CF, OF, PARITY, SIGN_BIT, SIZE_MASK, ZF } from '../flags.js';

/*
 * Flag-exact primitives shared by the arithmetic, logic and shift families.
 * Each leaves its result in cpu.rLo/cpu.rHi and writes the arithmetic flags.
 * 64-bit values travel as unsigned 32-bit halves.
 */

/** SF and ZF and PF of a result. */
export function szp(size: number, lo: number, hi: number): number {
  if (size === 8) return PARITY[lo & 0xff] | ((lo | hi) === 0 ? ZF : 0) | ((hi >>> 24) & 0x80);
  return PARITY[lo & 0xff] | (lo === 0 ? ZF : 0) | ((lo >>> (size * 8 - 8)) & 0x80);
}

/** a + b + carryIn. */
export function add(cpu: Cpu, size: number, a: number, aHi: number, b: number, bHi: number, carryIn: number): void {
  if (size === 8) {
    const l = a + b + carryIn;
    const rl = l >>> 0;
    const h = aHi + bHi + (l > 0xffffffff ? 1 : 0);
    const rh = h >>> 0;
    cpu.rLo = rl;
    cpu.rHi = rh;
    cpu.setArith((h > 0xffffffff ? CF : 0) | ((a ^ b ^ rl) & AF) | ((aHi ^ rh) & (bHi ^ rh) & 0x80000000 ? OF : 0) | szp(8, rl, rh));
    return;
  }
  const mask = SIZE_MASK[size];
  // Operands may arrive wider than the operation (e.g. an imm8 sign-extended to 32 bits for a 16-bit ADD).
  if (size < 4) {
    a &= mask;
    b &= mask;
  }
  const r0 = a + b + carryIn;
  const r = size === 4 ? r0 >>> 0 : r0 & mask;
  cpu.rLo = r;
  cpu.rHi = 0;
  cpu.setArith((r0 > mask ? CF : 0) | ((a ^ b ^ r) & AF) | ((a ^ r) & (b ^ r) & SIGN_BIT[size] ? OF : 0) | szp(size, r, 0));
}

/** a - b - borrowIn. */
export function sub(cpu: Cpu, size: number, a: number, aHi: number, b: number, bHi: number, borrowIn: number): void {
  if (size === 8) {
    const l = a - b - borrowIn;
    const rl = l >>> 0;
    const h = aHi - bHi - (l < 0 ? 1 : 0);
    const rh = h >>> 0;
    cpu.rLo = rl;
    cpu.rHi = rh;
    cpu.setArith((h < 0 ? CF : 0) | ((a ^ b ^ rl) & AF) | ((aHi ^ bHi) & (aHi ^ rh) & 0x80000000 ? OF : 0) | szp(8, rl, rh));
    return;
  }
  if (size < 4) {
    a &= SIZE_MASK[size];
    b &= SIZE_MASK[size];
  }
  const r0 = a - b - borrowIn;
  const r = size === 4 ? r0 >>> 0 : r0 & SIZE_MASK[size];
  cpu.rLo = r;
  cpu.rHi = 0;
  cpu.setArith((r0 < 0 ? CF : 0) | ((a ^ b ^ r) & AF) | ((a ^ b) & (a ^ r) & SIGN_BIT[size] ? OF : 0) | szp(size, r, 0));
}

/** Result of a bitwise operation: CF = OF = 0, AF cleared (undefined architecturally). */
export function logicResult(cpu: Cpu, size: number, lo: number, hi: number): void {
  const rl = size === 4 || size === 8 ? lo >>> 0 : lo & SIZE_MASK[size];
  const rh = size === 8 ? hi >>> 0 : 0;
  cpu.rLo = rl;
  cpu.rHi = rh;
  cpu.setArith(szp(size, rl, rh));
}

/*
 * Size-specialised forms of add/sub/logicResult for the decode-time operand-form
 * handlers: same flags, no size dispatch; the result is returned (low half) with
 * the high half in cpu.rHi for 64-bit forms.
 */

/** add(cpu, 8, a, aHi, b, bHi, 0): returns the low half, high half in cpu.rHi. */
export function add64(cpu: Cpu, a: number, aHi: number, b: number, bHi: number): number {
  const l = a + b;
  const rl = l >>> 0;
  const h = aHi + bHi + (l > 0xffffffff ? 1 : 0);
  const rh = h >>> 0;
  cpu.rHi = rh;
  cpu.rflags = (cpu.rflags & ~0x8d5) | (h > 0xffffffff ? CF : 0) | ((a ^ b ^ rl) & AF) | ((aHi ^ rh) & (bHi ^ rh) & 0x80000000 ? OF : 0) |
    PARITY[rl & 0xff] | ((rl | rh) === 0 ? ZF : 0) | ((rh >>> 24) & 0x80);
  return rl;
}

/** add(cpu, 4, a, 0, b, 0, 0) on unsigned 32-bit inputs. */
export function add32(cpu: Cpu, a: number, b: number): number {
  const r0 = a + b;
  const r = r0 >>> 0;
  cpu.rflags = (cpu.rflags & ~0x8d5) | (r0 > 0xffffffff ? CF : 0) | ((a ^ b ^ r) & AF) | ((a ^ r) & (b ^ r) & 0x80000000 ? OF : 0) |
    PARITY[r & 0xff] | (r === 0 ? ZF : 0) | ((r >>> 24) & 0x80);
  return r;
}

/** sub(cpu, 8, a, aHi, b, bHi, 0): returns the low half, high half in cpu.rHi. */
export function sub64(cpu: Cpu, a: number, aHi: number, b: number, bHi: number): number {
  const l = a - b;
  const rl = l >>> 0;
  const h = aHi - bHi - (l < 0 ? 1 : 0);
  const rh = h >>> 0;
  cpu.rHi = rh;
  cpu.rflags = (cpu.rflags & ~0x8d5) | (h < 0 ? CF : 0) | ((a ^ b ^ rl) & AF) | ((aHi ^ bHi) & (aHi ^ rh) & 0x80000000 ? OF : 0) |
    PARITY[rl & 0xff] | ((rl | rh) === 0 ? ZF : 0) | ((rh >>> 24) & 0x80);
  return rl;
}

/** sub(cpu, 4, a, 0, b, 0, 0) on unsigned 32-bit inputs. */
export function sub32(cpu: Cpu, a: number, b: number): number {
  const r0 = a - b;
  const r = r0 >>> 0;
  cpu.rflags = (cpu.rflags & ~0x8d5) | (r0 < 0 ? CF : 0) | ((a ^ b ^ r) & AF) | ((a ^ b) & (a ^ r) & 0x80000000 ? OF : 0) |
    PARITY[r & 0xff] | (r === 0 ? ZF : 0) | ((r >>> 24) & 0x80);
  return r;
}

/** logicResult(cpu, 8, lo, hi) flags for unsigned halves. */
export function logic64(cpu: Cpu, lo: number, hi: number): void {
  cpu.rflags = (cpu.rflags & ~0x8d5) | PARITY[lo & 0xff] | ((lo | hi) === 0 ? ZF : 0) | ((hi >>> 24) & 0x80);
}

/** logicResult(cpu, 4, lo, 0) flags for an unsigned 32-bit value. */
export function logic32(cpu: Cpu, lo: number): void {
  cpu.rflags = (cpu.rflags & ~0x8d5) | PARITY[lo & 0xff] | (lo === 0 ? ZF : 0) | ((lo >>> 24) & 0x80);
}
