/*
 * Runs cases in bzemu (runSnippet), compares with the host's results, and
 * formats mismatch reports.
 */
import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from 'iced-x86';
import { runSnippet, type SnippetState } from '../../src/cpu/snippet.js';
import type { DiffCase } from './generate.js';
import { MAX_OUTSIDE, SCRATCH, SCRATCH_SIZE, type DiffOutput } from './native.js';

/** Emulator memory: covers the scratch area and the code address (small = fast to set up). */
const EMU_MEM = 0x200000;
const ARITH = 0x8d5;
const DF = 0x400;
const NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

/** `compatTables`: run a 32-bit case in compatibility mode, page tables at that address (else protected mode). */
export function runEmulator(c: DiffCase, codeAddr: number, compatTables?: number): DiffOutput {
  let res;
  try {
    const state: SnippetState = { regs: c.regs, rflags: c.rflags, memory: [{ addr: SCRATCH + c.winOff, bytes: c.window }], bits: c.bits ?? 64, ...(compatTables !== undefined ? { compatTables } : {}) };
    res = runSnippet(c.code, state, codeAddr, 1000, EMU_MEM);
  } catch (e) {
    return { regs: [], rflags: 0, fault: null, window: new Uint8Array(0), nOutside: 0, outside: [], error: String((e as Error)?.message ?? e) };
  }
  const scratch = res.read(SCRATCH, SCRATCH_SIZE);
  const winEnd = c.winOff + c.window.length;
  const outside: number[] = [];
  let nOutside = 0;
  const words = new Uint32Array(scratch.buffer, scratch.byteOffset, SCRATCH_SIZE / 4);
  for (let w = 0; w < words.length; w++) {
    if (words[w] === 0) continue;
    for (let b = 0; b < 4; b++) {
      const off = w * 4 + b;
      const v = scratch[off];
      if (v === 0 || (off >= c.winOff && off < winEnd)) continue;
      if (nOutside < MAX_OUTSIDE) outside.push((off << 8) | v);
      nOutside++;
    }
  }
  return {
    regs: res.regs,
    rflags: res.rflags,
    fault: res.fault,
    window: scratch.slice(c.winOff, winEnd),
    nOutside,
    outside,
  };
}

/** Flag bits compared for a case. `strict` also compares the undefined ones. */
export function flagMask(c: DiffCase, strict: boolean): number {
  return strict ? ARITH | DF : (ARITH & ~c.undefFlags) | DF;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** Differences between the host (`exp`) and bzemu (`got`), as readable lines; empty when they agree. */
export function diffCase(c: DiffCase, exp: DiffOutput, got: DiffOutput, strict = false): string[] {
  if (got.error !== undefined) return [`emulator threw: ${got.error}`];
  const out: string[] = [];
  if (exp.fault !== got.fault) out.push(`fault: host ${exp.fault ?? 'none'}, bzemu ${got.fault ?? 'none'}`);
  for (let r = 0; r < 16; r++) {
    if (c.skipRegs & (1 << r)) continue;
    if (exp.regs[r] !== got.regs[r]) out.push(`${NAMES[r]}: host ${hex(exp.regs[r])}, bzemu ${hex(got.regs[r])}`);
  }
  const mask = flagMask(c, strict);
  if ((exp.rflags & mask) !== (got.rflags & mask)) {
    out.push(`rflags&${hex(mask)}: host ${hex(exp.rflags & mask)} (${flagNames(exp.rflags & mask)}), bzemu ${hex(got.rflags & mask)} (${flagNames(got.rflags & mask)})`);
  }
  if (!c.skipMem) {
    for (let k = 0; k < exp.window.length; k++) {
      if (exp.window[k] !== got.window[k]) {
        let end = k;
        while (end < exp.window.length && end < k + 16 && exp.window[end] !== got.window[end]) end++;
        out.push(`memory +${hex(c.winOff + k)}: host ${bytesHex(exp.window.subarray(k, Math.max(end, k + 1)))}, bzemu ${bytesHex(got.window.subarray(k, Math.max(end, k + 1)))}`);
        break;
      }
    }
    if (exp.nOutside !== got.nOutside || exp.outside.some((v, k) => got.outside[k] !== v)) {
      const fmt = (o: DiffOutput): string => `${o.nOutside} [${o.outside.slice(0, 6).map((e) => `+${hex(e >>> 8)}=${hex(e & 0xff)}`).join(' ')}]`;
      out.push(`bytes written outside the window: host ${fmt(exp)}, bzemu ${fmt(got)}`);
    }
  }
  return out;
}

function flagNames(f: number): string {
  const names: Array<[number, string]> = [[0x800, 'OF'], [0x400, 'DF'], [0x80, 'SF'], [0x40, 'ZF'], [0x10, 'AF'], [0x4, 'PF'], [0x1, 'CF']];
  const s = names.filter(([b]) => f & b).map(([, n]) => n).join(' ');
  return s || '-';
}

function bytesHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

let formatter: Formatter | null = null;

export function disassemble(code: Uint8Array, ip: number, bits: 64 | 32 = 64): string {
  const d = new Decoder(bits, code, DecoderOptions.None);
  d.ip = BigInt(ip);
  const ins = d.decode();
  formatter ??= new Formatter(FormatterSyntax.Intel);
  const s = ins.isInvalid ? '(invalid)' : formatter.format(ins);
  ins.free();
  d.free();
  return s;
}

/** A multi-line report of one mismatch: instruction, inputs, differences. */
export function formatMismatch(c: DiffCase, diffs: string[], ip: number): string {
  const lines = [`${disassemble(c.code, ip, c.bits ?? 64)}    [${bytesHex(c.code)}]${c.note ? `  (${c.note})` : ''}`];
  const used: string[] = [];
  for (let r = 0; r < 16; r++) if (c.usedRegs & (1 << r)) used.push(`${NAMES[r]}=${hex(c.regs[r])}`);
  lines.push(`  in: ${used.join(' ')} rflags=${hex(c.rflags)} (${flagNames(c.rflags & (ARITH | DF))})`);
  if (c.memOff >= 0) {
    const k = c.memOff - c.winOff;
    lines.push(`  mem @${hex(SCRATCH + c.memOff)}: ${bytesHex(c.window.subarray(k, k + Math.max(c.memBytes, 1)))}`);
  }
  for (const d of diffs) lines.push(`  ${d}`);
  return lines.join('\n');
}
