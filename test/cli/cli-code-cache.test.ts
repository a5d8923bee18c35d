import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';
import { bootResultWithoutTime as result, bzemuWithCache as bzemu } from './bundled-cli.js';

/*
 * The shipped CLI runs its bundle with a V8 code cache in the bzemu cache
 * directory (src/cli/launch.ts), written when a boot has finished. A fresh
 * cache directory must get one from a boot and not from a usage error; the
 * next boot must accept it unchanged and print the same; a cache V8 rejects
 * is written again; an unusable directory costs nothing but the compile; and
 * old caches do not pile up.
 */

let kernel = '';
beforeAll(() => {
  kernel = ensureDebianKernel('debian-6.12');
}, 600_000);


const bootArgs = (): string[] => ['boot', kernel, '--until', 'extract_kernel', '--poison', 'zero', '--json'];

const cliCaches = (cache: string): string[] => readdirSync(join(cache, 'v8')).filter((f) => f.startsWith('bzemu-cli-')).sort();

describe('the CLI bundle\'s code cache', () => {
  it('is written by a boot, accepted unchanged by the next, and changes nothing a boot prints', () => {
    const cache = mkdtempSync(join(tmpdir(), 'bzemu-cli-cache-'));
    const usage = bzemu(cache, 'boot', '--no-such-option');
    expect(usage.status).toBe(2);
    expect(readdirSync(cache).includes('v8') ? cliCaches(cache) : []).toEqual([]); // a usage error leaves none
    const first = bzemu(cache, ...bootArgs());
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const files = cliCaches(cache);
    expect(files).toHaveLength(1);
    const path = join(cache, 'v8', files[0]);
    const before = statSync(path);
    expect(before.size).toBeGreaterThan(100_000); // the bundle and the functions the boot compiled
    const second = bzemu(cache, ...bootArgs());
    expect(second.status).toBe(0);
    expect(result(second.stdout)).toEqual(result(first.stdout));
    const after = statSync(path);
    // Rewritten only when V8 rejects it: same inode and modification time means it was accepted.
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
  });

  it('is written again when V8 rejects it, and only the newest four are kept', () => {
    const cache = mkdtempSync(join(tmpdir(), 'bzemu-cli-cache-'));
    expect(bzemu(cache, ...bootArgs()).status).toBe(0);
    const [name] = cliCaches(cache);
    const path = join(cache, 'v8', name);
    const size = statSync(path).size;
    writeFileSync(path, Buffer.alloc(size, 0x5a)); // same length, not a cache
    // Five caches of older bundles, the oldest first.
    for (let k = 0; k < 5; k++) {
      const old = join(cache, 'v8', `bzemu-cli-old${k}.bin`);
      writeFileSync(old, 'x');
      utimesSync(old, 1_000_000 + k, 1_000_000 + k);
    }
    const again = bzemu(cache, ...bootArgs());
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(readFileSync(path).every((b) => b === 0x5a)).toBe(false); // a real cache again
    expect(statSync(path).size).toBeGreaterThan(100_000);
    expect(cliCaches(cache)).toEqual([name, 'bzemu-cli-old2.bin', 'bzemu-cli-old3.bin', 'bzemu-cli-old4.bin'].sort());
  });

  it('is skipped quietly when the cache directory cannot be created', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bzemu-cli-cache-'));
    mkdirSync(join(dir, 'sub'));
    const blocker = join(dir, 'sub', 'a-file');
    writeFileSync(blocker, 'not a directory');
    const r = bzemu(join(blocker, 'cache'), ...bootArgs());
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect((JSON.parse(r.stdout) as { verdict: string }).verdict).toBe('reached');
  });
});
