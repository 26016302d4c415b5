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

  it('extreme rows: all zeros (eps alone), scales 1e-20 and 1e19 (squares past float32 range), forward and backward', () => {
    const scales = [0, 1e-20, 1e-3, 1, 1e19], C = 37, R = scales.length, eps = 1e-6;
    const base = inputs(R, C, 'extreme');
    const x = base.x.map((v, i) => v * scales[Math.floor(i / C)]);
    const ref = rmsNormRef(x, base.w, R, C, eps), vjp = rmsNormVjpRef(base.dy, x, base.w, R, C, eps);
    scope(() => {
      const [y, rstd] = run('rms_norm_forward', [f32(x), f32(base.w)], [poisoned(R * C), poisoned(R)], [R, C], [eps]);
      expectErr('rms_norm_forward y, extreme rows', relErr(y, ref.y), TOL);
      expectErr('rms_norm_forward rstd, extreme rows', relErr(rstd, ref.rstd), TOL);
      expect(rstd[0]).toBeCloseTo(1 / Math.sqrt(eps), 0);
      const [dx, dw] = run('rms_norm_backward', [f32(base.dy), f32(x), f32(base.w), f32(rstd)], [poisoned(R * C), f32(new Float32Array(C))], [R, C]);
      expectErr('rms_norm_backward dX, extreme rows', magErr(dx, vjp.dx, vjp.dxMag), TOL);
      expectErr('rms_norm_backward dw, extreme rows', magErr(dw, vjp.dw, vjp.dwMag), TOL);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      // a row's statistics are a mean over C values, and eps must be a number that keeps it one (as layer_norm)
      const x = f32(new Float32Array(6)), w = f32(new Float32Array(3));
      expect(() => run('rms_norm_forward', [x, w], [out(6), out(2)], [2, 3], [0])).not.toThrow();
      expect(() => run('rms_norm_forward', [f32(new Float32Array(0)), f32(new Float32Array(0))], [out(0), out(2)], [2, 0], [1e-6])).toThrow(/\[rms_norm_forward\] C must be >= 1, got 0/);
      expect(() => run('rms_norm_backward', [f32(new Float32Array(0)), f32(new Float32Array(0)), f32(new Float32Array(0)), f32([1, 1])], [out(0), out(0)], [2, 0])).toThrow(/\[rms_norm_backward\] C must be >= 1, got 0/);
      for (const eps of [-1e-6, NaN, Infinity]) expect(() => run('rms_norm_forward', [x, w], [out(6), out(2)], [2, 3], [eps])).toThrow(/\[rms_norm_forward\] eps must be finite and >= 0, got/);
      expect(() => run('rms_norm_forward', [f32(new Float32Array(6)), f32(new Float32Array(2))], [out(6), out(2)], [2, 3], [1e-6])).toThrow(/\[rms_norm_forward\] w holds 8 bytes but needs 12/);
      expect(() => run('rms_norm_backward', [f32(new Float32Array(6)), f32(new Float32Array(5)), f32(new Float32Array(3)), f32([1, 1])], [out(6), out(3)], [2, 3])).toThrow(/x holds 20 bytes but needs 24/);
    });
  });
});
