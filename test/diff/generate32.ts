/*
 * Cases for 32-bit code (compatibility mode on the host, protected mode in
 * bzemu): the forms whose meaning depends on the code segment. Encoded by
 * hand from the opcode tables (ModRM/SIB with 32-bit addressing) so that
 * each family can aim its operands: memory operands and the stack land in the
 * scratch window, address arithmetic wraps at 4 GiB on purpose, and the upper
 * halves of the 64-bit registers hold garbage the 32-bit code must ignore.
 */
import { Decoder, DecoderOptions } from 'iced-x86';
import { SCRATCH } from './native.js';
import { icedFlagsToEflags, Rng, WIN_LEN, WIN_OFF, type DiffCase } from './generate.js';

const EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESP = 4, EBP = 5, ESI = 6, EDI = 7;
/** Registers a case may use as operands or addresses (ESP holds the stack). */
const FREE = [EAX, ECX, EDX, EBX, EBP, ESI, EDI];
const ADDRESS_REGS = [EAX, ECX, EDX, EBX, ESI, EDI];

class Case32 {
  readonly regs: bigint[];
  readonly window: Uint8Array;
  rflags: number;
  readonly bytes: number[] = [];
  memOff = -1;
  memBytes = 0;
  note = '';

  constructor(readonly g: Rng, readonly family: string) {
    // Garbage in every upper half: 32-bit code must neither see nor depend on it.
    this.regs = Array.from({ length: 16 }, () => (BigInt(g.u32()) << 32n) | BigInt(g.u32()));
    this.regs[ESP] = BigInt(SCRATCH + WIN_OFF + 0x100 + 4 * g.below(16));
    this.window = new Uint8Array(WIN_LEN);
    for (let k = 0; k < WIN_LEN; k++) this.window[k] = g.below(256);
    // IF is set: the host runs the code in user mode, where it always is (PUSHFD shows it).
    this.rflags = (g.u32() & 0x8d5) | (g.chance(0.25) ? 0x400 : 0) | 0x202;
  }

  set32(r: number, v: number): void {
    this.regs[r] = (this.regs[r] & 0xffffffff00000000n) | BigInt(v >>> 0);
  }

  /** ModRM (and SIB, displacement) for `reg` and a memory operand at scratch offset `target`, 32-bit addressing. */
  memory(reg: number, target: number, avoid: number[] = []): number[] {
    const g = this.g;
    const t = SCRATCH + target;
    this.memOff = target;
    const free = ADDRESS_REGS.filter((r) => !avoid.includes(r));
    const base = g.pick(free);
    switch (g.below(4)) {
      case 0: // [disp32]
        return [(reg << 3) | 5, ...le32(t)];
      case 1: { // [base + disp8]
        const disp = g.below(256) - 128;
        this.set32(base, t - disp);
        return [0x40 | (reg << 3) | base, disp & 0xff];
      }
      case 2: { // [base + index*scale + disp32], wrapping at 4 GiB
        const index = g.pick(free.filter((r) => r !== base));
        const s = g.below(4);
        const iv = g.u32();
        const disp = g.u32() | 0;
        this.set32(index, iv);
        this.set32(base, Number((BigInt(t) - BigInt(iv) * BigInt(1 << s) - BigInt(disp)) & 0xffffffffn));
        return [0x84 | (reg << 3), (s << 6) | (index << 3) | base, ...le32(disp)];
      }
      default: // [base]
        this.set32(base, t);
        return [(reg << 3) | base];
    }
  }

  finish(): DiffCase {
    const code = new Uint8Array(this.bytes);
    const d = new Decoder(32, code, DecoderOptions.None);
    const ins = d.decode();
    const undef = ins.isInvalid ? 0 : icedFlagsToEflags(ins.rflagsUndefined);
    ins.free();
    d.free();
    return {
      family: this.family,
      code,
      regs: this.regs,
      rflags: this.rflags,
      winOff: WIN_OFF,
      window: this.window,
      undefFlags: undef,
      skipRegs: 0,
      skipMem: false,
      usedRegs: 0xff,
      memOff: this.memOff,
      memBytes: this.memBytes,
      note: this.note,
      bits: 32,
    };
  }
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

/** Two-operand ALU forms (opcode of the r/m, r direction; +2 is r, r/m), one-operand groups, INC/DEC short forms, and more. */
const ALU_RM_R = [0x01, 0x09, 0x11, 0x19, 0x21, 0x29, 0x31, 0x39, 0x85, 0x87, 0x89];
const GROUP_F7 = [2, 3, 4, 5]; // NOT NEG MUL IMUL
const SHIFTS = [0, 1, 2, 3, 4, 5, 7];

function alu(g: Rng): DiffCase {
  const c = new Case32(g, 'code32-alu');
  const prefix = g.chance(0.2) ? [0x66] : [];
  const reg = g.pick(FREE);
  for (const r of FREE) c.set32(r, Number(g.chance(0.3) ? BigInt(g.pick([0, 1, 0x7fffffff, 0x80000000, 0xffffffff])) : BigInt(g.u32())));
  const target = 0x40 + g.below(0x80);
  const rm = (): number[] => (g.chance(0.5) ? [0xc0 | (reg << 3) | g.pick(FREE)] : c.memory(reg, target, [reg]));
  const size = prefix.length ? 2 : 4;
  c.memBytes = size;
  switch (g.below(9)) {
    case 0: case 1: { const op = g.pick(ALU_RM_R); c.bytes.push(...prefix, op, ...rm()); break; }
    case 2: { const op = g.pick(ALU_RM_R.filter((o) => o < 0x80)) + 2; c.bytes.push(...prefix, op, ...rm()); break; }
    case 3: c.bytes.push(...prefix, (g.chance(0.5) ? 0x40 : 0x48) + g.pick(FREE)); break; // INC/DEC r32: one-byte forms in 32-bit code only
    case 4: { const sub = g.pick(GROUP_F7); c.bytes.push(...prefix, 0xf7, ...(g.chance(0.5) ? [0xc0 | (sub << 3) | g.pick(FREE)] : c.memory(sub, target))); break; }
    case 5: { const sub = g.pick(SHIFTS); c.bytes.push(...prefix, 0xc1, ...(g.chance(0.5) ? [0xc0 | (sub << 3) | g.pick(FREE)] : c.memory(sub, target)), g.below(40)); break; }
    case 6: c.bytes.push(...prefix, 0x0f, 0xaf, ...rm()); break; // IMUL r, r/m
    case 7: c.bytes.push(0x0f, g.pick([0xb6, 0xbe, 0xb7, 0xbf]), ...rm()); c.memBytes = 2; break; // MOVZX/MOVSX
    default: c.bytes.push(...prefix, 0x8d, ...c.memory(reg, target, [reg])); c.memOff = -1; break; // LEA: address arithmetic only
  }
  return c.finish();
}

function stack(g: Rng, insnAddr: number): DiffCase {
  const c = new Case32(g, 'code32-stack');
  const esp = Number(c.regs[ESP]);
  const r = g.pick(FREE);
  c.memOff = esp - SCRATCH - 8;
  c.memBytes = 16;
  switch (g.below(12)) {
    case 0: c.bytes.push(0x50 + g.pick([...FREE, ESP])); break; // PUSH r32 (PUSH ESP pushes the old value)
    case 1: c.bytes.push(0x58 + r); break; // POP r32
    case 2: c.bytes.push(0x68, ...le32(g.u32())); break; // PUSH imm32
    case 3: c.bytes.push(0x6a, g.below(256)); break; // PUSH imm8, sign-extended to 32 bits
    case 4: c.bytes.push(0x66, 0x50 + r); break; // PUSH r16
    case 5: c.bytes.push(0xff, ...c.memory(6, 0x40 + g.below(0x40))); break; // PUSH m32
    case 6: c.bytes.push(0x8f, ...c.memory(0, 0x40 + g.below(0x40))); break; // POP m32 (ESP incremented before the address is used)
    case 7: c.bytes.push(0x9c); break; // PUSHFD
    case 8: { // POPFD of arithmetic flags and DF (TF, IF, AC stay as they are)
      const at = esp - SCRATCH - WIN_OFF;
      const v = (g.u32() & 0xcd5) | 0x2;
      c.window.set(le32(v), at);
      c.bytes.push(0x9d);
      break;
    }
    case 9: { // LEAVE with EBP in the window
      c.set32(EBP, SCRATCH + WIN_OFF + 0x40 + 4 * g.below(32));
      c.bytes.push(0xc9);
      break;
    }
    case 10: c.bytes.push(0xc8, g.below(256), g.below(2), 0x00); break; // ENTER imm16, 0
    default: { // CALL rel32 / RET / RET imm16 landing right after themselves
      const k = g.below(3);
      const at = esp - SCRATCH - WIN_OFF;
      if (k === 0) c.bytes.push(0xe8, 0, 0, 0, 0);
      else if (k === 1) { c.window.set(le32(insnAddr + 1), at); c.bytes.push(0xc3); }
      else { c.window.set(le32(insnAddr + 3), at); c.bytes.push(0xc2, g.below(64) & ~3, 0); }
    }
  }
  return c.finish();
}

function string(g: Rng): DiffCase {
  const c = new Case32(g, 'code32-string');
  const op = g.pick([0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);
  const wide = g.chance(0.3) ? [0x66] : [];
  const rep = g.chance(0.6) ? [g.pick([0xf3, 0xf2])] : [];
  c.rflags = (c.rflags & ~0x400) | (g.chance(0.3) ? 0x400 : 0);
  c.set32(ECX, g.chance(0.2) ? 0 : g.below(9));
  c.set32(ESI, SCRATCH + WIN_OFF + 0x40 + g.below(0x40));
  c.set32(EDI, SCRATCH + WIN_OFF + 0x100 + g.below(0x40));
  if (g.chance(0.3)) c.window.copyWithin(0x100, 0x40, 0x80); // equal runs, so REPE CMPS goes on
  c.bytes.push(...rep, ...wide, op);
  return c.finish();
}

function branch(g: Rng): DiffCase {
  const c = new Case32(g, 'code32-branch');
  c.set32(ECX, g.pick([0, 1, 2, g.u32()]));
  switch (g.below(4)) {
    case 0: c.bytes.push(0x70 + g.below(16), 0); break; // Jcc rel8 (either way lands after it)
    case 1: c.bytes.push(g.pick([0xe0, 0xe1, 0xe2]), 0); break; // LOOPNE/LOOPE/LOOP on ECX
    case 2: c.bytes.push(0xe3, 0); break; // JECXZ
    default: c.bytes.push(0x0f, 0x80 + g.below(16), 0, 0, 0, 0); break; // Jcc rel32
  }
  return c.finish();
}

export interface Family32 {
  name: string;
  make(g: Rng, insnAddr: number): DiffCase;
}

export const FAMILIES_32: readonly Family32[] = [
  { name: 'code32-alu', make: (g) => alu(g) },
  { name: 'code32-stack', make: stack },
  { name: 'code32-string', make: (g) => string(g) },
  { name: 'code32-branch', make: (g) => branch(g) },
];

export function generate32(f: Family32, seed: number, count: number, insnAddr: number): DiffCase[] {
  const g = new Rng(seed, f.name);
  return Array.from({ length: count }, () => f.make(g, insnAddr));
}
