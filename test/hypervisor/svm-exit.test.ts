import { describe, expect, it } from 'vitest';
import { svmExitName, SVM_EXIT_CPUID, SVM_EXIT_IOIO, SVM_VMGEXIT_PSC, SVM_VMGEXIT_TERM_REQUEST } from '../../src/hypervisor/svm-exit.js';

describe('svmExitName', () => {
  it('uses the uapi numbers', () => {
    expect(SVM_EXIT_CPUID).toBe(0x72n);
    expect(SVM_EXIT_IOIO).toBe(0x7bn);
    expect(SVM_VMGEXIT_PSC).toBe(0x80000010n);
    expect(SVM_VMGEXIT_TERM_REQUEST).toBe(0x8000fffen);
    expect(svmExitName(0x7cn)).toBe('SVM_EXIT_MSR');
    expect(svmExitName(0x8000fffdn)).toBe('SVM_VMGEXIT_HV_FEATURES');
    expect(svmExitName(0x80000018n)).toBe('SVM_VMGEXIT_SNP_RUN_VMPL');
  });

  it('names intercepted exceptions and unknown codes', () => {
    expect(svmExitName(0x40n + 13n)).toBe('SVM_EXIT_EXCP_BASE+GP');
    expect(svmExitName(0x40n + 1n)).toBe('SVM_EXIT_EXCP_BASE+DB');
    expect(svmExitName(0x1234n)).toBe('exit 0x1234');
  });
});
