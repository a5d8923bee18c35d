import type { HostEvent } from '../../hypervisor/sev-host.js';
import { svmExitName } from '../../hypervisor/svm-exit.js';
import type { TimelineEvent, TimelineGroup } from './model.js';

/** Where a host event goes on the timeline: its group, lane and a label people read. */
export interface EventPlace {
  group: TimelineGroup;
  lane: string;
  label: string;
}

const TERMINATION_REQUESTS = new Set(['GHCB_MSR_TERM_REQ', 'SVM_VMGEXIT_TERM_REQUEST']);

/**
 * Sort a host event into a lane: #VC by exit reason, VMGEXIT by protocol
 * and request (page-state changes and the termination request on lanes of
 * their own), PVALIDATE / RMPADJUST, SVSM calls, nested page faults.
 */
export function placeHostEvent(e: Pick<HostEvent, 'kind' | 'detail' | 'result'>, terminationName: string | null): EventPlace {
  const first = e.detail.split(' ')[0] ?? '';
  switch (e.kind) {
    case 'vc': {
      const m = /0x([0-9a-f]+)/.exec(e.detail);
      const code = m ? BigInt('0x' + m[1]) : -1n;
      const name = code >= 0n ? svmExitName(code) : e.detail;
      return { group: 'vc', lane: `#VC ${name}${code >= 0n ? ` (0x${code.toString(16)})` : ''}`, label: `#VC ${name}` };
    }
    case 'vmgexit-msr':
      if (TERMINATION_REQUESTS.has(first)) return { group: 'end', lane: 'termination', label: `termination request${terminationName ? `: ${terminationName}` : ''}` };
      if (first === 'GHCB_MSR_PSC_REQ') return { group: 'page-state', lane: 'page-state change', label: describeMsrPsc(e.detail) };
      return { group: 'vmgexit-msr', lane: `VMGEXIT MSR ${first}`, label: `VMGEXIT (MSR protocol) ${first}` };
    case 'vmgexit-ghcb': {
      // "SVM_EXIT_IOIO (0x7b) info1=...": the exit's name is all before its code (a garbage GHCB gives "exit 0x...").
      const exit = /^(.*?) \(0x[0-9a-f]+\)/.exec(e.detail)?.[1] ?? first;
      if (TERMINATION_REQUESTS.has(exit)) return { group: 'end', lane: 'termination', label: `termination request${terminationName ? `: ${terminationName}` : ''}` };
      if (exit === 'SVM_VMGEXIT_PSC') return { group: 'page-state', lane: 'page-state change', label: 'page-state change (GHCB page)' };
      if (e.result === 'garbage GHCB') return { group: 'finding', lane: 'GHCB left private', label: 'GHCB page still private' };
      return { group: 'vmgexit-ghcb', lane: `VMGEXIT GHCB ${exit}`, label: `VMGEXIT (GHCB page) ${exit}` };
    }
    case 'rmp-conversion':
      return { group: 'page-state', lane: 'page-state change', label: 'implicit page conversion (RMP mismatch)' };
    case 'key-switch':
      return { group: 'page-state', lane: 'page-state change', label: 'page written with the other C-bit (SEV key switch)' };
    case 'pvalidate':
      return { group: 'rmp', lane: 'PVALIDATE', label: `PVALIDATE ${e.detail}` };
    case 'rmpadjust':
      return { group: 'rmp', lane: 'RMPADJUST', label: `RMPADJUST ${e.detail.split(' ')[0]}` };
    case 'svsm-call':
      return { group: 'svsm', lane: 'SVSM call', label: `SVSM ${first}` };
    case 'npf':
      return { group: 'npf', lane: 'nested page fault', label: 'nested page fault (RMP)' };
  }
}

/** "page-state change: GFN 0x57c3 -> shared" from a GHCB_MSR_PSC_REQ event's MSR value (GFN 51:12, operation 55:52). */
function describeMsrPsc(detail: string): string {
  const m = /0x([0-9a-f]+)/.exec(detail);
  if (!m) return 'page-state change (MSR protocol)';
  const v = BigInt('0x' + m[1]);
  const gfn = (v >> 12n) & ((1n << 40n) - 1n);
  const op = Number((v >> 52n) & 0xfn);
  const to = op === 1 ? 'private' : op === 2 ? 'shared' : `operation ${op}`;
  return `page-state change: GPA 0x${(gfn << 12n).toString(16)} -> ${to}`;
}

/** Group order for the lanes, top to bottom: what ended the run first, host traffic after. */
const GROUP_ORDER: readonly TimelineGroup[] = ['end', 'milestone', 'finding', 'page-state', 'rmp', 'npf', 'svsm', 'vc', 'vmgexit-msr', 'vmgexit-ghcb'];

/** Lanes in display order (top first), each once. */
export function laneOrder(events: readonly TimelineEvent[]): string[] {
  const lanes = new Map<string, TimelineGroup>();
  for (const e of events) if (!lanes.has(e.lane)) lanes.set(e.lane, e.group);
  return [...lanes].sort((a, b) => GROUP_ORDER.indexOf(a[1]) - GROUP_ORDER.indexOf(b[1]) || a[0].localeCompare(b[0])).map(([lane]) => lane);
}
