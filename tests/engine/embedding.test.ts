// Engine ops embedding_forward / embedding_backward (native/cpu/embedding.cpp, rows.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr, relErr } from '../support/compare';
import { dotF64, gatherRowsRef, scatterAddRowsRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, i32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;
const shapes: [number, number, number][] = [[1, 1, 1], [7, 3, 33], [257, 50, 7], [33, 1, 5], [0, 5, 4], [5, 4, 0]];

function ids(rng: { int(n: number): number }, n: number, V: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(V));
}

describe(`engine embedding (seed ${runSeed})`, () => {
  for (const [n, V, D] of shapes) {
    it(`forward n=${n} V=${V} D=${D} copies the rows exactly`, () => {
      const rng = rngFor(`emb:f:${n}:${V}:${D}`);
      const id = ids(rng, n, V), W = rng.normals(V * D);
      scope(() => {
        const [Y] = run('embedding_forward', [i32(id), f32(W)], [poisoned(n * D)], [n, V, D]);
        expect(relErr(Y, gatherRowsRef(W, id, D))).toBe(0);
      });
    });

    it(`backward n=${n} V=${V} D=${D} accumulates into dW`, () => {
      const rng = rngFor(`emb:b:${n}:${V}:${D}`);
      const id = ids(rng, n, V), dY = rng.normals(n * D), dW0 = rng.normals(V * D);
      const ref = scatterAddRowsRef(dY, id, V, D, dW0);
      scope(() => {
        const [dW] = run('embedding_backward', [i32(id), f32(dY)], [f32(dW0)], [n, V, D]);
        expectErr('embedding_backward dW', magErr(dW, ref.dSrc, ref.mag), TOL);
      });
    });
  }

  it('backward matches finite differences of the forward (sum G * Y as a function of W)', () => {
    const n = 9, V = 4, D = 5, rng = rngFor('emb:fd');
    const id = ids(rng, n, V), W = rng.normals(V * D), G = rng.normals(n * D);
    scope(() => {
      const [dW] = run('embedding_backward', [i32(id), f32(G)], [f32(new Float32Array(V * D))], [n, V, D]);
      for (const k of someCoords(V * D, 6, () => rng.next())) {
        const fd = finiteDifference((w) => dotF64(G, gatherRowsRef(w, id, D)), W, k);
        expectErr('embedding_backward vs finite differences', Math.abs(dW[k] - fd) / Math.max(1, Math.abs(fd)), TOL);
      }
    });
  });

  it('heavily repeated ids: accurate (double sums) and bit-identical across runs', () => {
    const n = 6000, V = 3, D = 37, rng = rngFor('emb:repeat');
    const id = ids(rng, n, V), dY = rng.normals(n * D), dW0 = rng.normals(V * D);
    const ref = scatterAddRowsRef(dY, id, V, D, dW0);
    scope(() => {
      const [a] = run('embedding_backward', [i32(id), f32(dY)], [f32(dW0)], [n, V, D]);
      const [b] = run('embedding_backward', [i32(id), f32(dY)], [f32(dW0)], [n, V, D]);
      expect(sameBits(a, b)).toBe(true);
      expectErr('embedding_backward dW (6000 rows into 3)', magErr(a, ref.dSrc, ref.mag), 1e-7);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const W = f32(new Float32Array(15)), dY = f32(new Float32Array(6));
      expect(() => run('embedding_forward', [i32([0, 5]), W], [out(6)], [2, 5, 3])).toThrow(/\[embedding_forward\] ids\[1\] = 5 is outside \[0, 5\)/);
      expect(() => run('embedding_forward', [i32([-1, 0]), W], [out(6)], [2, 5, 3])).toThrow(/ids\[0\] = -1 is outside \[0, 5\)/);
      expect(() => run('embedding_backward', [i32([0, 7]), dY], [out(15)], [2, 5, 3])).toThrow(/\[embedding_backward\] ids\[1\] = 7 is outside \[0, 5\)/);
      expect(() => run('embedding_forward', [f32([0, 1]), W], [out(6)], [2, 5, 3])).toThrow(/ids must be int32, got float32/);
      expect(() => run('embedding_forward', [i32([0, 1]), W], [out(6)], [2, 6, 3])).toThrow(/W holds 60 bytes but needs 72/);
      expect(() => run('embedding_forward', [i32([0, 1]), W], [out(5)], [2, 5, 3])).toThrow(/Y holds 20 bytes but needs 24/);
      expect(() => run('embedding_forward', [i32([0]), W], [out(6)], [2, 5, 3])).toThrow(/ids holds 4 bytes but needs 8/);
      expect(() => run('embedding_backward', [i32([0, 1]), dY], [out(15)], [2, 5, -3])).toThrow(/D must be >= 0, got -3/);
      // the backward's buffers against n, V, D: dY [n, D], dW [V, D], ids [n]
      expect(() => run('embedding_backward', [i32([0, 1]), f32(new Float32Array(5))], [out(15)], [2, 5, 3])).toThrow(/^\[embedding_backward\] dY holds 20 bytes but needs 24/);
      expect(() => run('embedding_backward', [i32([0, 1, 2]), dY], [out(15)], [3, 5, 3])).toThrow(/^\[embedding_backward\] dY holds 24 bytes but needs 36/);
      expect(() => run('embedding_backward', [i32([0, 1]), dY], [out(14)], [2, 5, 3])).toThrow(/^\[embedding_backward\] dW holds 56 bytes but needs 60/);
      expect(() => run('embedding_backward', [i32([0]), dY], [out(15)], [2, 5, 3])).toThrow(/^\[embedding_backward\] ids holds 4 bytes but needs 8/);
    });
  });
});
