/*
 * Builds and drives the paged native harness (paged-harness.c): programs run
 * on the host CPU in a fixed page layout that bzemu reproduces with its own
 * page tables. The layout and the binary protocol are documented at the top
 * of paged-harness.c; the constants here must match it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAGIC = 0x3147504646494450n;
export const CODE = 0x3fff0000;
export const CODE_SIZE = 0x2000;
/** Two absent pages follow the code. */
export const CODE_GUARD = CODE + CODE_SIZE;
/** The first code page, mapped a second time. */
export const ALIAS = 0x3fff4000;
/** Only bzemu maps this page (its GDT); the host leaves it absent. */
export const GDT_PAGE = 0x3fe00000;
export const DATA = 0x3fffa000;
export const DATA_SIZE = 0x6000;
/** Absent in every mapping mode (the 1 GiB boundary). */
export const DATA_GUARD = DATA + DATA_SIZE;
/** Bytes of `jmp [exit]` the host places after the program. */
export const EXIT_JUMP = 7;
export const MAX_OUTSIDE = 16;
/** Selectors of the host's 64-bit user code and data segments (Linux x86-64). */
export const USER_CS = 0x33;
export const USER_SS = 0x2b;

/** How bzemu maps the layout: page-table depth and the page size of the region holding code and data. */
export interface PagingMode {
  levels: 4 | 5;
  /** 4 KiB: every page its own frame (scattered), DATA0 read-only, guards absent. 2 MiB / 1 GiB: one large page covers code and data. */
  pageSize: '4K' | '2M' | '1G';
}

export interface DataWindow {
  /** Offset from DATA. */
  off: number;
  bytes: Uint8Array;
}

/** One program with its complete input state. */
export interface PagedInput {
  mode: PagingMode;
  /** Offset of the program in the code area. */
  codeOff: number;
  code: Uint8Array;
  /** 16 GPRs in encoding order, RSP included. */
  regs: bigint[];
  rflags: number;
  windows: DataWindow[];
}

export interface PagedOutput {
  regs: bigint[];
  rip: bigint;
  rflags: number;
  fault: number | null;
  errorCode: number;
  cr2: bigint;
  /** The program's bytes after the run (self-modifying code). */
  code: Uint8Array;
  windows: Uint8Array[];
  nOutside: number;
  outside: number[];
  /** Set when the emulator threw something other than an architectural fault. */
  error?: string;
}

const here = dirname(fileURLToPath(import.meta.url));

export interface PagedHarness {
  path: string;
  dispose(): void;
}

export function buildPagedHarness(): PagedHarness {
  const dir = mkdtempSync(join(tmpdir(), 'bzemu-pdiff-'));
  const path = join(dir, 'paged-harness');
  execFileSync('gcc', ['-O1', '-Wall', '-Wextra', '-o', path, join(here, 'paged-harness.c')], { stdio: 'pipe' });
  const header = spawnSync(path, [], { input: Buffer.alloc(0) });
  if (header.status !== 0 || header.stdout.length !== 8 || header.stdout.readBigUInt64LE(0) !== MAGIC) {
    throw new Error(`paged harness did not start: ${header.stderr}`);
  }
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

function encode(cases: readonly PagedInput[]): Buffer {
  let total = 0;
  for (const c of cases) {
    total += 8 + 136 + c.code.length;
    for (const w of c.windows) total += 4 + w.bytes.length;
  }
  const buf = Buffer.alloc(total);
  let o = 0;
  for (const c of cases) {
    if (c.codeOff + c.code.length > CODE_SIZE) throw new Error('program does not fit the code area');
    buf[o] = c.mode.pageSize === '4K' ? 1 : 0;
    buf[o + 1] = c.windows.length;
    buf.writeUInt16LE(c.codeOff, o + 2);
    buf.writeUInt16LE(c.code.length, o + 4);
    o += 8;
    for (let r = 0; r < 16; r++, o += 8) buf.writeBigUInt64LE(BigInt.asUintN(64, c.regs[r]), o);
    buf.writeBigUInt64LE(BigInt(c.rflags >>> 0), o);
    o += 8;
    buf.set(c.code, o);
    o += c.code.length;
    for (const w of c.windows) {
      if (w.off + w.bytes.length > DATA_SIZE) throw new Error('window outside the data area');
      buf.writeUInt16LE(w.off, o);
      buf.writeUInt16LE(w.bytes.length, o + 2);
      buf.set(w.bytes, o + 4);
      o += 4 + w.bytes.length;
    }
  }
  return buf;
}

/** Run a batch natively. */
export function runPagedNative(h: PagedHarness, cases: readonly PagedInput[]): PagedOutput[] {
  const res = spawnSync(h.path, [], { input: encode(cases), maxBuffer: 1 << 30 });
  if (res.status !== 0) throw new Error(`paged harness failed (status ${res.status}, signal ${res.signal}): ${res.stderr}`);
  const out = res.stdout;
  let o = 8;
  const results: PagedOutput[] = [];
  for (const c of cases) {
    const regs: bigint[] = [];
    for (let r = 0; r < 16; r++, o += 8) regs.push(out.readBigUInt64LE(o));
    const rip = out.readBigUInt64LE(o);
    const rflags = Number(out.readBigUInt64LE(o + 8) & 0xffffffffn);
    const fault = out.readInt32LE(o + 16);
    const errorCode = out.readUInt32LE(o + 20);
    const cr2 = out.readBigUInt64LE(o + 24);
    o += 32;
    const code = new Uint8Array(out.subarray(o, o + c.code.length));
    o += c.code.length;
    const windows: Uint8Array[] = [];
    for (const w of c.windows) {
      windows.push(new Uint8Array(out.subarray(o, o + w.bytes.length)));
      o += w.bytes.length;
    }
    const nOutside = out.readUInt32LE(o);
    o += 4;
    const outside: number[] = [];
    for (let k = 0; k < Math.min(nOutside, MAX_OUTSIDE); k++, o += 4) outside.push(out.readUInt32LE(o));
    results.push({ regs, rip, rflags, fault: fault < 0 ? null : fault, errorCode, cr2, code, windows, nOutside, outside });
  }
  if (o !== out.length) throw new Error(`paged harness output length ${out.length}, parsed ${o}`);
  return results;
}
