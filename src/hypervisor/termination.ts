/**
 * Termination requests and the GHCB MSR protocol, decoded into the kernel's
 * names (arch/x86/include/asm/sev-common.h, Linux 6.12).
 *
 * MSR form:  GHCBInfo[11:0] = 0x100, reason set [15:12], reason code [23:16].
 * GHCB form: NAE exit 0x8000FFFE, sw_exit_info_1 = set [3:0] | code [11:4],
 *            sw_exit_info_2 = detail (e.g. the unsupported SEV features).
 */
import { hvFeatureNames, sevStatusBitNames } from './vm-config.js';

export const SEV_TERM_SET_GEN = 0;
export const GHCB_SEV_ES_GEN_REQ = 0;
export const GHCB_SEV_ES_PROT_UNSUPPORTED = 1;
export const GHCB_SNP_UNSUPPORTED = 2;

export const SEV_TERM_SET_LINUX = 1;
export const GHCB_TERM_REGISTER = 0;
export const GHCB_TERM_PSC = 1;
export const GHCB_TERM_PVALIDATE = 2;
export const GHCB_TERM_NOT_VMPL0 = 3;
export const GHCB_TERM_CPUID = 4;
export const GHCB_TERM_CPUID_HV = 5;
export const GHCB_TERM_SECRETS_PAGE = 6;
export const GHCB_TERM_NO_SVSM = 7;
export const GHCB_TERM_SVSM_VMPL0 = 8;
export const GHCB_TERM_SVSM_CAA = 9;

interface CodeInfo {
  readonly name: string;
  readonly meaning: string;
}

const REASON_SETS: ReadonlyMap<number, { name: string; codes: ReadonlyMap<number, CodeInfo> }> = new Map([
  [
    SEV_TERM_SET_GEN,
    {
      name: 'SEV_TERM_SET_GEN',
      codes: new Map<number, CodeInfo>([
        [
          GHCB_SEV_ES_GEN_REQ,
          {
            name: 'GHCB_SEV_ES_GEN_REQ',
            meaning:
              'general failure: a #VC the handler could not serve (unsupported exit code, unexpected opcode bytes, ' +
              'a hypervisor error or injected exception in the GHCB reply, a CPUID answer without SEV), or the GHCB could not be set up',
          },
        ],
        [
          GHCB_SEV_ES_PROT_UNSUPPORTED,
          {
            name: 'GHCB_SEV_ES_PROT_UNSUPPORTED',
            meaning:
              'GHCB protocol negotiation failed: the SEV-information request (0x002) got no 0x001 response, ' +
              "or the hypervisor's [min, max] protocol range does not overlap the guest's [1, 2]",
          },
        ],
        [
          GHCB_SNP_UNSUPPORTED,
          {
            name: 'GHCB_SNP_UNSUPPORTED',
            meaning:
              'SNP cannot be supported: the hypervisor features lack bit 0 (SNP), the CC blob magic is not 0x45444D41, ' +
              'or SEV_STATUS enables features the kernel does not implement (GHCB form: mask in sw_exit_info_2)',
          },
        ],
      ]),
    },
  ],
  [
    SEV_TERM_SET_LINUX,
    {
      name: 'SEV_TERM_SET_LINUX',
      codes: new Map<number, CodeInfo>([
        [
          GHCB_TERM_REGISTER,
          {
            name: 'GHCB_TERM_REGISTER',
            meaning: 'GHCB GPA registration failed: the reply to request 0x012 was not 0x013 carrying the same GFN',
          },
        ],
        [
          GHCB_TERM_PSC,
          {
            name: 'GHCB_TERM_PSC',
            meaning:
              'page state change failed: the reply to the MSR request 0x014 was not 0x015, or carried a non-zero error in bits 63:32',
          },
        ],
        [
          GHCB_TERM_PVALIDATE,
          {
            name: 'GHCB_TERM_PVALIDATE',
            meaning:
              'PVALIDATE failed: non-zero EAX, or CF=1 because the page already had the requested Validated state ' +
              '(double validation / rescinding an invalid page), or the SVSM PVALIDATE call failed',
          },
        ],
        [
          GHCB_TERM_NOT_VMPL0,
          {
            name: 'GHCB_TERM_NOT_VMPL0',
            meaning:
              'the guest is not running at VMPL0: the RMPADJUST probe (target VMPL1) failed and there is no usable SVSM, ' +
              'or the hypervisor does not advertise feature bit 5 (multi-VMPL)',
          },
        ],
        [
          GHCB_TERM_CPUID,
          {
            name: 'GHCB_TERM_CPUID',
            meaning: 'SNP CPUID table unusable: CC blob has no cpuid_phys, cpuid_len < 4096, or the table count is 0 or above 64',
          },
        ],
        [
          GHCB_TERM_CPUID_HV,
          {
            name: 'GHCB_TERM_CPUID_HV',
            meaning:
              'a hypervisor CPUID request failed while post-processing SNP CPUID table entries (leaf 0x1, 0xB or 0x8000001E)',
          },
        ],
        [
          GHCB_TERM_SECRETS_PAGE,
          {
            name: 'GHCB_TERM_SECRETS_PAGE',
            meaning: 'not at VMPL0 and the CC blob has no usable secrets page (secrets_phys 0 or secrets_len != 4096)',
          },
        ],
        [
          GHCB_TERM_NO_SVSM,
          {
            name: 'GHCB_TERM_NO_SVSM',
            meaning: 'not at VMPL0 and the secrets page advertises no SVSM (svsm_size at 0x148 is 0)',
          },
        ],
        [
          GHCB_TERM_SVSM_VMPL0,
          {
            name: 'GHCB_TERM_SVSM_VMPL0',
            meaning: 'an SVSM is advertised but svsm_guest_vmpl (secrets page 0x15C) is 0 although RMPADJUST failed',
          },
        ],
        [
          GHCB_TERM_SVSM_CAA,
          {
            name: 'GHCB_TERM_SVSM_CAA',
            meaning: 'the SVSM calling area address (svsm_caa, secrets page 0x150) is not 4 KiB aligned',
          },
        ],
      ]),
    },
  ],
]);

export interface ReasonDescription {
  readonly setName: string | null;
  readonly codeName: string | null;
  readonly meaning: string;
}

export function describeReason(set: number, code: number): ReasonDescription {
  const s = REASON_SETS.get(set);
  if (s === undefined) {
    return { setName: null, codeName: null, meaning: `reason set ${set} is not defined by Linux (firmware- or vendor-specific)` };
  }
  const c = s.codes.get(code);
  if (c === undefined) return { setName: s.name, codeName: null, meaning: `code ${code} is not defined in ${s.name}` };
  return { setName: s.name, codeName: c.name, meaning: c.meaning };
}

/** A termination the guest asked for. */
export interface GuestTermination extends ReasonDescription {
  readonly initiator: 'guest';
  readonly form: 'msr' | 'ghcb';
  readonly set: number;
  readonly code: number;
  /** GHCB form only: sw_exit_info_2. */
  readonly detail?: bigint;
}

/** The stub hypervisor itself stopped the VM (as KVM does on protocol violations). */
export interface HypervisorTermination {
  readonly initiator: 'hypervisor';
  readonly message: string;
  /** The GHCB MSR value at the VMGEXIT that caused it. */
  readonly msrValue?: bigint;
}

export type Termination = GuestTermination | HypervisorTermination;

export const GHCB_MSR_TERM_REQ = 0x100;

export function msrTerminationValue(set: number, code: number): bigint {
  return BigInt(GHCB_MSR_TERM_REQ) | (BigInt(set & 0xf) << 12n) | (BigInt(code & 0xff) << 16n);
}

export function ghcbTerminationInfo1(set: number, code: number): bigint {
  return BigInt(set & 0xf) | (BigInt(code & 0xff) << 4n);
}

/** Decode an MSR-protocol termination request; null when GHCBInfo is not 0x100. */
export function decodeMsrTermination(value: bigint): GuestTermination | null {
  if ((value & 0xfffn) !== BigInt(GHCB_MSR_TERM_REQ)) return null;
  const set = Number((value >> 12n) & 0xfn);
  const code = Number((value >> 16n) & 0xffn);
  return { initiator: 'guest', form: 'msr', set, code, ...describeReason(set, code) };
}

/** Decode the GHCB-page form (NAE exit 0x8000FFFE). */
export function decodeGhcbTermination(exitInfo1: bigint, exitInfo2?: bigint): GuestTermination {
  const set = Number(exitInfo1 & 0xfn);
  const code = Number((exitInfo1 >> 4n) & 0xffn);
  const base = { initiator: 'guest' as const, form: 'ghcb' as const, set, code, ...describeReason(set, code) };
  return exitInfo2 === undefined ? base : { ...base, detail: exitInfo2 };
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** SEV_STATUS feature bits by their APM names. */
const APM_SEV_FEATURE_NAMES: ReadonlyMap<number, string> = new Map([
  [0, 'SEV'], [1, 'SEV-ES'], [2, 'SNP'], [3, 'vTOM'], [4, 'ReflectVC'], [5, 'RestrictedInjection'],
  [6, 'AlternateInjection'], [7, 'DebugSwap'], [8, 'PreventHostIBS'], [9, 'BTBIsolation'], [10, 'VmplSSS'],
  [11, 'SecureTSC'], [12, 'VmgexitParameter'], [14, 'IbsVirtualization'], [16, 'VmsaRegProt'],
  [17, 'SmtProtection'], [23, 'IbpbOnEntry'],
]);

/** "SecureTSC (bit 11), VmsaRegProt (bit 16)" for a mask of SEV_STATUS bits. */
export function sevFeatureNamesApm(mask: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if (((mask >> BigInt(bit)) & 1n) === 0n) continue;
    out.push(`${APM_SEV_FEATURE_NAMES.get(bit) ?? 'reserved'} (bit ${bit})`);
  }
  return out;
}

/**
 * One readable paragraph for a termination. `cause`: what the host knows of
 * why, when the request itself does not say (GHCB_SNP_UNSUPPORTED by MSR).
 */
export function formatTermination(t: Termination, cause?: string): string {
  if (t.initiator === 'hypervisor') {
    return `hypervisor terminated the VM: ${t.message}${t.msrValue === undefined ? '' : ` (GHCB MSR ${hex(t.msrValue)})`}`;
  }
  const setText = `reason set ${t.set}${t.setName ? ` (${t.setName})` : ''}`;
  const codeText = `code ${t.code}${t.codeName ? ` (${t.codeName})` : ''}`;
  const head = t.form === 'msr' ? 'GHCB MSR protocol termination request' : 'GHCB page termination request (NAE 0x8000FFFE)';
  const snpUnsupported = t.set === SEV_TERM_SET_GEN && t.code === GHCB_SNP_UNSUPPORTED;
  let meaning = t.meaning;
  if (snpUnsupported && t.detail !== undefined && t.detail !== 0n) {
    // The GHCB form carries the mask: that cause, and only that one, happened.
    meaning = `SEV_STATUS enables features this kernel does not implement: ${sevFeatureNamesApm(t.detail).join(', ')}`;
  } else if (snpUnsupported && cause) {
    meaning = `SNP cannot be supported: ${cause}`;
  }
  let text = `${head}: ${setText}, ${codeText}: ${meaning}`;
  if (t.detail !== undefined) {
    text += `; sw_exit_info_2 = ${hex(t.detail)}`;
  }
  return text;
}

// ---------------------------------------------------------------------------
// Any GHCB MSR value

export interface GhcbMsrField {
  readonly name: string;
  /** Bit range, e.g. "63:32". */
  readonly bits: string;
  readonly value: bigint;
  readonly note?: string;
}

export type GhcbMsrKind = 'ghcb-gpa' | 'request' | 'response' | 'termination' | 'unknown';

export interface GhcbMsrDecoding {
  readonly value: bigint;
  /** GHCBInfo, bits 11:0. */
  readonly info: number;
  readonly kind: GhcbMsrKind;
  /** Kernel macro name, e.g. GHCB_MSR_CPUID_REQ; null for a GPA or an unknown code. */
  readonly code: string | null;
  readonly title: string;
  readonly fields: readonly GhcbMsrField[];
  readonly termination?: GuestTermination;
  /** One-line explanation. */
  readonly summary: string;
}

export const GHCB_MSR_INFO = {
  SEV_INFO_RESP: 0x001,
  SEV_INFO_REQ: 0x002,
  CPUID_REQ: 0x004,
  CPUID_RESP: 0x005,
  AP_RESET_HOLD_REQ: 0x006,
  AP_RESET_HOLD_RESP: 0x007,
  PREF_GPA_REQ: 0x010,
  PREF_GPA_RESP: 0x011,
  REG_GPA_REQ: 0x012,
  REG_GPA_RESP: 0x013,
  PSC_REQ: 0x014,
  PSC_RESP: 0x015,
  VMPL_REQ: 0x016,
  VMPL_RESP: 0x017,
  HV_FT_REQ: 0x080,
  HV_FT_RESP: 0x081,
  TERM_REQ: 0x100,
} as const;

const INFO_NAMES: ReadonlyMap<number, { code: string; title: string; kind: GhcbMsrKind }> = new Map([
  [0x001, { code: 'GHCB_MSR_SEV_INFO_RESP', title: 'SEV information response', kind: 'response' }],
  [0x002, { code: 'GHCB_MSR_SEV_INFO_REQ', title: 'SEV information request', kind: 'request' }],
  [0x004, { code: 'GHCB_MSR_CPUID_REQ', title: 'CPUID request', kind: 'request' }],
  [0x005, { code: 'GHCB_MSR_CPUID_RESP', title: 'CPUID response', kind: 'response' }],
  [0x006, { code: 'GHCB_MSR_AP_RESET_HOLD_REQ', title: 'AP reset hold request', kind: 'request' }],
  [0x007, { code: 'GHCB_MSR_AP_RESET_HOLD_RESP', title: 'AP reset hold response', kind: 'response' }],
  [0x010, { code: 'GHCB_MSR_PREF_GPA_REQ', title: 'preferred GHCB GPA request', kind: 'request' }],
  [0x011, { code: 'GHCB_MSR_PREF_GPA_RESP', title: 'preferred GHCB GPA response', kind: 'response' }],
  [0x012, { code: 'GHCB_MSR_REG_GPA_REQ', title: 'register GHCB GPA request', kind: 'request' }],
  [0x013, { code: 'GHCB_MSR_REG_GPA_RESP', title: 'register GHCB GPA response', kind: 'response' }],
  [0x014, { code: 'GHCB_MSR_PSC_REQ', title: 'SNP page state change request', kind: 'request' }],
  [0x015, { code: 'GHCB_MSR_PSC_RESP', title: 'SNP page state change response', kind: 'response' }],
  [0x016, { code: 'GHCB_MSR_VMPL_REQ', title: 'run at VMPL request (SVSM call)', kind: 'request' }],
  [0x017, { code: 'GHCB_MSR_VMPL_RESP', title: 'run at VMPL response', kind: 'response' }],
  [0x080, { code: 'GHCB_MSR_HV_FT_REQ', title: 'hypervisor features request', kind: 'request' }],
  [0x081, { code: 'GHCB_MSR_HV_FT_RESP', title: 'hypervisor features response', kind: 'response' }],
  [0x100, { code: 'GHCB_MSR_TERM_REQ', title: 'termination request', kind: 'termination' }],
]);

const CPUID_REGS = ['EAX', 'EBX', 'ECX', 'EDX'] as const;
const bits = (v: bigint, hi: number, lo: number): bigint => (v >> BigInt(lo)) & ((1n << BigInt(hi - lo + 1)) - 1n);

/** Name of an MSR-protocol GHCBInfo code, e.g. 0x004 -> GHCB_MSR_CPUID_REQ. */
export function ghcbMsrInfoName(info: number): string | null {
  return INFO_NAMES.get(info)?.code ?? null;
}

/** Explain any value of MSR 0xC0010130 (request, response, termination or GHCB GPA). */
export function decodeGhcbMsrValue(value: bigint): GhcbMsrDecoding {
  const v = BigInt.asUintN(64, value);
  const info = Number(v & 0xfffn);
  if (info === 0) {
    const fields: GhcbMsrField[] = [{ name: 'GHCB GPA', bits: '63:12', value: v }];
    const summary =
      v === 0n
        ? 'GHCB MSR is 0: no GHCB page and no MSR-protocol request (a VMGEXIT now is ignored by KVM)'
        : `GHCB page protocol: the GHCB page is at GPA ${hex(v)}; the request is in the page (sw_exit_code)`;
    return { value: v, info, kind: 'ghcb-gpa', code: null, title: 'GHCB page address', fields, summary };
  }
  const known = INFO_NAMES.get(info);
  if (known === undefined) {
    return {
      value: v,
      info,
      kind: 'unknown',
      code: null,
      title: 'unknown MSR protocol code',
      fields: [
        { name: 'GHCBInfo', bits: '11:0', value: BigInt(info) },
        { name: 'GHCBData', bits: '63:12', value: v >> 12n },
      ],
      summary: `GHCB MSR protocol: GHCBInfo ${hex(info)} is not a code defined by the GHCB specification or Linux`,
    };
  }
  const { code, title, kind } = known;
  const fields: GhcbMsrField[] = [];
  let detail = '';
  let termination: GuestTermination | undefined;
  switch (info) {
    case 0x001: {
      const max = bits(v, 63, 48), min = bits(v, 47, 32), cbit = bits(v, 31, 24);
      fields.push({ name: 'max protocol', bits: '63:48', value: max }, { name: 'min protocol', bits: '47:32', value: min }, {
        name: 'C-bit position',
        bits: '31:24',
        value: cbit,
      });
      detail = `hypervisor supports GHCB protocol ${min}..${max}, C-bit ${cbit}`;
      break;
    }
    case 0x004: {
      const leaf = bits(v, 63, 32), reg = Number(bits(v, 31, 30));
      fields.push({ name: 'CPUID function', bits: '63:32', value: leaf }, {
        name: 'register',
        bits: '31:30',
        value: BigInt(reg),
        note: CPUID_REGS[reg],
      });
      detail = `CPUID leaf ${hex(leaf)}, register ${CPUID_REGS[reg]} (subleaf is always 0)`;
      break;
    }
    case 0x005: {
      const val = bits(v, 63, 32), reg = Number(bits(v, 31, 30));
      fields.push({ name: 'value', bits: '63:32', value: val }, { name: 'register', bits: '31:30', value: BigInt(reg), note: CPUID_REGS[reg] });
      detail = `${CPUID_REGS[reg]} = ${hex(val)}`;
      break;
    }
    case 0x007: {
      const r = bits(v, 63, 12);
      fields.push({ name: 'result', bits: '63:12', value: r });
      detail = r === 0n ? 'no SIPI yet' : `result ${hex(r)}`;
      break;
    }
    case 0x011: {
      const gfn = bits(v, 63, 12);
      fields.push({ name: 'GFN', bits: '63:12', value: gfn });
      detail = gfn === 0xfffffffffffffn ? 'no preferred GPA' : `preferred GHCB at GPA ${hex(gfn << 12n)}`;
      break;
    }
    case 0x012:
    case 0x013: {
      const gfn = bits(v, 63, 12);
      fields.push({ name: 'GFN', bits: '63:12', value: gfn });
      detail = `GHCB at GPA ${hex(gfn << 12n)}`;
      break;
    }
    case 0x014: {
      const op = Number(bits(v, 55, 52)), gfn = bits(v, 51, 12);
      const opName = op === 1 ? 'private' : op === 2 ? 'shared' : `invalid operation ${op}`;
      fields.push({ name: 'operation', bits: '55:52', value: BigInt(op), note: opName }, { name: 'GFN', bits: '51:12', value: gfn });
      if (bits(v, 63, 56) !== 0n) fields.push({ name: 'reserved', bits: '63:56', value: bits(v, 63, 56), note: 'must be 0' });
      detail = `make GPA ${hex(gfn << 12n)} ${opName}`;
      break;
    }
    case 0x015: {
      const err = bits(v, 63, 32);
      fields.push({ name: 'error', bits: '63:32', value: err });
      detail = err === 0n ? 'success' : `error ${hex(err)} (the guest terminates with (1,1) GHCB_TERM_PSC)`;
      break;
    }
    case 0x016: {
      const vmpl = bits(v, 39, 32);
      fields.push({ name: 'target VMPL', bits: '39:32', value: vmpl });
      detail = `run VMPL ${vmpl} (the SVSM) for the call described by RAX/RCX and the calling area`;
      break;
    }
    case 0x017: {
      const r = bits(v, 63, 32);
      fields.push({ name: 'result', bits: '63:32', value: r });
      detail = r === 0n ? 'success' : `failure ${hex(r)}`;
      break;
    }
    case 0x081: {
      const f = bits(v, 63, 12);
      fields.push({ name: 'features', bits: '63:12', value: f });
      detail = `features ${hex(f)} [${hvFeatureNames(f).join(', ') || 'none'}]`;
      break;
    }
    case 0x100: {
      termination = decodeMsrTermination(v) ?? undefined;
      fields.push({ name: 'reason set', bits: '15:12', value: bits(v, 15, 12) }, { name: 'reason code', bits: '23:16', value: bits(v, 23, 16) });
      break;
    }
    default:
      // 0x002, 0x006, 0x010, 0x080: requests without data.
      break;
  }
  const summary =
    termination !== undefined ? formatTermination(termination) : `GHCB MSR protocol ${title} (${code}, ${hex(info)})${detail ? `: ${detail}` : ''}`;
  return termination !== undefined
    ? { value: v, info, kind, code, title, fields, termination, summary }
    : { value: v, info, kind, code, title, fields, summary };
}

function parseNumber(text: string): bigint {
  const t = text.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(t) || /^[0-9]+$/.test(t)) return BigInt(t);
  if (/^[0-9a-f]+h$/i.test(t)) return BigInt(`0x${t.slice(0, -1)}`);
  throw new RangeError(`not a number: '${text.trim()}'`);
}

/**
 * Explain a value printed by a failing run, for `bzemu decode-exit`:
 *  - `0x31100`                 any GHCB MSR value (termination, request, response, GPA);
 *  - `1:3` or `0x1:0x3`        reason set and code (as KVM logs "requested termination: 0x1:0x3");
 *  - `ghcb:0x31[:0x80]`        GHCB-page termination (sw_exit_info_1 [, sw_exit_info_2]).
 * Throws RangeError on unparsable input.
 */
export function explainExitValue(text: string): string {
  const t = text.trim();
  const ghcb = /^ghcb[\s:=]+(.+)$/i.exec(t);
  if (ghcb) {
    const parts = ghcb[1].split(/[\s:,]+/).filter((p) => p !== '');
    if (parts.length < 1 || parts.length > 2) throw new RangeError(`expected ghcb:<exit_info_1>[:<exit_info_2>] (got '${t}')`);
    const info1 = parseNumber(parts[0]);
    const info2 = parts.length === 2 ? parseNumber(parts[1]) : undefined;
    return formatTermination(decodeGhcbTermination(info1, info2));
  }
  const pair = /^([0-9a-fx]+)\s*:\s*([0-9a-fx]+)$/i.exec(t);
  if (pair) {
    const set = parseNumber(pair[1]), code = parseNumber(pair[2]);
    if (set > 0xfn || code > 0xffn) throw new RangeError(`reason set must be 0..15 and code 0..255 (got '${t}')`);
    return formatTermination(decodeMsrTermination(msrTerminationValue(Number(set), Number(code)))!);
  }
  const value = parseNumber(t);
  if (value >= 1n << 64n) throw new RangeError(`value does not fit in 64 bits: '${t}'`);
  return decodeGhcbMsrValue(value).summary;
}
