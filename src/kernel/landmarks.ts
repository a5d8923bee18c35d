/**
 * Structural landmarks in a compressed vmlinux flat image (startup_32 at
 * offset 0), found from the instruction sequences head_64.S has used since
 * the 64-bit boot protocol existed, so that bare bzImages without symbols
 * can still be followed:
 *
 *   startup_64:   movl BP_init_size(%rsi),%ebx ; subl $_end,%ebx      (8b 9e 60 02 00 00 | 81 eb imm32)
 *   .Lrelocated:  ... rep stosq (clear .bss) ... call extract_kernel  ;
 *                 movq %r15,%rsi ; jmp *%rax                         (4c 89 fe | ff e0)
 */
export interface Landmarks {
  /** Image offset of startup_64 (0x200 by boot-protocol contract). */
  startup64: number;
  /** `_end` of the compressed image, from startup_64's relocation arithmetic. */
  end: number | null;
  /**
   * Offset of the instruction after `addq %rbp,%rbx` that completes that
   * arithmetic: there RBX holds where the decompressor will move itself, as its
   * own compiled-in logic decided (whatever the setup header claims).
   */
  relocComputed: number | null;
  /** Offset of the `rep stosq` that clears .bss at .Lrelocated. */
  bssClear: number | null;
  /** `_bss` and `_ebss`, from the two RIP-relative LEAs that set up that clear (lea _bss(%rip),%rdi; lea _ebss(%rip),%rcx). */
  bss: { start: number; end: number } | null;
  /** Offset of the call to extract_kernel, and its target. */
  extractKernelCall: number | null;
  extractKernel: number | null;
  /** Offset of the final `jmp *%rax` into the decompressed kernel. */
  kernelJump: number | null;
}

/** First offset i in [from, to - pattern.length] where pattern occurs, or -1 (native search: images are ~12 MB). */
function find(image: Uint8Array, pattern: number[], from = 0, to = image.length): number {
  return bytesOf(image).subarray(0, Math.max(0, to)).indexOf(Buffer.from(pattern), from);
}

/** Last offset i with i + pattern.length <= to where pattern occurs, or -1. */
function findLast(image: Uint8Array, pattern: number[], to: number): number {
  return bytesOf(image).subarray(0, Math.max(0, to)).lastIndexOf(Buffer.from(pattern));
}

function bytesOf(image: Uint8Array): Buffer {
  return Buffer.from(image.buffer, image.byteOffset, image.byteLength);
}

function readI32(image: Uint8Array, at: number): number {
  return image[at] | (image[at + 1] << 8) | (image[at + 2] << 16) | (image[at + 3] << 24);
}

export function findLandmarks(image: Uint8Array): Landmarks {
  const startup64 = 0x200;
  let end: number | null = null;
  const initSizeLoad = find(image, [0x8b, 0x9e, 0x60, 0x02, 0x00, 0x00, 0x81, 0xeb], startup64, Math.min(image.length, startup64 + 0x400));
  if (initSizeLoad >= 0) end = readI32(image, initSizeLoad + 8) >>> 0;
  const add = initSizeLoad + 12;
  const relocComputed = initSizeLoad >= 0 && image[add] === 0x48 && image[add + 1] === 0x01 && image[add + 2] === 0xeb ? add + 3 : null;

  // The final jump: mov %r15,%rsi; jmp *%rax, right after `call extract_kernel` (e8 rel32).
  let kernelJump: number | null = null;
  let extractKernelCall: number | null = null;
  let extractKernel: number | null = null;
  let at = 0;
  for (;;) {
    const j = find(image, [0x4c, 0x89, 0xfe, 0xff, 0xe0], at);
    if (j < 0) break;
    if (j >= 5 && image[j - 5] === 0xe8) {
      kernelJump = j + 3;
      extractKernelCall = j - 5;
      extractKernel = j + readI32(image, j - 4);
      break;
    }
    at = j + 1;
  }
  // The .bss clear: the last `rep stosq` (f3 48 ab) before the extract_kernel call.
  let bssClear: number | null = null;
  if (extractKernelCall !== null) {
    const k = findLast(image, [0xf3, 0x48, 0xab], extractKernelCall);
    if (k >= 0) bssClear = k;
  }
  return { startup64, end, relocComputed, bssClear, bss: bssBounds(image, bssClear), extractKernelCall, extractKernel, kernelJump };
}

/** The operands of the LEAs just before the .bss clear: lea rel32(%rip),%rdi (48 8d 3d) and ...,%rcx (48 8d 0d). */
function bssBounds(image: Uint8Array, bssClear: number | null): { start: number; end: number } | null {
  if (bssClear === null) return null;
  let start = -1, end = -1;
  for (let at = bssClear - 7; at >= Math.max(0, bssClear - 40); at--) {
    if (image[at] !== 0x48 || image[at + 1] !== 0x8d) continue;
    const target = at + 7 + readI32(image, at + 3);
    if (image[at + 2] === 0x3d && start < 0) start = target;
    else if (image[at + 2] === 0x0d && end < 0) end = target;
  }
  return start >= 0 && end > start ? { start, end } : null;
}
