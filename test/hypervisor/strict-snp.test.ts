import { Code, Encoder, Instruction, MemoryOperand, Register } from 'iced-x86';
import { describe, expect, it } from 'vitest';
import { Cpu } from '../../src/cpu/cpu.js';
import { Stop } from '../../src/cpu/host.js';
import { HostStop } from '../../src/hypervisor/host-stop.js';
import { PERM_READ, PERM_WRITE } from '../../src/hypervisor/rmp.js';
import { SevHost, VC_PAGE_NOT_VALIDATED } from '../../src/hypervisor/sev-host.js';
import { getField, markFieldValid, setField } from '../../src/hypervisor/ghcb-page.js';
import { cpuidOptionsFor, makeVmConfig, type VmConfig } from '../../src/hypervisor/vm-config.js';
import { SparseMemory } from '../../src/memory/sparse-memory.js';
import { CpuidPolicy } from '../../src/platform/cpuid-policy.js';
import { PlatformPorts } from '../../src/platform/port-bus.js';
import { bootDebian } from '../boot/helpers.js';

/*
 * Small SNP guests assembled with iced-x86's encoder, run on the CPU with the
 * stub host in front: the RMP rules an SNP processor applies to every guest
 * access (AMD APM vol. 2, "Secure Nested Paging"): a private access to a page
 * that is not validated raises #VC with exit code 0x404 (PAGE_NOT_VALIDATED);
 * a private access at VMPL n > 0 without the page's VMPL n permission is an
 * RMP nested page fault to the host.
 */

const CODE = 0x100000, DATA = 0x300000, IDT = 0x5000, STACK = 0x9000, HANDLER = 0x180000;
const CBIT = 51;

/** Address of the k-th instruction when `instrs` are encoded from `rip`. */
function addressOf(rip: number, instrs: Instruction[], k: number): number {
  return rip + assemble(rip, instrs.slice(0, k)).length;
}

/** Encode instructions one after another from `rip`. */
function assemble(rip: number, instrs: Instruction[]): Uint8Array {
  const enc = new Encoder(64);
  const parts: Uint8Array[] = [];
  let at = rip;
  for (const i of instrs) {
    const n = enc.encode(i, BigInt(at));
    parts.push(enc.takeBuffer());
    at += n;
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

const mem8 = (base: number): MemoryOperand => new MemoryOperand(Register.None, Register.None, 1, BigInt(base), 4, false, Register.None);

/**
 * Long mode, identity map of the first 16 MiB with 2 MiB pages, all private
 * (C-bit set), an IDT whose #VC gate (29) points at HANDLER, which halts.
 */
function guest(vm: VmConfig, code: Instruction[]): { cpu: Cpu; host: SevHost; mem: SparseMemory } {
  const mem = new SparseMemory(64 << 20, { kind: 'zero' });
  const host = new SevHost({ config: vm, memory: mem, policy: new CpuidPolicy(cpuidOptionsFor(vm)), ports: new PlatformPorts(), svsm: vm.svsm ? { caa: 0x3000, base: 48 << 20, size: 16 << 20 } : undefined });
  const cpu = new Cpu(mem, host);
  host.attach(cpu);
  const w64 = (pa: number, lo: number, hi = 0): void => { mem.write32(pa, lo >>> 0); mem.write32(pa + 4, hi >>> 0); };
  const c = 1 << (CBIT - 32);
  w64(0x1000, 0x2003, c);
  w64(0x2000, 0x3003, c);
  for (let i = 0; i < 8; i++) w64(0x3000 + i * 8, i * 0x200000 + 0xe3, c); // accessed and dirty already: a write would hit a TLB entry filled by a read
  cpu.mmu.setCbit(CBIT);
  cpu.cr3Lo = 0x1000;
  cpu.cr0 = 0x80010033;
  cpu.cr4 = 0x20;
  cpu.efer = 0xd00;
  // 64-bit interrupt gate for vector 29 -> HANDLER, selector 0x10 (a flat GDT is not needed: long mode ignores it for delivery here).
  w64(IDT + 29 * 16, (0x10 << 16) | (HANDLER & 0xffff), (HANDLER & 0xffff0000) | 0x8e00);
  w64(IDT + 29 * 16 + 8, 0, 0);
  cpu.idtrBaseLo = IDT;
  cpu.idtrLimit = 0xfff;
  cpu.seg[1] = 0x10;
  cpu.regLo[4] = STACK;
  mem.writeBytes(HANDLER, assemble(HANDLER, [Instruction.create(Code.Hlt)]));
  mem.writeBytes(CODE, assemble(CODE, code));
  cpu.ripLo = CODE;
  cpu.flushTlb();
  return { cpu, host, mem };
}

function run(cpu: Cpu): HostStop | null {
  try {
    cpu.run(1000);
    return null;
  } catch (e) {
    if (e instanceof HostStop) return e;
    throw e;
  }
}

describe('validation state', () => {
  it('a private read of a page that is not validated raises #VC 0x404 into the guest handler, with CR2 = the address', () => {
    const { cpu, host } = guest(makeVmConfig({ mode: 'snp' }), [
      Instruction.createRegMem(Code.Mov_r64_rm64, Register.RAX, mem8(DATA + 0x123)),
      Instruction.create(Code.Hlt),
    ]);
    host.rmp.setLaunchValidated(DATA, 4096, false);
    expect(run(cpu)).toBeNull();
    expect(cpu.stop).toBe(Stop.Halted);
    expect(cpu.curRipLo).toBe(HANDLER);
    expect(cpu.cr2Lo).toBe(DATA + 0x123);
    // The #VC frame: error code (exit code) on top, then the RIP of the faulting mov.
    expect(cpu.mem.read32(cpu.regLo[4])).toBe(VC_PAGE_NOT_VALIDATED);
    expect(cpu.mem.read32(cpu.regLo[4] + 8)).toBe(CODE);
    expect(host.events.some((e) => e.kind === 'vc' && e.detail.includes('0x404'))).toBe(true);
  });
});

describe('VMPL permissions (guest at VMPL1 under an SVSM)', () => {
  const vm = makeVmConfig({ mode: 'snp', svsm: true, vmpl: 1 });

  it('a write to a page VMPL0 left read-only stops the VM with a nested page fault naming page, access and VMPL', () => {
    const code = [
      Instruction.createRegMem(Code.Mov_r64_rm64, Register.RAX, mem8(DATA)), // the read is allowed
      Instruction.createMemReg(Code.Mov_rm64_r64, mem8(DATA + 8), Register.RAX), // the write is not
      Instruction.create(Code.Hlt),
    ];
    const { cpu, host } = guest(vm, code);
    host.rmp.setLaunchPermissions(DATA, 4096, 1, PERM_READ);
    const stop = run(cpu);
    expect(stop).toBeInstanceOf(HostStop);
    expect(stop!.message).toMatch(/write of private page 0x300000 .* at VMPL1, which holds permissions 0x1/);
    // Stopped at the writing instruction, which had no effect.
    expect(cpu.curRipLo).toBe(addressOf(CODE, code, 1));
    expect(host.events.at(-1)).toMatchObject({ kind: 'npf', result: 'VM stopped' });
  });

  it('with read and write granted (execute not needed for data), reads and writes pass', () => {
    const code = [
      Instruction.createRegMem(Code.Mov_r64_rm64, Register.RAX, mem8(DATA)),
      Instruction.createRegMem(Code.Mov_r64_rm64, Register.RBX, mem8(DATA + 16)),
      Instruction.createMemReg(Code.Mov_rm64_r64, mem8(DATA + 8), Register.RAX),
      Instruction.create(Code.Hlt),
    ];
    const { cpu, host } = guest(vm, code);
    host.rmp.setLaunchPermissions(DATA, 4096, 1, PERM_READ | PERM_WRITE);
    expect(run(cpu)).toBeNull();
    expect(cpu.stop).toBe(Stop.Halted);
    expect(cpu.curRipLo).toBe(addressOf(CODE, code, 3));
    expect(cpu.mem.read32(DATA + 8)).toBe(cpu.regLo[0]);
  });

  it('an instruction fetch from a page without execute permission stops the VM', () => {
    const { cpu, host } = guest(vm, [Instruction.create(Code.Nopd), Instruction.create(Code.Hlt)]);
    host.rmp.setLaunchPermissions(CODE, 4096, 1, PERM_READ | PERM_WRITE);
    const stop = run(cpu);
    expect(stop!.message).toMatch(/instruction fetch of private page 0x100000 .* at VMPL1/);
  });

  it('at VMPL0 the same pages are accessible: VMPL0 holds every permission', () => {
    const { cpu, host } = guest(makeVmConfig({ mode: 'snp' }), [
      Instruction.createMemReg(Code.Mov_rm64_r64, mem8(DATA + 8), Register.RAX),
      Instruction.create(Code.Hlt),
    ]);
    host.rmp.setLaunchPermissions(DATA, 4096, 1, 0);
    expect(run(cpu)).toBeNull();
    expect(cpu.stop).toBe(Stop.Halted);
  });

  it('the SVSM\'s own memory is closed to the guest from launch', () => {
    const { host } = guest(vm, [Instruction.create(Code.Hlt)]);
    expect(host.rmp.permissions(48 << 20, 1)).toBe(0);
    expect(host.rmp.permissions(DATA, 1)).toBe(0xf);
  });
});

describe('the GHCB is read through the host\'s view', () => {
  const GHCB = 0x400000;
  /** Register the GHCB (MSR protocol), then a CPUID exit through the GHCB page, as the kernel does. */
  const code = [
    Instruction.createRegU32(Code.Mov_r32_imm32, Register.ECX, 0xc0010130),
    Instruction.createRegU32(Code.Mov_r32_imm32, Register.EAX, ((GHCB >>> 12) << 12) | 0x12),
    Instruction.createRegReg(Code.Xor_r32_rm32, Register.EDX, Register.EDX),
    Instruction.create(Code.Wrmsr),
    Instruction.create(Code.Vmgexit),
    Instruction.createRegU32(Code.Mov_r32_imm32, Register.EAX, GHCB),
    Instruction.create(Code.Wrmsr),
    Instruction.create(Code.Vmgexit),
    Instruction.create(Code.Hlt),
  ];
  /** The CPUID request the guest writes into its GHCB (exit 0x72, leaf 0 in RAX, RCX 0). */
  function request(mem: SparseMemory): void {
    mem.fill(GHCB, 4096, 0);
    setField(mem, GHCB, 'sw_exit_code', 0x72n);
    setField(mem, GHCB, 'rax', 0n);
    setField(mem, GHCB, 'rcx', 0n);
    for (const f of ['sw_exit_code', 'sw_exit_info_1', 'sw_exit_info_2', 'rax', 'rcx'] as const) markFieldValid(mem, GHCB, f);
    mem.write16(GHCB + 0xffa, 2); // protocol version
  }

  it('a GHCB the guest made shared: the host reads the request and answers in it', () => {
    const { cpu, host, mem } = guest(makeVmConfig({ mode: 'snp' }), code);
    host.rmp.pageStateChange(GHCB / 4096, false);
    request(mem);
    expect(run(cpu)).toBeNull();
    expect(getField(mem, GHCB, 'rbx')).not.toBe(0n); // CPUID 0: vendor string in EBX
    expect(host.rmp.findings.filter((f) => f.code === 'ghcb-private')).toEqual([]);
  });

  it('a GHCB left private: the host sees ciphertext, its answer never reaches the guest, and a finding names the GHCB', () => {
    const { cpu, host, mem } = guest(makeVmConfig({ mode: 'snp' }), code);
    request(mem);
    expect(run(cpu)).toBeNull();
    expect(cpu.stop).toBe(Stop.Halted);
    expect(getField(mem, GHCB, 'rbx')).toBe(0n);
    expect(getField(mem, GHCB, 'sw_exit_info_1')).toBe(0n);
    const finding = host.rmp.findings.find((f) => f.code === 'ghcb-private');
    expect(finding?.gpa).toBe(GHCB);
    expect(finding?.detail).toMatch(/GHCB at 0x400000 is private/);
  });
});

describe('--prevalidate on a real kernel (Debian 6.12, SNP)', () => {
  // The decompressor never validates memory itself (head_64.S and sev.c only PVALIDATE
  // pages they convert), so it needs firmware that validated all of RAM, as stage0 does.
  const boot = (prevalidate: 'all' | 'launch' | 'none') => bootDebian('debian-6.12', { vm: makeVmConfig({ mode: 'snp', prevalidate }) });

  it('all: reaches extract_kernel', () => {
    expect(boot('all').verdict).toBe('reached');
  });

  it('launch: the first touch of memory outside the launch pages (the relocated copy\'s stack) raises #VC 0x404 before the kernel has an IDT: triple fault', () => {
    const r = boot('launch');
    expect(r.verdict).toBe('triple-fault');
    expect(r.events.find((e) => e.kind === 'vc')?.detail).toBe('#VC exit 0x404');
    expect(r.instructions).toBeGreaterThan(0);
  });

  it('none: not even the kernel image is validated: the first fetch faults', () => {
    const r = boot('none');
    expect(r.verdict).toBe('triple-fault');
    expect(r.instructions).toBe(0);
    expect(r.events.find((e) => e.kind === 'vc')?.detail).toBe('#VC exit 0x404');
  });

  it('launch/none are refused outside SNP', () => {
    expect(() => makeVmConfig({ mode: 'sev-es', prevalidate: 'launch' })).toThrow(/needs mode snp/);
  });
});
