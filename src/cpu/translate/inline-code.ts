import { Mnemonic } from '../iced.js';
import type { Cpu } from '../cpu.js';
import { Operand, type Handler, type Insn } from '../insn.js';
import { ADD_FORMS, CMP_FORMS, NEG_FORMS, SUB_FORMS } from '../exec/arithmetic.js';
import { AND_FORMS, OR_FORMS, TEST_FORMS, XOR_FORMS } from '../exec/logic.js';
import { CONDITIONAL_FORMS, LEA_FORMS, MOVSX_FORMS, MOVZX_FORMS, MOV_FORMS } from '../exec/data.js';
import { NO_EFFECT } from '../exec/system.js';
import { imul64Flags } from '../exec/muldiv.js';
import { add32, add64, logic32, logic64, sub32, sub64 } from '../exec/flags-compute.js';
import { TLB_MASK } from '../mmu.js';

/*
 * Inline code for translated blocks: JavaScript source, per operand form,
 * with exactly the effects of the form's specialised handler. It names the
 * register file R/RH, RFLAGS as cpu.rflags, the parity table P and the TLB
 * arrays TLO/THI/RP/WP; translate-block.ts turns the register file and
 * RFLAGS into locals and fills in the SYNC and STATE placeholders.
 */

const TWO32 = 4294967296;

/** Arithmetic-flag mask complement: rflags & ~0x8d5. */
const KEEP = '-2262';

/** Where the register file must be up to date (before a call that reads it). */
export const SYNC = '\u0001SYNC\u0001';
/**
 * Where the instruction's curRip/rip/icount stores go: only on the paths
 * that can fault or be observed (a TLB miss or a page without direct access,
 * calcEA), not on a direct hit.
 */
export const STATE = '\u0001STATE\u0001';

/**
 * Effective address of the memory operand into locals `el`/`eh`, as
 * Cpu.calcEA computes it; forms it does not specialise call calcEA.
 */
export function eaSource(i: Insn, k: number, nextLo: number, nextHi: number): string {
  if (i.memSeg === -1 && i.addrSize === 8) {
    const b = i.memBase, x = i.memIndex;
    if (x === -1) {
      if (b === -1) return `el = ${i.dispLo}; eh = ${i.dispHi};`;
      if (b === 16) {
        let lo = i.dispLo + nextLo;
        let hi = i.dispHi + nextHi;
        if (lo > 0xffffffff) {
          hi += Math.floor(lo / TWO32);
          lo = lo >>> 0;
        }
        return `el = ${lo}; eh = ${hi >>> 0};`;
      }
      if (i.dispLo === 0 && i.dispHi === 0) return `el = R[${b}]; eh = RH[${b}];`;
      return `el = R[${b}] + ${i.dispLo}; eh = (RH[${b}] + ${i.dispHi} + (el > 4294967295 ? 1 : 0)) >>> 0; el >>>= 0;`;
    }
    if (b >= 0 && b !== 16) {
      const s = i.memScale;
      return `el = ${i.dispLo} + R[${b}] + R[${x}] * ${s}; eh = ${i.dispHi} + RH[${b}] + RH[${x}] * ${s};` +
        ` if (el > 4294967295) { eh += Math.floor(el / 4294967296); el >>>= 0; } eh >>>= 0;`;
    }
  }
  return `${STATE} ${SYNC} cpu.calcEA(i${k}); el = cpu.eaLo; eh = cpu.eaHi;`;
}

/*
 * Memory access at (el, eh): the TLB probe of the Cpu's sized accessors,
 * inline (a hit on a slot with a direct page reads or writes its bytes in
 * place), else the accessor itself (which probes again and takes its slow
 * path). Inline because V8 stops inlining calls into a large block function
 * long before its last memory access. TLO/THI/RP/WP are the MMU's TLB arrays.
 * Reads leave the value in `m` (and `mh` for 8 bytes), unsigned.
 */

/** Read `size` bytes at offset `off` of the page view `view` into m (and mh), little-endian. */
function viewRead(view: string, off: string, size: number): string {
  if (size === 8) return `m = ${view}.getUint32(${off}, true); mh = ${view}.getUint32(${off} + 4, true);`;
  return `m = ${view}.getUint${size * 8}(${off}${size > 1 ? ', true' : ''});`;
}

/** Write v (and vh) as `size` bytes at offset `off` of the page view `view`, little-endian. */
function viewWrite(view: string, off: string, size: number, v: string, vh: string): string {
  if (size === 8) return `${view}.setUint32(${off}, ${v}, true); ${view}.setUint32(${off} + 4, ${vh}, true);`;
  return `${view}.setUint${size * 8}(${off}, ${v}${size > 1 ? ', true' : ''});`;
}

function probeSource(size: number, pages: string): string {
  const inPage = size === 1 ? '' : ` && o <= ${4096 - size}`;
  return `const o = el & 4095, vpn = el >>> 12, s = (vpn ^ eh) & ${TLB_MASK}, p = ${pages}[s];` +
    ` if (TLO[s] === vpn && THI[s] === (eh | 0)${inPage} && p !== null)`;
}

function readSource(size: number): string {
  const slow = size === 8 ? 'm = cpu.read64(el, eh); mh = cpu.vHi;' : `m = cpu.read${size * 8}(el, eh);`;
  return `{ ${probeSource(size, 'RP')} { ${viewRead('p', 'o', size)} } else { ${STATE} ${slow} } }`;
}

function writeSource(size: number, v: string, vh: string): string {
  const slow = size === 8 ? 'cpu.write64(el, eh, v, vh);' : `cpu.write${size * 8}(el, eh, v);`;
  return `{ const v = ${v}${size === 8 ? `, vh = ${vh}` : ''}; ${probeSource(size, 'WP')} { ${viewWrite('p', 'o', size, 'v', 'vh')} } else { ${STATE} ${slow} } }`;
}

/*
 * Access groups. Memory operands of a block that address [base + disp]
 * through one base register, with no write to that register between them
 * (and no handler call), share one TLB probe: the first of them checks that
 * the page behind the lowest address is in the TLB and that all of the
 * group's bytes (`span` from the lowest displacement) lie in it, and keeps
 * the page's direct views in locals qr<id>/qw<id> with qo<id> the page offset
 * of displacement 0; each member then reads or writes there without address
 * arithmetic or a probe of its own. Anything that can change the TLB runs
 * outside the block function (slow paths, handlers), and translate-block.ts
 * drops every group's views (DROP) there, so a view is only used while the
 * TLB holds what the member's own probe would have found. Without a view a
 * member takes its ordinary path.
 */
export interface AccessGroup {
  id: number;
  /** The member that probes (the group's first in the block's order). */
  first: boolean;
  /** Lowest displacement of the group, and bytes from it to the end of the highest access (at most 4096). */
  dmin: number;
  span: number;
}

/** Where every group's views are dropped (slow paths and handler calls): filled in by translate-block.ts. */
export const DROP = '\u0001DROP\u0001';

/** A displacement as a signed number, or null when it is not one a group can use. */
export function signedDisp(i: Insn): number | null {
  if (i.dispHi === 0 && i.dispLo < 0x80000000) return i.dispLo;
  if (i.dispHi === 0xffffffff && i.dispLo >= 0x80000000) return i.dispLo - TWO32;
  return null;
}

/** Whether the instruction's memory operand is a [base + disp] form that can join an access group. */
export function groupable(i: Insn): boolean {
  return i.memSeg === -1 && i.addrSize === 8 && i.memIndex === -1 && i.memBase >= 0 && i.memBase < 16 && signedDisp(i) !== null;
}

/** The first member's probe: views of the page behind base + dmin, or none when the group's bytes are not all in it. */
function groupProbeSource(i: Insn, g: AccessGroup): string {
  const b = i.memBase;
  const lo = g.dmin >>> 0, hi = g.dmin < 0 ? 0xffffffff : 0;
  const addr = g.dmin === 0 ? `el = R[${b}]; eh = RH[${b}];` : `el = R[${b}] + ${lo}; eh = (RH[${b}] + ${hi} + (el > 4294967295 ? 1 : 0)) >>> 0; el >>>= 0;`;
  return `{ ${addr} const o = el & 4095, vpn = el >>> 12, s = (vpn ^ eh) & ${TLB_MASK};` +
    ` if (TLO[s] === vpn && THI[s] === (eh | 0) && o <= ${4096 - g.span}) { qr${g.id} = RP[s]; qw${g.id} = WP[s]; qo${g.id} = o - ${g.dmin}; }` +
    ` else { qr${g.id} = null; qw${g.id} = null; } }`;
}

/** A member's read into m (and mh): through the group's view, else its ordinary path. */
function groupReadSource(i: Insn, g: AccessGroup, size: number, ordinary: string): string {
  const q = `qr${g.id}`;
  return `let m = 0, mh = 0; ${g.first ? groupProbeSource(i, g) : ''} if (${q} !== null) { ${viewRead(q, `qo${g.id} + ${signedDisp(i)}`, size)} } else { ${ordinary} }`;
}

/** A member's write of v (and vh): through the group's view, else its ordinary path. */
function groupWriteSource(i: Insn, g: AccessGroup, size: number, v: string, vh: string, ordinary: string): string {
  const q = `qw${g.id}`;
  return `${g.first ? groupProbeSource(i, g) : ''} if (${q} !== null) { ${viewWrite(q, `qo${g.id} + ${signedDisp(i)}`, size, v, vh)} } else { ${ordinary} }`;
}

/** testCondition(cc, f) as an expression on a local `f`. */
export function conditionSource(cc: number): string {
  switch (cc) {
    case 1: return '(f & 2048) !== 0';
    case 2: return '(f & 2048) === 0';
    case 3: return '(f & 1) !== 0';
    case 4: return '(f & 1) === 0';
    case 5: return '(f & 64) !== 0';
    case 6: return '(f & 64) === 0';
    case 7: return '(f & 65) !== 0';
    case 8: return '(f & 65) === 0';
    case 9: return '(f & 128) !== 0';
    case 10: return '(f & 128) === 0';
    case 11: return '(f & 4) !== 0';
    case 12: return '(f & 4) === 0';
    case 13: return '((f & 128) !== 0) !== ((f & 2048) !== 0)';
    case 14: return '((f & 128) !== 0) === ((f & 2048) !== 0)';
    case 15: return '(f & 64) !== 0 || ((f & 128) !== 0) !== ((f & 2048) !== 0)';
    case 16: return '(f & 64) === 0 && ((f & 128) !== 0) === ((f & 2048) !== 0)';
    default: return 'true';
  }
}

type AluKind = 'add' | 'sub' | 'cmp' | 'and' | 'or' | 'xor' | 'test';

/*
 * Deferred flags. An instruction whose arithmetic flags are all overwritten
 * by a later instruction of the block, with nothing in between that reads
 * flags or calls a handler, need not compute them: it records its operands
 * in the block's pending-flags locals (pk = kind, pa/pah/pb/pbh) instead, and
 * the flags are materialised, exactly as the instruction would have set them,
 * only if the block is left before they are overwritten (budget, dropped
 * code, a fault: see `materialize`).
 */
const PEND_ADD64 = 1, PEND_ADD32 = 2, PEND_SUB64 = 3, PEND_SUB32 = 4, PEND_LOGIC64 = 5, PEND_LOGIC32 = 6, PEND_IMUL64 = 7;

/** RFLAGS `flags` with the arithmetic flags a deferred instruction would have set. */
export function materialize(cpu: Cpu, flags: number, kind: number, a: number, ah: number, b: number, bh: number): number {
  cpu.rflags = flags;
  switch (kind) {
    case PEND_ADD64: add64(cpu, a, ah, b, bh); break;
    case PEND_ADD32: add32(cpu, a, b); break;
    case PEND_SUB64: sub64(cpu, a, ah, b, bh); break;
    case PEND_SUB32: sub32(cpu, a, b); break;
    case PEND_LOGIC64: logic64(cpu, a, ah); break;
    case PEND_LOGIC32: logic32(cpu, a); break;
    case PEND_IMUL64: imul64Flags(cpu, a, ah, b, bh); break;
  }
  return cpu.rflags;
}

/** RFLAGS `flags` with IMUL r64's flags for the full signed product. */
export function imulFlags(cpu: Cpu, flags: number, a: number, ah: number, b: number, bh: number): number {
  cpu.rflags = flags;
  imul64Flags(cpu, a, ah, b, bh);
  return cpu.rflags;
}

/** The flags statement of an instruction: computed now, or recorded as pending. */
function flagsSource(defer: boolean, pend: string, now: string): string {
  return defer ? pend : `${now} pk = 0;`;
}

/**
 * ADD/SUB/CMP/AND/OR/XOR/TEST with flags exactly as flags-compute's
 * add64/add32/sub64/sub32/logic64/logic32. Operands are expressions
 * (`a`, `ah` the destination or first source; `b`, `bh` the second);
 * `dest` the register written (null: flags only).
 */
function aluSource(kind: AluKind, size: number, a: string, ah: string, b: string, bh: string, dest: number | null, defer: boolean,
  store?: (lo: string, hi: string) => string, carry = false): string {
  const out: string[] = [];
  // ADC/SBB: the carry flag in (read before anything changes); their flags are computed now (a deferral does not record it).
  const c = carry ? ' + c' : '';
  if (carry) out.push('const c = cpu.rflags & 1;');
  /** A memory destination is written after the result is known and before the flags change (the write may still fault). */
  const put = (lo: string, hi: string): void => {
    if (store) out.push(store(lo, hi));
  };
  if (size === 8) {
    out.push(`const a = ${a}, ah = ${ah}, b = ${b}, bh = ${bh};`);
    if (kind === 'add') {
      out.push(`const l = a + b${c}, rl = l >>> 0, hh = ah + bh + (l > 4294967295 ? 1 : 0), rh = hh >>> 0;`);
      put('rl', 'rh');
      out.push(flagsSource(defer, `pk = ${PEND_ADD64}; pa = a; pah = ah; pb = b; pbh = bh;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | (hh > 4294967295 ? 1 : 0) | ((a ^ b ^ rl) & 16) | ((ah ^ rh) & (bh ^ rh) & 0x80000000 ? 2048 : 0) | P[rl & 255] | ((rl | rh) === 0 ? 64 : 0) | ((rh >>> 24) & 128);`));
    } else if (kind === 'sub' || kind === 'cmp') {
      out.push(`const l = a - b${c.replace('+', '-')}, rl = l >>> 0, hh = ah - bh - (l < 0 ? 1 : 0), rh = hh >>> 0;`);
      put('rl', 'rh');
      out.push(flagsSource(defer, `pk = ${PEND_SUB64}; pa = a; pah = ah; pb = b; pbh = bh;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | (hh < 0 ? 1 : 0) | ((a ^ b ^ rl) & 16) | ((ah ^ bh) & (ah ^ rh) & 0x80000000 ? 2048 : 0) | P[rl & 255] | ((rl | rh) === 0 ? 64 : 0) | ((rh >>> 24) & 128);`));
    } else {
      const op = kind === 'or' ? '|' : kind === 'xor' ? '^' : '&';
      out.push(`const rl = (a ${op} b) >>> 0, rh = (ah ${op} bh) >>> 0;`);
      put('rl', 'rh');
      out.push(flagsSource(defer, `pk = ${PEND_LOGIC64}; pa = rl; pah = rh;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | P[rl & 255] | ((rl | rh) === 0 ? 64 : 0) | ((rh >>> 24) & 128);`));
    }
    if (dest !== null) out.push(`R[${dest}] = rl; RH[${dest}] = rh;`);
  } else {
    out.push(`const a = ${a}, b = ${b};`);
    if (kind === 'add') {
      out.push(`const r0 = a + b${c}, r = r0 >>> 0;`);
      put('r', '0');
      out.push(flagsSource(defer, `pk = ${PEND_ADD32}; pa = a; pb = b;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | (r0 > 4294967295 ? 1 : 0) | ((a ^ b ^ r) & 16) | ((a ^ r) & (b ^ r) & 0x80000000 ? 2048 : 0) | P[r & 255] | (r === 0 ? 64 : 0) | ((r >>> 24) & 128);`));
    } else if (kind === 'sub' || kind === 'cmp') {
      out.push(`const r0 = a - b${c.replace('+', '-')}, r = r0 >>> 0;`);
      put('r', '0');
      out.push(flagsSource(defer, `pk = ${PEND_SUB32}; pa = a; pb = b;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | (r0 < 0 ? 1 : 0) | ((a ^ b ^ r) & 16) | ((a ^ b) & (a ^ r) & 0x80000000 ? 2048 : 0) | P[r & 255] | (r === 0 ? 64 : 0) | ((r >>> 24) & 128);`));
    } else {
      const op = kind === 'or' ? '|' : kind === 'xor' ? '^' : '&';
      out.push(`const r = (a ${op} b) >>> 0;`);
      put('r', '0');
      out.push(flagsSource(defer, `pk = ${PEND_LOGIC32}; pa = r;`,
        `cpu.rflags = (cpu.rflags & ${KEEP}) | P[r & 255] | (r === 0 ? 64 : 0) | ((r >>> 24) & 128);`));
    }
    if (dest !== null) out.push(`R[${dest}] = r; RH[${dest}] = 0;`);
  }
  return out.join(' ');
}

/**
 * IMUL r64 (two- and three-operand forms): the low 64 bits of the product
 * from exact 32-bit pieces; flags by imul64Flags (the full signed product).
 */
function imulSource(a: string, ah: string, b: string, bh: string, dest: number, defer: boolean): string {
  return `const a = ${a}, ah = ${ah}, b = ${b}, bh = ${bh};` +
    ' const u = a * (b >>> 16), t = a * (b & 65535);' +
    ' const rl = Math.imul(a, b) >>> 0, rh = (Math.floor(u / 65536) + Math.floor(((u % 65536) * 65536 + t) / 4294967296) + Math.imul(a, bh) + Math.imul(ah, b)) >>> 0;' +
    ` ${flagsSource(defer, `pk = ${PEND_IMUL64}; pa = a; pah = ah; pb = b; pbh = bh;`, 'cpu.rflags = IMF(cpu, cpu.rflags, a, ah, b, bh);')}` +
    ` R[${dest}] = rl; RH[${dest}] = rh;`;
}

interface AluForms {
  rr8?: Handler; rr4?: Handler; ri8?: Handler; ri4?: Handler; rm8?: Handler; rm4?: Handler; mr8?: Handler; mr4?: Handler; mi8?: Handler; mi4?: Handler;
}

const ALU: Array<[AluKind, AluForms]> = [
  ['add', ADD_FORMS], ['sub', SUB_FORMS], ['cmp', CMP_FORMS], ['and', AND_FORMS], ['or', OR_FORMS], ['xor', XOR_FORMS], ['test', TEST_FORMS],
];

/** Inline code for instruction k (its handler's exact effects), or null to call the handler. */
export function inlineSource(i: Insn, k: number, nextLo: number, nextHi: number, defer: boolean, group: AccessGroup | null = null): Inline | null {
  const r = inlineCode(i, k, nextLo, nextHi, defer, group);
  if (r === null) return null;
  return {
    code: r.code, writes: r.writes,
    setsFlags: /pk = /.test(r.code), partialFlags: r.code.includes(SETTLE),
  };
}

export interface Inline {
  code: string;
  /** Writes memory (a running block must check for dropped code after it). */
  writes: boolean;
  /** Sets all six arithmetic flags (and can have them deferred). */
  setsFlags: boolean;
  /** Changes some arithmetic flags and keeps others (deferred flags are settled first). */
  partialFlags: boolean;
}

/** Materialise deferred flags now: code that keeps some flags must see them. */
const SETTLE = 'if (pk !== 0) { cpu.rflags = M(cpu, cpu.rflags, pk, pa, pah, pb, pbh); pk = 0; }';

/** Read-modify-write ALU mnemonics inlined with a memory destination. */
const RMW = new Map<number, AluKind>([
  [Mnemonic.Add, 'add'], [Mnemonic.Sub, 'sub'], [Mnemonic.And, 'and'], [Mnemonic.Or, 'or'], [Mnemonic.Xor, 'xor'],
]);

const SHIFTS = new Map<number, string>([
  [Mnemonic.Shl, 'shl'], [Mnemonic.Sal, 'shl'], [Mnemonic.Shr, 'shr'], [Mnemonic.Sar, 'sar'], [Mnemonic.Rol, 'rol'], [Mnemonic.Ror, 'ror'],
]);

/** `rflags` with the six arithmetic flags replaced: CF and OF (0/1 expressions) and SF/ZF/PF of the result, AF clear. */
function shiftFlags(cf: string, of: string, size: number): string {
  const szp = size === 8 ? 'P[rl & 255] | ((rl | rh) === 0 ? 64 : 0) | ((rh >>> 24) & 128)' : 'P[rl & 255] | (rl === 0 ? 64 : 0) | ((rl >>> 24) & 128)';
  return `cpu.rflags = (cpu.rflags & ${KEEP}) | ${cf} | (${of} << 11) | ${szp}; pk = 0;`;
}

/**
 * SHL/SHR/SAR/ROL/ROR of a 32/64-bit register by an immediate: the count is
 * known here, so each case is straight-line code with shiftOp's results and
 * flags (a zero count changes nothing but a 32-bit destination's upper half).
 */
function shiftImmSource(kind: string, size: number, d: number, imm: number): string {
  const c = imm & (size === 8 ? 63 : 31);
  if (c === 0) return size === 4 ? `RH[${d}] = 0;` : '';
  if (size === 4) {
    const a = `const a = R[${d}];`;
    const done = `R[${d}] = rl; RH[${d}] = 0;`;
    switch (kind) {
      case 'shl': return `${a} const rl = (a << ${c}) >>> 0, cf = (a >>> ${32 - c}) & 1; ${shiftFlags('cf', '((rl >>> 31) ^ cf)', 4)} ${done}`;
      case 'shr': return `${a} const rl = a >>> ${c}; ${shiftFlags(`((a >>> ${c - 1}) & 1)`, '(a >>> 31)', 4)} ${done}`;
      case 'sar': return `${a} const rl = ((a | 0) >> ${c}) >>> 0; ${shiftFlags(`(((a | 0) >> ${c - 1}) & 1)`, '0', 4)} ${done}`;
      case 'rol': return `${a} const rl = ((a << ${c}) | (a >>> ${32 - c})) >>> 0, cf = rl & 1; ${SETTLE} cpu.rflags = (cpu.rflags & -2050) | cf | (((rl >>> 31) ^ cf) << 11); ${done}`;
      default: return `${a} const rl = ((a >>> ${c}) | (a << ${32 - c})) >>> 0, cf = rl >>> 31; ${SETTLE} cpu.rflags = (cpu.rflags & -2050) | cf | ((cf ^ ((rl >>> 30) & 1)) << 11); ${done}`;
    }
  }
  const a = `const a = R[${d}], ah = RH[${d}];`;
  const done = `R[${d}] = rl; RH[${d}] = rh;`;
  /** (rl, rh) = (a, ah) shifted left by n (1..63), as pair64.shl64. */
  const left = (n: number): string => n < 32
    ? `rh = ((ah << ${n}) | (a >>> ${32 - n})) >>> 0, rl = (a << ${n}) >>> 0`
    : `rh = ${n === 32 ? 'a' : `(a << ${n - 32}) >>> 0`}, rl = 0`;
  const bit = (n: number): string => n < 32 ? `((a >>> ${n}) & 1)` : `((ah >>> ${n - 32}) & 1)`;
  switch (kind) {
    case 'shl': return `${a} const ${left(c)}, cf = ${bit(64 - c)}; ${shiftFlags('cf', '((rh >>> 31) ^ cf)', 8)} ${done}`;
    case 'shr': {
      const v = c < 32 ? `rl = ((a >>> ${c}) | (ah << ${32 - c})) >>> 0, rh = ah >>> ${c}` : `rl = ah >>> ${c - 32}, rh = 0`;
      return `${a} const ${v}; ${shiftFlags(bit(c - 1), '(ah >>> 31)', 8)} ${done}`;
    }
    case 'sar': {
      const v = c < 32 ? `rl = ((a >>> ${c}) | (ah << ${32 - c})) >>> 0, rh = (ah >> ${c}) >>> 0` : `rl = (ah >> ${c - 32}) >>> 0, rh = (ah >> 31) >>> 0`;
      return `${a} const ${v}; ${shiftFlags(bit(c - 1), '0', 8)} ${done}`;
    }
    default: {
      // A rotate left by n is the two shifts' union; ROR by n is ROL by 64 - n.
      const n = kind === 'rol' ? c : 64 - c;
      const lo = n < 32 ? `((a << ${n}) | (ah >>> ${32 - n})) >>> 0` : n === 32 ? 'ah' : `((ah << ${n - 32}) | (a >>> ${64 - n})) >>> 0`;
      const hi = n < 32 ? `((ah << ${n}) | (a >>> ${32 - n})) >>> 0` : n === 32 ? 'a' : `((a << ${n - 32}) | (ah >>> ${64 - n})) >>> 0`;
      const flags = kind === 'rol' ? 'cf = rl & 1, of = (rh >>> 31) ^ cf' : 'cf = rh >>> 31, of = cf ^ ((rh >>> 30) & 1)';
      return `${a} const rl = ${lo}, rh = ${hi}, ${flags}; ${SETTLE} cpu.rflags = (cpu.rflags & -2050) | cf | (of << 11); ${done}`;
    }
  }
}

/**
 * BZHI r, r, r: bits of the source below index n (the count register's low
 * byte) kept; CF when n is past the width; ZF/SF of the result, OF clear, PF
 * and AF kept (bits.ts's bzhi and bmiFlags).
 */
function bzhiSource(size: number, d: number, src: number, cnt: number): string {
  const take = size === 8
    ? `let lo = v, hi = vh; if (n < 64) { if (n < 32) { lo = n === 0 ? 0 : (v & (0xffffffff >>> (32 - n))) >>> 0; hi = 0; } else { hi = n === 32 ? 0 : (vh & (0xffffffff >>> (64 - n))) >>> 0; } }`
    : 'let lo = v; const hi = 0; if (n < 32) lo = n === 0 ? 0 : (v & (0xffffffff >>> (32 - n))) >>> 0;';
  const sign = size === 8 ? 'hi >>> 31' : 'lo >>> 31';
  return `const v = R[${src}], vh = ${size === 8 ? `RH[${src}]` : '0'}, n = R[${cnt}] & 255; ${take}` +
    ` ${SETTLE} cpu.rflags = (cpu.rflags & -2242) | (n > ${size * 8 - 1} ? 1 : 0) | ((lo | hi) === 0 ? 64 : 0) | (${sign} ? 128 : 0);` +
    ` R[${d}] = lo; RH[${d}] = hi;`;
}

/** Mnemonics of the BMI2 shifts inlined, by direction. */
const BMI_SHIFTS = new Map<number, 'shl' | 'shr' | 'sar'>([[Mnemonic.Shlx, 'shl'], [Mnemonic.Shrx, 'shr'], [Mnemonic.Sarx, 'sar']]);

/**
 * SHLX/SHRX/SARX of the source halves in locals `sl`/`sh` by the count
 * register (masked to the width) into register d, as bmiShift and the
 * SHLX/SHRX register forms compute it.
 */
function bmiShiftSource(kind: 'shl' | 'shr' | 'sar', size: number, d: number, cnt: number): string {
  if (size === 4) {
    const v = kind === 'shl' ? '(sl << c) >>> 0' : kind === 'shr' ? 'sl >>> c' : '((sl | 0) >> c) >>> 0';
    return `const c = R[${cnt}] & 31; R[${d}] = ${v}; RH[${d}] = 0;`;
  }
  const head = `const c = R[${cnt}] & 63; if (c === 0) { R[${d}] = sl; RH[${d}] = sh; }`;
  switch (kind) {
    case 'shl':
      return `${head} else if (c < 32) { RH[${d}] = ((sh << c) | (sl >>> (32 - c))) >>> 0; R[${d}] = (sl << c) >>> 0; } else { RH[${d}] = (sl << (c - 32)) >>> 0; R[${d}] = 0; }`;
    case 'shr':
      return `${head} else if (c < 32) { R[${d}] = ((sl >>> c) | (sh << (32 - c))) >>> 0; RH[${d}] = sh >>> c; } else { R[${d}] = sh >>> (c - 32); RH[${d}] = 0; }`;
    default:
      return `${head} else if (c < 32) { R[${d}] = ((sl >>> c) | (sh << (32 - c))) >>> 0; RH[${d}] = ((sh | 0) >> c) >>> 0; } else { R[${d}] = ((sh | 0) >> (c - 32)) >>> 0; RH[${d}] = ((sh | 0) >> 31) >>> 0; }`;
  }
}

function inlineCode(i: Insn, k: number, nextLo: number, nextHi: number, defer: boolean, group: AccessGroup | null): { code: string; writes: boolean } | null {
  const h = i.exec;
  const d = i.r0, s = i.r1;
  const ea = (): string => eaSource(i, k, nextLo, nextHi);
  const rd = (size: number): string => group === null ? `${ea()} let m = 0, mh = 0; ${readSource(size)}`
    : groupReadSource(i, group, size, `${ea()} ${readSource(size)}`);
  const wr = (size: number, v: string, vh: string): string => group === null ? `${ea()} ${writeSource(size, v, vh)}`
    : groupWriteSource(i, group, size, v, vh, `${ea()} ${writeSource(size, v, vh)}`);
  // MOV
  if (h === MOV_FORMS.rr8) return { code: `R[${d}] = R[${s}]; RH[${d}] = RH[${s}];`, writes: false };
  if (h === MOV_FORMS.rr4) return { code: `R[${d}] = R[${s}]; RH[${d}] = 0;`, writes: false };
  if (h === MOV_FORMS.ri8) return { code: `R[${d}] = ${i.immLo}; RH[${d}] = ${i.immHi};`, writes: false };
  if (h === MOV_FORMS.ri4) return { code: `R[${d}] = ${i.immLo}; RH[${d}] = 0;`, writes: false };
  if (h === MOV_FORMS.rm8) return { code: `${rd(8)} R[${d}] = m; RH[${d}] = mh;`, writes: false };
  if (h === MOV_FORMS.rm4) return { code: `${rd(4)} R[${d}] = m; RH[${d}] = 0;`, writes: false };
  // `>>> 0`: registers live in JavaScript locals inside a block, and every other form reads them as unsigned halves.
  if (h === MOV_FORMS.rm2) return { code: `${rd(2)} R[${d}] = ((R[${d}] & 0xffff0000) | m) >>> 0;`, writes: false };
  if (h === MOV_FORMS.rm1) return { code: `${rd(1)} R[${d}] = ((R[${d}] & 0xffffff00) | m) >>> 0;`, writes: false };
  if (h === MOV_FORMS.mr8) return { code: wr(8, `R[${s}]`, `RH[${s}]`), writes: true };
  if (h === MOV_FORMS.mr4) return { code: wr(4, `R[${s}]`, '0'), writes: true };
  if (h === MOV_FORMS.mr2) return { code: wr(2, `R[${s}] & 0xffff`, '0'), writes: true };
  if (h === MOV_FORMS.mr1) return { code: wr(1, `R[${s}] & 0xff`, '0'), writes: true };
  if (h === MOV_FORMS.mi8) return { code: wr(8, `${i.immLo}`, `${i.immHi}`), writes: true };
  if (h === MOV_FORMS.mi4) {
    if (i.s0 === 4 || i.s0 === 2 || i.s0 === 1) return { code: wr(i.s0, `${i.immLo}`, '0'), writes: true };
    return null;
  }
  // MOVZX, LEA
  if (h === MOVZX_FORMS.rm1) return { code: `${rd(1)} R[${d}] = m; RH[${d}] = 0;`, writes: false };
  if (h === MOVZX_FORMS.rm2) return { code: `${rd(2)} R[${d}] = m; RH[${d}] = 0;`, writes: false };
  if (h === MOVZX_FORMS.rr1) return { code: `R[${d}] = R[${s}] & 0xff; RH[${d}] = 0;`, writes: false };
  if (h === MOVZX_FORMS.rr2) return { code: `R[${d}] = R[${s}] & 0xffff; RH[${d}] = 0;`, writes: false };
  if (h === LEA_FORMS.r8) return { code: `${ea()} R[${d}] = el; RH[${d}] = eh;`, writes: false };
  if (h === LEA_FORMS.r4) return { code: `${ea()} R[${d}] = el; RH[${d}] = 0;`, writes: false };
  // ALU
  for (const [kind, f] of ALU) {
    const dest = kind === 'cmp' || kind === 'test' ? null : d;
    if (h === f.rr8) return { code: aluSource(kind, 8, `R[${d}]`, `RH[${d}]`, `R[${s}]`, `RH[${s}]`, dest, defer), writes: false };
    if (h === f.rr4) return { code: aluSource(kind, 4, `R[${d}]`, '0', `R[${s}]`, '0', dest, defer), writes: false };
    if (h === f.ri8) return { code: aluSource(kind, 8, `R[${d}]`, `RH[${d}]`, `${i.immLo}`, `${i.immHi}`, dest, defer), writes: false };
    if (h === f.ri4) return { code: aluSource(kind, 4, `R[${d}]`, '0', `${i.immLo}`, '0', dest, defer), writes: false };
    if (h === f.rm8) return { code: `${rd(8)} ${aluSource(kind, 8, `R[${d}]`, `RH[${d}]`, 'm', 'mh', dest, defer)}`, writes: false };
    if (h === f.rm4) return { code: `${rd(4)} ${aluSource(kind, 4, `R[${d}]`, '0', 'm', '0', dest, defer)}`, writes: false };
    if (kind === 'cmp') {
      if (h === f.mr8) return { code: `${rd(8)} ${aluSource(kind, 8, 'm', 'mh', `R[${s}]`, `RH[${s}]`, null, defer)}`, writes: false };
      if (h === f.mr4) return { code: `${rd(4)} ${aluSource(kind, 4, 'm', '0', `R[${s}]`, '0', null, defer)}`, writes: false };
      if (h === f.mi8) return { code: `${rd(8)} ${aluSource(kind, 8, 'm', 'mh', `${i.immLo}`, `${i.immHi}`, null, defer)}`, writes: false };
      if (h === f.mi4) return { code: `${rd(4)} ${aluSource(kind, 4, 'm', '0', `${i.immLo}`, '0', null, defer)}`, writes: false };
    }
  }
  // CMP r8, imm8 and TEST r8, r8 (not AH..BH): flags computed now, exactly as sub/logicResult for size 1 (they overwrite any pending ones)
  if (h === CMP_FORMS.ri1) {
    return {
      code: `const a = R[${d}] & 255, b = ${i.immLo & 255}, r0 = a - b, r = r0 & 255;` +
        ` cpu.rflags = (cpu.rflags & ${KEEP}) | (r0 < 0 ? 1 : 0) | ((a ^ b ^ r) & 16) | ((a ^ b) & (a ^ r) & 128 ? 2048 : 0) | P[r] | (r === 0 ? 64 : 0) | (r & 128); pk = 0;`,
      writes: false,
    };
  }
  if (h === TEST_FORMS.rr1) {
    return { code: `const r = R[${d}] & R[${s}] & 255; cpu.rflags = (cpu.rflags & ${KEEP}) | P[r] | (r === 0 ? 64 : 0) | (r & 128); pk = 0;`, writes: false };
  }
  // NEG r64/r32: 0 - r, flags as SUB's
  if (h === NEG_FORMS.r8) return { code: aluSource('sub', 8, '0', '0', `R[${d}]`, `RH[${d}]`, d, defer), writes: false };
  if (h === NEG_FORMS.r4) return { code: aluSource('sub', 4, '0', '0', `R[${d}]`, '0', d, defer), writes: false };
  // SHLX/SHRX/SARX r, r/m, r (no flags): the source and the count are read before the destination is written.
  const bmi = BMI_SHIFTS.get(i.mnemonic);
  if (bmi !== undefined && i.opCount === 3 && i.k0 === Operand.Reg && d < 16 && (i.s0 === 4 || i.s0 === 8) && i.k2 === Operand.Reg && i.r2 < 16 &&
    ((i.k1 === Operand.Reg && s < 16) || (i.k1 === Operand.Mem && i.s1 === i.s0))) {
    const src = i.k1 === Operand.Reg ? `const sl = R[${s}], sh = ${i.s0 === 8 ? `RH[${s}]` : '0'};` : `${rd(i.s0)} const sl = m, sh = mh;`;
    return { code: `${src} ${bmiShiftSource(bmi, i.s0, d, i.r2)}`, writes: false };
  }
  // ADC/SBB r32/r64, r/imm: read CF (deferred flags are settled first), set all six.
  const carry = i.mnemonic === Mnemonic.Adc ? 'add' : i.mnemonic === Mnemonic.Sbb ? 'sub' : null;
  if (carry !== null && i.opCount === 2 && i.k0 === Operand.Reg && d < 16 && (i.s0 === 4 || i.s0 === 8) && !i.lock &&
    ((i.k1 === Operand.Reg && s < 16 && i.s1 === i.s0) || i.k1 === Operand.Imm)) {
    const [b, bh] = i.k1 === Operand.Reg ? [`R[${s}]`, i.s0 === 8 ? `RH[${s}]` : '0'] : [`${i.immLo}`, i.s0 === 8 ? `${i.immHi}` : '0'];
    return { code: `${SETTLE} ${aluSource(carry, i.s0, `R[${d}]`, i.s0 === 8 ? `RH[${d}]` : '0', b, bh, d, false, undefined, true)}`, writes: false };
  }
  const shift = SHIFTS.get(i.mnemonic);
  if (shift !== undefined && i.opCount === 2 && i.k0 === Operand.Reg && d < 16 && i.k1 === Operand.Imm && !i.lock && (i.s0 === 4 || i.s0 === 8)) {
    return { code: shiftImmSource(shift, i.s0, d, i.immLo), writes: false };
  }
  if (i.mnemonic === Mnemonic.Bzhi && i.k1 === Operand.Reg && i.k2 === Operand.Reg && s < 16 && i.r2 < 16 && (i.s0 === 4 || i.s0 === 8)) {
    return { code: bzhiSource(i.s0, d, s, i.r2), writes: false };
  }
  // IMUL r64, r/m64 and IMUL r64, r/m64, imm
  if (i.mnemonic === Mnemonic.Imul && i.s0 === 8 && i.k0 === Operand.Reg && d < 16 && (i.opCount === 2 || (i.opCount === 3 && i.k2 === Operand.Imm))) {
    const src = i.k1;
    const srcReg = i.r1;
    const [b, bh] = i.opCount === 3 ? [`${i.immLo}`, `${i.immHi}`] : [`R[${srcReg}]`, `RH[${srcReg}]`];
    if (i.opCount === 2) {
      if (src === Operand.Reg && srcReg < 16) return { code: imulSource(`R[${d}]`, `RH[${d}]`, b, bh, d, defer), writes: false };
      if (src === Operand.Mem && i.s1 === 8) return { code: `${rd(8)} ${imulSource(`R[${d}]`, `RH[${d}]`, 'm', 'mh', d, defer)}`, writes: false };
    } else {
      if (src === Operand.Reg && srcReg < 16) return { code: imulSource(`R[${srcReg}]`, `RH[${srcReg}]`, b, bh, d, defer), writes: false };
      if (src === Operand.Mem && i.s1 === 8) return { code: `${rd(8)} ${imulSource('m', 'mh', b, bh, d, defer)}`, writes: false };
    }
  }
  // NOP, PAUSE, fences, prefetches: nothing at all.
  if (h === NO_EFFECT) return { code: '', writes: false };
  // SETcc r8 (not AH..BH): the low byte of the register; reads flags, so deferred ones are settled first.
  if (h === CONDITIONAL_FORMS.setcc && i.k0 === Operand.Reg && d < 16) {
    return { code: `${SETTLE} const f = cpu.rflags; R[${d}] = ((R[${d}] & 0xffffff00) | (${conditionSource(i.cc)} ? 1 : 0)) >>> 0;`, writes: false };
  }
  // CMOVcc r32/r64, r/m: the source is read (and may fault) whatever the condition; a 32-bit destination is zero-extended either way.
  if (h === CONDITIONAL_FORMS.cmovcc && i.k0 === Operand.Reg && d < 16 && (i.s0 === 4 || i.s0 === 8) && i.s1 === i.s0 &&
    ((i.k1 === Operand.Reg && s < 16) || i.k1 === Operand.Mem)) {
    // The high half only for a 64-bit move: a 32-bit one would otherwise load RH[s] into the block for nothing.
    const high = i.s0 === 8 ? (i.k1 === Operand.Reg ? `, vh = RH[${s}]` : ', vh = mh') : '';
    const src = i.k1 === Operand.Reg ? `const v = R[${s}]${high};` : `${rd(i.s0)} const v = m${high};`;
    const move = i.s0 === 8 ? `if (${conditionSource(i.cc)}) { R[${d}] = v; RH[${d}] = vh; }` : `RH[${d}] = 0; if (${conditionSource(i.cc)}) R[${d}] = v;`;
    return { code: `${src} ${SETTLE} const f = cpu.rflags; ${move}`, writes: false };
  }
  // MOVSX/MOVSXD into a 32/64-bit register from a narrower register (not AH..BH) or memory operand.
  if (h === MOVSX_FORMS.any && i.k0 === Operand.Reg && d < 16 && (i.s0 === 4 || i.s0 === 8) && (i.s1 === 1 || i.s1 === 2 || i.s1 === 4) && i.s1 < i.s0 &&
    ((i.k1 === Operand.Reg && s < 16) || i.k1 === Operand.Mem)) {
    const src = i.k1 === Operand.Reg ? `const v = R[${s}];` : `${rd(i.s1)} const v = m;`;
    const x = i.s1 === 1 ? '(v << 24) >> 24' : i.s1 === 2 ? '(v << 16) >> 16' : 'v | 0';
    return { code: `${src} const x = ${x}; R[${d}] = x >>> 0; RH[${d}] = ${i.s0 === 8 ? '(x >> 31) >>> 0' : '0'};`, writes: false };
  }
  // ADD/SUB/AND/OR/XOR m32/m64, r/imm (read-modify-write, not LOCKed): in place on a directly writable page, else the
  // operand is read through Cpu.readOp (translated for write, so the write-back cannot fault) and written back by writeOp.
  const rmw = RMW.get(i.mnemonic);
  if (rmw !== undefined && i.opCount === 2 && i.k0 === Operand.Mem && (i.s0 === 4 || i.s0 === 8) && i.rmw && !i.lock && i.rep === 0 &&
    ((i.k1 === Operand.Reg && s < 16 && i.s1 === i.s0) || i.k1 === Operand.Imm)) {
    const size = i.s0;
    const [b, bh] = i.k1 === Operand.Reg ? [`R[${s}]`, size === 8 ? `RH[${s}]` : '0'] : [`${i.immLo}`, size === 8 ? `${i.immHi}` : '0'];
    // The operand is at offset wo of the writable page view w (none: the slow path).
    const read = viewRead('w', 'wo', size);
    const ordinary = `${ea()} { ${probeSource(size, 'WP')} { w = p; wo = o; ${read} } else { ${STATE} ${SYNC} m = cpu.readOp(i${k}, 0); mh = cpu.vHi; } }`;
    const load = group === null ? `let m = 0, mh = 0, w = null, wo = 0; ${ordinary}`
      : `let m = 0, mh = 0, w = null, wo = 0; ${group.first ? groupProbeSource(i, group) : ''}` +
        ` if (qw${group.id} !== null) { w = qw${group.id}; wo = qo${group.id} + ${signedDisp(i)}; ${read} } else { ${ordinary} }`;
    const store = (lo: string, hi: string): string =>
      `if (w !== null) { ${viewWrite('w', 'wo', size, lo, hi)} } else cpu.writeOp(i${k}, 0, ${lo}, ${size === 8 ? hi : '0'});`;
    return { code: `${load} ${aluSource(rmw, size, 'm', size === 8 ? 'mh' : '0', b, bh, null, defer, store)}`, writes: true };
  }
  return null;
}
