/** Architectural exception vectors used by the core. */
export const enum Vector {
  DE = 0,
  DB = 1,
  NMI = 2,
  BP = 3,
  UD = 6,
  NM = 7,
  DF = 8,
  TS = 10,
  NP = 11,
  SS = 12,
  GP = 13,
  PF = 14,
  MF = 16,
  AC = 17,
  VC = 29,
}

/**
 * Thrown (one preallocated instance per CPU) when an instruction faults; the run
 * loop catches it, rewinds RIP and delivers the exception through the IDT.
 */
export class CpuFault {
  vector = 0;
  errorCode = 0;
  hasErrorCode = false;
}

/**
 * Thrown when the guest needs something bzemu does not model. Never confused
 * with a guest failure: it becomes the `emulator-gap` verdict.
 */
export class EmulatorGap extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmulatorGap';
  }
}

/** Exceptions that push an error code in long mode. */
export function vectorHasErrorCode(vector: number): boolean {
  return vector === 8 || (vector >= 10 && vector <= 14) || vector === 17 || vector === 21 || vector === 29 || vector === 30;
}
