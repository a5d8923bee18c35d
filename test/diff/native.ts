/*
 * Builds and drives the native harness (harness.c): encodes a batch of cases,
 * runs them on the host CPU, and parses the results. The binary layout is
 * documented at the top of harness.c.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Fixed addresses shared with harness.c. */
export const SCRATCH = 0x100000;
export const SCRATCH_SIZE = 0x10000;
export const MAX_OUTSIDE = 16;

/** One instruction with its complete input state. */
export interface DiffInput {
  /** Instruction bytes (at most 15). */
  code: Uint8Array;
  /** 16 GPRs in encoding order; rsp is passed through untouched. */
  regs: bigint[];
  rflags: number;
  /** Initialised window of the scratch area (offset from SCRATCH); the rest is zero. */
  winOff: number;
  window: Uint8Array;
}

/** What came out: from the host or from bzemu, in the same shape. */
export interface DiffOutput {
  regs: bigint[];
  rflags: number;
  /** Exception vector, or null. */
  fault: number | null;
  /** The window's bytes afterwards. */
  window: Uint8Array;
  /** Number of nonzero scratch bytes outside the window, and the first few as offset << 8 | byte. */
  nOutside: number;
  outside: number[];
  /** Set when the emulator threw something other than an architectural fault. */
  error?: string;
}

const here = dirname(fileURLToPath(import.meta.url));

export interface Harness {
  path: string;
  /** Arguments: ['compat'] runs each instruction in compatibility mode (32-bit code). */
  args: string[];
  /** Address of the instruction under test inside the native stub (use as the emulator's code address). */
  insnAddr: number;
  dispose(): void;
}

/** Compile harness.c into a fresh temporary directory. */
export function buildHarness(mode: 'long' | 'compat' = 'long'): Harness {
  const dir = mkdtempSync(join(tmpdir(), 'bzemu-diff-'));
  const path = join(dir, 'harness');
  execFileSync('gcc', ['-O1', '-Wall', '-Wextra', '-o', path, join(here, 'harness.c')], { stdio: 'pipe' });
  const args = mode === 'compat' ? ['compat'] : [];
  const header = spawnSync(path, args, { input: Buffer.alloc(0) });
  if (header.status !== 0 || header.stdout.length !== 8) throw new Error(`harness did not start: ${header.stderr}`);
  const insnAddr = Number(header.stdout.readBigUInt64LE(0));
  return { path, args, insnAddr, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

function encodeInputs(cases: readonly DiffInput[]): Buffer {
  let total = 0;
  for (const c of cases) total += 160 + c.window.length;
  const buf = Buffer.alloc(total);
  let o = 0;
  for (const c of cases) {
    if (c.code.length > 15) throw new Error('instruction longer than 15 bytes');
    buf[o] = c.code.length;
    buf.set(c.code, o + 1);
    o += 16;
    for (let r = 0; r < 16; r++, o += 8) buf.writeBigUInt64LE(BigInt.asUintN(64, c.regs[r]), o);
    buf.writeBigUInt64LE(BigInt(c.rflags >>> 0), o);
    o += 8;
    buf.writeUInt16LE(c.winOff, o);
    buf.writeUInt16LE(c.window.length, o + 2);
    buf.writeUInt32LE(0, o + 4);
    o += 8;
    buf.set(c.window, o);
    o += c.window.length;
  }
  return buf;
}

/** Run a batch natively. */
export function runNative(h: Harness, cases: readonly DiffInput[]): DiffOutput[] {
  const input = encodeInputs(cases);
  const res = spawnSync(h.path, h.args, { input, maxBuffer: 1 << 30 });
  if (res.status !== 0) throw new Error(`harness failed (status ${res.status}, signal ${res.signal}): ${res.stderr}`);
  const out = res.stdout;
  let o = 8;
  const results: DiffOutput[] = [];
  for (const c of cases) {
    const regs: bigint[] = [];
    for (let r = 0; r < 16; r++, o += 8) regs.push(out.readBigUInt64LE(o));
    const rflags = Number(out.readBigUInt64LE(o) & 0xffffffffn);
    const fault = out.readInt32LE(o + 8);
    const nOutside = out.readUInt32LE(o + 12);
    o += 16;
    const window = new Uint8Array(out.subarray(o, o + c.window.length));
    o += c.window.length;
    const outside: number[] = [];
    for (let k = 0; k < Math.min(nOutside, MAX_OUTSIDE); k++, o += 4) outside.push(out.readUInt32LE(o));
    results.push({ regs, rflags, fault: fault < 0 ? null : fault, window, nOutside, outside });
  }
  if (o !== out.length) throw new Error(`harness output length ${out.length}, parsed ${o}`);
  return results;
}

/** CPU vendor and feature flags of the host, from /proc/cpuinfo. */
export interface HostCpu {
  vendor: string;
  amd: boolean;
  flags: Set<string>;
}

let host: HostCpu | null = null;

export function hostCpu(): HostCpu {
  if (host) return host;
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  const vendor = /^vendor_id\s*:\s*(\S+)/m.exec(text)?.[1] ?? 'unknown';
  const flags = new Set((/^flags\s*:\s*(.*)$/m.exec(text)?.[1] ?? '').split(/\s+/));
  host = { vendor, amd: vendor === 'AuthenticAMD', flags };
  return host;
}
