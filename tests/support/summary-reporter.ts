// Prints the closing line CI reads: "N passed, N failed, N skipped" (after vitest's own report), and before it
// the run's seed: on a failure, with the command that replays the failing files on it.
import * as path from 'path';
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0, failed = 0, skipped = 0;
    const failedFiles = new Set<string>();
    for (const m of testModules) {
      const before = failed;
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A file that failed to load has no tests but must count as a failure.
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++;
      if (failed > before) failedFiles.add(path.relative(process.cwd(), m.moduleId));
    }
    failed += unhandledErrors.length;
    const seed = process.env.VWLMM_TEST_SEED;
    if (seed !== undefined) {
      const files = failedFiles.size ? ` ${[...failedFiles].join(' ')}` : '';
      process.stdout.write(failed > 0
        ? `\nTest seed ${seed}. Replay the failures with: VWLMM_TEST_SEED=${seed} npx vitest run${files}\n`
        : `\nTest seed ${seed} (VWLMM_TEST_SEED)\n`);
    }
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
