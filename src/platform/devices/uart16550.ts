/**
 * A 16550 UART as the decompressor drives it: always ready to transmit, no
 * receive data, registers that read back what was written. Transmitted bytes
 * become console text.
 */
export class Uart16550 {
  private readonly regs = new Uint8Array(8);
  private divisorLo = 1;
  private divisorHi = 0;
  private readonly bytes: number[] = [];
  /** Told each transmitted byte (a run watching the console for a line). */
  onTransmit: ((byte: number) => void) | null = null;

  constructor(readonly base: number) {
    this.regs[3] = 0x03;
  }

  handles(port: number): boolean {
    return port >= this.base && port < this.base + 8;
  }

  private get dlab(): boolean {
    return (this.regs[3] & 0x80) !== 0;
  }

  read(port: number): number {
    const r = port - this.base;
    switch (r) {
      case 0: return this.dlab ? this.divisorLo : 0;
      case 1: return this.dlab ? this.divisorHi : this.regs[1];
      case 2: return 0xc1; // FIFOs enabled, no interrupt pending
      case 5: return 0x60; // THR and transmitter empty
      case 6: return 0xb0; // CTS, DSR, DCD
      default: return this.regs[r];
    }
  }

  write(port: number, value: number): void {
    const r = port - this.base;
    value &= 0xff;
    if (r === 0 && !this.dlab) {
      this.bytes.push(value);
      this.onTransmit?.(value);
      return;
    }
    if (r === 0) this.divisorLo = value;
    else if (r === 1 && this.dlab) this.divisorHi = value;
    else this.regs[r] = value;
  }

  /** Console text so far, with the serial CR/LF pairs folded to LF. */
  text(): string {
    return Buffer.from(this.bytes).toString('latin1').replace(/\r\n/g, '\n');
  }
}
