// The fused kernels never allocate an N x V tensor: their scratch is bounded by workspaceBudget (64 MiB by
// default on the CPU, 1 GiB on CUDA) whatever N is, and results do not depend on the chunking.
import { describe, expect, it } from 'vitest';
import { cudaAvailable, fused, scope, Tensor } from '../../src';
import { rngFor } from '../support/random';

describe('bounded workspace', () => {
  it('default budget: 64 MiB at most although N x V x 4 bytes is larger', () => {
    const N = 700, d = 8, V = 32000;
    expect(N * V * 4).toBeGreaterThan(64 * 2 ** 20);
    const rng = rngFor('ws');
    scope(() => {
      const h = Tensor.fromArray(rng.normals(N * d), [N, d]);
      const w = Tensor.fromArray(rng.normals(V * d, 0.1), [V, d]);
      const t = Tensor.fromArray(new Int32Array(N).map(() => rng.int(V)), [N]);
      const ce = fused.linearCrossEntropy(h, w, t);
      expect(ce.workspaceBytes).toBeLessThanOrEqual(64 * 2 ** 20);
      expect(ce.chunkRows).toBeLessThan(N);
      const kl = fused.visualWordKL(h, w, h, w);
      expect(kl.workspaceBytes).toBeLessThanOrEqual(64 * 2 ** 20);
      // A tighter budget gives smaller chunks and the same numbers.
      const small = fused.linearCrossEntropy(h, w, t, { workspaceBudget: 4 * 2 ** 20 });
      expect(small.workspaceBytes).toBeLessThanOrEqual(4 * 2 ** 20);
      expect(small.chunkRows).toBeLessThanOrEqual(Math.floor((4 * 2 ** 20) / (V * 4)));
      expect(small.loss).toBeCloseTo(ce.loss, 5);
      const a = small.dw!.toArray(), b = ce.dw!.toArray();
      let diff = 0, scale = 0;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      expect(diff / scale).toBeLessThan(1e-5);
    });
  });

  it.skipIf(!cudaAvailable())('CUDA default budget: 1 GiB at most although N x V x 4 bytes is larger', () => {
    const N = 4500, d = 8, V = 64000;
    expect(N * V * 4).toBeGreaterThan(2 ** 30);
    const rng = rngFor('ws-cuda');
    scope(() => {
      const opt = { device: 'cuda' as const, dtype: 'bfloat16' as const };
      const h = Tensor.fromArray(rng.normals(N * d), [N, d], opt);
      const w = Tensor.fromArray(rng.normals(V * d, 0.1), [V, d], opt);
      const t = Tensor.fromArray(new Int32Array(N).map(() => rng.int(V)), [N], { device: 'cuda' });
      const ce = fused.linearCrossEntropy(h, w, t);
      expect(ce.workspaceBytes).toBeLessThanOrEqual(2 ** 30);
      expect(ce.workspaceBytes).toBeGreaterThan(64 * 2 ** 20);
      expect(ce.chunkRows).toBeLessThan(N);
      const kl = fused.visualWordKL(h, w, h, w);
      expect(kl.workspaceBytes).toBeLessThanOrEqual(2 ** 30);
      expect(Number.isFinite(kl.loss)).toBe(true);
    });
  });
});
