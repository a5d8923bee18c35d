import type { Cpu } from '../cpu.js';

/*
 * 64-bit shifts on unsigned 32-bit halves, results in the CPU's pairLo/pairHi
 * scratch (no allocation, and no state outside the machine). Counts are 0..63.
 */

export function shl64(cpu: Cpu, lo: number, hi: number, c: number): void {
  if (c === 0) { cpu.pairLo = lo; cpu.pairHi = hi; }
  else if (c < 32) { cpu.pairHi = ((hi << c) | (lo >>> (32 - c))) >>> 0; cpu.pairLo = (lo << c) >>> 0; }
  else { cpu.pairHi = (lo << (c - 32)) >>> 0; cpu.pairLo = 0; }
}

export function shr64(cpu: Cpu, lo: number, hi: number, c: number): void {
  if (c === 0) { cpu.pairLo = lo; cpu.pairHi = hi; }
  else if (c < 32) { cpu.pairLo = ((lo >>> c) | (hi << (32 - c))) >>> 0; cpu.pairHi = hi >>> c; }
  else { cpu.pairLo = hi >>> (c - 32); cpu.pairHi = 0; }
}

export function sar64(cpu: Cpu, lo: number, hi: number, c: number): void {
  if (c === 0) { cpu.pairLo = lo; cpu.pairHi = hi; }
  else if (c < 32) { cpu.pairLo = ((lo >>> c) | (hi << (32 - c))) >>> 0; cpu.pairHi = (hi >> c) >>> 0; }
  else { cpu.pairLo = (hi >> (c - 32)) >>> 0; cpu.pairHi = (hi >> 31) >>> 0; }
}

/** Bit n (0..63) of a 64-bit value. */
export function bit64(lo: number, hi: number, n: number): number {
  return n < 32 ? (lo >>> n) & 1 : (hi >>> (n - 32)) & 1;
}

export function setOut(cpu: Cpu, lo: number, hi: number): void {
  cpu.pairLo = lo;
  cpu.pairHi = hi;
}
