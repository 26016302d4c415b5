// fused.pseudoImageFeatures and its backward against float64 references (and finite differences).
import { describe, expect, it } from 'vitest';
import { fused, scope } from '../../src';
import { asInput, backends, tensor } from '../support/backends';
import { magErr } from '../support/compare';
import { finiteDifference, logitRoundingAllowance, pseudoImageFeaturesBackwardRef, pseudoImageFeaturesRef, pseudoImageFeaturesWithMag } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const cases = [
  { name: 'N=1 d=1 V=1 dE=1', N: 1, d: 1, V: 1, dE: 1 },
  { name: 'odd sizes N=5 d=3 V=17 dE=7', N: 5, d: 3, V: 17, dE: 7 },
  { name: 'several chunks N=31 d=11 V=1003 dE=13', N: 31, d: 11, V: 1003, dE: 13, chunkRows: 6 },
  { name: 'large logits x100', N: 4, d: 8, V: 200, dE: 5, scale: 100 },
  { name: 'LLaMA vocabulary V=32000', N: 2, d: 32, V: 32000, dE: 24 },
  { name: 'empty N=0', N: 0, d: 3, V: 10, dE: 4 },
];

function inputs(label: string, c: { N: number; d: number; V: number; dE: number; scale?: number }) {
  const rng = rngFor(`pif:${label}`);
  const s = Math.sqrt((c.scale ?? 1) / Math.sqrt(c.d));
  return { x: rng.normals(c.N * c.d, s), w: rng.normals(c.V * c.d, 3 * s), e: rng.normals(c.V * c.dE), g: rng.normals(c.N * c.dE) };
}

describe(`fused.pseudoImageFeatures (seed ${runSeed})`, () => {
  for (const b of backends) {
    describe(b.name, () => {
      for (const c of cases) {
        it.skipIf(!b.available)(c.name, () => {
          const raw = inputs(c.name, c);
          const x = asInput(b, raw.x), w = asInput(b, raw.w), e = asInput(b, raw.e), g = asInput(b, raw.g);
          const ref0 = pseudoImageFeaturesWithMag(x, w, e, c.N, c.d, c.V, c.dE);
          const ref = pseudoImageFeaturesBackwardRef(x, w, e, g, c.N, c.d, c.V, c.dE);
          // errors against the condition-aware magnitudes, plus what float32 logits cost (large for the x100 case)
          const tol = b.tol + logitRoundingAllowance(x, w, c.N, c.V, c.d);
          scope(() => {
            const args = [tensor(b, x, [c.N, c.d]), tensor(b, w, [c.V, c.d]), tensor(b, e, [c.V, c.dE])] as const;
            const out = fused.pseudoImageFeatures(...args, { chunkRows: c.chunkRows });
            expect(out.shape).toEqual([c.N, c.dE]);
            expect(magErr(out.toArray(), ref0.out, ref0.outMag)).toBeLessThanOrEqual(tol);
            const r = fused.pseudoImageFeaturesBackward(...args, tensor(b, g, [c.N, c.dE]), { chunkRows: c.chunkRows });
            expect(magErr(r.dx.toArray(), ref.dx, ref.dxMag)).toBeLessThanOrEqual(tol);
            expect(magErr(r.dwVm.toArray(), ref.dwVm, ref.dwVmMag)).toBeLessThanOrEqual(tol);
            expect(magErr(r.de.toArray(), ref.de, ref.deMag)).toBeLessThanOrEqual(tol);
          });
        });
      }

      it.skipIf(!b.available)('backward matches finite differences of sum(out * g)', () => {
        const c = { N: 3, d: 4, V: 19, dE: 5 };
        const raw = inputs('fd', c);
        const x = asInput(b, raw.x), w = asInput(b, raw.w), e = asInput(b, raw.e), g = asInput(b, raw.g);
        const r = scope(() => {
          const o = fused.pseudoImageFeaturesBackward(tensor(b, x, [3, 4]), tensor(b, w, [19, 4]), tensor(b, e, [19, 5]), tensor(b, g, [3, 5]));
          return { dx: o.dx.toArray(), dwVm: o.dwVm.toArray(), de: o.de.toArray() };
        });
        const dot = (out: Float64Array) => out.reduce((s, v, i) => s + v * g[i], 0);
        const byX = (xp: Float64Array) => dot(pseudoImageFeaturesRef(xp, w, e, 3, 4, 19, 5));
        const byW = (wp: Float64Array) => dot(pseudoImageFeaturesRef(x, wp, e, 3, 4, 19, 5));
        const byE = (ep: Float64Array) => dot(pseudoImageFeaturesRef(x, w, ep, 3, 4, 19, 5));
        for (const i of [0, 5, 11]) expect(Math.abs(r.dx[i] - finiteDifference(byX, x, i))).toBeLessThan(10 * b.tol + 1e-6);
        for (const i of [2, 30, 75]) expect(Math.abs(r.dwVm[i] - finiteDifference(byW, w, i))).toBeLessThan(10 * b.tol + 1e-6);
        for (const i of [1, 44, 94]) expect(Math.abs(r.de[i] - finiteDifference(byE, e, i))).toBeLessThan(10 * b.tol + 1e-6);
      });
    });
  }
});
