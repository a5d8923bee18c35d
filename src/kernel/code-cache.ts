import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';
import { threadId } from 'node:worker_threads';

/*
 * Running a CommonJS file as Node's loader would (wrapped, with its own
 * require), but compiled with a V8 code cache kept in a file: Node compiles
 * its modules without one. V8 checks a cache against the source's length
 * and its own version and flags and rejects one that does not fit; callers
 * name the cache file by what V8 does not check. Used for the decoder's glue
 * code (src/cpu/iced.ts) and the bundled CLI (src/cli/launch.ts).
 */
export interface CachedRun {
  /** What the file exported. */
  exports: unknown;
  /** Whether V8 took the cache file (false: there was none, or it was rejected). */
  cacheUsed: boolean;
  /** Write the cache now: it then holds every function compiled so far. */
  writeCache(): void;
}

/** `globals`: names the file sees instead of the real globals (parameters of its wrapper). */
export function runCommonJsCached(file: string, source: string, cacheFile: string, globals: Record<string, unknown> = {}): CachedRun {
  let cached: Buffer | undefined;
  try {
    cached = readFileSync(cacheFile);
  } catch {
    cached = undefined;
  }
  const names = Object.keys(globals);
  const script = new Script(`(function (exports, require, module, __filename, __dirname${names.map((n) => `, ${n}`).join('')}) {${source}\n})`, { filename: file, cachedData: cached });
  const cacheUsed = cached !== undefined && script.cachedDataRejected !== true;
  const wrapper = script.runInThisContext() as (e: object, r: NodeRequire, m: { exports: object }, f: string, d: string, ...g: unknown[]) => void;
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, createRequire(file), module, file, dirname(file), ...names.map((n) => globals[n]));
  return {
    exports: module.exports,
    cacheUsed,
    writeCache(): void {
      // Written aside (one file per process and thread: a fuzz campaign's workers start together) and renamed: nobody
      // reads half a file or a mix of two. A read-only or missing cache directory costs only the compile time.
      try {
        mkdirSync(dirname(cacheFile), { recursive: true });
        const part = `${cacheFile}.${process.pid}.${threadId}.part`;
        writeFileSync(part, script.createCachedData());
        renameSync(part, cacheFile);
      } catch {
        // nothing to do
      }
    },
  };
}
