import { basename } from 'node:path';
import { SevHost } from '../../hypervisor/sev-host.js';
import type { BootResult, RunOptions } from '../../machine/boot.js';
import type { Machine } from '../../machine/machine.js';
import { memoryRegions } from './memory-map.js';
import { MAP_LANES, type RunReport, type TimelineEvent } from './model.js';
import { laneOrder, placeHostEvent } from './timeline.js';
import { TraceWindows } from './trace-windows.js';

/** Instructions before an event that its window shows. */
export const EVENT_WINDOW = 32;
/** The end of the run gets a longer window: it is where a failure is read. */
export const END_WINDOW = 256;

const hex = (lo: number, hi = 0): string => '0x' + (hi ? hi.toString(16) + (lo >>> 0).toString(16).padStart(8, '0') : (lo >>> 0).toString(16));

/**
 * Collects what a run report needs while the run happens: a trace window at
 * every host event, milestone and uninitialized read (taken at the event, not
 * per instruction), and at the end everything else from the machine as the
 * run left it.
 */
export class RunRecorder {
  private readonly windows: TraceWindows;
  private readonly hostWindows: number[] = [];
  private readonly milestoneWindows = new Map<string, number>();
  private readonly readWindows: number[] = [];

  constructor(private readonly machine: Machine) {
    this.windows = new TraceWindows(machine.cpu, machine.addresses);
    if (machine.sev) machine.sev.onEvent = () => this.hostWindows.push(this.windows.capture(EVENT_WINDOW));
  }

  /** The hooks to pass to runMachine. */
  runOptions(): Required<Pick<RunOptions, 'onMilestone' | 'onUninitializedRead'>> {
    const cpu = this.machine.cpu;
    return {
      // At a milestone the CPU stopped before the instruction: RIP, not the last one started, is where it is.
      onMilestone: (m) => this.milestoneWindows.set(m.name, this.windows.capture(EVENT_WINDOW, [cpu.ripLo, cpu.ripHi])),
      onUninitializedRead: () => this.readWindows.push(this.windows.capture(EVENT_WINDOW)),
    };
  }

  /** The report of the finished run; `command` is how to run it again. */
  finish(result: BootResult, command: string | null): RunReport {
    const { machine } = this;
    const cpu = machine.cpu;
    // Where the run stopped: a reached milestone stops before its instruction; a fault or gap at the instruction
    // that did not complete; a halt, termination or spent budget after the last instruction retired.
    const at: [number, number] | null =
      result.verdict === 'reached' ? [cpu.ripLo, cpu.ripHi]
        : result.verdict === 'emulator-gap' || result.verdict === 'host-stopped' || result.verdict === 'triple-fault' ? [cpu.curRipLo, cpu.curRipHi]
          : null;
    const endWindow = this.windows.capture(END_WINDOW, at);

    const events: TimelineEvent[] = [];
    for (const m of result.milestones) {
      events.push({ instruction: m.instruction, group: 'milestone', lane: 'milestone', label: m.name, detail: `milestone ${m.name} at ${m.rip}${m.symbol ? ` (${m.symbol})` : ''}`, rip: m.rip, symbol: m.symbol, window: this.milestoneWindows.get(m.name) ?? -1 });
    }
    const hostEvents = machine.sev?.events ?? [];
    const terminationName = result.termination?.name ?? null;
    hostEvents.forEach((e, i) => {
      const place = placeHostEvent(e, terminationName);
      const detail = `${e.detail} -> ${e.result}`;
      events.push({ instruction: e.instruction, ...place, detail: place.group === 'end' ? `${detail}. ${result.reason}` : detail, rip: hex(e.rip, e.ripHi), symbol: machine.addresses.describe(e.rip, e.ripHi), window: this.hostWindows[i] ?? -1 });
    });
    result.uninitializedReads.forEach((u, i) => {
      events.push({
        instruction: u.instruction,
        group: 'finding',
        lane: 'uninitialized read',
        label: `uninitialized read: ${u.symbol || u.address}`,
        detail: `${u.symbol || u.address} (${u.size} byte${u.size > 1 ? 's' : ''} at ${[u.section !== u.symbol ? u.section : null, u.address].filter((x) => x).join(', ')}) read by ${u.reader || u.rip} before anything wrote it; it held ${u.value}`,
        rip: u.rip,
        symbol: u.reader,
        window: this.readWindows[i] ?? -1,
      });
    });
    const endRip = at ?? [cpu.curRipLo, cpu.curRipHi];
    events.push({
      instruction: result.instructions,
      group: 'end',
      lane: `verdict: ${result.verdict}`,
      label: `verdict: ${result.verdict}`,
      detail: result.reason,
      rip: hex(endRip[0], endRip[1]),
      symbol: machine.addresses.describe(endRip[0], endRip[1]),
      window: endWindow,
    });
    events.sort((a, b) => a.instruction - b.instruction);
    const regions = memoryRegions(machine, result);

    return {
      kind: 'run',
      title: `${basename(result.kernel.path)}: ${result.verdict}`,
      generatedBy: 'bzemu boot --report',
      kernel: { path: result.kernel.path, kind: result.kernel.kind, version: result.kernel.version },
      command,
      verdict: result.verdict,
      reason: result.reason,
      termination: result.termination,
      coco: result.coco,
      instructions: result.instructions,
      budget: result.budget,
      traceHash: result.traceHash,
      output: result.output && { address: result.output.address, length: result.output.length, virtualOffset: result.output.virtualOffset },
      gap: result.gap,
      memSize: machine.config.memSize,
      regions,
      mapLanes: MAP_LANES.filter((l) => regions.some((r) => r.lane === l)),
      milestones: result.milestones.map((m) => ({ ...m })),
      events,
      timelineLanes: laneOrder(events),
      eventsCapped: hostEvents.length >= SevHost.MAX_EVENTS,
      trace: this.windows.result,
      uninitializedReads: result.uninitializedReads.map((u) => ({ symbol: u.symbol, section: u.section, address: u.address, size: u.size, value: u.value, reader: u.reader, rip: u.rip, instruction: u.instruction, count: u.count })),
      rmpFindings: (machine.sev?.rmp.findings ?? []).map((f) => ({ severity: f.severity, code: f.code, gpa: f.gpa, detail: f.detail })),
      console: result.console,
    };
  }
}
