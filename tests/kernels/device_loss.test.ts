// The fused losses' device-resident loss (ops.def `loss` output, fused.* deviceLoss): the reduced loss written to a
// [1] float32 tensor on the op's device, equal to the loss the op reports otherwise (to float32 rounding), with
// no host read (loss NaN, no per-row losses); every reduction, all rows ignored, empty input, on every backend.
import { describe, expect, it } from 'vitest';
import { fused, hostSyncs, isAsync, scope } from '../../src';
import { backends, asInput, ints, tensor } from '../support/backends';
import { rngFor, runSeed } from '../support/random';

describe(`fused losses: deviceLoss (seed ${runSeed})`, () => {
  for (const b of backends) {
    it.skipIf(!b.available)(`${b.name}: cross-entropy and visual-word KL, every reduction`, () => {
      const rng = rngFor(`device_loss:${b.name}`);
      const [N, d, V] = [13, 8, 37];
      const h = asInput(b, rng.normals(N * d)), w = asInput(b, rng.normals(V * d, 0.5)), x = asInput(b, rng.normals(N * d));
      const wv = asInput(b, rng.normals(V * d, 0.5));
      const t = Int32Array.from({ length: N }, (_, i) => (i % 4 === 1 ? -100 : rng.int(V)));
      scope(() => {
        for (const reduction of ['mean', 'sum'] as const) {
          for (const targets of [t, new Int32Array(N).fill(-100)]) {
            const host = fused.linearCrossEntropy(tensor(b, h, [N, d]), tensor(b, w, [V, d]), ints(b, targets), { reduction, grad: false });
            const before = hostSyncs(b.device);
            const dev = fused.linearCrossEntropy(tensor(b, h, [N, d]), tensor(b, w, [V, d]), ints(b, targets), { reduction, grad: true, deviceLoss: true });
            // nothing was read: on the CPU, and on CUDA in async mode (the targets counted and checked on the device)
            if (b.device === 'cpu' || isAsync(b.device)) expect(hostSyncs(b.device)).toBe(before);
            expect(Number.isNaN(dev.loss)).toBe(true);
            expect(dev.losses.length).toBe(0);
            expect(dev.lossTensor!.shape).toEqual([1]);
            expect(dev.lossTensor!.dtype).toBe('float32');
            // (the device sums the row losses in another order than the host: 1e-6)
            expect(Math.abs(dev.lossTensor!.item() - host.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(host.loss));
          }
        }
        for (const reduction of ['batchmean', 'sum'] as const) {
          const host = fused.visualWordKL(tensor(b, h, [N, d]), tensor(b, w, [V, d]), tensor(b, x, [N, d]), tensor(b, wv, [V, d]), { reduction, grad: false });
          const before = hostSyncs(b.device);
          const dev = fused.visualWordKL(tensor(b, h, [N, d]), tensor(b, w, [V, d]), tensor(b, x, [N, d]), tensor(b, wv, [V, d]), { reduction, deviceLoss: true });
          if (b.device === 'cpu' || isAsync(b.device)) expect(hostSyncs(b.device)).toBe(before);
          expect(Number.isNaN(dev.loss)).toBe(true);
          expect(Math.abs(dev.lossTensor!.item() - host.loss)).toBeLessThanOrEqual(1e-6 * Math.abs(host.loss));
        }
        // no rows: loss 0
        const empty = fused.visualWordKL(tensor(b, new Float32Array(0), [0, d]), tensor(b, w, [V, d]), tensor(b, new Float32Array(0), [0, d]), tensor(b, wv, [V, d]), { deviceLoss: true });
        expect(empty.lossTensor!.item()).toBe(0);
        expect(() => fused.linearCrossEntropy(tensor(b, h, [N, d]), tensor(b, w, [V, d]), ints(b, t), { deviceLoss: 1 as never })).toThrow(/deviceLoss/);
      });
    });
  }
});
