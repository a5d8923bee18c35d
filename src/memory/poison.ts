/**
 * What RAM holds before anyone writes it. Each page's poison depends only on
 * (policy, seed, page number), so results never depend on access order.
 */
export type PoisonPolicy =
  | { kind: 'zero' }
  | { kind: 'byte'; value: number }
  | { kind: 'random'; seed: number };

export function parsePoison(text: string, seed: number): PoisonPolicy {
  if (text === 'zero') return { kind: 'zero' };
  if (text === 'random') return { kind: 'random', seed };
  const m = /^0x([0-9a-fA-F]{1,2})$/.exec(text);
  if (m) return { kind: 'byte', value: parseInt(m[1], 16) };
  throw new Error(`--poison must be random, zero or 0xNN (got '${text}')`);
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
  }
}
