import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  cacheDir,
  debianKernelManifest,
  debianKernelPath,
  ensureDebianKernel,
  fetchScriptPath,
  parseKernelConfig,
  parseSystemMap,
} from '../../src/kernel/kernel-cache.js';
import { FETCH_TIMEOUT_MS, realKernel, type RealKernel } from './fixtures.js';

const ID = 'debian-6.1-cloud';

function run(args: string[], env: Record<string, string> = {}): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('bash', [fetchScriptPath(), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
    timeout: FETCH_TIMEOUT_MS,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** The KERNEL lines of the script's output, as id -> path. */
function kernelLines(stdout: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of stdout.split('\n')) {
    const x = /^KERNEL (\S+) (.+)$/.exec(l);
    if (x) m.set(x[1]!, x[2]!);
  }
  return m;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('kernels/debian.json', () => {
  it('lists the 6.12 and 6.1-cloud series with consistent fields', () => {
    const series = debianKernelManifest();
    const ids = series.map((s) => s.id);
    expect(ids).toContain('debian-6.12');
    expect(ids).toContain('debian-6.1-cloud');
    expect(new Set(ids).size).toBe(ids.length);
    for (const s of series) {
      const re = new RegExp(s.packageRegex);
      expect(s.lastVerifiedSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(['gzip', 'bzip2', 'lzma', 'xz', 'lzo', 'lz4', 'zstd']).toContain(s.compression);
      expect(s.lastVerifiedPackage).toMatch(re);
      expect(re.exec(s.lastVerifiedPackage!)![1]).toBe(s.lastVerifiedVersion);
    }
    const byId = new Map(series.map((s) => [s.id, s]));
    expect(byId.get('debian-6.12')!.compression).toBe('zstd');
    expect(byId.get('debian-6.1-cloud')!.compression).toBe('lz4');
    expect('linux-image-6.12.117+deb12-amd64-unsigned').toMatch(new RegExp(byId.get('debian-6.12')!.packageRegex));
    expect('linux-image-6.12.117+deb12-amd64-dbg').not.toMatch(new RegExp(byId.get('debian-6.12')!.packageRegex));
    expect('linux-image-6.1.0-56-amd64-unsigned').not.toMatch(new RegExp(byId.get('debian-6.1-cloud')!.packageRegex));
  });
});

describe('fetch-debian-kernels.sh usage', () => {
  it('--help, unknown id, unknown option', () => {
    const h = run(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('KERNEL <id>');
    const u = run(['no-such-kernel']);
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/unknown kernel id 'no-such-kernel'.*debian-6\.12/);
    const o = run(['--frobnicate']);
    expect(o.status).toBe(2);
    expect(o.stderr).toContain('unknown option');
  });

  it('ensureDebianKernel rejects unknown ids without running anything', () => {
    expect(() => ensureDebianKernel('debian-9.9')).toThrow(/unknown Debian kernel id/);
  });
});

describe('the real cache', () => {
  let k: RealKernel;
  beforeAll(() => {
    k = realKernel(ID);
  }, FETCH_TIMEOUT_MS);

  it('debianKernelPath points at the cached vmlinuz whose sha256 is recorded', () => {
    const p = debianKernelPath(ID);
    expect(p).toBe(k.cached.vmlinuzPath);
    expect(p!.startsWith(join(cacheDir(), 'kernels', 'debian', ID) + '/')).toBe(true);
    expect(sha256(readFileSync(p!))).toBe(k.cached.fetched.sha256);
    const sums = readFileSync(join(k.cached.dir, 'SHA256SUMS'), 'utf8');
    expect(sums).toContain(`${k.cached.fetched.sha256}  ${k.cached.fetched.vmlinuz}`);
    expect(ensureDebianKernel(ID)).toBe(p);
  });

  it('offline mode reuses the cache and ends with the machine-readable line', () => {
    const r = run(['--offline', ID]);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[lines.length - 1]).toBe(`KERNEL ${ID} ${k.cached.vmlinuzPath}`);
    expect(lines[lines.length - 2]).toContain(`${k.cached.fetched.package}=${k.cached.fetched.packageVersion}`);
    expect(lines[lines.length - 2]).toContain(`sha256=${k.cached.fetched.sha256}`);
  });

  it('ships a config and a System.map file (placeholder or real) that parse', () => {
    const cfg = parseKernelConfig(readFileSync(k.cached.configPath!, 'utf8'));
    expect(cfg.get('CONFIG_X86_64')).toBe('y');
    expect(cfg.get('CONFIG_KERNEL_LZ4')).toBe('y');
    expect(k.cached.systemMapPath).not.toBeNull();
    const sm = parseSystemMap(readFileSync(k.cached.systemMapPath!, 'utf8'));
    expect(sm.size).toBeGreaterThanOrEqual(1);
  });
});

describe('fetch-debian-kernels.sh against a fake apt (no network)', () => {
  let work: string;
  let cache: string;
  let stubs: string;
  let debDir: string;
  let calls: string;
  let k: RealKernel;
  const NEW = '6.1.0-99';
  const NEW_PKG = `linux-image-${NEW}-cloud-amd64-unsigned`;
  const NEW_RELEASE = `${NEW}-cloud-amd64`;

  beforeAll(() => {
    k = realKernel(ID);
    work = mkdtempSync(join(tmpdir(), 'bzemu-fetch-test-'));
    cache = join(work, 'cache');
    stubs = join(work, 'bin');
    debDir = join(work, 'debs');
    calls = join(work, 'calls.log');
    mkdirSync(stubs);
    mkdirSync(debDir);
    // A fake package of a newer ABI, built from the real kernel with a marker appended
    // (so its sha256 differs from the manifest's).
    const root = join(work, 'pkgroot');
    mkdirSync(join(root, 'boot'), { recursive: true });
    mkdirSync(join(root, 'DEBIAN'));
    const vmlinuz = Buffer.concat([k.bytes, Buffer.from('fake-newer-build')]);
    writeFileSync(join(root, 'boot', `vmlinuz-${NEW_RELEASE}`), vmlinuz);
    writeFileSync(join(root, 'boot', `System.map-${NEW_RELEASE}`), 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n');
    writeFileSync(join(root, 'boot', `config-${NEW_RELEASE}`), 'CONFIG_X86_64=y\nCONFIG_PHYSICAL_START=0x1000000\n');
    writeFileSync(
      join(root, 'DEBIAN', 'control'),
      `Package: ${NEW_PKG}\nVersion: 6.1.999-1\nArchitecture: amd64\nMaintainer: test <test@example.invalid>\nDescription: fake\n`,
    );
    const b = spawnSync('dpkg-deb', ['-Znone', '--root-owner-group', '--build', root, join(debDir, `${NEW_PKG}_6.1.999-1_amd64.deb`)], {
      encoding: 'utf8',
    });
    if (b.status !== 0) throw new Error('dpkg-deb --build failed: ' + b.stderr);
    // apt-cache: lists both the real and the fake newer package; "show" gives versions.
    writeFileSync(
      join(stubs, 'apt-cache'),
      `#!/bin/bash
echo "apt-cache $*" >> ${calls}
case "$1" in
  pkgnames) printf '%s\\n' linux-image-6.1.0-56-cloud-amd64-unsigned ${NEW_PKG} linux-image-6.1.0-56-cloud-amd64-dbg linux-image-6.12.117+deb12-amd64-unsigned ;;
  show) for a; do case "$a" in ${NEW_PKG}) echo "Package: $a"; echo "Version: 6.1.999-1";; linux-image-6.1.0-56-cloud-amd64-unsigned) echo "Version: 6.1.192-2";; esac; done ;;
esac
`,
    );
    // apt-get: "download" copies the fake .deb unless FAKE_APT_FAIL is set.
    writeFileSync(
      join(stubs, 'apt-get'),
      `#!/bin/bash
echo "apt-get $*" >> ${calls}
if [[ -n "\${FAKE_APT_FAIL:-}" ]]; then echo "E: Failed to fetch (simulated)" >&2; exit 100; fi
for a; do case "$a" in ${NEW_PKG}=*) cp ${debDir}/${NEW_PKG}_6.1.999-1_amd64.deb . ; exit 0;; esac; done
echo "E: Unable to locate package" >&2; exit 100
`,
    );
    chmodSync(join(stubs, 'apt-cache'), 0o755);
    chmodSync(join(stubs, 'apt-get'), 0o755);
  }, FETCH_TIMEOUT_MS);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}): Record<string, string> => ({
    PATH: `${stubs}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    BZEMU_CACHE: cache,
    BZEMU_APT_UPDATE: '0',
    ...extra,
  });
  const seriesDir = (): string => join(cache, 'kernels', 'debian', ID);

  it('empty cache and failing apt: NOT AVAILABLE, exit 1', () => {
    const r = run([ID], env({ FAKE_APT_FAIL: '1' }));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(`${ID}: NOT AVAILABLE`);
    expect(kernelLines(r.stdout).size).toBe(0);
  });

  it('fetches the newest package, reports the differences from the manifest', () => {
    writeFileSync(calls, '');
    const r = run([ID], env());
    expect(r.status, r.stderr).toBe(0);
    const dir = join(seriesDir(), NEW);
    const path = join(dir, `vmlinuz-${NEW_RELEASE}`);
    expect(kernelLines(r.stdout).get(ID)).toBe(path);
    const lines = r.stdout.trim().split('\n');
    expect(lines[lines.length - 1]).toBe(`KERNEL ${ID} ${path}`);
    expect(r.stdout).toContain('[fetched]');
    expect(r.stdout).toMatch(/VERSION DIFFERS from manifest lastVerifiedVersion 6\.1\.0-56/);
    expect(r.stdout).toMatch(/SHA256 DIFFERS from manifest/);
    expect(readFileSync(calls, 'utf8')).toMatch(new RegExp(`apt-get download .*${NEW_PKG}=6\\.1\\.999-1`));
    const fetched = JSON.parse(readFileSync(join(dir, 'fetched.json'), 'utf8')) as Record<string, unknown>;
    expect(fetched).toMatchObject({ id: ID, package: NEW_PKG, version: NEW, packageVersion: '6.1.999-1', kernelRelease: NEW_RELEASE });
    expect(fetched['sha256']).toBe(sha256(readFileSync(path)));
    expect(typeof fetched['date']).toBe('string');
    expect(existsSync(join(dir, `System.map-${NEW_RELEASE}`))).toBe(true);
    expect(existsSync(join(dir, `config-${NEW_RELEASE}`))).toBe(true);
    expect(readlinkSync(join(seriesDir(), 'current'))).toBe(NEW);
    const current = JSON.parse(readFileSync(join(seriesDir(), 'current.json'), 'utf8')) as Record<string, unknown>;
    expect(current['vmlinuzPath']).toBe(path);
    // The TS helper reads the same cache.
    const saved = process.env['BZEMU_CACHE'];
    process.env['BZEMU_CACHE'] = cache;
    try {
      expect(debianKernelPath(ID)).toBe(path);
      expect(ensureDebianKernel(ID)).toBe(path);
    } finally {
      if (saved === undefined) delete process.env['BZEMU_CACHE'];
      else process.env['BZEMU_CACHE'] = saved;
    }
  });

  it('is idempotent: a second run downloads nothing', () => {
    writeFileSync(calls, '');
    const r = run([ID], env());
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('[cached]');
    expect(readFileSync(calls, 'utf8')).not.toContain('apt-get download');
  });

  it('re-downloads a cached copy whose checksum no longer verifies', () => {
    appendFileSync(join(seriesDir(), NEW, `vmlinuz-${NEW_RELEASE}`), 'corrupt');
    writeFileSync(calls, '');
    const r = run([ID], env());
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('[fetched]');
    expect(readFileSync(calls, 'utf8')).toContain('apt-get download');
    const path = join(seriesDir(), NEW, `vmlinuz-${NEW_RELEASE}`);
    expect(sha256(readFileSync(path))).toBe(
      (JSON.parse(readFileSync(join(seriesDir(), NEW, 'fetched.json'), 'utf8')) as { sha256: string }).sha256,
    );
  });

  it('falls back to the cache with a warning when the download fails', () => {
    // Pretend the newer one was never fetched; only the real 6.1.0-56 is cached.
    rmSync(join(seriesDir(), NEW), { recursive: true, force: true });
    const copy = join(seriesDir(), '6.1.0-56');
    cpSync(k.cached.dir, copy, { recursive: true });
    // Put the package's placeholder System.map back (the real cache may hold the -dbg one).
    writeFileSync(join(copy, k.cached.fetched.systemMap!), 'ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n');
    const sums = spawnSync('bash', ['-c', 'sha256sum -- vmlinuz-* System.map-* config-* > SHA256SUMS'], { cwd: copy });
    expect(sums.status).toBe(0);
    const r = run([ID], env({ FAKE_APT_FAIL: '1' }));
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/could not download/);
    expect(r.stderr).toMatch(/using the cached version 6\.1\.0-56/);
    expect(r.stdout).toContain('offline: using cached copy');
    expect(r.stdout).toContain('matches manifest last verified');
    expect(kernelLines(r.stdout).get(ID)).toBe(join(seriesDir(), '6.1.0-56', k.cached.fetched.vmlinuz));
    expect(readlinkSync(join(seriesDir(), 'current'))).toBe('6.1.0-56');
  });

  it('--with-system-map warns when no -dbg package can be had', () => {
    writeFileSync(calls, '');
    const r = run(['--with-system-map', ID], env({ FAKE_APT_FAIL: '1' }));
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`${ID}: WARNING: no real System.map`);
    expect(readFileSync(calls, 'utf8')).toContain('apt-get download');
    expect(readFileSync(calls, 'utf8')).toContain('linux-image-6.1.0-56-cloud-amd64-dbg=6.1.192-2');
    expect(kernelLines(r.stdout).get(ID)).toBe(join(seriesDir(), '6.1.0-56', k.cached.fetched.vmlinuz));
  });
});
