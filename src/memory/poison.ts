/**
 * What RAM holds before anyone writes it. Each page's poison depends only on
 * (policy, seed, page number), so results never depend on access order.
 */
export type PoisonPolicy =
  | { kind: 'zero' }
  | { kind: 'byte'; value: number }
  | { kind: 'random'; seed: number }
  | OverlayPoison;

/**
 * A base poison with some bytes replaced: "everything zero except these
 * garbage bytes", the shape a fuzz campaign's minimizer tests.
 */
export interface OverlayPoison {
  kind: 'overlay';
  base: Exclude<PoisonPolicy, OverlayPoison>;
  /** Per page number: flattened (offset, value) pairs. */
  byPage: ReadonlyMap<number, readonly number[]>;
}

export function parsePoison(text: string, seed: number): PoisonPolicy {
  if (text === 'zero') return { kind: 'zero' };
  if (text === 'random') return { kind: 'random', seed };
  const m = /^0x([0-9a-fA-F]{1,2})$/.exec(text);
  if (m) return { kind: 'byte', value: parseInt(m[1], 16) };
  throw new Error(`--poison must be random, zero or 0xNN (got '${text}')`);
}

/** `base` with the byte at each physical address of `bytes` set to its value. */
export function overlayPoison(base: Exclude<PoisonPolicy, OverlayPoison>, bytes: Iterable<readonly [number, number]>): OverlayPoison {
  const byPage = new Map<number, number[]>();
  for (const [pa, value] of bytes) {
    const pfn = Math.floor(pa / 4096);
    let list = byPage.get(pfn);
    if (list === undefined) byPage.set(pfn, (list = []));
    list.push(pa % 4096, value & 0xff);
  }
  return { kind: 'overlay', base, byPage };
}

/** The policy as the command line spells it (overlays: their base and how many bytes they set). */
export function describePoison(policy: PoisonPolicy): string {
  switch (policy.kind) {
    case 'zero': return 'zero';
    case 'byte': return '0x' + policy.value.toString(16).padStart(2, '0');
    case 'random': return `random:${policy.seed}`;
    case 'overlay': {
      let n = 0;
      for (const l of policy.byPage.values()) n += l.length / 2;
      return `${describePoison(policy.base)}+${n} bytes`;
    }
  }
}

/** Fill a fresh page according to the policy. */
export function poisonPage(policy: PoisonPolicy, pfn: number, page: Uint8Array): void {
  switch (policy.kind) {
    case 'zero':
      return;
    case 'byte':
      page.fill(policy.value);
      return;
    case 'random': {
      // xorshift32 seeded from (seed, pfn): cheap, deterministic, never all-zero.
      let s = (Math.imul(policy.seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(pfn + 1, 0xc2b2ae35)) | 0;
      if (s === 0) s = 0x6d2b79f5;
      const words = new Int32Array(page.buffer, page.byteOffset, page.length >> 2);
      for (let i = 0; i < words.length; i++) {
        s ^= s << 13;
        s ^= s >>> 17;
        s ^= s << 5;
        words[i] = s;
      }
      return;
    }
    case 'overlay': {
      poisonPage(policy.base, pfn, page);
      const list = policy.byPage.get(pfn);
      if (list !== undefined) for (let k = 0; k < list.length; k += 2) page[list[k]] = list[k + 1];
      return;
    }
  }
}

/** The byte the policy puts at physical address `pa` (what an unwritten byte there holds). */
export function poisonByte(policy: PoisonPolicy, pa: number): number {
  const page = new Uint8Array(4096);
  poisonPage(policy, Math.floor(pa / 4096), page);
  return page[pa % 4096];
}
