import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Decoder, DecoderOptions, Mnemonic } from 'iced-x86';
import { parseElf } from '../../src/kernel/elf.js';
import { findLandmarks } from '../../src/kernel/landmarks.js';
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { implementedMnemonics } from '../../src/cpu/exec/table.js';
import { selfBuiltKernels, VARIANTS } from './selfbuilt.js';

describe.each(VARIANTS)('%s: bzImage landmarks agree with the ELF symbols of the same build', (variant) => {
  it('extract_kernel, _end and the .bss clear', () => {
    const dir = selfBuiltKernels();
    const bare = loadKernel(join(dir, variant, 'bzImage'));
    const elf = loadKernel(join(dir, variant, 'vmlinux'));
    const lm = findLandmarks(bare.image);
    expect(lm.extractKernel).toBe(elf.symbols!.get('extract_kernel')!.offset);
    expect(lm.end).toBe(elf.symbols!.get('_end')!.offset);
    // The rep stosq that clears .bss sits in startup_64's relocated tail, before the extract_kernel call.
    expect(lm.bssClear).toBeGreaterThan(elf.symbols!.get('startup_64')!.offset);
    expect(lm.bssClear!).toBeLessThan(lm.extractKernelCall!);
    // The flat image of the ELF is the bzImage's protected-mode part, except the CRC32 the build tool puts in the last 4 bytes.
    const n = elf.image.length - 4;
    expect(Buffer.from(elf.image.subarray(0, n)).equals(Buffer.from(bare.image.subarray(0, n)))).toBe(true);
  });
});

describe('every mnemonic in the decompressor has a handler', () => {
  it('linear sweep of the code sections of the self-built compressed vmlinux', () => {
    const dir = selfBuiltKernels();
    const file = new Uint8Array(readFileSync(join(dir, 'good', 'vmlinux')));
    const elf = parseElf(file);
    const implemented = new Set(implementedMnemonics());
    const seen = new Map<number, number>();
    let total = 0;
    for (const sec of elf.sections.filter((s) => (s.flags & 4n) !== 0n && s.type === 1)) {
      const bytes = file.subarray(sec.offset, sec.offset + sec.size);
      const d = new Decoder(64, bytes, DecoderOptions.None);
      d.ip = sec.addr;
      while (d.canDecode) {
        const ins = d.decode();
        if (!ins.isInvalid) {
          total++;
          seen.set(ins.mnemonic, (seen.get(ins.mnemonic) ?? 0) + 1);
        }
        ins.free();
      }
      d.free();
    }
    const missing = [...seen.keys()].filter((m) => !implemented.has(m)).map((m) => `${Mnemonic[m]} (x${seen.get(m)})`);
    expect(total).toBeGreaterThan(10000);
    expect(seen.size).toBeGreaterThan(80);
    expect(missing).toEqual([]);
  });
});
