import { bootWithReport, checkReportPath, writeReport } from '../analysis/report/run-report.js';
import type { BootOptions, BootResult } from '../machine/boot.js';

/** A word as a POSIX shell reads it back. */
function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`;
}

/** The command that runs the same boot again, without the report and output switches. */
export function reproduceCommand(command: string, argv: readonly string[]): string {
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--report') { i++; continue; }
    if (a.startsWith('--report=') || a === '--json') continue;
    words.push(shellWord(a));
  }
  return ['bzemu', command, ...words].join(' ');
}

/** `bzemu boot --report FILE`: the boot, and its HTML report written to `path`; returns the line the text output ends with. */
export function bootWithReportFile(options: BootOptions, path: string, argv: readonly string[]): { result: BootResult; line: string } {
  checkReportPath(path);
  const { result, report } = bootWithReport(options, reproduceCommand('boot', argv));
  const bytes = writeReport(path, report);
  return { result, line: `report       ${path} (${(bytes / 2 ** 20).toFixed(1)} MB)` };
}
