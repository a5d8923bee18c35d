import type { PoisonPolicy } from '../../memory/poison.js';

/** The fixed patterns every campaign starts with, in this order: runs 0..4. */
export const FIXED_PATTERNS: readonly number[] = [0x00, 0xff, 0xaa, 0x55, 0x01];

/** One boot of a campaign: its index, the poison it gets and the seed (RDRAND) it runs with. */
export interface RunSpec {
  index: number;
  poison: PoisonPolicy;
  seed: number;
}

/**
 * Run `index` of a campaign seeded with `seed`: the fixed patterns first, then
 * random poison with seeds seed, seed+1, ... so that run 5 of `--seed 1` is
 * exactly `bzemu boot --poison random --seed 1`.
 */
export function runSpec(index: number, seed: number): RunSpec {
  if (index < FIXED_PATTERNS.length) {
    const value = FIXED_PATTERNS[index];
    return { index, seed, poison: value === 0 ? { kind: 'zero' } : { kind: 'byte', value } };
  }
  const s = (seed + index - FIXED_PATTERNS.length) >>> 0;
  return { index, seed: s, poison: { kind: 'random', seed: s } };
}

/** The command-line spelling that reproduces a run with `bzemu boot`. */
export function poisonArgs(spec: RunSpec): string {
  const p = spec.poison;
  if (p.kind === 'random') return `--poison random --seed ${p.seed}`;
  const pattern = p.kind === 'zero' ? 'zero' : p.kind === 'byte' ? '0x' + p.value.toString(16).padStart(2, '0') : '?';
  return `--poison ${pattern} --seed ${spec.seed}`;
}

/** A deterministic slice of a campaign: shard k (1-based) of n takes runs i with i mod n = k - 1. */
export interface Shard {
  k: number;
  n: number;
}

export function inShard(index: number, shard: Shard | null): boolean {
  return shard === null || index % shard.n === shard.k - 1;
}

/** Run indices of a campaign of `runs` boots that belong to the shard, ascending. */
export function shardRuns(runs: number, shard: Shard | null): number[] {
  const out: number[] = [];
  for (let i = 0; i < runs; i++) if (inShard(i, shard)) out.push(i);
  return out;
}

export class ShardError extends Error {}

/**
 * `--shard k/n`, or `auto`: a Kubernetes Indexed Job (JOB_COMPLETION_INDEX,
 * zero-based, and the completion count the manifest passes as
 * JOB_COMPLETIONS) or a Slurm job array (SLURM_ARRAY_TASK_ID,
 * SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN).
 */
export function parseShard(text: string, env: NodeJS.ProcessEnv): Shard {
  if (text === 'auto') {
    const num = (name: string): number | null => {
      const v = env[name];
      if (v === undefined || v === '') return null;
      if (!/^\d+$/.test(v)) throw new ShardError(`--shard auto: ${name} is not a number: '${v}'`);
      return Number(v);
    };
    const kIndex = num('JOB_COMPLETION_INDEX');
    if (kIndex !== null) {
      const n = num('JOB_COMPLETIONS');
      if (n === null) throw new ShardError('--shard auto: JOB_COMPLETION_INDEX is set but JOB_COMPLETIONS is not (pass the completion count into the pod environment)');
      return checkShard(kIndex + 1, n);
    }
    const task = num('SLURM_ARRAY_TASK_ID');
    if (task !== null) {
      const n = num('SLURM_ARRAY_TASK_COUNT');
      const min = num('SLURM_ARRAY_TASK_MIN') ?? 0;
      if (n === null) throw new ShardError('--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not');
      return checkShard(task - min + 1, n);
    }
    throw new ShardError('--shard auto: neither a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) nor a Slurm array (SLURM_ARRAY_TASK_ID) is in the environment');
  }
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (!m) throw new ShardError(`--shard must be k/n (1 <= k <= n) or auto (got '${text}')`);
  return checkShard(Number(m[1]), Number(m[2]));
}

function checkShard(k: number, n: number): Shard {
  if (!(n >= 1 && k >= 1 && k <= n)) throw new ShardError(`--shard ${k}/${n}: k must be between 1 and n`);
  return { k, n };
}
