import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { CampaignReport } from '../../src/analysis/fuzz/report.js';
import { selfBuiltKernels, symbolOffset } from '../regression/selfbuilt.js';

/*
 * Campaigns on the self-built kernels through the CLI (worker threads need the
 * compiled JavaScript). Expected culprits come from the kernel's own System.map
 * (nm) and from what the regress patch does; run counts and group keys are
 * bzemu's own.
 */

const out = mkdtempSync(join(tmpdir(), 'bzemu-fuzz-'));

function bzemu(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('node', ['dist/bundle/main.js', ...args], { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 << 20 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function withoutTiming(text: string): CampaignReport {
  const { timing: _t, ...report } = JSON.parse(text) as CampaignReport & { timing?: unknown };
  return report;
}

let dir = '';
let regress: { status: number; report: CampaignReport; text: string };
beforeAll(() => {
  dir = selfBuiltKernels();
  const r = bzemu('fuzz', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--runs', '200', '--workers', '2', '--json');
  regress = { status: r.status, report: JSON.parse(r.stdout) as CampaignReport, text: r.stdout };
}, 1_800_000);

describe('regress kernel, SNP at VMPL0 without SVSM: 200-run campaign', () => {
  it('finds the GHCB_TERM_NOT_VMPL0 group and exits 1', () => {
    expect(regress.status).toBe(1);
    const g = regress.report.groups.find((x) => x.termination?.set === 1 && x.termination.code === 3);
    expect(g, JSON.stringify(regress.report.groups.map((x) => x.outcome))).toBeDefined();
    // Every poison with a non-zero byte at snp_vmpl fails; the zero pattern (run 0) is the only 0 there.
    expect(g!.runs).toBeGreaterThan(190);
    expect(regress.report.baseline).toBe('zero');
  });

  it('minimizes it to snp_vmpl alone, failing for any non-zero value, reaching with 0x00', () => {
    const g = regress.report.groups.find((x) => x.termination?.code === 3)!;
    expect(g.cause).toBe('uninitialized-memory');
    expect(g.culprits).toHaveLength(1);
    const c = g.culprits[0];
    expect(c.symbol).toBe('snp_vmpl');
    expect(c.size).toBe(1);
    expect(c.failingValues).toBe('any non-zero value');
    expect(c.otherValues).toEqual(['0x00 -> reached extract_kernel']);
    expect(c.reader).toMatch(/^sev_enable\+0x/);
    const bss = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    expect(c.section).toBe(`.bss+0x${bss.toString(16)}`);
    expect(g.explanation).toContain('snp_vmpl (1 byte');
  });

  it('gives the same campaign on one worker as on two', () => {
    const r = bzemu('fuzz', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--runs', '200', '--workers', '1', '--json');
    expect(withoutTiming(r.stdout)).toEqual(withoutTiming(regress.text));
  });

  it('as 3 shards merged gives exactly the unsharded report', () => {
    const files = [1, 2, 3].map((k) => {
      const f = join(out, `shard-${k}.json`);
      const r = bzemu('fuzz', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--runs', '200', '--workers', '2', '--shard', `${k}/3`, '--out', f, '--json');
      expect([0, 1]).toContain(r.status);
      expect(withoutTiming(readFileSync(f, 'utf8')).shard).toEqual({ k, n: 3 });
      return f;
    });
    const merged = bzemu('fuzz', 'merge', ...files, '--json');
    expect(merged.status).toBe(1);
    expect(JSON.parse(merged.stdout)).toEqual(withoutTiming(regress.text));
  });

  it('a shard picks k/n from a Slurm job array with --shard auto', () => {
    const r = spawnSync('node', ['dist/bundle/main.js', 'fuzz', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--runs', '12', '--workers', '1', '--shard', 'auto', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '1' },
    });
    const rep = withoutTiming(r.stdout);
    expect(rep.shard).toEqual({ k: 3, n: 3 });
    expect(rep.summary.runs).toBe(4); // runs 2, 5, 8, 11
  });
});

describe('other kernels and views', () => {
  it('the bare regress bzImage names the culprit by section and offset; with --symbols by symbol', () => {
    const bss = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    const bare = withoutTiming(bzemu('fuzz', join(dir, 'regress', 'bzImage'), '--coco', 'snp', '--runs', '8', '--workers', '2', '--json').stdout);
    const c = bare.groups.find((g) => g.termination?.code === 3)!.culprits;
    expect(c.map((x) => x.name)).toEqual([`.bss+0x${bss.toString(16)}`]);
    expect(c[0].symbol).toBeNull();
    const named = withoutTiming(bzemu('fuzz', join(dir, 'regress', 'bzImage'), '--symbols', join(dir, 'regress', 'vmlinux'), '--coco', 'snp', '--runs', '8', '--workers', '2', '--json').stdout);
    expect(named.groups.find((g) => g.termination?.code === 3)!.culprits.map((x) => x.name)).toEqual(['snp_vmpl']);
  });

  it('the fix kernel: the same 200-run campaign finds no failure and exits 0', () => {
    const r = bzemu('fuzz', join(dir, 'fix', 'vmlinux'), '--coco', 'snp', '--runs', '200', '--workers', '2', '--json');
    expect(r.status).toBe(0);
    const rep = withoutTiming(r.stdout);
    expect(rep.summary).toEqual({ runs: 200, reached: 200, failed: 0, groups: 1, failingGroups: 0 });
  });

  it('naive-fix under an SVSM fails with every poison, zero included: not caused by uninitialized memory', () => {
    const r = bzemu('fuzz', join(dir, 'naive-fix', 'vmlinux'), '--coco', 'snp', '--svsm', '--vmpl', '2', '--hv-features', '0x23', '--until', 'kernel-entry', '--runs', '10', '--workers', '2', '--json');
    expect(r.status).toBe(1);
    const rep = withoutTiming(r.stdout);
    expect(rep.groups).toHaveLength(1);
    expect(rep.groups[0].termination).toMatchObject({ set: 1, code: 2 });
    expect(rep.groups[0].cause).toBe('not-uninitialized-memory');
    expect(rep.groups[0].culprits).toEqual([]);
  });
});

describe('bad input', () => {
  it('a missing kernel, --poison, a bad shard or an incomplete merge: one line, exit 2', () => {
    for (const args of [
      ['fuzz', join(out, 'nope')],
      ['fuzz', join(dir, 'regress', 'vmlinux'), '--poison', 'zero'],
      ['fuzz', join(dir, 'regress', 'vmlinux'), '--shard', '4/3'],
      ['fuzz', join(dir, 'regress', 'vmlinux'), '--runs', '0'],
      ['fuzz', 'merge', join(out, 'shard-1.json')],
      ['fuzz', 'merge', '/etc/hostname'],
    ]) {
      const r = bzemu(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });
});
