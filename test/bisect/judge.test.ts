import { describe, expect, it } from 'vitest';
import { BAD, GOOD, judge, parsePoisonList, SKIP } from '../../src/analysis/bisect/judge.js';
import { firstErrorLine } from '../../src/analysis/bisect/kernel-tree.js';
import type { BootResult } from '../../src/machine/boot.js';

const result = (verdict: BootResult['verdict']): BootResult => ({ verdict } as BootResult);

describe('bisect judgement', () => {
  it('good only when every poison reaches; any real failure is bad; an emulator gap alone is skip', () => {
    expect(judge([result('reached'), result('reached')])).toBe(GOOD);
    expect(judge([result('reached'), result('guest-terminated')])).toBe(BAD);
    expect(judge([result('triple-fault'), result('emulator-gap')])).toBe(BAD);
    expect(judge([result('reached'), result('emulator-gap')])).toBe(SKIP);
    expect(judge([result('budget-exhausted')])).toBe(BAD);
  });

  it('reads --poisons as bzemu boot would run them', () => {
    expect(parsePoisonList('zero,0xff,random:7')).toEqual([
      { name: 'zero', poison: { kind: 'zero' }, seed: 1 },
      { name: '0xff', poison: { kind: 'byte', value: 0xff }, seed: 1 },
      { name: 'random:7', poison: { kind: 'random', seed: 7 }, seed: 7 },
    ]);
    expect(() => parsePoisonList('zero,garbage')).toThrow(/garbage/);
    expect(() => parsePoisonList('')).toThrow(/empty/);
  });

  it("finds the compiler's first error line, else make's", () => {
    expect(firstErrorLine('CC foo.o\nfoo.c:3:1: warning: x\nfoo.c:4:9: error: expected\nfoo.c:9:1: error: later\n')).toBe('foo.c:4:9: error: expected');
    expect(firstErrorLine('make[1]: *** No rule to make target\n')).toBe('make[1]: *** No rule to make target');
  });
});
