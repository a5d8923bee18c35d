/** RFLAGS bits. */
export const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, TF = 0x100, IF = 0x200, DF = 0x400, OF = 0x800;
export const NT = 0x4000, RF = 0x10000, VM = 0x20000, AC = 0x40000, VIF = 0x80000, VIP = 0x100000, ID = 0x200000;
export const IOPL = 0x3000;
export const ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;
/**
 * Bits POPF/POPFQ changes at CPL0 in 64-bit mode (IOPL included): all but RF,
 * VM, VIF and VIP (SDM vol. 2 POPF); RF is cleared. Bit 1 always reads 1.
 */
export const POPF_MASK = CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | AC | ID;
/** Bits IRETQ loads at CPL0 in 64-bit mode: POPF's plus RF, VIF and VIP (SDM vol. 2 IRET). */
export const IRET_MASK = POPF_MASK | RF | VIF | VIP;

/** PF for each value of the result's low byte. */
export const PARITY = new Uint8Array(256);
for (let v = 0; v < 256; v++) {
  let bits = 0;
  for (let b = 0; b < 8; b++) bits += (v >> b) & 1;
  PARITY[v] = bits % 2 === 0 ? PF : 0;
}

/** Mask and sign bit per operand size in bytes (index 1, 2, 4; 8 uses the high word's sign). */
export const SIZE_MASK = [0, 0xff, 0xffff, 0, 0xffffffff, 0, 0, 0, 0xffffffff];
export const SIGN_BIT = [0, 0x80, 0x8000, 0, 0x80000000, 0, 0, 0, 0x80000000];

/** Evaluate an iced ConditionCode (1..16) against RFLAGS. */
export function testCondition(cc: number, f: number): boolean {
  switch (cc) {
    case 1: return (f & OF) !== 0; // o
    case 2: return (f & OF) === 0; // no
    case 3: return (f & CF) !== 0; // b
    case 4: return (f & CF) === 0; // ae
    case 5: return (f & ZF) !== 0; // e
    case 6: return (f & ZF) === 0; // ne
    case 7: return (f & (CF | ZF)) !== 0; // be
    case 8: return (f & (CF | ZF)) === 0; // a
    case 9: return (f & SF) !== 0; // s
    case 10: return (f & SF) === 0; // ns
    case 11: return (f & PF) !== 0; // p
    case 12: return (f & PF) === 0; // np
    case 13: return ((f & SF) !== 0) !== ((f & OF) !== 0); // l
    case 14: return ((f & SF) !== 0) === ((f & OF) !== 0); // ge
    case 15: return (f & ZF) !== 0 || ((f & SF) !== 0) !== ((f & OF) !== 0); // le
    case 16: return (f & ZF) === 0 && ((f & SF) !== 0) === ((f & OF) !== 0); // g
    default: return true;
  }
}
