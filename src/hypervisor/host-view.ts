import type { PhysicalMemory } from '../memory/physical-memory.js';
import { CIPHERTEXT_VIEW_BASE } from '../memory/sparse-memory.js';

/**
 * Guest memory as the host sees it (through mappings without the C-bit): the
 * plaintext of shared pages, ciphertext of private ones (the RMP decides under SNP, the page's last key under SEV and SEV-ES).
 * Writes to private pages do not reach the guest's plaintext. The hypervisor
 * reads and writes the GHCB and its scratch area through this view, so a
 * guest that leaves its GHCB private talks to a host that sees garbage.
 * Every read goes byte by byte through the one ciphertext model of
 * SparseMemory (deterministic per address and plaintext byte).
 */
export class HostView implements PhysicalMemory {
  readonly size: number;

  /** `isPrivate`: whether a page holds the guest's private data (the RMP's view under SNP, the page's last key otherwise). */
  constructor(private readonly mem: PhysicalMemory, private readonly isPrivate: (pa: number) => boolean) {
    this.size = mem.size;
  }

  private source(pa: number): number {
    return pa < this.size && this.isPrivate(pa) ? CIPHERTEXT_VIEW_BASE + pa : pa;
  }

  read8(pa: number): number {
    return this.mem.read8(this.source(pa));
  }

  read16(pa: number): number {
    return this.read8(pa) | (this.read8(pa + 1) << 8);
  }

  read32(pa: number): number {
    return (this.read16(pa) | (this.read16(pa + 2) << 16)) >>> 0;
  }

  write8(pa: number, value: number): void {
    if (pa < this.size && this.isPrivate(pa)) return;
    this.mem.write8(pa, value);
  }

  write16(pa: number, value: number): void {
    this.write8(pa, value & 0xff);
    this.write8(pa + 1, (value >>> 8) & 0xff);
  }

  write32(pa: number, value: number): void {
    this.write16(pa, value & 0xffff);
    this.write16(pa + 2, (value >>> 16) & 0xffff);
  }

  readBytes(pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.read8(pa + i);
    return out;
  }

  writeBytes(pa: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) this.write8(pa + i, data[i]);
  }

  fill(pa: number, length: number, byte: number): void {
    for (let i = 0; i < length; i++) this.write8(pa + i, byte);
  }

  writeImage(pa: number, data: Uint8Array): void {
    this.writeBytes(pa, data);
  }

  copy(dst: number, src: number, length: number): void {
    this.writeBytes(dst, this.readBytes(src, length));
  }
}
