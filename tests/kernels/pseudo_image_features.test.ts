// kernels.pseudoImageFeatures and its backward against float64 references (and finite differences).
import { describe, expect, it } from 'vitest';
import { kernels, scope } from '../../src';
import { asInput, backends, tensor } from '../support/backends';
import { magErr, relErr } from '../support/compare';
import { finiteDifference, pseudoImageFeaturesBackwardRef, pseudoImageFeaturesRef } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const cases = [
  { name: 'N=1 d=1 V=1 dE=1', N: 1, d: 1, V: 1, dE: 1 },
  { name: 'odd sizes N=5 d=3 V=17 dE=7', N: 5, d: 3, V: 17, dE: 7 },
  { name: 'several chunks N=31 d=11 V=1003 dE=13', N: 31, d: 11, V: 1003, dE: 13, chunkRows: 6 },
  { name: 'large logits x100', N: 4, d: 8, V: 200, dE: 5, scale: 100, gradTolFactor: 10 },
  { name: 'LLaMA vocabulary V=32000', N: 2, d: 32, V: 32000, dE: 24 },
  { name: 'empty N=0', N: 0, d: 3, V: 10, dE: 4 },
];

function inputs(label: string, c: { N: number; d: number; V: number; dE: number; scale?: number }) {
  const rng = rngFor(`pif:${label}`);
  const s = Math.sqrt((c.scale ?? 1) / Math.sqrt(c.d));
  return { x: rng.normals(c.N * c.d, s), w: rng.normals(c.V * c.d, 3 * s), e: rng.normals(c.V * c.dE), g: rng.normals(c.N * c.dE) };
}

describe(`kernels.pseudoImageFeatures (seed ${runSeed})`, () => {
  for (const b of backends) {
    describe(b.name, () => {
      for (const c of cases) {
        it.skipIf(!b.available)(c.name, () => {
          const raw = inputs(c.name, c);
          const x = asInput(b, raw.x), w = asInput(b, raw.w), e = asInput(b, raw.e), g = asInput(b, raw.g);
          const refOut = pseudoImageFeaturesRef(x, w, e, c.N, c.d, c.V, c.dE);
          const ref = pseudoImageFeaturesBackwardRef(x, w, e, g, c.N, c.d, c.V, c.dE);
          scope(() => {
            const args = [tensor(b, x, [c.N, c.d]), tensor(b, w, [c.V, c.d]), tensor(b, e, [c.V, c.dE])] as const;
            const out = kernels.pseudoImageFeatures(...args, { chunkRows: c.chunkRows });
            expect(out.shape).toEqual([c.N, c.dE]);
            expect(relErr(out.toArray(), refOut)).toBeLessThanOrEqual(b.tol);
            const r = kernels.pseudoImageFeaturesBackward(...args, tensor(b, g, [c.N, c.dE]), { chunkRows: c.chunkRows });
            // logits of ~300 carry an fp32 rounding of 300 * 2^-24 ~ 2e-5 before any kernel arithmetic, which
            // moves softmax by that much relative: the x100 cases allow 10 x the tolerance (conditioning)
            const gtol = b.tol * ((c as { gradTolFactor?: number }).gradTolFactor ?? 1);
            expect(magErr(r.dx.toArray(), ref.dx, ref.dxMag)).toBeLessThanOrEqual(gtol);
            expect(magErr(r.dwVm.toArray(), ref.dwVm, ref.dwVmMag)).toBeLessThanOrEqual(gtol);
            expect(magErr(r.de.toArray(), ref.de, ref.deMag)).toBeLessThanOrEqual(gtol);
          });
        });
      }

      it.skipIf(!b.available)('backward matches finite differences of sum(out * g)', () => {
        const c = { N: 3, d: 4, V: 19, dE: 5 };
        const raw = inputs('fd', c);
        const x = asInput(b, raw.x), w = asInput(b, raw.w), e = asInput(b, raw.e), g = asInput(b, raw.g);
        const r = scope(() => {
          const o = kernels.pseudoImageFeaturesBackward(tensor(b, x, [3, 4]), tensor(b, w, [19, 4]), tensor(b, e, [19, 5]), tensor(b, g, [3, 5]));
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
