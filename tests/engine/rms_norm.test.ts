// Engine ops rms_norm_forward / rms_norm_backward (native/cpu/rms_norm.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr, relErr } from '../support/compare';
import { dotF64, rmsNormRef, rmsNormVjpRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;
const shapes: [number, number][] = [[1, 1], [3, 7], [33, 257], [257, 33], [0, 5]];

function inputs(R: number, C: number, label: string) {
  const rng = rngFor(`rms:${label}:${R}:${C}`);
  return { rng, x: rng.normals(R * C), w: rng.normals(C).map((v) => 1 + 0.5 * v), dy: rng.normals(R * C), dw0: rng.normals(C) };
}

describe(`engine rms_norm (seed ${runSeed})`, () => {
  for (const [R, C] of shapes) {
    it(`forward and backward R=${R} C=${C}`, () => {
      const eps = 1e-6;
      const { x, w, dy, dw0 } = inputs(R, C, 'case');
      const ref = rmsNormRef(x, w, R, C, eps), vjp = rmsNormVjpRef(dy, x, w, R, C, eps);
      scope(() => {
        const [y, rstd] = run('rms_norm_forward', [f32(x), f32(w)], [poisoned(R * C), poisoned(R)], [R, C], [eps]);
        expectErr('rms_norm_forward y', relErr(y, ref.y), TOL);
        expectErr('rms_norm_forward rstd', relErr(rstd, ref.rstd), TOL);
        const [dx, dw] = run('rms_norm_backward', [f32(dy), f32(x), f32(w), f32(rstd)], [poisoned(R * C), f32(dw0)], [R, C]);
        expectErr('rms_norm_backward dX', magErr(dx, vjp.dx, vjp.dxMag), TOL);
        expectErr('rms_norm_backward dw', magErr(dw, vjp.dw.map((v, j) => v + dw0[j]), vjp.dwMag.map((v, j) => v + Math.abs(dw0[j]))), TOL);
      });
    });
  }

  it('backward matches central finite differences; dw is bit-identical across runs', () => {
    const R = 4, C = 9, eps = 1e-6;
    const { rng, x, w, dy } = inputs(R, C, 'fd');
    scope(() => {
      const [, rstd] = run('rms_norm_forward', [f32(x), f32(w)], [out(R * C), out(R)], [R, C], [eps]);
      const [dx, dw] = run('rms_norm_backward', [f32(dy), f32(x), f32(w), f32(rstd)], [out(R * C), f32(new Float32Array(C))], [R, C]);
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>) => dotF64(dy, rmsNormRef(xx, ww, R, C, eps).y);
      const scale = Math.max(...dx.map(Math.abs), ...dw.map(Math.abs));
      for (const k of someCoords(R * C, 6, () => rng.next())) expectErr('rms_norm dX vs finite differences', Math.abs(dx[k] - finiteDifference((p) => L(p, w), x, k)) / scale, TOL);
      for (const k of someCoords(C, 4, () => rng.next())) expectErr('rms_norm dw vs finite differences', Math.abs(dw[k] - finiteDifference((p) => L(x, p), w, k)) / scale, TOL);
    });
    const big = inputs(3000, 40, 'det');
    scope(() => {
      const [, rstd] = run('rms_norm_forward', [f32(big.x), f32(big.w)], [out(3000 * 40), out(3000)], [3000, 40], [eps]);
      const once = () => run('rms_norm_backward', [f32(big.dy), f32(big.x), f32(big.w), f32(rstd)], [out(3000 * 40), f32(new Float32Array(40))], [3000, 40])[1];
      expect(sameBits(once(), once())).toBe(true);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      expect(() => run('rms_norm_forward', [f32(new Float32Array(6)), f32(new Float32Array(2))], [out(6), out(2)], [2, 3], [1e-6])).toThrow(/\[rms_norm_forward\] w holds 8 bytes but needs 12/);
      expect(() => run('rms_norm_backward', [f32(new Float32Array(6)), f32(new Float32Array(5)), f32(new Float32Array(3)), f32([1, 1])], [out(6), out(3)], [2, 3])).toThrow(/x holds 20 bytes but needs 24/);
    });
  });
});
