import type { Cpu } from '../cpu/cpu.js';
import { SAVE_AREA } from './save-area.js';
import { sevStatusFor, type VmConfig } from './vm-config.js';

/**
 * The VMSA: a vCPU's register state in the SEV-ES save-area layout (AMD APM
 * vol. 2, "VMSA layout", in save-area.ts: the GHCB mirrors the same offsets). bzemu
 * reads and writes the fields the BSP's entry state needs. Segment
 * registers are {selector u16, attributes u16, limit u32, base u64}; the
 * attributes are in the VMCB's packed form (type, S, DPL, P, AVL, L, D/B, G).
 */
export const VMSA_SIZE = 4096;

const SEG = { es: 0x000, cs: 0x010, ss: 0x020, ds: 0x030, fs: 0x040, gs: 0x050, gdtr: 0x060, ldtr: 0x070, idtr: 0x080, tr: 0x090 } as const;
const OFF = SAVE_AREA;

/** Register number -> VMSA offset (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15). */
const GPR_OFFSETS = [OFF.rax, OFF.rcx, OFF.rdx, OFF.rbx, OFF.rsp, OFF.rbp, OFF.rsi, OFF.rdi, ...Array.from({ length: 8 }, (_, i) => OFF.r8 + i * 8)];

/** Packed attributes: 64-bit code (type 0xb, S, P, L, G) and flat data (type 3, S, P, D/B, G). */
const ATTR_CODE64 = 0xa9b, ATTR_CODE32 = 0xc9b, ATTR_DATA = 0xc93, ATTR_TSS = 0x08b;
const ATTR_L = 0x200;

/** SEV_FEATURES in the VMSA are the SEV_STATUS feature bits from bit 2 up (SNPActive is bit 0). */
export function vmsaSevFeatures(config: VmConfig): bigint {
  return config.mode === 'snp' || config.mode === 'sev-es' ? sevStatusFor(config) >> 2n : 0n;
}

export class VmsaError extends Error {}

function put64(v: DataView, at: number, lo: number, hi: number): void {
  v.setUint32(at, lo >>> 0, true);
  v.setUint32(at + 4, hi >>> 0, true);
}

/** The VMSA of a CPU's current state (the BSP at the kernel's entry, as bzemu's firmware leaves it). */
export function encodeVmsa(cpu: Cpu, config: VmConfig): Uint8Array {
  const bytes = new Uint8Array(VMSA_SIZE);
  const v = new DataView(bytes.buffer);
  const segs = [SEG.es, SEG.cs, SEG.ss, SEG.ds, SEG.fs, SEG.gs];
  segs.forEach((at, i) => {
    v.setUint16(at, cpu.seg[i], true);
    v.setUint16(at + 2, i === 1 ? (cpu.csLong ? ATTR_CODE64 : ATTR_CODE32) : cpu.seg[i] !== 0 ? ATTR_DATA : 0, true);
    v.setUint32(at + 4, 0xffffffff, true);
  });
  put64(v, SEG.fs + 8, cpu.fsBaseLo, cpu.fsBaseHi);
  put64(v, SEG.gs + 8, cpu.gsBaseLo, cpu.gsBaseHi);
  v.setUint32(SEG.gdtr + 4, cpu.gdtrLimit, true);
  put64(v, SEG.gdtr + 8, cpu.gdtrBaseLo, cpu.gdtrBaseHi);
  v.setUint32(SEG.idtr + 4, cpu.idtrLimit, true);
  put64(v, SEG.idtr + 8, cpu.idtrBaseLo, cpu.idtrBaseHi);
  v.setUint16(SEG.tr, cpu.trSel, true);
  v.setUint16(SEG.tr + 2, ATTR_TSS, true);
  v.setUint32(SEG.tr + 4, cpu.trLimit, true);
  put64(v, SEG.tr + 8, cpu.trBaseLo, cpu.trBaseHi);
  v.setUint8(OFF.vmpl, 0);
  v.setUint8(OFF.cpl, cpu.seg[1] & 3);
  put64(v, OFF.efer, cpu.efer, 0);
  put64(v, OFF.cr4, cpu.cr4, 0);
  put64(v, OFF.cr3, cpu.cr3Lo, cpu.cr3Hi);
  put64(v, OFF.cr0, cpu.cr0, 0);
  put64(v, OFF.rflags, cpu.rflags, 0);
  put64(v, OFF.rip, cpu.ripLo, cpu.ripHi);
  put64(v, OFF.kernelGsBase, cpu.kernelGsBaseLo, cpu.kernelGsBaseHi);
  put64(v, OFF.cr2, cpu.cr2Lo, cpu.cr2Hi);
  GPR_OFFSETS.forEach((at, r) => put64(v, at, cpu.regLo[r], cpu.regHi[r]));
  v.setBigUint64(OFF.sevFeatures, vmsaSevFeatures(config), true);
  put64(v, OFF.xcr0, cpu.xcr0, 0);
  return bytes;
}

/**
 * Check a VMSA as KVM checks the one a VMM hands it for the BSP: exactly one
 * page, its sev_features equal to the VM's, VMPL 0. Throws VmsaError with the reason.
 */
export function checkVmsa(bytes: Uint8Array, config: VmConfig): void {
  if (bytes.length !== VMSA_SIZE) throw new VmsaError(`a VMSA is exactly ${VMSA_SIZE} bytes, this one is ${bytes.length}`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const vmpl = v.getUint8(OFF.vmpl);
  if (vmpl !== 0) throw new VmsaError(`the VMSA's vmpl is ${vmpl}: the BSP's initial VMSA must be for VMPL0`);
  const got = v.getBigUint64(OFF.sevFeatures, true);
  const want = vmsaSevFeatures(config);
  if (got !== want) throw new VmsaError(`the VMSA's sev_features 0x${got.toString(16)} differ from the VM's 0x${want.toString(16)} (--coco/--sev-features)`);
}

/** Load the BSP's registers from a (checked) VMSA. */
export function applyVmsa(cpu: Cpu, bytes: Uint8Array): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const lo = (at: number): number => v.getUint32(at, true);
  const hi = (at: number): number => v.getUint32(at + 4, true);
  [SEG.es, SEG.cs, SEG.ss, SEG.ds, SEG.fs, SEG.gs].forEach((at, i) => (cpu.seg[i] = v.getUint16(at, true)));
  cpu.setCodeMode((v.getUint16(SEG.cs + 2, true) & ATTR_L) !== 0);
  [cpu.fsBaseLo, cpu.fsBaseHi] = [lo(SEG.fs + 8), hi(SEG.fs + 8)];
  [cpu.gsBaseLo, cpu.gsBaseHi] = [lo(SEG.gs + 8), hi(SEG.gs + 8)];
  cpu.gdtrLimit = v.getUint32(SEG.gdtr + 4, true) & 0xffff;
  [cpu.gdtrBaseLo, cpu.gdtrBaseHi] = [lo(SEG.gdtr + 8), hi(SEG.gdtr + 8)];
  cpu.idtrLimit = v.getUint32(SEG.idtr + 4, true) & 0xffff;
  [cpu.idtrBaseLo, cpu.idtrBaseHi] = [lo(SEG.idtr + 8), hi(SEG.idtr + 8)];
  cpu.trSel = v.getUint16(SEG.tr, true);
  cpu.trLimit = v.getUint32(SEG.tr + 4, true);
  [cpu.trBaseLo, cpu.trBaseHi] = [lo(SEG.tr + 8), hi(SEG.tr + 8)];
  cpu.efer = lo(OFF.efer);
  cpu.cr4 = lo(OFF.cr4);
  [cpu.cr3Lo, cpu.cr3Hi] = [lo(OFF.cr3), hi(OFF.cr3)];
  cpu.cr0 = lo(OFF.cr0);
  cpu.rflags = lo(OFF.rflags);
  [cpu.ripLo, cpu.ripHi] = [lo(OFF.rip), hi(OFF.rip)];
  [cpu.kernelGsBaseLo, cpu.kernelGsBaseHi] = [lo(OFF.kernelGsBase), hi(OFF.kernelGsBase)];
  [cpu.cr2Lo, cpu.cr2Hi] = [lo(OFF.cr2), hi(OFF.cr2)];
  GPR_OFFSETS.forEach((at, r) => {
    cpu.regLo[r] = lo(at);
    cpu.regHi[r] = hi(at);
  });
  cpu.xcr0 = lo(OFF.xcr0) || 1;
  cpu.flushTlb();
}
