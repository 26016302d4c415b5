// Engine ops softmax_forward / softmax_backward (native/cpu/softmax.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr, relErr } from '../support/compare';
import { dotF64, softmaxRef, softmaxVjpRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, out, poisoned, run } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;

interface Case { name: string; R: number; C: number; scale?: number; masked?: boolean }
const cases: Case[] = [
  { name: 'R=1 C=1', R: 1, C: 1 },
  { name: 'R=3 C=7', R: 3, C: 7 },
  { name: 'R=33 C=257', R: 33, C: 257 },
  { name: 'large logits x30, C=1000', R: 5, C: 1000, scale: 30 },
  { name: 'masked entries (-inf)', R: 6, C: 33, masked: true },
  { name: 'R=0', R: 0, C: 5 },
  { name: 'C=0', R: 4, C: 0 },
];

describe(`engine softmax (seed ${runSeed})`, () => {
  for (const c of cases) {
    it(c.name, () => {
      const rng = rngFor(`softmax:${c.name}`);
      const x = rng.normals(c.R * c.C, c.scale ?? 1), dy = rng.normals(c.R * c.C);
      if (c.masked) for (let i = 0; i < x.length; i++) if (i % c.C !== 0 && rng.next() < 0.4) x[i] = -Infinity;
      scope(() => {
        const [y] = run('softmax_forward', [f32(x)], [poisoned(x.length)], [c.R, c.C]);
        expectErr('softmax_forward', relErr(y, softmaxRef(x, c.R, c.C)), TOL);
        if (c.masked) for (let i = 0; i < x.length; i++) if (x[i] === -Infinity) expect(y[i]).toBe(0);
        const ref = softmaxVjpRef(dy, y, c.R, c.C);
        const [dx] = run('softmax_backward', [f32(dy), f32(y)], [poisoned(x.length)], [c.R, c.C]);
        expectErr('softmax_backward', magErr(dx, ref.dx, ref.mag), TOL);
        // In place (dX = dY).
        const g = f32(dy);
        run('softmax_backward', [g, f32(y)], [g], [c.R, c.C]);
        expectErr('softmax_backward in place', magErr(g.toArray(), ref.dx, ref.mag), TOL);
      });
    });
  }

  it('backward matches central finite differences of the float64 forward', () => {
    const R = 3, C = 9, rng = rngFor('softmax:fd');
    const x = rng.normals(R * C, 2), g = rng.normals(R * C);
    scope(() => {
      const [y] = run('softmax_forward', [f32(x)], [out(R * C)], [R, C]);
      const [dx] = run('softmax_backward', [f32(g), f32(y)], [out(R * C)], [R, C]);
      const scale = Math.max(...dx.map(Math.abs));
      for (const k of someCoords(R * C, 8, () => rng.next()))
        expectErr('softmax_backward vs finite differences', Math.abs(dx[k] - finiteDifference((p) => dotF64(g, softmaxRef(p, R, C)), x, k)) / scale, TOL);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32(new Float32Array(6));
      expect(() => run('softmax_forward', [x], [out(6)], [2, 4])).toThrow(/\[softmax_forward\] X holds 24 bytes but needs 32/);
      expect(() => run('softmax_forward', [x], [out(5)], [2, 3])).toThrow(/Y holds 20 bytes but needs 24/);
      expect(() => run('softmax_forward', [x], [out(6)], [-2, 3])).toThrow(/R must be >= 0, got -2/);
      expect(() => run('softmax_backward', [x, f32(new Float32Array(5))], [out(6)], [2, 3])).toThrow(/\[softmax_backward\] Y holds 20 bytes but needs 24/);
      expect(() => run('softmax_backward', [x], [out(6)], [2, 3])).toThrow(/missing input 1 \(Y\)/);
    });
  });
});
