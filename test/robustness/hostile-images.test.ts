/**
 * Hostile images: mutated real kernels must end in a verdict or a one-line
 * bad-input error, never an internal error, a hang or a run-away allocation.
 * A fixed-seed subset of `npm run fuzz-inputs` (random mutations of every
 * input), the deterministic sweeps of the self-built kernel (every truncation
 * boundary, setup-header and ELF-header fields at edge values, the layout
 * symbols), a CLI spot check, and the loader fixes the fuzzer led to.
 */
import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isBadInputError } from '../../src/kernel/errors.js';
import { loadKernel } from '../../src/kernel/kernel-image.js';
import { findLandmarks } from '../../src/kernel/landmarks.js';
import { boot } from '../../src/machine/boot.js';
import {
  CASE_BOOT,
  cliDisagreement,
  defaultInputs,
  describeBug,
  loadInputs,
  makeScratchDir,
  planCase,
  planSweep,
  runCase,
  tally,
  type CasePlan,
  type CaseResult,
  type LoadedFile,
  type LoadedInput,
  type Role,
  type SweepEntry,
} from './cases.js';
import { SETUP_HEADER_FIELDS } from './layout.js';
import { BZIMAGE_FAMILIES, ELF_FAMILIES, readField, withField } from './mutate.js';
import { Rng } from './rng.js';
import { fieldSweeps, truncations } from './sweep.js';

const SEED = 1;
const RANDOM_CASES = 300;
/** A case over this is a hang (the script's default bound). */
const TIME_LIMIT_MS = 10_000;

let inputs: LoadedInput[] = [];
let scratch = '';

beforeAll(() => {
  inputs = loadInputs(defaultInputs());
  scratch = makeScratchDir();
}, 1_800_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function input(name: string): LoadedInput {
  const found = inputs.find((i) => i.input.name === name);
  if (!found) throw new Error(`no input ${name}`);
  return found;
}

/** Run cases, print their tally, and fail listing every bug. */
function runAll(label: string, plans: Iterable<CasePlan>, replay: string): CaseResult[] {
  const results: CaseResult[] = [];
  for (const plan of plans) results.push(runCase(plan, scratch, TIME_LIMIT_MS));
  const slowest = Math.max(...results.map((r) => r.ms));
  console.log(`${label}: ${results.length} cases, ${[...tally(results)].map(([k, n]) => `${k} ${n}`).join(', ')}; max case ${slowest.toFixed(0)} ms`);
  const bugs = results.filter((r) => r.outcome.kind === 'bug').map((r) => describeBug(r, replay));
  expect(bugs, bugs.join('\n\n')).toEqual([]);
  expect(slowest).toBeLessThan(TIME_LIMIT_MS);
  return results;
}

function* sweepPlans(entries: Iterable<SweepEntry>): Generator<CasePlan> {
  let index = 0;
  for (const e of entries) yield planSweep(e, index++);
}

function* entriesOf(name: string, role: Role, items: (f: LoadedFile) => Iterable<SweepEntry['item']>): Generator<SweepEntry> {
  const i = input(name);
  const file = i.files[role]!;
  for (const item of items(file)) yield { input: i, role, item };
}

describe('mutation generation', () => {
  it('is a pure function of (seed, case): same bytes and description twice, others for another seed', () => {
    for (let index = 0; index < 10; index++) {
      const a = planCase(inputs, 7, index);
      const b = planCase(inputs, 7, index);
      expect(b.description).toBe(a.description);
      expect(Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes))).toBe(0);
    }
    const seven = Array.from({ length: 10 }, (_, i) => planCase(inputs, 7, i).description);
    const eight = Array.from({ length: 10 }, (_, i) => planCase(inputs, 8, i).description);
    expect(eight).not.toEqual(seven);
  });

  it('the generator repeats its sequence for a seed and spreads its values', () => {
    const draw = (seed: number): number[] => { const r = new Rng(seed); return Array.from({ length: 1000 }, () => r.below(10)); };
    expect(draw(3)).toEqual(draw(3));
    expect(draw(4)).not.toEqual(draw(3));
    const counts = new Array<number>(10).fill(0);
    for (const v of draw(3)) counts[v]!++;
    for (const c of counts) expect(c).toBeGreaterThan(50);
  });

  it('never changes the original files', () => {
    const digest = (): string[] => inputs.flatMap((i) => Object.values(i.files).map((f) => createHash('sha256').update(f.bytes).digest('hex')));
    const before = digest();
    for (let index = 0; index < 60; index++) planCase(inputs, SEED, index);
    expect(digest()).toEqual(before);
  });
});

describe('hostile images: every case ends in a verdict or a one-line bad-input error', () => {
  let random: CaseResult[] = [];

  it(`${RANDOM_CASES} random mutations of every input (seed ${SEED})`, () => {
    random = runAll('random', Array.from({ length: RANDOM_CASES }, (_, i) => planCase(inputs, SEED, i)), `--seed ${SEED}`);
    // The mutations must bite and must not all be rejected: both outcomes are common.
    const counts = tally(random);
    expect(counts.get('bad input') ?? 0).toBeGreaterThan(RANDOM_CASES / 10);
    expect(random.filter((r) => r.outcome.kind === 'verdict').length).toBeGreaterThan(RANDOM_CASES / 10);
    const families = new Set(random.map((r) => r.family));
    for (const f of [...BZIMAGE_FAMILIES, ...ELF_FAMILIES]) expect(families, f).toContain(f);
    expect(new Set(random.map((r) => r.input)).size).toBe(inputs.length);
  }, 600_000);

  it('a truncation at any structure boundary is bad input (self-built bzImage and ELF, both files of the ELF input)', () => {
    const entries = [
      ...entriesOf('selfbuilt-bzimage', 'kernel', (f) => truncations(f.bytes, f.layout)),
      ...entriesOf('selfbuilt-elf', 'kernel', (f) => truncations(f.bytes, f.layout)),
      ...entriesOf('selfbuilt-elf', 'companion', (f) => truncations(f.bytes, f.layout)),
    ];
    const results = runAll('truncations', sweepPlans(entries), '--sweep');
    const accepted = results.filter((r) => r.outcome.kind !== 'bad-input').map((r) => `${r.input} ${r.role}: ${r.description}`);
    expect(accepted).toEqual([]);
  }, 600_000);

  it("the issue's nine setup-header fields at every edge value", () => {
    const nine = SETUP_HEADER_FIELDS.slice(0, 9);
    expect(nine.map((f) => f.name)).toEqual(['setup_sects', 'version', 'xloadflags', 'payload_offset', 'payload_length', 'init_size', 'pref_address', 'kernel_alignment', 'relocatable_kernel']);
    const results = runAll('setup header', sweepPlans(entriesOf('selfbuilt-bzimage', 'kernel', (f) => fieldSweeps(f.bytes, f.layout, nine))), '--sweep');
    expect(results.length).toBeGreaterThan(9 * 10);
  }, 600_000);

  it('ELF header fields and the layout symbols at every edge value', () => {
    const elf = [...entriesOf('selfbuilt-elf', 'kernel', (f) => fieldSweeps(f.bytes, f.layout))];
    const chosen = elf.filter((e) => e.item.family === 'elf-header' || /^symbol (_end|_bss|_ebss) st_value/.test(e.item.description));
    const results = runAll('ELF header and symbols', sweepPlans(chosen), '--sweep');
    expect(results.filter((r) => r.family === 'symbol-table').length).toBeGreaterThan(30);
  }, 600_000);

  it('the CLI agrees: one stderr line and exit 2 for bad input, the same verdict and exit code otherwise', () => {
    expect(random.length).toBe(RANDOM_CASES);
    const bad = random.filter((r) => r.outcome.kind === 'bad-input').slice(0, 4);
    const verdicts = random.filter((r) => r.outcome.kind === 'verdict').slice(0, 3);
    const disagreements = [...bad, ...verdicts]
      .map((r) => [r, cliDisagreement(planCase(inputs, SEED, r.index), r, scratch)] as const)
      .filter(([, problem]) => problem !== null)
      .map(([r, problem]) => `case ${r.index} (${r.description}): ${problem}`);
    expect(disagreements).toEqual([]);
  }, 600_000);
});

describe('loader fixes found by the fuzzer', () => {
  /** Boot the files (bytes are written to the scratch directory first) and return the bad-input message. */
  function badInput(files: { kernel: Uint8Array | string; bzImage?: Uint8Array | string; symbols?: Uint8Array | string }): string {
    const path = (name: string, v: Uint8Array | string | undefined): string | undefined => {
      if (v === undefined || typeof v === 'string') return v;
      const p = join(scratch, `fix-${name}`);
      writeFileSync(p, v);
      return p;
    };
    const kernelPath = path('kernel', files.kernel)!;
    const bzImage = path('bzimage', files.bzImage);
    const symbols = path('symbols', files.symbols);
    let err: unknown = null;
    try {
      boot({
        kernelPath,
        ...(bzImage !== undefined ? { bzImage } : {}),
        ...(symbols !== undefined ? { symbols } : {}),
        memSize: CASE_BOOT.memSize,
        poison: { kind: 'zero' },
        seed: 1,
        cmdline: '',
        loadAddress: CASE_BOOT.loadAddress,
        gdt: 'boot-protocol',
        until: 'extract_kernel',
        budget: 1000,
        traceLength: 0,
      });
    } catch (e) {
      err = e;
    }
    expect(isBadInputError(err), String(err)).toBe(true);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }

  const bz = (): LoadedFile => input('selfbuilt-bzimage').files.kernel!;
  const elf = (): LoadedFile => input('selfbuilt-elf').files.kernel!;
  const companion = (): string => input('selfbuilt-elf').files.companion!.path;
  const symbolValue = (name: string, value: bigint): Uint8Array => {
    const f = elf();
    if (f.layout.kind !== 'elf' || !f.layout.symtab) throw new Error('no symtab');
    const at = f.layout.symtab.offset + f.layout.symbolIndex.get(name)! * 24 + 8;
    return withField(f.bytes, at, 8, value, name).bytes;
  };

  it('an init_size beyond RAM is bad input, not an internal error', () => {
    const big = withField(bz().bytes, 0x260, 4, 0x80000000n, 'init_size').bytes;
    expect(badInput({ kernel: big })).toMatch(/^init_size 0x80000000 does not fit: the kernel needs 2048 MiB from its load address, RAM is 256 MiB/);
  });

  it('a kernel_alignment that is not a power of two is bad input (it made a false "reached" at instruction 923)', () => {
    for (const align of [0x200080n, 0n, 0x300000n]) {
      const b = withField(bz().bytes, 0x230, 4, align, 'kernel_alignment').bytes;
      expect(badInput({ kernel: b })).toBe(`kernel_alignment 0x${align.toString(16)} is not a power of two: the decompressor uses it as an alignment mask`);
    }
    // Powers of two other than the built-in one still boot.
    const ok = withField(bz().bytes, 0x230, 4, 0x1000000n, 'kernel_alignment').bytes;
    writeFileSync(join(scratch, 'align-ok'), ok);
    expect(loadKernel(join(scratch, 'align-ok')).header.kernelAlignment).toBe(0x1000000);
  });

  it('an image that ends before startup_64 is bad input', () => {
    // The protected-mode part cut to 0x100 bytes, with syssize and the payload shrunk to match.
    const f = bz();
    if (f.layout.kind !== 'bzimage') throw new Error('not a bzImage');
    let b: Uint8Array = f.bytes.slice(0, f.layout.protectedMode + 0x100);
    b = withField(b, 0x1f4, 4, 0x10n, 'syssize').bytes;
    b = withField(b, 0x248, 4, 0n, 'payload_offset').bytes;
    b = withField(b, 0x24c, 4, 0x10n, 'payload_length').bytes;
    expect(badInput({ kernel: b })).toMatch(/only 256 bytes: it ends before the 64-bit entry point \(startup_64 at 0x200\)/);
  });

  it("an init_size smaller than the decompressor's _end is bad input (from the code, and from the symbols)", () => {
    const small = withField(bz().bytes, 0x260, 4, 0x180000n, 'init_size').bytes;
    expect(badInput({ kernel: small })).toMatch(/init_size 0x180000 is smaller than the decompressor's _end 0x1a5000 \(from startup_64's code\)/);
    expect(badInput({ kernel: elf().bytes, bzImage: small })).toMatch(/init_size 0x180000 is smaller than the decompressor's _end 0x1a5000 \(from the symbol table\)/);
  });

  it('compressed-vmlinux segments are checked against init_size before the flat image is allocated', () => {
    const f = elf();
    if (f.layout.kind !== 'elf') throw new Error('not an ELF');
    // p_vaddr of the second PT_LOAD (.data, .bss) near 1 GiB would have allocated a 1 GiB flat image.
    const second = f.layout.phoff + 56;
    expect(readField(f.bytes, second, 4)).toBe(1n);
    const far = withField(f.bytes, second + 16, 8, 0x3fff0000n, 'p_vaddr').bytes;
    const rss = process.memoryUsage().rss;
    expect(badInput({ kernel: far, bzImage: companion() })).toMatch(/^compressed vmlinux segments end at 0x3fff[0-9a-f]+, past the setup header's init_size 0x12d7000$/);
    expect(process.memoryUsage().rss - rss).toBeLessThan(256 << 20);
  });

  it('layout symbols that contradict the segments are a corrupt symbol table (ELF kernel and --symbols)', () => {
    expect(badInput({ kernel: symbolValue('_end', 0x40000000n), bzImage: companion() })).toBe(
      'corrupt symbol table: _end (0x40000000) lies past the end of the loadable segments (0x1a5000)',
    );
    expect(badInput({ kernel: symbolValue('_bss', 1n), bzImage: companion() })).toBe(
      "corrupt symbol table: _bss (0x1) lies inside the segments' file bytes (they end at 0x147200)",
    );
    expect(badInput({ kernel: symbolValue('_ebss', 0x200000n), bzImage: companion() })).toBe('corrupt symbol table: _ebss (0x200000) lies past _end (0x1a5000)');
    expect(badInput({ kernel: bz().path, symbols: symbolValue('_end', 0x1000n) })).toMatch(/^corrupt symbol table in \S+fix-symbols: _ebss \(0x183088\) lies past _end \(0x1000\)$/);
  });

  it('the unmutated inputs still load, with _end from the symbols equal to the landmark', () => {
    const k = loadKernel(elf().path, { bzImage: companion() });
    expect(k.end).toBe(0x1a5000);
    expect(k.landmarks.end).toBe(k.end);
    expect(loadKernel(bz().path, { symbols: elf().path }).end).toBe(0x1a5000);
  });

  it('the .bss clear is the last rep stosq before the extract_kernel call (native search, same result)', () => {
    const img = new Uint8Array(0x400);
    const stosq = [0xf3, 0x48, 0xab];
    img.set(stosq, 0x280);
    img.set(stosq, 0x2f0);
    img.set(stosq, 0x320); // after the call: not the .bss clear
    img.set([0xe8, 0x10, 0x00, 0x00, 0x00, 0x4c, 0x89, 0xfe, 0xff, 0xe0], 0x300);
    const lm = findLandmarks(img);
    expect(lm).toMatchObject({ extractKernelCall: 0x300, extractKernel: 0x315, kernelJump: 0x308, bssClear: 0x2f0 });
    expect(findLandmarks(img.slice().fill(0, 0x280, 0x300)).bssClear).toBeNull();
    // startup_64's `movl BP_init_size(%rsi),%ebx; subl $_end,%ebx` is looked for in its first 0x400 bytes only.
    const end = [0x8b, 0x9e, 0x60, 0x02, 0x00, 0x00, 0x81, 0xeb, 0x00, 0x50, 0x1a, 0x00];
    const withEnd = new Uint8Array(0x1000);
    withEnd.set(end, 0x210);
    expect(findLandmarks(withEnd).end).toBe(0x1a5000);
    const late = new Uint8Array(0x1000);
    late.set(end, 0x600);
    expect(findLandmarks(late).end).toBeNull();
  });
});
