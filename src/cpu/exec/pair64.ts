/*
 * 64-bit shifts on unsigned 32-bit halves, results in module scalars to avoid
 * allocation. Counts are 0..63.
 */
export let outLo = 0;
export let outHi = 0;

export function shl64(lo: number, hi: number, c: number): void {
  if (c === 0) { outLo = lo; outHi = hi; }
  else if (c < 32) { outHi = ((hi << c) | (lo >>> (32 - c))) >>> 0; outLo = (lo << c) >>> 0; }
  else { outHi = (lo << (c - 32)) >>> 0; outLo = 0; }
}

export function shr64(lo: number, hi: number, c: number): void {
  if (c === 0) { outLo = lo; outHi = hi; }
  else if (c < 32) { outLo = ((lo >>> c) | (hi << (32 - c))) >>> 0; outHi = hi >>> c; }
  else { outLo = hi >>> (c - 32); outHi = 0; }
}

export function sar64(lo: number, hi: number, c: number): void {
  if (c === 0) { outLo = lo; outHi = hi; }
  else if (c < 32) { outLo = ((lo >>> c) | (hi << (32 - c))) >>> 0; outHi = (hi >> c) >>> 0; }
  else { outLo = (hi >> (c - 32)) >>> 0; outHi = (hi >> 31) >>> 0; }
}

/** Bit n (0..63) of a 64-bit value. */
export function bit64(lo: number, hi: number, n: number): number {
  return n < 32 ? (lo >>> n) & 1 : (hi >>> (n - 32)) & 1;
}

export function setOut(lo: number, hi: number): void {
  outLo = lo;
  outHi = hi;
}
