// Leak checks compare live tensors only: the caching allocator's counters (reserved, cached, hits) move with
// every allocation and are checked by tests/nn/training_memory.test.ts.
import { memoryStats } from '../../src';

export function liveMemory(device: 'cpu' | 'cuda' = 'cpu'): { liveBuffers: number; liveBytes: number } {
  const m = memoryStats()[device];
  return m ? { liveBuffers: m.liveBuffers, liveBytes: m.liveBytes } : { liveBuffers: 0, liveBytes: 0 };
}
