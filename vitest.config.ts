import { defineConfig } from 'vitest/config';

// One seed for the whole run, drawn here in the main process so every test file's worker inherits the same
// VWLMM_TEST_SEED (tests/support/random.ts) and the summary reporter can say how to replay a failure.
process.env.VWLMM_TEST_SEED ??= String(Math.floor(Math.random() * 2 ** 31));

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    reporters: ['default', './tests/support/summary-reporter.ts'],
    // Native kernels use all cores themselves; files in parallel would only contend.
    fileParallelism: false,
    testTimeout: 60_000,
  },
});
