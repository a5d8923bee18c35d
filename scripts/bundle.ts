/*
 * The shipped CLI as one ES module (and the fuzz worker as another), made
 * from tsc's output. Node reads and links the ~80 modules of dist/src one
 * file at a time: for a verdict at extract_kernel (a few tenths of a second
 * in all) that is about a tenth of the whole process. Packages stay outside
 * (iced-x86 loads its WebAssembly and code cache from its own directory).
 * The worker sits next to the CLI, where the fuzz executor looks for it
 * (next to itself), as it does in dist/src/analysis/fuzz/.
 */
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..');
await build({
  entryPoints: { main: join(dist, 'src/cli/main.js'), worker: join(dist, 'src/analysis/fuzz/worker.js') },
  outdir: join(dist, 'bundle'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  // Chained to tsc's maps: node --enable-source-maps reports TypeScript lines.
  sourcemap: true,
  logLevel: 'warning',
});
