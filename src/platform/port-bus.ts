import type { PortBus } from './bare-host.js';
import { Uart16550 } from './devices/uart16550.js';

/** One access to a port nothing answers (recorded for the run report). */
export interface UnclaimedPortAccess {
  port: number;
  write: boolean;
  size: number;
}

/**
 * The platform's I/O ports: COM1 and COM2 UARTs, the POST port 0x80, and a
 * deterministic answer for everything else (reads 0xFF..., writes dropped),
 * which is remembered so a report can say what the guest poked.
 */
export class PlatformPorts implements PortBus {
  readonly com1 = new Uart16550(0x3f8);
  readonly com2 = new Uart16550(0x2f8);
  readonly postCodes: number[] = [];
  readonly unclaimed = new Map<number, UnclaimedPortAccess>();

  portIn(port: number, size: number): number {
    if (this.com1.handles(port)) return this.com1.read(port);
    if (this.com2.handles(port)) return this.com2.read(port);
    if (port === 0x80) return this.postCodes.length ? this.postCodes[this.postCodes.length - 1] : 0;
    if (!this.unclaimed.has(port)) this.unclaimed.set(port, { port, write: false, size });
    return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
  }

  portOut(port: number, size: number, value: number): void {
    if (this.com1.handles(port)) return this.com1.write(port, value);
    if (this.com2.handles(port)) return this.com2.write(port, value);
    if (port === 0x80) {
      if (this.postCodes.length < 4096) this.postCodes.push(value & 0xff);
      return;
    }
    if (!this.unclaimed.has(port)) this.unclaimed.set(port, { port, write: true, size });
  }

  console(): string {
    return this.com1.text() + this.com2.text();
  }
}
