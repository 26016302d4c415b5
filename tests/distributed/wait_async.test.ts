// Work.waitAsync (ProcessGroup.barrierAsync, a Trainer's start): the wait polls distTest with the event loop running and
// ends in distWait, which throws a failure as wait() does and frees the collective's buffers. A distTest that throws
// (NCCL's asynchronous error, MPI's failed collective) frees nothing by itself: the error and the freeing are
// distWait's, not a dispose's complaint about a buffer still in use.
import { describe, expect, it } from 'vitest';
import { ProcessGroup } from '../../src/distributed/process_group';
import type { Addon } from '../../src/native';

/** A group over a scripted addon: what distTest and distWait do, and the calls they got. */
function scripted(test: () => boolean, wait: (timeoutMs: number, waitedMs?: number) => void) {
  const calls: string[] = [];
  const addon = {
    distStart: () => 7,
    distTest: () => {
      calls.push('test');
      return test();
    },
    distWait: (h: number, timeoutMs: number, waitedMs?: number) => {
      calls.push(`wait ${h} ${timeoutMs} ${waitedMs}`);
      wait(timeoutMs, waitedMs);
    },
  } as unknown as Addon;
  const group = new ProcessGroup(addon, { backend: 'mpi', rank: 0, worldSize: 2, localRank: 0, localWorldSize: 2, library: 'scripted' }, 300);
  return { group, calls };
}

describe('Work.waitAsync', () => {
  it('a finished collective: distWait once, at once', async () => {
    let n = 0;
    const { group, calls } = scripted(() => ++n > 2, () => undefined);
    await group.barrierAsync();
    expect(calls).toEqual(['test', 'test', 'test', 'wait 7 1 299']);
  });

  it("a failure distTest raises is distWait's error (which frees the buffers), not masked", async () => {
    const { group, calls } = scripted(() => {
      throw new Error('[all_reduce] NCCL async error: remote process exited');
    }, () => {
      throw new Error('[all_reduce of 1 x int32] rank 0 of 2: NCCL failed: remote process exited');
    });
    await expect(group.barrierAsync()).rejects.toThrow('[all_reduce of 1 x int32] rank 0 of 2: NCCL failed: remote process exited');
    expect(calls).toEqual(['test', 'wait 7 1 299']);
  });

  it("past the group's timeout: distWait ends it, told the time already polled (its message names the whole deadline)", async () => {
    const { group, calls } = scripted(() => false, (timeoutMs, waitedMs) => {
      throw new Error(`did not complete within ${(timeoutMs + waitedMs!) / 1000} s`);
    });
    const t0 = Date.now();
    await expect(group.barrierAsync()).rejects.toThrow('did not complete within 0.3 s');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(calls.at(-1)).toBe('wait 7 1 299');
    expect(calls.length).toBeGreaterThan(10); // polled, with the event loop running between polls
  });
});
