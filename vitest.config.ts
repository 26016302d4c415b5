import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    reporters: ['default', './tests/support/summary-reporter.ts'],
    // Native kernels use all cores themselves; files in parallel would only contend.
    fileParallelism: false,
    testTimeout: 60_000,
  },
});
