import { PAGE_SIZE, type RmpTable } from '../../hypervisor/rmp.js';
import type { MemoryRegion } from './model.js';

/**
 * The RMP as the run left it, one region per run of pages in the same state
 * (a 1 GiB guest is 262,144 pages; the decompressor changes a handful), so
 * the map stays small whatever the RAM size.
 */
export function rmpRegions(rmp: RmpTable, vmpl: number): MemoryRegion[] {
  const out: MemoryRegion[] = [];
  let runStart = 0;
  let runKey = -1;
  const flush = (endPage: number): void => {
    if (runKey < 0) return;
    const { name, kind, detail } = describe(runKey, vmpl);
    out.push({ lane: 'RMP', name, start: runStart * PAGE_SIZE, size: (endPage - runStart) * PAGE_SIZE, kind, detail: `${detail}; ${endPage - runStart} page${endPage - runStart > 1 ? 's' : ''}` });
  };
  for (let pfn = 0; pfn < rmp.pageCount; pfn++) {
    const pa = pfn * PAGE_SIZE;
    const key = (rmp.isPrivate(pa) ? 1 : 0) | (rmp.isValidated(pa) ? 2 : 0) | (rmp.isVmsa(pa) ? 4 : 0) | (vmpl > 0 ? rmp.permissions(pa, vmpl) << 3 : 0);
    if (key === runKey) continue;
    flush(pfn);
    runStart = pfn;
    runKey = key;
  }
  flush(rmp.pageCount);
  return out;
}

function describe(key: number, vmpl: number): { name: string; kind: string; detail: string } {
  const priv = (key & 1) !== 0, validated = (key & 2) !== 0, vmsa = (key & 4) !== 0;
  const perms = key >> 3;
  const permText = vmpl > 0 && priv ? `, VMPL${vmpl} permissions 0x${perms.toString(16)}` : '';
  if (vmsa) return { name: 'VMSA', kind: 'rmp-vmsa', detail: `private, ${validated ? 'validated' : 'not validated'}, a VMSA page${permText}` };
  if (!priv) return { name: 'shared', kind: 'rmp-shared', detail: 'shared: the host reads and writes it in the clear' };
  if (!validated) return { name: 'private, not validated', kind: 'rmp-unvalidated', detail: `private but not validated: a C=1 access raises #VC 0x404${permText}` };
  return { name: 'private, validated', kind: 'rmp-private', detail: `private and validated${permText}` };
}
