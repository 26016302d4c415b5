// The fused kernels never allocate an N x V tensor: their scratch is bounded by workspaceBudget (64 MiB by
// default on the CPU, 1 GiB on CUDA) whatever N is, and results do not depend on the chunking.
import { describe, expect, it } from 'vitest';
import { cudaAvailable, fused, scope, Tensor } from '../../src';
import { cpu } from '../../src/native';
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
      expect(ce.groupRows).toBe(ce.chunkRows);  // the CPU writes the gradient over the logits: one level
      const kl = fused.visualWordKL(h, w, h, w);
      expect(kl.workspaceBytes).toBeLessThanOrEqual(64 * 2 ** 20);
      expect(kl.groupRows).toBe(kl.chunkRows);
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

  // plan_chunks (native/core/fused_args.h), the split the CUDA fused losses make in bf16: float32 logit chunks of at
  // most 256 rows, bf16 gradient groups that take the rest of the budget. Checked here on any machine through the
  // CPU addon's chunkPlan, against what the plan promises rather than against a copy of its arithmetic.
  it('the chunk plan: fewer gradient passes within the budget, balanced groups and chunks', () => {
    const plan = cpu().chunkPlan;
    const ceil = (a: number, b: number) => Math.ceil(a / b);
    // The shapes (N 9216, V 32000, 256 MiB): the KL (2 float32 + 2 bf16 blocks) made 14 passes over its
    // weight gradients, now 6; the cross-entropy (1 + 1) 7, now 3.
    const MiB256 = 256 * 2 ** 20;
    expect(plan(0, 9216, 32000, 2, 2, MiB256)).toEqual({ logitRows: 256, groupRows: 1536 });
    expect(plan(0, 9216, 32000, 3, 0, MiB256).logitRows).toBe(659);  // one level: 12 V bytes a row, 14 chunks
    expect(plan(0, 9216, 32000, 1, 1, MiB256)).toEqual({ logitRows: 256, groupRows: 3072 });
    // No gradient blocks, or no room beyond the logit rows: one level, every block counted per row.
    expect(plan(0, 9216, 32000, 2, 0, MiB256)).toEqual({ logitRows: 1024, groupRows: 1024 });
    expect(plan(0, 5, 7, 1, 1, 1)).toEqual({ logitRows: 1, groupRows: 1 });
    expect(plan(0, 0, 7, 1, 1, 1 << 20)).toEqual({ logitRows: 0, groupRows: 0 });
    expect(plan(7, 29, 1009, 2, 2, 1 << 20)).toEqual({ logitRows: 7, groupRows: 29 });  // a requested chunk is kept

    const rng = rngFor('chunk-plan');
    for (let k = 0; k < 3000; k++) {
      const n = rng.int(3) === 0 ? rng.int(40) : rng.int(20000);
      const V = 1 + rng.int(rng.int(2) ? 200 : 60000);
      const f32 = rng.int(3), bf16 = rng.int(3);
      const requested = rng.int(4) === 0 ? 1 + rng.int(600) : 0;
      const budget = rng.int(2 ** 31);
      const { logitRows: logit, groupRows: group } = plan(requested, n, V, f32, bf16, budget);
      const what = JSON.stringify({ requested, n, V, f32, bf16, budget, logit, group });
      if (n === 0) {
        expect([logit, group], what).toEqual([0, 0]);
        continue;
      }
      expect(logit >= 1 && logit <= group && group <= n, what).toBe(true);
      if (requested > 0) expect(logit, what).toBe(Math.min(requested, n));
      const rowBytes = (4 * f32 + 2 * bf16) * V;
      const oneLevelRows = rowBytes === 0 ? n : Math.max(1, Math.min(n, Math.floor(Math.max(budget, 1) / rowBytes)));
      if (group > logit) {
        // grouped: only with both kinds of block, within the budget, in balanced groups and chunks
        expect(f32 > 0 && bf16 > 0, what).toBe(true);
        expect(logit * 4 * V * f32 + group * 2 * V * bf16, what).toBeLessThanOrEqual(budget);
        expect(ceil(n, group), what).toBeLessThanOrEqual(ceil(n, oneLevelRows));  // never more passes than one level
        if (requested === 0) {
          expect(group, what).toBe(ceil(n, ceil(n, group)));
          expect(logit, what).toBeLessThanOrEqual(256);
          expect(logit, what).toBe(ceil(group, ceil(group, logit)));
        } else {
          // whole requested chunks per group, balanced in those units
          expect(group % logit === 0 || group === n, what).toBe(true);
          const units = ceil(n, logit), perGroup = ceil(group, logit);
          expect(perGroup, what).toBe(ceil(units, ceil(units, perGroup)));
        }
      } else if (requested === 0) {
        // one level: what pick_chunk_rows gives, balanced
        expect(logit, what).toBe(ceil(n, ceil(n, oneLevelRows)));
      }
    }
    expect(() => plan(-1, 5, 7, 1, 1, 64)).toThrow(/chunkPlan: argument 0/);
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
