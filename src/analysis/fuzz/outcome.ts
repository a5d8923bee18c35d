import type { BootResult } from '../../machine/boot.js';

/** How a run ended, as a campaign groups runs: the same key = the same failure. */
export interface Outcome {
  /** Stable grouping key. */
  key: string;
  verdict: BootResult['verdict'];
  /** One line for people. */
  label: string;
  termination: { set: number; code: number; name: string } | null;
}

/**
 * The group of a run: verdict, plus the termination (set, code) for a guest
 * termination, the place and vector for a triple fault, the instruction for
 * an emulator gap, where the guest halted.
 */
export function outcomeOf(r: BootResult): Outcome {
  switch (r.verdict) {
    case 'reached':
      return { key: 'reached', verdict: r.verdict, label: r.reason, termination: null };
    case 'guest-terminated': {
      const t = r.termination;
      const label = t ? `guest-terminated (${t.set},${t.code}) ${t.name.split('/').pop()}` : `guest-terminated: ${r.reason}`;
      return { key: t ? `guest-terminated:${t.set}:${t.code}` : `guest-terminated:${r.reason}`, verdict: r.verdict, label, termination: t ? { set: t.set, code: t.code, name: t.name } : null };
    }
    case 'triple-fault':
      return { key: `triple-fault:${r.reason}`, verdict: r.verdict, label: `triple-fault: ${r.reason}`, termination: null };
    case 'emulator-gap':
      return { key: `emulator-gap:${r.gap?.disassembly ?? ''}@${r.gap?.rip ?? ''}`, verdict: r.verdict, label: `emulator-gap: ${r.reason}`, termination: null };
    case 'host-stopped':
      return { key: `host-stopped:${r.reason}`, verdict: r.verdict, label: `host-stopped: ${r.reason}`, termination: null };
    case 'guest-halted':
      return { key: `guest-halted:${r.reason}`, verdict: r.verdict, label: `guest-halted: ${r.reason}`, termination: null };
    default:
      return { key: r.verdict, verdict: r.verdict, label: `${r.verdict}: ${r.reason}`, termination: null };
  }
}
