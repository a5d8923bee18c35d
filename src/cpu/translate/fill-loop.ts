import { Mnemonic } from '../iced.js';
import { Operand, type Insn } from '../insn.js';
import type { BlockInsn } from '../block.js';
import { ADD_FORMS, CMP_FORMS } from '../exec/arithmetic.js';
import { MOV_FORMS } from '../exec/data.js';
import { TLB_MASK } from '../mmu.js';
import { eaSource, inlineSource } from './inline-code.js';

/*
 * Fill loops. A block that is a whole loop of the form
 *
 *   mov [p + disp], v     (or [base + p + disp]; v a register other than p, or an immediate)
 *   add p, size           (or inc p for a byte store)
 *   cmp p, q  /  cmp q, p (q a register other than p, or an immediate)
 *   jne start             (or jb after cmp p, q / ja after cmp q, p)
 *
 * stores v at consecutive addresses until p reaches q: the byte-wise memset
 * of the boot decompressor's string.c is one (11 % of the instructions of
 * Debian 6.12's decompressor to kernel-entry, nearly all of those to
 * extract_kernel). Such a loop runs at the speed of V8's coldest tier
 * until on-stack replacement optimises its block function, tens of
 * milliseconds per boot. The translated loop therefore starts each pass by
 * doing as many whole passes at once as stay in the store's page (through
 * the TLB's direct write view, so only a page the loop could write inline
 * anyway), within the budget and before the pass that ends the loop: the
 * bytes are filled, p advanced, the retired count and the trace hash
 * advanced by that many passes, and the flags set as the last of those
 * passes' compare set them. At least one pass is always left to the loop's
 * own code, so the pass that leaves the loop, faults or runs out of budget
 * is the ordinary one.
 */
export interface FillLoop {
  /** The pointer register p, stepped by `size` per pass. */
  ptr: number;
  /** Bytes stored per pass (1, 2, 4 or 8), contiguous from pass to pass. */
  size: number;
  /** The stored value: a register, or an immediate (lo/hi halves). */
  valueReg: number;
  valueLo: number;
  valueHi: number;
  /** The bound q: a register, or an immediate (lo/hi halves). */
  boundReg: number;
  boundLo: number;
  boundHi: number;
  /** 'ne': the loop goes on while p != q; 'below': while p < q (unsigned). */
  until: 'ne' | 'below';
}

/** Condition codes (as Insn.cc) of the jumps recognised. */
const CC_B = 3, CC_NE = 6, CC_A = 8;

/** The fill loop that a block whose last instruction jumps back to its start is, or null. */
export function fillLoop(items: readonly BlockInsn[]): FillLoop | null {
  if (items.length !== 4) return null;
  const [store, step, cmp, jcc] = items.map((item) => item.insn);
  // The step: add p, size (64-bit) or inc p.
  let ptr: number, by: number;
  if (step.exec === ADD_FORMS.ri8 && step.immHi === 0) {
    ptr = step.r0;
    by = step.immLo;
  } else if (step.mnemonic === Mnemonic.Inc && step.opCount === 1 && step.k0 === Operand.Reg && step.s0 === 8 && step.r0 < 16 && !step.lock) {
    ptr = step.r0;
    by = 1;
  } else return null;
  const size = storeSize(store);
  if (size === 0 || by !== size || !steppedAddress(store, ptr)) return null;
  const valueReg = store.k1 === Operand.Reg ? store.r1 : -1;
  if (valueReg === ptr) return null;
  // The compare: p against q, either way round, and the jump that goes on while the loop has not reached q.
  let boundReg = -1, boundLo = 0, boundHi = 0, pFirst: boolean;
  if (cmp.exec === CMP_FORMS.rr8 && (cmp.r0 === ptr) !== (cmp.r1 === ptr)) {
    pFirst = cmp.r0 === ptr;
    boundReg = pFirst ? cmp.r1 : cmp.r0;
  } else if (cmp.exec === CMP_FORMS.ri8 && cmp.r0 === ptr) {
    pFirst = true;
    boundLo = cmp.immLo;
    boundHi = cmp.immHi;
  } else return null;
  if (jcc.k0 !== Operand.Imm || jcc.opCount !== 1) return null;
  const isJcc = jcc.mnemonic === Mnemonic.Jne || jcc.mnemonic === Mnemonic.Jb || jcc.mnemonic === Mnemonic.Ja;
  if (!isJcc) return null;
  let until: 'ne' | 'below';
  if (jcc.cc === CC_NE) until = 'ne';
  else if ((jcc.cc === CC_B && pFirst) || (jcc.cc === CC_A && !pFirst)) until = 'below';
  else return null;
  return {
    ptr, size, valueReg, valueLo: store.k1 === Operand.Imm ? store.immLo : 0, valueHi: store.k1 === Operand.Imm && size === 8 ? store.immHi : 0,
    boundReg, boundLo, boundHi, until,
  };
}

/** The size of a plain MOV store to memory from a register or an immediate (0: not one). */
function storeSize(i: Insn): number {
  const h = i.exec;
  if (h === MOV_FORMS.mr8 || h === MOV_FORMS.mi8) return 8;
  if (h === MOV_FORMS.mr4) return 4;
  if (h === MOV_FORMS.mr2) return 2;
  if (h === MOV_FORMS.mr1) return 1;
  if (h === MOV_FORMS.mi4 && (i.s0 === 4 || i.s0 === 2 || i.s0 === 1)) return i.s0;
  return 0;
}

/** Whether the store's address is p + disp or base + p + disp (64-bit, no segment base), so it moves with p. */
function steppedAddress(i: Insn, ptr: number): boolean {
  if (i.k0 !== Operand.Mem || i.memSeg !== -1 || i.addrSize !== 8 || i.memBase === 16) return false;
  if (i.memIndex === -1) return i.memBase === ptr;
  if (i.memScale !== 1 || i.memBase < 0) return false;
  return (i.memBase === ptr) !== (i.memIndex === ptr);
}

/**
 * The code that starts each pass of the loop (R/RH register file and
 * cpu.rflags as in inline code; `limit`, `ic` and `h` the block function's;
 * HR the trace's repeatHash). `n` instructions per pass, whose hash constants
 * are hashPow/hashSum; `store` and `cmp` are the loop's first and third
 * instructions.
 */
export function fillLoopSource(f: FillLoop, store: Insn, cmp: Insn, storeNextLo: number, hi: number, n: number, hashPow: number, hashSum: number): string {
  const p = f.ptr, size = f.size;
  const [ql, qh] = f.boundReg >= 0 ? [`R[${f.boundReg}]`, `RH[${f.boundReg}]`] : [`${f.boundLo}`, `${f.boundHi}`];
  // Passes before the one that leaves the loop: p + m * size reaches q at pass m (1-based).
  const exitPass = f.until === 'ne'
    ? 'dh === 0 && dl !== 0 && dl % SZ === 0 ? dl / SZ : Infinity'
    : '(ph < qh || (ph === qh && pl < ql)) ? (dh === 0 ? Math.ceil(dl / SZ) : Infinity) : 1';
  const v = f.valueReg >= 0 ? `R[${f.valueReg}]` : `${f.valueLo}`;
  const vh = f.valueReg >= 0 ? (size === 8 ? `RH[${f.valueReg}]` : '0') : `${f.valueHi}`;
  const mask = size >= 4 ? 'v' : size === 2 ? 'v & 65535' : 'v & 255';
  // A value whose bytes are all the same fills as bytes; any other is stored element by element.
  const uniform = size === 1 ? 'true' : size === 2 ? 'x === (x & 255) * 257' : size === 4 ? 'x === ((x & 255) * 16843009) >>> 0' : 'x === ((x & 255) * 16843009) >>> 0 && xh === x';
  const element = size === 8 ? 'w.setUint32(o + j * 8, x, true); w.setUint32(o + j * 8 + 4, xh, true);' : `w.setUint${size * 8}(o + j * ${size}, x${size > 1 ? ', true' : ''});`;
  // The compare's own code, with its flags computed now (it is the last instruction of the passes done here).
  const flags = inlineSource(cmp, 2, 0, 0, false)!.code;
  return `{ ${eaSource(store, 0, storeNextLo, hi)}` +
    ` const o = el & 4095, vpn = el >>> 12, s = (vpn ^ eh) & ${TLB_MASK}, w = WP[s];` +
    ` if (TLO[s] === vpn && THI[s] === (eh | 0) && w !== null && RH[${p}] !== 4294967295) {` +
    ` const SZ = ${size}, pl = R[${p}], ph = RH[${p}], ql = ${ql}, qh = ${qh};` +
    ` let dl = ql - pl; const dh = (qh - ph - (dl < 0 ? 1 : 0)) >>> 0; dl >>>= 0;` +
    ` const k = Math.min(Math.floor((4096 - o) / SZ), Math.floor((limit - ic) / ${n}) - 1, (${exitPass}) - 1);` +
    ` if (k > 0) { const v = ${v}, x = (${mask}) >>> 0, xh = ${vh};` +
    ` if (${uniform}) new Uint8Array(w.buffer, w.byteOffset + o, k * SZ).fill(x & 255); else for (let j = 0; j < k; j++) { ${element} }` +
    ` const nl = pl + k * SZ; R[${p}] = nl >>> 0; RH[${p}] = (ph + (nl > 4294967295 ? 1 : 0)) >>> 0;` +
    ` ic += ${n} * k; h = HR(h, ${hashPow}, ${hashSum}, k); { ${flags} } } } }`;
}
