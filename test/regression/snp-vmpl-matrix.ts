import { join } from 'node:path';
import { makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';
import { boot, type BootResult } from '../../src/machine/boot.js';
import { poisonPage, type PoisonPolicy } from '../../src/memory/poison.js';
import { symbolOffset, type Variant } from './selfbuilt.js';

/**
 * The snp_vmpl regression matrix: kernels x platforms x poisons, each cell
 * with the verdict the kernel's code implies (see README "The snp_vmpl
 * regression").
 */
export const LOAD_ADDRESS = 0x2000000;
export const CMDLINE = 'nokaslr earlyprintk=serial,ttyS0,115200';

export const PLATFORMS = {
  /** SNP at VMPL0, no SVSM, KVM's HV features (no multi-VMPL). */
  'vmpl0': makeVmConfig({ mode: 'snp' }),
  /** SNP at VMPL2 under an SVSM, HV features with multi-VMPL. */
  'svsm-vmpl2': makeVmConfig({ mode: 'snp', vmpl: 2, svsm: true }),
} satisfies Record<string, VmConfig>;
export type Platform = keyof typeof PLATFORMS;

export const POISONS: Array<[string, PoisonPolicy, number]> = [
  ['zero', { kind: 'zero' }, 1],
  ...[1, 2, 3, 4, 5].map((seed): [string, PoisonPolicy, number] => [`random-${seed}`, { kind: 'random', seed }, seed]),
];

export interface Expectation {
  verdict: BootResult['verdict'];
  termination?: string;
  why: string;
}

/** The byte the firmware leaves in snp_vmpl's location (the loaded copy) under a poison policy. */
export function poisonAt(policy: PoisonPolicy, pa: number): number {
  const page = new Uint8Array(4096);
  poisonPage(policy, Math.floor(pa / 4096), page);
  return page[pa % 4096];
}

export function expected(dir: string, variant: Variant, platform: Platform, poison: PoisonPolicy): Expectation {
  if (variant === 'good') return { verdict: 'reached', why: 'stock 6.12: early SEV variables are in .data and sev_enable() probes with RMPADJUST' };
  if (variant === 'fix') return { verdict: 'reached', why: 'every early SEV variable is in .data: nothing is read from or lost to .bss' };
  if (platform === 'vmpl0') {
    if (variant === 'naive-fix') return { verdict: 'reached', why: 'snp_vmpl is in .data (0): VMPL0 is recognised' };
    const garbage = poisonAt(poison, LOAD_ADDRESS + symbolOffset(dir, 'regress', 'snp_vmpl'));
    return garbage !== 0
      ? { verdict: 'guest-terminated', termination: 'SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0', why: `snp_vmpl is read from uninitialized .bss (0x${garbage.toString(16)} != 0) and the HV lacks multi-VMPL` }
      : { verdict: 'reached', why: 'the poison byte under snp_vmpl happens to be 0' };
  }
  if (variant === 'regress') {
    return { verdict: 'triple-fault', why: 'the .bss clear wipes snp_vmpl (2 -> 0): the GHCB setup executes PVALIDATE itself at VMPL2, which raises #GP with no handler' };
  }
  return { verdict: 'guest-terminated', termination: 'SEV_TERM_SET_LINUX/GHCB_TERM_PVALIDATE', why: 'snp_vmpl survives in .data but the .bss clear wipes boot_svsm_caa(_pa): the SVSM PVALIDATE request is written through a NULL calling-area pointer, the SVSM finds no call pending, the guest sees the call fail' };
}

export function runCell(dir: string, variant: Variant, kind: 'vmlinux' | 'bzImage', platform: Platform, poison: PoisonPolicy, seed: number): BootResult {
  return boot({
    kernelPath: join(dir, variant, kind),
    symbols: kind === 'bzImage' ? join(dir, variant, 'vmlinux') : undefined,
    memSize: 1 << 30,
    poison,
    seed,
    cmdline: CMDLINE,
    loadAddress: LOAD_ADDRESS,
    gdt: 'boot-protocol',
    until: 'kernel-entry',
    budget: 1e9,
    traceLength: 0,
    vm: PLATFORMS[platform],
  });
}
