import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The tests a mutation run uses (scripts/mutate.sh): the ones that prove the mutated modules' promises.
// MUTATE_TESTS (comma-separated globs) overrides the default. Stryker reruns the covering tests for every
// mutant, so they run in one reused worker thread (no fork and no fresh import per run); the tests named in
// scripts/mutate.sh are in-process ones, which is also the only kind that can kill a mutant.
const tests = process.env.MUTATE_TESTS?.split(',') ?? ['test/unit/hub/**/*.test.ts'];

export default defineConfig({
  ...base,
  test: { ...base.test, include: tests, pool: 'threads', isolate: false, fileParallelism: false },
});
