// fused.visualWords (top-k visual words) against a float64 full sort.
import { describe, expect, it } from 'vitest';
import { fused, scope } from '../../src';
import { asInput, backends, tensor } from '../support/backends';
import { logitRoundingAllowance, logits, visualWordsRef } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const cases = [
  { name: 'N=1 d=1 V=1 k=1', N: 1, d: 1, V: 1, k: 1 },
  { name: 'odd sizes N=7 d=5 V=13 k=3', N: 7, d: 5, V: 13, k: 3 },
  { name: 'k = V', N: 3, d: 4, V: 6, k: 6 },
  { name: 'several chunks N=33 d=9 V=1001 k=5', N: 33, d: 9, V: 1001, k: 5, chunkRows: 4 },
  { name: 'large logits x100', N: 5, d: 8, V: 300, k: 4, scale: 100 },
  { name: 'empty N=0', N: 0, d: 3, V: 10, k: 2 },
];

describe(`fused.visualWords (seed ${runSeed})`, () => {
  for (const b of backends) {
    describe(b.name, () => {
      for (const c of cases) {
        it.skipIf(!b.available)(c.name, () => {
          const rng = rngFor(`vw:${c.name}`);
          const s = Math.sqrt((c.scale ?? 1) / Math.sqrt(c.d));
          const x = asInput(b, rng.normals(c.N * c.d, s)), w = asInput(b, rng.normals(c.V * c.d, 3 * s));
          const ref = visualWordsRef(x, w, c.N, c.d, c.V, c.k);
          // A probability is exp(z - lse): float32 logits move log p by up to `allow` (large for logits x100)
          const allow = logitRoundingAllowance(x, w, c.N, c.V, c.d);
          scope(() => {
            const r = fused.visualWords(tensor(b, x, [c.N, c.d]), tensor(b, w, [c.V, c.d]), { topK: c.k, chunkRows: c.chunkRows });
            expect(r.ids.shape).toEqual([c.N, c.k]);
            expect(r.ids.dtype).toBe('int32');
            const ids = r.ids.toArray(), probs = r.probs.toArray();
            // float64 logits of every id: a returned id is judged by its own log-prob, not only by its neighbours'
            const z = logits(x, w, c.N, c.V, c.d);
            for (let i = 0; i < c.N; i++) {
              expect(new Set(ids.subarray(i * c.k, (i + 1) * c.k)).size).toBe(c.k); // no id twice in a row
              for (let j = 0; j < c.k; j++) {
                const got = ids[i * c.k + j], want = ref.ids[i][j];
                // Another id is only acceptable where float32 rounding can reorder it: its float64 log-prob within
                // rounding of the j-th largest (a swap with a neighbour, or at the last position a genuine near-tie with
                // the (k+1)-th entry, which is not returned). Log-probs differ as the logits do.
                if (got !== want) {
                  expect(got).toBeGreaterThanOrEqual(0);
                  expect(got).toBeLessThan(c.V);
                  expect(Math.abs(z[i * c.V + got] - z[i * c.V + want]), `row ${i} position ${j}: id ${got} for ${want}`).toBeLessThan(1e-5 + allow);
                }
                expect(Math.abs(probs[i * c.k + j] - ref.probs[i][j])).toBeLessThanOrEqual((b.tol + allow) * Math.max(ref.probs[i][j], 1e-3) + 1e-7);
              }
              for (let j = 1; j < c.k; j++) expect(probs[i * c.k + j]).toBeLessThanOrEqual(probs[i * c.k + j - 1]);
            }
          });
        });
      }

      it.skipIf(!b.available)('ties go to the lower token id', () => {
        // Rows 0..2 of w are identical, so their logits tie exactly.
        const w = new Float32Array([1, 0, 1, 0, 1, 0, 0, 1, -1, 0]);
        scope(() => {
          const r = fused.visualWords(tensor(b, new Float32Array([2, 0.5]), [1, 2]), tensor(b, w, [5, 2]), { topK: 4 });
          expect(Array.from(r.ids.toArray())).toEqual([0, 1, 2, 3]);
          const p = r.probs.toArray();
          const z = [2, 2, 2, 0.5, -2];
          const lse = Math.log(z.reduce((s, v) => s + Math.exp(v), 0));
          expect(Math.abs(p[0] - Math.exp(2 - lse))).toBeLessThan(1e-6);
          expect(Math.abs(p[3] - Math.exp(0.5 - lse))).toBeLessThan(1e-6);
        });
      });
    });
  }
});
