import { basename, dirname, join } from 'node:path';
import type { CampaignReport } from '../fuzz/report.js';
import { poisonArgs, runSpec } from '../fuzz/plan.js';
import type { TargetConfig } from '../fuzz/runner.js';
import type { CampaignGroupView, CampaignView } from './model.js';
import { bootWithReport, writeReport } from './run-report.js';

/**
 * The campaign's report at `path`, and beside it one run report per failing
 * group: its first run booted again (same poison and seed, so the same
 * outcome) with the report's recording on. Returns the files written.
 */
export function writeCampaignReport(path: string, campaign: CampaignReport, target: TargetConfig): Array<{ path: string; bytes: number }> {
  const written: Array<{ path: string; bytes: number }> = [];
  const stem = basename(path).replace(/\.html?$/i, '');
  const groups: CampaignGroupView[] = campaign.groups.map((g, i) => {
    const spec = runSpec(g.firstRun, campaign.seed);
    const reproduce = [...campaign.bootOptions, poisonArgs(spec)].join(' ');
    let report: string | null = null;
    if (g.cause !== 'target-reached') {
      const file = `${stem}-group${i + 1}-run${g.firstRun}.html`;
      const { report: run } = bootWithReport({ ...target, poison: spec.poison, seed: spec.seed, traceLength: 0 }, `bzemu boot ${campaign.kernel.path} ${reproduce}`);
      written.push({ path: join(dirname(path), file), bytes: writeReport(join(dirname(path), file), run) });
      report = file;
    }
    return {
      outcome: g.outcome,
      cause: g.cause,
      explanation: g.explanation,
      runs: g.runs,
      firstRun: g.firstRun,
      reproduce,
      report,
      culprits: g.culprits.map((c) => ({ name: c.name, section: c.section, address: c.address, size: c.size, reader: c.reader, failingRunValue: c.failingRunValue, failingValues: c.failingValues, otherValues: c.otherValues })),
      minimizationBoots: g.minimizationBoots,
    };
  });
  const view: CampaignView = {
    kind: 'campaign',
    title: `${basename(campaign.kernel.path)}: ${campaign.summary.failingGroups} failing group${campaign.summary.failingGroups === 1 ? '' : 's'} in ${campaign.summary.runs} runs`,
    generatedBy: 'bzemu fuzz --report',
    kernel: campaign.kernel,
    bootOptions: campaign.bootOptions,
    seed: campaign.seed,
    runs: campaign.runs,
    baseline: campaign.baseline,
    summary: campaign.summary,
    groups,
  };
  written.unshift({ path, bytes: writeReport(path, view) });
  return written;
}
