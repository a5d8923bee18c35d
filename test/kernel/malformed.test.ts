import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BadInputError, isBadInputError } from '../../src/kernel/errors.js';
import { parseSetupHeader, detectKernelFile } from '../../src/kernel/setup-header.js';
import { parseElf, classifyKernelElf } from '../../src/kernel/elf.js';
import { kernelInfo, kernelInfoFromBytes } from '../../src/kernel/info.js';
import { locatePayload } from '../../src/kernel/payload.js';
import { hostToolRuns } from '../host-tools.js';
import { FETCH_TIMEOUT_MS, realKernel, syntheticBzImage } from './fixtures.js';

/** Whether gcc can make 32-bit objects here (needs the multilib headers). */
const gccM32 = hostToolRuns('gcc', ['-m32', '-x', 'c', '-c', '-', '-o', '/dev/null'], 'int f(void) { return 1; }\n');

/** Run fn, expect a BadInputError whose one-line message matches re. */
function expectBad(fn: () => unknown, re: RegExp): BadInputError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a BadInputError').toBeInstanceOf(BadInputError);
  const e = err as BadInputError;
  expect(isBadInputError(e)).toBe(true);
  expect(e.message).toMatch(re);
  expect(e.message).not.toContain('\n');
  expect(e.message.length).toBeLessThan(240);
  return e;
}

/** Deterministic pseudo-random bytes (xorshift32). */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

function patched(src: Uint8Array, fn: (b: Uint8Array, dv: DataView) => void): Uint8Array {
  const b = Uint8Array.from(src);
  fn(b, new DataView(b.buffer));
  return b;
}

const TRUE_BIN = ['/bin/true', '/usr/bin/true'].find((p) => existsSync(p))!;

describe('malformed bzImages (synthetic)', () => {
  const good = syntheticBzImage();

  it('the unpatched synthetic image parses', () => {
    expect(() => parseSetupHeader(good)).not.toThrow();
    expect(() => kernelInfoFromBytes(good)).not.toThrow();
  });

  it('empty file', () => {
    expectBad(() => parseSetupHeader(new Uint8Array(0)), /empty file/);
    expectBad(() => detectKernelFile(new Uint8Array(0)), /empty file/);
    expectBad(() => parseElf(new Uint8Array(0)), /empty file/);
  });

  it('random bytes', () => {
    for (const seed of [1, 2, 3, 0xdeadbeef]) {
      const r = randomBytes(64 * 1024, seed);
      expectBad(() => detectKernelFile(r), /not a kernel image/);
      expectBad(() => parseSetupHeader(r), /not a bzImage|boot_flag/);
      expectBad(() => kernelInfoFromBytes(r), /not a kernel image/);
    }
  });

  it('too short to hold a setup header', () => {
    expectBad(() => parseSetupHeader(good.subarray(0, 100)), /too short/);
    expectBad(() => parseSetupHeader(good.subarray(0, 0x204)), /truncated/);
    expectBad(() => parseSetupHeader(good.subarray(0, 0x230)), /truncated/);
  });

  it('bad boot_flag', () => {
    const b = patched(good, (_b, dv) => dv.setUint16(0x1fe, 0x1234, true));
    expectBad(() => parseSetupHeader(b), /boot_flag.*0x1234.*0xAA55/);
  });

  it('no "HdrS"', () => {
    const b = patched(good, (_b, dv) => dv.setUint32(0x202, 0x12345678, true));
    expectBad(() => parseSetupHeader(b), /HdrS/);
    expectBad(() => detectKernelFile(b), /HdrS/);
  });

  it('boot protocol 2.11', () => {
    const b = patched(good, (_b, dv) => dv.setUint16(0x206, 0x020b, true));
    expectBad(() => parseSetupHeader(b), /protocol 2\.11 is too old.*2\.12/);
  });

  it('xloadflags without XLF_KERNEL_64 is a 32-bit-only kernel', () => {
    const b = patched(good, (_b, dv) => dv.setUint16(0x236, 0x0002, true));
    expectBad(() => parseSetupHeader(b), /32-bit-only kernel/);
  });

  it('truncated protected-mode part (syssize says more)', () => {
    expectBad(() => parseSetupHeader(good.subarray(0, good.length - 16)), /truncated.*syssize/);
  });

  it('payload beyond the end of the file', () => {
    const b = patched(good, (_b, dv) => dv.setUint32(0x24c, 0x2000, true));
    expectBad(() => parseSetupHeader(b), /truncated.*payload/);
  });

  it('file ends inside the real-mode setup', () => {
    expectBad(() => parseSetupHeader(good.subarray(0, 0x300)), /truncated.*setup/);
    expectBad(() => parseSetupHeader(good.subarray(0, 5 * 512)), /truncated.*protected-mode/);
  });

  it('unknown payload compression', () => {
    const b = patched(good, (bb) => bb.fill(0x77, 5 * 512 + 0x400, 5 * 512 + 0x404));
    expectBad(() => locatePayload(b), /unknown compression/);
  });

  it('compressed data instead of a kernel is named', () => {
    expectBad(() => detectKernelFile(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0])), /zstd/);
    expectBad(() => detectKernelFile(new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0])), /gzip/);
  });
});

describe('malformed inputs derived from the real Debian 6.12 bzImage', () => {
  let img: Uint8Array;
  beforeAll(() => {
    img = realKernel('debian-6.12').bytes;
  }, FETCH_TIMEOUT_MS);

  it('truncated in the middle of the payload', () => {
    const half = img.subarray(0, Math.floor(img.length / 2));
    expectBad(() => parseSetupHeader(half), /truncated/);
    expectBad(() => kernelInfoFromBytes(half), /truncated/);
  });

  it('truncated by one byte', () => {
    expectBad(() => parseSetupHeader(img.subarray(0, img.length - 1)), /truncated/);
  });

  it('cut right after the setup sectors', () => {
    const h = parseSetupHeader(img);
    expectBad(() => parseSetupHeader(img.subarray(0, h.protectedModeOffset)), /truncated/);
    expectBad(() => parseSetupHeader(img.subarray(0, 0x600)), /truncated/);
  });

  it('header patched to protocol 2.11', () => {
    const b = patched(img, (_b, dv) => dv.setUint16(0x206, 0x020b, true));
    expectBad(() => parseSetupHeader(b), /2\.11/);
    expectBad(() => kernelInfoFromBytes(b), /too old/);
  });

  it('xloadflags bit 0 cleared', () => {
    const b = patched(img, (_b, dv) => dv.setUint16(0x236, dv.getUint16(0x236, true) & ~1, true));
    expectBad(() => parseSetupHeader(b), /32-bit-only/);
  });

  it('boot flag and magic wiped', () => {
    const b = patched(img, (bb) => bb.fill(0, 0x1f0, 0x210));
    expectBad(() => detectKernelFile(b), /not a kernel image|bzImage/);
  });
});

describe('ELF files that are not x86-64 kernels', () => {
  const trueBytes = readFileSync(TRUE_BIN);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'bzemu-malformed-'));
    return () => rmSync(dir, { recursive: true, force: true });
  });

  it('/bin/true is an x86-64 ELF but not a kernel', () => {
    expect(detectKernelFile(trueBytes)).toBe('elf64');
    const elf = parseElf(trueBytes);
    expect(elf.machine).toBe(62);
    expectBad(() => classifyKernelElf(elf), /not a kernel.*user-space/);
    expectBad(() => kernelInfo(TRUE_BIN), /not a kernel/);
  });

  it('a static x86-64 ELF without kernel sections is not a kernel', () => {
    // Drop PT_INTERP by turning it into PT_NULL: no interpreter, still no kernel sections.
    const elf0 = parseElf(trueBytes);
    const b = patched(trueBytes, (_b, dv) => {
      for (const ph of elf0.programHeaders) if (ph.type === 3) dv.setUint32(64 + ph.index * 56, 0, true);
    });
    expectBad(() => kernelInfoFromBytes(b), /not a kernel.*kernel sections/);
  });

  it('a 32-bit ELF (EI_CLASS patched)', () => {
    const b = patched(trueBytes, (bb) => {
      bb[4] = 1;
    });
    expectBad(() => detectKernelFile(b), /32-bit ELF/);
    expectBad(() => parseElf(b), /32-bit ELF/);
    expectBad(() => kernelInfoFromBytes(b), /32-bit ELF/);
  });

  // Without gcc or its 32-bit support there is no such ELF to read: skipped
  // (the patched-EI_CLASS case above still covers the message).
  it.skipIf(!gccM32)(`a 32-bit ELF made by gcc -m32, when gcc can${gccM32 ? '' : ' (skipped: no gcc -m32 on this host)'}`, () => {
    const src = join(dir, 'f.c');
    const obj = join(dir, 'f.o');
    writeFileSync(src, 'int f(void) { return 1; }\n');
    const r = spawnSync('gcc', ['-m32', '-c', src, '-o', obj], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const p = kernelInfo.bind(null, obj);
    expectBad(p, /32-bit ELF.*i386/);
  });

  it('an ELF for another machine (AArch64)', () => {
    const b = patched(trueBytes, (_b, dv) => dv.setUint16(18, 183, true));
    expectBad(() => detectKernelFile(b), /AArch64.*not x86-64/);
  });

  it('big-endian ELF', () => {
    const b = patched(trueBytes, (bb) => {
      bb[5] = 2;
    });
    expectBad(() => detectKernelFile(b), /big-endian/);
  });

  it('truncated ELFs never give a stack trace', () => {
    for (const n of [4, 20, 63, 64, 200, 1000, Math.floor(trueBytes.length / 2), trueBytes.length - 1]) {
      const b = trueBytes.subarray(0, n);
      let err: unknown;
      try {
        classifyKernelElf(parseElf(b));
      } catch (e) {
        err = e;
      }
      expect(err, `length ${n}`).toBeInstanceOf(BadInputError);
    }
  });

  it('garbage after a valid ELF header never gives a stack trace', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const b = patched(randomBytes(4096, seed), (bb) => {
        bb.set(trueBytes.subarray(0, 20), 0); // magic, class, data, type, machine
      });
      let err: unknown;
      try {
        classifyKernelElf(parseElf(b));
      } catch (e) {
        err = e;
      }
      expect(err, `seed ${seed}`).toBeInstanceOf(BadInputError);
    }
  });

  it('section header table pointing past the end', () => {
    const b = patched(trueBytes, (_b, dv) => dv.setBigUint64(40, BigInt(trueBytes.length - 10), true));
    expectBad(() => parseElf(b), /truncated ELF file: section headers/);
  });

  it('missing file and directories are BadInputError', () => {
    expectBad(() => kernelInfo(join(dir, 'does-not-exist')), /no such file/);
    expectBad(() => kernelInfo(dir), /directory/);
  });
});
