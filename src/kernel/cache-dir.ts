import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Root of the bzemu cache: $BZEMU_CACHE or ~/.cache/bzemu. */
export function cacheDir(): string {
  const env = process.env['BZEMU_CACHE'];
  return env && env.length > 0 ? resolve(env) : join(homedir(), '.cache', 'bzemu');
}
