/**
 * What a run report shows, as plain JSON-able data: the HTML page draws it,
 * tests read it. Addresses are numbers (guest-physical RAM stays below 2^53)
 * so the page can scale them; RIPs are hex strings (they can be 64-bit).
 */

/** One instruction as a trace window shows it. */
export interface TraceInstruction {
  rip: string;
  symbol: string;
  disassembly: string;
}

/**
 * Instructions and windows, shared by every event: a window is a list of
 * indices into `instructions`, oldest first, the last one being where the
 * event happened. Events in a loop share windows, so each is stored once.
 */
export interface TraceTable {
  instructions: TraceInstruction[];
  windows: number[][];
}

/** Lanes of the memory map, top to bottom. */
export const MAP_LANES = ['e820', 'firmware', 'loaded image', 'relocated copy', 'decompression', 'GHCB', 'RMP', 'findings'] as const;
export type MapLane = (typeof MAP_LANES)[number];

/** A range of guest-physical memory on one lane of the map. */
export interface MemoryRegion {
  lane: MapLane;
  name: string;
  start: number;
  /** Bytes (at least 1: a finding marks one address). */
  size: number;
  /** Colour key: what kind of thing it is (the page picks the colour). */
  kind: string;
  /** One or two sentences for the hover. */
  detail: string;
}

export interface MilestoneView {
  name: string;
  rip: string;
  symbol: string;
  instruction: number;
}

/** Lanes of the timeline, in the order the page lists their groups. */
export type TimelineGroup = 'milestone' | 'end' | 'vc' | 'vmgexit-msr' | 'vmgexit-ghcb' | 'page-state' | 'rmp' | 'svsm' | 'npf' | 'finding';

/** One thing that happened at an instruction count, with the trace leading to it. */
export interface TimelineEvent {
  instruction: number;
  group: TimelineGroup;
  /** The y lane: "#VC SVM_EXIT_CPUID (0x72)", "VMGEXIT MSR GHCB_MSR_PSC_REQ", "termination", ... */
  lane: string;
  /** Short label for lists and the hover's first line. */
  label: string;
  detail: string;
  rip: string;
  symbol: string;
  /** Index into the trace table's windows, or -1. */
  window: number;
}

export interface UninitializedReadView {
  symbol: string;
  section: string | null;
  address: string;
  size: number;
  value: string;
  reader: string;
  rip: string;
  instruction: number;
  count: number;
}

export interface RmpFindingView {
  severity: string;
  code: string;
  gpa: number;
  detail: string;
}

/** One boot, everything the page draws. */
export interface RunReport {
  kind: 'run';
  title: string;
  generatedBy: string;
  kernel: { path: string; kind: string; version: string | null };
  /** The options that reproduce it, as `bzemu boot` spells them (when known). */
  command: string | null;
  verdict: string;
  reason: string;
  termination: { set: number; code: number; name: string; detail: string | null } | null;
  coco: { mode: string; vmpl: number; svsm: boolean; sevStatus: string } | null;
  instructions: number;
  budget: number;
  traceHash: string;
  output: { address: string; length: number; virtualOffset: string | null } | null;
  gap: { rip: string; symbol: string; bytes: string; disassembly: string } | null;
  memSize: number;
  regions: MemoryRegion[];
  /** The map's lanes that have regions, top to bottom. */
  mapLanes: MapLane[];
  milestones: MilestoneView[];
  events: TimelineEvent[];
  /** The timeline's lanes, top to bottom. */
  timelineLanes: string[];
  /** The hypervisor kept only its first host events (a guest looping on exits); later ones are not shown. */
  eventsCapped: boolean;
  trace: TraceTable;
  uninitializedReads: UninitializedReadView[];
  rmpFindings: RmpFindingView[];
  console: string;
}

/** A fuzz campaign: its outcome groups, each linked to the report of its representative run. */
export interface CampaignView {
  kind: 'campaign';
  title: string;
  generatedBy: string;
  kernel: { path: string; version: string | null };
  bootOptions: string[];
  seed: number;
  runs: number;
  baseline: string | null;
  summary: { runs: number; reached: number; failed: number; groups: number; failingGroups: number };
  groups: CampaignGroupView[];
}

export interface CampaignGroupView {
  outcome: string;
  cause: string;
  explanation: string;
  runs: number;
  firstRun: number;
  reproduce: string;
  /** Relative link to the representative run's report, or null when none was written. */
  report: string | null;
  culprits: Array<{ name: string; section: string | null; address: string; size: number; reader: string | null; failingRunValue: string; failingValues: string | null; otherValues: string[] }>;
  minimizationBoots: number;
}
