/**
 * One machine's WebAssembly memory: RAM pages, the CPU's registers and its
 * TLB live here, so that code translated to WebAssembly reads and writes them
 * in place while JavaScript keeps its typed-array views. The memory is
 * shared, because growing a shared memory leaves every view made before
 * valid (a plain one would detach them all).
 */
const WASM_PAGE = 65536;
/** The largest memory WebAssembly allows (4 GiB), reserved but not committed. */
const MAX_WASM_PAGES = 65536;

export class WasmArena {
  /** 512 KiB at first: the CPU's registers, TLB and trace ring and the first slab of pages without growing. */
  readonly memory = new WebAssembly.Memory({ initial: 8, maximum: MAX_WASM_PAGES, shared: true });
  /** Bytes handed out so far. */
  private top = 0;
  /** Every buffer object the memory has returned (each growth makes a new one over the same bytes). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  constructor() {
    this.buffers.add(this.memory.buffer);
  }

  /** `bytes` zeroed bytes aligned to `align` (a power of two): their offset and the buffer that covers them. */
  alloc(bytes: number, align = 8): { offset: number; buffer: ArrayBufferLike } {
    const offset = (this.top + align - 1) & -align;
    const end = offset + bytes;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      // Grow by at least a quarter of what there is: a few growths for a whole run.
      const need = Math.ceil((end - have) / WASM_PAGE);
      this.memory.grow(Math.min(MAX_WASM_PAGES - have / WASM_PAGE, Math.max(need, Math.ceil(have / WASM_PAGE / 4), 16)));
    }
    this.top = end;
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return { offset, buffer };
  }

  /** Whether a view's bytes are this memory's (then its byteOffset is their WebAssembly address). */
  owns(buffer: ArrayBufferLike): boolean {
    return this.buffers.has(buffer);
  }
}
