/*
 * Child process for hostile-guest tests (see child.ts): boots one guest
 * kernel and prints one JSON line, a GuestOutcome. Run in its own process so
 * that a guest that hangs the emulator, or makes it allocate without bound,
 * fails its test (timeout, heap limit) instead of taking the test runner down.
 * An exception escaping the boot is left uncaught: a stack on stderr and exit
 * code 1 are exactly what the parent reports as a host error.
 */
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { machineConfigFor, runMachine, type BootOptions } from '../../src/machine/boot.js';
import { Machine } from '../../src/machine/machine.js';
import type { GuestOutcome, GuestRequest, MemoryGrowth } from './child.js';

function usage(): MemoryGrowth {
  globalThis.gc?.(); // only live data counts (the child runs with --expose-gc)
  const m = process.memoryUsage();
  return { rss: m.rss, arrayBuffers: m.arrayBuffers, heapUsed: m.heapUsed };
}

const request = JSON.parse(process.argv[2] ?? '') as GuestRequest;
const options: Omit<BootOptions, 'kernelPath'> = {
  memSize: request.memSize,
  poison: { kind: 'random', seed: 1 },
  seed: 1,
  cmdline: 'console=ttyS0',
  loadAddress: 0x2000000,
  gdt: 'boot-protocol',
  until: 'extract_kernel',
  budget: request.budget,
  traceLength: 0,
};
const machine = new Machine(loadKernel(request.kernelPath), machineConfigFor(options));
// Measured once the machine is at its entry: what the firmware and the kernel
// image cost is the same for every guest; the growth is what the guest caused.
const before = usage();
let after = before;
const result = runMachine(machine, { ...options, inspect: () => (after = usage()) });
const outcome: GuestOutcome = {
  verdict: result.verdict,
  reason: result.reason,
  instructions: result.instructions,
  growth: { rss: after.rss - before.rss, arrayBuffers: after.arrayBuffers - before.arrayBuffers, heapUsed: after.heapUsed - before.heapUsed },
};
process.stdout.write(JSON.stringify(outcome) + '\n');
