/**
 * Shared helpers for the kernel tests: the real Debian kernels (fetched on demand with
 * scripts/fetch-debian-kernels.sh) and a small synthetic bzImage.
 */
import { readFileSync } from 'node:fs';
import { cachedDebianKernel, ensureDebianKernel, type CachedDebianKernel } from '../../src/kernel/kernel-cache.js';

export const KERNEL_IDS = ['debian-6.12', 'debian-6.1-cloud'] as const;
export type KernelId = (typeof KERNEL_IDS)[number];

/** beforeAll timeout for fetching (first run downloads ~130 MB, or ~1.4 GB with System.map). */
export const FETCH_TIMEOUT_MS = 10 * 60 * 1000;

export interface RealKernel {
  id: KernelId;
  cached: CachedDebianKernel;
  bytes: Buffer;
}

const memo = new Map<string, RealKernel>();

/** Fetch (if needed) and read a real Debian kernel. */
export function realKernel(id: KernelId, opts: { systemMap?: boolean } = {}): RealKernel {
  const key = `${id}:${opts.systemMap ? 1 : 0}`;
  const hit = memo.get(key);
  if (hit) return hit;
  const path = ensureDebianKernel(id, { systemMap: opts.systemMap ?? false });
  const cached = cachedDebianKernel(id);
  if (!cached || cached.vmlinuzPath !== path) throw new Error(`cache for ${id} does not point at ${path}`);
  const k: RealKernel = { id, cached, bytes: readFileSync(path) };
  memo.set(key, k);
  return k;
}

/** Parse "CONFIG_X=value" lines of the kernel's config file. */
export function configValue(k: RealKernel, name: string): string | undefined {
  if (!k.cached.configPath) return undefined;
  const m = new RegExp(`^${name}=(.*)$`, 'm').exec(readFileSync(k.cached.configPath, 'utf8'));
  return m?.[1];
}

/**
 * A small self-made bzImage: 4 setup sectors (setup_sects = 0), protocol 2.15, a zstd magic
 * payload with the size trailer, valid syssize. Fields can be patched by the caller.
 */
export function syntheticBzImage(): Uint8Array {
  const setupSects = 0; // means 4
  const pmOffset = (4 + 1) * 512;
  const pmLength = 0x1000;
  const b = new Uint8Array(pmOffset + pmLength);
  const dv = new DataView(b.buffer);
  b[0x1f1] = setupSects;
  dv.setUint32(0x1f4, pmLength / 16, true); // syssize
  dv.setUint16(0x1fe, 0xaa55, true);
  b[0x200] = 0xeb;
  b[0x201] = 0x6a; // header ends at 0x26C
  dv.setUint32(0x202, 0x53726448, true); // "HdrS"
  dv.setUint16(0x206, 0x020f, true);
  dv.setUint16(0x20e, 0x300 - 0x200, true); // version string at 0x300
  b.set(Buffer.from('9.9.9-synthetic (test) #1\0'), 0x300);
  b[0x211] = 0x01;
  dv.setUint32(0x230, 0x200000, true);
  b[0x234] = 1;
  b[0x235] = 21;
  dv.setUint16(0x236, 0x0001, true);
  dv.setUint32(0x238, 2047, true);
  dv.setUint32(0x248, 0x400, true); // payload_offset (relative to the protected-mode part)
  dv.setUint32(0x24c, 0x100, true); // payload_length
  dv.setBigUint64(0x258, 0x1000000n, true);
  dv.setUint32(0x260, 0x800000, true);
  b.set([0x28, 0xb5, 0x2f, 0xfd], pmOffset + 0x400);
  dv.setUint32(pmOffset + 0x400 + 0x100 - 4, 0x123456, true);
  return b;
}
