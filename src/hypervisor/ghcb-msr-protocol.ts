/**
 * The hypervisor side of the GHCB MSR protocol: one VMGEXIT whose GHCB MSR
 * (0xC0010130) value has non-zero GHCBInfo bits 11:0. Behaviour follows KVM
 * (arch/x86/kvm/svm/sev.c, sev_handle_vmgexit_msr_protocol, Linux 6.12):
 *
 *  - 0x002 SEV info       -> max version | min 1 | C-bit | 0x001
 *  - 0x004 CPUID          -> value of the selected register (subleaf 0) | reg echo | 0x005
 *  - 0x006 AP reset hold  -> the only vCPU would wait for a SIPI forever: terminate
 *  - 0x010 preferred GPA  -> none (0xFFFFFFFFFFFFF) | 0x011         (SNP only, else terminate)
 *  - 0x012 register GPA   -> records the GFN, echoes it | 0x013       (SNP only, else terminate)
 *  - 0x014 page state     -> RMP update; 0x015, or bit 63 | 0x015 on error (SNP only, else terminate)
 *  - 0x016 run at VMPL    -> SvsmHandler; 0x017 with result in 63:32 (not in KVM 6.12: without an
 *                            SVSM the request is treated as unknown)
 *  - 0x080 HV features    -> features << 12 | 0x081
 *  - 0x100 termination    -> terminate with the guest's reason
 *  - anything else        -> KVM leaves the MSR value unchanged and resumes the guest (its response
 *                            check then fails and it terminates itself). That is the default here;
 *                            `unknownRequest: 'terminate'` stops the VM instead. Either way the
 *                            event records the unknown request.
 */
import type { CpuidSource, SvsmCallEvent, SvsmHandler } from './interfaces.js';
import type { RmpTable } from './rmp.js';
import { decodeMsrTermination, GHCB_MSR_INFO, ghcbMsrInfoName, type Termination } from './termination.js';
import { hasEncryptedState, reportedCbit, type VmConfig } from './vm-config.js';

export const GHCB_VERSION_MIN = 1;
export const GHCB_MSR_PREF_GPA_NONE = 0xfffffffffffffn;
export const GHCB_MSR_PSC_RESP_ERROR = (1n << 63n) | BigInt(GHCB_MSR_INFO.PSC_RESP);

export interface VmgexitMsrEvent {
  readonly kind: 'vmgexit-msr';
  /** Kernel name of the request (GHCB_MSR_CPUID_REQ ...) or `unknown 0x...`. */
  readonly request: string;
  readonly valueIn: bigint;
  /** New MSR value; null when the VM terminates. */
  readonly valueOut: bigint | null;
  readonly note?: string;
  readonly svsm?: SvsmCallEvent;
}

export type MsrVmgexitOutcome =
  | { readonly kind: 'continue'; readonly newMsrValue: bigint; readonly event: VmgexitMsrEvent }
  | { readonly kind: 'terminate'; readonly reason: Termination; readonly event: VmgexitMsrEvent };

export interface GhcbMsrProtocolOptions {
  readonly config: VmConfig;
  readonly cpuid: CpuidSource;
  /** Needed for page state changes (SNP). */
  readonly rmp?: RmpTable;
  /** VMPL0 software for run-VMPL requests. */
  readonly svsm?: SvsmHandler;
  /** What to do with an unknown GHCBInfo code: KVM's 'ignore' (default) or 'terminate'. */
  readonly unknownRequest?: 'ignore' | 'terminate';
  readonly onEvent?: (event: VmgexitMsrEvent) => void;
}

const REG_NAMES = ['EAX', 'EBX', 'ECX', 'EDX'] as const;
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export class GhcbMsrProtocol {
  private readonly config: VmConfig;
  private readonly cpuid: CpuidSource;
  private readonly rmp: RmpTable | undefined;
  private readonly svsm: SvsmHandler | undefined;
  private readonly unknownRequest: 'ignore' | 'terminate';
  private readonly onEvent: ((event: VmgexitMsrEvent) => void) | undefined;
  private readonly regs = new Uint32Array(4);
  private registered: bigint | null = null;

  constructor(options: GhcbMsrProtocolOptions) {
    this.config = options.config;
    this.cpuid = options.cpuid;
    this.rmp = options.rmp;
    this.svsm = options.svsm;
    this.unknownRequest = options.unknownRequest ?? 'ignore';
    this.onEvent = options.onEvent;
  }

  /** GPA registered through request 0x012 (SNP), or null. */
  get registeredGhcbGpa(): bigint | null {
    return this.registered;
  }

  /** Handle one VMGEXIT with `msrValue` (GHCBInfo != 0) in the GHCB MSR. */
  handle(msrValue: bigint): MsrVmgexitOutcome {
    const v = BigInt.asUintN(64, msrValue);
    const info = Number(v & 0xfffn);
    const name = ghcbMsrInfoName(info) ?? `unknown ${hex(info)}`;
    const snp = this.config.mode === 'snp';

    const reply = (out: bigint, note?: string, svsm?: SvsmCallEvent): MsrVmgexitOutcome => {
      const event: VmgexitMsrEvent = { kind: 'vmgexit-msr', request: name, valueIn: v, valueOut: out, ...(note ? { note } : {}), ...(svsm ? { svsm } : {}) };
      this.onEvent?.(event);
      return { kind: 'continue', newMsrValue: out, event };
    };
    const stop = (reason: Termination, note?: string): MsrVmgexitOutcome => {
      const event: VmgexitMsrEvent = { kind: 'vmgexit-msr', request: name, valueIn: v, valueOut: null, ...(note ? { note } : {}) };
      this.onEvent?.(event);
      return { kind: 'terminate', reason, event };
    };
    const hvStop = (message: string): MsrVmgexitOutcome => stop({ initiator: 'hypervisor', message, msrValue: v }, message);
    const unknown = (why: string): MsrVmgexitOutcome =>
      this.unknownRequest === 'terminate'
        ? hvStop(`unsupported GHCB MSR request ${hex(info)} (${why})`)
        : reply(v, `unsupported request (${why}); value left unchanged as KVM does`);

    if (!hasEncryptedState(this.config)) {
      return hvStop(`VMGEXIT through the GHCB MSR in a guest without SEV-ES (mode ${this.config.mode})`);
    }

    switch (info) {
      case GHCB_MSR_INFO.SEV_INFO_REQ: {
        const out =
          (BigInt(this.config.ghcbMaxVersion & 0xffff) << 48n) |
          (BigInt(GHCB_VERSION_MIN) << 32n) |
          (BigInt(reportedCbit(this.config) & 0xff) << 24n) |
          BigInt(GHCB_MSR_INFO.SEV_INFO_RESP);
        return reply(out);
      }
      case GHCB_MSR_INFO.CPUID_REQ: {
        const leaf = Number((v >> 32n) & 0xffffffffn);
        const reg = Number((v >> 30n) & 3n);
        this.cpuid.lookup(leaf, 0, this.regs);
        const value = BigInt(this.regs[reg]);
        // KVM rewrites the value and info fields and keeps the rest of the request (the register select).
        const out = (value << 32n) | (v & 0xfffff000n) | BigInt(GHCB_MSR_INFO.CPUID_RESP);
        return reply(out, `CPUID ${hex(leaf)}.${REG_NAMES[reg]} = ${hex(value)}`);
      }
      case GHCB_MSR_INFO.AP_RESET_HOLD_REQ:
        return hvStop('AP reset hold: the only vCPU would wait for a SIPI that never comes');
      case GHCB_MSR_INFO.HV_FT_REQ:
        return reply(((this.config.hvFeatures & 0xfffffffffffffn) << 12n) | BigInt(GHCB_MSR_INFO.HV_FT_RESP));
      case GHCB_MSR_INFO.PREF_GPA_REQ:
        if (!snp) return hvStop('preferred-GPA request from a non-SNP guest');
        return reply((GHCB_MSR_PREF_GPA_NONE << 12n) | BigInt(GHCB_MSR_INFO.PREF_GPA_RESP));
      case GHCB_MSR_INFO.REG_GPA_REQ: {
        if (!snp) return hvStop('GHCB GPA registration from a non-SNP guest');
        const gfn = (v >> 12n) & 0xfffffffffffffn;
        this.registered = gfn << 12n;
        return reply((gfn << 12n) | BigInt(GHCB_MSR_INFO.REG_GPA_RESP), `GHCB registered at ${hex(gfn << 12n)}`);
      }
      case GHCB_MSR_INFO.PSC_REQ: {
        if (!snp) return hvStop('page state change from a non-SNP guest');
        const gfn = Number((v >> 12n) & 0xffffffffffn);
        const op = Number((v >> 52n) & 0xfn);
        if (op !== 1 && op !== 2) return reply(GHCB_MSR_PSC_RESP_ERROR, `invalid page state operation ${op}`);
        const what = `GFN ${hex(gfn)} -> ${op === 1 ? 'private' : 'shared'}`;
        if (this.rmp === undefined) return reply(GHCB_MSR_PSC_RESP_ERROR, `${what}: no RMP model`);
        if (!this.rmp.pageStateChange(gfn, op === 1)) return reply(GHCB_MSR_PSC_RESP_ERROR, `${what}: outside guest RAM`);
        return reply(BigInt(GHCB_MSR_INFO.PSC_RESP), what);
      }
      case GHCB_MSR_INFO.VMPL_REQ: {
        if (!snp || this.svsm === undefined) return unknown('no SVSM modelled');
        const target = Number((v >> 32n) & 0xffn);
        const entry = this.svsm.enter(target, 'msr');
        if (!entry.entered) return reply((1n << 32n) | BigInt(GHCB_MSR_INFO.VMPL_RESP), `run VMPL${target} refused: ${entry.reason}`);
        return reply(BigInt(GHCB_MSR_INFO.VMPL_RESP), `ran VMPL${target}`, entry.call ?? undefined);
      }
      case GHCB_MSR_INFO.TERM_REQ:
        return stop(decodeMsrTermination(v)!);
      default:
        return unknown(ghcbMsrInfoName(info) ? `${ghcbMsrInfoName(info)} is a response code` : 'unknown GHCBInfo');
    }
  }
}
