/**
 * Guest-physical memory as seen by the CPU, the loader and the hypervisor.
 * Every consumer goes through this interface so that shadow tracking, snapshots
 * and code-cache invalidation can live behind it.
 */
export interface PhysicalMemory {
  /** Bytes of RAM; physical addresses at or above this are unbacked. */
  readonly size: number;
  read8(pa: number): number;
  read16(pa: number): number;
  /** Unsigned 32-bit value. */
  read32(pa: number): number;
  write8(pa: number, value: number): void;
  write16(pa: number, value: number): void;
  write32(pa: number, value: number): void;
  /** Copy out `length` bytes (loader, hypervisor, reports; not per instruction). */
  readBytes(pa: number, length: number): Uint8Array;
  writeBytes(pa: number, data: Uint8Array): void;
  /** writeBytes for bytes the caller never changes afterwards (a kernel file): memory may go on referring to them instead of copying. */
  writeImage(pa: number, data: Uint8Array): void;
  fill(pa: number, length: number, byte: number): void;
  /** memmove inside guest memory (bulk rep movs). */
  copy(dst: number, src: number, length: number): void;
}

/** Called with a physical page number each time guest code writes into that page. */
export type PageWriteListener = (pfn: number) => void;

/**
 * Called with the first of `pages` physical page numbers (1 unless a range
 * changed at once) whenever what a direct view of those pages may do changes.
 */
export type PageAccessListener = (pfn: number, pages: number) => void;
