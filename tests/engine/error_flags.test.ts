// Error flags (native/core/error_flags.h): the data checks of the ops (ids, key-mask values, targets) in
// sync mode, raised by the op itself, and in async mode, raised at the next synchronisation with the op's
// name. Runs on every backend of tests/support/backends.ts (float32): the CPU takes the same path as a GPU,
// so CI checks the bookkeeping, the order and the messages; CUDA adds the device slots and their drain.
import { afterEach, describe, expect, it } from 'vitest';
import { backward, F, fused, hostSyncs, isAsync, scope, setAsync, synchronize, Tensor } from '../../src';
import type { Device } from '../../src';
import { backends } from '../support/backends';
import { rngFor, runSeed } from '../support/random';
import { callOp } from '../../src/call_op';

const cases = backends.filter((b) => b.dtype === 'float32');

// Each device's mode as the process starts: the CPU sync, CUDA async (unless VWLMM_CUDA_ASYNC=0). Every test
// leaves it so.
const initial = new Map(cases.filter((b) => b.available).map((b) => [b.device, isAsync(b.device)] as const));

/** Runs fn with `device` in async mode, restoring the mode and clearing what fn left pending. */
function inAsync(device: Device, fn: () => void): void {
  inMode(device, true, fn);
}
/** Runs fn with `device` in sync mode, restoring the mode. */
function inSync<T>(device: Device, fn: () => T): T {
  let r: T | undefined;
  inMode(device, false, () => (r = fn()));
  return r as T;
}
function inMode(device: Device, on: boolean, fn: () => void): void {
  const was = setAsync(device, on);
  try {
    fn();
  } finally {
    setAsync(device, was);
    try {
      synchronize(device);
    } catch {
      // a test that failed before reading left a flag behind: cleared by the raise
    }
  }
}

describe(`error flags (seed ${runSeed})`, () => {
  for (const b of cases) {
    const d = b.device;
    const run = b.available ? it : it.skip;
    const table = (V: number, D: number, seed: string) => Tensor.fromArray(rngFor(seed).normals(V * D), [V, D], { device: d });
    const ids = (a: number[]) => Tensor.fromArray(Int32Array.from(a), [a.length], { device: d });

    afterEach(() => {
      if (b.available) expect(isAsync(d)).toBe(initial.get(d));
    });

    run(`${b.name}: starts in its default mode (the CPU sync; CUDA async unless VWLMM_CUDA_ASYNC=0)`, () => {
      expect(initial.get(d)).toBe(d === 'cuda' && process.env.VWLMM_CUDA_ASYNC !== '0');
    });

    run(`${b.name}: sync mode raises a bad id in the op that got it`, () => inSync(d, () => {
      expect(isAsync(d)).toBe(false);
      scope(() => {
        expect(() => F.embedding(ids([0, 7]), table(5, 3, 'sync'))).toThrow(/^\[embedding_forward\] ids\[1\] = 7 is outside \[0, 5\)$/);
        // nothing stays pending: the next read is clean
        expect(Array.from(F.embedding(ids([4]), table(5, 3, 'sync')).toArray())).toHaveLength(3);
        synchronize(d);
      });
    }));

    run(`${b.name}: async mode raises at the next read, naming the op, then is clear again`, () => {
      inAsync(d, () => scope(() => {
        const W = table(5, 3, 'async');
        const syncs = hostSyncs(d);
        const y = F.embedding(ids([0, 1, 9, 2]), W); // no throw: the check is pending
        const z = F.scale(y, 2); // later ops run (their values are undefined)
        expect(hostSyncs(d)).toBe(syncs); // neither op waited
        expect(() => z.toArray()).toThrow(/^\[embedding_forward\] ids\[2\] = 9 is outside \[0, 5\) \(an asynchronous check, raised at the next synchronisation/);
        // raised once: the same tensors read now; the bad id gave a zero row (no unset memory), the others theirs
        z.toArray();
        const w = W.toArray();
        expect(Array.from(y.toArray())).toEqual([...Array.from(w.subarray(0, 6)), 0, 0, 0, ...Array.from(w.subarray(6, 9))]);
        const good = F.embedding(ids([3, 0]), W).toArray();
        expect(Array.from(good)).toEqual([...Array.from(w.subarray(9, 12)), ...Array.from(w.subarray(0, 3))]);
      }));
    });

    run(`${b.name}: async mode reports the first failure in op order and counts the others`, () => {
      inAsync(d, () => scope(() => {
        const W = table(4, 2, 'order');
        F.embedding(ids([0, 1]), W); // passes
        F.gatherRows(W, ids([3, -1, 8])); // first failure: idx[1]
        F.embedding(ids([5]), W); // second
        expect(() => synchronize(d)).toThrow(/^\[gather_rows\] idx\[1\] = -1 is outside \[0, 4\).*\(and 1 later failed check\)$/);
        synchronize(d); // cleared
      }));
    });

    run(`${b.name}: checks_failed writes on the device whether a pending check failed, without a wait or a raise; the read still raises it`, () => {
      const flag = (t: Tensor, k: number) => callOp('checks_failed', d, [], [t], [k]);
      inAsync(d, () => scope(() => {
        const W = table(4, 2, 'flagged');
        const f = Tensor.fromArray(Float32Array.of(7, 7, 7, 7), [4], { device: d });
        flag(f, 0); // nothing pending
        F.embedding(ids([0, 3]), W);
        flag(f, 1); // a check that passed
        const syncs = hostSyncs(d);
        F.embedding(ids([2, 4]), W);
        flag(f, 2);
        expect(hostSyncs(d)).toBe(syncs);
        expect(() => f.toArray()).toThrow(/^\[embedding_forward\] ids\[1\] = 4 is outside \[0, 4\)/);
        expect(Array.from(f.toArray())).toEqual([0, 0, 1, 7]);
        flag(f, 3); // the raise cleared it
        expect(Array.from(f.toArray())).toEqual([0, 0, 1, 0]);
        // a fused loss's refusal of a non-finite input (CUDA: device slots; the CPU: a host record)
        const h = Tensor.fromArray(Float32Array.of(1, NaN, 0, 2), [2, 2], { device: d }), w = table(3, 2, 'flagged-w');
        const r = fused.linearCrossEntropy(h, w, ids([0, 2]), { deviceLoss: true, grad: true });
        flag(f, 0);
        expect(() => r.lossTensor!.item()).toThrow(/^\[linear_cross_entropy\] h contains a non-finite value \(nan\) at flat index 1/);
        expect(f.toArray()[0]).toBe(1);
      }));
      inSync(d, () => scope(() => {
        const f = Tensor.fromArray(Float32Array.of(7), [1], { device: d });
        expect(() => F.embedding(ids([5]), table(4, 2, 'flagged'))).toThrow(/ids\[0\] = 5/);
        flag(f, 0); // sync mode: the op raised it, nothing is pending
        expect(f.toArray()[0]).toBe(0);
        expect(() => flag(f, 1)).toThrow(/^\[checks_failed\] flag/);
        expect(() => flag(f, -1)).toThrow(/^\[checks_failed\] offset must be >= 0, got -1$/);
      }));
    });

    run(`${b.name}: key-mask values and cross-entropy targets take the same path`, () => {
      inAsync(d, () => scope(() => {
        const rng = rngFor('mask');
        const q = Tensor.fromArray(rng.normals(2 * 3 * 2 * 4), [2, 3, 2, 4], { device: d });
        const mask = Tensor.fromArray(Int32Array.from([1, 1, 0, 1, 2, 1]), [2, 3], { device: d });
        F.attention(q, q, q, { keyMask: mask });
        expect(() => synchronize(d)).toThrow(/^\[attention_forward\] keyMask\[1, 1\] = 2 must be 0 or 1 \(an asynchronous check/);

        const h = Tensor.fromArray(rng.normals(3 * 4), [3, 4], { device: d });
        const w = Tensor.fromArray(rng.normals(6 * 4), [6, 4], { device: d });
        const t = Tensor.fromArray(Int32Array.from([2, -100, 6]), [3], { device: d });
        const r = fused.linearCrossEntropy(h, w, t, { deviceLoss: true, grad: true });
        expect(() => r.lossTensor!.item()).toThrow(/^\[linear_cross_entropy\] targets\[2\] = 6 is outside \[0, 6\) and is not ignoreIndex \(-100\)/);
      }));
    });

    run(`${b.name}: the fused losses' non-finite inputs too: no wait in the op, raised at the read, named; sync mode raises in the op`, () => {
      const rng = rngFor('nonfinite');
      const [N, D, V] = [5, 4, 7];
      const hv = rng.normals(N * D), wv = rng.normals(V * D);
      hv[6] = NaN;
      inAsync(d, () => scope(() => {
        const h = Tensor.fromArray(hv, [N, D], { device: d }), w = Tensor.fromArray(wv, [V, D], { device: d });
        const t = Tensor.fromArray(Int32Array.from([1, 2, -100, 3, 0]), [N], { device: d });
        const syncs = hostSyncs(d);
        const ce = fused.linearCrossEntropy(h, w, t, { deviceLoss: true, grad: true });
        const hf = Tensor.fromArray(rng.normals(N * D), [N, D], { device: d });
        const kl = fused.visualWordKL(hf, w, h, w, { deviceLoss: true, grad: true }); // x (the target side) holds the NaN
        expect(hostSyncs(d)).toBe(syncs); // neither op waited
        // the first failure in op order; CUDA also flags the logit rows the NaN reaches (a later check)
        expect(() => ce.lossTensor!.item()).toThrow(/^\[linear_cross_entropy\] h contains a non-finite value \(nan\) at flat index 6 \(an asynchronous check, raised at the next synchronisation.*\(and \d+ later failed checks?\)$/);
        kl.lossTensor!.item(); // raised once
        const again = fused.visualWordKL(hf, w, h, w, { deviceLoss: true });
        expect(() => again.lossTensor!.item()).toThrow(/^\[visual_word_kl\] x contains a non-finite value \(nan\) at flat index 6 \(an asynchronous check/);
        // a loss returned to the host is a synchronisation: the op raises it itself, never a silent NaN
        expect(() => fused.linearCrossEntropy(h, w, t)).toThrow(/^\[linear_cross_entropy\] h contains a non-finite value \(nan\) at flat index 6/);
        expect(() => fused.visualWordKL(hf, w, h, w)).toThrow(/^\[visual_word_kl\] x contains a non-finite value \(nan\) at flat index 6/);
        // with no rows too (CUDA's early exit once returned loss 0 and left the check to a later read)
        const wn = Float32Array.from(wv);
        wn[3] = NaN;
        const W = Tensor.fromArray(wn, [V, D], { device: d }), h0 = Tensor.zeros([0, D], { device: d });
        expect(() => fused.linearCrossEntropy(h0, W, Tensor.fromArray(new Int32Array(0), [0], { device: d }))).toThrow(/^\[linear_cross_entropy\] w contains a non-finite value \(nan\) at flat index 3/);
        expect(() => fused.visualWordKL(h0, W, h0, w)).toThrow(/^\[visual_word_kl\] wLm contains a non-finite value \(nan\) at flat index 3/);
      }));
      inSync(d, () => scope(() => {
        const h = Tensor.fromArray(hv, [N, D], { device: d }), w = Tensor.fromArray(wv, [V, D], { device: d });
        const t = Tensor.fromArray(Int32Array.from([1, 2, -100, 3, 0]), [N], { device: d });
        expect(() => fused.linearCrossEntropy(h, w, t, { deviceLoss: true })).toThrow(/^\[linear_cross_entropy\] h contains a non-finite value \(nan\) at flat index 6$/);
      }));
    });

    run(`${b.name}: a training step with a bad id runs to its read without a crash`, () => {
      inAsync(d, () => scope(() => {
        const W = table(6, 4, 'step');
        W.requiresGrad = true;
        const loss = F.sum(F.embedding(ids([1, 6, 2]), W));
        backward(loss); // the backward's embedding_backward flags the same id again
        expect(() => W.grad!.toArray()).toThrow(/^\[embedding_forward\] ids\[1\] = 6 is outside \[0, 6\).*\(and 1 later failed check\)$/);
      }));
    });

    run(`${b.name}: more checks than the device has slots (${256}) drain on the way`, () => {
      inAsync(d, () => scope(() => {
        const W = table(3, 2, 'many');
        for (let k = 0; k < 300; k++) scope(() => void F.embedding(ids([k % 3, k === 270 ? 3 : 0]), W));
        expect(() => synchronize(d)).toThrow(/^\[embedding_forward\] ids\[1\] = 3 is outside \[0, 3\)/);
      }));
    });

    run(`${b.name}: async and sync mode compute the same results when every check passes`, () => {
      const rng = rngFor('same');
      const idv = Array.from({ length: 17 }, () => rng.int(11));
      const once = () => scope(() => {
        const W = table(11, 5, 'same');
        W.requiresGrad = true;
        const y = F.embedding(ids(idv), W);
        backward(F.sum(F.mul(y, y)));
        return [Array.from(y.toArray()), Array.from(W.grad!.toArray())];
      });
      const sync = inSync(d, once);
      let async: number[][] = [];
      inAsync(d, () => (async = once()));
      expect(async).toEqual(sync);
    });
  }

  it('setAsync takes a boolean and names what it got', () => {
    expect(() => setAsync('cpu', 1 as unknown as boolean)).toThrow(/on/);
    expect(() => synchronize('tpu' as Device)).toThrow(/device/);
  });
});
