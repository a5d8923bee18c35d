import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { boot, type BootResult } from '../machine/boot.js';
import { openDecodedStore } from './decoded-store.js';
import { isBadInputError } from '../kernel/errors.js';
import { buildTree, checkBuildSetup, describeHead, findKernelTree, is32BitConfig, SetupError } from '../analysis/bisect/kernel-tree.js';
import { ABORT, DEFAULT_POISONS, judge, judgementWord, parsePoisonList, SKIP, verdictWords, type PoisonChoice } from '../analysis/bisect/judge.js';
import { parseBootArgs, UsageError } from './options.js';

interface StepLog {
  commit: string;
  subject: string;
  build: { ran: boolean; ok: boolean; seconds: number; firstError: string | null } ;
  boots: Array<{ poison: string; verdict: string; words: string; instructions: number; seconds: number }>;
  judgement: string;
  exitCode: number;
  note: string | null;
}

function splitOwn(argv: string[]): { build: boolean; poisons: string; jsonLog: string | null; rest: string[] } {
  let build = true;
  let poisons = DEFAULT_POISONS;
  let jsonLog: string | null = null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const eq = a.indexOf('=');
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--build') build = true;
    else if (a === '--no-build') build = false;
    else if (a === '--poisons' || a.startsWith('--poisons=')) poisons = value();
    else if (a === '--json-log' || a.startsWith('--json-log=')) jsonLog = value();
    else if (a === '--poison' || a.startsWith('--poison=') || a === '--seed' || a.startsWith('--seed=')) throw new UsageError('bisect-run boots every poison of --poisons: drop --poison/--seed');
    else rest.push(a);
  }
  return { build, poisons, jsonLog, rest };
}

/**
 * `git bisect run bzemu bisect-run [...]`: build the tree at the commit under
 * test, boot its decompressor under each poison, exit 0 good, 1 bad, 125
 * skip, 128 to stop the bisect on a set-up mistake.
 */
export function runBisectStep(argv: string[], cwd: string, env: NodeJS.ProcessEnv, print: (line: string) => void): number {
  let tree: string;
  let own: ReturnType<typeof splitOwn>;
  let poisons: PoisonChoice[];
  let bootArgs: ReturnType<typeof parseBootArgs>;
  try {
    own = splitOwn(argv);
    poisons = parsePoisonList(own.poisons);
    bootArgs = parseBootArgs(own.rest);
    if (bootArgs.report !== null) throw new UsageError('bisect-run writes no report: drop --report (run bzemu boot --report on the commit it names)');
    if (own.rest.some((a) => !a.startsWith('-') && a === bootArgs.kernel)) throw new UsageError('bisect-run boots the tree it runs in: give no kernel');
    tree = findKernelTree(cwd);
    if (own.build) checkBuildSetup(tree, env);
  } catch (e) {
    if (e instanceof SetupError || e instanceof UsageError || e instanceof RangeError) {
      print(`bzemu bisect-run: cannot bisect: ${e.message}`);
      return ABORT;
    }
    throw e;
  }
  const head = describeHead(tree);
  const step: StepLog = { commit: head.hash, subject: head.subject, build: { ran: own.build, ok: true, seconds: 0, firstError: null }, boots: [], judgement: 'skip', exitCode: SKIP, note: null };
  const finish = (code: number, note: string | null): number => {
    step.exitCode = code;
    step.judgement = judgementWord(code);
    step.note = note;
    const buildText = !step.build.ran ? 'not built (--no-build)' : step.build.ok ? `build ${step.build.seconds.toFixed(1)} s` : `build FAILED after ${step.build.seconds.toFixed(1)} s: ${step.build.firstError ?? 'see the build log'}`;
    const boots = step.boots.map((b) => `${b.poison} ${b.words}`).join(', ');
    print(`bzemu bisect-run: ${step.commit} "${step.subject}" | ${buildText}${boots ? ` | ${boots}` : ''}${note ? ` | ${note}` : ''} | ${step.judgement} (${code})`);
    if (own.jsonLog) appendFileSync(own.jsonLog, JSON.stringify(step) + '\n');
    return code;
  };

  if (own.build) {
    const b = buildTree(tree, env);
    step.build = { ran: true, ok: b.ok, seconds: b.seconds, firstError: b.firstError };
    if (!b.ok) return finish(SKIP, `log ${b.log}`);
  }
  if (existsSync(join(tree, '.config')) && is32BitConfig(tree)) return finish(SKIP, 'the kernel is 32-bit only (CONFIG_X86_64 is not set)');
  const vmlinux = join(tree, 'arch', 'x86', 'boot', 'compressed', 'vmlinux');
  const bzImage = join(tree, 'arch', 'x86', 'boot', 'bzImage');
  if (!existsSync(vmlinux) || !existsSync(bzImage)) return finish(SKIP, `nothing built to judge (${existsSync(vmlinux) ? bzImage : vmlinux} is missing)`);
  const { kernel: _k, json: _j, trace: _t, poison: _p, seed: _s, report: _r, ...options } = bootArgs;
  const results: BootResult[] = [];
  const decoded = openDecodedStore(vmlinux);
  for (const p of poisons) {
    let r: BootResult;
    try {
      r = boot({ ...options, kernelPath: vmlinux, bzImage, poison: p.poison, seed: p.seed, traceLength: 0, decoded: decoded.memo });
    } catch (e) {
      if (isBadInputError(e)) return finish(SKIP, `cannot boot what was built: ${(e as Error).message}`);
      throw e;
    }
    results.push(r);
    step.boots.push({ poison: p.name, verdict: r.verdict, words: verdictWords(r), instructions: r.instructions, seconds: r.elapsedMs / 1000 });
  }
  decoded.save();
  return finish(judge(results), null);
}
