import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeVmConfig, type CocoMode } from '../../src/hypervisor/vm-config.js';
import { boot, type BootResult } from '../../src/machine/boot.js';
import { bootDebian, DEBIAN_KERNELS } from './helpers.js';
import { selfBuiltKernels } from '../regression/selfbuilt.js';

/**
 * The 32-bit boot protocol entry: protected mode, paging off, flat segments,
 * %esi = zero page, at startup_32. The decompressor builds its own page
 * tables, finds the C-bit (with CPUID, or through #VC and the GHCB MSR
 * protocol under SEV-ES/SNP), checks it, and far-returns into startup_64.
 */

const MODES: CocoMode[] = ['none', 'sev', 'sev-es', 'snp'];

function firstMilestone(r: BootResult, name: string): number {
  const m = r.milestones.find((x) => x.name === name);
  expect(m, `${name} among ${r.milestones.map((x) => x.name).join(', ')}`).toBeDefined();
  return m!.instruction;
}

describe.each(DEBIAN_KERNELS)('%s entered at startup_32', (id) => {
  it.each(MODES)('--coco %s reaches extract_kernel through startup_64', (mode) => {
    const r = bootDebian(id, { entry: 'startup_32', vm: makeVmConfig({ mode }) });
    expect(r.verdict, r.reason).toBe('reached');
    expect(r.milestones.map((m) => m.name)).toEqual(['startup_32', 'startup_64', 'bss-clear', 'extract_kernel']);
    expect(r.milestones[0].rip).toBe('0x2000000'); // code32_start: the image's first byte
    expect(r.milestones[1].rip).toBe('0x2000200'); // startup_64 of the loaded copy, reached by startup_32's lret
    const into64 = firstMilestone(r, 'startup_64');
    // startup_32 clears 6 pages of page tables and fills 2048 PDEs: thousands of instructions, not a handful.
    expect(into64).toBeGreaterThan(5000);
    if (mode === 'sev-es' || mode === 'snp') {
      // The 32-bit #VC handler serves CPUID through the GHCB MSR protocol before any 64-bit code runs.
      const early = r.events.filter((e) => e.instruction < into64);
      expect(early.some((e) => e.kind === 'vc' && e.detail === '#VC exit 0x72')).toBe(true);
      expect(early.map((e) => e.detail)).toContain('GHCB_MSR_CPUID_REQ 0x8000001f40000004');
    } else {
      expect(r.events.filter((e) => e.kind === 'vc')).toEqual([]);
    }
  }, 120_000);
});

describe('a hypervisor that lies about the C-bit position (--cpuid-cbit)', () => {
  const dir = selfBuiltKernels();
  const good = (mode: CocoMode, cpuidCbit: number | null, extra: Parameters<typeof makeVmConfig>[0] = {}): BootResult => boot({
    kernelPath: join(dir, 'good', 'bzImage'),
    symbols: join(dir, 'good', 'vmlinux'),
    memSize: 1 << 30,
    poison: { kind: 'random', seed: 1 },
    seed: 1,
    cmdline: 'console=ttyS0',
    loadAddress: 0x2000000,
    gdt: 'boot-protocol',
    entry: 'startup_32',
    until: 'extract_kernel',
    budget: 2e8,
    traceLength: 0,
    vm: makeVmConfig({ mode, cpuidCbit, ...extra }),
  });

  it.each(['sev', 'sev-es', 'snp'] as CocoMode[])('%s: the decompressor\'s C-bit check halts on 47 while memory is encrypted at 51; the honest 51 passes', (mode) => {
    const lie = good(mode, 47);
    expect(lie.verdict, lie.reason).toBe('guest-halted');
    // The hlt loop of startup32_check_sev_cbit (mem_encrypt.S), after its read-back through the "encrypted" mapping differed.
    expect(lie.reason).toMatch(/startup32_check_sev_cbit\+0x[0-9a-f]+/);
    expect(lie.reason).toContain('reports the C-bit at 47');
    expect(lie.milestones.map((m) => m.name)).toEqual(['startup_32']);
    const honest = good(mode, 51);
    expect(honest.verdict, honest.reason).toBe('reached');
  }, 120_000);

  it('snp with --rmp-mismatch terminate names the shared read of a private page the check makes', () => {
    const r = good('snp', 47, { rmpMismatch: 'terminate' });
    expect(r.verdict).toBe('host-stopped');
    expect(r.reason).toMatch(/nested page fault \(RMP\): shared \(C=0\) read of page 0x[0-9a-f]+ .*which the RMP holds as private; at 0x[0-9a-f]+ \(startup32_check_sev_cbit\+0x/);
  }, 120_000);
});
