/**
 * A minimal SVSM (Secure VM Service Module) at VMPL0, enough for a Linux guest
 * running at VMPL1..3: the core protocol's REMAP_CA (call 0) and PVALIDATE
 * (call 1), entered on a run-VMPL request (MSR 0x016 or NAE 0x80000018).
 *
 * Calling convention (SVSM spec, as used by arch/x86/coco/sev/shared.c):
 * RAX = protocol << 32 | call id, arguments in RCX, RDX, R8, R9; the guest sets
 * call_pending (calling area byte 0) to 1 before VMGEXIT, and the SVSM clears
 * it when it has taken the call; the result goes back in RAX.
 *
 * PVALIDATE request at RCX: num_entries u16 @0, cur_index u16 @2, 4 reserved
 * bytes, then u64 entries: [1:0] page size, [2] validate, [3] ignore CF,
 * [11:4] reserved, [63:12] PFN. Processing starts at cur_index and stops at the
 * first failure with cur_index left on the failing entry. After validating a
 * page the SVSM grants the guest's VMPL full permissions (RMPADJUST); before
 * rescinding it revokes them.
 */
import type { PhysicalMemory } from '../memory/physical-memory.js';
import type { SvsmCallEvent, SvsmEntry, SvsmHandler } from './interfaces.js';
import { readU64, writeU64 } from './mem64.js';
import { FAIL_INPUT, FAIL_SIZEMISMATCH, PAGE_SIZE, PERM_ALL, RMP_PG_SIZE_2M, RMP_PG_SIZE_4K, SIZE_2M, type RmpTable } from './rmp.js';

export const SVSM_SUCCESS = 0x00000000n;
export const SVSM_ERR_INCOMPLETE = 0x80000000n;
export const SVSM_ERR_UNSUPPORTED_PROTOCOL = 0x80000001n;
export const SVSM_ERR_UNSUPPORTED_CALL = 0x80000002n;
export const SVSM_ERR_INVALID_ADDRESS = 0x80000003n;
export const SVSM_ERR_INVALID_FORMAT = 0x80000004n;
export const SVSM_ERR_INVALID_PARAMETER = 0x80000005n;
export const SVSM_ERR_INVALID_REQUEST = 0x80000006n;
export const SVSM_ERR_BUSY = 0x80000007n;
/** PVALIDATE failures: 0x80001000 + the instruction's return code; 0x80001010 for CF=1. */
export const SVSM_PVALIDATE_FAIL_INPUT = 0x80001001n;
export const SVSM_PVALIDATE_FAIL_SIZEMISMATCH = 0x80001006n;
export const SVSM_PVALIDATE_FAIL_NO_CHANGE = 0x80001010n;

export const SVSM_CORE_REMAP_CA = 0;
export const SVSM_CORE_PVALIDATE = 1;
export const SVSM_CORE_CREATE_VCPU = 2;
export const SVSM_CORE_DELETE_VCPU = 3;

const RESULT_NAMES: ReadonlyMap<bigint, string> = new Map([
  [SVSM_SUCCESS, 'SVSM_SUCCESS'],
  [SVSM_ERR_INCOMPLETE, 'SVSM_ERR_INCOMPLETE'],
  [SVSM_ERR_UNSUPPORTED_PROTOCOL, 'SVSM_ERR_UNSUPPORTED_PROTOCOL'],
  [SVSM_ERR_UNSUPPORTED_CALL, 'SVSM_ERR_UNSUPPORTED_CALL'],
  [SVSM_ERR_INVALID_ADDRESS, 'SVSM_ERR_INVALID_ADDRESS'],
  [SVSM_ERR_INVALID_FORMAT, 'SVSM_ERR_INVALID_FORMAT'],
  [SVSM_ERR_INVALID_PARAMETER, 'SVSM_ERR_INVALID_PARAMETER'],
  [SVSM_ERR_INVALID_REQUEST, 'SVSM_ERR_INVALID_REQUEST'],
  [SVSM_ERR_BUSY, 'SVSM_ERR_BUSY'],
  [SVSM_PVALIDATE_FAIL_INPUT, 'SVSM_PVALIDATE_FAIL_INPUT'],
  [SVSM_PVALIDATE_FAIL_SIZEMISMATCH, 'SVSM_PVALIDATE_FAIL_SIZEMISMATCH'],
  [SVSM_PVALIDATE_FAIL_NO_CHANGE, 'SVSM_PVALIDATE_FAIL_NO_CHANGE'],
]);

export function svsmResultName(result: bigint): string {
  return RESULT_NAMES.get(result) ?? `0x${result.toString(16)}`;
}

const CORE_CALL_NAMES = ['SVSM_CORE_REMAP_CA', 'SVSM_CORE_PVALIDATE', 'SVSM_CORE_CREATE_VCPU', 'SVSM_CORE_DELETE_VCPU'];

/** The calling vCPU's registers, read and written by the SVSM (the glue maps these onto the CPU). */
export interface SvsmRegs {
  rax: bigint;
  rcx: bigint;
  rdx: bigint;
  r8: bigint;
  r9: bigint;
}

export interface SvsmOptions {
  readonly memory: PhysicalMemory;
  readonly rmp: RmpTable;
  readonly regs: SvsmRegs;
  /** Initial calling area GPA (the secrets page's svsm_caa). */
  readonly caa: number;
  /** VMPL the guest runs at. */
  readonly guestVmpl: 1 | 2 | 3;
  /** The SVSM's own memory [base, base + size): the guest may not validate or point requests into it. */
  readonly base?: number;
  readonly size?: number;
  readonly onEvent?: (event: SvsmCallEvent) => void;
}

/** Offsets in the calling area (struct svsm_ca). */
export const SVSM_CA_CALL_PENDING = 0;
export const SVSM_CA_MEM_AVAILABLE = 1;
export const SVSM_CA_BUFFER = 8;
/** Entries that fit a PVALIDATE request in the calling area buffer (SVSM_PVALIDATE_MAX_COUNT). */
export const SVSM_PVALIDATE_MAX_COUNT = (PAGE_SIZE - SVSM_CA_BUFFER - 8) / 8; // 510

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export class MinimalSvsm implements SvsmHandler {
  private readonly mem: PhysicalMemory;
  private readonly rmp: RmpTable;
  private readonly regs: SvsmRegs;
  private readonly guestVmpl: 1 | 2 | 3;
  private readonly base: number;
  private readonly size: number;
  private readonly onEvent: ((event: SvsmCallEvent) => void) | undefined;
  private caaGpa: number;

  constructor(o: SvsmOptions) {
    if (o.caa % PAGE_SIZE !== 0) throw new RangeError('the calling area must be 4 KiB aligned');
    this.mem = o.memory;
    this.rmp = o.rmp;
    this.regs = o.regs;
    this.caaGpa = o.caa;
    this.guestVmpl = o.guestVmpl;
    this.base = o.base ?? 0;
    this.size = o.size ?? 0;
    this.onEvent = o.onEvent;
  }

  /** Current calling area GPA. */
  get caa(): number {
    return this.caaGpa;
  }

  enter(targetVmpl: number, _via: 'msr' | 'ghcb'): SvsmEntry {
    if (targetVmpl !== 0) return { entered: false, reason: `the SVSM runs at VMPL0, not VMPL${targetVmpl}` };
    const caa = this.caaGpa;
    if (this.mem.read8(caa + SVSM_CA_CALL_PENDING) === 0) {
      // Entered, but the calling area holds no request: the guest wrote it somewhere else.
      const rax = BigInt.asUintN(64, this.regs.rax);
      const call: SvsmCallEvent = {
        kind: 'svsm-call',
        protocol: Number(rax >> 32n),
        callId: Number(rax & 0xffffffffn),
        name: 'no call pending',
        rcx: BigInt.asUintN(64, this.regs.rcx),
        result: rax,
        resultName: 'nothing done',
        caa,
        detail: `call_pending is 0 in the calling area ${hex(caa)}; the guest asked for call 0x${rax.toString(16)} somewhere else`,
      };
      this.onEvent?.(call);
      return { entered: true, call };
    }

    const rax = BigInt.asUintN(64, this.regs.rax);
    const rcx = BigInt.asUintN(64, this.regs.rcx);
    const protocol = Number(rax >> 32n);
    const callId = Number(rax & 0xffffffffn);
    let name: string;
    let outcome: { result: bigint; detail?: string };
    if (protocol !== 0) {
      name = `protocol ${protocol} call ${callId}`;
      outcome = { result: SVSM_ERR_UNSUPPORTED_PROTOCOL, detail: protocol === 1 ? 'attestation is not modelled' : undefined };
    } else {
      name = CORE_CALL_NAMES[callId] ?? `SVSM core call ${callId}`;
      if (callId === SVSM_CORE_REMAP_CA) outcome = this.remapCa(rcx);
      else if (callId === SVSM_CORE_PVALIDATE) outcome = this.pvalidate(rcx);
      else outcome = { result: SVSM_ERR_UNSUPPORTED_CALL };
    }
    this.regs.rax = outcome.result;
    // The call has been taken: clear call_pending in the area the guest used for it.
    this.mem.write8(caa + SVSM_CA_CALL_PENDING, 0);
    const call: SvsmCallEvent = {
      kind: 'svsm-call',
      protocol,
      callId,
      name,
      rcx,
      result: outcome.result,
      resultName: svsmResultName(outcome.result),
      caa,
      ...(outcome.detail !== undefined ? { detail: outcome.detail } : {}),
    };
    this.onEvent?.(call);
    return { entered: true, call };
  }

  private overlapsSvsm(gpa: number, len: number): boolean {
    return this.size > 0 && gpa < this.base + this.size && this.base < gpa + len;
  }

  private isGuestMemory(gpa: number, len: number): boolean {
    return gpa >= 0 && gpa + len <= this.mem.size && !this.overlapsSvsm(gpa, len);
  }

  private remapCa(rcx: bigint): { result: bigint; detail?: string } {
    const gpa = rcx <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(rcx) : -1;
    if (gpa < 0 || gpa % PAGE_SIZE !== 0 || !this.isGuestMemory(gpa, PAGE_SIZE) || !this.rmp.isValidated(gpa)) {
      return { result: SVSM_ERR_INVALID_ADDRESS, detail: `new calling area ${hex(rcx)} is not an aligned, validated guest page` };
    }
    const old = this.caaGpa;
    this.caaGpa = gpa;
    return { result: SVSM_SUCCESS, detail: `calling area ${hex(old)} -> ${hex(gpa)}` };
  }

  private pvalidate(rcx: bigint): { result: bigint; detail?: string } {
    const req = rcx <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(rcx) : -1;
    if (req < 0 || !this.isGuestMemory(req, 8)) return { result: SVSM_ERR_INVALID_ADDRESS, detail: `request at ${hex(rcx)}` };
    if (req % 8 !== 0) return { result: SVSM_ERR_INVALID_PARAMETER, detail: `request at ${hex(rcx)} is not 8-byte aligned` };
    const mem = this.mem;
    const count = mem.read16(req);
    let index = mem.read16(req + 2);
    const pageEnd = req - (req % PAGE_SIZE) + PAGE_SIZE;
    if (req + 8 + count * 8 > pageEnd) return { result: SVSM_ERR_INVALID_PARAMETER, detail: `${count} entries do not fit in the request page` };
    if (index > count) return { result: SVSM_ERR_INVALID_PARAMETER, detail: `cur_index ${index} > num_entries ${count}` };
    const start = index;
    for (; index < count; index++) {
      mem.write16(req + 2, index);
      const e = readU64(mem, req + 8 + index * 8);
      const sizeField = Number(e & 3n);
      const validate = ((e >> 2n) & 1n) !== 0n;
      const ignoreCf = ((e >> 3n) & 1n) !== 0n;
      const pfn = e >> 12n;
      if (sizeField > RMP_PG_SIZE_2M || ((e >> 4n) & 0xffn) !== 0n) {
        return { result: SVSM_ERR_INVALID_PARAMETER, detail: `entry ${index} ${hex(e)}: bad size or reserved bits` };
      }
      const size = sizeField === RMP_PG_SIZE_2M ? RMP_PG_SIZE_2M : RMP_PG_SIZE_4K;
      const span = size === RMP_PG_SIZE_2M ? SIZE_2M : PAGE_SIZE;
      const gpa = pfn <= BigInt(Math.floor(Number.MAX_SAFE_INTEGER / PAGE_SIZE)) ? Number(pfn) * PAGE_SIZE : -1;
      if (gpa < 0 || this.overlapsSvsm(gpa, span)) {
        return { result: SVSM_ERR_INVALID_ADDRESS, detail: `entry ${index}: PFN ${hex(pfn)} belongs to the SVSM or is out of range` };
      }
      const perms = (p: number): bigint => BigInt(this.guestVmpl) | (BigInt(p) << 8n);
      if (!validate) this.rmp.rmpadjust(gpa, size, perms(0), 0); // revoke the guest's access first
      const r = this.rmp.pvalidate(gpa, size, validate, 0);
      const what = `entry ${index}: ${validate ? 'validate' : 'rescind'} ${hex(gpa)} (${size === RMP_PG_SIZE_2M ? '2M' : '4K'})`;
      if ('fault' in r) return { result: SVSM_ERR_INVALID_REQUEST, detail: `${what}: ${r.reason}` };
      if (r.rc === FAIL_INPUT) return { result: SVSM_PVALIDATE_FAIL_INPUT, detail: `${what}: FAIL_INPUT` };
      if (r.rc === FAIL_SIZEMISMATCH) return { result: SVSM_PVALIDATE_FAIL_SIZEMISMATCH, detail: `${what}: FAIL_SIZEMISMATCH` };
      if (r.cf && !ignoreCf) return { result: SVSM_PVALIDATE_FAIL_NO_CHANGE, detail: `${what}: no change (CF=1)` };
      if (validate) this.rmp.rmpadjust(gpa, size, perms(PERM_ALL), 0);
    }
    mem.write16(req + 2, index);
    return { result: SVSM_SUCCESS, detail: `entries ${start}..${count - 1} done` };
  }
}
