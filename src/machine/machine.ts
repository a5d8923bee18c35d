import { Cpu } from '../cpu/cpu.js';
import type { CpuHost } from '../cpu/host.js';
import { defaultMsrs } from '../cpu/exec/system.js';
import { SparseMemory } from '../memory/sparse-memory.js';
import type { PoisonPolicy } from '../memory/poison.js';
import type { KernelImage } from '../kernel/kernel-image.js';
import { BareMetalHost } from '../platform/bare-host.js';
import { CpuidPolicy } from '../platform/cpuid-policy.js';
import { bootFirmware, type GdtStyle } from '../platform/firmware.js';
import { PlatformPorts } from '../platform/port-bus.js';
import { AddressMap } from './address-map.js';

export interface MachineConfig {
  memSize: number;
  poison: PoisonPolicy;
  seed: number;
  loadAddress: number;
  cmdline: string;
  gdt: GdtStyle;
  traceSize: number;
}

/**
 * One virtual machine: RAM, CPU, devices and the host in front of the CPU,
 * wired together and put in the state the firmware leaves. No globals: two
 * machines can run side by side.
 */
export class Machine {
  readonly mem: SparseMemory;
  readonly cpu: Cpu;
  readonly ports = new PlatformPorts();
  readonly cpuid: CpuidPolicy;
  readonly host: CpuHost;
  readonly addresses: AddressMap;

  constructor(readonly kernel: KernelImage, readonly config: MachineConfig) {
    this.mem = new SparseMemory(config.memSize, config.poison);
    this.cpuid = new CpuidPolicy();
    this.host = new BareMetalHost(this.cpuid, this.ports);
    this.cpu = new Cpu(this.mem, this.host, config.traceSize);
    this.cpu.rngState = (Math.imul(config.seed ^ 0x5bd1e995, 0x27d4eb2d) | 1) >>> 0;
    defaultMsrs(this.cpu);
    this.addresses = new AddressMap(kernel, config.loadAddress);
    bootFirmware(this.cpu, this.mem, kernel, {
      loadAddress: config.loadAddress,
      cmdline: config.cmdline,
      cbit: 0,
      gdt: config.gdt,
      setupDataHead: 0,
    });
  }
}
