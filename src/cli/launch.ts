#!/usr/bin/env node
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from '../kernel/cache-dir.js';
import { runCommonJsCached } from '../kernel/code-cache.js';

/*
 * The shipped CLI's entry (dist/bundle/main.js): it runs the bundled CLI
 * (cli.cjs beside it, one CommonJS script) with a V8 code cache, as
 * src/cpu/iced.ts does for the decoder. Compiling the bundle and then,
 * function by function, the code a boot first calls is a tenth of a verdict
 * at extract_kernel; the cache holds both, because it is written when a
 * command that boots a kernel has finished.
 *
 * The cache lives in the bzemu cache directory, named by a hash of the
 * bundle's text and by V8's version (V8 itself checks little more than the
 * source's length): a rebuilt bundle never meets a stale cache, and only the
 * newest few are kept. It is written aside and renamed (src/kernel/code-cache.ts),
 * so that concurrent runs (the test suite's) never read half a file. Without
 * a usable cache directory the bundle is just compiled.
 */

/** Commands that run guest code: only their runs leave a cache worth keeping. */
const BOOTING = new Set(['boot', 'fuzz', 'bisect-run']);
/** Exit codes of a usage error, bad input and an internal error (see main.ts): the run stopped early. */
const EARLY_EXITS = new Set([2, 4]);
/** Caches kept in the directory (the newest). */
const KEPT_CACHES = 4;

function launch(): void {
  const file = join(dirname(fileURLToPath(import.meta.url)), 'cli.cjs');
  const source = readFileSync(file, 'utf8');
  const digest = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = join(cacheDir(), 'v8');
  const prefix = 'bzemu-cli-';
  const cacheFile = join(dir, `${prefix}${digest}-v8-${process.versions.v8}-${process.arch}.bin`);
  const run = runCommonJsCached(file, source, cacheFile);
  if (run.cacheUsed || !BOOTING.has(process.argv[2] ?? '')) return;
  process.once('exit', (code) => {
    if (EARLY_EXITS.has(code)) return;
    run.writeCache();
    // Each rebuild of the bundle makes a cache: keep the newest few (checkouts sharing the directory each have theirs).
    try {
      const caches = readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith('.bin')).map((f) => join(dir, f));
      const byAge = caches.map((f) => ({ f, t: statSync(f).mtimeMs })).sort((a, b) => b.t - a.t);
      for (const { f } of byAge.slice(KEPT_CACHES)) rmSync(f, { force: true });
    } catch {
      // Another process pruned at the same time, or the directory is not usable: nothing to do.
    }
  });
}

launch();
