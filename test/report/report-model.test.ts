import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { renderReportHtml } from '../../src/analysis/report/html.js';
import type { RunReport, TimelineEvent } from '../../src/analysis/report/model.js';
import { bootWithReport } from '../../src/analysis/report/run-report.js';
import { boot, type BootOptions, type BootResult } from '../../src/machine/boot.js';
import { makeVmConfig } from '../../src/hypervisor/vm-config.js';
import { selfBuiltKernels, symbolOffset } from '../regression/selfbuilt.js';

/*
 * The report's data from real runs of the self-built regress kernel (SNP,
 * random poison seed 1: snp_vmpl holds garbage and the guest terminates
 * with GHCB_TERM_NOT_VMPL0). Expected addresses come from the kernel's own
 * System.map; the browser test checks how the page shows them.
 */

const LOAD = 0x2000000;

function options(kernelPath: string, extra: Partial<BootOptions> = {}): BootOptions {
  return {
    kernelPath,
    memSize: 1 << 30,
    poison: { kind: 'random', seed: 1 },
    seed: 1,
    cmdline: 'console=ttyS0 earlyprintk=ttyS0,115200',
    loadAddress: LOAD,
    gdt: 'boot-protocol',
    until: 'extract_kernel',
    budget: 'default',
    traceLength: 0,
    vm: makeVmConfig({ mode: 'snp' }),
    ...extra,
  };
}

function windowOf(report: RunReport, e: TimelineEvent): Array<{ rip: string; symbol: string; disassembly: string }> {
  expect(e.window, `${e.label} has a trace window`).toBeGreaterThanOrEqual(0);
  return report.trace.windows[e.window].map((i) => report.trace.instructions[i]);
}

let dir = '';
let elf: { result: BootResult; report: RunReport };
beforeAll(() => {
  dir = selfBuiltKernels();
  elf = bootWithReport(options(join(dir, 'regress', 'vmlinux')), null);
}, 1_800_000);

describe('run report of the regress kernel under SNP', () => {
  it('does not change the run: same verdict and trace hash as a plain boot', () => {
    const plain = boot(options(join(dir, 'regress', 'vmlinux')));
    expect(elf.result.verdict).toBe('guest-terminated');
    expect(elf.result.traceHash).toBe(plain.traceHash);
    expect(elf.result.instructions).toBe(plain.instructions);
  });

  it('maps .bss of the loaded copy where System.map puts it', () => {
    const bss = symbolOffset(dir, 'regress', '_bss'), ebss = symbolOffset(dir, 'regress', '_ebss');
    const r = elf.report.regions.find((x) => x.lane === 'loaded image' && x.name === '.bss');
    expect(r).toMatchObject({ start: LOAD + bss, size: ebss - bss, kind: 'bss' });
    expect(r!.detail).toContain('never cleared');
    // The run ended before .Lrelocated: the relocated copy is only planned, its .bss not cleared.
    const moved = elf.report.regions.find((x) => x.lane === 'relocated copy' && x.name === '.bss');
    expect(moved!.detail).toContain('Not cleared');
    expect(moved!.kind).toBe('planned');
  });

  it("maps the firmware's pages and an RMP layer that covers RAM exactly once", () => {
    const names = elf.report.regions.filter((r) => r.lane === 'firmware').map((r) => r.name);
    expect(names).toEqual(expect.arrayContaining(['zero page', 'command line', 'GDT', 'page tables', 'CPUID page', 'secrets page', 'CC blob']));
    expect(elf.report.regions.find((r) => r.name === 'zero page')!.start).toBe(0x10000);
    const rmp = elf.report.regions.filter((r) => r.lane === 'RMP').sort((a, b) => a.start - b.start);
    let at = 0;
    for (const r of rmp) {
      expect(r.start).toBe(at);
      at += r.size;
    }
    expect(at).toBe(1 << 30);
  });

  it('puts the termination on the timeline with the trace that led to it', () => {
    const events = elf.report.events;
    expect(events.map((e) => e.instruction)).toEqual([...events.map((e) => e.instruction)].sort((a, b) => a - b));
    const term = events.find((e) => e.lane === 'termination')!;
    expect(term.label).toBe('termination request: SEV_TERM_SET_LINUX/GHCB_TERM_NOT_VMPL0');
    const w = windowOf(elf.report, term);
    expect(w.at(-1)!.disassembly).toBe('vmgexit');
    expect(w.at(-1)!.symbol).toMatch(/^sev_es_terminate/);
    expect(w.length).toBe(33);
    // Every host event the hypervisor recorded is there, at its instruction count.
    expect(events.filter((e) => !['milestone', 'uninitialized read', 'verdict: guest-terminated'].includes(e.lane))).toHaveLength(elf.result.events.length);
    const vc = events.find((e) => e.lane.startsWith('#VC'))!;
    expect(vc.lane).toBe('#VC SVM_EXIT_CPUID (0x72)');
    expect(windowOf(elf.report, vc).at(-1)!.disassembly).toBe('cpuid');
  });

  it('names the uninitialized read of snp_vmpl, its reader and value, with the window at the read', () => {
    const u = elf.report.uninitializedReads.find((x) => x.symbol === 'snp_vmpl')!;
    expect(u.reader).toMatch(/^sev_enable\+0x/);
    expect(u.value).toMatch(/^0x[0-9a-f]{2}$/);
    expect(u.value).not.toBe('0x00');
    const e = elf.report.events.find((x) => x.lane === 'uninitialized read')!;
    expect(windowOf(elf.report, e).at(-1)!.symbol).toBe(u.reader);
    expect(elf.report.regions.some((r) => r.lane === 'findings' && r.start === Number(u.address))).toBe(true);
  });

  it('names the read by .bss offset in a bare bzImage, and lays the image out from its own landmarks', () => {
    const bare = bootWithReport(options(join(dir, 'regress', 'bzImage')), null).report;
    const offset = symbolOffset(dir, 'regress', 'snp_vmpl') - symbolOffset(dir, 'regress', '_bss');
    expect(bare.uninitializedReads.map((u) => u.symbol)).toContain(`.bss+0x${offset.toString(16)}`);
    const bss = bare.regions.find((r) => r.lane === 'loaded image' && r.name === '.bss')!;
    expect(bss.start).toBe(LOAD + symbolOffset(dir, 'regress', '_bss'));
  });
});

describe('RMP misuse: the ghcb-private kernel', () => {
  it('shows the private GHCB on the map, the finding in the list and on the timeline', () => {
    const { report } = bootWithReport(options(join(dir, 'ghcb-private', 'vmlinux'), { until: 'kernel-entry', cmdline: 'console=ttyS0' }), null);
    expect(report.verdict).toBe('guest-terminated');
    const finding = report.rmpFindings.find((f) => f.code === 'ghcb-private')!;
    expect(finding.severity).toBe('error');
    const ghcb = report.regions.find((r) => r.lane === 'GHCB')!;
    expect(ghcb).toMatchObject({ name: 'GHCB (boot_ghcb_page)', start: finding.gpa, size: 0x1000 });
    expect(report.regions.some((r) => r.lane === 'findings' && r.start === finding.gpa)).toBe(true);
    const e = report.events.find((x) => x.lane === 'GHCB left private')!;
    expect(e.detail).toContain('is private');
    expect(windowOf(report, e).at(-1)!.disassembly).toBe('vmgexit');
    // By then the decompressor runs from its relocated copy, whose .bss it cleared.
    const bss = report.regions.find((r) => r.lane === 'relocated copy' && r.name === '.bss')!;
    expect(bss.detail).toMatch(/Cleared at instruction \d+/);
  });
});

describe('the HTML file', () => {
  it('is one self-contained file with the chart library and its license notice', () => {
    const html = renderReportHtml(elf.report);
    expect(html).toContain('Licensed to the Apache Software Foundation (ASF)');
    expect(html).toContain('Apache ECharts');
    expect(html).toContain('This product includes software developed at');
    // Nothing fetched at view time.
    expect(html).not.toMatch(/<script[^>]+src=/i);
    expect(html).not.toMatch(/<link[^>]+href=/i);
    expect(html.length).toBeLessThan(5 << 20);
    // The data block cannot be closed early by what the guest printed.
    const data = html.slice(html.indexOf('id="bzemu-data"'));
    expect(data.indexOf('</script>')).toBeGreaterThan(0);
    expect(JSON.parse(data.slice(data.indexOf('>') + 1, data.indexOf('</script>')))).toEqual(JSON.parse(JSON.stringify(elf.report)));
  });

  it('escapes what could end a script element', () => {
    const html = renderReportHtml({ ...elf.report, console: '</script><script>alert(1)</script>' });
    const data = html.slice(html.indexOf('id="bzemu-data"'));
    expect(JSON.parse(data.slice(data.indexOf('>') + 1, data.indexOf('</script>'))).console).toBe('</script><script>alert(1)</script>');
  });
});

describe('bzemu boot --report: bad input', () => {
  it('refuses a report in a missing directory before running, one line, exit 2', () => {
    const out = mkdtempSync(join(tmpdir(), 'bzemu-report-'));
    const r = spawnSync('node', ['dist/bundle/main.js', 'boot', join(dir, 'regress', 'vmlinux'), '--report', join(out, 'nope', 'r.html')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('--report: no such directory');
  });
});
