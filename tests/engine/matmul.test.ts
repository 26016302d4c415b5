// Engine ops matmul and sum_rows (native/cpu/matmul.cpp) against the float64 references.
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr } from '../support/compare';
import { matmulRef, MatmulParams, sumRowsRef } from '../support/engine_reference';
import { expectErr, f32, i32, out, run, sameBits } from '../support/engine_harness';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;

type Case = Partial<MatmulParams> & { name: string; M: number; N: number; K: number };

function full(c: Case): MatmulParams {
  const batch = c.batch ?? 1;
  return {
    batch, M: c.M, N: c.N, K: c.K, transA: c.transA ?? false, transB: c.transB ?? false, hasBias: c.hasBias ?? false,
    accumulate: c.accumulate ?? false, strideA: c.strideA ?? c.M * c.K, strideB: c.strideB ?? c.K * c.N,
    strideC: c.strideC ?? c.M * c.N, alpha: c.alpha ?? 1,
  };
}

const extent = (batch: number, stride: number, block: number) => (batch === 0 || block === 0 ? 0 : (batch - 1) * stride + block);

const cases: Case[] = [
  { name: '1x1x1', M: 1, N: 1, K: 1 },
  { name: 'odd 3x7x33', M: 3, N: 7, K: 33 },
  { name: 'transA', M: 5, N: 7, K: 9, transA: true },
  { name: 'transB', M: 33, N: 17, K: 65, transB: true },
  { name: 'transA transB alpha', M: 7, N: 3, K: 33, transA: true, transB: true, alpha: -0.75 },
  { name: 'bias', M: 9, N: 33, K: 7, hasBias: true },
  { name: 'accumulate', M: 7, N: 5, K: 3, accumulate: true },
  { name: 'accumulate + bias + transB', M: 7, N: 5, K: 31, accumulate: true, hasBias: true, transB: true, alpha: 2 },
  { name: 'larger 129x65x127', M: 129, N: 65, K: 127, hasBias: true },
  { name: 'batched, gaps between batches', M: 5, N: 7, K: 3, batch: 3, strideA: 15 + 4, strideB: 21 + 1, strideC: 35 + 3 },
  { name: 'batched, shared B (strideB 0), bias, accumulate', M: 4, N: 6, K: 5, batch: 4, strideB: 0, hasBias: true, accumulate: true, transB: true },
  { name: 'batched, shared A (strideA 0)', M: 3, N: 2, K: 8, batch: 2, strideA: 0, transA: true },
  { name: 'strideC 0 + accumulate sums over the batch', M: 5, N: 4, K: 7, batch: 5, strideC: 0, accumulate: true, transA: true },
  { name: 'strideC 0 + accumulate + bias adds the bias per batch', M: 3, N: 6, K: 2, batch: 3, strideC: 0, accumulate: true, hasBias: true },
  { name: 'K = 0 gives the bias', M: 3, N: 4, K: 0, hasBias: true },
  { name: 'K = 0 accumulate leaves C (+ bias)', M: 3, N: 4, K: 0, hasBias: true, accumulate: true },
  { name: 'K = 0 no bias gives zeros', M: 2, N: 3, K: 0 },
  { name: 'M = 0', M: 0, N: 3, K: 4, hasBias: true },
  { name: 'N = 0', M: 3, N: 0, K: 4 },
  { name: 'batch = 0', M: 3, N: 3, K: 3, batch: 0 },
];

describe(`engine matmul (seed ${runSeed})`, () => {
  for (const c of cases) {
    it(c.name, () => {
      const p = full(c);
      const rng = rngFor(`matmul:${c.name}`);
      const A = rng.normals(extent(p.batch, p.strideA, p.M * p.K));
      const B = rng.normals(extent(p.batch, p.strideB, p.K * p.N));
      const bias = p.hasBias ? rng.normals(p.N) : null;
      const nC = extent(p.batch, p.strideC, p.M * p.N);
      // Gaps between batches and non-accumulated outputs start as a marker that must survive / vanish.
      const C0 = p.accumulate ? rng.normals(nC) : new Float32Array(nC).fill(7.5);
      const ref = matmulRef(A, B, bias, C0, p);
      scope(() => {
        const ints = [p.batch, p.M, p.N, p.K, +p.transA, +p.transB, +p.hasBias, +p.accumulate, p.strideA, p.strideB, p.strideC];
        const [C] = run('matmul', [f32(A), f32(B), bias ? f32(bias) : null], [f32(C0)], ints, [p.alpha]);
        expectErr('matmul C', magErr(C, ref.C, ref.mag), TOL);
        for (let b = 0; b + 1 < p.batch; b++)  // gaps between the batches of C stay untouched
          for (let e = b * p.strideC + p.M * p.N; e < (b + 1) * p.strideC; e++) expect(C[e]).toBe(7.5);
      });
    });
  }

  it('argument errors name the problem', () => {
    scope(() => {
      const A = f32(new Float32Array(6)), B = f32(new Float32Array(12)), C = out(8), bias = f32(new Float32Array(4));
      const ints = (o: Partial<Record<string, number>> = {}) => [
        o.batch ?? 1, o.M ?? 2, o.N ?? 4, o.K ?? 3, o.ta ?? 0, o.tb ?? 0, o.hb ?? 0, o.acc ?? 0, o.sA ?? 6, o.sB ?? 12, o.sC ?? 8,
      ];
      expect(() => run('matmul', [A, B], [C], ints(), [1])).not.toThrow();
      expect(() => run('matmul', [A, B], [C], ints({ K: 4 }), [1])).toThrow(/\[matmul\] A holds 24 bytes but needs 32/);
      expect(() => run('matmul', [A, B], [C], ints({ N: 5 }), [1])).toThrow(/\[matmul\] B holds 48 bytes but needs 60/);
      expect(() => run('matmul', [A, B], [C], ints({ batch: 2 }), [1])).toThrow(/A holds 24 bytes but needs 48/);
      expect(() => run('matmul', [A, B], [C], ints({ M: -1 }), [1])).toThrow(/M must be >= 0, got -1/);
      expect(() => run('matmul', [A, B], [C], ints({ ta: 2 }), [1])).toThrow(/transA must be 0 or 1, got 2/);
      expect(() => run('matmul', [A, B], [C], ints({ hb: 1 }), [1])).toThrow(/missing input 2 \(bias\)/);
      expect(() => run('matmul', [A, B, null], [C], ints({ hb: 1 }), [1])).toThrow(/\[matmul\] bias is missing \(null\)/);
      expect(() => run('matmul', [A, B, bias], [out(7)], ints({ hb: 1 }), [1])).toThrow(/C holds 28 bytes but needs 32/);
      expect(() => run('matmul', [A, B, bias], [C], ints({ hb: 0 }), [1])).toThrow(/\[matmul\] bias is given but hasBias = 0/);
      expect(() => run('matmul', [A, B, null], [C], ints({ hb: 0 }), [1])).not.toThrow();
      expect(() => run('matmul', [A, B], [C], ints(), [])).toThrow(/missing float parameter 0 \(alpha\)/);
      expect(() => run('matmul', [A, B], [C], ints().slice(0, 10), [1])).toThrow(/missing integer parameter 10 \(strideC\)/);
      expect(() => run('matmul', [A, i32(new Int32Array(12))], [C], ints(), [1])).toThrow(/\[matmul\] B must be float32, got int32/);
    });
  });
});

describe(`engine sum_rows (seed ${runSeed})`, () => {
  const shapes: [number, number][] = [[1, 1], [3, 7], [257, 33], [33, 1000], [5000, 3], [0, 5], [4, 0]];
  for (const [R, C] of shapes)
    for (const acc of [false, true]) {
      it(`R=${R} C=${C}${acc ? ' accumulate' : ''}`, () => {
        const rng = rngFor(`sum_rows:${R}:${C}:${acc}`);
        const X = rng.normals(R * C), y0 = rng.normals(C);
        const ref = sumRowsRef(X, R, C, acc ? y0 : null);
        scope(() => {
          const [y] = run('sum_rows', [f32(X)], [f32(acc ? y0 : new Float32Array(C).fill(NaN))], [R, C, +acc]);
          expectErr('sum_rows y', magErr(y, ref.y, ref.mag), TOL);
        });
      });
    }

  it('large cancelling sums stay within 1e-5 of the absolute magnitude', () => {
    const R = 20000, C = 2, rng = rngFor('sum_rows:cancel');
    const X = rng.normals(R * C, 1000);
    const ref = sumRowsRef(X, R, C, null);
    scope(() => {
      const [y] = run('sum_rows', [f32(X)], [out(C)], [R, C, 0]);
      expectErr('sum_rows y (cancelling, tol 1e-7)', magErr(y, ref.y, ref.mag), 1e-7);
    });
  });

  it('is deterministic (two runs bit-identical, both work splits)', () => {
    for (const [R, C] of [[3000, 300], [40000, 5]]) {
      const X = rngFor(`sum_rows:det:${R}`).normals(R * C);
      scope(() => {
        const [a] = run('sum_rows', [f32(X)], [out(C)], [R, C, 0]);
        const [b] = run('sum_rows', [f32(X)], [out(C)], [R, C, 0]);
        expect(sameBits(a, b)).toBe(true);
      });
    }
  });

  it('argument errors name the problem', () => {
    scope(() => {
      expect(() => run('sum_rows', [f32(new Float32Array(6))], [out(3)], [3, 3, 0])).toThrow(/\[sum_rows\] X holds 24 bytes but needs 36/);
      expect(() => run('sum_rows', [f32(new Float32Array(6))], [out(2)], [2, 3, 0])).toThrow(/y holds 8 bytes but needs 12/);
      expect(() => run('sum_rows', [f32(new Float32Array(6))], [out(3)], [2, 3, 2])).toThrow(/accumulate must be 0 or 1/);
      expect(() => run('sum_rows', [f32(new Float32Array(6))], [out(3)], [-2, 3, 0])).toThrow(/R must be >= 0/);
    });
  });
});
