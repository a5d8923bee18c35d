import { loadKernel } from '../../kernel/kernel-image.js';
import type { MilestoneName } from '../../kernel/verdict.js';
import type { PoisonPolicy } from '../../memory/poison.js';
import { machineConfigFor, runMachine, type BootOptions } from '../../machine/boot.js';
import { Machine, type MachineSnapshot } from '../../machine/machine.js';
import { DecodeMemo } from '../../cpu/decode-memo.js';
import type { UninitializedRead } from '../uninitialized-reads.js';
import { outcomeOf, type Outcome } from './outcome.js';

/** Everything that defines a campaign's boots except their poison: plain data, so workers can get it. */
export type TargetConfig = Omit<BootOptions, 'poison' | 'seed' | 'onProgress' | 'inspect' | 'traceLength'> & { until: MilestoneName };

export interface RunRequest {
  poison: PoisonPolicy;
  seed: number;
  /** Also report which never-written bytes the run read (a minimizer's search space). */
  detail: boolean;
}

export interface RunRecord {
  outcome: Outcome;
  instructions: number;
  traceHash: string;
  /** With `detail`: the never-written bytes read, and the reads themselves. */
  unwrittenBytes?: number[];
  reads?: UninitializedRead[];
}

/**
 * Runs one campaign's boots in this thread: the kernel is loaded and the
 * machine built once, at its entry; every run restores that snapshot with its
 * own poison, and the runs share the instructions they decode.
 */
export class FuzzRunner {
  readonly snapshot: MachineSnapshot;
  private readonly decoded = new DecodeMemo();

  constructor(readonly target: TargetConfig) {
    const kernel = loadKernel(target.kernelPath, { bzImage: target.bzImage, symbols: target.symbols });
    // Runs to extract_kernel are short and made by the thousand: a WebAssembly memory per run and compiling its blocks
    // cost more than they save (about a tenth of the runs per second); runs to the kernel's entry and on gain.
    const wasm = target.until === 'kernel-entry' || target.until === 'linux-banner';
    const config = { ...machineConfigFor({ ...target, poison: { kind: 'zero' }, seed: 0, traceLength: 0 }), wasm };
    this.snapshot = new Machine(kernel, config).snapshot();
  }

  run(request: RunRequest): RunRecord {
    const machine = Machine.fromSnapshot(this.snapshot, request.poison, request.seed, this.decoded);
    let bytes: number[] | undefined;
    const result = runMachine(machine, {
      until: this.target.until,
      budget: this.target.budget,
      traceLength: 0,
      onUninitializedBytes: request.detail ? (b) => (bytes = b) : undefined,
    });
    const record: RunRecord = { outcome: outcomeOf(result), instructions: result.instructions, traceHash: result.traceHash };
    if (request.detail) {
      record.unwrittenBytes = bytes ?? [];
      record.reads = result.uninitializedReads;
    }
    return record;
  }
}
