import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BadInputError } from '../../kernel/errors.js';
import { loadKernel } from '../../kernel/kernel-image.js';
import { machineConfigFor, runMachine, type BootOptions, type BootResult } from '../../machine/boot.js';
import { Machine } from '../../machine/machine.js';
import { renderReportHtml } from './html.js';
import type { CampaignView, RunReport } from './model.js';
import { RunRecorder } from './recorder.js';

/** Boot as `boot()` does, recording what the report shows along the way. */
export function bootWithReport(options: BootOptions, command: string | null): { result: BootResult; report: RunReport } {
  const kernel = loadKernel(options.kernelPath, { bzImage: options.bzImage, symbols: options.symbols });
  const machine = new Machine(kernel, machineConfigFor(options));
  const recorder = new RunRecorder(machine);
  const result = runMachine(machine, { ...options, ...recorder.runOptions() });
  return { result, report: recorder.finish(result, command) };
}

/** Refuse a report path that cannot be written before spending a run on it (bad input, one line). */
export function checkReportPath(path: string): void {
  const dir = dirname(resolve(path));
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new BadInputError(`--report: no such directory: ${dir}`);
  if (existsSync(path) && statSync(path).isDirectory()) throw new BadInputError(`--report: ${path} is a directory`);
}

/** Write the self-contained HTML file; returns its size in bytes. */
export function writeReport(path: string, view: RunReport | CampaignView): number {
  const html = renderReportHtml(view);
  try {
    writeFileSync(path, html);
  } catch (e) {
    throw new BadInputError(`--report: cannot write ${path}: ${(e as Error).message}`);
  }
  return Buffer.byteLength(html);
}
