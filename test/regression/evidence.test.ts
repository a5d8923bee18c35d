import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCell, poisonAt, LOAD_ADDRESS } from './snp-vmpl-matrix.js';
import { selfBuiltKernels, symbolOffset } from './selfbuilt.js';
import { boot } from '../../src/machine/boot.js';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';

describe('what the regression runs show', () => {
  it('regress at VMPL0 names snp_vmpl, read by sev_enable before anything wrote it, and its value', () => {
    const dir = selfBuiltKernels();
    const r = runCell(dir, 'regress', 'vmlinux', 'vmpl0', { kind: 'random', seed: 1 }, 1);
    expect(r.verdict).toBe('guest-terminated');
    const read = r.uninitializedReads.find((u) => u.symbol === 'snp_vmpl');
    expect(read, JSON.stringify(r.uninitializedReads)).toBeDefined();
    expect(read!.reader).toMatch(/^sev_enable\+0x[0-9a-f]+$/);
    const pa = LOAD_ADDRESS + symbolOffset(dir, 'regress', 'snp_vmpl');
    expect(Number(read!.address)).toBe(pa);
    expect(Number(read!.value)).toBe(poisonAt({ kind: 'random', seed: 1 }, pa));
    // The read precedes the termination request, and the .bss clear milestone was never reached.
    expect(r.milestones.map((m) => m.name)).not.toContain('bss-clear');
  });

  it('the CLI prints the same evidence in one line', () => {
    const dir = selfBuiltKernels();
    let out = '';
    try {
      execFileSync('node', ['dist/bundle/main.js', 'boot', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--seed', '1'], { encoding: 'utf8' });
    } catch (e) {
      out = (e as { stdout: string; status: number }).stdout;
      expect((e as { status: number }).status).toBe(1);
    }
    const bss = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    expect(out).toMatch(new RegExp(`uninit read {2}snp_vmpl \\(1 byte at \\.bss\\+0x${bss.toString(16)}, 0x[0-9a-f]+\\) read by sev_enable\\+0x[0-9a-f]+ at instruction \\d+ before anything wrote it; it held 0x[0-9a-f]{2}`));
    expect(out).toContain('termination  set 1 code 3: SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0');
  });

  it('the bare bzImage names the same read by .bss offset, once per (reader, location) with a count', () => {
    const dir = selfBuiltKernels();
    const r = boot({
      kernelPath: join(dir, 'regress', 'bzImage'), memSize: 1 << 30, poison: { kind: 'random', seed: 1 }, seed: 1, cmdline: 'console=ttyS0',
      loadAddress: LOAD_ADDRESS, gdt: 'boot-protocol', until: 'extract_kernel', budget: 2e8, traceLength: 0, vm: makeVmConfig({ mode: 'snp' }),
    });
    expect(r.verdict).toBe('guest-terminated');
    const bss = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    const read = r.uninitializedReads.find((u) => u.section === `.bss+0x${bss.toString(16)}`);
    expect(read, JSON.stringify(r.uninitializedReads)).toBeDefined();
    expect(read!.symbol).toBe(`.bss+0x${bss.toString(16)}`);
    const keys = r.uninitializedReads.map((u) => `${u.address}@${u.rip}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(r.uninitializedReads.every((u) => u.count >= 1)).toBe(true);
  });

  it('naive-fix under an SVSM: the SVSM finds no request in its calling area', () => {
    const dir = selfBuiltKernels();
    const r = runCell(dir, 'naive-fix', 'vmlinux', 'svsm-vmpl2', { kind: 'zero' }, 1);
    expect(r.termination?.name).toBe('SEV_TERM_SET_LINUX/GHCB_TERM_PVALIDATE');
    const call = r.events.find((e) => e.kind === 'svsm-call');
    expect(call?.detail).toMatch(/^no call pending \(caa 0x3000, rax=0x1,/);
    // After the .bss clear, before the failure.
    expect(r.milestones.map((m) => m.name)).toEqual(expect.arrayContaining(['bss-clear', 'extract_kernel']));
  });
});
