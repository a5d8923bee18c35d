/**
 * npm run bench: speed figures of whole bzemu processes on the Debian kernels,
 * side by side with QEMU TCG, and fuzz throughput. Prints figures and writes
 * them as JSON under bench/results/ (ignored by git); asserts nothing and
 * never fails on a slow machine: what cannot be measured is reported as such.
 *
 * For each kernel, medians of --repeat runs (default 3):
 *   - bzemu to extract_kernel, to kernel-entry and to linux-banner, whole process
 *     (Node start-up, kernel loading, the run), and the guest MIPS of the run;
 *     extract_kernel also as a first run, with an empty cache directory (no
 *     V8 code caches, no saved decodes: what a new machine or a new build
 *     pays once), the others after one unmeasured run has filled the cache;
 *   - QEMU TCG booting the same bzImage with the same command line until the
 *     kernel's banner line ("Linux version ...") reaches its serial console
 *     (`qemu-system-x86_64 -accel tcg -nographic -kernel ... -append
 *     'console=ttyS0 earlyprintk=ttyS0,115200'`; installed from Debian when
 *     missing), and two ratios: bzemu kernel-entry / QEMU, and bzemu
 *     linux-banner / QEMU, which is the same guest work on both sides.
 * Then boots/s of fuzz campaign runs on the self-built regress and fix kernels.
 *
 *   npm run bench [-- --repeat N] [--fuzz-only] [--no-fuzz] [--no-qemu]
 */
import { ensureDebianKernel } from '../src/kernel/kernel-cache.js';
import { makeVmConfig } from '../src/hypervisor/vm-config.js';
import { DEFAULT_CMDLINE } from '../src/cli/options.js';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { workerPoolExecutor } from '../src/analysis/fuzz/executor.js';
import { runSpec } from '../src/analysis/fuzz/plan.js';
import type { TargetConfig } from '../src/analysis/fuzz/runner.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cli = join(repoRoot, 'dist', 'bundle', 'main.js');
const argv = process.argv.slice(2);
const repeatArg = argv.indexOf('--repeat');
const REPEAT = repeatArg >= 0 ? Math.max(1, Number(argv[repeatArg + 1]) || 3) : 3;
const KERNELS = ['debian-6.12', 'debian-6.1-cloud'];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface BzemuRun {
  wallSeconds: number;
  verdict: string;
  instructions: number;
  runMs: number;
  traceHash: string;
}

/** One whole bzemu process, timed from spawn to exit; `cache`: a BZEMU_CACHE directory of its own. */
function bzemuRun(kernel: string, until: string, coco = 'none', cache?: string): BzemuRun {
  const env = cache === undefined ? process.env : { ...process.env, BZEMU_CACHE: cache };
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, 'boot', kernel, '--until', until, '--poison', 'zero', '--coco', coco, '--json'], { encoding: 'utf8', maxBuffer: 1 << 26, env });
  const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const j = JSON.parse(r.stdout) as { verdict: string; instructions: number; elapsedMs: number; traceHash: string };
  return { wallSeconds, verdict: j.verdict, instructions: j.instructions, runMs: j.elapsedMs, traceHash: j.traceHash };
}

/** QEMU's binary, installing Debian's qemu-system-x86 when it is missing; null when that is not possible. */
function qemuBinary(): string | null {
  const which = (): string | null => {
    const r = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const found = which();
  if (found) return found;
  console.log('bench: qemu-system-x86_64 missing, installing qemu-system-x86 from Debian...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'qemu-system-x86'], { stdio: 'ignore', env });
  return which();
}

/** Seconds from spawning QEMU TCG until the kernel's first console line (null: none within the timeout). */
function qemuFirstLine(qemu: string, bzImage: string, timeoutSeconds = 120): Promise<number | null> {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    // bzemu's default command line: with earlyprintk the banner reaches the console at the same point of the boot in both.
    const child = spawn(qemu, ['-accel', 'tcg', '-nographic', '-no-reboot', '-m', '1G', '-kernel', bzImage, '-append', DEFAULT_CMDLINE], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let done = false;
    const finish = (v: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutSeconds * 1000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('latin1');
      // The kernel's first console line: the banner the serial console replays when it registers.
      if (/Linux version [^\n]*\n/.test(out)) finish(Number(process.hrtime.bigint() - t0) / 1e9);
    });
    child.on('exit', () => finish(null));
  });
}

interface KernelFigures {
  kernel: string;
  extractKernelSeconds: number;
  /** A first run: an empty cache directory (no V8 code caches, no saved decodes). */
  extractKernelFirstRunSeconds: number;
  kernelEntrySeconds: number;
  instructions: number;
  verdict: string;
  mips: number;
  qemuSeconds: number | null;
  ratio: number | null;
  /** The same guest work as QEMU's: through the decompressor and the kernel's start-up to its banner. */
  bannerSeconds: number;
  bannerInstructions: number;
  bannerVerdict: string;
  bannerRatio: number | null;
  traceHash: string;
}

async function speed(useQemu: boolean): Promise<KernelFigures[]> {
  const qemu = useQemu ? qemuBinary() : null;
  if (useQemu && qemu === null) console.log('bench: QEMU unavailable: ratios not measured');
  const rows: KernelFigures[] = [];
  for (const id of KERNELS) {
    const path = ensureDebianKernel(id);
    const first = Array.from({ length: REPEAT }, () => {
      const cache = mkdtempSync(join(tmpdir(), 'bzemu-bench-cache-'));
      try {
        return bzemuRun(path, 'extract_kernel', 'none', cache);
      } finally {
        rmSync(cache, { recursive: true, force: true });
      }
    });
    bzemuRun(path, 'extract_kernel'); // fills the cache for this build (V8 code caches, saved decodes); not measured
    const ek = Array.from({ length: REPEAT }, () => bzemuRun(path, 'extract_kernel'));
    const ke = Array.from({ length: REPEAT }, () => bzemuRun(path, 'kernel-entry'));
    const banner = Array.from({ length: REPEAT }, () => bzemuRun(path, 'linux-banner'));
    const qs: number[] = [];
    if (qemu) for (let k = 0; k < REPEAT; k++) {
      const t = await qemuFirstLine(qemu, path);
      if (t !== null) qs.push(t);
    }
    const keWall = median(ke.map((r) => r.wallSeconds));
    const qemuSeconds = qs.length > 0 ? median(qs) : null;
    const row: KernelFigures = {
      kernel: id,
      extractKernelSeconds: median(ek.map((r) => r.wallSeconds)),
      extractKernelFirstRunSeconds: median(first.map((r) => r.wallSeconds)),
      kernelEntrySeconds: keWall,
      instructions: ke[0].instructions,
      verdict: ke[0].verdict,
      mips: median(ke.map((r) => r.instructions / r.runMs / 1e3)),
      qemuSeconds,
      ratio: qemuSeconds !== null ? keWall / qemuSeconds : null,
      bannerSeconds: median(banner.map((r) => r.wallSeconds)),
      bannerInstructions: banner[0].instructions,
      bannerVerdict: banner[0].verdict,
      bannerRatio: null,
      traceHash: ke[0].traceHash,
    };
    if (qemuSeconds !== null) row.bannerRatio = row.bannerSeconds / qemuSeconds;
    rows.push(row);
    console.log(`${id.padEnd(17)} extract_kernel ${row.extractKernelSeconds.toFixed(3)} s (first run, empty cache: ${row.extractKernelFirstRunSeconds.toFixed(3)} s) | kernel-entry ${keWall.toFixed(2)} s (${row.verdict}, ${row.instructions.toLocaleString('en-US')} instructions, ${row.mips.toFixed(1)} MIPS) | linux-banner ${row.bannerSeconds.toFixed(2)} s (${row.bannerVerdict}, ${row.bannerInstructions.toLocaleString('en-US')} instructions) | QEMU TCG to the banner line ${qemuSeconds !== null ? `${qemuSeconds.toFixed(2)} s | ratio kernel-entry/QEMU ${row.ratio!.toFixed(2)}, linux-banner/QEMU (equal work) ${row.bannerRatio!.toFixed(2)}` : 'not measured'}`);
  }
  return rows;
}

/** Boots per second of a fuzz campaign's runs (restores from the entry snapshot) on 2 worker threads. */
async function fuzzThroughput(variant: string, dir: string): Promise<{ variant: string; bootsPerSecond: number; instructionsPerBoot: number }> {
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
    return { variant, bootsPerSecond: n / seconds, instructionsPerBoot: instructions / n };
  } finally {
    await pool.close();
  }
}

async function fuzzBench(): Promise<Array<{ variant: string; bootsPerSecond: number; instructionsPerBoot: number }>> {
  const out = execFileSync('bash', ['scripts/build-test-kernels.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], cwd: repoRoot });
  const dir = out.trim().split('\n').reverse().find((l) => l.startsWith('KERNELS_DIR='))!.slice('KERNELS_DIR='.length);
  return [await fuzzThroughput('regress', dir), await fuzzThroughput('fix', dir)];
}

async function main(): Promise<void> {
  console.log(`node ${process.version}, ${process.arch}, medians of ${REPEAT} runs`);
  const results: Record<string, unknown> = { date: new Date().toISOString(), node: process.version, repeat: REPEAT };
  const section = async <T>(name: string, f: () => Promise<T>): Promise<void> => {
    try {
      results[name] = await f();
    } catch (e) {
      results[name] = { error: String((e as Error).message ?? e) };
      console.log(`bench: ${name} not measured: ${(e as Error).message ?? e}`);
    }
  };
  if (!argv.includes('--fuzz-only')) await section('speed', () => speed(!argv.includes('--no-qemu')));
  if (!argv.includes('--no-fuzz')) await section('fuzz', fuzzBench);
  const dir = join(repoRoot, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${(results.date as string).replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`bench: figures written to ${file}`);
}

await main();
