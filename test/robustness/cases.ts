/**
 * Hostile-image cases: which input, which file of it, which mutation (all from
 * (seed, index)), and how a boot of the mutated files is judged. A case ends in
 * a verdict (boot() returned), a bad-input error (one short line), or a bug:
 * any other exception, an unclear bad-input message, or a case over the time bound.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CMDLINE } from '../../src/cli/options.js';
import { isBadInputError } from '../../src/kernel/errors.js';
import { kernelInfoFromBytes } from '../../src/kernel/info.js';
import { ensureDebianKernel, repoRoot } from '../../src/kernel/kernel-cache.js';
import { exitCodeFor, type VerdictKind } from '../../src/kernel/verdict.js';
import { boot, type BootOptions } from '../../src/machine/boot.js';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { selfBuiltKernels } from '../regression/selfbuilt.js';
import { layoutOf, type FileLayout } from './layout.js';
import { mutateFile, type Family } from './mutate.js';
import { Rng } from './rng.js';
import { fieldSweeps, truncations, type SweepItem } from './sweep.js';

/** The files of one input: the kernel, and for some inputs a second file the loader also reads. */
export type Role = 'kernel' | 'companion' | 'symbols';

export interface KernelInput {
  name: string;
  /** The file given to boot. */
  kernel: string;
  /** bzImage supplying the setup header of a compressed-vmlinux ELF (--bzimage). */
  companion?: string;
  /** Compressed-vmlinux ELF supplying symbols for a bzImage (--symbols). */
  symbols?: string;
}

export interface LoadedFile {
  path: string;
  bytes: Uint8Array;
  layout: FileLayout;
}

export interface LoadedInput {
  input: KernelInput;
  files: Partial<Record<Role, LoadedFile>>;
}

/** The real kernels the issue names: both Debian bzImages and the self-built ELF and bzImage. */
export function defaultInputs(): KernelInput[] {
  const self = selfBuiltKernels();
  return [
    { name: 'debian-6.12', kernel: ensureDebianKernel('debian-6.12') },
    { name: 'debian-6.1-cloud', kernel: ensureDebianKernel('debian-6.1-cloud') },
    { name: 'selfbuilt-elf', kernel: join(self, 'good', 'vmlinux'), companion: join(self, 'good', 'bzImage') },
    { name: 'selfbuilt-bzimage', kernel: join(self, 'good', 'bzImage') },
    { name: 'selfbuilt-bzimage+symbols', kernel: join(self, 'good', 'bzImage'), symbols: join(self, 'good', 'vmlinux') },
  ];
}

export function loadInputs(inputs: readonly KernelInput[]): LoadedInput[] {
  const load = (path: string): LoadedFile => {
    const bytes = new Uint8Array(readFileSync(path));
    return { path, bytes, layout: layoutOf(bytes) };
  };
  return inputs.map((input) => {
    const files: Partial<Record<Role, LoadedFile>> = { kernel: load(input.kernel) };
    if (input.companion !== undefined) files.companion = load(input.companion);
    if (input.symbols !== undefined) files.symbols = load(input.symbols);
    return { input, files };
  });
}

export interface CasePlan {
  seed: number;
  index: number;
  input: LoadedInput;
  role: Role;
  family: Family;
  description: string;
  /** The mutated file's bytes (the other files stay as they are). */
  bytes: Uint8Array;
  coco: 'none' | 'snp';
  /** Every fourth random case enters at startup_32 (derived from the index, so the Rng stream and the other cases stay as they were). */
  entry: 'startup_64' | 'startup_32';
}

/** Case `index` of the run seeded `seed`: inputs in turn, everything else from the Rng. */
export function planCase(inputs: readonly LoadedInput[], seed: number, index: number): CasePlan {
  const rng = Rng.forCase(seed, index);
  const input = inputs[index % inputs.length]!;
  const roles = (Object.keys(input.files) as Role[]).filter((r) => input.files[r] !== undefined);
  // Mostly the kernel; the second file a third of the time when there is one.
  const role = roles.length > 1 && rng.chance(1 / 3) ? rng.pick(roles.filter((r) => r !== 'kernel')) : 'kernel';
  const file = input.files[role]!;
  const m = mutateFile(rng, file.bytes, file.layout);
  return { seed, index, input, role, family: m.family, description: m.description, bytes: m.bytes, coco: rng.chance(0.2) ? 'snp' : 'none', entry: index % 4 === 3 ? 'startup_32' : 'startup_64' };
}

/** One sweep item of one file of one input. */
export interface SweepEntry {
  input: LoadedInput;
  role: Role;
  item: SweepItem;
}

/** Every truncation and field sweep of every file of the inputs, in a fixed order. */
export function sweepEntries(inputs: readonly LoadedInput[]): SweepEntry[] {
  const out: SweepEntry[] = [];
  for (const input of inputs) {
    for (const role of ['kernel', 'companion', 'symbols'] as const) {
      const file = input.files[role];
      if (file === undefined) continue;
      for (const item of truncations(file.bytes, file.layout)) out.push({ input, role, item });
      for (const item of fieldSweeps(file.bytes, file.layout)) out.push({ input, role, item });
    }
  }
  return out;
}

/** A sweep entry as a case (plain VM). */
export function planSweep(entry: SweepEntry, index: number): CasePlan {
  const { input, role, item } = entry;
  return { seed: 0, index, input, role, family: item.family, description: item.description, bytes: item.make(), coco: 'none', entry: 'startup_64' };
}

/** A fresh directory for mutated files, in RAM (/dev/shm) when there is one: cases write megabytes each. */
export function makeScratchDir(): string {
  let base = tmpdir();
  try {
    accessSync('/dev/shm', constants.W_OK);
    base = '/dev/shm';
  } catch {
    // no tmpfs: the ordinary temporary directory
  }
  return mkdtempSync(join(base, 'bzemu-fuzz-inputs-'));
}

/** The files of a case on disk: mutated ones written into `dir`, the others where they are. */
export interface CaseFiles {
  kernel: string;
  bzImage?: string;
  symbols?: string;
}

export function writeCaseFiles(plan: CasePlan, dir: string): CaseFiles {
  const pathOf = (role: Role): string | undefined => {
    const file = plan.input.files[role];
    if (file === undefined) return undefined;
    if (role !== plan.role) return file.path;
    const out = join(dir, `mutated-${role}`);
    writeFileSync(out, plan.bytes);
    return out;
  };
  const files: CaseFiles = { kernel: pathOf('kernel')! };
  const bzImage = pathOf('companion');
  const symbols = pathOf('symbols');
  if (bzImage !== undefined) files.bzImage = bzImage;
  if (symbols !== undefined) files.symbols = symbols;
  return files;
}

/** Boot settings of every case: small budget, small RAM, as the CLI defaults otherwise. */
export const CASE_BOOT = {
  budget: 20_000,
  memSize: 256 << 20,
  until: 'extract_kernel',
  loadAddress: 0x2000000,
  cmdline: DEFAULT_CMDLINE,
} as const;

/** The same boot through the CLI (for spot checks of exit code and stderr). */
export function cliArgs(plan: CasePlan, files: CaseFiles): string[] {
  const args = ['boot', files.kernel, '--budget', String(CASE_BOOT.budget), '--mem', `${CASE_BOOT.memSize >> 20}M`, '--until', CASE_BOOT.until, '--seed', String(plan.index + 1)];
  if (files.bzImage !== undefined) args.push('--bzimage', files.bzImage);
  if (files.symbols !== undefined) args.push('--symbols', files.symbols);
  if (plan.coco !== 'none') args.push('--coco', plan.coco);
  if (plan.entry !== 'startup_64') args.push('--entry', plan.entry);
  return args;
}

export type Outcome =
  | { kind: 'verdict'; verdict: VerdictKind; reason: string }
  | { kind: 'bad-input'; message: string }
  /** Stage: where it went wrong; 'worker' is the fuzz script's worker hanging or dying on the case. */
  | { kind: 'bug'; stage: 'boot' | 'info' | 'time' | 'worker'; error: string; stack: string };

export interface CaseResult {
  index: number;
  input: string;
  role: Role;
  family: Family;
  description: string;
  coco: string;
  entry: string;
  outcome: Outcome;
  ms: number;
}

/** Longest acceptable bad-input message (the CLI prints it as one line). */
const MAX_MESSAGE = 300;

/** Why a bad-input message is not a clear one-liner, or null if it is. */
export function messageProblem(message: string): string | null {
  if (message.trim() === '') return 'empty message';
  if (message.includes('\n')) return 'message spans several lines';
  if (message.length > MAX_MESSAGE) return `message is ${message.length} characters long`;
  if (/\bNaN\b|\bundefined\b|\[object /.test(message)) return 'message shows an internal value';
  return null;
}

function classify(e: unknown, stage: 'boot' | 'info'): Outcome {
  if (isBadInputError(e)) {
    const message = (e as Error).message;
    const problem = messageProblem(message);
    if (problem === null) return { kind: 'bad-input', message };
    return { kind: 'bug', stage, error: `unclear bad-input message (${problem}): ${JSON.stringify(message.slice(0, 400))}`, stack: '' };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return { kind: 'bug', stage, error: `${err.name}: ${err.message}`, stack: err.stack ?? '' };
}

/** The inspection `bzemu info` makes: it must also end in a result or a bad-input error. */
function infoOutcome(bytes: Uint8Array): Outcome | null {
  try {
    kernelInfoFromBytes(bytes);
    return null;
  } catch (e) {
    const o = classify(e, 'info');
    return o.kind === 'bug' ? o : null;
  }
}

/**
 * Boot one case in this process and judge it. `timeLimitMs` turns a slow case
 * into a bug after the fact (a real hang is caught by the caller's watchdog).
 */
export function runCase(plan: CasePlan, dir: string, timeLimitMs: number): CaseResult {
  const started = performance.now();
  const files = writeCaseFiles(plan, dir);
  const options: BootOptions = {
    kernelPath: files.kernel,
    memSize: CASE_BOOT.memSize,
    poison: { kind: 'random', seed: plan.index + 1 },
    seed: plan.index + 1,
    cmdline: CASE_BOOT.cmdline,
    loadAddress: CASE_BOOT.loadAddress,
    gdt: 'boot-protocol',
    until: CASE_BOOT.until,
    budget: CASE_BOOT.budget,
    traceLength: 0,
    vm: makeVmConfig({ mode: plan.coco }),
    entry: plan.entry,
    ...(files.bzImage !== undefined ? { bzImage: files.bzImage } : {}),
    ...(files.symbols !== undefined ? { symbols: files.symbols } : {}),
  };
  let outcome: Outcome;
  try {
    const r = boot(options);
    outcome = { kind: 'verdict', verdict: r.verdict, reason: r.reason };
  } catch (e) {
    outcome = classify(e, 'boot');
  }
  if (outcome.kind !== 'bug') outcome = infoOutcome(plan.bytes) ?? outcome;
  const ms = performance.now() - started;
  if (outcome.kind !== 'bug' && ms > timeLimitMs) {
    outcome = { kind: 'bug', stage: 'time', error: `took ${(ms / 1000).toFixed(1)} s, over the ${timeLimitMs / 1000} s bound`, stack: '' };
  }
  return {
    index: plan.index,
    input: plan.input.input.name,
    role: plan.role,
    family: plan.family,
    description: plan.description,
    coco: plan.coco,
    entry: plan.entry,
    outcome,
    ms,
  };
}

/**
 * Replay a judged case through the CLI (the bundle users run, in dist/bundle/) and say how it disagrees, or
 * null: bad input must be exit 2 with exactly "bzemu: bad input: <message>" on stderr and
 * nothing on stdout; a verdict must be the same verdict, reason and exit code.
 */
export function cliDisagreement(plan: CasePlan, result: CaseResult, dir: string): string | null {
  const caseDir = join(dir, `cli-${plan.index}`);
  mkdirSync(caseDir, { recursive: true });
  const args = [...cliArgs(plan, writeCaseFiles(plan, caseDir)), '--json'];
  const p = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'bundle', 'main.js'), ...args], { encoding: 'utf8', timeout: 120_000 });
  const o = result.outcome;
  const got = `exit ${p.status}, stderr ${JSON.stringify(p.stderr.slice(0, 300))}`;
  if (o.kind === 'bad-input') {
    const ok = p.status === 2 && p.stdout === '' && p.stderr === `bzemu: bad input: ${o.message}\n`;
    return ok ? null : `expected exit 2 and one bad-input line, got ${got}`;
  }
  if (o.kind === 'verdict') {
    let json: { verdict?: string; reason?: string } = {};
    try {
      json = JSON.parse(p.stdout) as typeof json;
    } catch {
      return `expected JSON on stdout, got ${got}`;
    }
    const ok = p.status === exitCodeFor(o.verdict) && json.verdict === o.verdict && json.reason === o.reason;
    return ok ? null : `expected ${o.verdict} (exit ${exitCodeFor(o.verdict)}), got ${json.verdict}: ${json.reason}, ${got}`;
  }
  return null;
}

/** "verdict budget-exhausted", "bad input", "bug": the bucket a result is counted in. */
export function outcomeKey(o: Outcome): string {
  return o.kind === 'verdict' ? `verdict ${o.verdict}` : o.kind === 'bad-input' ? 'bad input' : 'bug';
}

/** Counts per bucket, sorted by name. */
export function tally(results: readonly CaseResult[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of results) counts.set(outcomeKey(r.outcome), (counts.get(outcomeKey(r.outcome)) ?? 0) + 1);
  return new Map([...counts].sort(([a], [b]) => a.localeCompare(b)));
}

/** A bug report: the case, how to replay it (`replay`: "--seed 1" or "--sweep"), the error and its stack. */
export function describeBug(r: CaseResult, replay: string): string {
  if (r.outcome.kind !== 'bug') return '';
  const head = `case ${r.index}: ${r.input} ${r.role}, ${r.family}: ${r.description}${r.coco !== 'none' ? `, --coco ${r.coco}` : ''}${r.entry !== 'startup_64' ? `, --entry ${r.entry}` : ''}`;
  const command = `  replay: npm run fuzz-inputs -- ${replay} --case ${r.index}`;
  const stack = r.outcome.stack.split('\n').slice(1, 8).join('\n');
  return `${head}\n  ${r.outcome.stage}: ${r.outcome.error}\n${command}${stack ? '\n' + stack : ''}`;
}
