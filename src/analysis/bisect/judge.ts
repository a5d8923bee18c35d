import type { BootResult } from '../../machine/boot.js';
import type { PoisonPolicy } from '../../memory/poison.js';

/** git bisect run's exit codes. */
export const GOOD = 0, BAD = 1, SKIP = 125, ABORT = 128;

export interface PoisonChoice {
  /** As written in --poisons. */
  name: string;
  poison: PoisonPolicy;
  seed: number;
}

export const DEFAULT_POISONS = 'zero,0xff,random:1,random:2,random:3';

/** `zero,0xff,random:1` -> poisons (random:N seeds both the poison and RDRAND, as --poison random --seed N). */
export function parsePoisonList(text: string): PoisonChoice[] {
  const out: PoisonChoice[] = [];
  for (const name of text.split(',').map((s) => s.trim()).filter((s) => s)) {
    let m: RegExpExecArray | null;
    if (name === 'zero') out.push({ name, poison: { kind: 'zero' }, seed: 1 });
    else if ((m = /^0x([0-9a-f]{1,2})$/i.exec(name))) out.push({ name, poison: { kind: 'byte', value: parseInt(m[1], 16) }, seed: 1 });
    else if ((m = /^random:(\d+)$/.exec(name))) out.push({ name, poison: { kind: 'random', seed: Number(m[1]) }, seed: Number(m[1]) });
    else throw new RangeError(`--poisons: '${name}' is not zero, 0xNN or random:N`);
  }
  if (out.length === 0) throw new RangeError('--poisons is empty');
  return out;
}

/** One poison's outcome, in a few words: "reached", "guest-terminated (1,3) GHCB_TERM_NOT_VMPL0". */
export function verdictWords(r: BootResult): string {
  if (r.verdict === 'reached') return 'reached';
  if (r.verdict === 'guest-terminated' && r.termination) return `guest-terminated (${r.termination.set},${r.termination.code}) ${r.termination.name.split('/').pop()}`;
  if (r.verdict === 'emulator-gap') return `emulator-gap (${r.gap?.disassembly ?? '?'})`;
  return r.verdict;
}

/**
 * The commit's judgement from its boots: bad when any poison fails for real,
 * else skip when bzemu could not run it (an instruction it lacks), else good.
 */
export function judge(results: BootResult[]): number {
  if (results.some((r) => r.verdict !== 'reached' && r.verdict !== 'emulator-gap')) return BAD;
  if (results.some((r) => r.verdict === 'emulator-gap')) return SKIP;
  return GOOD;
}

export function judgementWord(code: number): string {
  return code === GOOD ? 'good' : code === BAD ? 'bad' : code === SKIP ? 'skip' : 'abort';
}
