import { writeFileSync } from 'node:fs';
import { loadKernel } from '../kernel/kernel-image.js';
import { machineConfigFor } from '../machine/boot.js';
import { Machine } from '../machine/machine.js';
import { encodeVmsa } from '../hypervisor/vmsa.js';
import { parseBootArgs, UsageError } from './options.js';

/** `bzemu vmsa KERNEL [boot options] -o FILE`: the VMSA of the entry state bzemu's firmware builds. */
export function writeVmsa(argv: string[], resolveKernel: (name: string) => string): number {
  const rest: string[] = [];
  let out: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '-o' || argv[i] === '--output') out = argv[++i] ?? null;
    else rest.push(argv[i]);
  }
  if (!out) throw new UsageError('vmsa needs -o FILE');
  const { kernel: name, json: _j, trace: _t, report, ...options } = parseBootArgs(rest);
  if (options.vmsa) throw new UsageError('vmsa writes a VMSA: it takes no --vmsa');
  if (report !== null) throw new UsageError('vmsa runs nothing to report on: it takes no --report');
  const kernelPath = resolveKernel(name);
  const kernel = loadKernel(kernelPath, { bzImage: options.bzImage, symbols: options.symbols });
  const machine = new Machine(kernel, machineConfigFor({ ...options, traceLength: 0 }));
  writeFileSync(out, encodeVmsa(machine.cpu, options.vm));
  process.stdout.write(`wrote ${out}: the BSP's VMSA at ${kernel.path}'s entry (RIP 0x${(machine.cpu.ripLo >>> 0).toString(16)}, ${options.vm.mode})\n`);
  return 0;
}
