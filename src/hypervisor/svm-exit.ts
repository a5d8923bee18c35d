/**
 * SVM exit codes as they appear in the #VC error code and in the GHCB
 * sw_exit_code (arch/x86/include/uapi/asm/svm.h, Linux 6.12).
 */

export const SVM_EXIT_READ_DR7 = 0x027n;
export const SVM_EXIT_WRITE_DR7 = 0x037n;
export const SVM_EXIT_EXCP_BASE = 0x040n;
export const SVM_EXIT_RDTSC = 0x06en;
export const SVM_EXIT_RDPMC = 0x06fn;
export const SVM_EXIT_CPUID = 0x072n;
export const SVM_EXIT_INVD = 0x076n;
export const SVM_EXIT_IOIO = 0x07bn;
export const SVM_EXIT_MSR = 0x07cn;
export const SVM_EXIT_VMMCALL = 0x081n;
export const SVM_EXIT_RDTSCP = 0x087n;
export const SVM_EXIT_WBINVD = 0x089n;
export const SVM_EXIT_MONITOR = 0x08an;
export const SVM_EXIT_MWAIT = 0x08bn;
export const SVM_EXIT_NPF = 0x400n;
/**
 * #VC for a C=1 access to a private page whose Validated bit is clear. The value
 * comes from the boot reference (APM); Linux 6.12 does not define it, so it is
 * unverified against the kernel source.
 */
export const SVM_EXIT_PAGE_NOT_VALIDATED = 0x404n;

export const SVM_VMGEXIT_MMIO_READ = 0x80000001n;
export const SVM_VMGEXIT_MMIO_WRITE = 0x80000002n;
export const SVM_VMGEXIT_NMI_COMPLETE = 0x80000003n;
export const SVM_VMGEXIT_AP_HLT_LOOP = 0x80000004n;
export const SVM_VMGEXIT_AP_JUMP_TABLE = 0x80000005n;
export const SVM_VMGEXIT_PSC = 0x80000010n;
export const SVM_VMGEXIT_GUEST_REQUEST = 0x80000011n;
export const SVM_VMGEXIT_EXT_GUEST_REQUEST = 0x80000012n;
export const SVM_VMGEXIT_AP_CREATION = 0x80000013n;
export const SVM_VMGEXIT_SNP_RUN_VMPL = 0x80000018n;
export const SVM_VMGEXIT_HV_FEATURES = 0x8000fffdn;
export const SVM_VMGEXIT_TERM_REQUEST = 0x8000fffen;
export const SVM_VMGEXIT_UNSUPPORTED_EVENT = 0x8000ffffn;

const NAMES: ReadonlyMap<bigint, string> = new Map([
  [SVM_EXIT_READ_DR7, 'SVM_EXIT_READ_DR7'],
  [SVM_EXIT_WRITE_DR7, 'SVM_EXIT_WRITE_DR7'],
  [SVM_EXIT_RDTSC, 'SVM_EXIT_RDTSC'],
  [SVM_EXIT_RDPMC, 'SVM_EXIT_RDPMC'],
  [SVM_EXIT_CPUID, 'SVM_EXIT_CPUID'],
  [SVM_EXIT_INVD, 'SVM_EXIT_INVD'],
  [SVM_EXIT_IOIO, 'SVM_EXIT_IOIO'],
  [SVM_EXIT_MSR, 'SVM_EXIT_MSR'],
  [SVM_EXIT_VMMCALL, 'SVM_EXIT_VMMCALL'],
  [SVM_EXIT_RDTSCP, 'SVM_EXIT_RDTSCP'],
  [SVM_EXIT_WBINVD, 'SVM_EXIT_WBINVD'],
  [SVM_EXIT_MONITOR, 'SVM_EXIT_MONITOR'],
  [SVM_EXIT_MWAIT, 'SVM_EXIT_MWAIT'],
  [SVM_EXIT_NPF, 'SVM_EXIT_NPF'],
  [SVM_EXIT_PAGE_NOT_VALIDATED, 'PAGE_NOT_VALIDATED'],
  [SVM_VMGEXIT_MMIO_READ, 'SVM_VMGEXIT_MMIO_READ'],
  [SVM_VMGEXIT_MMIO_WRITE, 'SVM_VMGEXIT_MMIO_WRITE'],
  [SVM_VMGEXIT_NMI_COMPLETE, 'SVM_VMGEXIT_NMI_COMPLETE'],
  [SVM_VMGEXIT_AP_HLT_LOOP, 'SVM_VMGEXIT_AP_HLT_LOOP'],
  [SVM_VMGEXIT_AP_JUMP_TABLE, 'SVM_VMGEXIT_AP_JUMP_TABLE'],
  [SVM_VMGEXIT_PSC, 'SVM_VMGEXIT_PSC'],
  [SVM_VMGEXIT_GUEST_REQUEST, 'SVM_VMGEXIT_GUEST_REQUEST'],
  [SVM_VMGEXIT_EXT_GUEST_REQUEST, 'SVM_VMGEXIT_EXT_GUEST_REQUEST'],
  [SVM_VMGEXIT_AP_CREATION, 'SVM_VMGEXIT_AP_CREATION'],
  [SVM_VMGEXIT_SNP_RUN_VMPL, 'SVM_VMGEXIT_SNP_RUN_VMPL'],
  [SVM_VMGEXIT_HV_FEATURES, 'SVM_VMGEXIT_HV_FEATURES'],
  [SVM_VMGEXIT_TERM_REQUEST, 'SVM_VMGEXIT_TERM_REQUEST'],
  [SVM_VMGEXIT_UNSUPPORTED_EVENT, 'SVM_VMGEXIT_UNSUPPORTED_EVENT'],
]);

const EXCEPTIONS = ['DE', 'DB', 'NMI', 'BP', 'OF', 'BR', 'UD', 'NM', 'DF', 'CSO', 'TS', 'NP', 'SS', 'GP', 'PF', 'SPV', 'MF', 'AC', 'MC', 'XF'];

/** Kernel name for an exit code (`SVM_EXIT_EXCP_BASE+GP` for intercepted exceptions), or `exit 0x...`. */
export function svmExitName(code: bigint): string {
  const known = NAMES.get(code);
  if (known !== undefined) return known;
  if (code >= SVM_EXIT_EXCP_BASE && code < SVM_EXIT_EXCP_BASE + 32n) {
    const vector = Number(code - SVM_EXIT_EXCP_BASE);
    return `SVM_EXIT_EXCP_BASE+${EXCEPTIONS[vector] ?? vector}`;
  }
  return `exit 0x${code.toString(16)}`;
}
