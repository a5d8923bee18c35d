/**
 * What the hypervisor modules need from the rest of the emulator. The CPU glue
 * implements these; tests use small fakes.
 */

/** CPUID answers (CpuidPolicy satisfies this). */
export interface CpuidSource {
  lookup(leaf: number, subleaf: number, out: Uint32Array): void;
}

/** Port I/O behind the IOIO exit (serial, PIT, VGA CRTC ...). `size` is 1, 2 or 4. */
export interface IoBus {
  in(port: number, size: number): number;
  out(port: number, size: number, value: number): void;
}

/** MSRs the guest reaches through the MSR exit (0x7C). `null` / `false` make the hypervisor inject #GP. */
export interface MsrBus {
  read(msr: number): bigint | null;
  write(msr: number, value: bigint): boolean;
}

/** Emulated MMIO (NAE 0x80000001/2). `size` is 1..8; unmapped addresses are the bus's business (all-ones reads). */
export interface MmioBus {
  read(gpa: number, size: number): Uint8Array;
  write(gpa: number, data: Uint8Array): void;
}

/** One SVSM call as the SVSM saw it. */
export interface SvsmCallEvent {
  readonly kind: 'svsm-call';
  readonly protocol: number;
  readonly callId: number;
  /** e.g. 'SVSM_CORE_PVALIDATE'. */
  readonly name: string;
  readonly rcx: bigint;
  /** RAX returned to the guest (0 = SVSM_SUCCESS). */
  readonly result: bigint;
  readonly resultName: string;
  /** Calling area in effect at entry. */
  readonly caa: number;
  readonly detail?: string;
}

export type SvsmEntry =
  | { readonly entered: true; readonly call: SvsmCallEvent | null }
  | { readonly entered: false; readonly reason: string };

/**
 * The VMPL0 software (an SVSM) the hypervisor switches to on a run-VMPL request
 * (MSR 0x016 or NAE 0x80000018). It reads and writes the calling vCPU's
 * registers itself; `call` is null when it found no pending call.
 */
export interface SvsmHandler {
  enter(targetVmpl: number, via: 'msr' | 'ghcb'): SvsmEntry;
}
