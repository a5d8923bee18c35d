/*
 * The shipped CLI, made from tsc's output:
 * - dist/bundle/cli.cjs: the whole CLI as one CommonJS script. Node reads and
 *   links the ~80 modules of dist/src one file at a time, and compiles an ES
 *   module with no code cache; one script compiles once and can take a V8
 *   code cache (a verdict at extract_kernel, a few tenths of a second in
 *   all, spent about a tenth of it on each).
 * - dist/bundle/main.js: its small entry (src/cli/launch.ts), which runs
 *   cli.cjs with that cache.
 * - dist/bundle/worker.js: the fuzz worker, next to them, where the fuzz
 *   executor looks for it (next to itself), as it does in dist/src/analysis/fuzz/.
 * Packages stay outside (iced-x86 loads its WebAssembly and code cache from
 * its own directory).
 */
import { build, type BuildOptions } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..');
const common: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  packages: 'external',
  // Chained to tsc's maps: node --enable-source-maps reports TypeScript lines.
  sourcemap: true,
  logLevel: 'warning',
};
await build({
  ...common,
  entryPoints: { main: join(dist, 'src/cli/launch.js'), worker: join(dist, 'src/analysis/fuzz/worker.js') },
  outdir: join(dist, 'bundle'),
  format: 'esm',
});
await build({
  ...common,
  entryPoints: { cli: join(dist, 'src/cli/main.js') },
  outdir: join(dist, 'bundle'),
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // A CommonJS script has no import.meta: the modules that locate files beside themselves get the script's own URL.
  define: { 'import.meta.url': '__bzemuScriptUrl' },
  banner: { js: '"use strict";\nconst __bzemuScriptUrl = require("node:url").pathToFileURL(__filename).href;' },
});
