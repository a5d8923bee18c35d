import { describe, expect, it } from 'vitest';
import { parseBootArgs } from '../../src/cli/options.js';
import { budgetBasis, defaultBudget, EARLY_BUDGET, FIXED, FLOOR, MARGIN, RATES, rateFor, resolveBudget } from '../../src/kernel/budget.js';
import type { PayloadFormat } from '../../src/kernel/payload.js';
import { parseSetupHeader, protectedModePart } from '../../src/kernel/setup-header.js';
import { syntheticBzImage } from '../kernel/fixtures.js';

/**
 * Instruction counts measured with bzemu (`bzemu boot KERNEL --until extract_kernel|kernel-entry
 * --budget 1e11 --json`, default options otherwise: 1G, random poison seed 1), by
 * scripts/measure-compressors.sh --debian on Debian's linux-source-6.12 6.12.117-1~deb12u1
 * built with kernels/tiny-sev.config and each compressor (kernels/README.md):
 *   tiny-*    the tiny test kernel (76 % of its output is zero padding)
 *   zeros-*   tiny + 32 MB of zero bytes as an uncompressed built-in initramfs
 *   code-*    tiny + Debian 6.12's vmlinux (as an uncompressed built-in initramfs)
 *   base64-*  tiny + 12 MB of base64 text of pseudo-random bytes
 *   random-*  tiny + 12 MB of pseudo-random bytes
 * and the Debian kernels of kernels/debian.json (debian-6.1 is the xz-compressed 6.1 amd64
 * kernel the old fixed default of 4e9 could not decompress).
 * [name, format, payload bytes, decompressed bytes, instructions to extract_kernel, to kernel-entry]
 */
const MEASURED: ReadonlyArray<readonly [string, PayloadFormat, number, number, number, number]> = [
  ['tiny-gzip', 'gzip', 1277816, 18954316, 526208, 87730528],
  ['tiny-bzip2', 'bzip2', 1231345, 18954316, 526252, 864326724],
  ['tiny-lzma', 'lzma', 1077683, 18954316, 526208, 708615754],
  ['tiny-xz', 'xz', 1028968, 18954316, 526208, 845849537],
  ['tiny-lzo', 'lzo', 1461303, 18954316, 526208, 70103488],
  ['tiny-lz4', 'lz4', 1525787, 18954316, 526208, 20918532],
  ['tiny-zstd', 'zstd', 1130890, 18954316, 526208, 125342223],
  ['zeros-gzip', 'gzip', 1320336, 52509152, 526208, 165441277],
  ['zeros-bzip2', 'bzip2', 1226690, 52509152, 526252, 1455361876],
  ['zeros-lzma', 'lzma', 1086558, 52509152, 526208, 1242107784],
  ['zeros-xz', 'xz', 1039280, 52509152, 526208, 1834942595],
  ['zeros-lzo', 'lzo', 1650729, 52509152, 526208, 172724718],
  ['zeros-lz4', 'lz4', 1665104, 52509152, 526208, 46775770],
  ['zeros-zstd', 'zstd', 1137933, 52509152, 526208, 287462617],
  ['code-gzip', 'gzip', 15125288, 77674976, 526340, 763395315],
  ['code-bzip2', 'bzip2', 16049450, 77674976, 526406, 9065572844],
  ['code-lzma', 'lzma', 11554638, 77674976, 526318, 6065158729],
  ['code-xz', 'xz', 10811752, 77674976, 526296, 5726478613],
  ['code-lzo', 'lzo', 18269853, 77674976, 526384, 395728824],
  ['code-lz4', 'lz4', 20222913, 77674976, 526406, 128069699],
  ['code-zstd', 'zstd', 12847811, 77674976, 526318, 892884342],
  ['base64-gzip', 'gzip', 10527439, 31537632, 526296, 388573337],
  ['base64-bzip2', 'bzip2', 10471274, 31537632, 526340, 4547103299],
  ['base64-lzma', 'lzma', 10423621, 31537632, 526296, 5437822256],
  ['base64-xz', 'xz', 10377560, 31537632, 526296, 4296374045],
  ['base64-lzo', 'lzo', 13631743, 31537632, 526340, 72507897],
  ['base64-lz4', 'lz4', 13717043, 31537632, 526340, 32467412],
  ['base64-zstd', 'zstd', 10311878, 31537632, 526296, 298054429],
  ['random-gzip', 'gzip', 13288805, 31537632, 526340, 90157901],
  ['random-bzip2', 'bzip2', 13305807, 31537632, 526384, 10334725512],
  ['random-lzma', 'lzma', 13245159, 31537632, 526340, 5461333731],
  ['random-xz', 'xz', 13036044, 31537632, 526340, 1074847808],
  ['random-lzo', 'lzo', 13472813, 31537632, 526340, 72043582],
  ['random-lz4', 'lz4', 13582597, 31537632, 526340, 30638517],
  ['random-zstd', 'zstd', 13137410, 31537632, 526340, 138196578],
  ['debian-6.1', 'xz', 8122480, 65906612, 526251, 4483168782],
  ['debian-6.1-cloud', 'lz4', 14063308, 53243444, 526317, 93488537],
  ['debian-6.12', 'zstd', 11838000, 57647116, 526264, 745060248],
];

describe('the default instruction budget', () => {
  it.each(MEASURED)('%s (%s): at least 3x the measured count to kernel-entry, 100x to extract_kernel', (_name, format, payloadSize, outputSize, toExtract, toEntry) => {
    const basis = { format, payloadSize, outputSize };
    expect(defaultBudget('kernel-entry', basis).instructions).toBeGreaterThanOrEqual(3 * toEntry);
    expect(defaultBudget('extract_kernel', basis).instructions).toBeGreaterThanOrEqual(100 * toExtract);
  });

  it('lets the xz kernel of Debian 6.1 amd64 finish (the old fixed 4e9 did not)', () => {
    const [, format, payloadSize, outputSize, , toEntry] = MEASURED.find(([name]) => name === 'debian-6.1')!;
    expect(toEntry).toBeGreaterThan(4e9);
    expect(defaultBudget('kernel-entry', { format, payloadSize, outputSize }).instructions).toBeGreaterThanOrEqual(4 * toEntry);
  });

  it('the fitted model alone (before the margin) covers every measured kernel', () => {
    for (const [name, format, payloadSize, outputSize, , toEntry] of MEASURED) {
      const r = RATES[format];
      expect(r.output * outputSize + r.payload * payloadSize, name).toBeGreaterThanOrEqual(toEntry);
    }
    expect(MARGIN).toBeGreaterThanOrEqual(3);
  });

  it('scales with the kernel: twice the payload, about twice the budget; a small one gets the floor', () => {
    const small = defaultBudget('kernel-entry', { format: 'lz4', payloadSize: 1e5, outputSize: 4e5 }).instructions;
    expect(small).toBe(FLOOR + FIXED);
    const one = defaultBudget('kernel-entry', { format: 'xz', payloadSize: 10e6, outputSize: 70e6 }).instructions - FIXED;
    const two = defaultBudget('kernel-entry', { format: 'xz', payloadSize: 20e6, outputSize: 140e6 }).instructions - FIXED;
    expect(two / one).toBeCloseTo(2, 5);
    for (const format of Object.keys(RATES) as PayloadFormat[]) {
      expect(defaultBudget('extract_kernel', { format, payloadSize: 1e9, outputSize: 4e9 }).instructions).toBe(EARLY_BUDGET);
    }
  });

  it('an unknown format gets the highest rates of every format', () => {
    const r = rateFor(null);
    for (const rate of Object.values(RATES)) {
      expect(r.output).toBeGreaterThanOrEqual(rate.output);
      expect(r.payload).toBeGreaterThanOrEqual(rate.payload);
    }
    const basis = { payloadSize: 10e6, outputSize: 60e6 };
    const unknown = defaultBudget('kernel-entry', { format: null, ...basis }).instructions;
    for (const format of Object.keys(RATES) as PayloadFormat[]) {
      expect(unknown).toBeGreaterThanOrEqual(defaultBudget('kernel-entry', { format, ...basis }).instructions);
    }
  });
});

describe('the basis read from a kernel', () => {
  const kernelOf = (b: Uint8Array) => {
    const header = parseSetupHeader(b);
    return { header, image: protectedModePart(b, header) };
  };

  it('format from the magic, decompressed size from the trailer, payload size from the header', () => {
    // zstd magic, trailer 0x123456, payload_length 0x100, init_size 0x800000.
    expect(budgetBasis(kernelOf(syntheticBzImage()))).toEqual({ format: 'zstd', outputSize: 0x123456, payloadSize: 0x100 });
  });

  it('a trailer beyond init_size is capped at init_size (a forged size buys no endless budget)', () => {
    const b = syntheticBzImage();
    const pm = 5 * 512;
    new DataView(b.buffer).setUint32(pm + 0x400 + 0x100 - 4, 0xffffffff, true);
    expect(budgetBasis(kernelOf(b))).toMatchObject({ format: 'zstd', outputSize: 0x800000 });
  });

  it('an unknown magic: init_size and the highest rates', () => {
    const b = syntheticBzImage();
    b.set([0, 0, 0, 0], 5 * 512 + 0x400);
    expect(budgetBasis(kernelOf(b))).toEqual({ format: null, outputSize: 0x800000, payloadSize: 0x100 });
  });

  it('a payload outside the image (a compressed vmlinux whose bzImage does not match): init_size and the whole image', () => {
    const k = kernelOf(syntheticBzImage());
    const short = { header: k.header, image: k.image.subarray(0, 0x480) };
    expect(budgetBasis(short)).toEqual({ format: null, outputSize: 0x800000, payloadSize: 0x480 });
  });
});

describe('--budget', () => {
  it('without it the run takes the default; with it, the number given, whatever --until', () => {
    expect(parseBootArgs(['k']).budget).toBe('default');
    expect(parseBootArgs(['k', '--until', 'kernel-entry']).budget).toBe('default');
    expect(parseBootArgs(['k', '--budget', '1e11']).budget).toBe(1e11);
    expect(parseBootArgs(['k', '--until', 'kernel-entry', '--budget', '100000']).budget).toBe(100000);
    expect(parseBootArgs(['k', '--budget', '0x1000']).budget).toBe(0x1000);
    expect(() => parseBootArgs(['k', '--budget', 'lots'])).toThrow(/--budget: not a number/);
  });

  it('resolveBudget keeps a given number and explains a default', () => {
    const kernel = (() => {
      const b = syntheticBzImage();
      const header = parseSetupHeader(b);
      return { header, image: protectedModePart(b, header) };
    })();
    expect(resolveBudget(5, 'kernel-entry', kernel)).toEqual({ instructions: 5, explanation: null });
    const d = resolveBudget('default', 'kernel-entry', kernel);
    expect(d.instructions).toBe(FLOOR + FIXED);
    expect(d.explanation).toBe('the default budget to kernel-entry for the zstd payload (256 bytes, 1193046 decompressed): max(1e9, 4 x (6 x 1193046 + 36 x 256)) + 2e8');
    expect(resolveBudget('default', 'extract_kernel', kernel)).toMatchObject({ instructions: EARLY_BUDGET });
  });
});
