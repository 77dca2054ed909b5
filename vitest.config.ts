import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/globalSetup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start brokers and agent processes; two at a time suits a 2-core machine.
    maxWorkers: 2,
    minWorkers: 1,
    pool: 'forks',
    reporters: process.env.CI ? ['verbose'] : ['default'],
  },
});
