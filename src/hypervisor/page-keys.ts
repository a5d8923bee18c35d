import { ACCESS_EXEC, ACCESS_WRITE, type TranslationObserver } from '../cpu/mmu.js';
import { CIPHERTEXT_VIEW_BASE } from '../memory/sparse-memory.js';

/**
 * Memory encryption of an SEV or SEV-ES guest, which has no RMP: per page of
 * RAM, whether it holds data written with the guest's key (private: what the
 * launch leaves every page holding) or without it (shared: the guest wrote it
 * through a mapping without the C-bit). An access whose C-bit disagrees with
 * the page sees the other key's view: a read gets ciphertext (SparseMemory's
 * one ciphertext model), a write moves the page to the writer's key.
 * Instruction fetches are always private, as on the hardware. The hardware
 * encrypts 16-byte blocks; pages are tracked whole, which differs only for a
 * page written both ways, a guest bug on any granularity.
 */
export class PageKeys implements TranslationObserver {
  uncacheable = false;
  private readonly shared: Uint8Array;

  constructor(
    private readonly ramSize: number,
    /** Told when a write moves a page to the other key (the TLB must forget the page's other mappings). */
    private readonly onSwitch: (page: number, toShared: boolean) => void,
  ) {
    this.shared = new Uint8Array(Math.ceil(ramSize / 4096));
  }

  isShared(pa: number): boolean {
    return pa < this.ramSize && this.shared[Math.floor(pa / 4096)] === 1;
  }

  onFill(pa: number, encrypted: boolean, access: number): number {
    if (pa >= this.ramSize) return 0;
    const pfn = Math.floor(pa / 4096);
    const privateAccess = encrypted || access === ACCESS_EXEC;
    if (privateAccess === (this.shared[pfn] === 0)) return 0;
    if (access === ACCESS_WRITE) {
      this.shared[pfn] = privateAccess ? 0 : 1;
      this.onSwitch(pfn * 4096, !privateAccess);
      return 0;
    }
    // The other key's view, checked again on every access: a write through the same mapping switches the page.
    this.uncacheable = true;
    return CIPHERTEXT_VIEW_BASE;
  }
}
