import type { Handler, Insn } from '../insn.js';
import { Operand } from '../insn.js';
import { HIGH8 } from '../registers.js';

/**
 * Decode-time operand-form specialisation. A family lists handlers for the
 * forms it specialises (r = general-purpose register other than AH..BH,
 * m = memory, i = immediate already extended to the operand size; the digit
 * is the operand size) and `pickForm` returns the one matching a decoded
 * instruction, or the family's generic handler. Specialised handlers compute
 * exactly what the generic one does, without the operand-kind and size switches.
 */
export interface FormSet {
  rr8?: Handler;
  rr4?: Handler;
  rr2?: Handler;
  rr1?: Handler;
  ri8?: Handler;
  ri4?: Handler;
  ri2?: Handler;
  ri1?: Handler;
  rm8?: Handler;
  rm4?: Handler;
  rm2?: Handler;
  rm1?: Handler;
  mr8?: Handler;
  mr4?: Handler;
  mr2?: Handler;
  mr1?: Handler;
  mi8?: Handler;
  mi4?: Handler;
  mi2?: Handler;
  mi1?: Handler;
}

function bySize(s: number, h8: Handler | undefined, h4: Handler | undefined, h2: Handler | undefined, h1: Handler | undefined): Handler | undefined {
  return s === 8 ? h8 : s === 4 ? h4 : s === 2 ? h2 : s === 1 ? h1 : undefined;
}

/** The specialised handler for a two-operand instruction of equal operand sizes, or `generic`. */
export function pickForm(insn: Insn, forms: FormSet, generic: Handler): Handler {
  if (insn.opCount !== 2 || insn.lock || insn.rep !== 0) return generic;
  const s = insn.s0;
  if (insn.s1 !== s) return generic;
  const k0 = insn.k0, k1 = insn.k1;
  let h: Handler | undefined;
  if (k0 === Operand.Reg) {
    if (insn.r0 >= HIGH8) return generic;
    if (k1 === Operand.Reg) {
      if (insn.r1 >= HIGH8) return generic;
      h = bySize(s, forms.rr8, forms.rr4, forms.rr2, forms.rr1);
    } else if (k1 === Operand.Imm) h = bySize(s, forms.ri8, forms.ri4, forms.ri2, forms.ri1);
    else if (k1 === Operand.Mem) h = bySize(s, forms.rm8, forms.rm4, forms.rm2, forms.rm1);
  } else if (k0 === Operand.Mem) {
    if (k1 === Operand.Reg) {
      if (insn.r1 >= HIGH8) return generic;
      h = bySize(s, forms.mr8, forms.mr4, forms.mr2, forms.mr1);
    } else if (k1 === Operand.Imm) h = bySize(s, forms.mi8, forms.mi4, forms.mi2, forms.mi1);
  }
  return h ?? generic;
}
