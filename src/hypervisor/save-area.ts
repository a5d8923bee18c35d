/**
 * Byte offsets of the SEV-ES save area (AMD APM vol. 2, "VMSA layout"). The
 * VMSA is laid out this way, and a GHCB's first kilobyte mirrors the same
 * fields at the same offsets (GHCB specification), so both use this one table.
 */
export const SAVE_AREA = {
  vmpl: 0x0ca,
  cpl: 0x0cb,
  efer: 0x0d0,
  xss: 0x140,
  cr4: 0x148,
  cr3: 0x150,
  cr0: 0x158,
  dr7: 0x160,
  rflags: 0x170,
  rip: 0x178,
  rsp: 0x1d8,
  rax: 0x1f8,
  kernelGsBase: 0x220,
  cr2: 0x240,
  rcx: 0x308,
  rdx: 0x310,
  rbx: 0x318,
  rbp: 0x328,
  rsi: 0x330,
  rdi: 0x338,
  r8: 0x340,
  r9: 0x348,
  r10: 0x350,
  r11: 0x358,
  r12: 0x360,
  r13: 0x368,
  r14: 0x370,
  r15: 0x378,
  sevFeatures: 0x3b0,
  xcr0: 0x3e8,
} as const;
