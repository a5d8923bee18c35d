/**
 * Reverse Map Table model, one entry per 4 KiB guest page: assigned (private)
 * or shared, the Validated bit, the VMSA bit, and page permissions for VMPL1..3
 * (VMPL0 always has every permission on assigned pages).
 *
 * The real RMP also records a page size per entry; here a 2 MiB operation is
 * accepted when all 512 pages are in the same state and fails with
 * FAIL_SIZEMISMATCH when they are not (the hypervisor would have had to split
 * the 2 MiB entry to reach such a mixed state).
 *
 * Semantics follow the AMD APM descriptions of PVALIDATE and RMPADJUST as far
 * as the kernel relies on them; points the APM text was not available for are
 * marked "assumed".
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 0x1000;
export const PAGES_PER_2M = 512;
export const SIZE_2M = 0x200000;

export const RMP_PG_SIZE_4K = 0;
export const RMP_PG_SIZE_2M = 1;
export type RmpPageSize = typeof RMP_PG_SIZE_4K | typeof RMP_PG_SIZE_2M;

/** PVALIDATE / RMPADJUST return codes (EAX). */
export const RMP_OK = 0;
export const FAIL_INPUT = 1;
export const FAIL_PERMISSION = 2;
export const FAIL_SIZEMISMATCH = 6;

export type PvalidateRc = typeof RMP_OK | typeof FAIL_INPUT | typeof FAIL_SIZEMISMATCH;
export type RmpadjustRc = typeof RMP_OK | typeof FAIL_INPUT | typeof FAIL_PERMISSION | typeof FAIL_SIZEMISMATCH;

export interface PvalidateResult {
  readonly rc: PvalidateRc;
  /** rFLAGS.CF: with rc 0, true means the Validated bit already had the requested value. */
  readonly cf: boolean;
}

/** The instruction faults instead of completing (assumed: PVALIDATE outside VMPL0 raises #GP(0)). */
export interface RmpFault {
  readonly fault: 'gp';
  readonly reason: string;
}

export interface RmpadjustResult {
  readonly rc: RmpadjustRc;
}

/** Page permission bits in RMPADJUST RDX[15:8] and in the RMP. */
export const PERM_READ = 0x1;
export const PERM_WRITE = 0x2;
export const PERM_EXEC_USER = 0x4;
export const PERM_EXEC_SUPERVISOR = 0x8;
export const PERM_ALL = 0xf;

export type RmpFindingCode =
  | 'double-validate'
  | 'rescind-invalid'
  | 'validate-shared'
  | 'pvalidate-bad-input'
  | 'pvalidate-size-mismatch'
  | 'pvalidate-not-vmpl0'
  | 'rmpadjust-failed'
  | 'psc-shared-while-validated'
  | 'psc-redundant'
  | 'psc-out-of-range'
  | 'ghcb-private';

export type FindingSeverity = 'error' | 'warning' | 'info';

export interface RmpFinding {
  readonly kind: 'rmp-finding';
  readonly code: RmpFindingCode;
  readonly severity: FindingSeverity;
  /** Guest physical address of the page (or of the 2 MiB region). */
  readonly gpa: number;
  readonly detail: string;
}

export interface RmpSnapshot {
  readonly state: Uint8Array;
  readonly perms: Uint8Array;
}

export interface RmpOptions {
  /** Permissions VMPL1..3 hold on launch memory (index 0 = VMPL1). Default: none. */
  readonly initialLowerVmplPerms?: readonly [number, number, number];
  /** Called for every finding as it is recorded. */
  readonly onFinding?: (finding: RmpFinding) => void;
  /** Keep at most this many findings in `findings` (later ones are counted in `droppedFindings`). */
  readonly maxFindings?: number;
}

const ASSIGNED = 0x1;
const VALIDATED = 0x2;
const VMSA = 0x4;

const hex = (v: number): string => `0x${v.toString(16)}`;

export class RmpTable {
  readonly ramSize: number;
  readonly pageCount: number;
  /** Per page: ASSIGNED | VALIDATED | VMSA. */
  private readonly state: Uint8Array;
  /** Per page, three bytes: permissions of VMPL1, VMPL2, VMPL3. */
  private readonly perms: Uint8Array;
  readonly findings: RmpFinding[] = [];
  droppedFindings = 0;
  private readonly onFinding: ((finding: RmpFinding) => void) | undefined;
  private readonly maxFindings: number;

  /** All of `[0, ramSize)` starts as launch memory: private and validated. */
  constructor(ramSize: number, options: RmpOptions = {}) {
    if (!Number.isInteger(ramSize) || ramSize <= 0 || ramSize % PAGE_SIZE !== 0) {
      throw new RangeError('RMP size must be a positive multiple of 4 KiB');
    }
    this.ramSize = ramSize;
    this.pageCount = ramSize / PAGE_SIZE;
    this.state = new Uint8Array(this.pageCount).fill(ASSIGNED | VALIDATED);
    this.perms = new Uint8Array(this.pageCount * 3);
    const init = options.initialLowerVmplPerms ?? [0, 0, 0];
    if (init.some((p) => p !== 0)) {
      const [p1, p2, p3] = init.map((p) => p & PERM_ALL);
      for (let at = 0; at < this.perms.length; at += 3) {
        this.perms[at] = p1;
        this.perms[at + 1] = p2;
        this.perms[at + 2] = p3;
      }
    }
    this.onFinding = options.onFinding;
    this.maxFindings = options.maxFindings ?? 10000;
  }

  // --- queries (cheap; usable from the CPU's access path) ---

  isPrivate(pa: number): boolean {
    const pfn = Math.floor(pa / PAGE_SIZE);
    return pfn >= 0 && pfn < this.pageCount && (this.state[pfn] & ASSIGNED) !== 0;
  }

  isValidated(pa: number): boolean {
    const pfn = Math.floor(pa / PAGE_SIZE);
    return pfn >= 0 && pfn < this.pageCount && (this.state[pfn] & VALIDATED) !== 0;
  }

  isVmsa(pa: number): boolean {
    const pfn = Math.floor(pa / PAGE_SIZE);
    return pfn >= 0 && pfn < this.pageCount && (this.state[pfn] & VMSA) !== 0;
  }

  /** Permission mask VMPL `vmpl` holds on the page (0 for shared or out-of-range pages). */
  permissions(pa: number, vmpl: number): number {
    const pfn = Math.floor(pa / PAGE_SIZE);
    if (pfn < 0 || pfn >= this.pageCount || (this.state[pfn] & ASSIGNED) === 0) return 0;
    if (vmpl === 0) return PERM_ALL;
    if (vmpl < 1 || vmpl > 3) return 0;
    return this.perms[pfn * 3 + vmpl - 1];
  }

  counts(): { private: number; validated: number; shared: number } {
    let priv = 0, validated = 0;
    for (let i = 0; i < this.pageCount; i++) {
      const s = this.state[i];
      if (s & ASSIGNED) priv++;
      if (s & VALIDATED) validated++;
    }
    return { private: priv, validated, shared: this.pageCount - priv };
  }

  // --- guest instructions ---

  /**
   * PVALIDATE (RAX = gpa after translation, RCX = size, RDX = validate).
   * rc 1 FAIL_INPUT: misaligned, beyond RAM, or a shared page; rc 6: a 2 MiB
   * request over pages of mixed state; rc 0 + CF=1: nothing changed.
   */
  pvalidate(gpa: number, size: RmpPageSize, validate: boolean, callerVmpl: number): PvalidateResult | RmpFault {
    const what = validate ? 'validate' : 'rescind';
    if (callerVmpl !== 0) {
      this.note('pvalidate-not-vmpl0', 'error', gpa, `PVALIDATE (${what}) executed at VMPL${callerVmpl}; only VMPL0 may validate`);
      return { fault: 'gp', reason: `PVALIDATE at VMPL${callerVmpl}` };
    }
    const span = size === RMP_PG_SIZE_2M ? SIZE_2M : PAGE_SIZE;
    if (!Number.isInteger(gpa) || gpa < 0 || gpa % span !== 0 || gpa + span > this.ramSize) {
      this.note('pvalidate-bad-input', 'error', gpa, `PVALIDATE (${what}, ${span === SIZE_2M ? '2M' : '4K'}) of a misaligned or out-of-RAM address`);
      return { rc: FAIL_INPUT, cf: false };
    }
    const first = gpa / PAGE_SIZE;
    const n = span / PAGE_SIZE;
    const s0 = this.state[first];
    let mixedAssigned = false, mixedValidated = false;
    for (let i = 1; i < n; i++) {
      const s = this.state[first + i];
      if ((s ^ s0) & ASSIGNED) mixedAssigned = true;
      if ((s ^ s0) & VALIDATED) mixedValidated = true;
    }
    if (mixedAssigned || (mixedValidated && (s0 & ASSIGNED) !== 0)) {
      this.note('pvalidate-size-mismatch', 'info', gpa, `2M PVALIDATE (${what}) over pages of mixed ${mixedAssigned ? 'private/shared' : 'validated'} state`);
      return { rc: FAIL_SIZEMISMATCH, cf: false };
    }
    if ((s0 & ASSIGNED) === 0) {
      this.note('validate-shared', 'error', gpa, `PVALIDATE (${what}) of a shared page: the hypervisor has not assigned it to the guest`);
      return { rc: FAIL_INPUT, cf: false };
    }
    const already = (s0 & VALIDATED) !== 0;
    if (already === validate) {
      if (validate) this.note('double-validate', 'error', gpa, 'PVALIDATE of a page that is already validated (CF=1; the kernel terminates with (1,2))');
      else this.note('rescind-invalid', 'error', gpa, 'PVALIDATE rescind of a page that is not validated (CF=1; the kernel terminates with (1,2))');
      return { rc: RMP_OK, cf: true };
    }
    for (let i = 0; i < n; i++) {
      if (validate) this.state[first + i] |= VALIDATED;
      else this.state[first + i] &= ~VALIDATED;
    }
    return { rc: RMP_OK, cf: false };
  }

  /**
   * RMPADJUST (RAX = gpa, RCX = size, RDX = [7:0] target VMPL, [15:8] permissions, [16] VMSA).
   * Succeeds only when the caller is more privileged (numerically lower) than the
   * target and grants no more than it holds. Check order (assumed): target range,
   * address, privilege, page state, size, permissions.
   */
  rmpadjust(gpa: number, size: RmpPageSize, rdx: bigint, callerVmpl: number): RmpadjustResult {
    const target = Number(rdx & 0xffn);
    const perms = Number((rdx >> 8n) & 0xffn);
    const vmsa = ((rdx >> 16n) & 1n) !== 0n;
    const span = size === RMP_PG_SIZE_2M ? SIZE_2M : PAGE_SIZE;
    const fail = (rc: RmpadjustRc, why: string): RmpadjustResult => {
      this.note('rmpadjust-failed', 'info', gpa, `RMPADJUST at VMPL${callerVmpl} target VMPL${target} perms ${hex(perms)}: ${why}`);
      return { rc };
    };
    if (target > 3 || (perms & ~PERM_ALL) !== 0) return fail(FAIL_INPUT, 'invalid target VMPL or permission bits');
    if (!Number.isInteger(gpa) || gpa < 0 || gpa % span !== 0 || gpa + span > this.ramSize) {
      return fail(FAIL_INPUT, 'misaligned or out-of-RAM address');
    }
    if (target <= callerVmpl) return fail(FAIL_PERMISSION, 'the target VMPL is not less privileged than the caller');
    const first = gpa / PAGE_SIZE;
    const n = span / PAGE_SIZE;
    const s0 = this.state[first];
    for (let i = 1; i < n; i++) {
      if ((this.state[first + i] ^ s0) & (ASSIGNED | VALIDATED)) return fail(FAIL_SIZEMISMATCH, 'pages of mixed state under a 2M request');
    }
    if ((s0 & ASSIGNED) === 0 || (s0 & VALIDATED) === 0) return fail(FAIL_INPUT, 'page is shared or not validated');
    if (vmsa && callerVmpl !== 0) return fail(FAIL_PERMISSION, 'only VMPL0 may set the VMSA bit');
    for (let i = 0; i < n; i++) {
      const held = this.permissions((first + i) * PAGE_SIZE, callerVmpl);
      if ((perms & ~held) !== 0) return fail(FAIL_PERMISSION, 'grants permissions the caller does not hold');
    }
    for (let i = 0; i < n; i++) {
      this.perms[(first + i) * 3 + target - 1] = perms;
      if (callerVmpl === 0) {
        if (vmsa) this.state[first + i] |= VMSA;
        else this.state[first + i] &= ~VMSA;
      }
    }
    return { rc: RMP_OK };
  }

  // --- hypervisor operations ---

  /**
   * Launch-time validation state (what the firmware's PVALIDATEs, or their
   * absence, leave): sets or clears the Validated bit of every page in
   * [gpa, gpa + length) that is assigned to the guest.
   */
  setLaunchValidated(gpa: number, length: number, validated: boolean): void {
    const first = Math.max(0, Math.floor(gpa / PAGE_SIZE));
    const end = Math.min(this.pageCount, Math.ceil((gpa + length) / PAGE_SIZE));
    for (let pfn = first; pfn < end; pfn++) {
      if ((this.state[pfn] & ASSIGNED) === 0) continue;
      if (validated) this.state[pfn] |= VALIDATED;
      else this.state[pfn] &= ~VALIDATED;
    }
  }

  /** Mark a launch page as a VMSA (the page holding a vCPU's initial state). */
  setLaunchVmsa(gpa: number): void {
    const pfn = Math.floor(gpa / PAGE_SIZE);
    if (pfn >= 0 && pfn < this.pageCount) this.state[pfn] |= VMSA;
  }

  /** Launch-time permissions of `vmpl` (1..3) on [gpa, gpa + length), as VMPL0 software would set them with RMPADJUST. */
  setLaunchPermissions(gpa: number, length: number, vmpl: number, perms: number): void {
    if (vmpl < 1 || vmpl > 3) throw new RangeError('launch permissions are for VMPL1..3');
    const first = Math.max(0, Math.floor(gpa / PAGE_SIZE));
    const end = Math.min(this.pageCount, Math.ceil((gpa + length) / PAGE_SIZE));
    for (let pfn = first; pfn < end; pfn++) this.perms[pfn * 3 + vmpl - 1] = perms & PERM_ALL;
  }

  /**
   * Page state change for one 4 KiB page (RMPUPDATE by the hypervisor).
   * To shared: unassigned and unvalidated. To private: assigned, still unvalidated
   * (the guest must PVALIDATE). Converting to the state a page already has changes
   * nothing. Returns false when the GFN is outside RAM.
   */
  pageStateChange(gfn: number, toPrivate: boolean): boolean {
    const gpa = gfn * PAGE_SIZE;
    if (!Number.isInteger(gfn) || gfn < 0 || gfn >= this.pageCount) {
      this.note('psc-out-of-range', 'error', gpa, `page state change of GFN ${hex(gfn)} beyond RAM`);
      return false;
    }
    const s = this.state[gfn];
    if (toPrivate) {
      if (s & ASSIGNED) {
        this.note('psc-redundant', 'warning', gpa, 'page state change to private of a page that is already private');
        return true;
      }
      this.state[gfn] = ASSIGNED;
    } else {
      if ((s & ASSIGNED) === 0) {
        this.note('psc-redundant', 'warning', gpa, 'page state change to shared of a page that is already shared');
        return true;
      }
      if (s & VALIDATED) {
        this.note('psc-shared-while-validated', 'warning', gpa, 'page made shared while still validated: the guest did not rescind it first');
      }
      this.state[gfn] = 0;
    }
    this.perms.fill(0, gfn * 3, gfn * 3 + 3);
    return true;
  }

  // --- snapshots ---

  snapshot(): RmpSnapshot {
    return { state: this.state.slice(), perms: this.perms.slice() };
  }

  restore(snapshot: RmpSnapshot): void {
    if (snapshot.state.length !== this.state.length || snapshot.perms.length !== this.perms.length) {
      throw new RangeError('RMP snapshot is for a different RAM size');
    }
    this.state.set(snapshot.state);
    this.perms.set(snapshot.perms);
  }

  /** A finding the hypervisor makes about RMP state (for example a GHCB the guest left private). */
  hostFinding(code: RmpFindingCode, severity: FindingSeverity, gpa: number, detail: string): void {
    this.note(code, severity, gpa, detail);
  }

  private note(code: RmpFindingCode, severity: FindingSeverity, gpa: number, detail: string): void {
    const finding: RmpFinding = { kind: 'rmp-finding', code, severity, gpa, detail };
    if (this.findings.length < this.maxFindings) this.findings.push(finding);
    else this.droppedFindings++;
    this.onFinding?.(finding);
  }
}
