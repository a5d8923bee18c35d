/**
 * VMGEXIT entry point: the GHCB MSR value decides the protocol. Non-zero
 * GHCBInfo bits 11:0 -> MSR protocol; otherwise the value is the GHCB page GPA.
 */
import type { GhcbMsrProtocol, VmgexitMsrEvent } from './ghcb-msr-protocol.js';
import type { GhcbPageProtocol, VmgexitGhcbEvent } from './ghcb-page.js';
import type { Termination } from './termination.js';

export type VmgexitEvent = VmgexitMsrEvent | VmgexitGhcbEvent;

export type VmgexitOutcome =
  /** Resume the guest after the VMGEXIT with this GHCB MSR value (unchanged for the page protocol). */
  | { readonly kind: 'continue'; readonly newMsrValue: bigint; readonly event: VmgexitEvent }
  /** Stop the VM. */
  | { readonly kind: 'terminate'; readonly reason: Termination; readonly event: VmgexitEvent };

export class VmgexitDispatcher {
  constructor(
    readonly msr: GhcbMsrProtocol,
    readonly page: GhcbPageProtocol,
  ) {}

  handle(ghcbMsrValue: bigint): VmgexitOutcome {
    const v = BigInt.asUintN(64, ghcbMsrValue);
    if ((v & 0xfffn) !== 0n) return this.msr.handle(v);
    const o = this.page.handle(v);
    return o.kind === 'continue' ? { kind: 'continue', newMsrValue: v, event: o.event } : o;
  }
}
