// Before each test file (vitest.config.ts setupFiles): every test file runs in one worker process (isolate false), so
// what earlier files left unreferenced (tensors never disposed, whose native buffers their finalizers free) is
// collected now, not in the middle of this file, where a count of live buffers before and after its own work
// (memoryStats) would see it. Twice, with a turn of the event loop for the finalizers queued by the first collection.
import { beforeAll } from 'vitest';

beforeAll(async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('tests/support/fresh_heap.ts: global.gc is missing; vitest.config.ts starts the worker with --expose-gc');
  for (let i = 0; i < 2; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
});
