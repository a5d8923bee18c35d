import { describe, expect, it } from 'vitest';
import { describeValues } from '../../src/analysis/fuzz/minimize.js';
import { parseShard, runSpec, shardRuns, ShardError } from '../../src/analysis/fuzz/plan.js';
import { mergeReports, MergeError, type CampaignReport } from '../../src/analysis/fuzz/report.js';
import { overlayPoison, poisonByte } from '../../src/memory/poison.js';

describe('campaign plan', () => {
  it('starts with the fixed patterns, then random seeds counting up from --seed', () => {
    expect([0, 1, 2, 3, 4].map((i) => runSpec(i, 7).poison)).toEqual([
      { kind: 'zero' }, { kind: 'byte', value: 0xff }, { kind: 'byte', value: 0xaa }, { kind: 'byte', value: 0x55 }, { kind: 'byte', value: 0x01 },
    ]);
    expect(runSpec(5, 7)).toEqual({ index: 5, seed: 7, poison: { kind: 'random', seed: 7 } });
    expect(runSpec(9, 7).poison).toEqual({ kind: 'random', seed: 11 });
  });

  it('slices runs round-robin into shards that cover every run once', () => {
    const parts = [1, 2, 3].map((k) => shardRuns(10, { k, n: 3 }));
    expect(parts).toEqual([[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]);
    expect(parts.flat().sort((a, b) => a - b)).toEqual([...Array(10).keys()]);
  });

  it('reads --shard auto from a Kubernetes Indexed Job (zero-based index) and a Slurm array (offset by its minimum)', () => {
    expect(parseShard('auto', { JOB_COMPLETION_INDEX: '0', JOB_COMPLETIONS: '4' })).toEqual({ k: 1, n: 4 });
    expect(parseShard('auto', { JOB_COMPLETION_INDEX: '3', JOB_COMPLETIONS: '4' })).toEqual({ k: 4, n: 4 });
    expect(parseShard('auto', { SLURM_ARRAY_TASK_ID: '12', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '10' })).toEqual({ k: 3, n: 3 });
    expect(parseShard('2/5', {})).toEqual({ k: 2, n: 5 });
    expect(() => parseShard('auto', {})).toThrow(ShardError);
    expect(() => parseShard('auto', { JOB_COMPLETION_INDEX: '1' })).toThrow(/JOB_COMPLETIONS/);
    expect(() => parseShard('0/3', {})).toThrow(ShardError);
    expect(() => parseShard('4/3', {})).toThrow(ShardError);
  });
});

describe('poison overlays and value summaries', () => {
  it('an overlay sets exactly its bytes on top of the base', () => {
    const p = overlayPoison({ kind: 'zero' }, [[0x2180012, 0x5a], [0x2181000, 7]]);
    expect(poisonByte(p, 0x2180012)).toBe(0x5a);
    expect(poisonByte(p, 0x2180013)).toBe(0);
    expect(poisonByte(p, 0x2181000)).toBe(7);
    expect(poisonByte(overlayPoison({ kind: 'byte', value: 0xff }, []), 0x1234)).toBe(0xff);
  });

  it('describes value sets the way a person would', () => {
    expect(describeValues([...Array(255).keys()].map((v) => v + 1))).toBe('any non-zero value');
    expect(describeValues([...Array(256).keys()])).toBe('any value');
    expect(describeValues([0, 1, 2, 3, 0x80])).toBe('0x00-0x03, 0x80');
  });
});

function report(k: number, n: number, groups: CampaignReport['groups']): CampaignReport {
  return { kernel: { path: 'k', version: 'v' }, bootOptions: ['--coco', 'snp'], seed: 1, runs: 6, shard: { k, n }, baseline: 'zero', summary: { runs: 0, reached: 0, failed: 0, groups: 0, failingGroups: 0 }, groups };
}

function group(key: string, runs: number[], explanation: string): CampaignReport['groups'][number] {
  return { key, outcome: key, verdict: key === 'reached' ? 'reached' : 'guest-terminated', termination: null, runs: runs.length, firstRun: runs[0], examples: runs.map((run) => ({ run, reproduce: `r${run}` })), cause: key === 'reached' ? 'target-reached' : 'uninitialized-memory', explanation, culprits: [], minimizationBoots: 3 };
}

describe('merging shard reports', () => {
  it('sums runs, keeps the earliest examples and the minimization of the shard holding the first run', () => {
    const merged = mergeReports([
      report(2, 2, [group('t', [1, 3, 5], 'from shard 2')]),
      report(1, 2, [group('reached', [0], 'reached'), group('t', [2, 4], 'from shard 1')]),
    ]);
    expect(merged.shard).toBeNull();
    expect(merged.summary).toEqual({ runs: 6, reached: 1, failed: 5, groups: 2, failingGroups: 1 });
    const t = merged.groups.find((g) => g.key === 't')!;
    expect(t.runs).toBe(5);
    expect(t.firstRun).toBe(1);
    expect(t.explanation).toBe('from shard 2');
    expect(t.examples.map((e) => e.run)).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses incomplete, duplicated or foreign shards', () => {
    expect(() => mergeReports([report(1, 2, [])])).toThrow(/missing 2/);
    expect(() => mergeReports([report(1, 2, []), report(1, 2, [])])).toThrow(/twice/);
    expect(() => mergeReports([report(1, 2, []), { ...report(2, 2, []), seed: 9 }])).toThrow(MergeError);
  });
});
