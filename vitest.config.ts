import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Real-kernel boots take minutes; the machine has two cores.
    testTimeout: 900_000,
    hookTimeout: 1_800_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
