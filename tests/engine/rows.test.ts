// Engine ops copy_2d, gather_rows, scatter_add_rows, im2col (native/cpu/rows.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { magErr, relErr } from '../support/compare';
import { copy2dRef, Copy2dParams, dotF64, gatherRowsRef, im2colRef, patchConvRef, scatterAddRowsRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, i32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;

describe(`engine row ops (seed ${runSeed})`, () => {
  describe('copy_2d', () => {
    const cases: (Copy2dParams & { name: string })[] = [
      { name: 'contiguous 1x1', rows: 1, cols: 1, srcStride: 1, dstStride: 1, srcOffset: 0, dstOffset: 0, accumulate: false },
      { name: 'column slice out of a wider matrix', rows: 7, cols: 5, srcStride: 33, srcOffset: 4, dstStride: 5, dstOffset: 0, accumulate: false },
      { name: 'into a column slice, accumulate (slice backward)', rows: 7, cols: 5, srcStride: 5, srcOffset: 0, dstStride: 33, dstOffset: 4, accumulate: true },
      { name: 'broadcast one row (srcStride 0)', rows: 9, cols: 3, srcStride: 0, srcOffset: 2, dstStride: 4, dstOffset: 1, accumulate: false },
      { name: 'many rows', rows: 3000, cols: 33, srcStride: 40, srcOffset: 7, dstStride: 35, dstOffset: 2, accumulate: true },
      { name: 'one long row', rows: 1, cols: 100_003, srcStride: 0, srcOffset: 3, dstStride: 0, dstOffset: 1, accumulate: false },
      { name: 'rows = 0', rows: 0, cols: 5, srcStride: 5, srcOffset: 0, dstStride: 5, dstOffset: 0, accumulate: false },
      { name: 'cols = 0', rows: 4, cols: 0, srcStride: 5, srcOffset: 0, dstStride: 5, dstOffset: 0, accumulate: true },
    ];
    for (const c of cases) {
      it(c.name, () => {
        const rng = rngFor(`copy2d:${c.name}`);
        const span = (off: number, stride: number) => (c.rows === 0 || c.cols === 0 ? 0 : off + (c.rows - 1) * stride + c.cols);
        const src = rng.normals(span(c.srcOffset, c.srcStride) + 3), dst0 = rng.normals(span(c.dstOffset, c.dstStride) + 2);
        const ints = [c.rows, c.cols, c.srcStride, c.dstStride, c.srcOffset, c.dstOffset, +c.accumulate];
        scope(() => {
          const [dst] = run('copy_2d', [f32(src)], [f32(dst0)], ints);
          // Untouched elements stay bit-identical; copies are exact; sums within 1 rounding.
          expectErr('copy_2d', relErr(dst, copy2dRef(src, dst0, c)), c.accumulate ? TOL : 0);
        });
      });
    }

    it('argument errors name the problem', () => {
      scope(() => {
        const src = f32(new Float32Array(10));
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, 0, 0, 0])).not.toThrow();
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, 1, 0, 0])).toThrow(/\[copy_2d\] src holds 40 bytes but needs 44/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 6, 5, 0, 0, 0])).toThrow(/src holds 40 bytes but needs 44/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, 0, 1, 0])).toThrow(/dst holds 40 bytes but needs 44/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 4, 0, 0, 0])).toThrow(/dstStride \(4\) must be >= cols \(5\) when rows > 1/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, -1, 0, 0])).toThrow(/srcOffset must be >= 0, got -1/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, 0, 0, 3])).toThrow(/accumulate must be 0 or 1, got 3/);
        expect(() => run('copy_2d', [src], [out(10)], [2, 5, 5, 5, 0, 0])).toThrow(/missing integer parameter 6 \(accumulate\)/);
      });
    });
  });

  describe('gather_rows / scatter_add_rows', () => {
    for (const [S, n, C] of [[1, 1, 1], [5, 7, 33], [50, 257, 7], [3, 4000, 40], [5, 0, 3], [4, 6, 0]]) {
      it(`S=${S} n=${n} C=${C}`, () => {
        const rng = rngFor(`rows:${S}:${n}:${C}`);
        const idx = Int32Array.from({ length: n }, () => rng.int(S));
        const src = rng.normals(S * C), dDst = rng.normals(n * C), dSrc0 = rng.normals(S * C);
        scope(() => {
          const [dst] = run('gather_rows', [f32(src), i32(idx)], [poisoned(n * C)], [S, n, C]);
          expect(relErr(dst, gatherRowsRef(src, idx, C))).toBe(0);
          const ref = scatterAddRowsRef(dDst, idx, S, C, dSrc0);
          const [a] = run('scatter_add_rows', [f32(dDst), i32(idx)], [f32(dSrc0)], [S, n, C]);
          expectErr('scatter_add_rows', magErr(a, ref.dSrc, ref.mag), TOL);
          const [b] = run('scatter_add_rows', [f32(dDst), i32(idx)], [f32(dSrc0)], [S, n, C]);
          expect(sameBits(a, b)).toBe(true);
        });
      });
    }

    it('scatter_add_rows is the gradient of gather_rows (finite differences)', () => {
      const S = 6, n = 11, C = 4, rng = rngFor('rows:fd');
      const idx = Int32Array.from({ length: n }, () => rng.int(S)), src = rng.normals(S * C), g = rng.normals(n * C);
      scope(() => {
        const [dSrc] = run('scatter_add_rows', [f32(g), i32(idx)], [f32(new Float32Array(S * C))], [S, n, C]);
        for (const k of someCoords(S * C, 8, () => rng.next())) {
          const fd = finiteDifference((p) => dotF64(g, gatherRowsRef(p, idx, C)), src, k);
          expectErr('scatter_add_rows vs finite differences', Math.abs(dSrc[k] - fd) / Math.max(...dSrc.map(Math.abs)), TOL);
        }
      });
    });

    it('argument errors name the problem', () => {
      scope(() => {
        const src = f32(new Float32Array(6));
        expect(() => run('gather_rows', [src, i32([0, 3])], [out(4)], [3, 2, 2])).toThrow(/\[gather_rows\] idx\[1\] = 3 is outside \[0, 3\)/);
        expect(() => run('scatter_add_rows', [f32(new Float32Array(4)), i32([-2, 0])], [out(6)], [3, 2, 2])).toThrow(/\[scatter_add_rows\] idx\[0\] = -2 is outside \[0, 3\)/);
        expect(() => run('gather_rows', [src, f32([0, 1])], [out(4)], [3, 2, 2])).toThrow(/idx must be int32, got float32/);
        expect(() => run('scatter_add_rows', [f32(new Float32Array(4)), i32([0, 1])], [out(5)], [3, 2, 2])).toThrow(/dSrc holds 20 bytes but needs 24/);
        expect(() => run('scatter_add_rows', [f32(new Float32Array(3)), i32([0, 1])], [out(6)], [3, 2, 2])).toThrow(/dDst holds 12 bytes but needs 16/);
      });
    });
  });

  describe('im2col', () => {
    for (const [B, Cin, H, W, p] of [[1, 1, 1, 1, 1], [2, 3, 6, 9, 3], [1, 3, 28, 14, 14], [3, 2, 4, 4, 4], [0, 3, 4, 4, 2], [2, 0, 4, 4, 2]]) {
      it(`B=${B} Cin=${Cin} H=${H} W=${W} p=${p}`, () => {
        const img = rngFor(`im2col:${B}:${Cin}:${H}:${W}:${p}`).normals(B * Cin * H * W);
        const n = B * (H / p) * (W / p) * Cin * p * p;
        scope(() => {
          const [cols] = run('im2col', [f32(img)], [poisoned(n)], [B, Cin, H, W, p]);
          expect(relErr(cols, im2colRef(img, B, Cin, H, W, p))).toBe(0);
        });
      });
    }

    it('im2col then matmul with the flattened Conv2d weight is the patch convolution', () => {
      const B = 2, Cin = 3, H = 8, W = 12, p = 4, D = 5, P = (H / p) * (W / p), K = Cin * p * p;
      const rng = rngFor('im2col:conv');
      const img = rng.normals(B * Cin * H * W), weight = rng.normals(D * K), bias = rng.normals(D);
      const ref = patchConvRef(img, weight, bias, B, Cin, H, W, p, D);  // [B, D, Hp, Wp]
      scope(() => {
        const cols = out(B * P * K);
        run('im2col', [f32(img)], [cols], [B, Cin, H, W, p]);
        const [emb] = run('matmul', [cols, f32(weight), f32(bias)], [out(B * P * D)], [1, B * P, D, K, 0, 1, 1, 0, 0, 0, 0], [1]);
        const want = new Float64Array(B * P * D);  // [B, P, D] from [B, D, P]
        for (let b = 0; b < B; b++) for (let d = 0; d < D; d++) for (let q = 0; q < P; q++) want[(b * P + q) * D + d] = ref[(b * D + d) * P + q];
        expectErr('im2col + matmul vs conv2d', relErr(emb, want), TOL);
      });
    });

    it('argument errors name the problem', () => {
      scope(() => {
        const img = f32(new Float32Array(2 * 3 * 4 * 6));
        expect(() => run('im2col', [img], [out(144)], [2, 3, 4, 6, 2])).not.toThrow();
        expect(() => run('im2col', [img], [out(144)], [2, 3, 4, 6, 4])).toThrow(/\[im2col\] H \(4\) and W \(6\) must be multiples of the patch size p \(4\)/);
        expect(() => run('im2col', [img], [out(144)], [2, 3, 4, 6, 0])).toThrow(/patch size p must be >= 1, got 0/);
        expect(() => run('im2col', [img], [out(144)], [2, 3, 4, 8, 2])).toThrow(/img holds 576 bytes but needs 768/);
        expect(() => run('im2col', [img], [out(143)], [2, 3, 4, 6, 2])).toThrow(/cols holds 572 bytes but needs 576/);
      });
    });
  });
});
