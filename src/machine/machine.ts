import { Cpu } from '../cpu/cpu.js';
import type { DecodeMemo } from '../cpu/decode-memo.js';
import type { CpuHost } from '../cpu/host.js';
import { defaultMsrs } from '../cpu/exec/system.js';
import { SparseMemory, type MemoryImage } from '../memory/sparse-memory.js';
import { loadCpuState, saveCpuState, type CpuState } from '../cpu/cpu-state.js';
import type { RmpSnapshot } from '../hypervisor/rmp.js';
import type { PoisonPolicy } from '../memory/poison.js';
import type { KernelImage } from '../kernel/kernel-image.js';
import { BareMetalHost } from '../platform/bare-host.js';
import { CpuidPolicy } from '../platform/cpuid-policy.js';
import { bootFirmware, LAYOUT, type EntryPoint, type GdtStyle } from '../platform/firmware.js';
import { SevHost } from '../hypervisor/sev-host.js';
import { installSnpBootData } from '../hypervisor/snp-structures.js';
import { cpuidOptionsFor, type VmConfig } from '../hypervisor/vm-config.js';
import { PlatformPorts } from '../platform/port-bus.js';
import { AddressMap } from './address-map.js';
import { applyVmsa, checkVmsa, VmsaError } from '../hypervisor/vmsa.js';
import { BadInputError } from '../kernel/errors.js';

export interface MachineConfig {
  memSize: number;
  poison: PoisonPolicy;
  seed: number;
  loadAddress: number;
  cmdline: string;
  gdt: GdtStyle;
  /** Boot-protocol entry (default startup_64). */
  entry?: EntryPoint;
  traceSize: number;
  /** Confidential-computing configuration (mode none = a plain VM). */
  vm: VmConfig;
  /** The BSP's initial state as a VMSA page (launch from a VMSA); null: the firmware's own. */
  vmsa?: Uint8Array | null;
  /** Instructions decoded by other machines running the same kernel, shared (a fuzz runner's); none: decode everything. */
  decoded?: DecodeMemo;
  /** Whether hot blocks may be compiled to WebAssembly (default true; see Cpu). */
  wasm?: boolean;
}

/**
 * A machine at the kernel's entry, before its first instruction: what the
 * firmware wrote into RAM, the CPU state and the RMP. The hypervisor, the SVSM
 * and the devices have seen nothing yet at that point, so fresh ones are in
 * exactly the snapshot's state. Restoring applies a run's own poison to every
 * byte nobody wrote: one snapshot serves every run of a fuzz campaign without
 * reading, parsing or loading the kernel again.
 */
export interface MachineSnapshot {
  readonly kernel: KernelImage;
  /** The configuration it was taken with (poison and seed are the restorer's). */
  readonly config: Omit<MachineConfig, 'poison' | 'seed'>;
  readonly memory: MemoryImage;
  readonly cpu: CpuState;
  readonly rmp: RmpSnapshot | null;
}

/** Where an SVSM lives when one is modelled: its calling area low, its own memory at the top of RAM. */
export const SVSM_CAA = 0x3000;
export const SVSM_SIZE = 16 << 20;

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
  /** The SEV hypervisor stub, when the VM is confidential. */
  readonly sev: SevHost | null;
  readonly addresses: AddressMap;

  /** A fresh machine in the state the firmware leaves; `from` restores a snapshot's entry state instead of running the firmware. */
  constructor(readonly kernel: KernelImage, readonly config: MachineConfig, from: MachineSnapshot | null = null) {
    this.mem = new SparseMemory(config.memSize, config.poison, from?.memory ?? null);
    if (from === null) this.mem.recordWrites();
    const vm = config.vm;
    this.cpuid = new CpuidPolicy(cpuidOptionsFor(vm));
    const svsm = vm.svsm ? { caa: SVSM_CAA, base: config.memSize - SVSM_SIZE, size: SVSM_SIZE } : undefined;
    this.sev = vm.mode === 'none' ? null : new SevHost({ config: vm, memory: this.mem, policy: this.cpuid, ports: this.ports, svsm });
    this.host = this.sev ?? new BareMetalHost(this.cpuid, this.ports);
    this.cpu = new Cpu(this.mem, this.host, config.traceSize, config.decoded ?? null, config.wasm ?? true);
    // Paging-entry bits above the CPU's physical-address width are reserved (#PF RSVD), as on the CPU the policy describes.
    const leaf = new Uint32Array(4);
    this.cpuid.lookup(0x80000008, 0, leaf);
    this.cpu.mmu.setPhysicalAddressWidth(leaf[0] & 0xff);
    this.sev?.attach(this.cpu);
    // A lying hypervisor (cpuidCbit) aliases guest-physical addresses with the reported bit onto the same memory.
    this.cpu.mmu.setAddressAlias(vm.cpuidCbit);
    this.addresses = new AddressMap(kernel, config.loadAddress);
    if (from !== null) {
      loadCpuState(this.cpu, from.cpu);
      if (from.rmp !== null) this.sev?.rmp.restore(from.rmp);
      this.cpu.rngState = rngSeed(config.seed);
      return;
    }
    this.cpu.rngState = rngSeed(config.seed);
    defaultMsrs(this.cpu);
    bootFirmware(this.cpu, this.mem, kernel, {
      loadAddress: config.loadAddress,
      cmdline: config.cmdline,
      cbit: vm.mode === 'none' ? 0 : vm.cbit,
      gdt: config.gdt,
      entry: config.entry ?? 'startup_64',
      setupDataHead: 0,
      reservedTop: svsm ? SVSM_SIZE : 0,
    });
    if (vm.mode === 'snp' && vm.cpuidPage) {
      // What the PSP and stage0 hand an SNP guest: CPUID page, secrets page, CC blob via setup_data.
      installSnpBootData(this.mem, {
        policy: this.cpuid,
        cpuidPageGpa: LAYOUT.cpuidPage,
        secretsPageGpa: LAYOUT.secretsPage,
        ccBlobGpa: LAYOUT.ccBlob,
        setupDataGpa: LAYOUT.setupData,
        bootParamsGpa: LAYOUT.zeroPage,
        svsm: svsm ? { base: BigInt(svsm.base), size: BigInt(svsm.size), caa: BigInt(svsm.caa), maxVersion: 1, guestVmpl: vm.vmpl } : undefined,
      });
    }
    if (config.vmsa) this.launchFromVmsa(config.vmsa);
    // The entry state is complete: from here on the guest writes, and nobody needs to know which bytes.
    this.mem.stopRecording();
    if (this.sev && vm.mode === 'snp' && vm.prevalidate !== 'all') {
      const rmp = this.sev.rmp;
      rmp.setLaunchValidated(0, config.memSize, false);
      if (vm.prevalidate === 'launch') {
        // Launch memory: every page the loader populated, and the page under the entry stack.
        for (const pfn of this.mem.recordedPages()) rmp.setLaunchValidated(pfn * 4096, 4096, true);
        rmp.setLaunchValidated(LAYOUT.stackTop - 4096, 4096, true);
      }
    }
  }

  /**
   * The KVM launch path that takes the BSP's registers from a VMSA page: checked
   * as KVM checks it, then loaded; under SNP the page is in guest memory,
   * private, validated and flagged as a VMSA in the RMP.
   */
  private launchFromVmsa(vmsa: Uint8Array): void {
    try {
      checkVmsa(vmsa, this.config.vm);
    } catch (e) {
      if (e instanceof VmsaError) throw new BadInputError(`--vmsa: ${e.message}`);
      throw e;
    }
    applyVmsa(this.cpu, vmsa);
    if (this.sev && this.config.vm.mode === 'snp') {
      this.mem.writeBytes(LAYOUT.vmsa, vmsa);
      this.sev.rmp.setLaunchVmsa(LAYOUT.vmsa);
    }
  }

  /** A machine restored to `snapshot`'s entry state, with its own poison and seed. */
  static fromSnapshot(snapshot: MachineSnapshot, poison: PoisonPolicy, seed: number, decoded?: DecodeMemo): Machine {
    return new Machine(snapshot.kernel, { ...snapshot.config, poison, seed, ...(decoded !== undefined ? { decoded } : {}) }, snapshot);
  }

  /** The entry state, taken before the first instruction (the firmware's writes were recorded). */
  snapshot(): MachineSnapshot {
    if (this.cpu.icount !== 0) throw new Error('a snapshot is taken at the entry, before the first instruction');
    const { poison: _poison, seed: _seed, decoded: _decoded, ...config } = this.config;
    return {
      kernel: this.kernel,
      config,
      memory: this.mem.writtenImage(),
      cpu: saveCpuState(this.cpu),
      rmp: this.sev?.rmp.snapshot() ?? null,
    };
  }
}

/** RDRAND's generator state for a run's seed. */
function rngSeed(seed: number): number {
  return (Math.imul(seed ^ 0x5bd1e995, 0x27d4eb2d) | 1) >>> 0;
}
