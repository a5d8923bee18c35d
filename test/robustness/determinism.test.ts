import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { makeVmConfig, type CocoMode } from '../../src/hypervisor/vm-config.js';
import type { BootResult } from '../../src/machine/boot.js';
import { bootDebian, DEBIAN_KERNELS, kernelPath } from '../boot/helpers.js';

/*
 * Determinism: a run is a function of (kernel, options, poison, seed). Three
 * runs to extract_kernel of each Debian kernel under each --coco mode must
 * agree on everything a run reports except wall-clock time: verdict, reason,
 * trace hash (every retired RIP), console, instruction count, milestones,
 * hypervisor events, RMP findings, uninitialized reads. Two runs share this
 * process (the second starts with a warm JIT and whatever module state the
 * first left behind); the third is `bzemu boot --json` in a fresh process.
 * Poison is random (seed 1), so the seeded poison must be reproducible too.
 */

const MODES: readonly CocoMode[] = ['none', 'sev', 'sev-es', 'snp'];

/** Everything a run reports that must not vary between identical runs. */
type Fingerprint = Pick<BootResult, 'verdict' | 'reason' | 'traceHash' | 'console' | 'instructions' | 'milestones' | 'events' | 'findings' | 'uninitializedReads' | 'termination' | 'unclaimedPorts' | 'coco'>;

function fingerprint(r: Fingerprint): Fingerprint {
  const { verdict, reason, traceHash, console, instructions, milestones, events, findings, uninitializedReads, termination, unclaimedPorts, coco } = r;
  // Through JSON, as the CLI prints it, so in-process and CLI results compare field for field.
  return JSON.parse(JSON.stringify({ verdict, reason, traceHash, console, instructions, milestones, events, findings, uninitializedReads, termination, unclaimedPorts, coco })) as Fingerprint;
}

/** `bzemu boot` with the options bootDebian uses (the CLI's defaults: 1 GiB, random poison seed 1, same command line). */
function cliRun(id: string, mode: CocoMode): Fingerprint {
  const r = spawnSync('node', ['dist/bundle/main.js', 'boot', kernelPath(id), '--coco', mode, '--json', '--mem', '1G', '--poison', 'random', '--seed', '1', '--until', 'extract_kernel'], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return fingerprint(JSON.parse(r.stdout) as Fingerprint);
}

describe.each(DEBIAN_KERNELS)('%s: three runs to extract_kernel agree', (id) => {
  it.each(MODES)('--coco %s', (mode) => {
    const runs = [
      fingerprint(bootDebian(id, { vm: makeVmConfig({ mode }) })),
      fingerprint(bootDebian(id, { vm: makeVmConfig({ mode }) })),
      cliRun(id, mode),
    ];
    // The runs boot for real: equality of three early failures would prove little.
    expect(runs[0].verdict, runs[0].reason).toBe('reached');
    expect(runs[0].instructions).toBeGreaterThan(100_000);
    expect(runs[0].traceHash).toMatch(/^[0-9a-f]{8}$/);
    if (mode === 'sev-es' || mode === 'snp') expect(runs[0].events.length).toBeGreaterThan(0);
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
  });
});
