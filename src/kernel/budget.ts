/**
 * The default instruction budget of a boot: a safety net against a guest that loops
 * forever, sized so that every real kernel reaches its milestone well inside it.
 *
 * Up to extract_kernel the decompressor only relocates itself, clears .bss and builds page
 * tables: about 0.53 M instructions whatever the kernel's size or payload format (every
 * kernel measured). A fixed EARLY_BUDGET covers that hundreds of times over.
 *
 * To kernel-entry the cost is the decompression (plus parse_elf's copy of the segments and
 * the KASLR relocations). It grows with the decompressed size U (copying matches and runs,
 * writing the output) and with the compressed size C (entropy decoding: bzip2 and lzma
 * pay hundreds of instructions per payload byte on data that hardly compresses), at rates
 * that depend on the payload format:
 *
 *   budget = max(FLOOR, MARGIN x (RATES[format].output x U + RATES[format].payload x C)) + FIXED
 *
 * The two rates are fitted so that the model alone covers every kernel bzemu measured
 * (startup_64 to kernel-entry; the tightest such fit on kernels of real code, rounded up):
 * scripts/measure-compressors.sh builds each format with five kinds of payload (a kernel
 * that is mostly zero padding, plus 32 MB of zeros, plus a real kernel's code and data, plus
 * base64 text, plus random bytes), and the Debian kernels; kernels/README.md has the table
 * and test/cli/default-budget.test.ts the counts. The margin then leaves at least 4x on
 * every one of them (Debian 6.1's xz kernel: 4.48 G instructions, default 18.6 G). U is the
 * payload's size trailer capped at the header's init_size (a real kernel's output always
 * fits in init_size, so a forged trailer cannot buy a near-endless budget); C is the
 * header's payload_length. A payload bzemu cannot identify gets the highest rates of all.
 */
import type { KernelImage } from './kernel-image.js';
import { detectCompression, type PayloadFormat } from './payload.js';
import type { MilestoneName } from './verdict.js';

/** An instruction count, or 'default': the budget defaultBudget() picks for the kernel. */
export type Budget = number | 'default';

export interface Rate {
  /** Instructions per decompressed byte. */
  output: number;
  /** Instructions per compressed (payload) byte. */
  payload: number;
}

/** Fitted to every measured kernel (see above), rounded up. */
export const RATES: Readonly<Record<PayloadFormat, Rate>> = {
  gzip: { output: 7, payload: 19 },
  bzip2: { output: 11, payload: 760 },
  lzma: { output: 14, payload: 480 },
  xz: { output: 29, payload: 330 },
  lzo: { output: 5, payload: 0.5 },
  lz4: { output: 1, payload: 3.3 },
  zstd: { output: 6, payload: 36 },
};

/** How far above the fitted model the default budget sits. */
export const MARGIN = 4;
/** The smallest kernel-entry budget, whatever the size (a tiny or odd kernel). */
export const FLOOR = 1e9;
/** Added to every kernel-entry budget: the work before decompression, hundreds of times over. */
export const FIXED = 2e8;
/**
 * Added to the kernel-entry budget for linux-banner: the kernel's own early
 * start-up up to its early console (head_64.S, start_kernel, the start of
 * setup_arch) is a few million instructions; this is a hundred times that.
 */
export const BANNER_EXTRA = 5e8;
/** The budget to any milestone before kernel-entry (extract_kernel and earlier). */
export const EARLY_BUDGET = 2e8;

/** What the default budget of a kernel is computed from. */
export interface BudgetBasis {
  /** The payload's format; null when it is not one bzemu knows. */
  format: PayloadFormat | null;
  /** Decompressed size: the payload trailer, capped at init_size (init_size when unknown). */
  outputSize: number;
  /** Compressed size: payload_length (the image's size when the header's payload is unusable). */
  payloadSize: number;
}

export interface DefaultBudget {
  instructions: number;
  /** How it was computed, for messages. */
  explanation: string;
}

/** The basis of a loaded kernel's default budget (never throws: a broken header still gets one). */
export function budgetBasis(kernel: Pick<KernelImage, 'header' | 'image'>): BudgetBasis {
  const { payloadOffset, payloadLength, initSize } = kernel.header;
  const end = payloadOffset + payloadLength;
  if (payloadLength >= 8 && end <= kernel.image.length) {
    const payload = kernel.image.subarray(payloadOffset, end);
    const trailer = new DataView(payload.buffer, payload.byteOffset + payload.length - 4, 4).getUint32(0, true);
    const format = detectCompression(payload);
    return { format, outputSize: format === null ? initSize : Math.min(trailer, initSize), payloadSize: payloadLength };
  }
  return { format: null, outputSize: initSize, payloadSize: kernel.image.length };
}

/** The rates for a format; for an unknown one, the highest of every format. */
export function rateFor(format: PayloadFormat | null): Rate {
  if (format !== null) return RATES[format];
  const all = Object.values(RATES);
  return { output: Math.max(...all.map((r) => r.output)), payload: Math.max(...all.map((r) => r.payload)) };
}

/** The budget a boot to `until` gets when --budget is not given. */
export function defaultBudget(until: MilestoneName, basis: BudgetBasis): DefaultBudget {
  if (until !== 'kernel-entry' && until !== 'linux-banner') {
    return { instructions: EARLY_BUDGET, explanation: `the default budget to ${until}` };
  }
  if (until === 'linux-banner') {
    const entry = defaultBudget('kernel-entry', basis);
    return {
      instructions: entry.instructions + BANNER_EXTRA,
      explanation: `${entry.explanation.replace('to kernel-entry', 'to linux-banner')}, plus ${BANNER_EXTRA.toExponential().replace('e+', 'e')} for the kernel's start-up`,
    };
  }
  const rate = rateFor(basis.format);
  const model = rate.output * basis.outputSize + rate.payload * basis.payloadSize;
  const instructions = Math.max(FLOOR, Math.ceil(MARGIN * model)) + FIXED;
  const what = basis.format === null ? 'a payload of unknown format' : `the ${basis.format} payload`;
  const exp = (n: number): string => n.toExponential().replace('e+', 'e');
  return {
    instructions,
    explanation:
      `the default budget to kernel-entry for ${what} (${basis.payloadSize} bytes, ${basis.outputSize} decompressed): ` +
      `max(${exp(FLOOR)}, ${MARGIN} x (${rate.output} x ${basis.outputSize} + ${rate.payload} x ${basis.payloadSize})) + ${exp(FIXED)}`,
  };
}

/** The instruction count a run stops at: the number given, or the kernel's default. */
export function resolveBudget(budget: Budget, until: MilestoneName, kernel: Pick<KernelImage, 'header' | 'image'>): { instructions: number; explanation: string | null } {
  if (budget !== 'default') return { instructions: budget, explanation: null };
  return defaultBudget(until, budgetBasis(kernel));
}
