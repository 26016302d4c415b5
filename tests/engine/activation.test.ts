// Engine ops activation_forward / activation_backward (gelu erf, gelu tanh, quick_gelu, silu) and
// swiglu_forward / swiglu_backward (native/cpu/activation.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { relErr } from '../support/compare';
import { activationGradRef, activationNames, activationRef, erf, siluGradRef, siluRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;
const sizes = [0, 1, 7, 33, 257, 100_003];
const special = [0, -0, 1e-30, -1e-30, 1e-3, -1e-3, 5, -5, 20, -20, 100, -100, 1e4, -1e4];

function inputs(label: string, n: number): Float32Array {
  const x = rngFor(label).normals(n, 3);
  for (let i = 0; i < Math.min(n, special.length); i++) x[i] = special[i];
  return x;
}

describe(`engine activations (seed ${runSeed})`, () => {
  it('the float64 erf reference is accurate', () => {
    // erf(0.5), erf(1), erf(2), erf(3) to 16 digits (Abramowitz & Stegun table 7.1).
    expect(Math.abs(erf(0.5) - 0.5204998778130465)).toBeLessThan(1e-15);
    expect(Math.abs(erf(1) - 0.8427007929497149)).toBeLessThan(1e-15);
    expect(Math.abs(erf(-2) + 0.9953222650189527)).toBeLessThan(1e-15);
    expect(Math.abs(erf(3) - 0.9999779095030014)).toBeLessThan(1e-15);
  });

  for (let kind = 0; kind < 4; kind++) {
    describe(activationNames[kind], () => {
      for (const n of sizes) {
        it(`n=${n}`, () => {
          const x = inputs(`act:${kind}:${n}`, n), dy = rngFor(`act:dy:${kind}:${n}`).normals(n);
          const yRef = Float64Array.from(x, (v) => activationRef(kind, v));
          const dxRef = Float64Array.from(x, (v, i) => dy[i] * activationGradRef(kind, v));
          scope(() => {
            const [y] = run('activation_forward', [f32(x)], [poisoned(n)], [n, kind]);
            expectErr(`${activationNames[kind]} forward`, relErr(y, yRef), TOL);
            const [dx] = run('activation_backward', [f32(dy), f32(x)], [poisoned(n)], [n, kind]);
            expectErr(`${activationNames[kind]} backward`, relErr(dx, dxRef), TOL);
            // In place: Y = X and dX = dY.
            const xt = f32(x), gt = f32(dy);
            run('activation_backward', [gt, xt], [gt], [n, kind]);
            run('activation_forward', [xt], [xt], [n, kind]);
            expect(sameBits(xt.toArray() as Float32Array, y)).toBe(true);
            expect(sameBits(gt.toArray() as Float32Array, dx)).toBe(true);
          });
        });
      }

      it('backward matches central finite differences of the float64 forward', () => {
        const n = 40, rng = rngFor(`act:fd:${kind}`);
        const x = rng.normals(n, 2), g = rng.normals(n);
        scope(() => {
          const [dx] = run('activation_backward', [f32(g), f32(x)], [out(n)], [n, kind]);
          for (const k of someCoords(n, 8, () => rng.next())) {
            const fd = g[k] * finiteDifference((p) => activationRef(kind, p[0]), [x[k]], 0);
            expectErr('activation backward vs finite differences', Math.abs(dx[k] - fd) / Math.max(...dx.map(Math.abs)), TOL);
          }
        });
      });
    });
  }

  describe('swiglu', () => {
    for (const n of sizes) {
      it(`n=${n}`, () => {
        const gate = inputs(`swiglu:g:${n}`, n), rng = rngFor(`swiglu:${n}`), up = rng.normals(n), dy = rng.normals(n);
        scope(() => {
          const [y] = run('swiglu_forward', [f32(gate), f32(up)], [poisoned(n)], [n]);
          expectErr('swiglu forward', relErr(y, Float64Array.from(gate, (g, i) => siluRef(g) * up[i])), TOL);
          const [dgate, dup] = run('swiglu_backward', [f32(dy), f32(gate), f32(up)], [poisoned(n), poisoned(n)], [n]);
          expectErr('swiglu backward dgate', relErr(dgate, Float64Array.from(gate, (g, i) => dy[i] * up[i] * siluGradRef(g))), TOL);
          expectErr('swiglu backward dup', relErr(dup, Float64Array.from(gate, (g, i) => dy[i] * siluRef(g))), TOL);
        });
      });
    }

    it('backward matches central finite differences of the float64 forward', () => {
      const n = 30, rng = rngFor('swiglu:fd');
      const gate = rng.normals(n, 2), up = rng.normals(n), g = rng.normals(n);
      scope(() => {
        const [dgate, dup] = run('swiglu_backward', [f32(g), f32(gate), f32(up)], [out(n), out(n)], [n]);
        const scale = Math.max(...dgate.map(Math.abs), ...dup.map(Math.abs));
        for (const k of someCoords(n, 6, () => rng.next())) {
          const fdGate = g[k] * finiteDifference((p) => siluRef(p[0]) * up[k], [gate[k]], 0);
          const fdUp = g[k] * finiteDifference((p) => siluRef(gate[k]) * p[0], [up[k]], 0);
          expectErr('swiglu dgate vs finite differences', Math.abs(dgate[k] - fdGate) / scale, TOL);
          expectErr('swiglu dup vs finite differences', Math.abs(dup[k] - fdUp) / scale, TOL);
        }
      });
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32(new Float32Array(4));
      expect(() => run('activation_forward', [x], [out(4)], [4, 4])).toThrow(/\[activation_forward\] kind must be 0 \(gelu erf\), 1 \(gelu tanh\), 2 \(quick_gelu\) or 3 \(silu\), got 4/);
      expect(() => run('activation_backward', [x, x], [out(4)], [4, -1])).toThrow(/\[activation_backward\] kind must be .* got -1/);
      expect(() => run('activation_forward', [x], [out(4)], [5, 0])).toThrow(/X holds 16 bytes but needs 20/);
      expect(() => run('activation_forward', [x], [out(4)], [4])).toThrow(/missing integer parameter 1 \(kind\)/);
      expect(() => run('activation_backward', [x, f32([1])], [out(4)], [4, 3])).toThrow(/X holds 4 bytes but needs 16/);
      expect(() => run('swiglu_forward', [x, f32([1, 2])], [out(4)], [4])).toThrow(/\[swiglu_forward\] up holds 8 bytes but needs 16/);
      expect(() => run('swiglu_backward', [x, x, x], [out(4)], [4])).toThrow(/missing output 1 \(dup\)/);
      expect(() => run('swiglu_backward', [x, x, x], [out(4), out(4)], [-4])).toThrow(/n must be >= 0, got -4/);
    });
  });
});
