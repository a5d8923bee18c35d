import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { CpuFault } from './fault.js';
import type { WasmArena } from '../memory/wasm-arena.js';

/** Access kinds for translation. */
export const ACCESS_READ = 0, ACCESS_WRITE = 1, ACCESS_EXEC = 2;

/*
 * 4,096 slots: blocks compiled to WebAssembly stop (and hand an instruction to
 * its handler) at every TLB miss, and with 1,024 direct-mapped slots the zstd
 * decoder's output pages kept evicting the pages it reads (321,000 stops to
 * the Debian 6.12 kernel's entry; 113,000 now).
 */
const TLB_BITS = 12;
const TLB_SIZE = 1 << TLB_BITS;
export const TLB_MASK = TLB_SIZE - 1;

/** Cached large-page leaves (a power of two). */
const LARGE_LEAVES = 16;
const LEAF_WRITE = 1, LEAF_NX = 2, LEAF_USER = 4, LEAF_PRIVATE = 8, LEAF_DIRTY = 16;

/** Translation permissions cached per TLB entry. */
const PERM_WRITE = 1, PERM_NX = 2, PERM_DIRTY = 4, PERM_USER = 8, PERM_PRIVATE = 16;

/** Paging-related control state the walker reads; owned by the CPU. */
export interface PagingControl {
  cr0: number;
  cr3Lo: number;
  cr3Hi: number;
  cr4: number;
  efer: number;
  cr2Lo: number;
  cr2Hi: number;
}

/**
 * Where the MMU finds RAM pages for its direct-access cache: the backing bytes
 * of a physical page (null when unbacked) and whether plain reads or writes of
 * it may bypass the memory interface (no write watch, no read tracking, no shared bytes to copy first).
 */
export interface PageSource {
  /** The bytes of a materialised RAM page; null when unbacked or not materialised yet. */
  pageData(pfn: number): DataView | null;
  readonly watched: Uint8Array;
  readonly tracked: Uint8Array;
  /** Per page: 1 when its bytes are shared with another page (written only through the memory, which copies them first). */
  readonly shared: Uint8Array;
  /** The WebAssembly address of a pageData view's bytes, or -1 when they are not in the arena. */
  arenaOffset(data: DataView): number;
  /** Give a page whose bytes lie outside the arena bytes of its own in it (same contents). */
  moveIntoArena(pfn: number): void;
}

/** Observer of translations: SEV's C-bit/RMP model hooks in here without the MMU knowing about SEV. */
export interface TranslationObserver {
  /**
   * Called when a TLB entry is filled: may throw a fault (for example #VC for an
   * unvalidated private page). Returns an offset added to the physical frame:
   * 0, or a view base (a shared mapping of a private page sees ciphertext).
   * `lo`/`hi` is the linear address being translated (for CR2).
   */
  onFill(pa: number, encrypted: boolean, access: number, lo: number, hi: number): number;
  /**
   * Set by onFill when the translation must not be cached (every access to the
   * page must be checked again, e.g. VMPL permissions narrower than the page
   * tables'); the MMU clears it.
   */
  uncacheable: boolean;
}

const CR0_PG = 0x80000000, CR0_WP = 0x10000;
const CR4_LA57 = 0x1000;
const EFER_NXE = 0x800;

/** Page-fault error code bits. */
const PF_P = 1, PF_W = 2, PF_RSVD = 8, PF_ID = 0x10;
/** Entry bit 7: PS in a PDE/PDPTE. */
const PS = 0x80;
/** Address bits 51:32 of an entry, as bits of its high word. */
const ADDR_HI_BITS = 0x000fffff;
/** Bit 63 (NX) in the high word: reserved while EFER.NXE = 0. */
const NX_HI = 0x80000000;
/*
 * Reserved (must-be-zero) bits of the entry's low word by kind (APM vol. 2
 * 5.3.3 and 5.4, figures 5-18..5-25): PML4E/PML5E bits 8:7; 2 MiB PDE bits
 * 20:13 (bit 12 is PAT); 1 GiB PDPTE bits 29:13. A non-leaf PDPTE/PDE and a
 * PTE have none below bit 32.
 */
const TOP_RSVD_LO = 0x180, PDE_2M_RSVD_LO = 0x1fe000, PDPTE_1G_RSVD_LO = 0x3fffe000;

/**
 * 4- and 5-level long-mode page walker with a direct-mapped TLB. Linear
 * addresses arrive as 32-bit halves; physical addresses are plain numbers.
 * The C-bit is stripped from table entries and reported as "encrypted" to
 * the observer; other reserved bits in a present entry raise #PF (RSVD).
 */
export class Mmu {
  /** TLB tags (linear page number, high half); a slot is (vpn ^ hi) & TLB_MASK. */
  readonly tagLo: Int32Array;
  readonly tagHi: Int32Array;
  private readonly frame = new Float64Array(TLB_SIZE);
  private readonly perm = new Uint8Array(TLB_SIZE);
  /** log2 of the size of the page each slot's translation came from (12, 21 or 30), for INVLPG. */
  private readonly slotShift = new Uint8Array(TLB_SIZE);
  /** Whether a slot was filled from a 2 MiB or 1 GiB page since the last full flush. */
  private largeFills = false;
  /**
   * Direct page access per TLB slot, valid exactly while the slot's tag
   * matches: the RAM page behind it when a read (rpage) or write (wpage) that
   * hits this slot needs nothing but the bytes (see Cpu's fast accessors), else
   * null. A write needs a writable, already-dirty translation of a page with
   * no write watch and no read tracking; a read a page without tracking.
   */
  readonly rpage: (DataView | null)[] = new Array<DataView | null>(TLB_SIZE).fill(null);
  readonly wpage: (DataView | null)[] = new Array<DataView | null>(TLB_SIZE).fill(null);
  /**
   * The same for code translated to WebAssembly: the arena address of the
   * page behind rpage/wpage, -1 where that is null or its bytes are not in
   * the arena. With tagLo/tagHi they lie in the arena at `tlbAddress`
   * (tagLo, tagHi, roff, woff, TLB_SIZE int32 each).
   */
  readonly roff: Int32Array;
  readonly woff: Int32Array;
  readonly tlbAddress: number;
  /** Physical page number per slot (for attribute changes), -1 when unbacked. */
  private readonly slotPfn = new Float64Array(TLB_SIZE).fill(-1);
  /**
   * Per physical page filled into the TLB since the last flush: the slot, or
   * -1 when it went into more than one (then any slot may map it). A page
   * filled once is mapped by that slot or by none.
   */
  private readonly filledSlot = new Map<number, number>();
  /** 1 where a slot has no direct page only because its RAM page was not materialised when it was filled. */
  private readonly unmaterialised = new Uint8Array(TLB_SIZE);
  /** Supplies rpage/wpage; without it the direct-access cache stays empty. */
  pages: PageSource | null = null;
  /** Bumped on every flush so that callers caching translations can notice. */
  generation = 0;
  /*
   * Large pages (2 MiB or 1 GiB) recent walks ended in, with what each walk
   * handed to fill(): a TLB miss in another 4 KiB part of one needs no walk.
   * Hardware caches such leaves as well and drops them at the same flushes;
   * an entry is valid while its generation is the current one. Entries are
   * per 2 MiB of linear address (a 1 GiB leaf fills one per 2 MiB used),
   * LARGE_LEAVES of them, so that a copy between two regions (the
   * decompressor's self-copy) keeps both: otherwise every 4 KiB page of it walks.
   */
  private readonly leafGeneration = new Float64Array(LARGE_LEAVES).fill(-1);
  private readonly leafHi = new Int32Array(LARGE_LEAVES);
  /** lo >>> 21 of the 2 MiB the entry was made for. */
  private readonly leafTag = new Int32Array(LARGE_LEAVES);
  /** 21 or 30: the leaf's page size. */
  private readonly leafShift = new Uint8Array(LARGE_LEAVES);
  /** Physical address of the leaf's first byte. */
  private readonly leafFrame = new Float64Array(LARGE_LEAVES);
  /** LEAF_* bits: what the walk passed to fill (writes allowed, NX, user, private, dirty). */
  private readonly leafBits = new Uint8Array(LARGE_LEAVES);
  /** Mask of physical-address bits 63:32 kept from a table entry (C-bit and bits above the physical-address width removed). */
  physHiMask = 0x000fffff;
  /** Physical-address width (MAXPHYADDR): entry bits from here to 51 are reserved, except the C-bit. */
  physAddrBits = 52;
  /** Bit in the high word that marks an encrypted (private) mapping; 0 when SEV is off. */
  cbitHi = 0;
  observer: TranslationObserver | null = null;
  /** The C-bit position as configured (0: none). */
  cbitPosition = 0;

  constructor(
    private readonly ctl: PagingControl,
    private readonly mem: PhysicalMemory,
    private readonly fault: CpuFault,
    arena: WasmArena | null = null,
  ) {
    const bytes = TLB_SIZE * 4;
    const at = arena?.alloc(4 * bytes, 64) ?? { offset: 0, buffer: new ArrayBuffer(4 * bytes) };
    this.tlbAddress = arena === null ? -1 : at.offset;
    this.tagLo = new Int32Array(at.buffer, at.offset, TLB_SIZE).fill(-1);
    this.tagHi = new Int32Array(at.buffer, at.offset + bytes, TLB_SIZE);
    this.roff = new Int32Array(at.buffer, at.offset + 2 * bytes, TLB_SIZE).fill(-1);
    this.woff = new Int32Array(at.buffer, at.offset + 3 * bytes, TLB_SIZE).fill(-1);
  }

  /**
   * Address bits a (lying) hypervisor's nested page tables fold back onto the
   * same memory: paging entries may carry them, they neither address nor are
   * reserved, and the access they make is as shared as its C-bit says.
   */
  aliasHi = 0;

  setAddressAlias(position: number | null): void {
    this.aliasHi = position === null || position < 32 ? 0 : (1 << (position - 32)) >>> 0;
    this.flush();
  }

  /** Configure the C-bit position (>= 32) or disable it with 0. */
  setCbit(position: number): void {
    this.cbitPosition = position >= 32 && position < 64 ? position : 0;
    this.cbitHi = this.cbitPosition !== 0 ? (1 << (position - 32)) >>> 0 : 0;
    this.updatePhysHiMask();
  }

  /** Configure the physical-address width (32..52 bits; 52 by default). */
  setPhysicalAddressWidth(bits: number): void {
    if (!(bits >= 32 && bits <= 52)) throw new RangeError(`physical-address width ${bits} is not in 32..52`);
    this.physAddrBits = bits;
    this.updatePhysHiMask();
  }

  private updatePhysHiMask(): void {
    const width = this.physAddrBits === 52 ? ADDR_HI_BITS : (1 << (this.physAddrBits - 32)) - 1;
    this.physHiMask = (width & ~this.cbitHi) >>> 0;
    this.flush();
  }

  flush(): void {
    this.tagLo.fill(-1);
    this.rpage.fill(null);
    this.wpage.fill(null);
    this.roff.fill(-1);
    this.woff.fill(-1);
    this.filledSlot.clear();
    this.largeFills = false;
    this.generation++;
  }

  /** Recompute the direct-access pointers of every slot mapping pages pfn..pfn + pages - 1 (their watch or tracking changed). */
  pageAttributesChanged(pfn: number, pages = 1): void {
    // Most calls are for a page filled into one slot at most since the last flush: that slot is the only one to look at.
    if (pages <= 64) {
      let unique = true;
      for (let p = pfn; p < pfn + pages && unique; p++) {
        const slot = this.filledSlot.get(p);
        if (slot === undefined) continue;
        if (slot < 0) unique = false;
        else if (this.slotPfn[slot] === p && this.tagLo[slot] !== -1) this.setDirect(slot, p);
      }
      if (unique) return;
    }
    const slotPfn = this.slotPfn, end = pfn + pages;
    for (let i = 0; i < TLB_SIZE; i++) {
      const p = slotPfn[i];
      if (p >= pfn && p < end && this.tagLo[i] !== -1) this.setDirect(i, p);
    }
  }

  /**
   * After a slow-path access in one page: a slot left without a direct page
   * because the page was not materialised at the fill gets it now (the access
   * materialised it).
   */
  refreshDirect(lo: number, hi: number): void {
    const vpn = lo >>> 12;
    const i = (vpn ^ hi) & TLB_MASK;
    if (this.unmaterialised[i] !== 0 && this.tagLo[i] === (vpn | 0) && this.tagHi[i] === (hi | 0)) this.setDirect(i, this.slotPfn[i]);
  }

  private setDirect(slot: number, pfn: number): void {
    const src = this.pages;
    const data = src === null ? null : src.pageData(pfn);
    this.unmaterialised[slot] = data === null && src !== null && src.tracked[pfn] === 0 ? 1 : 0;
    if (data === null || src === null || src.tracked[pfn] !== 0) {
      this.rpage[slot] = null;
      this.wpage[slot] = null;
      this.roff[slot] = -1;
      this.woff[slot] = -1;
      return;
    }
    this.rpage[slot] = data;
    const p = this.perm[slot];
    const writable = src.watched[pfn] === 0 && src.shared[pfn] === 0 && (p & (PERM_WRITE | PERM_DIRTY)) === (PERM_WRITE | PERM_DIRTY);
    this.wpage[slot] = writable ? data : null;
    const off = src.arenaOffset(data);
    this.roff[slot] = off;
    this.woff[slot] = writable ? off : -1;
  }

  /**
   * A block compiled to WebAssembly stopped before an access at this linear
   * address: when the TLB now has a direct page for it whose bytes are not in
   * the arena (a shared or loaded page), move them there, so that the next
   * run reads them in place.
   */
  moveIntoArena(lo: number, hi: number): void {
    const vpn = lo >>> 12;
    const i = (vpn ^ hi) & TLB_MASK;
    if (this.tagLo[i] !== (vpn | 0) || this.tagHi[i] !== (hi | 0) || this.rpage[i] === null || this.roff[i] !== -1) return;
    this.pages?.moveIntoArena(this.slotPfn[i]);
  }

  /** INVLPG: drop the translations of the page (of whatever size) that contains the address. */
  flushPage(lo: number, hi: number): void {
    const vpn = lo >>> 12;
    const i = (vpn ^ hi) & TLB_MASK;
    if (this.tagLo[i] === (vpn | 0) && this.tagHi[i] === (hi | 0)) this.dropSlot(i);
    if (this.largeFills) {
      // Each 4 KiB part of a large page that was used has a slot of its own, anywhere in the TLB.
      const tagLo = this.tagLo, tagHi = this.tagHi, shift = this.slotShift;
      const in2M = vpn >>> 9, in1G = vpn >>> 18;
      for (let s = 0; s < TLB_SIZE; s++) {
        const k = shift[s], t = tagLo[s];
        if (k === 12 || t === -1 || tagHi[s] !== (hi | 0)) continue;
        if (k === 21 ? t >>> 9 === in2M : t >>> 18 === in1G) this.dropSlot(s);
      }
    }
    this.generation++;
  }

  private dropSlot(slot: number): void {
    this.tagLo[slot] = -1;
    this.rpage[slot] = null;
    this.wpage[slot] = null;
    this.roff[slot] = -1;
    this.woff[slot] = -1;
  }

  /**
   * Linear to physical. Throws the CPU's fault object (#PF with CR2, or #GP
   * for a non-canonical address) on failure.
   */
  translate(lo: number, hi: number, access: number): number {
    const vpn = lo >>> 12;
    const i = (vpn ^ hi) & TLB_MASK;
    if (this.tagLo[i] === (vpn | 0) && this.tagHi[i] === (hi | 0)) {
      const p = this.perm[i];
      if (access === ACCESS_READ || (access === ACCESS_WRITE && (p & (PERM_WRITE | PERM_DIRTY)) === (PERM_WRITE | PERM_DIRTY)) ||
        (access === ACCESS_EXEC && (p & PERM_NX) === 0)) {
        return this.frame[i] + (lo & 0xfff);
      }
    }
    return this.walk(lo, hi, access, i);
  }

  private walk(lo: number, hi: number, access: number, slot: number): number {
    const ctl = this.ctl;
    if ((ctl.cr0 & CR0_PG) === 0) {
      // Paging off (32-bit boot code): linear is physical, every page writable and executable. Under SEV every
      // such access is private: the decompressor's C-bit check writes with paging off and reads it back encrypted.
      return this.fill(slot, lo, hi, (lo & 0xfffff000) >>> 0, 12, access, true, true, false, this.cbitHi !== 0, true);
    }
    // Another 4 KiB part of a large page a recent walk ended in: what that walk found, without walking again.
    const e = ((lo >>> 21) ^ hi) & (LARGE_LEAVES - 1);
    if (this.leafGeneration[e] === this.generation && this.leafTag[e] === lo >>> 21 && this.leafHi[e] === (hi | 0)) {
      const bits = this.leafBits[e];
      if (access === ACCESS_READ || (access === ACCESS_WRITE ? (bits & (LEAF_WRITE | LEAF_DIRTY)) === (LEAF_WRITE | LEAF_DIRTY) : (bits & LEAF_NX) === 0)) {
        const shift = this.leafShift[e];
        return this.fill(slot, lo, hi, this.leafFrame[e] + (shift === 21 ? lo & 0x1ff000 : lo & 0x3ffff000), shift, access,
          (bits & LEAF_WRITE) !== 0, (bits & LEAF_USER) !== 0, (bits & LEAF_NX) !== 0, (bits & LEAF_PRIVATE) !== 0, (bits & LEAF_DIRTY) !== 0);
      }
    }
    const la57 = (ctl.cr4 & CR4_LA57) !== 0;
    // Canonical check: bits 63..47 (or 63..56) must equal the top implemented bit.
    const top = la57 ? hi >> 24 : hi >> 15;
    if (top !== 0 && top !== -1) return this.raiseGp();
    const mem = this.mem;
    const nxe = (ctl.efer & EFER_NXE) !== 0;
    // Reserved in every entry: address bits above the physical-address width (the C-bit is not one), and NX without EFER.NXE.
    const rsvdHi = ((ADDR_HI_BITS & ~this.physHiMask & ~this.cbitHi & ~this.aliasHi) | (nxe ? 0 : NX_HI)) >>> 0;
    const addrHi = (this.physHiMask & ~this.aliasHi) >>> 0;
    let tableLo = (ctl.cr3Lo & 0xfffff000) >>> 0;
    let tableHi = ctl.cr3Hi & addrHi;
    let writable = true, user = true, nx = false, encrypted = false;
    const levels = la57 ? 5 : 4;
    let pageSizeLog = 12;
    let entryPa = 0, entryLo = 0, entryHi = 0;
    for (let level = levels; level >= 1; level--) {
      let index: number;
      switch (level) {
        case 5: index = (hi >>> 16) & 0x1ff; break;
        case 4: index = (hi >>> 7) & 0x1ff; break;
        case 3: index = ((hi & 0x7f) << 2) | (lo >>> 30); break;
        case 2: index = (lo >>> 21) & 0x1ff; break;
        default: index = (lo >>> 12) & 0x1ff; break;
      }
      entryPa = tableHi * 4294967296 + tableLo + index * 8;
      entryLo = mem.read32(entryPa);
      entryHi = mem.read32(entryPa + 4);
      if ((entryLo & 1) === 0) return this.raisePf(lo, hi, access, 0);
      const large = (level === 3 || level === 2) && (entryLo & PS) !== 0;
      const rsvdLo = level >= 4 ? TOP_RSVD_LO : !large ? 0 : level === 2 ? PDE_2M_RSVD_LO : PDPTE_1G_RSVD_LO;
      if ((entryLo & rsvdLo) !== 0 || (entryHi & rsvdHi) !== 0) return this.raisePf(lo, hi, access, PF_P | PF_RSVD);
      if ((entryLo & 2) === 0) writable = false;
      if ((entryLo & 4) === 0) user = false;
      if ((entryHi & 0x80000000) !== 0 && nxe) nx = true;
      if (this.cbitHi !== 0 && (entryHi & this.cbitHi) !== 0) encrypted = true;
      else if (this.cbitHi !== 0) encrypted = false;
      // Accessed bit.
      if ((entryLo & 0x20) === 0) mem.write32(entryPa, (entryLo | 0x20) >>> 0);
      tableLo = (entryLo & 0xfffff000) >>> 0;
      tableHi = entryHi & addrHi;
      if (large) {
        pageSizeLog = level === 3 ? 30 : 21;
        break;
      }
    }
    const wp = (ctl.cr0 & CR0_WP) !== 0;
    if (access === ACCESS_WRITE && !writable && wp) return this.raisePf(lo, hi, access, PF_P);
    if (access === ACCESS_EXEC && nx) return this.raisePf(lo, hi, access, PF_P);
    // Dirty bit on the leaf when writing.
    const leafLo = entryLo;
    if (access === ACCESS_WRITE && (leafLo & 0x40) === 0) mem.write32(entryPa, (mem.read32(entryPa) | 0x60) >>> 0);
    // Frame base: leaf address bits above the page size, plus the offset bits of the linear address inside a large page.
    const dirty = access === ACCESS_WRITE || (leafLo & 0x40) !== 0;
    let frame: number;
    if (pageSizeLog === 12) {
      frame = tableHi * 4294967296 + (tableLo >>> 0);
    } else {
      const base = tableHi * 4294967296 + ((tableLo & (pageSizeLog === 21 ? 0xffe00000 : 0xc0000000)) >>> 0);
      frame = base + (pageSizeLog === 21 ? lo & 0x1ff000 : lo & 0x3ffff000);
      const e = ((lo >>> 21) ^ hi) & (LARGE_LEAVES - 1);
      this.leafGeneration[e] = this.generation;
      this.leafHi[e] = hi;
      this.leafTag[e] = lo >>> 21;
      this.leafShift[e] = pageSizeLog;
      this.leafFrame[e] = base;
      this.leafBits[e] = (writable || !wp ? LEAF_WRITE : 0) | (nx ? LEAF_NX : 0) | (user ? LEAF_USER : 0) | (encrypted ? LEAF_PRIVATE : 0) | (dirty ? LEAF_DIRTY : 0);
    }
    return this.fill(slot, lo, hi, frame, pageSizeLog, access, writable || !wp, user, nx, encrypted, dirty);
  }

  /** Put a translation in TLB slot `slot` (after the observer has seen it) and return the physical address. */
  private fill(slot: number, lo: number, hi: number, frame: number, pageSizeLog: number, access: number,
    writable: boolean, user: boolean, nx: boolean, encrypted: boolean, dirty: boolean): number {
    let cacheable = true;
    if (this.observer !== null) {
      frame += this.observer.onFill(frame, encrypted, access, lo, hi);
      if (this.observer.uncacheable) {
        this.observer.uncacheable = false;
        cacheable = false;
      }
    }
    this.tagLo[slot] = lo >>> 12;
    this.tagHi[slot] = hi;
    this.frame[slot] = frame;
    let p = 0;
    if (writable) p |= PERM_WRITE;
    if (nx) p |= PERM_NX;
    if (dirty) p |= PERM_DIRTY;
    if (user) p |= PERM_USER;
    if (encrypted) p |= PERM_PRIVATE;
    this.perm[slot] = p;
    this.slotShift[slot] = pageSizeLog;
    if (pageSizeLog !== 12) this.largeFills = true;
    const pfn = Math.floor(frame / 4096);
    this.slotPfn[slot] = pfn;
    const before = this.filledSlot.get(pfn);
    if (before !== slot) this.filledSlot.set(pfn, before === undefined ? slot : -1);
    this.setDirect(slot, pfn);
    if (!cacheable) this.tagLo[slot] = -1;
    return frame + (lo & 0xfff);
  }

  /** Whether the last-filled translation for this linear page was private (C=1). */
  isPrivate(lo: number, hi: number): boolean {
    const vpn = lo >>> 12;
    const i = (vpn ^ hi) & TLB_MASK;
    return this.tagLo[i] === (vpn | 0) && this.tagHi[i] === (hi | 0) && (this.perm[i] & PERM_PRIVATE) !== 0;
  }

  /** #PF with CR2; `cause` holds the P and RSVD bits of the error code, the access adds W/R and I/D. */
  private raisePf(lo: number, hi: number, access: number, cause: number): never {
    this.ctl.cr2Lo = lo >>> 0;
    this.ctl.cr2Hi = hi >>> 0;
    const f = this.fault;
    f.vector = 14;
    f.errorCode = cause | (access === ACCESS_WRITE ? PF_W : 0) | (access === ACCESS_EXEC ? PF_ID : 0);
    f.hasErrorCode = true;
    throw f;
  }

  private raiseGp(): never {
    const f = this.fault;
    f.vector = 13;
    f.errorCode = 0;
    f.hasErrorCode = true;
    throw f;
  }
}
