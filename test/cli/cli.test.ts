import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';

const dir = mkdtempSync(join(tmpdir(), 'bzemu-cli-'));

function bzemu(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('node', ['dist/bundle/main.js', ...args], { encoding: 'utf8', timeout: 300_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A copy of the Debian bzImage with `code` written at startup_64. */
function patchedKernel(name: string, code: number[]): string {
  const bz = new Uint8Array(readFileSync(kernel));
  const pm = ((bz[0x1f1] || 4) + 1) * 512;
  bz.set(code, pm + 0x200);
  const p = join(dir, name);
  writeFileSync(p, bz);
  return p;
}

let kernel = '';
beforeAll(() => {
  kernel = ensureDebianKernel('debian-6.12');
}, 600_000);

describe('bad input: one line on stderr, exit code 2', () => {
  const cases: Array<[string, () => string, RegExp]> = [
    ['an empty file', () => { const p = join(dir, 'empty'); writeFileSync(p, ''); return p; }, /empty file/],
    ['an ELF that is not a kernel', () => '/bin/true', /not a kernel/],
    ['a truncated bzImage', () => { const p = join(dir, 'half'); const b = readFileSync(kernel); writeFileSync(p, b.subarray(0, b.length >> 1)); return p; }, /truncated bzImage/],
    ['a 32-bit-only header', () => { const p = join(dir, 'k32'); const b = Buffer.from(readFileSync(kernel)); b[0x236] &= ~1; writeFileSync(p, b); return p; }, /32-bit-only kernel/],
    ['a missing file', () => join(dir, 'nope'), /no such file/],
    ['random bytes', () => { const p = join(dir, 'rand'); writeFileSync(p, Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) & 0xff))); return p; }, /not a kernel image/],
  ];
  it.each(cases)('%s', (_name, make, pattern) => {
    const r = bzemu('boot', make());
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bzemu: bad input: /);
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('usage mistakes exit 2 too', () => {
    for (const args of [['boot', kernel, '--poison', 'blue'], ['boot', kernel, '--until', 'nowhere'], ['frobnicate'], ['boot', kernel, '--coco', 'tdx']]) {
      const r = bzemu(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });
});

describe('verdicts and exit codes', () => {
  it('reached: exit 0 and a JSON result with the documented fields', () => {
    const r = bzemu('boot', kernel, '--json', '--poison', 'zero');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.verdict).toBe('reached');
    for (const k of ['reason', 'milestones', 'console', 'instructions', 'traceHash']) expect(j).toHaveProperty(k);
    expect(j.milestones[0]).toMatchObject({ name: 'startup_64', rip: '0x2000200', instruction: 0 });
    expect(j.traceHash).toMatch(/^[0-9a-f]{8}$/);
  });

  it('an instruction bzemu does not implement: emulator-gap, exit 3, with bytes, disassembly, RIP', () => {
    const p = patchedKernel('sse', [0x0f, 0x28, 0xc1]); // movaps %xmm1,%xmm0
    const r = bzemu('boot', p);
    expect(r.status).toBe(3);
    expect(r.stdout).toMatch(/verdict +emulator-gap: unimplemented instruction: movaps %xmm1,%xmm0 at 0x2000200 \(image\+0x200\)/);
    expect(r.stdout).toMatch(/bytes 0f 28 c1/);
  });

  it('a guest that loops forever runs out of budget: exit 1', () => {
    const p = patchedKernel('loop', [0xeb, 0xfe]); // jmp .
    const r = bzemu('boot', p, '--budget', '100000', '--json');
    expect(r.status).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.verdict).toBe('budget-exhausted');
    expect(j.instructions).toBe(100000);
  });

  it('an exception with no IDT is a triple fault: exit 1', () => {
    const r = bzemu('boot', patchedKernel('ud2', [0x0f, 0x0b]), '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).verdict).toBe('triple-fault');
  });

  it('HLT is guest-halted: exit 1', () => {
    const r = bzemu('boot', patchedKernel('hlt', [0xf4]), '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ verdict: 'guest-halted', instructions: 1 });
  });

  it('--trace N prints the last N instructions, disassembled', () => {
    const r = bzemu('boot', kernel, '--trace', '5', '--poison', 'zero');
    const block = r.stdout.split('last 5 instructions\n')[1];
    expect(block).toBeDefined();
    const lines = block.trim().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatch(/^\s+0x[0-9a-f]+\s+image\+0x[0-9a-f]+\s+[0-9a-f]+\s+\S+/);
  });
});

describe('other commands', () => {
  it('decode-exit explains the value Alioth prints', () => {
    const r = bzemu('decode-exit', '0x31100');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/reason set 1 \(SEV_TERM_SET_LINUX\), code 3 \(GHCB_TERM_NOT_VMPL0\)/);
  });

  it('info shows the header, version and payload', () => {
    const r = bzemu('info', kernel);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/6\.12\./);
    expect(r.stdout).toMatch(/zstd/);
  });
});
