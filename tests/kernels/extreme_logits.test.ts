// The fused losses at logits ~1e30, on every backend: three tied top logits must share the probability mass.
// A row's lse is m + log(sum exp(z - m)); next to |m| ~ 1e30 that sum rounds to m even in double, so a kernel that
// formed exp(z - lse) or lse - z_t gave each tied word probability 1 and a loss of 0 (log 3 is right). The kernels
// keep m and log(sum) apart (native/cpu/vec.h, vec_exp), as PyTorch's log_softmax does; these cases fail without that.
// The values are exact by construction, so the expectations are closed forms, not a float64 reference.
import { describe, expect, it } from 'vitest';
import { fused, scope } from '../../src';
import { asInput, backends, ints, tensor } from '../support/backends';

const BIG = 1e15;  // squared: logits of 1e30, finite in float32 (max 3.4e38)
// Five vocabulary rows of d = 2 whose logits against [BIG, 0] are [1e30, 1e30, 1e30, 0, -1e30]
const W3 = [BIG, 0, BIG, 0, BIG, 0, 0, 1, -BIG, 0];

// |got - want| within tol of the scale (the gradients carry the 1e15 of the other factor)
function near(got: ArrayLike<number>, want: number[], scale: number, tol: number): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `entry ${i}: ${got[i]} vs ${want[i]}`).toBeLessThanOrEqual(tol * scale);
}

describe('fused losses at logits ~1e30: tied top words share the mass', () => {
  for (const b of backends) {
    describe(b.name, () => {
      const hRaw = asInput(b, Float32Array.from([BIG, 0]));
      const h0 = hRaw[0];
      const w = asInput(b, Float32Array.from(W3));

      it.skipIf(!b.available)('linearCrossEntropy: loss log 3, dW rows (p - onehot) h', () => {
        scope(() => {
          const r = fused.linearCrossEntropy(tensor(b, hRaw, [1, 2]), tensor(b, w, [5, 2]), ints(b, Int32Array.from([1])));
          expect(Math.abs(r.loss - Math.log(3))).toBeLessThanOrEqual(b.tol * Math.log(3));
          near(r.dw!.toArray(), [h0 / 3, 0, -2 * h0 / 3, 0, h0 / 3, 0, 0, 0, 0, 0], h0, b.tol);
          // with label smoothing 0.1: (1 - eps)(lse - z_t) + eps (lse - mean z), mean z = 2e30 / 5 exactly in the sum
          const s = fused.linearCrossEntropy(tensor(b, hRaw, [1, 2]), tensor(b, w, [5, 2]), ints(b, Int32Array.from([0])), { labelSmoothing: 0.1, grad: false });
          const z = h0 * h0, want = 0.9 * Math.log(3) + 0.1 * (z - (2 * z) / 5 + Math.log(3));
          expect(Math.abs(s.loss - want) / want).toBeLessThanOrEqual(b.tol);
        });
      });

      it.skipIf(!b.available)('visualWordKL: KL(1/3 on three || 1/4 on four) = log(4/3), its gradients', () => {
        // target a = x Wvm^T = [1e30 x3, 0, -1e30]; prediction b = h Wlm^T = [1e30 x4, -1e30]
        const wLm = asInput(b, Float32Array.from([BIG, 0, BIG, 0, BIG, 0, BIG, 0, -BIG, 0]));
        scope(() => {
          const r = fused.visualWordKL(tensor(b, hRaw, [1, 2]), tensor(b, wLm, [5, 2]), tensor(b, hRaw, [1, 2]), tensor(b, w, [5, 2]));
          expect(Math.abs(r.loss - Math.log(4 / 3))).toBeLessThanOrEqual(b.tol * Math.log(4 / 3));
          // dKL/db = q - p, so dWlm rows (q - p) h; dKL/da = p (log p - log q - KL) = 0 everywhere here
          const dq = 1 / 4 - 1 / 3;
          near(r.dwLm!.toArray(), [dq * h0, 0, dq * h0, 0, dq * h0, 0, h0 / 4, 0, 0, 0], h0, b.tol);
          near(r.dwVm!.toArray(), new Array(10).fill(0), h0, b.tol);
        });
      });

      // q's mass where p has none, 1e30 below p's max: its term of E (sum w e^-lr - w) was e^((a - ma) - lr) with both
      // terms ~ -1e30, which kept nothing of b - mb (1 instead of e^-1); it is u - w, u = e^(b - mb)
      it.skipIf(!b.available)('visualWordKL: KL([1, 0] || softmax [0, -1]) = log(1 + e^-1) under a -1e30 target logit', () => {
        const x = asInput(b, Float32Array.from([BIG, 1])), wVm = asInput(b, Float32Array.from([0, 0, -BIG, 0]));
        const h = asInput(b, Float32Array.from([0, 1])), wLm = asInput(b, Float32Array.from([0, 0, 0, -1]));
        scope(() => {
          const r = fused.visualWordKL(tensor(b, h, [1, 2]), tensor(b, wLm, [2, 2]), tensor(b, x, [1, 2]), tensor(b, wVm, [2, 2]));
          const want = Math.log(1 + Math.exp(-1)), q1 = Math.exp(-1) / (1 + Math.exp(-1));
          expect(Math.abs(r.loss - want)).toBeLessThanOrEqual(b.tol * want);
          // dKL/db = q - p = [-q1, q1]: dWlm rows (q - p) h, dh = (q - p) Wlm
          near(r.dwLm!.toArray(), [0, -q1, 0, q1], 1, b.tol);
          near(r.dh!.toArray(), [0, -q1], 1, b.tol);
        });
      });

      it.skipIf(!b.available)('pseudoImageFeatures: the mean of the tied rows of E, and its backward', () => {
        const e = asInput(b, Float32Array.from([1, 2, 3, 4, 5]));
        scope(() => {
          const args = [tensor(b, hRaw, [1, 2]), tensor(b, w, [5, 2]), tensor(b, e, [5, 1])] as const;
          near(fused.pseudoImageFeatures(...args).toArray(), [2], 2, b.tol);
          // g = 1: dE = P^T g = p; dA = p (E - p.E) = [-1/3, 0, 1/3, 0, 0]; dWvm = dA^T x
          const r = fused.pseudoImageFeaturesBackward(...args, tensor(b, Float32Array.from([1]), [1, 1]));
          near(r.de.toArray(), [1 / 3, 1 / 3, 1 / 3, 0, 0], 1, b.tol);
          near(r.dwVm.toArray(), [-h0 / 3, 0, 0, 0, h0 / 3, 0, 0, 0, 0, 0], h0, b.tol);
        });
      });
    });
  }
});
