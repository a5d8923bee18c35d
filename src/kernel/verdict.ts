/** How a boot ended. */
export type VerdictKind =
  | 'reached'
  | 'guest-halted'
  | 'guest-terminated'
  /** The hypervisor stopped the VM (an exit it could not resolve, e.g. an RMP nested page fault). */
  | 'host-stopped'
  | 'triple-fault'
  | 'budget-exhausted'
  | 'emulator-gap'
  | 'bad-input';

/** Process exit codes: 0 reached, 1 the guest failed, 2 bad input or usage, 3 emulator gap. */
export function exitCodeFor(verdict: VerdictKind): number {
  switch (verdict) {
    case 'reached': return 0;
    case 'bad-input': return 2;
    case 'emulator-gap': return 3;
    default: return 1;
  }
}

/** Milestones a boot can stop at. */
export const MILESTONES = ['startup_32', 'startup_64', 'sev_enable', 'bss-clear', 'extract_kernel', 'kernel-entry', 'linux-banner'] as const;
export type MilestoneName = (typeof MILESTONES)[number];
export const UNTIL_CHOICES: readonly MilestoneName[] = ['extract_kernel', 'kernel-entry', 'linux-banner'];
