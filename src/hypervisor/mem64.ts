/** Little-endian 64-bit access on top of PhysicalMemory's 32-bit accessors. */
import type { PhysicalMemory } from '../memory/physical-memory.js';

export function readU64(mem: PhysicalMemory, pa: number): bigint {
  return BigInt(mem.read32(pa)) | (BigInt(mem.read32(pa + 4)) << 32n);
}

export function writeU64(mem: PhysicalMemory, pa: number, value: bigint): void {
  const v = BigInt.asUintN(64, value);
  mem.write32(pa, Number(v & 0xffffffffn));
  mem.write32(pa + 4, Number(v >> 32n));
}

/** A guest-supplied 64-bit address as a JS number, or null when it cannot be exact. */
export function gpaToNumber(gpa: bigint): number | null {
  return gpa >= 0n && gpa <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(gpa) : null;
}
