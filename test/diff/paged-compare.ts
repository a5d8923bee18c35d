/*
 * Compares the host's and bzemu's outcome of a paged case and formats
 * mismatch reports.
 */
import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from 'iced-x86';
import type { PagedCase } from './paged-generate.js';
import { CODE, DATA, type PagedOutput } from './paged-native.js';

const ARITH = 0x8d5;
const DF = 0x400;
/** Page-fault error-code bit U/S: the host runs the program at CPL 3, bzemu at CPL 0. */
const PF_USER = 4;
const NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
/** Vectors that push an error code. */
const WITH_ERROR = new Set([8, 10, 11, 12, 13, 14, 17]);

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

function bytesHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Which of CMPS's two operands a CPU reads first is not architectural, and
 * hosts differ: an AMD EPYC faults on DS:rSI when both would fault, an
 * earlier CI host faulted on ES:rDI. Where both fault (each CPU's CR2 is one
 * of the two addresses the instruction stopped at), either is right.
 */
function eitherCmpsOperand(c: PagedCase, exp: PagedOutput, got: PagedOutput): boolean {
  if (!c.note.startsWith('cmps')) return false;
  const mask = c.note.includes('a32=true') ? 0xffffffffn : 0xffffffffffffffffn;
  const si = exp.regs[6] & mask, di = exp.regs[7] & mask;
  return si !== di && (exp.cr2 === si || exp.cr2 === di) && (got.cr2 === si || got.cr2 === di);
}

export function diffPaged(c: PagedCase, exp: PagedOutput, got: PagedOutput): string[] {
  if (got.error !== undefined) return [`emulator threw: ${got.error}`];
  const out: string[] = [];
  if (exp.fault !== got.fault) out.push(`fault: host ${exp.fault ?? 'none'}, bzemu ${got.fault ?? 'none'}`);
  if (exp.fault !== null && exp.fault === got.fault && WITH_ERROR.has(exp.fault)) {
    const mask = exp.fault === 14 ? ~PF_USER : ~0;
    if ((exp.errorCode & mask) !== (got.errorCode & mask)) out.push(`error code: host ${hex(exp.errorCode)}, bzemu ${hex(got.errorCode)}`);
    if (exp.fault === 14 && exp.cr2 !== got.cr2 && !eitherCmpsOperand(c, exp, got)) out.push(`CR2: host ${hex(exp.cr2)}, bzemu ${hex(got.cr2)}`);
  }
  if (exp.rip !== got.rip) out.push(`rip: host ${hex(exp.rip)}, bzemu ${hex(got.rip)}`);
  for (let r = 0; r < 16; r++) {
    if (c.skipRegs & (1 << r)) continue;
    if (exp.regs[r] !== got.regs[r]) out.push(`${NAMES[r]}: host ${hex(exp.regs[r])}, bzemu ${hex(got.regs[r])}`);
  }
  const mask = (ARITH & ~c.undefFlags) | DF;
  if ((exp.rflags & mask) !== (got.rflags & mask)) out.push(`rflags&${hex(mask)}: host ${hex(exp.rflags & mask)}, bzemu ${hex(got.rflags & mask)}`);
  const firstDiff = (a: Uint8Array, b: Uint8Array): number => {
    for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return k;
    return -1;
  };
  const k = firstDiff(exp.code, got.code);
  if (k >= 0) out.push(`code +${k}: host ${bytesHex(exp.code.subarray(k, k + 8))}, bzemu ${bytesHex(got.code.subarray(k, k + 8))}`);
  c.windows.forEach((w, i) => {
    const j = firstDiff(exp.windows[i], got.windows[i]);
    if (j >= 0) out.push(`memory 0x${(DATA + w.off + j).toString(16)}: host ${bytesHex(exp.windows[i].subarray(j, j + 16))}, bzemu ${bytesHex(got.windows[i].subarray(j, j + 16))}`);
  });
  if (exp.nOutside !== got.nOutside || exp.outside.some((v, i) => got.outside[i] !== v)) {
    const fmt = (o: PagedOutput): string => `${o.nOutside} [${o.outside.slice(0, 6).map((e) => `0x${(DATA + (e >>> 8)).toString(16)}=${hex(e & 0xff)}`).join(' ')}]`;
    out.push(`bytes written outside the windows: host ${fmt(exp)}, bzemu ${fmt(got)}`);
  }
  return out;
}

let formatter: Formatter | null = null;

/** The program's instructions, disassembled at their addresses. */
export function disassemblePaged(c: PagedCase): string {
  formatter ??= new Formatter(FormatterSyntax.Intel);
  const d = new Decoder(64, c.code, DecoderOptions.None);
  d.ip = BigInt(CODE + c.codeOff);
  const parts: string[] = [];
  while (d.canDecode && parts.length < 12) {
    const ins = d.decode();
    parts.push(ins.isInvalid ? '(invalid)' : formatter.format(ins));
    ins.free();
  }
  d.free();
  return parts.join('; ');
}

export function formatPagedMismatch(c: PagedCase, diffs: string[]): string {
  const used = c.regs.map((v, r) => `${NAMES[r]}=${hex(v)}`).join(' ');
  return [
    `${disassemblePaged(c)}    [${bytesHex(c.code)}] at ${hex(CODE + c.codeOff)}  (${c.note}; ${c.mode.levels}-level, ${c.mode.pageSize} pages)`,
    `  in: ${used} rflags=${hex(c.rflags)}`,
    ...diffs.map((d) => `  ${d}`),
  ].join('\n');
}
