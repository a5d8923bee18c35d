import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * The decoder's glue code is compiled with a V8 code cache in the bzemu cache
 * directory (src/cpu/iced.ts). A fresh process must write it, the next one
 * must accept it (V8 rejects a cache that does not fit, and the file would
 * then be written again), and a cache directory that cannot be written must
 * cost nothing but the compile.
 */

/** Disassemble one NOP in a fresh Node process with this cache directory. */
function decodeOnce(cache: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('node', ['-e', "import('./dist/src/cpu/decode.js').then((d) => console.log(d.disassemble(Uint8Array.of(0x90), 0)))"], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, BZEMU_CACHE: cache },
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('iced-x86 code cache', () => {
  it('is written by the first process and used unchanged by the next', () => {
    const cache = mkdtempSync(join(tmpdir(), 'bzemu-v8-'));
    const first = decodeOnce(cache);
    expect(first.stderr).toBe('');
    expect(first.stdout.trim()).toBe('nop');
    const files = readdirSync(join(cache, 'v8'));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^iced-x86-.*\.bin$/);
    const path = join(cache, 'v8', files[0]);
    const before = statSync(path);
    expect(before.size).toBeGreaterThan(10_000);
    const second = decodeOnce(cache);
    expect(second.stdout.trim()).toBe('nop');
    const after = statSync(path);
    // Rewritten only when V8 rejects it: same inode and modification time means it was accepted.
    expect([after.ino, after.mtimeMs]).toEqual([before.ino, before.mtimeMs]);
    expect(readdirSync(join(cache, 'v8'))).toEqual(files);
  });

  it('is skipped quietly when the cache directory cannot be created', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bzemu-v8-'));
    const blocker = join(dir, 'a-file');
    writeFileSync(blocker, 'not a directory');
    const r = decodeOnce(join(blocker, 'cache'));
    expect(r).toEqual({ status: 0, stdout: 'nop\n', stderr: '' });
  });
});
