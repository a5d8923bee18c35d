import { existsSync } from 'node:fs';
import { boot, type BootResult } from '../machine/boot.js';
import { isBadInputError } from '../kernel/errors.js';
import { exitCodeFor } from '../kernel/verdict.js';
import { debianKernelManifest, ensureDebianKernel } from '../kernel/kernel-cache.js';
import { kernelInfo, renderInfo } from '../kernel/info.js';
import { parseBootArgs, UsageError } from './options.js';
import { renderBoot } from './render.js';
import { openDecodedStore } from './decoded-store.js';
import { explainExitValue } from '../hypervisor/termination.js';
// fuzz, bisect-run, vmsa and --report load their modules when asked: a plain boot does not pay for compiling them.
import { BANNER_EXTRA, EARLY_BUDGET, FIXED, FLOOR, MARGIN, RATES } from '../kernel/budget.js';

const rateList = Object.entries(RATES).map(([f, r]) => `${f} ${r.output}/${r.payload}`);
const rates = `${rateList.slice(0, 4).join(', ')},\n                        ${rateList.slice(4).join(', ')}`;
const exp = (n: number): string => n.toExponential().replace('e+', 'e');

const USAGE = `usage: bzemu <command> [options]

commands:
  boot [KERNEL]     run the decompressor of KERNEL (a bzImage, a compressed vmlinux ELF,
                    or a Debian series id such as debian-6.12, fetched on first use)
      --until extract_kernel|kernel-entry|linux-banner   where to stop (default extract_kernel);
                        linux-banner runs on into the decompressed kernel until the line
                        "Linux version ..." reaches COM1 (needs earlyprintk=ttyS0 on the command line)
      --budget N        instruction budget: a guest still running then ends as budget-exhausted.
                        Default ${exp(EARLY_BUDGET)} to extract_kernel; to kernel-entry it scales with the
                        kernel: max(${exp(FLOOR)}, ${MARGIN} x (O x decompressed size + P x payload size))
                        + ${exp(FIXED)}, O/P instructions per byte fitted to measured runs of each format;
                        to linux-banner ${exp(BANNER_EXTRA)} more
                        (${rates});
                        'bzemu info KERNEL' shows the default for KERNEL
      --mem SIZE        guest RAM (default 1G)
      --poison random|zero|0xNN   contents of memory nobody wrote (default random)
      --seed N          seed for poison and RDRAND (default 1)
      --cmdline TEXT    kernel command line
      --load-addr ADDR  where the firmware loads the kernel (default 0x2000000, as stage0)
      --gdt boot-protocol|stage0   entry GDT layout (CS 0x10/DS 0x18, or CS 0x08/DS 0x10)
      --entry startup_64|startup_32   boot-protocol entry (default startup_64, where stage0 enters):
                        startup_32 enters in protected mode with paging off, as GRUB and
                        QEMU's loader do; the decompressor then enables long mode itself
      --bzimage PATH    the bzImage of a compressed vmlinux ELF (setup header)
      --symbols PATH    a compressed vmlinux ELF naming a bzImage's addresses
      --trace N         print the last N instructions when the run ends
      --json            machine-readable result
      --report FILE     also write an HTML report: memory map, event timeline with trace windows, findings
    confidential computing (the stub SEV-SNP hypervisor):
      --coco none|sev|sev-es|snp   guest type (default none)
      --cbit N          C-bit position (default 51)
      --cpuid-cbit N    a lying hypervisor: CPUID, the CPUID page and SEV-info report
                        C-bit N (32..51) while memory is encrypted at --cbit, and N is
                        aliased onto the same memory; the guest's C-bit check must catch it
      --sev-features M  extra SEV_STATUS bits the guest sees
      --hv-features M   GHCB hypervisor features (default 0x3, as KVM without multi-VMPL)
      --vmpl N          run the guest at VMPL N (SNP)
      --svsm            model an SVSM at VMPL0 (guest defaults to VMPL1)
      --no-cpuid-page   give an SNP guest no CC blob, CPUID page or secrets page
      --prevalidate all|launch|none   what the firmware validated (SNP; default all, as
                        stage0): every RAM page, only the pages populated at launch, none
      --vmsa FILE       launch the BSP from this VMSA page (SEV-ES save-area layout) instead
                        of the firmware's entry state, checked as KVM checks it
      --rmp-mismatch convert|terminate   a C-bit that disagrees with the RMP: convert the
                        page implicitly as KVM+QEMU do (default), or stop the run
  fuzz [KERNEL]     boot N times with different garbage in memory nobody wrote, group the
                    outcomes, and minimize each failure to the bytes (symbols) to blame
      --runs N          boots (default 200): 0x00, 0xff, 0xaa, 0x55, 0x01, then random poison
                        with seeds --seed, --seed+1, ...
      --workers W       worker threads (default: the number of cores)
      --shard k/n|auto  run the k-th of n slices (auto: Kubernetes Indexed Job or Slurm array)
      --out FILE        also write the JSON report to FILE (one per shard)
      --report FILE     also write an HTML report: outcome histogram, culprits, and beside it
                        one run report per failing group (its first run booted again)
      --json            the whole campaign as JSON
      and any boot option (--coco, --vmpl, --svsm, --until, --symbols, --bzimage, ...)
  fuzz merge FILE...  merge shard reports into the report of the whole campaign
  bisect-run        one step of 'git bisect run bzemu bisect-run [options]' inside a kernel
                    tree: make olddefconfig && make bzImage, boot the decompressor under each
                    poison; exit 0 good, 1 bad, 125 skip (build failed, emulator gap, 32-bit
                    kernel), 128 stop (not a kernel tree, no .config, no compiler)
      --no-build        judge what is already built
      --poisons LIST    default zero,0xff,random:1,random:2,random:3
      --json-log FILE   append one JSON line per step
      and any boot option (--coco, --vmpl, --svsm, --until, ...)
  vmsa [KERNEL] -o FILE   write the VMSA of the entry state bzemu's firmware leaves (takes the
                    boot options); 'boot KERNEL --vmsa FILE' then starts from it
  info KERNEL       setup header, version, payload format, sizes, symbols
  decode-exit VALUE explain a GHCB MSR value or termination code (e.g. 0x31100, 1:3)

exit codes: 0 reached (fuzz: every run), 1 guest failed (fuzz: a failing group), 2 bad input or usage, 3 emulator gap`;

function resolveKernel(name: string): string {
  if (existsSync(name)) return name;
  if (debianKernelManifest().some((s) => s.id === name)) return ensureDebianKernel(name);
  return name; // loadKernel reports the missing file
}

function progressPrinter(): ((p: { instructions: number; elapsedMs: number; lastMilestone: string | null }) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  let shown = false;
  return (p) => {
    if (p.elapsedMs < 1000) return;
    shown = true;
    const mips = p.instructions / (p.elapsedMs / 1000) / 1e6;
    process.stderr.write(`\r${(p.instructions / 1e6).toFixed(1)}M instructions, ${mips.toFixed(1)} MIPS, last milestone ${p.lastMilestone ?? '-'}   `);
    void shown;
  };
}

async function runBoot(argv: string[]): Promise<number> {
  const { kernel, json, trace, report, ...bootOptions } = parseBootArgs(argv);
  const progress = json ? undefined : progressPrinter();
  const kernelPath = resolveKernel(kernel);
  const decoded = openDecodedStore(kernelPath);
  const options = { ...bootOptions, kernelPath, traceLength: trace, onProgress: progress, decoded: decoded.memo };
  const withReport = report !== null ? (await import('./report.js')).bootWithReportFile(options, report, argv) : null;
  const result: BootResult = withReport?.result ?? boot(options);
  decoded.save();
  if (progress) process.stderr.write('\r\x1b[K');
  if (json) {
    const { trace: lastInstructions, ...rest } = result;
    process.stdout.write(JSON.stringify(trace > 0 ? { ...rest, trace: lastInstructions } : rest, null, 2) + '\n');
  } else {
    process.stdout.write(renderBoot(result) + '\n');
    if (withReport) process.stdout.write(withReport.line + '\n');
  }
  return exitCodeFor(result.verdict);
}

function runInfo(argv: string[]): number {
  if (argv.length !== 1) throw new UsageError('info takes one kernel');
  process.stdout.write(renderInfo(kernelInfo(resolveKernel(argv[0]))) + '\n');
  return 0;
}

function runDecodeExit(argv: string[]): number {
  if (argv.length !== 1) throw new UsageError('decode-exit takes one value, for example 0x31100');
  try {
    process.stdout.write(explainExitValue(argv[0]) + '\n');
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  return 0;
}

/** A bisect step never exits 2..4: an unexpected error stops the bisect (128) instead of marking the commit. */
async function bisectStep(argv: string[]): Promise<number> {
  try {
    const { runBisectStep } = await import('./bisect-run.js');
    return runBisectStep(argv, process.cwd(), process.env, (line) => process.stdout.write(line + '\n'));
  } catch (e) {
    process.stdout.write(`bzemu bisect-run: internal error, stopping the bisect: ${(e as Error)?.message ?? String(e)}\n`);
    return 128;
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'boot': return await runBoot(rest);
      case 'fuzz': return await (await import('./fuzz.js')).runFuzz(rest, resolveKernel);
      case 'bisect-run': return await bisectStep(rest);
      case 'vmsa': return (await import('./vmsa.js')).writeVmsa(rest, resolveKernel);
      case 'info': return runInfo(rest);
      case 'decode-exit': return runDecodeExit(rest);
      case undefined: case '-h': case '--help': case 'help':
        process.stdout.write(USAGE + '\n');
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command '${command}'`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`bzemu: ${e.message} (see bzemu --help)\n`);
      return 2;
    }
    if (isBadInputError(e)) {
      process.stderr.write(`bzemu: bad input: ${(e as Error).message}\n`);
      return 2;
    }
    process.stderr.write(`bzemu: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    return 4;
  }
}

// No top-level await: the shipped CLI is one CommonJS script (see launch.ts).
void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
