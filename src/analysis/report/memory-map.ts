import type { KernelImage } from '../../kernel/kernel-image.js';
import type { BootResult } from '../../machine/boot.js';
import { SVSM_CAA, SVSM_SIZE, type Machine } from '../../machine/machine.js';
import { e820For, LAYOUT } from '../../platform/firmware.js';
import type { MemoryRegion } from './model.js';
import { rmpRegions } from './rmp-layer.js';

const hex = (n: number): string => '0x' + n.toString(16);

/** A part of the decompressor image, by offset from its start (startup_32 = 0). */
export interface ImageSection {
  name: string;
  start: number;
  end: number;
  detail: string;
}

/**
 * The image's layout: from the linker script's own symbols when the image has
 * them (vmlinux.lds.S brackets every output section), else from what a bare
 * bzImage tells: the payload's place in the setup header, `.bss` from the
 * `.bss` clear in head_64.S, `_end` from startup_64's arithmetic.
 */
export function imageSections(kernel: KernelImage): ImageSection[] {
  const end = kernel.end ?? kernel.image.length;
  const sym = kernel.symbols;
  const out: ImageSection[] = [];
  const add = (name: string, start: number | undefined, stop: number | undefined, detail: string): void => {
    if (start !== undefined && stop !== undefined && stop > start) out.push({ name, start, end: stop, detail });
  };
  if (sym !== null && sym.get('_bss') !== undefined) {
    const at = (name: string): number | undefined => sym.get(name)?.offset;
    add('.head.text', at('_head'), at('_ehead'), 'startup_32 and startup_64, the boot-protocol entries');
    add('compressed payload', at('input_data'), at('input_data_end'), '.rodata..compressed: the compressed kernel (input_data)');
    add('.text', at('_text'), at('_etext'), "the decompressor's code");
    add('.rodata', at('_rodata'), at('_erodata'), 'read-only data');
    add('.data', at('_data'), at('_edata'), 'initialized data (in the file)');
    add('.bss', at('_bss'), at('_ebss'), 'not in the file: whatever memory held until head_64.S clears it');
    add('.pgtable', at('_pgtable'), at('_epgtable') ?? end, "the decompressor's own page tables");
  } else {
    const h = kernel.header;
    const payloadEnd = h.payloadOffset + h.payloadLength;
    const bss = kernel.landmarks.bss;
    add('head', 0, h.payloadOffset, 'startup_32 and startup_64, the boot-protocol entries');
    add('compressed payload', h.payloadOffset, payloadEnd, 'the compressed kernel (payload_offset, payload_length in the setup header)');
    add('code and data', payloadEnd, bss?.start ?? kernel.image.length, '.text, .rodata and .data (no symbols: one block)');
    if (bss !== null) {
      add('.bss', bss.start, bss.end, 'not in the file: whatever memory held until head_64.S clears it (found from the .bss clear)');
      add('after .bss', bss.end, end, '.pgtable: the decompressor\'s own page tables, up to _end');
    }
  }
  out.sort((a, b) => a.start - b.start);
  return out.length > 0 ? out : [{ name: 'image', start: 0, end, detail: 'the decompressor image' }];
}

/** Every region the map draws for a finished run on `machine`. */
export function memoryRegions(machine: Machine, result: BootResult): MemoryRegion[] {
  const regions: MemoryRegion[] = [];
  const { config, kernel, addresses } = machine;
  const memSize = config.memSize;
  const vm = config.vm;
  const snp = vm.mode === 'snp';
  const push = (r: MemoryRegion): void => {
    if (r.size > 0 && r.start < memSize) regions.push({ ...r, size: Math.min(r.size, memSize - r.start) });
  };

  for (const e of e820For(memSize, vm.svsm ? SVSM_SIZE : 0)) {
    push({ lane: 'e820', name: e.type === 1 ? 'usable RAM' : 'reserved', start: e.addr, size: e.size, kind: e.type === 1 ? 'ram' : 'reserved', detail: `e820 type ${e.type} as the firmware reports it in the zero page` });
  }

  const fw = (name: string, start: number, size: number, detail: string, kind = 'firmware'): void => push({ lane: 'firmware', name, start, size, kind, detail });
  if (snp && vm.cpuidPage) {
    fw('secrets page', LAYOUT.secretsPage, 0x1000, 'SNP secrets page (VMPCKs, SVSM fields), found through the CC blob', 'snp-page');
    fw('CPUID page', LAYOUT.cpuidPage, 0x1000, 'SNP CPUID page: the CPUID values the guest trusts instead of asking the host', 'snp-page');
  }
  if (vm.svsm) fw('SVSM calling area', SVSM_CAA, 0x1000, "the SVSM's calling area for the guest's VMPL", 'snp-page');
  fw('zero page', LAYOUT.zeroPage, 0x1000, 'struct boot_params: setup header, e820 map, command-line pointer (RSI at entry)');
  fw('command line', LAYOUT.cmdline, config.cmdline.length + 1, `"${config.cmdline}"`);
  fw('GDT', LAYOUT.gdt, (config.gdt === 'stage0' ? 3 : 4) * 8, `flat GDT (${config.gdt} layout)`);
  fw('IDT (empty)', LAYOUT.idt, 16, 'IDTR limit 0: an exception before the kernel loads its own IDT is fatal');
  if (snp && vm.cpuidPage) {
    fw('CC blob', LAYOUT.ccBlob, 0x28, 'struct cc_blob_sev_info: where the secrets and CPUID pages are', 'snp-page');
    fw('setup_data', LAYOUT.setupData, 0x14, 'setup_data node (SETUP_CC_BLOB) pointing at the CC blob', 'snp-page');
  }
  if (config.vmsa) fw('VMSA', LAYOUT.vmsa, 0x1000, 'the BSP\'s initial state (--vmsa)', 'snp-page');
  const gib = Math.max(1, Math.ceil(memSize / 0x40000000));
  fw('page tables', LAYOUT.pml4, LAYOUT.pd0 + gib * 0x1000 - LAYOUT.pml4, `identity map with 2 MiB pages: PML4, PDPT, ${gib} PD${gib > 1 ? 's' : ''}${vm.mode !== 'none' ? `, C-bit ${vm.cbit}` : ''}`);
  fw('entry stack', LAYOUT.stackTop - 0x1000, 0x1000, `RSP ${hex(LAYOUT.stackTop)} at entry (grows down)`);
  if (vm.svsm) fw('SVSM memory', memSize - SVSM_SIZE, SVSM_SIZE, 'the SVSM\'s own memory at VMPL0 (reserved in e820)', 'reserved');

  const sections = imageSections(kernel);
  const hit = (name: string): number | null => result.milestones.find((m) => m.name === name)?.instruction ?? null;
  const bssClear = hit('bss-clear');
  for (const s of sections) {
    const detail = s.name === '.bss'
      ? `${s.detail}. This is the copy the firmware loaded: its .bss is never cleared (reads of it before a write are findings).`
      : s.detail;
    push({ lane: 'loaded image', name: s.name, start: addresses.loadBase + s.start, size: s.end - s.start, kind: sectionKind(s.name), detail: `${detail} (image+${hex(s.start)})` });
  }
  const reloc = addresses.relocBase;
  if (reloc !== null) {
    const moved = bssClear !== null;
    for (const s of sections) {
      let detail = s.detail;
      if (s.name === '.bss') {
        detail = bssClear !== null ? `${s.detail}. Cleared at instruction ${bssClear} (.Lrelocated)` : `${s.detail}. Not cleared: the run ended at instruction ${result.instructions}, before .Lrelocated`;
      }
      if (!moved) detail += '. Planned: the run ended before the decompressor moved here';
      push({ lane: 'relocated copy', name: s.name, start: reloc + s.start, size: s.end - s.start, kind: moved ? sectionKind(s.name) : 'planned', detail: `${detail} (image+${hex(s.start)})` });
    }
  }

  push({
    lane: 'decompression',
    name: 'init_size buffer',
    start: addresses.outputBase,
    size: kernel.header.initSize,
    kind: 'buffer',
    detail: `the buffer the decompressor may use: init_size ${hex(kernel.header.initSize)} from ${hex(addresses.outputBase)}; it moves itself to the top of it`,
  });
  if (result.output !== null) {
    const at = Number(result.output.address);
    push({
      lane: 'decompression',
      name: 'decompressed kernel',
      start: at,
      size: result.output.length,
      kind: 'output',
      detail: `vmlinux as extract_kernel left it (${(result.output.length / 2 ** 20).toFixed(1)} MiB at ${result.output.address}${result.output.virtualOffset !== null ? `, KASLR virtual offset ${result.output.virtualOffset}` : ''}, ${result.output.relocations} relocations applied)`,
    });
  }

  for (const [gpa, first] of machine.sev?.ghcbPages ?? []) {
    const name = addresses.describeData(gpa);
    push({ lane: 'GHCB', name: name ? `GHCB (${name})` : 'GHCB', start: gpa, size: 0x1000, kind: 'ghcb', detail: `GHCB page at ${hex(gpa)}, first used with the page protocol at instruction ${first}` });
  }

  if (snp && machine.sev) regions.push(...rmpRegions(machine.sev.rmp, vm.vmpl));

  for (const u of result.uninitializedReads) {
    push({ lane: 'findings', name: `uninitialized read: ${u.symbol || u.address}`, start: Number(u.address), size: u.size, kind: 'finding', detail: `${u.symbol || u.address} (${u.size} byte${u.size > 1 ? 's' : ''}) read by ${u.reader || u.rip} at instruction ${u.instruction} before anything wrote it; it held ${u.value}` });
  }
  for (const f of machine.sev?.rmp.findings ?? []) {
    push({ lane: 'findings', name: `RMP ${f.code}`, start: f.gpa, size: 0x1000, kind: f.severity === 'error' ? 'finding' : 'warning', detail: `${f.severity}: ${f.detail}` });
  }
  return regions;
}

function sectionKind(name: string): string {
  if (name === '.bss') return 'bss';
  if (name === 'compressed payload') return 'payload';
  if (name === '.text' || name === '.head.text' || name === 'head') return 'code';
  return 'data';
}
