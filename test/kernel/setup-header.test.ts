import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseSetupHeader, detectKernelFile, XLF, protectedModePart, setupHeaderBytes } from '../../src/kernel/setup-header.js';
import { locatePayload } from '../../src/kernel/payload.js';
import { kernelInfo, renderInfo } from '../../src/kernel/info.js';
import { debianKernelSeries } from '../../src/kernel/kernel-cache.js';
import { hostToolRuns } from '../host-tools.js';
import { KERNEL_IDS, FETCH_TIMEOUT_MS, realKernel, configValue, syntheticBzImage, type RealKernel } from './fixtures.js';

const fileRuns = hostToolRuns('file');

describe('setup header of the synthetic bzImage', () => {
  it('parses every field at its documented offset', () => {
    const b = syntheticBzImage();
    expect(detectKernelFile(b)).toBe('bzimage');
    const h = parseSetupHeader(b);
    expect(h.setupSects).toBe(0);
    expect(h.effectiveSetupSects).toBe(4);
    expect(h.protectedModeOffset).toBe(5 * 512);
    expect(h.protectedModeLength).toBe(0x1000);
    expect(h.protectedModeSizeFromHeader).toBe(0x1000);
    expect(h.version).toBe(0x020f);
    expect(h.versionText).toBe('2.15');
    expect(h.kernelVersion).toBe('9.9.9-synthetic (test) #1');
    expect(h.headerEnd).toBe(0x26c);
    expect(h.kernelAlignment).toBe(0x200000);
    expect(h.relocatableKernel).toBe(true);
    expect(h.minAlignment).toBe(21);
    expect(h.xloadflagsDecoded).toEqual(['KERNEL_64']);
    expect(h.loadflagsDecoded).toEqual(['LOADED_HIGH']);
    expect(h.cmdlineSize).toBe(2047);
    expect(h.payloadOffset).toBe(0x400);
    expect(h.payloadLength).toBe(0x100);
    expect(h.prefAddress).toBe(0x1000000n);
    expect(h.initSize).toBe(0x800000);
    expect(h.kernelInfoOffset).toBe(0);
    expect(setupHeaderBytes(b, h).length).toBe(0x26c - 0x1f1);
    expect(protectedModePart(b, h).length).toBe(0x1000);
    const p = locatePayload(b, h);
    expect(p).toMatchObject({ format: 'zstd', offset: 5 * 512 + 0x400, length: 0x100, uncompressedSize: 0x123456 });
  });

  it('reports kernel_info_offset only from protocol 2.15', () => {
    const b = syntheticBzImage();
    new DataView(b.buffer).setUint16(0x206, 0x020d, true);
    expect(parseSetupHeader(b).kernelInfoOffset).toBeNull();
  });
});

describe.each(KERNEL_IDS)('setup header of the real Debian kernel %s', (id) => {
  let k: RealKernel;
  beforeAll(() => {
    k = realKernel(id);
  }, FETCH_TIMEOUT_MS);

  it('is the file the cache recorded (sha256), and the manifest build if the version matches', () => {
    const sha = createHash('sha256').update(k.bytes).digest('hex');
    expect(sha).toBe(k.cached.fetched.sha256);
    const series = debianKernelSeries(id);
    expect(k.cached.fetched.package).toMatch(new RegExp(series.packageRegex));
    if (k.cached.fetched.version === series.lastVerifiedVersion) expect(sha).toBe(series.lastVerifiedSha256);
  });

  it('is detected as a bzImage with a valid header', () => {
    expect(detectKernelFile(k.bytes)).toBe('bzimage');
    const h = parseSetupHeader(k.bytes);
    expect(h.bootFlag).toBe(0xaa55);
    expect(h.header).toBe(0x53726448);
    expect(h.version).toBeGreaterThanOrEqual(0x020c);
    expect(h.xloadflags & XLF.KERNEL_64).toBe(XLF.KERNEL_64);
    // The header says how big the protected-mode part is; the file agrees exactly.
    expect(h.protectedModeSizeFromHeader).toBe(h.protectedModeLength);
    expect(h.protectedModeOffset).toBe((h.effectiveSetupSects + 1) * 512);
    expect(h.headerEnd).toBe(0x202 + k.bytes[0x201]!);
  });

  it('carries a version string naming the package version and kernel release', () => {
    const h = parseSetupHeader(k.bytes);
    expect(h.kernelVersion).not.toBeNull();
    expect(h.kernelVersion!.startsWith(k.cached.fetched.kernelRelease + ' ')).toBe(true);
    expect(h.kernelVersion).toContain(`Debian ${k.cached.fetched.packageVersion}`);
    // kernel_version is an offset from 0x200: the string must be inside the setup code.
    expect(0x200 + h.kernelVersionOffset).toBeLessThan(h.protectedModeOffset);
  });

  // Without file(1) there is nothing to compare with: skipped, not passed.
  it.skipIf(!fileRuns)(`agrees with the version libmagic (file(1)) reads, when file is installed${fileRuns ? '' : ' (skipped: file(1) not installed)'}`, () => {
    const r = spawnSync('file', ['-b', k.cached.vmlinuzPath], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('bzImage');
    expect(r.stdout).toContain(`version ${parseSetupHeader(k.bytes).kernelVersion!.split(' ')[0]}`);
  });

  it('has pref_address, alignment and relocatability matching the shipped config', () => {
    const h = parseSetupHeader(k.bytes);
    expect(h.prefAddress).toBe(0x1000000n);
    expect(h.prefAddress).toBe(BigInt(configValue(k, 'CONFIG_PHYSICAL_START')!));
    expect(h.kernelAlignment).toBe(Number(configValue(k, 'CONFIG_PHYSICAL_ALIGN')));
    expect(h.relocatableKernel).toBe(configValue(k, 'CONFIG_RELOCATABLE') === 'y');
    expect(h.minAlignment).toBe(21);
    expect(2 ** h.minAlignment).toBeLessThanOrEqual(h.kernelAlignment);
    expect(h.loadflagsDecoded).toContain('LOADED_HIGH');
    expect(((h.xloadflags & XLF.FIVE_LEVEL) !== 0)).toBe(configValue(k, 'CONFIG_X86_5LEVEL') === 'y');
    expect(h.cmdlineSize).toBe(2047);
    expect(h.kernelInfoOffset).not.toBeNull();
    expect(h.kernelInfoOffset!).toBeLessThan(h.protectedModeLength);
    expect(h.handoverOffset).toBeLessThan(h.protectedModeLength);
  });

  it('has a payload in the expected format, inside the file, and init_size covering it', () => {
    const h = parseSetupHeader(k.bytes);
    const p = locatePayload(k.bytes, h);
    expect(p.format).toBe(debianKernelSeries(id).compression);
    expect(p.format).toBe(id === 'debian-6.12' ? 'zstd' : 'lz4');
    expect(configValue(k, id === 'debian-6.12' ? 'CONFIG_KERNEL_ZSTD' : 'CONFIG_KERNEL_LZ4')).toBe('y');
    expect(p.offset).toBe(h.protectedModeOffset + h.payloadOffset);
    expect(p.offset + p.length).toBeLessThanOrEqual(k.bytes.length);
    expect(h.initSize).toBeGreaterThan(h.payloadLength);
    expect(h.initSize).toBeGreaterThan(h.protectedModeLength);
    // The decompressed kernel is much larger than the compressed one.
    expect(p.uncompressedSize).toBeGreaterThan(2 * p.length);
  });

  it('kernelInfo/renderInfo summarise it', () => {
    const info = kernelInfo(k.cached.vmlinuzPath);
    expect(info.kind).toBe('bzimage');
    expect(info.version).toContain(k.cached.fetched.kernelRelease);
    expect(info.payload?.format).toBe(debianKernelSeries(id).compression);
    expect(info.prefAddress).toBe(0x1000000n);
    expect(info.relocatable).toBe(true);
    expect(info.hasSymbols).toBe(false);
    expect(info.xloadflags?.flags).toContain('KERNEL_64');
    expect(info.loadSize).toBe(parseSetupHeader(k.bytes).protectedModeLength);
    const text = renderInfo(info);
    expect(text).toContain('bzImage');
    expect(text).toContain(k.cached.fetched.kernelRelease);
    expect(text).toMatch(/pref_address\s+0x1000000/);
    expect(text).toMatch(new RegExp(`payload\\s+${info.payload!.format}`));
    expect(text.split('\n').length).toBeLessThan(40);
  });

  it('reads the same bytes from disk as the fixture', () => {
    expect(readFileSync(k.cached.vmlinuzPath).equals(k.bytes)).toBe(true);
  });
});
