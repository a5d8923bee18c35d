/**
 * A page of one element (2, 4 or 8 bytes) repeated, little-endian: what a bulk
 * REP STOS writes. Rebuilt only when the element changes; one per CPU.
 */
export class FillPattern {
  private readonly bytes = new Uint8Array(4096);
  private readonly view = new DataView(this.bytes.buffer);
  private size = 0;
  private lo = 0;
  private hi = 0;

  of(size: number, lo: number, hi: number): Uint8Array {
    if (size !== this.size || lo !== this.lo || hi !== this.hi) {
      for (let o = 0; o < 4096; o += size) {
        if (size === 2) this.view.setUint16(o, lo, true);
        else {
          this.view.setUint32(o, lo, true);
          if (size === 8) this.view.setUint32(o + 4, hi, true);
        }
      }
      this.size = size;
      this.lo = lo;
      this.hi = hi;
    }
    return this.bytes;
  }
}
