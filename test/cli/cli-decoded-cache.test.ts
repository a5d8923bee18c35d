import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianKernel } from '../../src/kernel/kernel-cache.js';
import { bootResultWithoutTime as result, bzemuWithCache as bzemu } from './bundled-cli.js';

/*
 * The CLI keeps the instructions its boots decoded in the bzemu cache
 * (src/cli/decoded-store.ts), one set per kernel file, and starts the next
 * boot of that kernel from them. Whatever the cache holds (nothing, the
 * records of this kernel, a damaged file, no usable directory), a boot must
 * print the same; a set is written only when a boot decoded something it
 * lacked.
 */

let kernel = '';
let other = '';
beforeAll(() => {
  kernel = ensureDebianKernel('debian-6.12');
  other = ensureDebianKernel('debian-6.1-cloud');
}, 600_000);


const bootArgs = (k: string): string[] => ['boot', k, '--until', 'extract_kernel', '--poison', 'zero', '--json', '--trace', '8'];

const savedSets = (cache: string): string[] => readdirSync(join(cache, 'decoded')).filter((f) => f.startsWith('instructions-')).sort();

describe('the CLI\'s saved decoded instructions', () => {
  it('are saved by a boot, serve the next unchanged, and change nothing a boot prints', () => {
    const cache = mkdtempSync(join(tmpdir(), 'bzemu-decoded-'));
    const first = bzemu(cache, ...bootArgs(kernel));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    const sets = savedSets(cache);
    expect(sets).toHaveLength(1);
    const path = join(cache, 'decoded', sets[0]);
    const before = statSync(path);
    expect(before.size).toBeGreaterThan(50_000); // several hundred instructions
    const second = bzemu(cache, ...bootArgs(kernel));
    expect(second.status).toBe(0);
    expect(result(second.stdout)).toEqual(result(first.stdout));
    // Nothing new was decoded, so nothing was written: every instruction came from the file.
    const after = statSync(path);
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);

    // Another kernel gets a set of its own; the first kernel's stays as it was and still serves it.
    const otherFirst = bzemu(cache, ...bootArgs(other));
    expect(otherFirst.status).toBe(0);
    expect(savedSets(cache)).toHaveLength(2);
    const third = bzemu(cache, ...bootArgs(kernel));
    expect(result(third.stdout)).toEqual(result(first.stdout));
    const last = statSync(path);
    expect([last.ino, last.mtimeMs, last.size]).toEqual([before.ino, before.mtimeMs, before.size]);
  });

  it('are decoded again and saved anew when the file is damaged, and only the newest 24 sets are kept', () => {
    const cache = mkdtempSync(join(tmpdir(), 'bzemu-decoded-'));
    const clean = bzemu(cache, ...bootArgs(kernel));
    const [name] = savedSets(cache);
    const path = join(cache, 'decoded', name);
    const good = readFileSync(path);
    const damaged = Buffer.from(good); // a copy (Buffer.slice would share the bytes)
    damaged[damaged.length >> 1] ^= 0x20;
    writeFileSync(path, damaged);
    // 25 sets of other kernels or decoder versions, the oldest first.
    const old = Array.from({ length: 25 }, (_, k) => `instructions-old${String(k).padStart(2, '0')}.bin`);
    old.forEach((name, k) => {
      writeFileSync(join(cache, 'decoded', name), 'x');
      utimesSync(join(cache, 'decoded', name), 1_000_000 + k, 1_000_000 + k);
    });
    const again = bzemu(cache, ...bootArgs(kernel));
    expect(again.stderr).toBe('');
    expect(again.status).toBe(0);
    expect(result(again.stdout)).toEqual(result(clean.stdout));
    expect(readFileSync(path).equals(good)).toBe(true); // the same records, written again
    expect(savedSets(cache)).toEqual([name, ...old.slice(2)].sort()); // this boot's and the 23 newest others
  });

  it('are skipped quietly when the cache directory cannot be created', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bzemu-decoded-'));
    mkdirSync(join(dir, 'sub'));
    const blocker = join(dir, 'sub', 'a-file');
    writeFileSync(blocker, 'not a directory');
    const reference = bzemu(mkdtempSync(join(tmpdir(), 'bzemu-decoded-')), ...bootArgs(kernel));
    const r = bzemu(join(blocker, 'cache'), ...bootArgs(kernel));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(result(r.stdout)).toEqual(result(reference.stdout));
  });
});
