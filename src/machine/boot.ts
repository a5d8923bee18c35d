import { readFileSync } from 'node:fs';
import { EmulatorGap } from '../cpu/fault.js';
import { BadInputError } from '../kernel/errors.js';
import { Stop } from '../cpu/host.js';
import { RAX, RBX } from '../cpu/registers.js';
import { disassemble, instructionLength } from '../cpu/decode.js';
import { inspectOutput } from '../kernel/decompressed-output.js';
import { loadKernel, type KernelImage } from '../kernel/kernel-image.js';
import { resolveBudget, type Budget } from '../kernel/budget.js';
import type { MilestoneName, VerdictKind } from '../kernel/verdict.js';
import type { PoisonPolicy } from '../memory/poison.js';
import type { EntryPoint, GdtStyle } from '../platform/firmware.js';
import { Machine, type MachineConfig } from './machine.js';
import type { DecodeMemo } from '../cpu/decode-memo.js';
import { UninitializedReadDetector, type UninitializedRead } from '../analysis/uninitialized-reads.js';
import { makeVmConfig, sevStatusFor, type VmConfig } from '../hypervisor/vm-config.js';
import type { HostEvent } from '../hypervisor/sev-host.js';
import { HostStop } from '../hypervisor/host-stop.js';

export interface BootOptions {
  kernelPath: string;
  /** bzImage for a compressed-vmlinux ELF's setup header. */
  bzImage?: string;
  /** Compressed-vmlinux ELF whose symbols name addresses of a bzImage. */
  symbols?: string;
  memSize: number;
  poison: PoisonPolicy;
  seed: number;
  cmdline: string;
  loadAddress: number;
  gdt: GdtStyle;
  /** Boot-protocol entry: startup_64 (default) or startup_32. */
  entry?: EntryPoint;
  until: MilestoneName;
  /** Instructions before the run ends as budget-exhausted; 'default' sizes it from the kernel's payload (src/kernel/budget.ts). */
  budget: Budget;
  /** Confidential-computing configuration; default a plain VM. */
  vm?: VmConfig;
  /** A VMSA file to launch the BSP from (instead of the firmware's entry state). */
  vmsa?: string;
  /** How many of the last instructions to keep for --trace. */
  traceLength: number;
  /** Called every slice with progress (for a live status line). */
  onProgress?: (p: Progress) => void;
  /** Called with the machine once the run ends (tests inspect guest memory). */
  inspect?: (machine: Machine) => void;
  /** Decoded instructions to start from and add to (the CLI's saved ones); none: decode everything. */
  decoded?: DecodeMemo;
}

export interface Progress {
  instructions: number;
  elapsedMs: number;
  lastMilestone: string | null;
}

export interface MilestoneHit {
  name: MilestoneName;
  rip: string;
  symbol: string;
  instruction: number;
}

export interface TraceLine {
  rip: string;
  symbol: string;
  bytes: string;
  disassembly: string;
}

export interface BootResult {
  verdict: VerdictKind;
  reason: string;
  kernel: { path: string; kind: string; version: string | null; headerSource: string };
  entry: string;
  milestones: MilestoneHit[];
  console: string;
  instructions: number;
  /** The instruction budget the run had (the default one unless --budget was given). */
  budget: number;
  traceHash: string;
  /** Where the decompressed kernel starts (kernel-entry runs only). */
  kernelEntry: string | null;
  /** Kernel-entry runs: where the decompressor put the kernel and the KASLR virtual offset it applied. */
  output: { address: string; length: number; virtualOffset: string | null; relocations: number } | null;
  gap: { rip: string; symbol: string; bytes: string; disassembly: string } | null;
  trace: TraceLine[];
  elapsedMs: number;
  unclaimedPorts: number[];
  /** The VM's confidential-computing mode and what the guest asked of its host. */
  coco: { mode: string; vmpl: number; svsm: boolean; sevStatus: string } | null;
  events: Array<Omit<HostEvent, 'rip' | 'ripHi'> & { rip: string; symbol: string }>;
  /** RMP misuse found during the run (double validation and such). */
  findings: string[];
  /** Reads of the loaded image's .bss before anything wrote it (firmware leaves it as poison). */
  uninitializedReads: UninitializedRead[];
  /** A termination request, decoded. */
  termination: { set: number; code: number; name: string; detail: string | null } | null;
}

const SLICE = 4_000_000;

function hex(v: number, hi = 0): string {
  return '0x' + (hi ? hi.toString(16) + (v >>> 0).toString(16).padStart(8, '0') : (v >>> 0).toString(16));
}

/** Boot a kernel and report how far it got. Throws BadInputError for unusable input. */
export function boot(options: BootOptions): BootResult {
  const kernel = loadKernel(options.kernelPath, { bzImage: options.bzImage, symbols: options.symbols });
  return bootImage(kernel, options);
}

export function bootImage(kernel: KernelImage, options: BootOptions): BootResult {
  return runMachine(new Machine(kernel, machineConfigFor(options)), options);
}

function readVmsa(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new BadInputError(`--vmsa: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** The machine a boot with these options runs on. */
export function machineConfigFor(options: Omit<BootOptions, 'kernelPath'>): MachineConfig {
  return {
    memSize: options.memSize,
    poison: options.poison,
    seed: options.seed,
    loadAddress: options.loadAddress,
    cmdline: options.cmdline,
    gdt: options.gdt,
    entry: options.entry ?? 'startup_64',
    traceSize: 1 << Math.max(12, Math.ceil(Math.log2(Math.max(1, options.traceLength)))),
    vm: options.vm ?? makeVmConfig({ mode: 'none' }),
    vmsa: options.vmsa ? readVmsa(options.vmsa) : null,
    ...(options.decoded !== undefined ? { decoded: options.decoded } : {}),
  };
}

/** What a run needs beyond the machine it runs on. */
export type RunOptions = Pick<BootOptions, 'until' | 'budget' | 'traceLength' | 'onProgress' | 'inspect'> & {
  /** Told, when the run ends, the physical address of every never-written byte it read (fuzz minimization). */
  onUninitializedBytes?: (addresses: number[]) => void;
  /** Told of each milestone as it is hit, before its instruction runs (a run report takes its trace window then). */
  onMilestone?: (hit: MilestoneHit) => void;
  /** Told of each new uninitialized read while the CPU is at the reader. */
  onUninitializedRead?: (read: UninitializedRead) => void;
};

/** Run a machine from its entry state to the target milestone or a failure, and report. */
export function runMachine(machine: Machine, options: RunOptions): BootResult {
  const kernel = machine.kernel;
  const { cpu, addresses } = machine;
  const vm = machine.config.vm;
  const budget = resolveBudget(options.budget, options.until, kernel);
  const uninit = new UninitializedReadDetector(machine);
  uninit.install();
  uninit.onRead = options.onUninitializedRead ?? null;
  const started = Date.now();
  const milestones: MilestoneHit[] = [];
  const hit = (name: MilestoneName): void => {
    milestones.push({ name, rip: hex(cpu.ripLo, cpu.ripHi), symbol: addresses.describe(cpu.ripLo, cpu.ripHi), instruction: cpu.icount });
    options.onMilestone?.(milestones[milestones.length - 1]);
  };

  // Breakpoints for milestones, by address.
  const bp = new Map<number, MilestoneName | 'kernel-jump' | 'reloc-known'>();
  const lm = kernel.landmarks;
  const sym = (name: string): number | null => kernel.symbols?.get(name)?.offset ?? null;
  const sevEnable = sym('sev_enable');
  if (sevEnable !== null) bp.set(addresses.loadBase + sevEnable, 'sev_enable');
  const relocatedBreakpoints = (reloc: number): void => {
    const add = (a: number, what: MilestoneName | 'kernel-jump'): void => {
      bp.set(a, what);
      cpu.addBreakpoint(a);
    };
    if (lm.bssClear !== null) add(reloc + lm.bssClear, 'bss-clear');
    const ek = sym('extract_kernel') ?? lm.extractKernel;
    if (ek !== null) add(reloc + ek, 'extract_kernel');
    if (lm.kernelJump !== null) add(reloc + lm.kernelJump, 'kernel-jump');
  };
  // Where the decompressor moves itself is its own decision (compiled-in LOAD_PHYSICAL_ADDR and
  // CONFIG_RELOCATABLE, not the header's claims): read it from RBX once startup_64 computed it.
  if (lm.relocComputed !== null) bp.set(addresses.loadBase + lm.relocComputed, 'reloc-known');
  // 32-bit code at the first instruction (--entry startup_32, or a VMSA with a 32-bit CS): startup_32 far-returns into startup_64.
  const entry32 = !cpu.csLong;
  if (entry32) bp.set(addresses.loadBase + lm.startup64, 'startup_64'); // startup_32 far-returns into it
  for (const a of bp.keys()) cpu.addBreakpoint(a);
  if (lm.relocComputed === null && addresses.relocBase !== null) relocatedBreakpoints(addresses.relocBase);
  hit(entry32 ? 'startup_32' : 'startup_64');

  let verdict: VerdictKind | null = null;
  let reason = '';
  // linux-banner: the line "Linux version ..." complete on the serial console (the early console replays the banner when it registers).
  let bannerSeen = false;
  if (options.until === 'linux-banner') {
    let line = '';
    machine.ports.com1.onTransmit = (byte) => {
      if (bannerSeen) return;
      if (byte === 0x0a) {
        if (line.includes('Linux version ')) {
          bannerSeen = true;
          cpu.stop = Stop.Milestone;
        }
        line = '';
      } else if (line.length < 4096) {
        line += String.fromCharCode(byte);
      }
    };
  }
  let kernelEntry: number | null = null;
  let gap: BootResult['gap'] = null;
  const entry = hex(cpu.ripLo);

  while (verdict === null) {
    const limit = Math.min(budget.instructions, cpu.icount + SLICE);
    try {
      cpu.run(limit);
    } catch (e) {
      if (e instanceof HostStop) {
        verdict = 'host-stopped';
        reason = `${e.message}; at ${hex(cpu.curRipLo, cpu.curRipHi)}${describeSuffix(addresses.describe(cpu.curRipLo, cpu.curRipHi))}`;
        break;
      }
      if (!(e instanceof EmulatorGap)) throw e;
      const bytes = cpu.peekLinear(cpu.curRipLo, cpu.curRipHi, 15);
      gap = {
        rip: hex(cpu.curRipLo, cpu.curRipHi),
        symbol: addresses.describe(cpu.curRipLo, cpu.curRipHi),
        bytes: Buffer.from(bytes).toString('hex').replace(/(..)/g, '$1 ').trim(),
        disassembly: disassemble(bytes, cpu.curRipLo, cpu.curRipHi, cpu.csLong ? 64 : 32),
      };
      verdict = 'emulator-gap';
      reason = `${e.message} at ${gap.rip}${gap.symbol ? ` (${gap.symbol})` : ''}`;
      break;
    }
    switch (cpu.stop) {
      case Stop.Breakpoint: {
        const what = bp.get(cpu.hitBreakpoint) ?? (cpu.hitBreakpoint === kernelEntry ? 'kernel-entry' : undefined);
        if (what === 'reloc-known') {
          if (cpu.regHi[RBX] === 0) {
            addresses.relocBase = cpu.regLo[RBX];
            relocatedBreakpoints(cpu.regLo[RBX]);
          }
        } else if (what === 'kernel-jump') {
          kernelEntry = cpu.regLo[RAX];
          if (cpu.regHi[RAX] === 0) {
            cpu.addBreakpoint(kernelEntry);
          }
        } else if (what !== undefined) {
          if (!milestones.some((m) => m.name === what)) hit(what);
          if (what === 'bss-clear') uninit.stop();
          if (what === options.until) {
            verdict = 'reached';
            reason = `reached ${what}`;
          }
        }
        break;
      }
      case Stop.Milestone:
        if (bannerSeen && !milestones.some((m) => m.name === 'linux-banner')) {
          hit('linux-banner');
          verdict = 'reached';
          reason = 'reached linux-banner';
        }
        break;
      case Stop.Halted:
        verdict = 'guest-halted';
        reason = `the guest halted at ${hex(cpu.curRipLo, cpu.curRipHi)}${describeSuffix(addresses.describe(cpu.curRipLo, cpu.curRipHi))}`;
        if (vm.cpuidCbit !== null && vm.cpuidCbit !== vm.cbit) {
          reason += `; the hypervisor reports the C-bit at ${vm.cpuidCbit} while memory is encrypted at ${vm.cbit} (--cpuid-cbit), which the decompressor's C-bit check exists to catch`;
        }
        break;
      case Stop.TripleFault:
        verdict = 'triple-fault';
        reason = `${cpu.stopDetail} at ${hex(cpu.ripLo, cpu.ripHi)}${describeSuffix(addresses.describe(cpu.ripLo, cpu.ripHi))}`;
        break;
      case Stop.Budget:
        if (cpu.icount >= budget.instructions) {
          verdict = 'budget-exhausted';
          reason = `instruction budget of ${budget.instructions} exhausted at ${hex(cpu.ripLo, cpu.ripHi)}${describeSuffix(addresses.describe(cpu.ripLo, cpu.ripHi))}`;
          if (budget.explanation) reason += ` (${budget.explanation}; --budget N sets another)`;
        }
        break;
      case Stop.Terminated:
        verdict = 'guest-terminated';
        reason = cpu.stopDetail;
        break;
      default:
        break;
    }
    options.onProgress?.({ instructions: cpu.icount, elapsedMs: Date.now() - started, lastMilestone: milestones[milestones.length - 1]?.name ?? null });
  }

  let output: BootResult['output'] = null;
  if (verdict === 'reached' && kernelEntry !== null && milestones.some((m) => m.name === 'kernel-entry')) {
    const o = inspectOutput(machine.mem, kernel, kernelEntry);
    output = { address: hex(o.output), length: o.outputLength, virtualOffset: o.virtualOffset === null ? null : '0x' + o.virtualOffset.toString(16), relocations: o.relocationCount };
  }
  options.inspect?.(machine);
  options.onUninitializedBytes?.(uninit.unwrittenBytesRead());

  const trace: TraceLine[] = [];
  if (options.traceLength > 0) {
    for (const [lo, hi] of cpu.recentRips(options.traceLength)) {
      const bytes = cpu.peekLinear(lo, hi, 15);
      const dis = disassemble(bytes, lo, hi);
      const len = Math.max(1, instructionLength(bytes));
      trace.push({ rip: hex(lo, hi), symbol: addresses.describe(lo, hi), bytes: Buffer.from(bytes.subarray(0, len)).toString('hex'), disassembly: dis });
    }
  }

  return {
    verdict,
    reason,
    kernel: { path: kernel.path, kind: kernel.kind, version: kernel.header.kernelVersion, headerSource: kernel.headerSource },
    entry,
    milestones,
    console: machine.ports.console(),
    instructions: cpu.icount,
    budget: budget.instructions,
    traceHash: (cpu.traceHash >>> 0).toString(16).padStart(8, '0'),
    kernelEntry: kernelEntry !== null ? hex(kernelEntry) : null,
    output,
    gap,
    trace,
    elapsedMs: Date.now() - started,
    unclaimedPorts: [...machine.ports.unclaimed.keys()].sort((a, b) => a - b),
    coco: machine.sev ? { mode: machine.config.vm.mode, vmpl: machine.config.vm.vmpl, svsm: machine.config.vm.svsm, sevStatus: '0x' + sevStatusFor(machine.config.vm).toString(16) } : null,
    events: (machine.sev?.events ?? []).map(({ ripHi, ...e }) => ({ ...e, rip: hex(e.rip, ripHi), symbol: addresses.describe(e.rip, ripHi) })),
    findings: (machine.sev?.rmp.findings ?? []).map((f) => `${f.severity} ${f.code} at 0x${f.gpa.toString(16)}: ${f.detail}`),
    termination: terminationOf(machine),
    uninitializedReads: uninit.reads,
  };
}

function describeSuffix(s: string): string {
  return s ? ` (${s})` : '';
}


function terminationOf(machine: Machine): BootResult['termination'] {
  const t = machine.sev?.termination;
  if (!t || t.initiator !== 'guest') return null;
  return { set: t.set, code: t.code, name: `${t.setName}/${t.codeName}`, detail: t.detail !== undefined && t.detail !== null ? '0x' + t.detail.toString(16) : null };
}
