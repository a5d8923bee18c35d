import { parseArgs } from 'node:util';
import { parsePoison, type PoisonPolicy } from '../memory/poison.js';
import type { BootOptions } from '../machine/boot.js';
import { UNTIL_CHOICES, type MilestoneName } from '../kernel/verdict.js';
import type { Budget } from '../kernel/budget.js';
import { ENTRY_POINTS, type EntryPoint, type GdtStyle } from '../platform/firmware.js';
import { makeVmConfig, VmConfigError, type CocoMode, type Prevalidate, type RmpMismatch, type Vmpl, type VmConfig } from '../hypervisor/vm-config.js';

/** A usage mistake: reported in one line, exit code 2. */
export class UsageError extends Error {}

/** What `bzemu boot` was asked: the boot itself, plus how to show it. */
export interface BootCliOptions extends Omit<BootOptions, 'kernelPath' | 'traceLength' | 'onProgress' | 'inspect' | 'vm'> {
  /** A path or a Debian series id. */
  kernel: string;
  vm: VmConfig;
  json: boolean;
  trace: number;
  /** --report FILE: also write the run's self-contained HTML report there. */
  report: string | null;
}

export const DEFAULT_KERNEL = 'debian-6.12';
export const DEFAULT_CMDLINE = 'console=ttyS0 earlyprintk=ttyS0,115200';

/** Parse sizes like 1G, 512M, 0x40000000. */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: not a size: '${text}' (examples: 1G, 512M, 0x40000000)`);
  const base = Number(m[1]);
  const unit = m[2].toLowerCase();
  return base * (unit === 'k' ? 1024 : unit === 'm' ? 1 << 20 : unit === 'g' ? 1 << 30 : 1);
}

function parseBig(text: string, what: string): bigint {
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text)) throw new UsageError(`${what}: not a number: '${text}'`);
  return BigInt(text);
}

export function parseNumber(text: string, what: string): number {
  const v = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+(e\d+)?$/i.test(text) ? Number(text) : NaN;
  if (!Number.isFinite(v)) throw new UsageError(`${what}: not a number: '${text}'`);
  return v;
}

export function parseBootArgs(argv: string[]): BootCliOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        until: { type: 'string', default: 'extract_kernel' },
        budget: { type: 'string' },
        mem: { type: 'string', default: '1G' },
        poison: { type: 'string', default: 'random' },
        seed: { type: 'string', default: '1' },
        cmdline: { type: 'string', default: DEFAULT_CMDLINE },
        'load-addr': { type: 'string', default: '0x2000000' },
        gdt: { type: 'string', default: 'boot-protocol' },
        entry: { type: 'string', default: 'startup_64' },
        json: { type: 'boolean', default: false },
        trace: { type: 'string', default: '0' },
        bzimage: { type: 'string' },
        symbols: { type: 'string' },
        coco: { type: 'string', default: 'none' },
        cbit: { type: 'string', default: '51' },
        'cpuid-cbit': { type: 'string' },
        'sev-features': { type: 'string' },
        'hv-features': { type: 'string' },
        vmpl: { type: 'string' },
        svsm: { type: 'boolean', default: false },
        'no-cpuid-page': { type: 'boolean', default: false },
        prevalidate: { type: 'string', default: 'all' },
        'rmp-mismatch': { type: 'string', default: 'convert' },
        vmsa: { type: 'string' },
        report: { type: 'string' },
      },
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (parsed.positionals.length > 1) throw new UsageError(`boot takes one kernel, got ${parsed.positionals.length}`);
  const until = v.until as MilestoneName;
  if (!UNTIL_CHOICES.includes(until)) throw new UsageError(`--until must be one of ${UNTIL_CHOICES.join(', ')}`);
  const seed = parseNumber(v.seed!, '--seed');
  let poison: PoisonPolicy;
  try {
    poison = parsePoison(v.poison!, seed);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const memSize = parseSize(v.mem!, '--mem');
  if (memSize < 64 << 20 || memSize > 0x100000000 || memSize % 0x200000 !== 0) {
    throw new UsageError('--mem must be a multiple of 2 MiB between 64M and 4G');
  }
  const loadAddress = parseNumber(v['load-addr']!, '--load-addr');
  if (loadAddress % 0x1000 !== 0 || loadAddress < 0x100000) throw new UsageError('--load-addr must be page aligned and at or above 1 MiB');
  if (v.gdt !== 'boot-protocol' && v.gdt !== 'stage0') throw new UsageError('--gdt must be boot-protocol or stage0');
  if (!ENTRY_POINTS.includes(v.entry as EntryPoint)) throw new UsageError(`--entry must be one of ${ENTRY_POINTS.join(', ')} (got '${v.entry}')`);
  if (v.entry === 'startup_32' && v.vmsa !== undefined) throw new UsageError('--entry startup_32 and --vmsa both set the initial state; give one');
  // Without --budget the run sizes its budget from the kernel's payload once it is loaded (src/kernel/budget.ts).
  const budget: Budget = v.budget !== undefined ? parseNumber(v.budget, '--budget') : 'default';
  const mode = v.coco!;
  if (!['none', 'sev', 'sev-es', 'snp'].includes(mode)) throw new UsageError(`--coco must be none, sev, sev-es or snp (got '${mode}')`);
  let vm: VmConfig;
  try {
    vm = makeVmConfig({
      mode: mode as CocoMode,
      cbit: parseNumber(v.cbit!, '--cbit'),
      ...(v['cpuid-cbit'] !== undefined ? { cpuidCbit: parseNumber(v['cpuid-cbit'], '--cpuid-cbit') } : {}),
      ...(v['sev-features'] !== undefined ? { sevFeatures: parseBig(v['sev-features'], '--sev-features') } : {}),
      ...(v['hv-features'] !== undefined ? { hvFeatures: parseBig(v['hv-features'], '--hv-features') } : {}),
      ...(v.vmpl !== undefined ? { vmpl: parseNumber(v.vmpl, '--vmpl') as Vmpl } : {}),
      svsm: v.svsm!,
      cpuidPage: !v['no-cpuid-page'],
      prevalidate: v.prevalidate as Prevalidate,
      rmpMismatch: v['rmp-mismatch'] as RmpMismatch,
    });
  } catch (e) {
    if (e instanceof VmConfigError) throw new UsageError(e.message);
    throw e;
  }
  return {
    kernel: parsed.positionals[0] ?? DEFAULT_KERNEL,
    bzImage: v.bzimage,
    symbols: v.symbols,
    memSize,
    poison,
    seed,
    cmdline: v.cmdline!,
    loadAddress,
    gdt: v.gdt as GdtStyle,
    entry: v.entry as EntryPoint,
    until,
    budget,
    json: v.json!,
    trace: parseNumber(v.trace!, '--trace'),
    report: v.report ?? null,
    vm,
    ...(v.vmsa !== undefined ? { vmsa: v.vmsa } : {}),
  };
}
