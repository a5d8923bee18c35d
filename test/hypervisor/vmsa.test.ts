import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeVmsa } from '../../src/hypervisor/vmsa.js';
import { makeVmConfig, type CocoMode } from '../../src/hypervisor/vm-config.js';
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { BadInputError } from '../../src/kernel/errors.js';
import { machineConfigFor, type BootOptions } from '../../src/machine/boot.js';
import { Machine } from '../../src/machine/machine.js';
import { LAYOUT } from '../../src/platform/firmware.js';
import { bootDebian, kernelPath } from '../boot/helpers.js';

/*
 * Launch from a VMSA page: the VMSA bzemu writes for its own entry state, fed
 * back with --vmsa, must give the same run (same verdict, instruction count and
 * trace hash, both bzemu's). Offsets checked against the SEV-ES save-area
 * layout (AMD APM vol. 2; Linux's struct sev_es_save_area): RIP 0x178, RSP
 * 0x1d8, RSI 0x330, CR3 0x150, EFER 0xd0, sev_features 0x3b0, vmpl 0xca.
 */
const dir = mkdtempSync(join(tmpdir(), 'bzemu-vmsa-'));

function entryMachine(id: string, mode: CocoMode, entry: 'startup_64' | 'startup_32' = 'startup_64'): Machine {
  const options: Omit<BootOptions, 'kernelPath'> = {
    memSize: 1 << 30, poison: { kind: 'random', seed: 1 }, seed: 1, cmdline: 'console=ttyS0 earlyprintk=ttyS0,115200', loadAddress: 0x2000000,
    gdt: 'boot-protocol', until: 'extract_kernel', budget: 2e8, traceLength: 0, vm: makeVmConfig({ mode }), entry,
  };
  return new Machine(loadKernel(kernelPath(id)), machineConfigFor(options));
}

describe('VMSA layout', () => {
  it('puts the entry registers where the save area has them', () => {
    const m = entryMachine('debian-6.12', 'snp');
    const v = new DataView(encodeVmsa(m.cpu, m.config.vm).buffer);
    expect(v.getUint32(0x178, true)).toBe(0x2000200); // RIP: startup_64
    expect(v.getUint32(0x330, true)).toBe(LAYOUT.zeroPage); // RSI: boot_params
    expect(v.getUint32(0x1d8, true)).toBe(LAYOUT.stackTop); // RSP
    expect(v.getUint32(0x150, true)).toBe(LAYOUT.pml4); // CR3
    expect(v.getUint32(0xd0, true) & 0x500).toBe(0x500); // EFER.LME|LMA
    expect(v.getBigUint64(0x3b0, true)).toBe(1n); // sev_features: SNPActive
    expect(v.getUint8(0xca)).toBe(0); // vmpl
    expect(v.getUint16(0x012, true) & 0x200).toBe(0x200); // CS attributes: L
  });
});

describe.each(['debian-6.12', 'debian-6.1-cloud'])('%s: vmsa round trip', (id) => {
  it.each(['none', 'sev-es', 'snp'] as const)('%s: boot --vmsa (the VMSA bzemu wrote) gives the same run', (mode) => {
    const m = entryMachine(id, mode);
    const file = join(dir, `${id}-${mode}.vmsa`);
    writeFileSync(file, encodeVmsa(m.cpu, m.config.vm));
    const plain = bootDebian(id, { vm: makeVmConfig({ mode }) });
    let vmsaPage: { flag: boolean; bytes: Uint8Array } | null = null;
    const fromVmsa = bootDebian(id, { vm: makeVmConfig({ mode }), vmsa: file }, (machine) => {
      if (machine.sev && mode === 'snp') vmsaPage = { flag: machine.sev.rmp.isVmsa(LAYOUT.vmsa), bytes: machine.mem.readBytes(LAYOUT.vmsa, 16) };
    });
    expect(plain.verdict).toBe('reached');
    expect([fromVmsa.verdict, fromVmsa.instructions, fromVmsa.traceHash]).toEqual([plain.verdict, plain.instructions, plain.traceHash]);
    if (mode === 'snp') {
      // Under SNP the VMSA is a page of guest memory, private and validated, flagged as a VMSA in the RMP.
      expect(vmsaPage!.flag).toBe(true);
    }
  });
});

describe('a VMSA of the 32-bit entry', () => {
  it('has a 32-bit code segment (D, not L) and protected mode, and boots as --entry startup_32 does', () => {
    const m = entryMachine('debian-6.12', 'snp', 'startup_32');
    const bytes = encodeVmsa(m.cpu, m.config.vm);
    const v = new DataView(bytes.buffer);
    expect(v.getUint16(0x012, true)).toBe(0xc9b); // CS attributes: G, D, present, code (APM save-area layout)
    expect(v.getUint32(0x178, true)).toBe(0x2000000); // RIP: startup_32
    const file = join(dir, 'entry32.vmsa');
    writeFileSync(file, bytes);
    const direct = bootDebian('debian-6.12', { vm: makeVmConfig({ mode: 'snp' }), entry: 'startup_32' });
    const fromVmsa = bootDebian('debian-6.12', { vm: makeVmConfig({ mode: 'snp' }), vmsa: file });
    expect(direct.verdict, direct.reason).toBe('reached');
    expect([fromVmsa.verdict, fromVmsa.instructions, fromVmsa.traceHash]).toEqual([direct.verdict, direct.instructions, direct.traceHash]);
    expect(fromVmsa.milestones.map((x) => x.name)).toEqual(direct.milestones.map((x) => x.name));
  });
});

describe('the VMSA really sets the entry state', () => {
  it('a VMSA whose RSI points away from the zero page runs differently', () => {
    const m = entryMachine('debian-6.12', 'none');
    const b = encodeVmsa(m.cpu, m.config.vm);
    new DataView(b.buffer).setUint32(0x330, 0x30000, true); // RSI: not boot_params
    const file = join(dir, 'rsi.vmsa');
    writeFileSync(file, b);
    const plain = bootDebian('debian-6.12', { vm: makeVmConfig({ mode: 'none' }) });
    const moved = bootDebian('debian-6.12', { vm: makeVmConfig({ mode: 'none' }), vmsa: file });
    expect([moved.verdict, moved.traceHash]).not.toEqual([plain.verdict, plain.traceHash]);
  });
});

describe('VMSA refusals (one-line bad input)', () => {
  const bytes = (): Uint8Array => { const m = entryMachine('debian-6.12', 'snp'); return encodeVmsa(m.cpu, m.config.vm); };
  const refuse = (data: Uint8Array, mode: CocoMode): string => {
    const file = join(dir, `bad-${Math.random().toString(16).slice(2)}.vmsa`);
    writeFileSync(file, data);
    try {
      bootDebian('debian-6.12', { vm: makeVmConfig({ mode }), vmsa: file });
    } catch (e) {
      expect(e).toBeInstanceOf(BadInputError);
      return (e as Error).message;
    }
    throw new Error('the VMSA was accepted');
  };

  it('not exactly 4 KiB', () => {
    expect(refuse(bytes().subarray(0, 4000), 'snp')).toMatch(/exactly 4096 bytes, this one is 4000/);
  });
  it('vmpl not 0', () => {
    const b = bytes();
    b[0xca] = 1;
    expect(refuse(b, 'snp')).toMatch(/vmpl is 1/);
  });
  it('sev_features that differ from the VM\'s', () => {
    expect(refuse(bytes(), 'sev-es')).toMatch(/sev_features 0x1 differ from the VM's 0x0/);
  });
});
