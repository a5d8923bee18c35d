import { Code, Decoder, DecoderError, InstructionInfoFactory, DecoderOptions, Formatter, FormatterSyntax, MemorySize, OpAccess, OpKind, Register, icedVersion, type Instruction } from './iced.js';
import { Insn, Operand, type DecodeFacts } from './insn.js';
import { gprOf, segmentOf } from './registers.js';
import { handlerFor, gapHandler, undefinedOpcode } from './exec/table.js';
import { RECORD_LAYOUT, insnFromRecord, recordOf, type InsnRecord } from './insn-record.js';

/** Code segment kinds the decoder reads: 64-bit mode, or 32-bit code (protected mode or compatibility mode). */
export type CodeBits = 64 | 32;

const MASK32 = 0xffffffffn;
let infoFactory: InstructionInfoFactory | null = null;

function memorySizeBytes(ms: MemorySize): number {
  switch (ms) {
    case MemorySize.UInt8: case MemorySize.Int8: return 1;
    case MemorySize.UInt16: case MemorySize.Int16: case MemorySize.WordOffset: return 2;
    case MemorySize.UInt32: case MemorySize.Int32: return 4;
    case MemorySize.UInt64: case MemorySize.Int64: return 8;
    case MemorySize.Fword6: return 6;
    case MemorySize.Fword10: return 10;
    default: return 0;
  }
}

function setOperand(insn: Insn, n: number, kind: Operand, r: number, size: number): void {
  if (n === 0) { insn.k0 = kind; insn.r0 = r; insn.s0 = size; }
  else if (n === 1) { insn.k1 = kind; insn.r1 = r; insn.s1 = size; }
  else { insn.k2 = kind; insn.r2 = r; insn.s2 = size; }
}

/** Operand size of the instruction: the first register or memory operand's size. */
function primarySize(ins: Instruction): number {
  for (let n = 0; n < ins.opCount; n++) {
    const k = ins.opKind(n);
    if (k === OpKind.Register) {
      const g = gprOf(ins.opRegister(n));
      if (g) return g.size;
    } else if (k === OpKind.Memory) {
      const s = memorySizeBytes(ins.memorySize);
      if (s) return s;
    }
  }
  return 8;
}

/** LOOP/LOOPE/LOOPNE with a 0x67 prefix: they have no memory operand to carry the address size. */
const ECX_COUNTED: ReadonlySet<number> = new Set([Code.Loop_rel8_64_ECX, Code.Loope_rel8_64_ECX, Code.Loopne_rel8_64_ECX,
  Code.Loop_rel8_32_ECX, Code.Loope_rel8_32_ECX, Code.Loopne_rel8_32_ECX]);

/**
 * Decode one instruction at a linear address into a plain Insn with its handler
 * attached. Returns null when the bytes end before the instruction does (the
 * caller then knows a page boundary is involved); with `force` such bytes
 * become a #UD instruction instead.
 */
export function decodeInsn(bytes: Uint8Array, ipLo: number, ipHi: number, force = false, bits: CodeBits = 64): Insn | null {
  const decoded = decodeFields(bytes, ipLo, ipHi, force, bits);
  if (decoded === null || decoded instanceof Insn) return decoded;
  decoded.insn.exec = handlerFor(decoded.insn, decoded.facts, bits);
  return decoded.insn;
}

/**
 * Decode one instruction as decodeInsn does, but as its record
 * (insn-record.ts), which depends on the instruction's own bytes and the code
 * size alone. Instructions no record describes come back as they are: an
 * undefined opcode (its bytes are the whole window) and forms bzemu has no
 * handler for; null when the bytes end first (and not `force`).
 */
export function decodeRecord(bytes: Uint8Array, ipLo: number, ipHi: number, force = false, bits: CodeBits = 64): InsnRecord | Insn | null {
  const decoded = decodeFields(bytes, ipLo, ipHi, force, bits);
  return decoded === null || decoded instanceof Insn ? decoded : recordOf(decoded.insn, decoded.facts, bits);
}

/** The instruction's fields and the facts its handler is picked by; a finished Insn where there is nothing to pick; null as above. */
function decodeFields(bytes: Uint8Array, ipLo: number, ipHi: number, force: boolean, bits: CodeBits): { insn: Insn; facts: DecodeFacts } | Insn | null {
  const ip = (BigInt(ipHi) << 32n) | BigInt(ipLo >>> 0);
  const decoder = new Decoder(bits, bytes, DecoderOptions.None);
  decoder.ip = ip;
  const ins = decoder.decode();
  try {
    if (ins.isInvalid) {
      if (decoder.lastError === DecoderError.NoMoreBytes && !force) return null;
      const bad = new Insn(undefinedOpcode, bytes.slice(0, Math.max(1, Math.min(bytes.length, 15))));
      bad.len = 1;
      return bad;
    }
    const insn = new Insn(gapHandler, bytes.slice(0, ins.length));
    insn.mnemonic = ins.mnemonic;
    insn.code = ins.code;
    insn.len = ins.length;
    insn.opCount = ins.opCount;
    insn.cc = ins.conditionCode;
    insn.lock = ins.hasLockPrefix;
    insn.rep = ins.hasRepnePrefix ? 2 : ins.hasRepePrefix || ins.hasRepPrefix ? 1 : 0;
    if (ECX_COUNTED.has(ins.code)) insn.addrSize = 4; // 0x67 LOOPcc counts in ECX (and writes it zero-extended)
    const nextIp = ins.nextIP;
    const size = primarySize(ins);
    const count = Math.min(ins.opCount, 3);
    for (let n = 0; n < count; n++) {
      const kind = ins.opKind(n);
      switch (kind) {
        case OpKind.Register: {
          const reg = ins.opRegister(n);
          const g = gprOf(reg);
          if (g) setOperand(insn, n, Operand.Reg, g.index, g.size);
          else setOperand(insn, n, Operand.None, reg, 0); // segment/control/other registers: handlers read `r` as the iced register
          break;
        }
        case OpKind.Memory: {
          const base = ins.memoryBase;
          const index = ins.memoryIndex;
          let disp = ins.memoryDisplacement;
          if (base === Register.RIP || base === Register.EIP) {
            insn.memBase = 16;
            if (base === Register.EIP) insn.addrSize = 4; // 0x67: EIP + disp32, truncated like any 32-bit address
            disp = (disp - nextIp) & 0xffffffffffffffffn;
          } else if (base !== Register.None) {
            const g = gprOf(base)!;
            insn.memBase = g.index;
            if (g.size === 4) insn.addrSize = 4;
          }
          if (index !== Register.None) {
            const g = gprOf(index);
            if (!g) {
              insn.exec = gapHandler; // vector SIB: not a general-purpose form
              return insn;
            }
            insn.memIndex = g.index;
            if (g.size === 4) insn.addrSize = 4;
          }
          if (bits === 32) {
            // 32-bit code: offsets wrap at 4 GiB; a 0x67 prefix (16-bit addressing) is not modelled.
            if (ins.memoryDisplSize === 2 || (base !== Register.None && gprOf(base)!.size === 2)) {
              insn.exec = gapHandler;
              return insn;
            }
            insn.addrSize = 4;
          }
          insn.memScale = ins.memoryIndexScale;
          insn.dispLo = Number(disp & MASK32);
          insn.dispHi = Number((disp >> 32n) & MASK32);
          const segment = segmentOf(ins.memorySegment);
          insn.memSeg = segment === 4 || segment === 5 ? segment : -1;
          setOperand(insn, n, Operand.Mem, 0, memorySizeBytes(ins.memorySize) || size);
          break;
        }
        case OpKind.MemorySegRSI: case OpKind.MemorySegESI: case OpKind.MemorySegSI:
        case OpKind.MemoryESRDI: case OpKind.MemoryESEDI: case OpKind.MemoryESDI: case OpKind.MemorySegRDI: case OpKind.MemorySegEDI: case OpKind.MemorySegDI: {
          if (kind === OpKind.MemorySegESI || kind === OpKind.MemoryESEDI || kind === OpKind.MemorySegEDI) insn.addrSize = 4;
          const segment = segmentOf(ins.memorySegment);
          insn.memSeg = segment === 4 || segment === 5 ? segment : -1;
          setOperand(insn, n, Operand.Mem, 0, memorySizeBytes(ins.memorySize) || size);
          break;
        }
        case OpKind.NearBranch16: case OpKind.NearBranch32: case OpKind.NearBranch64: {
          const target = ins.nearBranchTarget;
          let rel = (target - nextIp) & 0xffffffffffffffffn;
          if (rel >= 0x8000000000000000n) rel -= 0x10000000000000000n;
          insn.rel = Number(rel);
          setOperand(insn, n, Operand.Imm, 0, 8);
          break;
        }
        case OpKind.Immediate8_2nd:
          insn.imm2 = ins.immediate8_2nd;
          setOperand(insn, n, Operand.Imm, 0, 1);
          break;
        case OpKind.Immediate8: case OpKind.Immediate16: case OpKind.Immediate32: case OpKind.Immediate64:
        case OpKind.Immediate8to16: case OpKind.Immediate8to32: case OpKind.Immediate8to64: case OpKind.Immediate32to64: {
          const v = ins.immediate(n);
          insn.immLo = Number(v & MASK32);
          insn.immHi = Number((v >> 32n) & MASK32);
          const immSize = kind === OpKind.Immediate8 ? 1 : kind === OpKind.Immediate16 ? 2 : size;
          setOperand(insn, n, Operand.Imm, 0, immSize);
          break;
        }
        default:
          setOperand(insn, n, Operand.None, 0, 0);
      }
    }
    // Read-modify-write matters only for a memory destination (readOp/writeOp): the access query is a costly WebAssembly call.
    if (insn.k0 === Operand.Mem) {
      infoFactory ??= new InstructionInfoFactory();
      const info = infoFactory.info(ins);
      const access = info.op0Access;
      info.free();
      insn.rmw = access === OpAccess.ReadWrite || access === OpAccess.ReadCondWrite;
    }
    const op0Kind = ins.op0Kind;
    const far = op0Kind === OpKind.FarBranch32 || op0Kind === OpKind.FarBranch16;
    const facts: DecodeFacts = {
      code: ins.code,
      mnemonic: ins.mnemonic,
      op0Kind,
      op0Register: ins.op0Register,
      op1Kind: ins.op1Kind,
      op1Register: ins.op1Register,
      stackPointerIncrement: ins.stackPointerIncrement,
      isStringInstruction: ins.isStringInstruction,
      farBranchSelector: far ? ins.farBranchSelector : 0,
      farBranch32: far ? ins.farBranch32 : 0,
    };
    return { insn, facts };
  } finally {
    ins.free();
    decoder.free();
  }
}

/**
 * Everything a record depends on besides the instruction's bytes: the
 * decoder's version, this file's code that turns its output into a record,
 * the register tables it uses and the record layout (its list and the code
 * that writes and reads it). Saved records are kept under a hash of this
 * text, so a change to any of them never reads old ones.
 */
export function recordDependencies(): string {
  const tables: number[] = [];
  for (const reg of Object.values(Register)) {
    if (typeof reg !== 'number') continue;
    const g = gprOf(reg);
    tables.push(reg, g === null ? -1 : g.index, g === null ? 0 : g.size, segmentOf(reg));
  }
  return [`iced-x86 ${icedVersion}`, RECORD_LAYOUT, tables.join(','), [...ECX_COUNTED].join(','),
    decodeFields, primarySize, setOperand, memorySizeBytes, recordOf, insnFromRecord].map(String).join('\n');
}

let formatter: Formatter | null = null;

/** AT&T disassembly of raw bytes at an address (reports, traces; slow path only). */
export function disassemble(bytes: Uint8Array, ipLo: number, ipHi = 0, bits: CodeBits = 64): string {
  if (bytes.length === 0) return '(no bytes)';
  const decoder = new Decoder(bits, bytes, DecoderOptions.None);
  decoder.ip = (BigInt(ipHi) << 32n) | BigInt(ipLo >>> 0);
  const ins = decoder.decode();
  try {
    if (ins.isInvalid) return '(bad)';
    formatter ??= new Formatter(FormatterSyntax.Gas);
    return formatter.format(ins);
  } finally {
    ins.free();
    decoder.free();
  }
}

/** Length of the instruction at the start of `bytes` (0 if invalid). */
export function instructionLength(bytes: Uint8Array, bits: CodeBits = 64): number {
  const decoder = new Decoder(bits, bytes, DecoderOptions.None);
  const ins = decoder.decode();
  try {
    return ins.isInvalid ? 0 : ins.length;
  } finally {
    ins.free();
    decoder.free();
  }
}
