import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

/*
 * A real `git bisect run bzemu bisect-run` over a series of commits on
 * Debian's linux-source-6.12 (the test kernels' tree, copied into a git
 * repository by scripts/make-bisect-repo.sh): unrelated changes, one commit
 * that does not build (fixed by the next), and the snp_vmpl regression
 * (kernels/patches/regress.patch) at a random position. The expected first
 * bad commit is the one this test made from the regress patch.
 */

const CLI = resolve('dist/bundle/main.js');
const REGRESS_PATCH = resolve('kernels/patches/regress.patch');

function git(repo: string, ...args: string[]): string {
  return execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_DATE: '2025-01-02T00:00:00Z', GIT_COMMITTER_DATE: '2025-01-02T00:00:00Z' } }).trim();
}

function bisectRepo(): string {
  const out = execFileSync('bash', ['scripts/make-bisect-repo.sh'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 3600_000 });
  const line = out.trim().split('\n').reverse().find((l) => l.startsWith('BISECT_REPO='));
  if (!line) throw new Error('make-bisect-repo.sh printed no BISECT_REPO=');
  return line.slice('BISECT_REPO='.length);
}

type Change = { subject: string; apply: (repo: string) => void };

const append = (file: string, text: string) => (repo: string) => appendFileSync(join(repo, file), text);

/** Unrelated commits: each touches only what rebuilds the decompressor (or nothing that builds). */
const UNRELATED: Change[] = [
  { subject: 'x86/boot/compressed: explain the heap comment', apply: append('arch/x86/boot/compressed/misc.c', '\n/* bisect test: a comment in misc.c */\n') },
  { subject: 'x86/boot/compressed: add a small helper', apply: append('arch/x86/boot/compressed/string.c', '\nstatic inline int bisect_test_helper(int x)\n{\n\treturn x + 1;\n}\n') },
  { subject: 'x86/boot/compressed: Makefile comment', apply: append('arch/x86/boot/compressed/Makefile', '\n# bisect test: a Makefile comment\n') },
  { subject: 'Documentation/x86: boot protocol wording', apply: append('Documentation/arch/x86/boot.rst', '\n.. bisect test: a documentation change\n') },
  { subject: 'x86/boot/compressed: comment in string.c', apply: append('arch/x86/boot/compressed/string.c', '\n/* bisect test: another comment */\n') },
  { subject: 'x86/boot/compressed: comment in kaslr.c', apply: append('arch/x86/boot/compressed/kaslr.c', '\n/* bisect test: a comment in kaslr.c */\n') },
];
const BROKEN = 'int bisect_test_broken = ;\n';

let repo = '';
let regressHash = '';
let brokenHash = '';
let regressPosition = 0;
let run: { status: number; output: string; seconds: number };
let jsonLog = '';

beforeAll(() => {
  repo = bisectRepo();
  spawnSync('git', ['-C', repo, 'bisect', 'reset'], { stdio: 'ignore' });
  git(repo, 'checkout', '-q', '-f', '-B', 'bisect-test', 'bzemu-base');
  git(repo, 'clean', '-fdq');
  // 10 commits: #5 does not build, #6 fixes it, the regression anywhere else but right after the broken one.
  const positions = [1, 2, 3, 4, 7, 8, 9, 10];
  regressPosition = positions[Math.floor(Math.random() * positions.length)];
  console.log(`bisect test: the regression is commit ${regressPosition} of 10`);
  let unrelated = 0;
  for (let pos = 1; pos <= 10; pos++) {
    let subject: string;
    if (pos === regressPosition) {
      git(repo, 'apply', REGRESS_PATCH);
      subject = 'x86/sev: trust snp_vmpl from .bss (the snp_vmpl regression)';
    } else if (pos === 5) {
      appendFileSync(join(repo, 'arch/x86/boot/compressed/misc.c'), BROKEN);
      subject = 'x86/boot/compressed: work in progress (does not build)';
    } else if (pos === 6) {
      const f = join(repo, 'arch/x86/boot/compressed/misc.c');
      writeFileSync(f, readFileSync(f, 'utf8').replace(BROKEN, ''));
      subject = 'x86/boot/compressed: fix the build';
    } else {
      const c = UNRELATED[unrelated++ % UNRELATED.length];
      c.apply(repo);
      subject = c.subject;
    }
    git(repo, 'commit', '-q', '-a', '-m', subject);
    if (pos === regressPosition) regressHash = git(repo, 'rev-parse', 'HEAD');
    if (pos === 5) brokenHash = git(repo, 'rev-parse', 'HEAD');
  }
  jsonLog = join(mkdtempSync(join(tmpdir(), 'bzemu-bisect-')), 'steps.jsonl');
  git(repo, 'bisect', 'start', 'bisect-test', 'bzemu-base');
  const t0 = Date.now();
  const r = spawnSync('git', ['-C', repo, 'bisect', 'run', 'node', CLI, 'bisect-run', '--coco', 'snp', '--json-log', jsonLog], { cwd: repo, encoding: 'utf8', timeout: 3600_000, maxBuffer: 64 << 20 });
  run = { status: r.status ?? -1, output: `${r.stdout}${r.stderr}`, seconds: (Date.now() - t0) / 1000 };
  console.log(run.output.split('\n').filter((l) => l.startsWith('bzemu bisect-run') || /first bad commit/.test(l)).join('\n'));
  console.log(`bisect: ${run.seconds.toFixed(0)} s`);
  spawnSync('git', ['-C', repo, 'bisect', 'reset'], { stdio: 'ignore' });
}, 3_600_000);

describe('git bisect run bzemu bisect-run --coco snp over a 10-commit series', () => {
  it('names the regression commit as the first bad commit', () => {
    expect(run.status, run.output).toBe(0);
    expect(run.output).toMatch(new RegExp(`^${regressHash} is the first bad commit`, 'm'));
  });

  it('tests the commit that does not build first, and skips it with the compiler\'s first error line', () => {
    // Git's own choice of the first commit to test in a 10-commit linear range is #5 (asserted, not assumed).
    const steps = readFileSync(jsonLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { commit: string; exitCode: number; build: { ok: boolean; firstError: string | null }; boots: Array<{ poison: string; words: string }> });
    expect(brokenHash.startsWith(steps[0].commit)).toBe(true);
    expect(steps[0].exitCode).toBe(125);
    expect(steps[0].build.ok).toBe(false);
    expect(steps[0].build.firstError).toMatch(/misc\.c.*error:/);
    expect(run.output).toMatch(/build FAILED after [\d.]+ s: .*misc\.c.*error:.*\| skip \(125\)/);
  });

  it('judges built commits by their boots: bad ones terminate with GHCB_TERM_NOT_VMPL0 under garbage, good ones reach', () => {
    const steps = readFileSync(jsonLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { exitCode: number; boots: Array<{ poison: string; words: string }> });
    const judged = steps.filter((s) => s.exitCode !== 125);
    expect(judged.length).toBeGreaterThan(0);
    for (const s of judged) {
      expect(s.boots.map((b) => b.poison)).toEqual(['zero', '0xff', 'random:1', 'random:2', 'random:3']);
      if (s.exitCode === 0) expect(s.boots.every((b) => b.words === 'reached')).toBe(true);
      else {
        expect(s.exitCode).toBe(1);
        expect(s.boots.find((b) => b.poison === '0xff')!.words).toBe('guest-terminated (1,3) GHCB_TERM_NOT_VMPL0');
        expect(s.boots.find((b) => b.poison === 'zero')!.words).toBe('reached');
      }
    }
  });
});

describe('set-up mistakes stop the bisect (exit 128) with one line', () => {
  /** A small git repository with three commits and `tree` as its content. */
  function fakeRepo(kernelLike: boolean): string {
    const dir = mkdtempSync(join(tmpdir(), 'bzemu-bisect-setup-'));
    if (kernelLike) {
      mkdirSync(join(dir, 'arch/x86/boot/compressed'), { recursive: true });
      writeFileSync(join(dir, 'Kconfig'), '');
    }
    execFileSync('git', ['init', '-q', dir]);
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(dir, 'Makefile'), `# ${i}\n`);
      execFileSync('git', ['-C', dir, 'add', '-A']);
      execFileSync('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-q', '-m', `c${i}`]);
    }
    return dir;
  }

  it('from a subdirectory of the tree, with a .config but no working compiler', () => {
    const dir = fakeRepo(true);
    writeFileSync(join(dir, '.config'), 'CONFIG_X86_64=y\n');
    const sub = spawnSync('node', [CLI, 'bisect-run'], { cwd: join(dir, 'arch/x86/boot'), encoding: 'utf8', env: { ...process.env, CC: '/nonexistent/gcc' } });
    expect(sub.status).toBe(128);
    expect(sub.stdout.trim()).toMatch(/^bzemu bisect-run: cannot bisect: no C compiler: '\/nonexistent\/gcc' does not run/);
  });

  it('a 32-bit configuration is skipped (125), not judged', () => {
    const dir = fakeRepo(true);
    writeFileSync(join(dir, '.config'), '# CONFIG_64BIT is not set\nCONFIG_X86_32=y\n');
    const r = spawnSync('node', [CLI, 'bisect-run', '--no-build'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).toBe(125);
    expect(r.stdout).toMatch(/32-bit only .* \| skip \(125\)$/m);
  });

  it.each([
    ['outside a kernel tree', false, /not inside a Linux kernel source tree/],
    ['a kernel tree without .config', true, /no \.config/],
  ])('%s', (_name, kernelLike, message) => {
    const dir = fakeRepo(kernelLike);
    const step = spawnSync('node', [CLI, 'bisect-run', '--coco', 'snp'], { cwd: dir, encoding: 'utf8' });
    expect(step.status).toBe(128);
    expect(step.stdout.trim().split('\n')).toHaveLength(1);
    expect(step.stdout).toMatch(message);
    execFileSync('git', ['-C', dir, 'bisect', 'start', 'HEAD', 'HEAD~2']);
    const r = spawnSync('git', ['-C', dir, 'bisect', 'run', 'node', CLI, 'bisect-run'], { cwd: dir, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(`${r.stdout}${r.stderr}`).toMatch(/bisect run failed|exit code 128/);
  });
});
