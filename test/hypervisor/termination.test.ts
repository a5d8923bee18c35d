import { describe, expect, it } from 'vitest';
import {
  decodeGhcbMsrValue,
  decodeGhcbTermination,
  decodeMsrTermination,
  describeReason,
  explainExitValue,
  formatTermination,
  ghcbMsrInfoName,
  ghcbTerminationInfo1,
  msrTerminationValue,
  GHCB_TERM_NOT_VMPL0,
  SEV_TERM_SET_LINUX,
} from '../../src/hypervisor/termination.js';

describe('reason codes (sev-common.h, 6.12)', () => {
  it('names every Linux code in set 1 with its number', () => {
    const expected = [
      'GHCB_TERM_REGISTER',
      'GHCB_TERM_PSC',
      'GHCB_TERM_PVALIDATE',
      'GHCB_TERM_NOT_VMPL0',
      'GHCB_TERM_CPUID',
      'GHCB_TERM_CPUID_HV',
      'GHCB_TERM_SECRETS_PAGE',
      'GHCB_TERM_NO_SVSM',
      'GHCB_TERM_SVSM_VMPL0',
      'GHCB_TERM_SVSM_CAA',
    ];
    expected.forEach((name, code) => {
      expect(describeReason(1, code)).toMatchObject({ setName: 'SEV_TERM_SET_LINUX', codeName: name });
    });
    expect(describeReason(1, 10).codeName).toBeNull();
  });

  it('names the general set 0', () => {
    expect(describeReason(0, 0).codeName).toBe('GHCB_SEV_ES_GEN_REQ');
    expect(describeReason(0, 1).codeName).toBe('GHCB_SEV_ES_PROT_UNSUPPORTED');
    expect(describeReason(0, 2).codeName).toBe('GHCB_SNP_UNSUPPORTED');
    expect(describeReason(0, 2).setName).toBe('SEV_TERM_SET_GEN');
  });

  it('does not invent names for unknown sets', () => {
    expect(describeReason(5, 1)).toMatchObject({ setName: null, codeName: null });
  });
});

describe('MSR-form termination', () => {
  it('0x31100 is set 1 code 3 (NOT_VMPL0)', () => {
    const t = decodeMsrTermination(0x31100n)!;
    expect(t).toMatchObject({ set: 1, code: 3, codeName: 'GHCB_TERM_NOT_VMPL0', form: 'msr', initiator: 'guest' });
  });

  it('0x100 is (0,0)', () => {
    expect(decodeMsrTermination(0x100n)).toMatchObject({ set: 0, code: 0, codeName: 'GHCB_SEV_ES_GEN_REQ' });
  });

  it('encodes set at bit 12 and code at bit 16', () => {
    expect(msrTerminationValue(SEV_TERM_SET_LINUX, GHCB_TERM_NOT_VMPL0)).toBe(0x31100n);
    expect(msrTerminationValue(0, 2)).toBe(0x20100n);
    expect(msrTerminationValue(1, 9)).toBe(0x91100n);
  });

  it('ignores values with another GHCBInfo', () => {
    expect(decodeMsrTermination(0x31101n)).toBeNull();
    expect(decodeMsrTermination(0x31000n)).toBeNull();
  });
});

describe('GHCB-form termination', () => {
  it('sw_exit_info_1 = set | code << 4', () => {
    expect(ghcbTerminationInfo1(1, 3)).toBe(0x31n);
    expect(decodeGhcbTermination(0x31n)).toMatchObject({ set: 1, code: 3, form: 'ghcb' });
    expect(decodeGhcbTermination(0x20n, 0x10n)).toMatchObject({ set: 0, code: 2, detail: 0x10n });
  });

  it('without a mask (MSR form), the host\'s own knowledge names the cause', () => {
    const t = decodeMsrTermination(0x20100n)!; // set 0, code 2 (GHCB_SNP_UNSUPPORTED)
    expect(formatTermination(t, 'the hypervisor does not advertise GHCB feature bit 0 (SNP) (--hv-features)')).toContain('SNP cannot be supported: the hypervisor does not advertise GHCB feature bit 0');
  });

  it('lists the unsupported SEV features carried in exit_info_2', () => {
    const text = formatTermination(decodeGhcbTermination(0x20n, (1n << 4n) | (1n << 11n)));
    expect(text).toContain('GHCB_SNP_UNSUPPORTED');
    // The mask says which cause happened: only that one is named, by the APM's feature names.
    expect(text).toContain('SEV_STATUS enables features this kernel does not implement: ReflectVC (bit 4), SecureTSC (bit 11)');
    expect(text).not.toContain('CC blob');
  });
});

describe('decodeGhcbMsrValue', () => {
  it('SEV info response 0x0002000133000001', () => {
    const d = decodeGhcbMsrValue(0x0002000133000001n);
    expect(d.code).toBe('GHCB_MSR_SEV_INFO_RESP');
    expect(d.kind).toBe('response');
    expect(d.fields.map((f) => [f.name, f.value])).toEqual([
      ['max protocol', 2n],
      ['min protocol', 1n],
      ['C-bit position', 51n],
    ]);
  });

  it('CPUID request 0x8000001F/EBX', () => {
    const d = decodeGhcbMsrValue(0x8000001f40000004n);
    expect(d.code).toBe('GHCB_MSR_CPUID_REQ');
    expect(d.fields[0].value).toBe(0x8000001fn);
    expect(d.fields[1]).toMatchObject({ value: 1n, note: 'EBX' });
    expect(d.summary).toContain('EBX');
  });

  it('CPUID response carries the value in 63:32', () => {
    const d = decodeGhcbMsrValue((0x1234n << 32n) | (3n << 30n) | 5n);
    expect(d.summary).toContain('EDX = 0x1234');
  });

  it('PSC request GFN 0x2345 to shared', () => {
    const d = decodeGhcbMsrValue(0x0020000002345014n);
    expect(d.code).toBe('GHCB_MSR_PSC_REQ');
    expect(d.fields[0]).toMatchObject({ name: 'operation', value: 2n, note: 'shared' });
    expect(d.fields[1]).toMatchObject({ name: 'GFN', value: 0x2345n });
    expect(d.summary).toContain('0x2345000');
  });

  it('PSC error response', () => {
    expect(decodeGhcbMsrValue((1n << 63n) | 0x15n).summary).toContain('GHCB_TERM_PSC');
    expect(decodeGhcbMsrValue(0x15n).summary).toContain('success');
  });

  it('register GPA, HV features, VMPL request, preferred GPA', () => {
    expect(decodeGhcbMsrValue(0x7000012n).summary).toContain('GPA 0x7000000');
    expect(decodeGhcbMsrValue(0x3081n).summary).toContain('SNP, SNP_AP_CREATION');
    expect(decodeGhcbMsrValue(0x016n).fields[0]).toMatchObject({ name: 'target VMPL', value: 0n });
    expect(decodeGhcbMsrValue((0xfffffffffffffn << 12n) | 0x11n).summary).toContain('no preferred GPA');
  });

  it('every table code has a name', () => {
    for (const info of [0x1, 0x2, 0x4, 0x5, 0x6, 0x7, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x80, 0x81, 0x100]) {
      expect(ghcbMsrInfoName(info)).toMatch(/^GHCB_MSR_/);
    }
    expect(ghcbMsrInfoName(0x3)).toBeNull();
  });

  it('GPA and unknown codes', () => {
    expect(decodeGhcbMsrValue(0x7000000n).kind).toBe('ghcb-gpa');
    expect(decodeGhcbMsrValue(0n).summary).toContain('no GHCB');
    expect(decodeGhcbMsrValue(0x123n).kind).toBe('unknown');
  });

  it('termination value carries the decoded reason', () => {
    expect(decodeGhcbMsrValue(0x31100n).termination).toMatchObject({ set: 1, code: 3 });
  });
});

describe('explainExitValue', () => {
  it('explains 0x31100 like the CLI should', () => {
    const text = explainExitValue('0x31100');
    expect(text).toMatch(
      /^GHCB MSR protocol termination request: reason set 1 \(SEV_TERM_SET_LINUX\), code 3 \(GHCB_TERM_NOT_VMPL0\): the guest is not running at VMPL0/,
    );
  });

  it('accepts decimal, set:code and the GHCB form', () => {
    expect(explainExitValue(String(0x20100))).toContain('GHCB_SNP_UNSUPPORTED');
    expect(explainExitValue('0x1:0x2')).toContain('GHCB_TERM_PVALIDATE');
    expect(explainExitValue('ghcb:0x20:0x10')).toContain('ReflectVC (bit 4)');
    expect(explainExitValue('ghcb 0x31')).toContain('GHCB page termination request');
  });

  it('explains non-termination values too', () => {
    expect(explainExitValue('0x0020000002345014')).toContain('page state change request');
  });

  it('rejects garbage', () => {
    expect(() => explainExitValue('hello')).toThrow(RangeError);
    expect(() => explainExitValue('16:1')).toThrow(RangeError);
  });
});
