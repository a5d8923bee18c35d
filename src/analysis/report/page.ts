import type * as EC from 'echarts';
import type { CampaignView, MemoryRegion, RunReport, TimelineEvent } from './model.js';

/** What the page leaves on `window` once drawn: tests (and curious people) find the charts there. */
export interface ReportPageHandle {
  ready: boolean;
  charts: Record<string, EC.ECharts>;
  /** Show the trace window of event `index` of a run report. */
  showEvent: (index: number) => void;
  /** Milliseconds from navigation start until drawn (set by the page's loader after reportPage returns). */
  readyAt?: number;
}

/**
 * The report page's own code. It runs in the browser, not in Node: html.ts
 * inlines its source (Function.prototype.toString) after ECharts, so it must
 * not use anything from this module's scope; everything it needs is nested
 * here or passed in.
 */
export function reportPage(ec: typeof EC, data: RunReport | CampaignView, root: HTMLElement, handle: ReportPageHandle): void {
  type Child = Node | string | null | undefined | false;
  const el = (tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
    return e;
  };
  const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
  const hex = (n: number): string => '0x' + n.toString(16);
  const bytes = (n: number): string => (n >= 2 ** 30 ? (n / 2 ** 30).toFixed(2) + ' GiB' : n >= 2 ** 20 ? (n / 2 ** 20).toFixed(2) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B');
  const table = (head: string[], rows: Child[][], cls = ''): HTMLElement =>
    el('table', cls ? { class: cls } : {}, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', {}, h)))), el('tbody', {}, ...rows.map((r) => el('tr', {}, ...r.map((c) => el('td', {}, c))))));
  const section = (id: string, title: string, ...children: Child[]): HTMLElement => el('section', { id }, el('h2', {}, title), ...children);
  const chartBox = (id: string, height: number): HTMLElement => el('div', { id, class: 'chart', style: `height:${height}px` });
  const makeChart = (box: HTMLElement): EC.ECharts => ec.init(box, null, { renderer: 'svg' });
  const resizers: EC.ECharts[] = [];
  window.addEventListener('resize', () => resizers.forEach((c) => c.resize()));

  const COLORS: Record<string, string> = {
    ram: '#d9e7d3', reserved: '#b9b9b9', firmware: '#7fa7d9', 'snp-page': '#b07fd9', code: '#5b8ff9', payload: '#9fb6cf', data: '#8fd1c8',
    bss: '#f6a935', planned: '#e8e8e8', buffer: '#eeeecc', output: '#61c067', ghcb: '#e8684a', 'rmp-private': '#6dc8ec', 'rmp-shared': '#ff9d4d',
    'rmp-unvalidated': '#ff5f5f', 'rmp-vmsa': '#9270ca', finding: '#d62728', warning: '#ffbf00',
  };
  const GROUP_COLORS: Record<string, string> = {
    end: '#d62728', milestone: '#2f7ed8', finding: '#ff7f0e', 'page-state': '#9467bd', rmp: '#8c564b', npf: '#e377c2', svsm: '#17becf', vc: '#7f7f7f', 'vmgexit-msr': '#2ca02c', 'vmgexit-ghcb': '#bcbd22',
  };

  if (data.kind === 'campaign') {
    renderCampaign(data);
    handle.ready = true;
    return;
  }
  const run = data;

  // ---- summary ----
  const verdictClass = run.verdict === 'reached' ? 'ok' : 'bad';
  root.append(el('header', {},
    el('h1', {}, 'bzemu run report'),
    el('p', { class: 'verdict ' + verdictClass, id: 'verdict' }, el('strong', {}, run.verdict), ': ' + run.reason),
    table([], [
      ['kernel', run.kernel.path + ' (' + run.kernel.kind + ')' + (run.kernel.version ? ', ' + run.kernel.version : '')],
      ['command', run.command ? el('code', {}, run.command) : null],
      ['guest', run.coco ? run.coco.mode + (run.coco.mode === 'snp' ? ' at VMPL' + run.coco.vmpl + (run.coco.svsm ? ' under an SVSM' : '') : '') + ', SEV_STATUS ' + run.coco.sevStatus : 'plain VM'],
      ['termination', run.termination ? 'set ' + run.termination.set + ' code ' + run.termination.code + ': ' + run.termination.name + (run.termination.detail ? ' (detail ' + run.termination.detail + ')' : '') : null],
      ['instructions', run.instructions.toLocaleString('en') + ' of a budget of ' + run.budget.toLocaleString('en') + ', trace hash ' + run.traceHash],
      ['decompressed kernel', run.output ? bytes(run.output.length) + ' at ' + run.output.address + (run.output.virtualOffset ? ', KASLR virtual offset ' + run.output.virtualOffset : '') : null],
    ].filter((r) => r[1] !== null), 'facts'),
  ));

  // ---- memory map ----
  const lanes: string[] = run.mapLanes;
  const mapBox = chartBox('map-chart', 70 + lanes.length * 44);
  const zoomBar = el('div', { class: 'buttons', id: 'map-zoom' });
  const regionRows = run.regions.map((r) => [r.lane, r.name, hex(r.start), hex(r.start + r.size), bytes(r.size), r.detail] as Child[]);
  root.append(section('memory-map', 'Guest-physical memory map',
    el('p', { class: 'hint' }, 'Drawn to scale over ' + bytes(run.memSize) + ' of RAM: scroll or drag the slider to zoom, hover a region for what it is.'),
    zoomBar, mapBox,
    el('details', {}, el('summary', {}, 'All ' + run.regions.length + ' regions'), table(['lane', 'region', 'start', 'end', 'size', 'what'], regionRows, 'regions'))));
  const map = makeChart(mapBox);
  resizers.push(map);
  handle.charts.map = map;
  const regionData = run.regions.map((r, i) => ({ value: [r.start, r.start + r.size, lanes.indexOf(r.lane), i], itemStyle: { color: COLORS[r.kind] ?? '#999' } }));
  const renderRegion: EC.CustomSeriesOption['renderItem'] = (params, api) => {
    const lane = api.value(2) as number;
    const from = api.coord([api.value(0), lane]);
    const to = api.coord([api.value(1), lane]);
    const height = (api.size!([0, 1]) as number[])[1] * 0.62;
    const region = run.regions[api.value(3) as number];
    // To scale, but never thinner than 2 px: a 4 KiB page in 1 GiB of RAM would vanish.
    const width = Math.max(2, to[0] - from[0]);
    const coord = params.coordSys as unknown as { x: number; y: number; width: number; height: number };
    const x0 = Math.max(from[0], coord.x), x1 = Math.min(from[0] + width, coord.x + coord.width);
    if (x1 <= x0) return null;
    const label = region.name;
    const fits = x1 - x0 > label.length * 6.5 + 6;
    return {
      type: 'rect',
      shape: { x: x0, y: from[1] - height / 2, width: x1 - x0, height },
      style: { fill: COLORS[region.kind] ?? '#999', stroke: '#555', lineWidth: 0.5 },
      textContent: fits ? { style: { text: label, fill: '#111', font: '11px sans-serif' } } : undefined,
      textConfig: fits ? { position: 'inside' } : undefined,
    } as unknown as EC.CustomSeriesRenderItemReturn;
  };
  map.setOption({
    animation: false,
    grid: { left: 110, right: 30, top: 20, bottom: 60 },
    tooltip: {
      trigger: 'item',
      formatter: (p: unknown) => {
        const r: MemoryRegion = run.regions[((p as { value: number[] }).value)[3]];
        return '<b>' + esc(r.name) + '</b> <i>(' + esc(r.lane) + ')</i><br>' + hex(r.start) + ' – ' + hex(r.start + r.size) + ' (' + bytes(r.size) + ')<br><span class="tip">' + esc(r.detail) + '</span>';
      },
    },
    xAxis: { type: 'value', min: 0, max: run.memSize, axisLabel: { formatter: (v: number) => hex(Math.round(v)), hideOverlap: true }, splitLine: { show: false } },
    yAxis: { type: 'category', data: lanes, inverse: true },
    dataZoom: [
      { type: 'inside', xAxisIndex: 0, filterMode: 'weakFilter', minValueSpan: 64 },
      { type: 'slider', xAxisIndex: 0, filterMode: 'weakFilter', labelFormatter: (v: number) => hex(Math.round(v)) },
    ],
    series: [{ type: 'custom', name: 'regions', renderItem: renderRegion, encode: { x: [0, 1], y: 2 }, data: regionData }],
  } as EC.EChartsOption);
  // Ticks at multiples of a power of two, so that the addresses under them read well in hex at every zoom.
  const hexTicks = (): void => {
    const z = (map.getOption() as { dataZoom?: Array<{ startValue?: number; endValue?: number }> }).dataZoom?.[0];
    const from = z?.startValue ?? 0, to = z?.endValue ?? run.memSize;
    const step = Math.pow(2, Math.ceil(Math.log2(Math.max(16, to - from) / 8)));
    const ticks: number[] = [];
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) ticks.push(t);
    map.setOption({ xAxis: { axisTick: { customValues: ticks }, axisLabel: { customValues: ticks } } });
  };
  map.on('datazoom', hexTicks);
  hexTicks();
  const zoomTo = (start: number, end: number): void => {
    const pad = Math.max(0x1000, (end - start) * 0.04);
    map.dispatchAction({ type: 'dataZoom', startValue: Math.max(0, start - pad), endValue: Math.min(run.memSize, end + pad) });
  };
  const laneSpan = (lane: string): [number, number] | null => {
    const rs = run.regions.filter((r) => r.lane === lane && r.kind !== 'buffer');
    return rs.length ? [Math.min(...rs.map((r) => r.start)), Math.max(...rs.map((r) => r.start + r.size))] : null;
  };
  const lowFirmware = run.regions.filter((r) => r.lane === 'firmware' && r.start < 0x100000);
  const presets: Array<[string, [number, number] | null]> = [
    ['all RAM', [0, run.memSize]],
    ['firmware (low memory)', lowFirmware.length ? [0, Math.max(...lowFirmware.map((r) => r.start + r.size))] : null],
    ['loaded image', laneSpan('loaded image')],
    ['relocated copy', laneSpan('relocated copy')],
    ['decompression', laneSpan('decompression') ?? run.regions.filter((r) => r.lane === 'decompression').map((r) => [r.start, r.start + r.size] as [number, number])[0] ?? null],
    ['GHCB', laneSpan('GHCB')],
  ];
  for (const [name, span] of presets) {
    if (span === null) continue;
    const b = el('button', { type: 'button', 'data-zoom': name }, name);
    b.addEventListener('click', () => (name === 'all RAM' ? map.dispatchAction({ type: 'dataZoom', start: 0, end: 100 }) : zoomTo(span[0], span[1])));
    zoomBar.append(b);
  }
  const legend = el('p', { class: 'legend' });
  for (const kind of [...new Set(run.regions.map((r) => r.kind))]) legend.append(el('span', { class: 'swatch', style: 'background:' + (COLORS[kind] ?? '#999') }), kind + ' ');
  mapBox.after(legend);

  // ---- timeline ----
  const events = run.events;
  const tlLanes = run.timelineLanes;
  const tlBox = chartBox('timeline-chart', 90 + tlLanes.length * 26);
  const scaleButton = el('button', { type: 'button', id: 'timeline-scale' }, 'linear scale');
  const tracePanel = el('div', { id: 'trace-window', class: 'trace' });
  const eventRows = events.map((e, i) => {
    const b = el('button', { type: 'button' }, 'trace');
    b.addEventListener('click', () => handle.showEvent(i));
    return [e.instruction.toLocaleString('en'), e.lane, e.label, e.rip + (e.symbol ? ' ' + e.symbol : ''), e.detail, b] as Child[];
  });
  root.append(section('timeline', 'Timeline',
    el('p', { class: 'hint' }, events.length + ' events against the instruction count' + (run.eventsCapped ? ' (the hypervisor kept only its first host events)' : '') + '. Click an event for the instructions that led to it.'),
    el('div', { class: 'buttons' }, scaleButton),
    tlBox, tracePanel,
    el('details', events.length <= 200 ? { open: '' } : {}, el('summary', {}, 'All ' + events.length + ' events'), table(['instruction', 'lane', 'event', 'rip', 'detail', ''], eventRows, 'events'))));
  const timeline = makeChart(tlBox);
  resizers.push(timeline);
  handle.charts.timeline = timeline;
  let log = true;
  // Series per group, in the order their lanes come (the legend reads top to bottom like the chart).
  const groups: string[] = [];
  for (const lane of tlLanes) {
    const g = events.find((e) => e.lane === lane)!.group;
    if (!groups.includes(g)) groups.push(g);
  }
  const timelineSeries = (): EC.SeriesOption[] => groups.map((g) => ({
    type: 'scatter',
    name: g,
    symbol: g === 'milestone' ? 'diamond' : g === 'end' ? 'triangle' : 'circle',
    symbolSize: g === 'end' ? 16 : g === 'milestone' ? 13 : 9,
    itemStyle: { color: GROUP_COLORS[g] ?? '#555' },
    data: events.map((e, i) => [e, i] as [TimelineEvent, number]).filter(([e]) => e.group === g).map(([e, i]) => [log ? e.instruction + 1 : e.instruction, tlLanes.indexOf(e.lane), i]),
  }) as EC.ScatterSeriesOption);
  const drawTimeline = (): void => {
    const max = Math.max(1, ...events.map((e) => e.instruction)) + 1;
    timeline.setOption({
      animation: false,
      grid: { left: 10, right: 40, top: 40, bottom: 60, containLabel: true },
      legend: { top: 0, data: groups },
      tooltip: {
        trigger: 'item',
        formatter: (p: unknown) => {
          const e = events[(p as { value: number[] }).value[2]];
          return '<b>' + esc(e.label) + '</b><br>instruction ' + e.instruction.toLocaleString('en') + ' at ' + esc(e.rip) + (e.symbol ? ' (' + esc(e.symbol) + ')' : '') + '<br><span class="tip">' + esc(e.detail) + '</span><br><i>click: the trace before it</i>';
        },
      },
      xAxis: log
        ? { type: 'log', min: 1, max: Math.pow(10, Math.ceil(Math.log10(max))), name: 'instruction count + 1 (log)', nameLocation: 'middle', nameGap: 28 }
        : { type: 'value', min: 0, max, name: 'instruction count', nameLocation: 'middle', nameGap: 28 },
      yAxis: { type: 'category', data: tlLanes, inverse: true, axisLabel: { fontSize: 11 } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0, filterMode: 'none' }, { type: 'slider', xAxisIndex: 0, filterMode: 'none', height: 18, bottom: 4 }],
      series: timelineSeries(),
    } as EC.EChartsOption, { notMerge: true });
  };
  drawTimeline();
  scaleButton.addEventListener('click', () => {
    log = !log;
    scaleButton.textContent = log ? 'linear scale' : 'log scale';
    drawTimeline();
  });
  timeline.on('click', (p) => {
    const v = (p as { value?: unknown }).value;
    if (Array.isArray(v)) handle.showEvent(v[2] as number);
  });
  handle.showEvent = (index: number): void => {
    const e = events[index];
    const w = e.window >= 0 ? run.trace.windows[e.window] : [];
    const rows = w.map((id, k) => {
      const ins = run.trace.instructions[id];
      const last = k === w.length - 1;
      const tr = el('tr', last ? { class: 'at' } : {}, el('td', {}, last ? '▶' : String(k - w.length + 1)), el('td', {}, ins.rip), el('td', {}, ins.symbol), el('td', {}, el('code', {}, ins.disassembly)));
      return tr;
    });
    tracePanel.replaceChildren(
      el('h3', {}, e.label),
      el('p', {}, 'instruction ' + e.instruction.toLocaleString('en') + ' at ' + e.rip + (e.symbol ? ' (' + e.symbol + ')' : '') + ': ' + e.detail),
      w.length ? el('div', { class: 'trace-scroll' }, el('table', { class: 'trace-table' }, el('thead', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'rip'), el('th', {}, 'symbol'), el('th', {}, 'instruction'))), el('tbody', {}, ...rows))) : el('p', {}, '(no trace for this event)'),
    );
    tracePanel.setAttribute('data-event', String(index));
    // The event is the last row: start there, the instructions before it above.
    const scroller = tracePanel.querySelector('.trace-scroll');
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  };
  // Open on what ended the run: a person reads a failure from there.
  const firstEnd = events.findIndex((e) => e.lane === 'termination');
  handle.showEvent(firstEnd >= 0 ? firstEnd : events.length - 1);

  // ---- findings ----
  const reads = run.uninitializedReads.map((u) => [el('strong', {}, u.symbol || u.address), u.section ?? '', u.address, String(u.size), el('code', {}, u.value), u.reader || u.rip, u.instruction.toLocaleString('en'), String(u.count)] as Child[]);
  const rmp = run.rmpFindings.map((f) => [f.severity, f.code, hex(f.gpa), f.detail] as Child[]);
  root.append(section('findings', 'Findings',
    el('h3', {}, 'Verdict'),
    el('p', { class: 'verdict ' + verdictClass }, el('strong', {}, run.verdict), ': ' + run.reason),
    run.gap ? el('p', {}, 'emulator gap at ' + run.gap.rip + ' (' + run.gap.symbol + '): ', el('code', {}, run.gap.bytes + '  ' + run.gap.disassembly)) : null,
    el('h3', {}, 'Uninitialized reads (' + reads.length + ')'),
    reads.length ? table(['symbol', '.bss offset', 'address', 'bytes', 'value', 'read by', 'instruction', 'times'], reads, 'uninit') : el('p', {}, 'None: nothing read memory the firmware left as poison before writing it.'),
    el('h3', {}, 'RMP misuse (' + rmp.length + ')'),
    rmp.length ? table(['severity', 'finding', 'GPA', 'detail'], rmp, 'rmp') : el('p', {}, run.coco?.mode === 'snp' ? 'None.' : 'Not an SNP guest.'),
    el('h3', {}, 'Console'),
    el('pre', { id: 'console' }, run.console || '(nothing printed)'),
  ));
  handle.ready = true;

  function renderCampaign(c: CampaignView): void {
    root.append(el('header', {},
      el('h1', {}, 'bzemu fuzz campaign'),
      el('p', { class: 'verdict ' + (c.summary.failingGroups ? 'bad' : 'ok') }, el('strong', {}, c.summary.runs + ' runs'), ': ' + c.summary.reached + ' reached, ' + c.summary.failed + ' failed, ' + c.summary.failingGroups + ' failing group' + (c.summary.failingGroups === 1 ? '' : 's')),
      table([], [['kernel', c.kernel.path + (c.kernel.version ? ' (' + c.kernel.version.split(' ')[0] + ')' : '')], ['boot options', el('code', {}, c.bootOptions.join(' ') || '(none)')], ['seed', String(c.seed)], ['baseline', c.baseline ?? 'none (no fixed pattern reaches the target)']], 'facts')));
    const box = chartBox('histogram-chart', 120 + c.groups.length * 36);
    root.append(section('outcomes', 'Outcomes', box));
    const chart = makeChart(box);
    resizers.push(chart);
    handle.charts.histogram = chart;
    const names = c.groups.map((g, i) => '#' + (i + 1) + ' ' + (g.outcome.length > 60 ? g.outcome.slice(0, 57) + '...' : g.outcome));
    chart.setOption({
      animation: false,
      grid: { left: 10, right: 50, top: 10, bottom: 30, containLabel: true },
      tooltip: { trigger: 'item', formatter: (p: unknown) => { const g = c.groups[(p as { dataIndex: number }).dataIndex]; return '<b>' + esc(g.outcome) + '</b><br>' + g.runs + ' runs<br><span class="tip">' + esc(g.explanation) + '</span>'; } },
      xAxis: { type: 'value', name: 'runs' },
      yAxis: { type: 'category', data: names, inverse: true },
      series: [{ type: 'bar', data: c.groups.map((g) => ({ value: g.runs, itemStyle: { color: g.cause === 'target-reached' ? '#61c067' : '#d62728' } })), label: { show: true, position: 'right' } }],
    } as EC.EChartsOption);
    chart.on('click', (p) => {
      const g = c.groups[(p as { dataIndex: number }).dataIndex];
      if (g?.report) window.location.href = g.report;
    });
    const rows = c.groups.map((g, i) => {
      const culprits = el('ul', {}, ...g.culprits.map((u) => el('li', {}, el('strong', {}, u.name), ' (' + u.size + ' byte' + (u.size > 1 ? 's' : '') + (u.section && u.section !== u.name ? ', ' + u.section : '') + ', ' + u.address + '), read first by ' + (u.reader ?? '?') + '; failing run had ' + u.failingRunValue + (u.failingValues ? '; fails with ' + u.failingValues : '') + (u.otherValues.length ? '; ' + u.otherValues.join('; ') : ''))));
      return ['#' + (i + 1), g.outcome, String(g.runs), g.cause === 'target-reached' ? 'reached' : g.explanation, g.culprits.length ? culprits : '', el('code', {}, g.reproduce), g.report ? el('a', { href: g.report }, 'run ' + g.firstRun + ' report') : ''] as Child[];
    });
    root.append(section('groups', 'Groups and minimized culprits', table(['', 'outcome', 'runs', 'cause', 'culprits', 'reproduce', 'report'], rows, 'groups')));
  }
}
