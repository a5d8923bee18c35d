/**
 * npm run bench: guest instructions, wall time and guest MIPS of real boots of
 * the Debian kernels (to extract_kernel and to kernel-entry), plus one SEV-SNP
 * boot of 6.1 to kernel-entry. Prints figures only; asserts nothing.
 *
 * Then fuzz throughput: boots/s of campaign runs on the self-built regress
 * and fix kernels (2 worker threads). `npm run bench -- --fuzz-only` runs only that.
 *
 * Each row is a fresh boot of a fresh machine in this process, so the first
 * rows also pay for JIT warm-up (as every CLI run does).
 */
import { ensureDebianKernel } from '../src/kernel/kernel-cache.js';
import { boot, type BootOptions, type BootResult } from '../src/machine/boot.js';
import { makeVmConfig, type VmConfig } from '../src/hypervisor/vm-config.js';
import type { MilestoneName } from '../src/kernel/verdict.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { workerPoolExecutor } from '../src/analysis/fuzz/executor.js';
import { runSpec } from '../src/analysis/fuzz/plan.js';
import type { TargetConfig } from '../src/analysis/fuzz/runner.js';

interface Case {
  kernel: string;
  label: string;
  until: MilestoneName;
  vm?: VmConfig;
}

const CASES: Case[] = [
  { kernel: 'debian-6.12', label: 'plain', until: 'extract_kernel' },
  { kernel: 'debian-6.12', label: 'plain', until: 'kernel-entry' },
  { kernel: 'debian-6.1-cloud', label: 'plain', until: 'extract_kernel' },
  { kernel: 'debian-6.1-cloud', label: 'plain', until: 'kernel-entry' },
  { kernel: 'debian-6.1-cloud', label: 'snp', until: 'kernel-entry', vm: makeVmConfig({ mode: 'snp' }) },
];

function options(kernelPath: string, c: Case): BootOptions {
  return {
    kernelPath,
    memSize: 1 << 30,
    poison: { kind: 'zero' },
    seed: 1,
    cmdline: 'nokaslr console=ttyS0',
    loadAddress: 0x2000000,
    gdt: 'boot-protocol',
    until: c.until,
    budget: 4e9,
    traceLength: 0,
    vm: c.vm,
  };
}

interface Row {
  kernel: string;
  vm: string;
  until: string;
  verdict: string;
  instructions: number;
  seconds: number;
  mips: number;
  extractAt: number | null;
  hash: string;
}

function run(c: Case): Row {
  const path = ensureDebianKernel(c.kernel);
  const t0 = process.hrtime.bigint();
  const r: BootResult = boot(options(path, c));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const ek = r.milestones.find((m) => m.name === 'extract_kernel');
  return {
    kernel: c.kernel,
    vm: c.label,
    until: c.until,
    verdict: r.verdict,
    instructions: r.instructions,
    seconds,
    mips: r.instructions / seconds / 1e6,
    extractAt: ek ? ek.instruction : null,
    hash: r.traceHash,
  };
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** Boots per second of a fuzz campaign's runs (restores from the entry snapshot) on 2 worker threads. */
async function fuzzThroughput(variant: string, dir: string): Promise<void> {
  const target: TargetConfig = {
    kernelPath: join(dir, variant, 'vmlinux'),
    memSize: 1 << 30,
    cmdline: 'console=ttyS0 earlyprintk=ttyS0,115200',
    loadAddress: 0x2000000,
    gdt: 'boot-protocol',
    until: 'extract_kernel',
    budget: 2e8,
    vm: makeVmConfig({ mode: 'snp' }),
  };
  const pool = workerPoolExecutor(target, 2);
  try {
    const batch = (from: number, n: number) => [...Array(n).keys()].map((i) => ({ ...runSpec(from + i, 1), detail: false }));
    await pool.exec(batch(0, 20)); // threads up, kernel loaded, snapshot taken, JIT warm
    const n = 400;
    const t0 = process.hrtime.bigint();
    const records = await pool.exec(batch(20, n));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const failed = records.filter((r) => r.outcome.key !== 'reached').length;
    const instructions = records.reduce((a, r) => a + r.instructions, 0);
    console.log(`fuzz ${variant.padEnd(8)} --coco snp, 2 workers: ${n} boots in ${seconds.toFixed(2)} s = ${(n / seconds).toFixed(1)} boots/s (${failed} failed, ${(instructions / n / 1e3).toFixed(0)}k instructions per boot)`);
  } finally {
    await pool.close();
  }
}

async function fuzzBench(): Promise<void> {
  const out = execFileSync('bash', ['scripts/build-test-kernels.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = out.trim().split('\n').reverse().find((l) => l.startsWith('KERNELS_DIR='))!.slice('KERNELS_DIR='.length);
  await fuzzThroughput('regress', dir);
  await fuzzThroughput('fix', dir);
}

function main(): void {
  const header = ['kernel', 'vm', 'until', 'verdict', 'instructions', 'wall s', 'MIPS', 'trace hash'];
  const widths = [18, 6, 15, 10, 14, 9, 7, 10];
  const line = (cells: string[]): string => cells.map((c, k) => pad(c, widths[k], k >= 4 && k <= 6)).join('  ');
  console.log(`node ${process.version}, ${process.arch}`);
  console.log(line(header));
  const all = Date.now();
  let total = 0;
  let totalSeconds = 0;
  for (const c of CASES) {
    const r = run(c);
    total += r.instructions;
    totalSeconds += r.seconds;
    console.log(line([r.kernel, r.vm, r.until, r.verdict, r.instructions.toLocaleString('en-US'), r.seconds.toFixed(2), r.mips.toFixed(2), r.hash]));
  }
  console.log(`total ${total.toLocaleString('en-US')} instructions in ${totalSeconds.toFixed(1)} s: ${(total / totalSeconds / 1e6).toFixed(2)} MIPS (${((Date.now() - all) / 1000).toFixed(1)} s with kernel loading)`);
}

if (process.argv.includes('--fuzz-only')) await fuzzBench();
else {
  main();
  await fuzzBench();
}
