import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { CampaignView, RunReport } from './model.js';
import { reportPage } from './page.js';

/** Apache ECharts as shipped in its npm package: the minified browser build and what its license asks us to keep. */
interface ChartLibrary {
  version: string;
  source: string;
  notice: string;
}

function chartLibrary(): ChartLibrary {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('echarts/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { version: string };
  const source = readFileSync(require.resolve('echarts/dist/echarts.min.js'), 'utf8');
  const notice = readFileSync(pkgPath.replace(/package\.json$/, 'NOTICE'), 'utf8');
  return { version: pkg.version, source, notice };
}

/** Text inside <script>: no "</script" may end it early (the library has none; data is escaped anyway). */
function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, '<\\/$1');
}

const STYLE = `
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2330; background: #f5f6f8; }
body { margin: 0 auto; max-width: 1400px; padding: 16px 24px 40px; }
h1 { font-size: 22px; margin: 8px 0; } h2 { font-size: 18px; margin: 0 0 8px; } h3 { font-size: 15px; margin: 14px 0 6px; }
section, header { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px 16px; margin: 14px 0; }
.verdict { font-size: 15px; padding: 6px 10px; border-radius: 4px; }
.verdict.ok { background: #e3f4e1; } .verdict.bad { background: #fde4e1; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eceef2; vertical-align: top; }
table.facts td:first-child { color: #667; width: 160px; }
code, pre, .trace td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
pre { background: #f0f1f4; padding: 8px; white-space: pre-wrap; }
.chart { width: 100%; }
.hint { color: #667; font-size: 13px; margin: 0 0 6px; }
.buttons button { margin: 0 6px 6px 0; font-size: 12px; padding: 3px 8px; cursor: pointer; }
.legend { font-size: 12px; color: #445; } .swatch { display: inline-block; width: 11px; height: 11px; margin: 0 3px 0 10px; border: 1px solid #777; vertical-align: middle; }
.trace { border-top: 2px solid #d62728; margin-top: 8px; padding-top: 4px; }
.trace-scroll { max-height: 440px; overflow-y: auto; border: 1px solid #eceef2; }
.trace tr.at td { background: #fde4e1; font-weight: bold; }
.tip { display: inline-block; max-width: 520px; white-space: normal; }
footer { color: #778; font-size: 12px; margin-top: 20px; }
`;

/**
 * One self-contained HTML file: styles, the chart library, the data and the
 * page's code inline, nothing fetched when it is opened.
 */
export function renderReportHtml(view: RunReport | CampaignView): string {
  const lib = chartLibrary();
  const title = view.kind === 'run' ? `bzemu: ${view.title}` : `bzemu fuzz: ${view.title}`;
  // JSON in a script element: "<" escaped so no "</script>" or "<!--" in a string can end or confuse it.
  const json = JSON.stringify(view).replace(/</g, '\\u003c');
  const start = `(${reportPage.toString()})(echarts, JSON.parse(document.getElementById('bzemu-data').textContent), document.getElementById('report'), window.bzemuReport = { ready: false, charts: {}, showEvent: function () {} }); window.bzemuReport.readyAt = performance.now();`;
  const escapeHtml = (s: string): string => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head><body>',
    '<main id="report"></main>',
    `<footer>Made by ${escapeHtml(view.generatedBy)}. Charts drawn with Apache ECharts ${escapeHtml(lib.version)} (Apache License 2.0), included in this file with its license notice.</footer>`,
    `<script id="bzemu-data" type="application/json">${json}</script>`,
    // The library verbatim (its own license header first), preceded by the NOTICE its license asks redistributors to keep.
    `<script>/*! Apache ECharts ${lib.version}, https://echarts.apache.org, licensed under the Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0).\n${lib.notice.replace(/\*\//g, '* /')}\n*/\n${scriptSafe(lib.source)}</script>`,
    `<script>${scriptSafe(start)}</script>`,
    '</body></html>',
    '',
  ].join('\n');
}
