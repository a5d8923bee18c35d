import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decoder, DecoderOptions, Formatter, FormatterSyntax } from 'iced-x86';

/*
 * Hand-assembled guests for robustness tests. A guest is a list of
 * [bytes, NASM text] lines; `assemble` decodes every line with iced-x86 and
 * insists the bytes are exactly the instruction the text names, so a test's
 * listing cannot silently say something other than what runs.
 */

/** Where the firmware enters a bzImage loaded at 0x2000000: startup_64, image offset 0x200. */
export const LOAD_ADDRESS = 0x2000000;
export const STARTUP_64 = LOAD_ADDRESS + 0x200;

/**
 * One instruction: its bytes in hex ("48 31 c0") and its NASM text as iced-x86
 * prints it ("xor rax,rax"); or data bytes, with the text "db".
 */
export type AsmLine = readonly [bytes: string, nasm: string];

/** The bytes of `lines` placed at `ip`, checked against their texts (throws on a mismatch). */
export function assemble(lines: readonly AsmLine[], ip = STARTUP_64): number[] {
  const out: number[] = [];
  const formatter = new Formatter(FormatterSyntax.Nasm);
  try {
    for (const [hex, text] of lines) {
      const bytes = Uint8Array.from(hex.trim().split(/\s+/).map((b) => parseInt(b, 16)));
      if (text === 'db') {
        out.push(...bytes);
        continue;
      }
      const decoder = new Decoder(64, bytes, DecoderOptions.None);
      decoder.ip = BigInt(ip + out.length);
      const insn = decoder.decode();
      const got = insn.isInvalid ? '(invalid)' : formatter.format(insn);
      const len = insn.length;
      insn.free();
      decoder.free();
      if (got !== text || len !== bytes.length) {
        throw new Error(`guest line "${hex}" decodes as "${got}" (${len} of ${bytes.length} bytes), not "${text}"`);
      }
      out.push(...bytes);
    }
  } finally {
    formatter.free();
  }
  return out;
}

/** Little-endian bytes of a 64-bit value, as hex for an AsmLine. */
export function le64(v: bigint): string {
  return Array.from({ length: 8 }, (_, k) => Number((v >> BigInt(8 * k)) & 0xffn).toString(16).padStart(2, '0')).join(' ');
}

/** Little-endian bytes of a 32-bit value, as hex for an AsmLine. */
export function le32(v: number): string {
  return Array.from({ length: 4 }, (_, k) => ((v >>> (8 * k)) & 0xff).toString(16).padStart(2, '0')).join(' ');
}

let scratch: string | null = null;

/**
 * A copy of the bzImage at `kernelPath` with `code` written at startup_64: the
 * protected-mode part starts at ((setup_sects || 4) + 1) * 512, and startup_64
 * is 0x200 into it. Returns the copy's path.
 */
export function guestKernel(kernelPath: string, name: string, code: readonly number[]): string {
  const bz = new Uint8Array(readFileSync(kernelPath));
  const pm = ((bz[0x1f1] || 4) + 1) * 512;
  bz.set(code, pm + 0x200);
  scratch ??= mkdtempSync(join(tmpdir(), 'bzemu-guest-'));
  const p = join(scratch, name);
  writeFileSync(p, bz);
  return p;
}

/** Delete the copies guestKernel made (each is a whole bzImage). */
export function removeGuestKernels(): void {
  if (scratch !== null) rmSync(scratch, { recursive: true, force: true });
  scratch = null;
}

/** A number as iced-x86's NASM formatter prints it: 0..9 in decimal, else hex with an h suffix. */
export function nasmNumber(v: number | bigint): string {
  const n = BigInt(v);
  if (n < 10n) return n.toString();
  const h = n.toString(16).toUpperCase();
  return (/^[A-F]/.test(h) ? '0' : '') + h + 'h';
}

/** Little-endian bytes of a 16-bit value, as hex. */
function le16(v: number): string {
  return [(v & 0xff), (v >>> 8) & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** mov dword [addr],value (addr below 2 GiB: a sign-extended disp32). */
export function storeDword(addr: number, value: number): AsmLine {
  return [`c7 04 25 ${le32(addr)} ${le32(value)}`, `mov dword [${nasmNumber(addr)}],${nasmNumber(value >>> 0)}`];
}

/** mov word [addr],value. */
export function storeWord(addr: number, value: number): AsmLine {
  return [`66 c7 04 25 ${le32(addr)} ${le16(value)}`, `mov word [${nasmNumber(addr)}],${nasmNumber(value & 0xffff)}`];
}

/** The 10-byte pseudo-descriptor LGDT/LIDT read (limit, then 64-bit base), stored at `addr`. */
export function pseudoDescriptor(addr: number, limit: number, base: bigint): AsmLine[] {
  return [
    storeWord(addr, limit),
    storeDword(addr + 2, Number(base & 0xffffffffn)),
    storeDword(addr + 6, Number(base >> 32n)),
  ];
}

export function lidt(addr: number): AsmLine {
  return [`0f 01 1c 25 ${le32(addr)}`, `lidt [${nasmNumber(addr)}]`];
}

export function lgdt(addr: number): AsmLine {
  return [`0f 01 14 25 ${le32(addr)}`, `lgdt [${nasmNumber(addr)}]`];
}

/** A 64-bit interrupt gate for `vector` in the IDT at `idt`: handler `target` (below 4 GiB), selector 0x10, IST `ist`. */
export function interruptGate(idt: number, vector: number, target: number, ist = 0): AsmLine[] {
  const at = idt + vector * 16;
  return [
    storeDword(at, ((target & 0xffff) | (0x10 << 16)) >>> 0),
    storeDword(at + 4, ((target & 0xffff0000) | 0x8e00 | ist) >>> 0),
    storeDword(at + 8, 0),
    storeDword(at + 12, 0),
  ];
}

/**
 * Several pieces of code at fixed offsets from startup_64 (so handlers have
 * known addresses), gaps filled with int3. Pieces must not overlap.
 */
export function layout(pieces: ReadonlyArray<readonly [offset: number, lines: readonly AsmLine[]]>): number[] {
  const out: number[] = [];
  for (const [offset, lines] of [...pieces].sort((a, b) => a[0] - b[0])) {
    if (offset < out.length) throw new Error(`guest piece at +0x${offset.toString(16)} overlaps the one before`);
    while (out.length < offset) out.push(0xcc);
    out.push(...assemble(lines, STARTUP_64 + offset));
  }
  return out;
}

/** Conditional/unconditional short jump (opcode byte `op`, e.g. 0x72 jb, 0xeb jmp) at startup_64+from to startup_64+to. */
export function shortJump(op: number, mnemonic: string, from: number, to: number): AsmLine {
  const rel = to - (from + 2);
  if (rel < -128 || rel > 127) throw new Error(`short jump from +0x${from.toString(16)} to +0x${to.toString(16)} is out of range`);
  const target = (STARTUP_64 + to).toString(16).toUpperCase().padStart(16, '0');
  return [`${op.toString(16)} ${(rel & 0xff).toString(16).padStart(2, '0')}`, `${mnemonic} short ${target}h`];
}
