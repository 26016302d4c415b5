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

  // A row whose entries are all -inf has no softmax (0 / 0): softmax.cpp documents NaN for it, as PyTorch gives;
  // the other rows (a partly masked one among them) are unaffected, and the backward carries the NaN row through.
  it('a row of all -inf gives a row of NaN (as PyTorch); the other rows are unaffected', () => {
    const R = 4, C = 7, rng = rngFor('softmax:-inf row');
    const x = rng.normals(R * C, 2), dy = rng.normals(R * C);
    x.fill(-Infinity, C, 2 * C);
    x[3 * C + 2] = -Infinity;
    const others = [0, 2, 3].flatMap((r) => Array.from({ length: C }, (_, j) => r * C + j));
    scope(() => {
      // poisoned with a finite value: the NaN must be the op's
      const [y] = run('softmax_forward', [f32(x)], [poisoned(R * C, 7)], [R, C]);
      for (let j = 0; j < C; j++) expect(y[C + j], `y[1, ${j}]`).toBeNaN();
      const ref = softmaxRef(x, R, C);
      expectErr('softmax_forward, rows beside an all -inf row', relErr(others.map((i) => y[i]), others.map((i) => ref[i])), TOL);
      expect(y[3 * C + 2]).toBe(0);
      const [dx] = run('softmax_backward', [f32(dy), f32(y)], [poisoned(R * C, 7)], [R, C]);
      for (let j = 0; j < C; j++) expect(dx[C + j], `dx[1, ${j}]`).toBeNaN();
      const vjp = softmaxVjpRef(dy, y, R, C);
      expectErr('softmax_backward, rows beside a NaN row', magErr(others.map((i) => dx[i]), others.map((i) => vjp.dx[i]), others.map((i) => vjp.mag[i])), TOL);
      expect(run('softmax_forward', [f32([-Infinity])], [poisoned(1, 7)], [1, 1])[0][0]).toBeNaN();
    });
  });

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
