// Engine ops layer_norm_forward / layer_norm_backward (native/cpu/layer_norm.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr, relErr } from '../support/compare';
import { dotF64, layerNormRef, layerNormVjpRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;

interface Case { name: string; R: number; C: number; eps?: number; offset?: number; scale?: number }
const cases: Case[] = [
  { name: 'R=1 C=1 (y = b)', R: 1, C: 1 },
  { name: 'R=3 C=7', R: 3, C: 7 },
  { name: 'R=33 C=257', R: 33, C: 257 },
  { name: 'R=257 C=33, eps 1e-6', R: 257, C: 33, eps: 1e-6 },
  { name: 'rows with mean 1000, std 1', R: 9, C: 129, offset: 1000 },
  { name: 'tiny rows (std 1e-3, eps matters)', R: 5, C: 64, scale: 1e-3, eps: 1e-5 },
  { name: 'R=0', R: 0, C: 5 },
];

function inputs(c: Case) {
  const rng = rngFor(`ln:${c.name}`);
  const x = rng.normals(c.R * c.C, c.scale ?? 1).map((v) => v + (c.offset ?? 0));
  return { rng, x, w: rng.normals(c.C).map((v) => 1 + 0.5 * v), b: rng.normals(c.C), dy: rng.normals(c.R * c.C), dw0: rng.normals(c.C), db0: rng.normals(c.C) };
}

describe(`engine layer_norm (seed ${runSeed})`, () => {
  for (const c of cases) {
    const eps = c.eps ?? 1e-5;
    it(`forward ${c.name}`, () => {
      const { x, w, b } = inputs(c);
      const ref = layerNormRef(x, w, b, c.R, c.C, eps);
      scope(() => {
        const [y, mean, rstd] = run('layer_norm_forward', [f32(x), f32(w), f32(b)], [poisoned(c.R * c.C), poisoned(c.R), poisoned(c.R)], [c.R, c.C], [eps]);
        expectErr('layer_norm_forward y', relErr(y, ref.y), TOL);
        expectErr('layer_norm_forward mean', relErr(mean, ref.mean), TOL);
        expectErr('layer_norm_forward rstd', relErr(rstd, ref.rstd), TOL);
      });
    });

    it(`backward ${c.name} (dw, db accumulate)`, () => {
      const { x, w, b, dy, dw0, db0 } = inputs(c);
      const ref = layerNormVjpRef(dy, x, w, c.R, c.C, eps);
      scope(() => {
        const [, mean, rstd] = run('layer_norm_forward', [f32(x), f32(w), f32(b)], [out(c.R * c.C), out(c.R), out(c.R)], [c.R, c.C], [eps]);
        const mT = f32(mean), rT = f32(rstd);
        const [dx, dw, db] = run('layer_norm_backward', [f32(dy), f32(x), f32(w), mT, rT], [poisoned(c.R * c.C), f32(dw0), f32(db0)], [c.R, c.C]);
        expectErr('layer_norm_backward dX', magErr(dx, ref.dx, ref.dxMag), TOL);
        expectErr('layer_norm_backward dw', magErr(dw, ref.dw.map((v, j) => v + dw0[j]), ref.dwMag.map((v, j) => v + Math.abs(dw0[j]))), TOL);
        expectErr('layer_norm_backward db', magErr(db, ref.db.map((v, j) => v + db0[j]), ref.dbMag.map((v, j) => v + Math.abs(db0[j]))), TOL);
      });
    });
  }

  it('backward matches central finite differences of the float64 forward', () => {
    const R = 3, C = 11, eps = 1e-5;
    const { rng, x, w, b, dy } = inputs({ name: 'fd', R, C });
    scope(() => {
      const [, mean, rstd] = run('layer_norm_forward', [f32(x), f32(w), f32(b)], [out(R * C), out(R), out(R)], [R, C], [eps]);
      const [dx, dw, db] = run('layer_norm_backward', [f32(dy), f32(x), f32(w), f32(mean), f32(rstd)], [out(R * C), f32(new Float32Array(C)), f32(new Float32Array(C))], [R, C]);
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => dotF64(dy, layerNormRef(xx, ww, bb, R, C, eps).y);
      const scale = Math.max(...dx.map(Math.abs), ...dw.map(Math.abs), ...db.map(Math.abs));
      for (const k of someCoords(R * C, 6, () => rng.next())) expectErr('layer_norm dX vs finite differences', Math.abs(dx[k] - finiteDifference((p) => L(p, w, b), x, k)) / scale, TOL);
      for (const k of someCoords(C, 4, () => rng.next())) {
        expectErr('layer_norm dw vs finite differences', Math.abs(dw[k] - finiteDifference((p) => L(x, p, b), w, k)) / scale, TOL);
        expectErr('layer_norm db vs finite differences', Math.abs(db[k] - finiteDifference((p) => L(x, w, p), b, k)) / scale, TOL);
      }
    });
  });

  it('dw, db reductions are bit-identical across runs', () => {
    const R = 3000, C = 40;
    const { x, w, b, dy } = inputs({ name: 'det', R, C });
    scope(() => {
      const [, mean, rstd] = run('layer_norm_forward', [f32(x), f32(w), f32(b)], [out(R * C), out(R), out(R)], [R, C], [1e-5]);
      const once = () => run('layer_norm_backward', [f32(dy), f32(x), f32(w), f32(mean), f32(rstd)], [out(R * C), f32(new Float32Array(C)), f32(new Float32Array(C))], [R, C]);
      const a = once(), bb = once();
      for (let i = 0; i < 3; i++) expect(sameBits(a[i], bb[i])).toBe(true);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32(new Float32Array(6)), w = f32(new Float32Array(3)), b = f32(new Float32Array(3));
      const outs = () => [out(6), out(2), out(2)];
      expect(() => run('layer_norm_forward', [x, w, b], outs(), [2, 3], [1e-5])).not.toThrow();
      expect(() => run('layer_norm_forward', [x, w, b], outs(), [2, 0], [1e-5])).toThrow(/\[layer_norm_forward\] C must be >= 1, got 0/);
      expect(() => run('layer_norm_forward', [x, w, b], outs(), [2, 3], [-1])).toThrow(/eps must be finite and >= 0/);
      expect(() => run('layer_norm_forward', [x, w, b], outs(), [2, 3], [])).toThrow(/missing float parameter 0 \(eps\)/);
      expect(() => run('layer_norm_forward', [x, f32(new Float32Array(2)), b], outs(), [2, 3], [1e-5])).toThrow(/w holds 8 bytes but needs 12/);
      expect(() => run('layer_norm_forward', [x, w, b], [out(6), out(1), out(2)], [2, 3], [1e-5])).toThrow(/mean holds 4 bytes but needs 8/);
      expect(() => run('layer_norm_backward', [x, x, w, f32([0, 0]), f32([1])], [out(6), out(3), out(3)], [2, 3])).toThrow(/\[layer_norm_backward\] rstd holds 4 bytes but needs 8/);
      expect(() => run('layer_norm_backward', [x, x, w, f32([0, 0]), f32([1, 1])], [out(6), out(3)], [2, 3])).toThrow(/missing output 2 \(db\)/);
    });
  });
});
