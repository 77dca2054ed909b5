import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The tests a mutation run uses (scripts/mutate.sh): the ones that prove the mutated modules' promises.
// MUTATE_TESTS (comma-separated globs) overrides the default. Unit tests only by default: Stryker's vitest
// runner runs tests in worker threads, where an in-process agent (serialport's native addon) aborts.
const tests = process.env.MUTATE_TESTS?.split(',') ?? ['test/unit/hub/**/*.test.ts'];

export default defineConfig({ ...base, test: { ...base.test, include: tests } });
