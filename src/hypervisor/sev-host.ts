import { architecturalRdmsr, architecturalWrmsr } from '../cpu/exec/system.js';
import { PageKeys } from './page-keys.js';
import type { Cpu } from '../cpu/cpu.js';
import { ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE } from '../cpu/mmu.js';
import { Stop, type CpuHost } from '../cpu/host.js';
import { RAX, RBX, RCX, RDX } from '../cpu/registers.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { MSR_SEV_ES_GHCB, MSR_SEV_STATUS, type PortBus } from '../platform/bare-host.js';
import type { CpuidPolicy } from '../platform/cpuid-policy.js';
import { GhcbMsrProtocol } from './ghcb-msr-protocol.js';
import { GhcbPageProtocol } from './ghcb-page.js';
import { PERM_ALL, PERM_EXEC_SUPERVISOR, PERM_EXEC_USER, PERM_READ, PERM_WRITE, RmpTable } from './rmp.js';
import { HostStop } from './host-stop.js';
import { HostView } from './host-view.js';
import { MinimalSvsm, type SvsmRegs } from './svsm.js';
import { formatTermination, type Termination } from './termination.js';
import { hasEncryptedState, HV_FT_SNP, sevStatusFor, type VmConfig } from './vm-config.js';
import { VmgexitDispatcher, type VmgexitEvent } from './vmgexit.js';

/** Exit codes the CPU reports as #VC error codes (SVM exit codes). */
export const VC_RDTSC = 0x6e, VC_CPUID = 0x72, VC_INVD = 0x76, VC_IOIO = 0x7b, VC_MSR = 0x7c, VC_VMMCALL = 0x81, VC_WBINVD = 0x89;
/** An SNP guest touched a private page whose RMP entry is not validated. */
export const VC_PAGE_NOT_VALIDATED = 0x404;
const VC_VECTOR = 29;
/** MSR_SVSM_CAA: the calling area's GPA, answered by the host (an SVSM is present). */
export const MSR_SVSM_CAA = 0xc001f000;

/** One thing the guest asked of its host, for the run report. */
export interface HostEvent {
  kind: 'vmgexit-msr' | 'vmgexit-ghcb' | 'vc' | 'pvalidate' | 'rmpadjust' | 'svsm-call' | 'npf' | 'rmp-conversion' | 'key-switch';
  rip: number;
  /** High half of the RIP (the kernel proper runs at 0xffffffff8...). */
  ripHi: number;
  /** Instructions retired before it (the index of the instruction that caused it). */
  instruction: number;
  /** Exit code, MSR request name, or instruction outcome. */
  detail: string;
  result: string;
}

export interface SevHostOptions {
  config: VmConfig;
  memory: PhysicalMemory;
  policy: CpuidPolicy;
  ports: PortBus;
  /** The SVSM's calling area and its reserved memory (with config.svsm). */
  svsm?: { caa: number; base: number; size: number };
}

/**
 * MSRs whose RDMSR/WRMSR run in the guest without a #VC, because KVM does not
 * intercept them: for every guest the ones svm.c's direct_access_msrs marks
 * "always" (STAR, SYSENTER_CS, FS/GS/KERNEL_GS base, LSTAR, CSTAR, SFMASK:
 * the kernel sets GS base first thing), and for SEV-ES and SNP guests EFER and
 * PAT as well (sev_es_init_vmcb; the 32-bit entry sets EFER.LME this way).
 */
const SEV_ES_UNINTERCEPTED_MSRS: ReadonlySet<number> = new Set([
  0xc0000081, 0x174, 0xc0000100, 0xc0000101, 0xc0000102, 0xc0000082, 0xc0000083, 0xc0000084,
  0xc0000080, 0x277,
]);

/**
 * The stub SEV / SEV-ES / SEV-SNP hypervisor in front of the CPU: decides
 * which instructions become #VC, answers VMGEXIT through the GHCB MSR
 * protocol and the GHCB page, runs PVALIDATE / RMPADJUST against the RMP
 * model, and turns a termination request into the run's verdict.
 */
export class SevHost implements CpuHost {
  readonly rmp: RmpTable;
  readonly events: HostEvent[] = [];
  /** Told of each event as it is recorded, while the CPU is still at it (a run report takes its trace window then). */
  onEvent: ((event: HostEvent) => void) | null = null;
  /** GHCB pages the guest used with the page protocol: GPA -> instruction count of the first use. */
  readonly ghcbPages = new Map<number, number>();
  termination: Termination | null = null;
  private ghcbMsr = 0n;
  private readonly out = new Uint32Array(4);
  private readonly dispatcher: VmgexitDispatcher;
  private readonly encryptedState: boolean;
  private readonly snp: boolean;
  private cpu: Cpu | null = null;
  private readonly privateGhcbSeen = new Set<number>();
  /** SEV and SEV-ES: which pages hold shared data (SNP has its RMP instead). */
  readonly pageKeys: PageKeys | null;
  /** Cap so that a guest looping on exits cannot grow the report without bound. */
  static readonly MAX_EVENTS = 10_000;

  constructor(private readonly o: SevHostOptions) {
    const { config, memory, policy } = o;
    this.encryptedState = hasEncryptedState(config);
    this.snp = config.mode === 'snp';
    // Whoever launched the guest at VMPL n > 0 (the SVSM, from VMPL0) gave VMPL n access to its memory; the SVSM keeps its own.
    const vmpl = config.mode === 'snp' ? config.vmpl : 0;
    this.rmp = new RmpTable(memory.size, { initialLowerVmplPerms: [vmpl === 1 ? PERM_ALL : 0, vmpl === 2 ? PERM_ALL : 0, vmpl === 3 ? PERM_ALL : 0] });
    if (vmpl > 0 && o.svsm) this.rmp.setLaunchPermissions(o.svsm.base, o.svsm.size, vmpl, 0);
    const regs = this.svsmRegisterView();
    const svsm = config.svsm && o.svsm
      ? new MinimalSvsm({ memory, rmp: this.rmp, regs, caa: o.svsm.caa, guestVmpl: config.vmpl as 1 | 2 | 3, base: o.svsm.base, size: o.svsm.size, onEvent: (e) => this.record('svsm-call', `${e.name} (caa 0x${e.caa.toString(16)}, rax=0x${e.result.toString(16)}, rcx=0x${e.rcx.toString(16)})${e.detail ? ': ' + e.detail : ''}`, e.resultName) })
      : undefined;
    const msr = new GhcbMsrProtocol({
      config,
      cpuid: policy,
      rmp: this.rmp,
      svsm,
      onEvent: (e) => this.record('vmgexit-msr', `${e.request} 0x${e.valueIn.toString(16)}`, e.valueOut === null ? 'stopped' : `0x${e.valueOut.toString(16)}`),
    });
    // No RMP under SEV and SEV-ES: which key last wrote each page decides what an access with the other C-bit sees.
    this.pageKeys = this.snp ? null : new PageKeys(memory.size, (page, toShared) => {
      this.record('key-switch', `${toShared ? 'shared (C=0)' : 'private (C=1)'} write to page 0x${page.toString(16)}, which held ${toShared ? 'private' : 'shared'} data`, `page now ${toShared ? 'shared' : 'private'}; its other bytes read as ciphertext through the old C-bit`);
      this.cpu?.flushTlb();
    });
    const ports = o.ports;
    const page = new GhcbPageProtocol({
      config,
      // The host reaches the GHCB and scratch area without the C-bit: under SNP it sees what the RMP lets it see.
      memory: new HostView(memory, this.snp ? (pa) => this.rmp.isPrivate(pa) : (pa) => !this.pageKeys!.isShared(pa)),
      cpuid: policy,
      registration: msr,
      rmp: this.rmp,
      svsm,
      io: { in: (p, s) => ports.portIn(p, s), out: (p, s, v) => ports.portOut(p, s, v) },
      msr: {
        // What KVM emulates for the guest: the CPU's own MSRs (#GP for one it lacks), and the SVSM calling area.
        read: (m) => {
          if (m === MSR_SVSM_CAA && svsm) return BigInt(svsm.caa);
          const cpu = this.cpu;
          if (cpu === null || !architecturalRdmsr(cpu, m)) return null;
          return (BigInt(cpu.msrHi >>> 0) << 32n) | BigInt(cpu.msrLo >>> 0);
        },
        write: (m, v) => this.cpu !== null && architecturalWrmsr(this.cpu, m, Number(v & 0xffffffffn), Number(v >> 32n)),
      },
      onEvent: (e) => this.record('vmgexit-ghcb', `${e.exitName} (0x${e.exitCode.toString(16)}) info1=0x${e.exitInfo1.toString(16)}`, e.result === null ? 'stopped' : `info1=0x${e.result.info1.toString(16)} info2=0x${e.result.info2.toString(16)}`),
    });
    this.dispatcher = new VmgexitDispatcher(msr, page);
  }

  /** Attach to the CPU: install the RMP check on translations. */
  attach(cpu: Cpu): void {
    this.cpu = cpu;
    if (this.snp) {
      const rmp = this.rmp;
      const vmpl = this.o.config.vmpl;
      const observer = {
        uncacheable: false,
        onFill: (pa: number, encrypted: boolean, access: number, lo: number, hi: number): number => {
          if (pa >= rmp.ramSize) return 0;
          // Instruction fetches are always private, whatever the C-bit of their mapping (APM vol. 2, 15.34.5).
          if (encrypted || access === ACCESS_EXEC) {
            if (!rmp.isPrivate(pa)) this.rmpMismatch(cpu, pa, true, access, lo, hi);
            if (!rmp.isValidated(pa)) {
              // #VC PAGE_NOT_VALIDATED reports the faulting linear address in CR2, like #PF.
              cpu.cr2Lo = lo;
              cpu.cr2Hi = hi;
              cpu.raise(VC_VECTOR, VC_PAGE_NOT_VALIDATED);
            }
            if (vmpl > 0) this.checkVmplAccess(cpu, observer, pa, access, lo, hi);
            return 0;
          }
          if (rmp.isPrivate(pa)) this.rmpMismatch(cpu, pa, false, access, lo, hi);
          return 0;
        },
      };
      cpu.mmu.observer = observer;
    } else {
      cpu.mmu.observer = this.pageKeys;
    }
    cpu.exceptionListener = (vector, errorCode) => {
      if (vector === VC_VECTOR) this.record('vc', `#VC exit 0x${errorCode.toString(16)}`, 'delivered');
    };
  }

  /**
   * The C-bit of an access disagrees with the page's RMP state: the CPU exits
   * with an RMP nested page fault. KVM reports it to the VMM as a memory fault
   * (KVM_EXIT_MEMORY_FAULT) and QEMU converts the page to what the access asked
   * for, discarding its contents; a page converted to private is not validated,
   * so a private access then takes #VC 0x404. With --rmp-mismatch terminate the
   * run stops here instead.
   */
  private rmpMismatch(cpu: Cpu, pa: number, privateAccess: boolean, access: number, lo: number, hi: number): void {
    const { page, what, linear } = describeFault(pa, access, lo, hi);
    const access_ = `${privateAccess ? 'private (C=1)' : 'shared (C=0)'} ${what} of page 0x${page.toString(16)} (linear ${linear}), which the RMP holds as ${privateAccess ? 'shared' : 'private'}`;
    if (this.o.config.rmpMismatch === 'terminate') {
      this.record('npf', access_, 'VM stopped (--rmp-mismatch terminate)');
      throw new HostStop(`nested page fault (RMP): ${access_}`);
    }
    this.record('rmp-conversion', access_, `implicit conversion to ${privateAccess ? 'private' : 'shared'}; contents lost`);
    this.rmp.pageStateChange(page / 4096, privateAccess);
    this.o.memory.fill(page, 4096, 0);
    cpu.flushTlb();
  }

  /**
   * A private access at VMPL n > 0 needs the page's VMPL n permission for that
   * access (read; write; execute, user or supervisor by CPL). Without it the
   * CPU exits with a nested page fault (RMP violation) that the host cannot fix
   * by converting the page, so the VM stops. Pages whose permissions are
   * narrower than "all" are never cached in the TLB, so every access is checked.
   */
  private checkVmplAccess(cpu: Cpu, observer: { uncacheable: boolean }, pa: number, access: number, lo: number, hi: number): void {
    const vmpl = this.o.config.vmpl;
    const held = this.rmp.permissions(pa, vmpl);
    const cpl = cpu.seg[1] & 3;
    const need = access === ACCESS_WRITE ? PERM_WRITE : access === ACCESS_EXEC ? (cpl === 3 ? PERM_EXEC_USER : PERM_EXEC_SUPERVISOR) : PERM_READ;
    if ((held & need) === 0) {
      const { page, what, linear } = describeFault(pa, access, lo, hi);
      this.record('npf', `${what} of page 0x${page.toString(16)} (linear ${linear}) at VMPL${vmpl}: RMP permissions 0x${held.toString(16)}`, 'VM stopped');
      throw new HostStop(`nested page fault (RMP): ${what} of private page 0x${page.toString(16)} (linear ${linear}) at VMPL${vmpl}, which holds permissions 0x${held.toString(16)} there; the host cannot resolve it and stops the VM`);
    }
    if (held !== PERM_ALL) observer.uncacheable = true;
  }

  private record(kind: HostEvent['kind'], detail: string, result: string): void {
    if (this.events.length >= SevHost.MAX_EVENTS) return;
    const event: HostEvent = { kind, rip: this.cpu?.curRipLo ?? 0, ripHi: this.cpu?.curRipHi ?? 0, instruction: this.cpu?.icount ?? 0, detail, result };
    this.events.push(event);
    this.onEvent?.(event);
  }

  /** A live BigInt view of the calling CPU's registers for the SVSM. */
  private svsmRegisterView(): SvsmRegs {
    const reg = (r: number): { get: () => bigint; set: (v: bigint) => void } => ({
      get: () => this.cpu!.reg64(r),
      set: (v: bigint) => this.cpu!.setReg64(r, BigInt.asUintN(64, v)),
    });
    const view = {} as SvsmRegs;
    const map: Record<keyof SvsmRegs, number> = { rax: RAX, rcx: RCX, rdx: RDX, r8: 8, r9: 9 };
    for (const [name, r] of Object.entries(map)) Object.defineProperty(view, name, { ...reg(r), enumerable: true });
    return view;
  }

  private vc(cpu: Cpu, exitCode: number): never {
    return cpu.raise(VC_VECTOR, exitCode);
  }

  cpuid(cpu: Cpu): void {
    if (this.encryptedState) this.vc(cpu, VC_CPUID);
    this.o.policy.lookup(cpu.regLo[RAX], cpu.regLo[RCX], this.out);
    cpu.setReg(RAX, 4, this.out[0], 0);
    cpu.setReg(RBX, 4, this.out[1], 0);
    cpu.setReg(RCX, 4, this.out[2], 0);
    cpu.setReg(RDX, 4, this.out[3], 0);
  }

  rdmsr(cpu: Cpu, msr: number): boolean {
    if (msr === MSR_SEV_STATUS) {
      const v = sevStatusFor(this.o.config);
      cpu.msrLo = Number(v & 0xffffffffn);
      cpu.msrHi = Number(v >> 32n);
      return true;
    }
    if (msr === MSR_SEV_ES_GHCB) {
      cpu.msrLo = Number(this.ghcbMsr & 0xffffffffn);
      cpu.msrHi = Number(this.ghcbMsr >> 32n);
      return true;
    }
    if (this.encryptedState && !SEV_ES_UNINTERCEPTED_MSRS.has(msr)) this.vc(cpu, VC_MSR);
    return false;
  }

  wrmsr(cpu: Cpu, msr: number, lo: number, hi: number): boolean {
    if (msr === MSR_SEV_ES_GHCB) {
      this.ghcbMsr = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
      return true;
    }
    if (msr === MSR_SEV_STATUS) cpu.gp(0); // read-only
    if (this.encryptedState && !SEV_ES_UNINTERCEPTED_MSRS.has(msr)) this.vc(cpu, VC_MSR);
    return false;
  }

  portIn(cpu: Cpu, port: number, size: number): number {
    if (this.encryptedState) this.vc(cpu, VC_IOIO);
    return this.o.ports.portIn(port, size);
  }

  portOut(cpu: Cpu, port: number, size: number, value: number): void {
    if (this.encryptedState) this.vc(cpu, VC_IOIO);
    this.o.ports.portOut(port, size, value);
  }

  vmgexit(cpu: Cpu): void {
    if (!this.encryptedState) cpu.ud();
    if (this.snp) this.checkGhcbShared();
    const v = this.ghcbMsr;
    // Bounded: a hostile guest exiting with ever new GHCB addresses must not grow it without end.
    if (v !== 0n && (v & 0xfffn) === 0n && v < BigInt(this.rmp.ramSize) && this.ghcbPages.size < 64 && !this.ghcbPages.has(Number(v))) this.ghcbPages.set(Number(v), cpu.icount);
    const outcome = this.dispatcher.handle(this.ghcbMsr);
    if (outcome.kind === 'terminate') {
      this.termination = outcome.reason;
      cpu.stop = Stop.Terminated;
      cpu.stopDetail = formatTermination(outcome.reason, this.snpUnsupportedCause());
      return;
    }
    this.ghcbMsr = outcome.newMsrValue;
    // Page-state changes and validations may have changed what a translation may touch.
    if (this.snp) cpu.flushTlb();
  }

  /** A GHCB-page exit whose GHCB the RMP still assigns to the guest: the host reads ciphertext (say so once per page). */
  private checkGhcbShared(): void {
    const v = this.ghcbMsr;
    if (v === 0n || (v & 0xfffn) !== 0n || v >= BigInt(this.rmp.ramSize)) return;
    const gpa = Number(v);
    if (!this.rmp.isPrivate(gpa) || this.privateGhcbSeen.has(gpa)) return;
    this.privateGhcbSeen.add(gpa);
    const detail = `the GHCB at 0x${gpa.toString(16)} is private (the guest never made it shared): the host reads ciphertext from it and its answers do not reach the guest`;
    this.rmp.hostFinding('ghcb-private', 'error', gpa, detail);
    this.record('vmgexit-ghcb', detail, 'garbage GHCB');
  }

  /** Which of GHCB_SNP_UNSUPPORTED's causes the host can see in its own configuration. */
  private snpUnsupportedCause(): string | undefined {
    const c = this.o.config;
    if (c.mode !== 'snp') return undefined;
    if ((c.hvFeatures & HV_FT_SNP) === 0n) return 'the hypervisor does not advertise GHCB feature bit 0 (SNP) (--hv-features)';
    if (!c.cpuidPage) return 'the firmware handed over no CC blob (--no-cpuid-page), so the kernel finds no SNP secrets/CPUID pages';
    return undefined;
  }

  vmmcall(cpu: Cpu): void {
    if (this.encryptedState) this.vc(cpu, VC_VMMCALL);
    cpu.ud();
  }

  /** RAX holds a guest-virtual address; the RMP works on its guest-physical page. */
  private targetGpa(cpu: Cpu): number {
    // The operand is translated, not accessed: no RMP validation check, and no
    // TLB entry may survive that skipped the check.
    const observer = cpu.mmu.observer;
    cpu.mmu.observer = null;
    try {
      return cpu.mmu.translate(cpu.regLo[RAX], cpu.regHi[RAX], ACCESS_READ);
    } finally {
      cpu.mmu.observer = observer;
      cpu.flushTlb();
    }
  }

  pvalidate(cpu: Cpu): void {
    if (!this.snp) cpu.ud();
    const gpa = this.targetGpa(cpu);
    const size = cpu.regLo[RCX] & 1;
    const validate = (cpu.regLo[RDX] & 1) === 1;
    const r = this.rmp.pvalidate(gpa, size as 0 | 1, validate, this.o.config.vmpl);
    if ('fault' in r) {
      this.record('pvalidate', `gpa=0x${gpa.toString(16)} ${validate ? 'validate' : 'rescind'}`, `#GP: ${r.reason}`);
      cpu.gp(0);
    }
    cpu.setReg(RAX, 8, r.rc, 0);
    cpu.setArith(r.cf ? 1 : 0);
    this.record('pvalidate', `gpa=0x${gpa.toString(16)} ${size ? '2M' : '4K'} ${validate ? 'validate' : 'rescind'}`, `rc=${r.rc}${r.cf ? ' CF=1' : ''}`);
    cpu.flushTlb();
  }

  rmpadjust(cpu: Cpu): void {
    if (!this.snp) cpu.ud();
    const gpa = this.targetGpa(cpu);
    const rdx = cpu.reg64(RDX);
    const r = this.rmp.rmpadjust(gpa, (cpu.regLo[RCX] & 1) as 0 | 1, rdx, this.o.config.vmpl);
    cpu.setReg(RAX, 8, r.rc, 0);
    cpu.setArith(0);
    this.record('rmpadjust', `gpa=0x${gpa.toString(16)} rdx=0x${rdx.toString(16)} at VMPL${this.o.config.vmpl}`, `rc=${r.rc}`);
  }

  halt(cpu: Cpu): void {
    cpu.stop = Stop.Halted;
    cpu.stopDetail = 'hlt';
  }

  intercept(cpu: Cpu, exitCode: number): boolean {
    if (this.encryptedState && (exitCode === VC_WBINVD || exitCode === VC_INVD)) this.vc(cpu, exitCode);
    return false;
  }
}

export type { VmgexitEvent };

/** The page, the kind of access and the linear address of a nested page fault, for its verdict and event. */
function describeFault(pa: number, access: number, lo: number, hi: number): { page: number; what: string; linear: string } {
  return {
    page: Math.floor(pa / 4096) * 4096,
    what: access === ACCESS_WRITE ? 'write' : access === ACCESS_EXEC ? 'instruction fetch' : 'read',
    linear: hi ? `0x${hi.toString(16)}${(lo >>> 0).toString(16).padStart(8, '0')}` : `0x${(lo >>> 0).toString(16)}`,
  };
}
