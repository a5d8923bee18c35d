import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { boot, type BootOptions } from '../../src/machine/boot.js';
import { kernelPath } from '../boot/helpers.js';

/*
 * Where the decompressor moves itself is decided by its own compiled-in code
 * (head_64.S: LOAD_PHYSICAL_ADDR, CONFIG_RELOCATABLE, init_size - _end), not by
 * the setup header's relocatable_kernel or pref_address, which only describe
 * it. A header that lies about them must not move bzemu's milestones: the run
 * is the honest header's run (same verdict and trace hash, both bzemu's).
 */
const dir = mkdtempSync(join(tmpdir(), 'bzemu-lies-'));
const options = (kernelPathValue: string): BootOptions => ({
  kernelPath: kernelPathValue, memSize: 1 << 30, poison: { kind: 'random', seed: 1 }, seed: 1, cmdline: 'console=ttyS0',
  loadAddress: 0x2000000, gdt: 'boot-protocol', until: 'extract_kernel', budget: 2e8, traceLength: 0,
});

describe('a setup header that lies about relocation (Debian 6.12)', () => {
  const honest = boot(options(kernelPath('debian-6.12')));
  it.each([
    ['relocatable_kernel = 0', (b: Buffer) => { b[0x234] = 0; }],
    ['pref_address = 0x3000000', (b: Buffer) => { b.writeBigUInt64LE(0x3000000n, 0x258); }],
  ])('%s: same milestones, verdict and trace hash', (name, lie) => {
    const b = Buffer.from(readFileSync(kernelPath('debian-6.12')));
    lie(b);
    const file = join(dir, name.replace(/\W+/g, '-'));
    writeFileSync(file, b);
    const r = boot(options(file));
    expect(honest.verdict).toBe('reached');
    expect([r.verdict, r.instructions, r.traceHash]).toEqual([honest.verdict, honest.instructions, honest.traceHash]);
    expect(r.milestones.map((m) => [m.name, m.rip])).toEqual(honest.milestones.map((m) => [m.name, m.rip]));
  });
});
