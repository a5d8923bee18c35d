import type { PageAccessListener, PageWriteListener, PhysicalMemory } from './physical-memory.js';
import { poisonPage, type PoisonPolicy } from './poison.js';
import { WasmArena } from './wasm-arena.js';

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
/**
 * Physical addresses from here on are a read-only "ciphertext view" of RAM:
 * byte (BASE + pa) reads as a deterministic scramble of byte pa, tweaked by
 * its address, the way a shared (C=0) access to private SEV memory sees it.
 */
export const CIPHERTEXT_VIEW_BASE = 2 ** 40;
const PAGE_MASK = PAGE_SIZE - 1;
const DIR_SHIFT = 9;
const DIR_PAGES = 1 << DIR_SHIFT;
const DIR_MASK = DIR_PAGES - 1;

/**
 * The RAM bytes somebody wrote, as a snapshot keeps them: restoring applies a
 * run's own poison to every byte nobody wrote, so one snapshot serves runs
 * that differ only in uninitialized memory.
 */
export interface MemoryImage {
  readonly size: number;
  /** Page contents by page number (bytes nobody wrote are overwritten by poison on restore). */
  readonly pages: ReadonlyMap<number, Uint8Array>;
  /** Pages written only in part: 1 per byte that was written. Pages not here were written whole. */
  readonly partial: ReadonlyMap<number, Uint8Array>;
}

/** The recording mask of a page written whole: shared by all such pages, never written. */
const WHOLE_PAGE_WRITTEN = new Uint8Array(PAGE_SIZE).fill(1);
/** Pages allocated together (RAM pages live as long as their machine). */
const SLAB_PAGES = 64;

/**
 * RAM as lazily materialised 4 KiB pages. Reads of unbacked addresses return
 * all-ones (like an empty bus); writes there are dropped.
 */
export class SparseMemory implements PhysicalMemory {
  private slab: Uint8Array = new Uint8Array(0);
  private slabUsed = SLAB_PAGES;
  private arenaMemory: WasmArena | null = null;
  readonly size: number;
  /**
   * Materialised pages in a two-level directory (DIR_PAGES pages per leaf,
   * leaves made on first touch): a machine costs next to nothing to create
   * however large its RAM, which fuzz campaigns that build one per run need.
   */
  private readonly pages: (Array<Uint8Array | undefined> | undefined)[];
  /** DataViews of materialised pages, made on first direct access (same directory shape). */
  private readonly views: (Array<DataView | undefined> | undefined)[];
  private readonly pageCount: number;
  /** Per page: 1 when someone cares about writes (decoded code lives there). */
  readonly watched: Uint8Array;
  private listener: PageWriteListener | null = null;
  private accessListener: PageAccessListener | null = null;
  /** Per page: 1 when reads of never-written bytes are reported (uninitialized-read detection). */
  readonly tracked: Uint8Array;
  /**
   * Per page: 1 when its bytes may also be another page's, a snapshot's or a
   * loaded file's (a whole-page copy, a restored page, the kernel image):
   * they are copied before the page's first write. Moving a page's worth of
   * bytes then costs no host memory, which is most of what the decompressor's
   * self-copy and a snapshot restore used to spend.
   */
  readonly shared: Uint8Array;
  /** For tracked pages: 1 per byte once something wrote it. */
  private readonly written = new Map<number, Uint8Array>();

  /** Per page, 1 per byte written while recording (firmware set-up); kept after the recording ends, for snapshots. */
  private recorded: Map<number, Uint8Array> | null = null;
  /** Whether writes are being recorded now. */
  private recording = false;

  /**
   * `base`: a snapshot's contents, copied into each page when it is first
   * touched (copy on access, so a short run copies only the pages it uses).
   */
  constructor(size: number, private readonly poison: PoisonPolicy, private readonly base: MemoryImage | null = null) {
    if (size % PAGE_SIZE !== 0 || size <= 0 || size > 0x100000000) {
      throw new Error('memory size must be a positive multiple of 4 KiB, at most 4 GiB');
    }
    this.size = size;
    this.pageCount = size / PAGE_SIZE;
    this.pages = new Array(Math.ceil(this.pageCount / DIR_PAGES));
    this.views = new Array(this.pages.length);
    this.watched = new Uint8Array(size / PAGE_SIZE);
    this.tracked = new Uint8Array(size / PAGE_SIZE);
    this.shared = new Uint8Array(size / PAGE_SIZE);
    if (base !== null && base.size !== size) throw new RangeError('memory image is for a different RAM size');
  }

  /** Start remembering which bytes are written (before the machine's entry state is built). */
  recordWrites(): void {
    this.recorded = new Map();
    this.recording = true;
  }

  /** Stop recording (the entry state is built); what was recorded stays available to writtenImage() and recordedPages(). */
  stopRecording(): void {
    this.recording = false;
  }

  /** Page numbers written since recordWrites() (launch-populated pages), ascending. */
  recordedPages(): number[] {
    return [...(this.recorded?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** What was written while recording, copied: the memory part of a snapshot. */
  writtenImage(): MemoryImage {
    const recorded = this.recorded;
    if (recorded === null) throw new Error('writtenImage() needs recordWrites() first');
    const pages = new Map<number, Uint8Array>();
    const partial = new Map<number, Uint8Array>();
    for (const [pfn, mask] of recorded) {
      pages.set(pfn, this.page(pfn).slice());
      if (mask.indexOf(0) >= 0) partial.set(pfn, mask.slice());
    }
    return { size: this.size, pages, partial };
  }

  private record(pa: number, length: number): void {
    const pfn = pa >>> PAGE_SHIFT;
    let mask = this.recorded!.get(pfn);
    if (mask === WHOLE_PAGE_WRITTEN) return;
    const o = pa & PAGE_MASK;
    if (mask === undefined) {
      // A page written whole (the kernel image, mostly) shares one all-ones mask instead of its own.
      if (o === 0 && length >= PAGE_SIZE) {
        this.recorded!.set(pfn, WHOLE_PAGE_WRITTEN);
        return;
      }
      this.recorded!.set(pfn, (mask = new Uint8Array(PAGE_SIZE)));
    }
    mask.fill(1, o, Math.min(PAGE_SIZE, o + length));
  }

  /** Start reporting reads of bytes in [pa, pa + length) that nobody has written since. */
  trackUninitialized(pa: number, length: number): void {
    // The masks of pages not tracked yet come from one allocation: a fuzz run tracks hundreds of pages.
    let fresh = 0;
    for (let pfn = pa >>> PAGE_SHIFT; pfn <= (pa + length - 1) >>> PAGE_SHIFT && pfn < this.tracked.length; pfn++) {
      if (!this.written.has(pfn)) fresh++;
    }
    // Bytes outside the requested range count as written (not ours to judge).
    const masks = new Uint8Array(fresh * PAGE_SIZE).fill(1);
    let used = 0;
    for (let a = pa; a < pa + length; ) {
      const pfn = a >>> PAGE_SHIFT;
      const o = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - o, pa + length - a);
      if (pfn >= this.tracked.length) break;
      let w = this.written.get(pfn);
      if (w === undefined) {
        w = masks.subarray(used * PAGE_SIZE, ++used * PAGE_SIZE);
        this.written.set(pfn, w);
      }
      w.fill(0, o, o + n);
      this.tracked[pfn] = 1;
      a += n;
    }
    // One look through the TLB for the whole range, not one per page.
    const first = pa >>> PAGE_SHIFT;
    const last = Math.min((pa + length - 1) >>> PAGE_SHIFT, this.tracked.length - 1);
    if (length > 0 && last >= first) this.accessListener?.(first, last - first + 1);
  }

  /** How many of `size` bytes at pa (inside one tracked page) were never written; 0 when all were. */
  unwrittenBytes(pa: number, size: number): number {
    const w = this.written.get(pa >>> PAGE_SHIFT);
    if (w === undefined) return 0;
    const o = pa & PAGE_MASK;
    let n = 0;
    for (let k = 0; k < size && o + k < PAGE_SIZE; k++) if (w[o + k] === 0) n++;
    return n;
  }

  private markWritten(pa: number, length: number): void {
    const w = this.written.get(pa >>> PAGE_SHIFT);
    if (w === undefined) return;
    const o = pa & PAGE_MASK;
    w.fill(1, o, Math.min(PAGE_SIZE, o + length));
  }

  setWriteListener(listener: PageWriteListener | null): void {
    this.listener = listener;
  }

  /**
   * Told the page numbers whenever what a direct view of a page may do
   * changes: its read tracking starts (a range at once), it becomes shared,
   * or it gets new bytes (caches of direct page access must fetch its view
   * again).
   */
  setAccessListener(listener: PageAccessListener | null): void {
    this.accessListener = listener;
  }

  /**
   * A view of page `pfn` for direct access; null when the page is not
   * backed or not materialised yet (it is not materialised here: a page
   * about to be overwritten whole need not be poisoned first). Writing
   * through it bypasses the write watch, the uninitialized-read tracking and
   * the copy of a shared page: only for pages with none of them.
   */
  pageData(pfn: number): DataView | null {
    if (pfn < 0 || pfn >= this.pageCount) return null;
    let leaf = this.views[pfn >>> DIR_SHIFT];
    if (leaf === undefined) this.views[pfn >>> DIR_SHIFT] = leaf = new Array(DIR_PAGES);
    let v = leaf[pfn & DIR_MASK];
    if (v === undefined) {
      const p = this.pages[pfn >>> DIR_SHIFT]?.[pfn & DIR_MASK];
      if (p === undefined) return null;
      v = new DataView(p.buffer, p.byteOffset, PAGE_SIZE);
      leaf[pfn & DIR_MASK] = v;
    }
    return v;
  }

  /** The backing page for reading an in-range physical page number, materialised on demand. */
  private page(pfn: number): Uint8Array {
    let leaf = this.pages[pfn >>> DIR_SHIFT];
    if (leaf === undefined) this.pages[pfn >>> DIR_SHIFT] = leaf = new Array(DIR_PAGES);
    let p = leaf[pfn & DIR_MASK];
    if (p === undefined) {
      const saved = this.base?.pages.get(pfn);
      if (saved === undefined) poisonPage(this.poison, pfn, (p = this.freshPage()));
      else {
        const written = this.base!.partial.get(pfn);
        if (written === undefined) {
          // Restored whole: the snapshot's own bytes, until the run writes the page.
          p = saved;
          this.shared[pfn] = 1;
        } else {
          poisonPage(this.poison, pfn, (p = this.freshPage()));
          for (let i = 0; i < PAGE_SIZE; i++) if (written[i] !== 0) p[i] = saved[i];
        }
      }
      leaf[pfn & DIR_MASK] = p;
    }
    return p;
  }

  /** The backing page for writing: a shared page gets bytes of its own first. */
  private writablePage(pfn: number): Uint8Array {
    const p = this.page(pfn);
    if (this.shared[pfn] === 0) return p;
    const own = this.freshPage();
    own.set(p);
    this.replacePage(pfn, own, 0);
    return own;
  }

  /** Make `bytes` the contents of materialised or not page `pfn`; direct views of its old bytes are dropped. */
  private replacePage(pfn: number, bytes: Uint8Array, shared: number): void {
    const leaf = (this.pages[pfn >>> DIR_SHIFT] ??= new Array(DIR_PAGES));
    const had = leaf[pfn & DIR_MASK] !== undefined;
    leaf[pfn & DIR_MASK] = bytes;
    const views = this.views[pfn >>> DIR_SHIFT];
    if (views !== undefined) views[pfn & DIR_MASK] = undefined;
    this.shared[pfn] = shared;
    if (had) this.accessListener?.(pfn, 1);
  }

  /** Let page `pfn` refer to `bytes` (a page's worth nobody writes in place) until it is written. */
  private sharePage(pfn: number, bytes: Uint8Array): void {
    this.replacePage(pfn, bytes, 1);
  }

  /** Unbacked addresses float high; the ciphertext view scrambles the plaintext. */
  private unbackedRead(pa: number): number {
    const plain = pa - CIPHERTEXT_VIEW_BASE;
    if (plain < 0 || plain >= this.size) return 0xff;
    const b = this.page(plain >>> PAGE_SHIFT)[plain & PAGE_MASK];
    let x = Math.imul((plain >>> 4) ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 1, 0xc2b2ae35);
    x ^= x >>> 15;
    x = Math.imul(x, 0x2c1b3c6d);
    return ((x >>> 16) ^ (plain & 0xf) * 0x3b) & 0xff;
  }

  isBacked(pa: number): boolean {
    return pa >= 0 && pa < this.size;
  }

  /** After a write of `length` bytes at pa within one page. */
  private wrote(pa: number, length: number): void {
    const pfn = pa >>> PAGE_SHIFT;
    if (this.recording) this.record(pa, length);
    if (this.tracked[pfn] !== 0) this.markWritten(pa, length);
    if (this.watched[pfn] !== 0 && this.listener !== null) this.listener(pfn);
  }

  read8(pa: number): number {
    if (pa >= this.size) return this.unbackedRead(pa);
    return this.page(pa >>> PAGE_SHIFT)[pa & PAGE_MASK];
  }

  read16(pa: number): number {
    const o = pa & PAGE_MASK;
    if (pa + 1 < this.size && o <= PAGE_SIZE - 2) {
      const p = this.page(pa >>> PAGE_SHIFT);
      return p[o] | (p[o + 1] << 8);
    }
    return this.read8(pa) | (this.read8(pa + 1) << 8);
  }

  read32(pa: number): number {
    const o = pa & PAGE_MASK;
    if (pa + 3 < this.size && o <= PAGE_SIZE - 4) {
      const p = this.page(pa >>> PAGE_SHIFT);
      return (p[o] | (p[o + 1] << 8) | (p[o + 2] << 16) | (p[o + 3] << 24)) >>> 0;
    }
    return (this.read8(pa) | (this.read8(pa + 1) << 8) | (this.read8(pa + 2) << 16) | (this.read8(pa + 3) << 24)) >>> 0;
  }

  write8(pa: number, value: number): void {
    if (pa >= this.size) return;
    this.writablePage(pa >>> PAGE_SHIFT)[pa & PAGE_MASK] = value;
    this.wrote(pa, 1);
  }

  write16(pa: number, value: number): void {
    const o = pa & PAGE_MASK;
    if (pa + 1 < this.size && o <= PAGE_SIZE - 2) {
      const pfn = pa >>> PAGE_SHIFT;
      const p = this.writablePage(pfn);
      p[o] = value;
      p[o + 1] = value >>> 8;
      this.wrote(pa, 2);
      return;
    }
    this.write8(pa, value);
    this.write8(pa + 1, value >>> 8);
  }

  write32(pa: number, value: number): void {
    const o = pa & PAGE_MASK;
    if (pa + 3 < this.size && o <= PAGE_SIZE - 4) {
      const pfn = pa >>> PAGE_SHIFT;
      const p = this.writablePage(pfn);
      p[o] = value;
      p[o + 1] = value >>> 8;
      p[o + 2] = value >>> 16;
      p[o + 3] = value >>> 24;
      this.wrote(pa, 4);
      return;
    }
    for (let i = 0; i < 4; i++) this.write8(pa + i, value >>> (8 * i));
  }

  readBytes(pa: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const a = pa + done;
      const o = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - o, length - done);
      if (a >= this.size) {
        // Beyond RAM: byte by byte through the same model as read8 (empty bus, or the ciphertext view).
        for (let k = done; k < length; k++) out[k] = this.unbackedRead(pa + k);
        break;
      }
      out.set(this.page(a >>> PAGE_SHIFT).subarray(o, o + n), done);
      done += n;
    }
    return out;
  }

  writeBytes(pa: number, data: Uint8Array): void {
    this.put(pa, data, false);
  }

  /**
   * writeBytes for bytes that never change afterwards (a kernel file): whole
   * pages refer to `data` itself until the guest writes them.
   */
  writeImage(pa: number, data: Uint8Array): void {
    this.put(pa, data, true);
  }

  private put(pa: number, data: Uint8Array, share: boolean): void {
    let done = 0;
    while (done < data.length) {
      const a = pa + done;
      const o = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - o, data.length - done);
      if (a < this.size) {
        const pfn = a >>> PAGE_SHIFT;
        if (n !== PAGE_SIZE) this.writablePage(pfn).set(data.subarray(done, done + n), o);
        else if (share) this.sharePage(pfn, data.subarray(done, done + PAGE_SIZE));
        else this.pageToOverwrite(pfn).set(data.subarray(done, done + PAGE_SIZE));
        this.wrote(a, n);
      }
      done += n;
    }
  }

  /** A zeroed page from the current slab: one allocation per SLAB_PAGES pages instead of one per page. */
  private freshPage(): Uint8Array {
    if (this.slabUsed === SLAB_PAGES) {
      this.slab = this.arenaSlab() ?? new Uint8Array(SLAB_PAGES * PAGE_SIZE);
      this.slabUsed = 0;
    }
    return this.slab.subarray(this.slabUsed * PAGE_SIZE, ++this.slabUsed * PAGE_SIZE);
  }

  /**
   * Where fresh pages come from once a CPU compiling blocks to WebAssembly
   * asked for it (with its registers, TLB and trace ring), made on first use:
   * a machine that never compiles to WebAssembly (a fuzz run) has none.
   */
  get arena(): WasmArena {
    return (this.arenaMemory ??= new WasmArena());
  }

  /** A slab in the arena (none without one); null once the arena cannot grow (its 4 GiB are used: pages then live outside it). */
  private arenaSlab(): Uint8Array | null {
    if (this.arenaMemory === null) return null;
    try {
      const { offset, buffer } = this.arena.alloc(SLAB_PAGES * PAGE_SIZE, PAGE_SIZE);
      return new Uint8Array(buffer, offset, SLAB_PAGES * PAGE_SIZE);
    } catch (e) {
      if (e instanceof RangeError) return null;
      throw e;
    }
  }

  /**
   * The WebAssembly address of the bytes a direct view `data` of a page
   * covers (from pageData), or -1 when they are not in the arena.
   */
  arenaOffset(data: DataView): number {
    return this.arenaMemory !== null && this.arenaMemory.owns(data.buffer) ? data.byteOffset : -1;
  }

  /**
   * Give page `pfn` bytes of its own in the arena when its bytes lie outside
   * it (a loaded file's, a snapshot's, or a page it shares with), so that
   * code translated to WebAssembly can read it in place. The contents are
   * unchanged; direct views of the old bytes are dropped.
   */
  moveIntoArena(pfn: number): void {
    const p = this.pages[pfn >>> DIR_SHIFT]?.[pfn & DIR_MASK];
    if (p === undefined || this.arenaMemory === null || this.arenaMemory.owns(p.buffer)) return;
    const own = this.freshPage();
    if (!this.arena.owns(own.buffer)) return; // the arena is full
    own.set(p);
    this.replacePage(pfn, own, 0);
  }

  /** A page about to be overwritten whole: a fresh one is not poisoned first, a shared one not copied. */
  private pageToOverwrite(pfn: number): Uint8Array {
    const p = this.pages[pfn >>> DIR_SHIFT]?.[pfn & DIR_MASK];
    if (p !== undefined && this.shared[pfn] === 0) return p;
    const fresh = this.freshPage();
    this.replacePage(pfn, fresh, 0);
    return fresh;
  }

  fill(pa: number, length: number, byte: number): void {
    let done = 0;
    while (done < length) {
      const a = pa + done;
      const o = a & PAGE_MASK;
      const n = Math.min(PAGE_SIZE - o, length - done);
      if (a < this.size) {
        const pfn = a >>> PAGE_SHIFT;
        (n === PAGE_SIZE ? this.pageToOverwrite(pfn) : this.writablePage(pfn)).fill(byte, o, o + n);
        this.wrote(a, n);
      }
      done += n;
    }
  }

  copy(dst: number, src: number, length: number): void {
    if (length <= 0) return;
    const so = src & PAGE_MASK, d = dst & PAGE_MASK;
    if (so + length <= PAGE_SIZE && d + length <= PAGE_SIZE && src + length <= this.size && dst + length <= this.size) {
      // Within one page on each side (what REP MOVS hands over): TypedArray.set copies as if through a temporary, overlap included.
      const from = this.page(src >>> PAGE_SHIFT);
      if (d === 0 && so === 0 && length === PAGE_SIZE) {
        // A whole page: both pages refer to the same bytes until either is written.
        if (src !== dst) {
          if (this.shared[src >>> PAGE_SHIFT] === 0) {
            this.shared[src >>> PAGE_SHIFT] = 1;
            this.accessListener?.(src >>> PAGE_SHIFT, 1);
          }
          this.sharePage(dst >>> PAGE_SHIFT, from);
        }
        // A page copied onto itself is still written (uninitialized-read tracking, the decode cache), as before sharing.
        this.wrote(dst, length);
        return;
      }
      const to = this.writablePage(dst >>> PAGE_SHIFT);
      to.set(from.subarray(so, so + length), d);
      this.wrote(dst, length);
      return;
    }
    // Overlap-safe: go through a temporary.
    const data = this.readBytes(src, length);
    this.writeBytes(dst, data);
  }

  /** Pages materialised so far (snapshots, reports). */
  materialisedPages(): number[] {
    const out: number[] = [];
    this.pages.forEach((leaf, d) => {
      leaf?.forEach((p, i) => {
        if (p !== undefined) out.push(d * DIR_PAGES + i);
      });
    });
    return out;
  }
}
