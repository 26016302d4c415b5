// fused.linearCrossEntropy against the float64 reference (tests/support/reference.ts) on every backend.
import { describe, expect, it } from 'vitest';
import { fused, scope } from '../../src';
import { asInput, backends, expectGroups, ints, tensor } from '../support/backends';
import { magErr, relErr, scalarRelErr } from '../support/compare';
import { finiteDifference, linearCrossEntropyRef, logitRoundingAllowance, CeRefOptions } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

interface Case extends CeRefOptions {
  name: string;
  N: number;
  d: number;
  V: number;
  scale?: number;
  ignoredShare?: number;
  chunkRows?: number;
  workspaceBudget?: number;
}

const cases: Case[] = [
  { name: 'tiny N=1 d=1 V=1', N: 1, d: 1, V: 1 },
  { name: 'odd sizes N=5 d=3 V=11', N: 5, d: 3, V: 11 },
  { name: 'several chunks N=37 d=19 V=1003', N: 37, d: 19, V: 1003, chunkRows: 8, ignoredShare: 0.3 },
  // As in visual_word_kl.test.ts: on CUDA in bf16, 3 gradient groups of 2 logit chunks (vec4), and groups of a
  // requested chunk of 100 rows (vec1); one level elsewhere
  { name: 'gradient groups N=1301 d=16 V=104', N: 1301, d: 16, V: 104, ignoredShare: 0.3, workspaceBudget: 256 * 4 * 104 + 600 * 2 * 104 + 8 * 1301 + 6144 },
  { name: 'gradient groups of requested chunks N=601 d=16 V=101', N: 601, d: 16, V: 101, ignoredShare: 0.3, chunkRows: 100, workspaceBudget: 100 * 4 * 101 + 420 * 2 * 101 + 8 * 601 + 6144 },
  { name: 'sum reduction with gradScale', N: 9, d: 7, V: 257, reduction: 'sum', gradScale: 2.5 },
  { name: 'none reduction', N: 6, d: 5, V: 97, reduction: 'none', ignoredShare: 0.4 },
  { name: 'label smoothing + z-loss', N: 11, d: 13, V: 301, labelSmoothing: 0.1, zLossWeight: 1e-3, ignoredShare: 0.2 },
  { name: 'custom ignoreIndex', N: 8, d: 4, V: 50, ignoreIndex: 3, ignoredShare: 0.5 },
  { name: 'large logits x100', N: 7, d: 16, V: 513, scale: 100 },
  { name: 'LLaMA vocabulary V=32000', N: 3, d: 64, V: 32000, ignoredShare: 0 },
  { name: 'empty N=0', N: 0, d: 4, V: 9 },
  { name: 'all rows ignored', N: 5, d: 4, V: 9, ignoredShare: 1 },
];

function inputs(c: Case) {
  const rng = rngFor(`ce:${c.name}`);
  const s = (c.scale ?? 1) / Math.sqrt(c.d);
  const h = rng.normals(c.N * c.d, Math.sqrt(s));
  const w = rng.normals(c.V * c.d, Math.sqrt(s) * 3);
  const ignore = c.ignoreIndex ?? -100;
  const t = new Int32Array(c.N);
  for (let i = 0; i < c.N; i++) {
    t[i] = rng.next() < (c.ignoredShare ?? 0) ? ignore : rng.int(c.V);
    if (t[i] === ignore && c.ignoredShare === undefined) t[i] = (ignore + 1) % c.V;
  }
  return { h, w, t };
}

describe(`fused.linearCrossEntropy (seed ${runSeed})`, () => {
  for (const b of backends) {
    describe(b.name, () => {
      for (const c of cases) {
        it.skipIf(!b.available)(c.name, () => {
          const raw = inputs(c);
          const h = asInput(b, raw.h), w = asInput(b, raw.w);
          const ref = linearCrossEntropyRef(h, w, raw.t, c.N, c.d, c.V, c);
          scope(() => {
            const r = fused.linearCrossEntropy(tensor(b, h, [c.N, c.d]), tensor(b, w, [c.V, c.d]), ints(b, raw.t), {
              ignoreIndex: c.ignoreIndex, reduction: c.reduction, gradScale: c.gradScale,
              labelSmoothing: c.labelSmoothing, zLossWeight: c.zLossWeight, chunkRows: c.chunkRows, workspaceBudget: c.workspaceBudget,
            });
            if (c.workspaceBudget !== undefined) expectGroups(b, r, c.N, c.workspaceBudget, c.chunkRows);
            expect(r.rows).toBe(ref.valid);
            if (ref.valid === 0) {
              expect(r.loss).toBe(0);
            } else {
              expect(scalarRelErr(r.loss, ref.loss)).toBeLessThanOrEqual(b.tol);
            }
            expect(relErr(r.losses, ref.losses)).toBeLessThanOrEqual(b.tol);
            // plus what float32 logits cost the softmax (large for the x100 case; tests/support/reference.ts)
            const gtol = b.tol + logitRoundingAllowance(h, w, c.N, c.V, c.d);
            expect(magErr(r.dh!.toArray(), ref.dh, ref.dhMag)).toBeLessThanOrEqual(gtol);
            expect(magErr(r.dw!.toArray(), ref.dw, ref.dwMag)).toBeLessThanOrEqual(gtol);
            for (const v of r.dh!.toArray()) expect(Number.isFinite(v)).toBe(true);
          });
        });
      }

      it.skipIf(!b.available)('dh matches finite differences of the float64 loss', () => {
        const c: Case = { name: 'fd', N: 4, d: 6, V: 31, labelSmoothing: 0.05, zLossWeight: 0.01 };
        const { h, w, t } = inputs(c);
        const hi = asInput(b, h), wi = asInput(b, w);
        const r = scope(() => {
          const out = fused.linearCrossEntropy(tensor(b, hi, [4, 6]), tensor(b, wi, [31, 6]), ints(b, t), { labelSmoothing: c.labelSmoothing, zLossWeight: c.zLossWeight });
          return { dh: out.dh!.toArray(), dw: out.dw!.toArray() };
        });
        const loss = (hp: Float64Array) => linearCrossEntropyRef(hp, wi, t, 4, 6, 31, c).loss;
        const lossW = (wp: Float64Array) => linearCrossEntropyRef(hi, wp, t, 4, 6, 31, c).loss;
        for (const i of [0, 7, 23]) expect(Math.abs(r.dh[i] - finiteDifference(loss, hi, i))).toBeLessThan(10 * b.tol + 1e-6);
        for (const i of [0, 50, 185]) expect(Math.abs(r.dw[i] - finiteDifference(lossW, wi, i))).toBeLessThan(10 * b.tol + 1e-6);
      });

      it.skipIf(!b.available)('grad: false gives the same loss and no gradients', () => {
        const c: Case = { name: 'nograd', N: 10, d: 8, V: 77 };
        const { h, w, t } = inputs(c);
        scope(() => {
          const args = [tensor(b, asInput(b, h), [10, 8]), tensor(b, asInput(b, w), [77, 8]), ints(b, t)] as const;
          const full = fused.linearCrossEntropy(...args);
          const lossOnly = fused.linearCrossEntropy(...args, { grad: false });
          expect(lossOnly.dh).toBeNull();
          expect(lossOnly.dw).toBeNull();
          expect(lossOnly.loss).toBeCloseTo(full.loss, 6);
        });
      });
    });
  }
});
