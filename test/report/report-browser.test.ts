import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';
import { selfBuiltKernels, symbolOffset } from '../regression/selfbuilt.js';

/*
 * Reports of real runs opened in headless Chromium (Debian's package, which
 * scripts/test-prereqs.sh installs), checked for what a person sees: the
 * termination on the timeline and the trace that led to it, snp_vmpl in the
 * findings, .bss on the memory map. Any console error in a page fails its
 * test. Screenshots go to test-output/report/ (git-ignored).
 */

const OUT = resolve('test-output', 'report');

function findChromium(): string | null {
  const fromEnv = process.env.BZEMU_CHROMIUM;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : null;
  const r = spawnSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split('\n')[0] : null;
}

const CHROMIUM = findChromium();

function bzemu(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('node', ['dist/bundle/main.js', ...args], { encoding: 'utf8', timeout: 600_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

interface Opened {
  page: Page;
  errors: string[];
  /** Milliseconds from navigation start until the page had drawn its charts. */
  readyAt: number;
}

let browser: Browser;
let dir = '';
const files = {
  regress: join(OUT, 'regress-snp.html'),
  regressBare: join(OUT, 'regress-bzimage-snp.html'),
  debian: join(OUT, 'debian-6.12-snp.html'),
  fuzz: join(OUT, 'fuzz-regress-snp.html'),
};

async function open(file: string): Promise<Opened> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(pathToFileURL(file).href);
  await page.waitForFunction(() => (window as unknown as { bzemuReport?: { ready: boolean } }).bzemuReport?.ready === true, null, { timeout: 30_000 });
  const readyAt = await page.evaluate(() => (window as unknown as { bzemuReport: { readyAt: number } }).bzemuReport.readyAt);
  return { page, errors, readyAt };
}

/** Pixel position, in the page, of a data point of a chart the report drew (ECharts' own coordinate conversion). */
async function pointOnChart(page: Page, chart: string, find: { lane?: string; region?: string; regionLane?: string }): Promise<{ x: number; y: number; index: number }> {
  await page.locator(chart === 'map' ? '#map-chart' : chart === 'timeline' ? '#timeline-chart' : '#histogram-chart').scrollIntoViewIfNeeded();
  const p = await page.evaluate(([chartName, q]) => {
    type Chart = { getOption(): { series: Array<{ data: Array<{ value?: number[] } | number[]> }>; yAxis: Array<{ data: string[] }> }; convertToPixel(finder: { seriesIndex: number }, value: number[]): number[]; getDom(): HTMLElement };
    const h = (window as unknown as { bzemuReport: { charts: Record<string, Chart> } }).bzemuReport;
    const report = JSON.parse(document.getElementById('bzemu-data')!.textContent!) as { regions: Array<{ name: string; lane: string; start: number; size: number }> };
    const c = h.charts[chartName];
    const opt = c.getOption();
    const lanes = opt.yAxis[0].data;
    for (let s = 0; s < opt.series.length; s++) {
      for (const d of opt.series[s].data) {
        const v = Array.isArray(d) ? d : d.value!;
        let at: number[] | null = null;
        if (q.lane !== undefined && lanes[v[1]] === q.lane) at = [v[0], v[1]];
        if (q.region !== undefined) {
          const r = report.regions[v[3]];
          if (r.name === q.region && r.lane === q.regionLane) at = [(v[0] + v[1]) / 2, v[2]];
        }
        if (at !== null) {
          const px = c.convertToPixel({ seriesIndex: s }, at);
          const box = c.getDom().getBoundingClientRect();
          return { x: box.left + px[0], y: box.top + px[1], index: v[q.lane !== undefined ? 2 : 3] };
        }
      }
    }
    return null;
  }, [chart, find] as const);
  expect(p, `a point for ${JSON.stringify(find)} on the ${chart} chart`).not.toBeNull();
  return p!;
}

describe.skipIf(CHROMIUM === null)(`run reports in headless Chromium${CHROMIUM === null ? ' (skipped: no chromium; scripts/test-prereqs.sh installs it from Debian)' : ''}`, () => {
  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    dir = selfBuiltKernels();
    const regress = join(dir, 'regress');
    expect(bzemu('boot', join(regress, 'vmlinux'), '--coco', 'snp', '--seed', '1', '--report', files.regress).status).toBe(1);
    expect(bzemu('boot', join(regress, 'bzImage'), '--coco', 'snp', '--seed', '1', '--report', files.regressBare).status).toBe(1);
    expect(bzemu('boot', ensureDebianKernel('debian-6.12'), '--coco', 'snp', '--report', files.debian).status).toBe(0);
    const fuzz = bzemu('fuzz', join(regress, 'vmlinux'), '--coco', 'snp', '--runs', '8', '--workers', '2', '--report', files.fuzz);
    expect(fuzz.status, fuzz.stderr).toBe(1);
    browser = await chromium.launch({ executablePath: CHROMIUM!, headless: true });
  }, 1_800_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('regress kernel: the termination on the timeline opens the trace that led to it, snp_vmpl in the findings, .bss on the map', async () => {
    const { page, errors, readyAt } = await open(files.regress);
    expect(readyAt).toBeLessThan(2000);

    // Timeline: the termination is a point on its own lane; hovering names it, clicking opens its trace window.
    await page.locator('#timeline table.events button').first().click();
    expect(await page.locator('#trace-window h3').textContent()).toBe('startup_64');
    const term = await pointOnChart(page, 'timeline', { lane: 'termination' });
    await page.mouse.move(term.x, term.y);
    await expect.poll(() => page.locator('#timeline-chart').innerText()).toContain('termination request: SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0');
    await page.mouse.click(term.x, term.y);
    await expect.poll(() => page.locator('#trace-window').getAttribute('data-event')).toBe(String(term.index));
    expect(await page.locator('#trace-window h3').textContent()).toBe('termination request: SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0');
    const at = await page.locator('#trace-window tr.at').innerText();
    expect(at).toMatch(/sev_es_terminate/);
    expect(at).toContain('vmgexit');
    expect(await page.locator('#trace-window tbody tr').count()).toBe(33);

    // Findings: the uninitialized read of snp_vmpl, who read it and what it held.
    const uninit = await page.locator('#findings table.uninit tbody tr').first().innerText();
    expect(uninit).toContain('snp_vmpl');
    expect(uninit).toMatch(/sev_enable\+0x[0-9a-f]+/);
    expect(uninit).toContain('.bss+0x');
    expect(await page.locator('#findings').innerText()).toContain('GHCB_TERM_NOT_VMPL0');

    // Memory map: zoomed to the loaded image, .bss is drawn and labelled; hovering tells what it is.
    await page.click('button[data-zoom="loaded image"]');
    await expect.poll(() => page.locator('#map-chart svg text').allTextContents()).toContain('.bss');
    const bss = await pointOnChart(page, 'map', { region: '.bss', regionLane: 'loaded image' });
    await page.mouse.move(bss.x, bss.y);
    await expect.poll(() => page.locator('#map-chart').innerText()).toContain('never cleared');

    await page.screenshot({ path: join(OUT, 'regress-snp.png'), fullPage: true });
    expect(statSync(join(OUT, 'regress-snp.png')).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('bare regress bzImage: the finding is named by its .bss offset', async () => {
    const { page, errors } = await open(files.regressBare);
    const offset = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    expect(await page.locator('#findings table.uninit').innerText()).toContain(`.bss+0x${offset.toString(16)}`);
    expect(await page.locator('#timeline-chart svg text').allTextContents()).toContain('termination');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('Debian 6.12 to extract_kernel: opens in under 2 s, under 5 MB, with the relocated copy and its cleared .bss', async () => {
    expect(statSync(files.debian).size).toBeLessThan(5 << 20);
    const { page, errors, readyAt } = await open(files.debian);
    expect(readyAt).toBeLessThan(2000);
    await page.click('button[data-zoom="relocated copy"]');
    const bss = await pointOnChart(page, 'map', { region: '.bss', regionLane: 'relocated copy' });
    await page.mouse.move(bss.x, bss.y);
    await expect.poll(() => page.locator('#map-chart').innerText()).toMatch(/Cleared at instruction \d+/);
    expect(await page.locator('#timeline-chart svg text').allTextContents()).toEqual(expect.arrayContaining(['milestone', 'verdict: reached']));
    await page.screenshot({ path: join(OUT, 'debian-6.12-snp.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('fuzz campaign: the histogram, the culprit, and a link to the failing group\'s run report', async () => {
    const { page, errors } = await open(files.fuzz);
    const labels = await page.locator('#histogram-chart svg text').allTextContents();
    expect(labels.some((t) => t.includes('GHCB_TERM_NOT_VMPL0'))).toBe(true);
    expect(labels.some((t) => t.includes('reached extract_kernel'))).toBe(true);
    expect(await page.locator('#groups').innerText()).toContain('snp_vmpl');
    await page.screenshot({ path: join(OUT, 'fuzz-regress-snp.png'), fullPage: true });
    await page.locator('#groups a').first().click();
    await page.waitForFunction(() => (window as unknown as { bzemuReport?: { ready: boolean } }).bzemuReport?.ready === true);
    expect(page.url()).toMatch(/fuzz-regress-snp-group\d+-run\d+\.html$/);
    expect(await page.locator('#verdict').innerText()).toContain('guest-terminated');
    expect(await page.locator('#findings table.uninit').innerText()).toContain('snp_vmpl');
    expect(errors).toEqual([]);
    await page.close();
  });
});
