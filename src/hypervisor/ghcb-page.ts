/**
 * The GHCB page (struct ghcb, arch/x86/include/asm/svm.h) and the hypervisor
 * side of the GHCB page protocol: one VMGEXIT with the page's GPA in the GHCB
 * MSR. Modelled on KVM 6.12 (sev_handle_vmgexit, sev_es_validate_vmgexit,
 * setup_vmgexit_scratch, snp_begin_psc):
 *
 *  - GPA 0 or outside RAM: nothing happens, the guest resumes.
 *  - SNP and the GPA is not the registered one: the VM is stopped (KVM returns -EINVAL).
 *  - The valid bitmap is read and cleared; inputs missing their valid bit read as 0.
 *  - ghcb_usage != 0 -> sw_exit_info_1 = 2, sw_exit_info_2 = 2 (invalid usage);
 *    sw_exit_code / exit_info_1 / exit_info_2 not valid, or an exit's inputs
 *    not valid -> 2 / 4 (missing input); unknown exit code -> 2 / 6 (invalid event).
 *  - Otherwise exit_info_1 = exit_info_2 = 0 and the exit runs; results go to
 *    the GHCB (exit_info_2, shared buffer) and, as KVM's sev_es_sync_to_ghcb
 *    does, RAX, RBX, RCX and RDX are written back marked valid after every exit.
 *
 * protocol_version is not checked by KVM; here a value outside
 * [1, ghcbMaxVersion] is noted ('warn', default), ignored ('off') or answered
 * with 2 / 2 invalid usage ('strict', our choice of code).
 */
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { CpuidSource, IoBus, MmioBus, MsrBus, SvsmCallEvent, SvsmHandler } from './interfaces.js';
import { gpaToNumber, readU64, writeU64 } from './mem64.js';
import type { RmpTable } from './rmp.js';
import { SAVE_AREA } from './save-area.js';
import * as X from './svm-exit.js';
import { decodeGhcbTermination, type Termination } from './termination.js';
import type { VmConfig } from './vm-config.js';

/** Byte offsets inside the GHCB page: the save-area fields it mirrors, then its own. */
export const GHCB_OFFSET = {
  cpl: SAVE_AREA.cpl,
  xss: SAVE_AREA.xss,
  dr7: SAVE_AREA.dr7,
  rip: SAVE_AREA.rip,
  rsp: SAVE_AREA.rsp,
  rax: SAVE_AREA.rax,
  rcx: SAVE_AREA.rcx,
  rdx: SAVE_AREA.rdx,
  rbx: SAVE_AREA.rbx,
  rbp: SAVE_AREA.rbp,
  rsi: SAVE_AREA.rsi,
  rdi: SAVE_AREA.rdi,
  r8: SAVE_AREA.r8,
  r9: SAVE_AREA.r9,
  r10: SAVE_AREA.r10,
  r11: SAVE_AREA.r11,
  r12: SAVE_AREA.r12,
  r13: SAVE_AREA.r13,
  r14: SAVE_AREA.r14,
  r15: SAVE_AREA.r15,
  sw_exit_code: 0x390,
  sw_exit_info_1: 0x398,
  sw_exit_info_2: 0x3a0,
  sw_scratch: 0x3a8,
  xcr0: SAVE_AREA.xcr0,
  valid_bitmap: 0x3f0,
  x87_state_gpa: 0x400,
  shared_buffer: 0x800,
  protocol_version: 0xffa,
  ghcb_usage: 0xffc,
} as const;

export type GhcbField = Exclude<keyof typeof GHCB_OFFSET, 'valid_bitmap' | 'x87_state_gpa' | 'shared_buffer' | 'protocol_version' | 'ghcb_usage'>;

export const GHCB_SHARED_BUF_SIZE = 2032;
export const GHCB_SHARED_BUF_END = GHCB_OFFSET.shared_buffer + GHCB_SHARED_BUF_SIZE; // 0xFF0
export const VALID_BITMAP_BYTES = 16;

/** Valid-bitmap bit of a save-area field: its offset in quadwords. */
export function validBit(field: GhcbField): number {
  return GHCB_OFFSET[field] >> 3;
}

export function isFieldValid(mem: PhysicalMemory, ghcb: number, field: GhcbField): boolean {
  const b = validBit(field);
  return ((mem.read8(ghcb + GHCB_OFFSET.valid_bitmap + (b >> 3)) >> (b & 7)) & 1) !== 0;
}

export function markFieldValid(mem: PhysicalMemory, ghcb: number, field: GhcbField): void {
  const b = validBit(field);
  const at = ghcb + GHCB_OFFSET.valid_bitmap + (b >> 3);
  mem.write8(at, mem.read8(at) | (1 << (b & 7)));
}

export function clearValidBitmap(mem: PhysicalMemory, ghcb: number): void {
  mem.fill(ghcb + GHCB_OFFSET.valid_bitmap, VALID_BITMAP_BYTES, 0);
}

/** Read a save-area field (cpl is one byte; everything else 8). */
export function getField(mem: PhysicalMemory, ghcb: number, field: GhcbField): bigint {
  return field === 'cpl' ? BigInt(mem.read8(ghcb + GHCB_OFFSET.cpl)) : readU64(mem, ghcb + GHCB_OFFSET[field]);
}

/** Write a save-area field and mark it valid (the kernel's ghcb_set_<field>). */
export function setField(mem: PhysicalMemory, ghcb: number, field: GhcbField, value: bigint): void {
  if (field === 'cpl') mem.write8(ghcb + GHCB_OFFSET.cpl, Number(value & 0xffn));
  else writeU64(mem, ghcb + GHCB_OFFSET[field], value);
  markFieldValid(mem, ghcb, field);
}

/** sw_exit_info_1[31:0] results. */
export const GHCB_RESULT_OK = 0n;
export const GHCB_RESULT_EXCEPTION = 1n;
export const GHCB_RESULT_ERROR = 2n;

/** sw_exit_info_2 codes with result 2. */
export const GHCB_ERR_NOT_REGISTERED = 1n;
export const GHCB_ERR_INVALID_USAGE = 2n;
export const GHCB_ERR_INVALID_SCRATCH_AREA = 3n;
export const GHCB_ERR_MISSING_INPUT = 4n;
export const GHCB_ERR_INVALID_INPUT = 5n;
export const GHCB_ERR_INVALID_EVENT = 6n;

/** Event injection for result 1: #GP, type exception, valid (what KVM sends for a failed MSR access). */
export const INJECT_GP = 13n | (3n << 8n) | (1n << 31n);

/** PSC (NAE 0x80000010) results in sw_exit_info_2. */
export const VMGEXIT_PSC_ERROR_GENERIC = 0x100n << 32n;
export const VMGEXIT_PSC_ERROR_INVALID_HDR = (1n << 32n) | 1n;
export const VMGEXIT_PSC_ERROR_INVALID_ENTRY = (1n << 32n) | 2n;

/** IOIO exit_info_1 bits (same as the SVM IOIO intercept). */
export const IOIO_TYPE_IN = 1n << 0n;
export const IOIO_STR = 1n << 2n;
export const IOIO_REP = 1n << 3n;
export const IOIO_DATA_8 = 1n << 4n;
export const IOIO_DATA_16 = 1n << 5n;
export const IOIO_DATA_32 = 1n << 6n;
export const IOIO_ADDR_64 = 1n << 9n;

export interface IoioInfo {
  readonly in: boolean;
  readonly string: boolean;
  readonly rep: boolean;
  /** Operand size in bytes from bits 6:4 (1, 2 or 4 when well formed). */
  readonly size: number;
  /** Address size in bits from bits 9:7 (16, 32, 64; 0 when none set). */
  readonly addressSize: number;
  readonly segment: number;
  readonly port: number;
}

export function decodeIoioInfo(info: bigint): IoioInfo {
  const asz = Number((info >> 7n) & 7n);
  return {
    in: (info & IOIO_TYPE_IN) !== 0n,
    string: (info & IOIO_STR) !== 0n,
    rep: (info & IOIO_REP) !== 0n,
    size: Number((info >> 4n) & 7n),
    addressSize: asz & 4 ? 64 : asz & 2 ? 32 : asz & 1 ? 16 : 0,
    segment: Number((info >> 10n) & 7n),
    port: Number((info >> 16n) & 0xffffn),
  };
}

export function encodeIoioInfo(o: { in: boolean; port: number; size: 1 | 2 | 4; string?: boolean; rep?: boolean; segment?: number }): bigint {
  return (
    (o.in ? IOIO_TYPE_IN : 0n) |
    (o.string ? IOIO_STR : 0n) |
    (o.rep ? IOIO_REP : 0n) |
    (BigInt(o.size) << 4n) |
    IOIO_ADDR_64 |
    (BigInt((o.segment ?? 0) & 7) << 10n) |
    (BigInt(o.port & 0xffff) << 16n)
  );
}

export interface VmgexitGhcbEvent {
  readonly kind: 'vmgexit-ghcb';
  readonly ghcbGpa: bigint;
  readonly exitCode: bigint;
  readonly exitName: string;
  readonly exitInfo1: bigint;
  readonly exitInfo2: bigint;
  /** What the guest finds in sw_exit_info_1/2 afterwards (null when the VM stopped). */
  readonly result: { readonly info1: bigint; readonly info2: bigint } | null;
  readonly note?: string;
  readonly svsm?: SvsmCallEvent;
}

export type GhcbVmgexitOutcome =
  | { readonly kind: 'continue'; readonly event: VmgexitGhcbEvent }
  | { readonly kind: 'terminate'; readonly reason: Termination; readonly event: VmgexitGhcbEvent };

export type ProtocolVersionCheck = 'off' | 'warn' | 'strict';

export interface GhcbPageProtocolOptions {
  readonly config: VmConfig;
  readonly memory: PhysicalMemory;
  readonly cpuid: CpuidSource;
  /** Where the registered GHCB GPA lives (the GhcbMsrProtocol instance). */
  readonly registration: { readonly registeredGhcbGpa: bigint | null };
  readonly rmp?: RmpTable;
  /** Port I/O; without one, IN reads all-ones and OUT is dropped. */
  readonly io?: IoBus;
  /** MSRs; without one, every access gets #GP injected. */
  readonly msr?: MsrBus;
  /** MMIO; without one, reads return all-ones and writes are dropped. */
  readonly mmio?: MmioBus;
  readonly svsm?: SvsmHandler;
  /** RDTSC value source; default: a counter advancing 1000 per read. */
  readonly tsc?: () => bigint;
  readonly protocolVersionCheck?: ProtocolVersionCheck;
  readonly onEvent?: (event: VmgexitGhcbEvent) => void;
}

/** KVM's limit for a scratch area outside the GHCB (GHCB v1 only). */
export const GHCB_SCRATCH_AREA_LIMIT = 16 * 4096;
const KVM_ENOSYS = 1000n;
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** Register values the exit reads and writes (KVM's vcpu->arch.regs view). */
interface Regs {
  rax: bigint;
  rbx: bigint;
  rcx: bigint;
  rdx: bigint;
}

type ExitResult =
  | { readonly kind: 'ok'; readonly note?: string; readonly svsm?: SvsmCallEvent }
  | { readonly kind: 'error'; readonly code: bigint; readonly note: string }
  | { readonly kind: 'inject'; readonly info2: bigint; readonly note: string }
  | { readonly kind: 'terminate'; readonly reason: Termination };

interface Scratch {
  readonly gpa: number;
  /** Bytes usable from `gpa`. */
  readonly len: number;
}

export class GhcbPageProtocol {
  private readonly o: GhcbPageProtocolOptions;
  private readonly mem: PhysicalMemory;
  private readonly cpuidOut = new Uint32Array(4);
  private tscCounter = 0n;
  private apJumpTable = 0n;
  private dr7 = 0x400n;

  constructor(options: GhcbPageProtocolOptions) {
    this.o = options;
    this.mem = options.memory;
  }

  /** Handle one VMGEXIT with a GHCB GPA (GHCBInfo bits 11:0 zero) in the GHCB MSR. */
  handle(ghcbGpa: bigint): GhcbVmgexitOutcome {
    const mem = this.mem;
    const blank = (note: string): GhcbVmgexitOutcome => {
      const event: VmgexitGhcbEvent = {
        kind: 'vmgexit-ghcb',
        ghcbGpa,
        exitCode: 0n,
        exitName: 'none',
        exitInfo1: 0n,
        exitInfo2: 0n,
        result: null,
        note,
      };
      this.o.onEvent?.(event);
      return { kind: 'continue', event };
    };
    if (ghcbGpa === 0n) return blank('GHCB GPA is not set: VMGEXIT ignored (KVM resumes the guest)');
    const g = gpaToNumber(ghcbGpa);
    if (g === null || (g & 0xfff) !== 0 || g + 0x1000 > mem.size) {
      return blank(`GHCB GPA ${hex(ghcbGpa)} cannot be mapped: VMGEXIT ignored (KVM resumes the guest)`);
    }
    if (this.o.config.mode === 'snp' && this.o.registration.registeredGhcbGpa !== ghcbGpa) {
      const reg = this.o.registration.registeredGhcbGpa;
      const message = `GHCB GPA ${hex(ghcbGpa)} is not registered (registered: ${reg === null ? 'none' : hex(reg)})`;
      const event: VmgexitGhcbEvent = {
        kind: 'vmgexit-ghcb',
        ghcbGpa,
        exitCode: readU64(mem, g + GHCB_OFFSET.sw_exit_code),
        exitName: X.svmExitName(readU64(mem, g + GHCB_OFFSET.sw_exit_code)),
        exitInfo1: readU64(mem, g + GHCB_OFFSET.sw_exit_info_1),
        exitInfo2: readU64(mem, g + GHCB_OFFSET.sw_exit_info_2),
        result: null,
        note: message,
      };
      this.o.onEvent?.(event);
      return { kind: 'terminate', reason: { initiator: 'hypervisor', message }, event };
    }

    // Snapshot the inputs (sev_es_sync_from_ghcb), then clear the valid bitmap.
    const valid = mem.readBytes(g + GHCB_OFFSET.valid_bitmap, VALID_BITMAP_BYTES);
    const has = (f: GhcbField): boolean => {
      const b = validBit(f);
      return ((valid[b >> 3] >> (b & 7)) & 1) !== 0;
    };
    const ifValid = (f: GhcbField): bigint => (has(f) ? getField(mem, g, f) : 0n);
    const regs: Regs = { rax: ifValid('rax'), rbx: ifValid('rbx'), rcx: ifValid('rcx'), rdx: ifValid('rdx') };
    const exitCode = readU64(mem, g + GHCB_OFFSET.sw_exit_code);
    const info1 = readU64(mem, g + GHCB_OFFSET.sw_exit_info_1);
    const info2 = readU64(mem, g + GHCB_OFFSET.sw_exit_info_2);
    const scratch = ifValid('sw_scratch');
    clearValidBitmap(mem, g);

    const finish = (r: ExitResult, notes: string[]): GhcbVmgexitOutcome => {
      const base = { kind: 'vmgexit-ghcb' as const, ghcbGpa, exitCode, exitName: X.svmExitName(exitCode), exitInfo1: info1, exitInfo2: info2 };
      if (r.kind === 'terminate') {
        const event: VmgexitGhcbEvent = { ...base, result: null };
        this.o.onEvent?.(event);
        return { kind: 'terminate', reason: r.reason, event };
      }
      if (r.kind === 'error') {
        setField(mem, g, 'sw_exit_info_1', GHCB_RESULT_ERROR);
        setField(mem, g, 'sw_exit_info_2', r.code);
      } else if (r.kind === 'inject') {
        setField(mem, g, 'sw_exit_info_1', GHCB_RESULT_EXCEPTION);
        setField(mem, g, 'sw_exit_info_2', r.info2);
      }
      if (r.kind !== 'ok' || r.note !== undefined) notes.push(r.note!);
      // sev_es_sync_to_ghcb: RAX..RDX always go back, marked valid.
      setField(mem, g, 'rax', regs.rax);
      setField(mem, g, 'rbx', regs.rbx);
      setField(mem, g, 'rcx', regs.rcx);
      setField(mem, g, 'rdx', regs.rdx);
      const event: VmgexitGhcbEvent = {
        ...base,
        result: { info1: readU64(mem, g + GHCB_OFFSET.sw_exit_info_1), info2: readU64(mem, g + GHCB_OFFSET.sw_exit_info_2) },
        ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
        ...(r.kind === 'ok' && r.svsm !== undefined ? { svsm: r.svsm } : {}),
      };
      this.o.onEvent?.(event);
      return { kind: 'continue', event };
    };

    const notes: string[] = [];
    const invalid = this.validate(g, has, exitCode, info1, regs, notes);
    if (invalid !== null) return finish(invalid, notes);

    setField(mem, g, 'sw_exit_info_1', 0n);
    setField(mem, g, 'sw_exit_info_2', 0n);
    return finish(this.dispatch(g, exitCode, info1, info2, scratch, regs), notes);
  }

  /** Usage, protocol version and per-exit input checks (sev_es_validate_vmgexit). */
  private validate(
    g: number,
    has: (f: GhcbField) => boolean,
    exitCode: bigint,
    info1: bigint,
    regs: Regs,
    notes: string[],
  ): ExitResult | null {
    const usage = this.mem.read32(g + GHCB_OFFSET.ghcb_usage);
    if (usage !== 0) return { kind: 'error', code: GHCB_ERR_INVALID_USAGE, note: `ghcb_usage ${hex(usage)} is not 0` };
    const version = this.mem.read16(g + GHCB_OFFSET.protocol_version);
    const check = this.o.protocolVersionCheck ?? 'warn';
    if (check !== 'off' && (version < 1 || version > this.o.config.ghcbMaxVersion)) {
      const text = `protocol_version ${version} is outside the offered range 1..${this.o.config.ghcbMaxVersion}`;
      if (check === 'strict') return { kind: 'error', code: GHCB_ERR_INVALID_USAGE, note: text };
      notes.push(text);
    }
    const missing = (what: string): ExitResult => ({ kind: 'error', code: GHCB_ERR_MISSING_INPUT, note: `missing input: ${what}` });
    if (!has('sw_exit_code') || !has('sw_exit_info_1') || !has('sw_exit_info_2')) return missing('sw_exit_code/sw_exit_info_1/sw_exit_info_2');
    const snp = this.o.config.mode === 'snp';
    switch (exitCode) {
      case X.SVM_EXIT_READ_DR7:
      case X.SVM_EXIT_RDTSC:
      case X.SVM_EXIT_RDTSCP:
      case X.SVM_EXIT_INVD:
      case X.SVM_EXIT_WBINVD:
      case X.SVM_VMGEXIT_NMI_COMPLETE:
      case X.SVM_VMGEXIT_AP_JUMP_TABLE:
      case X.SVM_VMGEXIT_UNSUPPORTED_EVENT:
      case X.SVM_VMGEXIT_HV_FEATURES:
      case X.SVM_VMGEXIT_TERM_REQUEST:
        return null;
      case X.SVM_EXIT_WRITE_DR7:
        return has('rax') ? null : missing('rax');
      case X.SVM_EXIT_CPUID:
        if (!has('rax') || !has('rcx')) return missing('rax/rcx');
        if (regs.rax === 0xdn && !has('xcr0')) return missing('xcr0 for leaf 0xD');
        return null;
      case X.SVM_EXIT_IOIO:
        if (info1 & IOIO_STR) return has('sw_scratch') ? null : missing('sw_scratch');
        if ((info1 & IOIO_TYPE_IN) === 0n && !has('rax')) return missing('rax for OUT');
        return null;
      case X.SVM_EXIT_MSR:
        if (!has('rcx')) return missing('rcx');
        if (info1 !== 0n && (!has('rax') || !has('rdx'))) return missing('rax/rdx for WRMSR');
        return null;
      case X.SVM_EXIT_VMMCALL:
        return has('rax') && has('cpl') ? null : missing('rax/cpl');
      case X.SVM_VMGEXIT_MMIO_READ:
      case X.SVM_VMGEXIT_MMIO_WRITE:
        return has('sw_scratch') ? null : missing('sw_scratch');
      case X.SVM_VMGEXIT_PSC:
        return snp && has('sw_scratch') ? null : missing(snp ? 'sw_scratch' : 'PSC from a non-SNP guest');
      case X.SVM_VMGEXIT_SNP_RUN_VMPL:
        if (snp && this.o.svsm !== undefined) return null;
        return { kind: 'error', code: GHCB_ERR_INVALID_EVENT, note: 'run-VMPL without an SVSM' };
      default:
        return { kind: 'error', code: GHCB_ERR_INVALID_EVENT, note: `exit code ${hex(exitCode)} is not supported` };
    }
  }

  private dispatch(g: number, exitCode: bigint, info1: bigint, info2: bigint, scratch: bigint, regs: Regs): ExitResult {
    const mem = this.mem;
    switch (exitCode) {
      case X.SVM_EXIT_CPUID: {
        const leaf = Number(regs.rax & 0xffffffffn), sub = Number(regs.rcx & 0xffffffffn);
        this.o.cpuid.lookup(leaf, sub, this.cpuidOut);
        regs.rax = BigInt(this.cpuidOut[0]);
        regs.rbx = BigInt(this.cpuidOut[1]);
        regs.rcx = BigInt(this.cpuidOut[2]);
        regs.rdx = BigInt(this.cpuidOut[3]);
        return { kind: 'ok', note: `CPUID ${hex(leaf)}.${sub}` };
      }
      case X.SVM_EXIT_IOIO:
        return this.ioio(g, info1, info2, scratch, regs);
      case X.SVM_EXIT_MSR: {
        const msr = Number(regs.rcx & 0xffffffffn);
        const bus = this.o.msr;
        if (info1 === 0n) {
          const value = bus?.read(msr) ?? null;
          if (value === null) return { kind: 'inject', info2: INJECT_GP, note: `RDMSR ${hex(msr)}: #GP` };
          regs.rax = value & 0xffffffffn;
          regs.rdx = (value >> 32n) & 0xffffffffn;
          return { kind: 'ok', note: `RDMSR ${hex(msr)} = ${hex(value)}` };
        }
        const value = ((regs.rdx & 0xffffffffn) << 32n) | (regs.rax & 0xffffffffn);
        if (bus === undefined || !bus.write(msr, value)) return { kind: 'inject', info2: INJECT_GP, note: `WRMSR ${hex(msr)} <- ${hex(value)}: #GP` };
        return { kind: 'ok', note: `WRMSR ${hex(msr)} <- ${hex(value)}` };
      }
      case X.SVM_VMGEXIT_MMIO_READ:
      case X.SVM_VMGEXIT_MMIO_WRITE: {
        const write = exitCode === X.SVM_VMGEXIT_MMIO_WRITE;
        if (info2 === 0n) return { kind: 'ok', note: 'zero-length MMIO' };
        if (this.o.config.ghcbMaxVersion >= 2 && info2 > 8n) return { kind: 'error', code: GHCB_ERR_INVALID_INPUT, note: `MMIO size ${info2} > 8` };
        const size = Number(info2);
        const s = this.scratchArea(g, scratch, size);
        if (s === null) return { kind: 'error', code: GHCB_ERR_INVALID_SCRATCH_AREA, note: `bad scratch area ${hex(scratch)}` };
        const addr = gpaToNumber(info1);
        if (addr === null) return { kind: 'error', code: GHCB_ERR_INVALID_INPUT, note: `MMIO address ${hex(info1)}` };
        if (write) {
          const data = mem.readBytes(s.gpa, size);
          this.o.mmio?.write(addr, data);
          return { kind: 'ok', note: `MMIO write ${hex(addr)} size ${size}` };
        }
        const data = this.o.mmio?.read(addr, size) ?? new Uint8Array(size).fill(0xff);
        mem.writeBytes(s.gpa, data.subarray(0, size));
        return { kind: 'ok', note: `MMIO read ${hex(addr)} size ${size}` };
      }
      case X.SVM_VMGEXIT_PSC:
        return this.psc(g, scratch);
      case X.SVM_VMGEXIT_HV_FEATURES:
        setField(mem, g, 'sw_exit_info_2', this.o.config.hvFeatures);
        return { kind: 'ok' };
      case X.SVM_VMGEXIT_TERM_REQUEST:
        return { kind: 'terminate', reason: decodeGhcbTermination(info1, info2) };
      case X.SVM_VMGEXIT_UNSUPPORTED_EVENT:
        return {
          kind: 'terminate',
          reason: { initiator: 'hypervisor', message: `guest reported an unsupported event: exit_info_1 ${hex(info1)}, exit_info_2 ${hex(info2)}` },
        };
      case X.SVM_VMGEXIT_SNP_RUN_VMPL: {
        const target = Number(info1 & 0xffn);
        const entry = this.o.svsm!.enter(target, 'ghcb');
        if (!entry.entered) return { kind: 'error', code: GHCB_ERR_INVALID_INPUT, note: `run VMPL${target} refused: ${entry.reason}` };
        return entry.call === null ? { kind: 'ok', note: `ran VMPL${target}` } : { kind: 'ok', note: `ran VMPL${target}`, svsm: entry.call };
      }
      case X.SVM_EXIT_RDTSC:
      case X.SVM_EXIT_RDTSCP: {
        const tsc = this.o.tsc ? this.o.tsc() : (this.tscCounter += 1000n);
        regs.rax = tsc & 0xffffffffn;
        regs.rdx = (tsc >> 32n) & 0xffffffffn;
        if (exitCode === X.SVM_EXIT_RDTSCP) regs.rcx = 0n; // TSC_AUX
        return { kind: 'ok' };
      }
      case X.SVM_EXIT_READ_DR7:
        regs.rax = this.dr7;
        return { kind: 'ok' };
      case X.SVM_EXIT_WRITE_DR7:
        this.dr7 = regs.rax;
        return { kind: 'ok' };
      case X.SVM_EXIT_VMMCALL:
        regs.rax = BigInt.asUintN(64, -KVM_ENOSYS);
        return { kind: 'ok', note: 'hypercall not implemented (-KVM_ENOSYS)' };
      case X.SVM_VMGEXIT_AP_JUMP_TABLE:
        if (info1 === 0n) {
          this.apJumpTable = info2;
          return { kind: 'ok' };
        }
        if (info1 === 1n) {
          setField(mem, g, 'sw_exit_info_2', this.apJumpTable);
          return { kind: 'ok' };
        }
        return { kind: 'error', code: GHCB_ERR_INVALID_INPUT, note: `AP jump table request ${hex(info1)}` };
      case X.SVM_EXIT_INVD:
      case X.SVM_EXIT_WBINVD:
      case X.SVM_VMGEXIT_NMI_COMPLETE:
        return { kind: 'ok' };
      default:
        return { kind: 'error', code: GHCB_ERR_INVALID_EVENT, note: `exit code ${hex(exitCode)} is not supported` };
    }
  }

  private ioio(g: number, info1: bigint, info2: bigint, scratch: bigint, regs: Regs): ExitResult {
    const io = decodeIoioInfo(info1);
    if (io.size === 0) return { kind: 'ok', note: 'IOIO with size 0 (ignored, as KVM does)' };
    if (io.size !== 1 && io.size !== 2 && io.size !== 4) return { kind: 'error', code: GHCB_ERR_INVALID_INPUT, note: `IOIO size field ${io.size}` };
    const bus = this.o.io;
    const mask = (1n << BigInt(io.size * 8)) - 1n;
    const dir = io.in ? 'IN' : 'OUT';
    if (!io.string) {
      if (io.in) {
        const v = BigInt(bus ? bus.in(io.port, io.size) >>> 0 : 0xffffffff) & mask;
        regs.rax = io.size < 4 ? (regs.rax & ~mask) | v : v;
        return { kind: 'ok', note: `IN ${hex(io.port)}/${io.size} = ${hex(v)}` };
      }
      const v = regs.rax & mask;
      bus?.out(io.port, io.size, Number(v));
      return { kind: 'ok', note: `OUT ${hex(io.port)}/${io.size} <- ${hex(v)}` };
    }
    if (info2 > 0x7fffffffn) {
      return { kind: 'terminate', reason: { initiator: 'hypervisor', message: `string IOIO count ${hex(info2)} exceeds INT_MAX` } };
    }
    const count = Number(info2);
    const bytes = count * io.size;
    if (bytes === 0) return { kind: 'ok', note: `${dir}S with count 0` };
    const s = this.scratchArea(g, scratch, bytes);
    if (s === null) return { kind: 'error', code: GHCB_ERR_INVALID_SCRATCH_AREA, note: `${dir}S ${bytes} bytes: bad scratch area ${hex(scratch)}` };
    const mem = this.mem;
    for (let i = 0; i < count; i++) {
      const at = s.gpa + i * io.size;
      if (io.in) {
        const v = bus ? bus.in(io.port, io.size) : 0xffffffff;
        if (io.size === 1) mem.write8(at, v & 0xff);
        else if (io.size === 2) mem.write16(at, v & 0xffff);
        else mem.write32(at, v >>> 0);
      } else {
        const v = io.size === 1 ? mem.read8(at) : io.size === 2 ? mem.read16(at) : mem.read32(at);
        bus?.out(io.port, io.size, v);
      }
    }
    return { kind: 'ok', note: `${dir}S ${hex(io.port)}/${io.size} x ${count}` };
  }

  /**
   * setup_vmgexit_scratch: the area must start at a non-zero GPA; inside the
   * GHCB page it must lie within the shared buffer; outside it is allowed for
   * GHCB v1 only (up to 16 pages, inside RAM).
   */
  private scratchArea(g: number, scratch: bigint, minLen: number): Scratch | null {
    const s = gpaToNumber(scratch);
    if (s === null || s === 0 || minLen <= 0) return null;
    const end = s + minLen;
    if (s - (s % 0x1000) === g) {
      const lo = g + GHCB_OFFSET.shared_buffer, hi = g + GHCB_SHARED_BUF_END;
      if (s < lo || end > hi) return null;
      return { gpa: s, len: hi - s };
    }
    if (this.o.config.ghcbMaxVersion >= 2) return null;
    if (minLen > GHCB_SCRATCH_AREA_LIMIT || end > this.mem.size) return null;
    return { gpa: s, len: minLen };
  }

  /** NAE 0x80000010: process the descriptor from hdr.cur_entry to hdr.end_entry (snp_begin_psc). */
  private psc(g: number, scratch: bigint): ExitResult {
    const mem = this.mem;
    const done = (code: bigint, note: string): ExitResult => {
      setField(mem, g, 'sw_exit_info_2', code);
      return { kind: 'ok', note };
    };
    const s = this.scratchArea(g, scratch, 8);
    if (s === null) return { kind: 'error', code: GHCB_ERR_INVALID_SCRATCH_AREA, note: `PSC: bad scratch area ${hex(scratch)}` };
    const rmp = this.o.rmp;
    if (rmp === undefined) return done(VMGEXIT_PSC_ERROR_GENERIC, 'PSC: no RMP model');
    const maxEntries = Math.floor((s.len - 8) / 8);
    const start = mem.read16(s.gpa);
    const end = mem.read16(s.gpa + 2);
    if (end >= maxEntries) return done(VMGEXIT_PSC_ERROR_INVALID_HDR, `PSC: end_entry ${end} >= ${maxEntries}`);
    let changed = 0;
    for (let idx = start; idx <= end; idx++) {
      const at = s.gpa + 8 + idx * 8;
      const e = readU64(mem, at);
      const curPage = Number(e & 0xfffn);
      let gfn = Number((e >> 12n) & 0xffffffffffn);
      const op = Number((e >> 52n) & 0xfn);
      const huge = ((e >> 56n) & 1n) !== 0n;
      const full = huge ? 512 : 1;
      let npages = full;
      if (curPage > npages || gfn % npages !== 0) return done(VMGEXIT_PSC_ERROR_INVALID_ENTRY, `PSC: bad entry ${idx} (${hex(e)})`);
      npages -= curPage;
      gfn += curPage;
      if (npages > 0 && (op === 1 || op === 2)) {
        for (let i = 0; i < npages; i++) {
          if (!rmp.pageStateChange(gfn + i, op === 1)) {
            return done(VMGEXIT_PSC_ERROR_GENERIC, `PSC: GFN ${hex(gfn + i)} outside RAM (entry ${idx})`);
          }
        }
        changed += npages;
      }
      // The entry is complete: record it for the guest (cur_page = whole size, cur_entry past it).
      if (npages > 0) writeU64(mem, at, (e & ~0xfffn) | BigInt(full));
      mem.write16(s.gpa, idx + 1);
    }
    return done(0n, `PSC: entries ${start}..${end}, ${changed} pages changed`);
  }
}
