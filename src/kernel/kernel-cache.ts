/**
 * Access to the Debian kernels fetched by scripts/fetch-debian-kernels.sh into
 * ${BZEMU_CACHE:-$HOME/.cache/bzemu}/kernels/debian/<id>/<version>/ (see kernels/debian.json).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cacheDir } from './cache-dir.js';

export interface DebianKernelSeries {
  id: string;
  description?: string;
  /** POSIX ERE on binary package names; capture group 1 is the cache version. */
  packageRegex: string;
  packagePattern?: string;
  lastVerifiedVersion: string;
  lastVerifiedPackage?: string;
  lastVerifiedPackageVersion?: string;
  lastVerifiedSha256: string;
  compression: string;
  relocatable?: boolean;
}

/** Contents of <id>/<version>/fetched.json (written by the fetch script). */
export interface FetchedKernel {
  id: string;
  package: string;
  version: string;
  packageVersion: string;
  kernelRelease: string;
  vmlinuz: string;
  systemMap: string | null;
  config: string | null;
  sha256: string;
  size: number;
  deb: string;
  debSha256: string;
  date: string;
  systemMapSource?: string;
}

export interface CachedDebianKernel {
  fetched: FetchedKernel;
  dir: string;
  vmlinuzPath: string;
  systemMapPath: string | null;
  configPath: string | null;
}

export { cacheDir };

/** Directory of one Debian kernel series in the cache. */
export function debianSeriesDir(id: string): string {
  return join(cacheDir(), 'kernels', 'debian', id);
}

let repoRootMemo: string | null = null;

/** The repository root (holding kernels/debian.json), found upward from this module. */
export function repoRoot(): string {
  if (repoRootMemo) return repoRootMemo;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'kernels', 'debian.json')) && existsSync(join(dir, 'scripts', 'fetch-debian-kernels.sh'))) {
      repoRootMemo = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the bzemu repository root (kernels/debian.json) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

export function manifestPath(): string {
  return process.env['BZEMU_KERNEL_MANIFEST'] ?? join(repoRoot(), 'kernels', 'debian.json');
}

export function fetchScriptPath(): string {
  return join(repoRoot(), 'scripts', 'fetch-debian-kernels.sh');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The series of kernels/debian.json. */
export function debianKernelManifest(): DebianKernelSeries[] {
  const raw: unknown = JSON.parse(readFileSync(manifestPath(), 'utf8'));
  if (!isRecord(raw) || !Array.isArray(raw['series'])) throw new Error(`${manifestPath()}: no "series" array`);
  return raw['series'].map((s: unknown, i: number) => {
    if (!isRecord(s)) throw new Error(`${manifestPath()}: series[${i}] is not an object`);
    for (const k of ['id', 'packageRegex', 'lastVerifiedVersion', 'lastVerifiedSha256', 'compression']) {
      if (typeof s[k] !== 'string') throw new Error(`${manifestPath()}: series[${i}].${k} is not a string`);
    }
    return s as unknown as DebianKernelSeries;
  });
}

export function debianKernelSeries(id: string): DebianKernelSeries {
  const all = debianKernelManifest();
  const s = all.find((x) => x.id === id);
  if (!s) throw new Error(`unknown Debian kernel id '${id}' (known: ${all.map((x) => x.id).join(', ')})`);
  return s;
}

/** The newest cached version of a series (via its `current` link), or null. */
export function cachedDebianKernel(id: string): CachedDebianKernel | null {
  const dir = join(debianSeriesDir(id), 'current');
  const fj = join(dir, 'fetched.json');
  if (!existsSync(fj)) return null;
  let fetched: FetchedKernel;
  try {
    fetched = JSON.parse(readFileSync(fj, 'utf8')) as FetchedKernel;
  } catch {
    return null;
  }
  if (typeof fetched.vmlinuz !== 'string') return null;
  const vdir = join(debianSeriesDir(id), fetched.version);
  const base = existsSync(vdir) ? vdir : dir;
  const vmlinuzPath = join(base, fetched.vmlinuz);
  if (!existsSync(vmlinuzPath)) return null;
  const opt = (n: string | null): string | null => (n && existsSync(join(base, n)) ? join(base, n) : null);
  return { fetched, dir: base, vmlinuzPath, systemMapPath: opt(fetched.systemMap), configPath: opt(fetched.config) };
}

/** Path of the cached vmlinuz of a series, or null if it has not been fetched. */
export function debianKernelPath(id: string): string | null {
  return cachedDebianKernel(id)?.vmlinuzPath ?? null;
}

export interface EnsureOptions {
  /** Also fetch the real System.map (downloads the large -dbg package once). */
  systemMap?: boolean;
  /** Run the script even if a version is cached (to pick up a newer package). */
  refresh?: boolean;
  /** Kill the script after this long (default 15 minutes). */
  timeoutMs?: number;
}

function hasRealSystemMap(k: CachedDebianKernel): boolean {
  return k.systemMapPath !== null && statSync(k.systemMapPath).size > 4096;
}

/**
 * Path of the series' vmlinuz, running scripts/fetch-debian-kernels.sh first if it is not
 * cached (or a real System.map is wanted and missing). Throws if it cannot be had.
 */
export function ensureDebianKernel(id: string, options: EnsureOptions = {}): string {
  debianKernelSeries(id); // unknown id -> clear error before running anything
  const cached = cachedDebianKernel(id);
  if (cached && !options.refresh && (!options.systemMap || hasRealSystemMap(cached))) return cached.vmlinuzPath;
  const args = [fetchScriptPath()];
  if (options.systemMap) args.push('--with-system-map');
  args.push(id);
  const r = spawnSync('bash', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 15 * 60 * 1000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const out = r.stdout ?? '';
  const line = out.split('\n').find((l) => l.startsWith(`KERNEL ${id} `));
  if (r.error || r.status !== 0 || !line) {
    const why = r.error ? r.error.message : `exit status ${r.status}`;
    const tail = `${out}\n${r.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
    throw new Error(`fetch-debian-kernels.sh ${id} failed (${why}):\n${tail}`);
  }
  return line.slice(`KERNEL ${id} `.length).trim();
}

/** Parse System.map text ("<hex address> <type> <name>" lines) into name -> address. */
export function parseSystemMap(text: string): Map<string, bigint> {
  const map = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]+)\s+(\S+)\s+(\S+)/.exec(line);
    if (!m) continue;
    const name = m[3]!;
    if (!map.has(name)) map.set(name, BigInt('0x' + m[1]!));
  }
  return map;
}

const systemMapMemo = new Map<string, Map<string, bigint>>();

/**
 * The parsed real System.map of a series (name -> address; the first of duplicate local
 * names wins). Fetches the kernel and its -dbg package's System.map if needed.
 */
export function systemMapFor(id: string): Map<string, bigint> {
  ensureDebianKernel(id, { systemMap: true });
  const k = cachedDebianKernel(id);
  if (!k || !k.systemMapPath || !hasRealSystemMap(k)) {
    throw new Error(`no real System.map for ${id} (the -dbg package could not be fetched)`);
  }
  const key = k.systemMapPath;
  let map = systemMapMemo.get(key);
  if (!map) {
    map = parseSystemMap(readFileSync(key, 'utf8'));
    systemMapMemo.set(key, map);
  }
  return map;
}

/** Parse a kernel .config into CONFIG_NAME -> value (quotes kept; "n" for "is not set"). */
export function parseKernelConfig(text: string): Map<string, string> {
  const cfg = new Map<string, string>();
  for (const line of text.split('\n')) {
    let m = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/.exec(line);
    if (m) {
      cfg.set(m[1]!, m[2]!);
      continue;
    }
    m = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/.exec(line);
    if (m) cfg.set(m[1]!, 'n');
  }
  return cfg;
}

/** The parsed config-* file shipped with a series' kernel (fetching it if needed). */
export function kernelConfigFor(id: string): Map<string, string> {
  ensureDebianKernel(id);
  const k = cachedDebianKernel(id);
  if (!k?.configPath) throw new Error(`no config file cached for ${id}`);
  return parseKernelConfig(readFileSync(k.configPath, 'utf8'));
}
