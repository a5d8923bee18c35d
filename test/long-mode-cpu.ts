import { Cpu } from '../src/cpu/cpu.js';
import type { SparseMemory } from '../src/memory/sparse-memory.js';
import { BareMetalHost } from '../src/platform/bare-host.js';
import { CpuidPolicy } from '../src/platform/cpuid-policy.js';

/**
 * A bare-metal CPU on `mem` in long mode (paging, NXE), its first 32 MiB
 * identity-mapped with 2 MiB pages: PML4 at 0x1000, PDPT at 0x2000, PD at
 * 0x3000 (present, writable, neither accessed nor dirty yet). `wasm`: see Cpu.
 */
export function identityMappedCpu(mem: SparseMemory, wasm = true): Cpu {
  const cpu = new Cpu(mem, new BareMetalHost(new CpuidPolicy()), 4096, null, wasm);
  const w64 = (pa: number, lo: number): void => {
    mem.write32(pa, lo >>> 0);
    mem.write32(pa + 4, 0);
  };
  w64(0x1000, 0x2003);
  w64(0x2000, 0x3003);
  for (let i = 0; i < 16; i++) w64(0x3000 + i * 8, i * 0x200000 + 0x83);
  cpu.cr3Lo = 0x1000;
  cpu.cr0 = 0x80010033;
  cpu.cr4 = 0x20;
  cpu.efer = 0xd00; // LME LMA NXE
  cpu.flushTlb();
  return cpu;
}
