import type { Cpu } from '../cpu/cpu.js';
import type { PhysicalMemory } from '../memory/physical-memory.js';
import { RSI, RSP } from '../cpu/registers.js';
import { BadInputError } from '../kernel/errors.js';
import type { KernelImage } from '../kernel/kernel-image.js';

/**
 * What a stage0-like firmware leaves behind when it enters a kernel at the
 * 64-bit boot protocol entry: the image at the load address, a zero page,
 * the command line, identity page tables (2 MiB pages, C-bit when asked),
 * a flat GDT, an empty IDT, a stack, and the registers boot.rst promises.
 * Or, for the 32-bit entry, what a 32-bit boot loader leaves: the same but
 * protected mode with paging off and no page tables. Every other byte of RAM
 * keeps its poison.
 */

/** Fixed low-memory layout (all below 1 MiB, like stage0's). */
export const LAYOUT = {
  /** SNP secrets page and CPUID page, where stage0 keeps them. */
  secretsPage: 0x1000,
  cpuidPage: 0x2000,
  zeroPage: 0x10000,
  cmdline: 0x11000,
  gdt: 0x12000,
  idt: 0x12800,
  /** CC blob and setup_data nodes (SNP). */
  ccBlob: 0x13000,
  setupData: 0x13100,
  /** The BSP's VMSA when the VM is launched from one (--vmsa). */
  vmsa: 0x14000,
  pml4: 0x20000,
  pdpt: 0x21000,
  /** Page directories follow, one per GiB mapped. */
  pd0: 0x22000,
  stackTop: 0x80000,
} as const;

export type GdtStyle = 'boot-protocol' | 'stage0';
/** The boot protocol's entries: 64-bit (stage0, most VMMs' direct boot) or 32-bit (GRUB, QEMU's loader). */
export type EntryPoint = 'startup_64' | 'startup_32';
export const ENTRY_POINTS: readonly EntryPoint[] = ['startup_64', 'startup_32'];

export interface FirmwareOptions {
  loadAddress: number;
  cmdline: string;
  /** C-bit position to set in page-table entries, or 0 for none. */
  cbit: number;
  gdt: GdtStyle;
  /** Where the kernel is entered, in the state that entry's protocol defines. */
  entry?: EntryPoint;
  /** Physical address of the first setup_data node to hand over (0 = none). */
  setupDataHead: number;
  /** Bytes at the top of RAM that belong to someone else (an SVSM) and are reported reserved. */
  reservedTop?: number;
}

export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/** The e820 map stage0 reports: low RAM, the VGA/BIOS hole, reserved BIOS area, RAM above 1 MiB. */
export function e820For(memSize: number, reservedTop = 0): E820Entry[] {
  const map = [
    { addr: 0, size: 0xa0000, type: 1 },
    { addr: 0xf0000, size: 0x10000, type: 2 },
    { addr: 0x100000, size: memSize - reservedTop - 0x100000, type: 1 },
  ];
  if (reservedTop > 0) map.push({ addr: memSize - reservedTop, size: reservedTop, type: 2 });
  return map;
}

/** Write a 64-bit little-endian value (as lo/hi numbers) into guest memory. */
function write64(mem: PhysicalMemory, pa: number, lo: number, hi: number): void {
  mem.write32(pa, lo >>> 0);
  mem.write32(pa + 4, hi >>> 0);
}

/** Identity-map [0, max(1 GiB, RAM)) with 2 MiB pages, as stage0 does. Returns CR3. */
function buildIdentityMap(mem: PhysicalMemory, memSize: number, cbit: number): number {
  const gib = Math.max(1, Math.ceil(memSize / 0x40000000));
  if (gib > 512) throw new Error('cannot map more than 512 GiB');
  const cHi = cbit >= 32 ? (1 << (cbit - 32)) >>> 0 : 0;
  mem.fill(LAYOUT.pml4, 0x2000, 0);
  write64(mem, LAYOUT.pml4, LAYOUT.pdpt | 0x3, cHi);
  for (let g = 0; g < gib; g++) {
    const pd = LAYOUT.pd0 + g * 0x1000;
    write64(mem, LAYOUT.pdpt + g * 8, pd | 0x3, cHi);
    for (let e = 0; e < 512; e++) {
      const pa = g * 0x40000000 + e * 0x200000;
      write64(mem, pd + e * 8, (pa % 4294967296) | 0x83, Math.floor(pa / 4294967296) | cHi);
    }
  }
  return LAYOUT.pml4;
}

const GDT_NULL: [number, number] = [0, 0];
const CODE64: [number, number] = [0x0000ffff, 0x00af9a00];
const DATA: [number, number] = [0x0000ffff, 0x00cf9300];

/** Build the zero page (struct boot_params) for the kernel. */
function buildZeroPage(mem: PhysicalMemory, kernel: KernelImage, options: FirmwareOptions): void {
  const zp = LAYOUT.zeroPage;
  mem.fill(zp, 0x1000, 0);
  mem.writeBytes(zp + 0x1f1, kernel.setupBytes);
  mem.write8(zp + 0x210, 0xff); // type_of_loader: undefined, as stage0
  const cmd = Buffer.from(options.cmdline + '\0', 'latin1');
  if (cmd.length > 2048) throw new Error('command line longer than 2047 bytes');
  mem.fill(LAYOUT.cmdline, 0x1000, 0);
  mem.writeBytes(LAYOUT.cmdline, new Uint8Array(cmd));
  mem.write32(zp + 0x228, LAYOUT.cmdline);
  mem.write32(zp + 0x218, 0); // no initrd
  mem.write32(zp + 0x21c, 0);
  mem.write32(zp + 0x250, options.setupDataHead >>> 0); // setup_data (low half; high half 0)
  mem.write32(zp + 0x254, 0);
  const e820 = e820For(mem.size, options.reservedTop ?? 0);
  mem.write8(zp + 0x1e8, e820.length);
  e820.forEach((e, k) => {
    const at = zp + 0x2d0 + k * 20;
    write64(mem, at, e.addr, 0);
    write64(mem, at + 8, e.size % 4294967296, Math.floor(e.size / 4294967296));
    mem.write32(at + 16, e.type);
  });
}

/** Load the kernel image and leave the CPU at the chosen boot-protocol entry point. */
export function bootFirmware(cpu: Cpu, mem: PhysicalMemory, kernel: KernelImage, options: FirmwareOptions): void {
  const { loadAddress } = options;
  if (loadAddress % 0x1000 !== 0) throw new Error('load address must be page aligned');
  // A kernel that cannot fit is the image's doing (its init_size or its size), not an internal error.
  const mib = (n: number): string => `${Math.ceil(n / 2 ** 20)} MiB`;
  const room = `RAM is ${mib(mem.size)}, loaded at 0x${loadAddress.toString(16)}`;
  if (loadAddress + kernel.header.initSize > mem.size) {
    throw new BadInputError(`init_size 0x${kernel.header.initSize.toString(16)} does not fit: the kernel needs ${mib(kernel.header.initSize)} from its load address, ${room}`);
  }
  if (loadAddress + kernel.image.length > mem.size) {
    throw new BadInputError(`the kernel image (${mib(kernel.image.length)}) does not fit: ${room}`);
  }
  mem.writeImage(loadAddress, kernel.image);
  buildZeroPage(mem, kernel, options);
  if (options.entry === 'startup_32') {
    // The 32-bit boot protocol (boot.rst): protected mode with paging off, flat 4 GiB segments, no page tables
    // (the decompressor builds its own), %esi = zero page, at code32_start (startup_32, the image's first byte).
    mem.write32(LAYOUT.zeroPage + 0x214, loadAddress); // code32_start
    enterAt(cpu, mem, options, { code: CODE32, data: DATA32, cr0: 0x11 /* PE ET */, cr4: 0, efer: 0, cr3: 0, long: false, rip: loadAddress });
  } else {
    // Long mode on stage0's identity map, FS and GS null, at startup_64.
    const cr3 = buildIdentityMap(mem, mem.size, options.cbit);
    enterAt(cpu, mem, options, { code: CODE64, data: DATA, cr0: 0x80010033 /* PG WP NE ET MP PE */, cr4: 0x20 /* PAE only, as stage0 */, efer: 0x500 /* LME LMA */, cr3, long: true, rip: loadAddress + 0x200 });
  }
}

const CODE32: [number, number] = [0x0000ffff, 0x00cf9a00];
const DATA32: [number, number] = [0x0000ffff, 0x00cf9200];

interface EntryState {
  code: [number, number];
  data: [number, number];
  cr0: number;
  cr4: number;
  efer: number;
  cr3: number;
  /** 64-bit code at the entry (else 32-bit). */
  long: boolean;
  rip: number;
}

/** The GDT, an empty IDT, control registers and the registers boot.rst promises (all zero but %rsi; a stack). */
function enterAt(cpu: Cpu, mem: PhysicalMemory, options: FirmwareOptions, s: EntryState): void {
  // GDT: boot.rst's __BOOT_CS 0x10 / __BOOT_DS 0x18, or stage0's 0x08 / 0x10.
  const entries = options.gdt === 'stage0' ? [GDT_NULL, s.code, s.data] : [GDT_NULL, GDT_NULL, s.code, s.data];
  entries.forEach(([lo, hi], k) => write64(mem, LAYOUT.gdt + k * 8, lo, hi));
  const cs = options.gdt === 'stage0' ? 0x08 : 0x10;
  const ds = options.gdt === 'stage0' ? 0x10 : 0x18;
  cpu.cr0 = s.cr0;
  cpu.cr4 = s.cr4;
  cpu.efer = s.efer;
  cpu.cr3Lo = s.cr3;
  cpu.cr3Hi = 0;
  cpu.mmu.setCbit(options.cbit);
  cpu.gdtrBaseLo = LAYOUT.gdt;
  cpu.gdtrBaseHi = 0;
  cpu.gdtrLimit = entries.length * 8 - 1;
  cpu.idtrBaseLo = LAYOUT.idt; // an empty IDT: any exception before the kernel's own is fatal
  cpu.idtrBaseHi = 0;
  cpu.idtrLimit = 0;
  cpu.seg.fill(ds);
  cpu.seg[1] = cs;
  if (s.long) cpu.seg[4] = cpu.seg[5] = 0;
  cpu.setCodeMode(s.long);
  cpu.rflags = 0x2;
  cpu.regLo.fill(0);
  cpu.regHi.fill(0);
  cpu.regLo[RSI] = LAYOUT.zeroPage;
  cpu.regLo[RSP] = LAYOUT.stackTop;
  cpu.ripLo = s.rip;
  cpu.ripHi = 0;
  cpu.flushTlb();
}
