/**
 * The host stopped the VM: an exit it cannot resolve (for example a nested
 * page fault on a VMPL permission the RMP denies). Thrown from inside an
 * instruction, so the instruction has no effect; the run ends with the
 * verdict 'host-stopped' at the RIP of that instruction.
 */
export class HostStop extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostStop';
  }
}
