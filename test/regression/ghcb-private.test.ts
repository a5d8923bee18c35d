import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { boot } from '../../src/machine/boot.js';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { selfBuiltKernels } from './selfbuilt.js';

/*
 * The ghcb-private test kernel (kernels/patches/ghcb-private.patch) never makes
 * its GHCB shared. On SNP hardware the host would read ciphertext from it; the
 * decompressor's first GHCB exit gets no valid answer and it terminates: with
 * (1,4) GHCB_TERM_CPUID_HV when that exit is a CPUID (sev.c: snp_cpuid_hv via
 * the GHCB), or (0,0) GHCB_SEV_ES_GEN_REQ when it is the console's port I/O
 * (do_boot_stage2_vc). Which comes first depends on the command line.
 */
describe('ghcb-private kernel under SNP', () => {
  it.each(['vmlinux', 'bzImage'])('%s: terminates, and a finding names the GHCB the guest left private', (file) => {
    const dir = selfBuiltKernels();
    const path = join(dir, 'ghcb-private', file);
    expect(existsSync(path), 'scripts/build-test-kernels.sh builds ghcb-private').toBe(true);
    let ghcbName = '';
    const r = boot({
      kernelPath: path, symbols: file === 'bzImage' ? join(dir, 'ghcb-private', 'vmlinux') : undefined,
      memSize: 1 << 30, poison: { kind: 'random', seed: 1 }, seed: 1, cmdline: 'console=ttyS0', loadAddress: 0x2000000,
      gdt: 'boot-protocol', until: 'kernel-entry', budget: 1e9, traceLength: 0, vm: makeVmConfig({ mode: 'snp' }),
    });
    expect(r.verdict).toBe('guest-terminated');
    expect(['SEV_TERM_SET_LINUX/GHCB_TERM_CPUID_HV', 'SEV_TERM_SET_GEN/GHCB_SEV_ES_GEN_REQ']).toContain(r.termination?.name);
    const finding = r.findings.find((f) => f.includes('ghcb-private'));
    expect(finding, r.findings.join('\n')).toMatch(/GHCB at 0x[0-9a-f]+ is private/);
    // The same kernel with its GHCB shared (good) reaches the kernel: only the sharing differs.
    const good = boot({
      kernelPath: join(dir, 'good', file), symbols: file === 'bzImage' ? join(dir, 'good', 'vmlinux') : undefined,
      memSize: 1 << 30, poison: { kind: 'random', seed: 1 }, seed: 1, cmdline: 'console=ttyS0', loadAddress: 0x2000000,
      gdt: 'boot-protocol', until: 'kernel-entry', budget: 1e9, traceLength: 0, vm: makeVmConfig({ mode: 'snp' }),
      inspect: (m) => { ghcbName = m.addresses.describeData(Number('0x' + /0x([0-9a-f]+) is private/.exec(finding!)![1])); },
    });
    expect(good.verdict).toBe('reached');
    expect(ghcbName).toBe('boot_ghcb_page');
  });
});
