import type { Cpu } from '../../cpu/cpu.js';
import { disassemble } from '../../cpu/decode.js';
import type { AddressMap } from '../../machine/address-map.js';
import type { TraceTable } from './model.js';

function hex(lo: number, hi: number): string {
  return '0x' + (hi ? hi.toString(16) + (lo >>> 0).toString(16).padStart(8, '0') : (lo >>> 0).toString(16));
}

/**
 * Takes the CPU's last retired RIPs at an event, plus the RIP the event
 * happened at, into a shared table. Called at events only, never per
 * instruction. Each RIP is disassembled the first time it is seen, from the
 * bytes there at that moment: the loaded copy of the decompressor is later
 * overwritten by the kernel it unpacks, so reading the code at the end of the
 * run would show the wrong instructions.
 */
export class TraceWindows {
  private readonly table: TraceTable = { instructions: [], windows: [] };
  private readonly byRip = new Map<string, number>();
  private readonly byWindow = new Map<string, number>();

  constructor(
    private readonly cpu: Cpu,
    private readonly addresses: AddressMap,
  ) {}

  /**
   * The last `length` retired instructions and then `at` (by default the
   * instruction the CPU is executing; null: none, the last retired one is
   * where it happened); returns the window's index.
   */
  capture(length: number, at: readonly [number, number] | null = [this.cpu.curRipLo, this.cpu.curRipHi]): number {
    const before = this.table.instructions.length;
    const ids = this.cpu.recentRips(length).map(([lo, hi]) => this.intern(lo, hi));
    if (at !== null) ids.push(this.intern(at[0], at[1]));
    // Reading code for the report walked page tables without the RMP's check: no such TLB entry may outlive it.
    if (this.table.instructions.length !== before) this.cpu.flushTlb();
    const key = ids.join(',');
    const known = this.byWindow.get(key);
    if (known !== undefined) return known;
    this.table.windows.push(ids);
    this.byWindow.set(key, this.table.windows.length - 1);
    return this.table.windows.length - 1;
  }

  get result(): TraceTable {
    return this.table;
  }

  /**
   * Code bytes at a RIP without touching what the guest can see: no RMP
   * check (it could convert a page or stop the VM), and CR2 and the pending
   * fault as they were (an event can come in the middle of delivering one).
   */
  private peek(lo: number, hi: number): Uint8Array {
    const cpu = this.cpu;
    const observer = cpu.mmu.observer;
    const { cr2Lo, cr2Hi } = cpu;
    const { vector, errorCode, hasErrorCode } = cpu.fault;
    cpu.mmu.observer = null;
    try {
      return cpu.peekLinear(lo, hi, 15);
    } finally {
      cpu.mmu.observer = observer;
      cpu.cr2Lo = cr2Lo;
      cpu.cr2Hi = cr2Hi;
      Object.assign(cpu.fault, { vector, errorCode, hasErrorCode });
    }
  }

  private intern(lo: number, hi: number): number {
    const key = `${hi}:${lo}`;
    const known = this.byRip.get(key);
    if (known !== undefined) return known;
    const bytes = this.peek(lo, hi);
    this.table.instructions.push({
      rip: hex(lo, hi),
      symbol: this.addresses.describe(lo, hi),
      disassembly: bytes.length ? disassemble(bytes, lo, hi) : '(not mapped)',
    });
    this.byRip.set(key, this.table.instructions.length - 1);
    return this.table.instructions.length - 1;
  }
}
