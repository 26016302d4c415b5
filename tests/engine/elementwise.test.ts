// Engine ops axpby, mul, mul_scalar, add_broadcast, fill (native/cpu/elementwise.cpp).
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { relErr } from '../support/compare';
import { expectErr, f32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;
const sizes = [0, 1, 7, 33, 257, 100_003];

describe(`engine element-wise ops (seed ${runSeed})`, () => {
  describe('axpby', () => {
    for (const n of sizes)
      for (const [a, b] of [[1, 1], [0.5, -2], [-3, 0], [0, 1.5], [1e-3, 1]]) {
        it(`n=${n} a=${a} b=${b}`, () => {
          const rng = rngFor(`axpby:${n}:${a}:${b}`);
          const x = rng.normals(n), y = rng.normals(n);
          // A zero coefficient must not read its operand: poison it with NaN.
          if (b === 0) y.fill(NaN);
          if (a === 0) x.fill(NaN);
          const ref = Float64Array.from({ length: n }, (_, i) => (a === 0 ? 0 : a * x[i]) + (b === 0 ? 0 : b * y[i]));
          scope(() => {
            const [z] = run('axpby', [f32(x), f32(y)], [poisoned(n)], [n], [a, b]);
            expectErr('axpby', relErr(z, ref), TOL);
            const yt = f32(y);  // in place into Y
            run('axpby', [f32(x), yt], [yt], [n], [a, b]);
            expect(sameBits(yt.toArray() as Float32Array, z)).toBe(true);
            const xt = f32(x);  // in place into X
            run('axpby', [xt, f32(y)], [xt], [n], [a, b]);
            expect(sameBits(xt.toArray() as Float32Array, z)).toBe(true);
          });
        });
      }
  });

  describe('mul', () => {
    for (const n of sizes) {
      it(`n=${n}`, () => {
        const rng = rngFor(`mul:${n}`);
        const x = rng.normals(n), y = rng.normals(n);
        scope(() => {
          const [z] = run('mul', [f32(x), f32(y)], [poisoned(n)], [n]);
          expectErr('mul', relErr(z, Float64Array.from(x, (v, i) => v * y[i])), TOL);
          const xt = f32(x);
          run('mul', [xt, f32(y)], [xt], [n]);
          expect(sameBits(xt.toArray() as Float32Array, z)).toBe(true);
        });
      });
    }
  });

  describe('mul_scalar', () => {
    for (const n of sizes) {
      it(`n=${n}`, () => {
        const rng = rngFor(`mul_scalar:${n}`);
        const x = rng.normals(n), s = rng.normals(1);
        scope(() => {
          const [z] = run('mul_scalar', [f32(x), f32(s)], [poisoned(n)], [n]);
          expectErr('mul_scalar', relErr(z, Float64Array.from(x, (v) => v * s[0])), TOL);
          const xt = f32(x); // in place
          run('mul_scalar', [xt, f32(s)], [xt], [n]);
          expect(sameBits(xt.toArray() as Float32Array, z)).toBe(true);
          expect(() => run('mul_scalar', [f32(x), f32([])], [poisoned(n)], [n])).toThrow(/\[mul_scalar\] s is missing \(null\)|\[mul_scalar\] s holds 0 bytes but needs 4/);
        });
      });
    }
  });

  describe('dropout', () => {
    // An independent reference of native/core/dropout.h: SplitMix64 of the counter in BigInt arithmetic.
    const M64 = (1n << 64n) - 1n;
    const bits = (seed: bigint, i: bigint) => {
      let z = (seed + (i + 1n) * 0x9e3779b97f4a7c15n) & M64;
      z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
      z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
      z ^= z >> 31n;
      return Number(z >> 40n);
    };
    for (const [n, p, seed] of [[0, 0.5, 1], [1, 0.5, 0], [257, 0.05, 12345], [100_003, 0.3, 2 ** 53 - 1], [4099, 0.9, 2 ** 40 + 3], [33, 0, 9]] as const) {
      it(`n=${n} p=${p} seed=${seed}`, () => {
        const rng = rngFor(`dropout:${n}:${p}`);
        const x = rng.normals(n);
        const threshold = Math.round(p * 2 ** 24), scale = 1 / (1 - p);
        let kept = 0;
        const ref = Float32Array.from(x, (v, i) => {
          if (bits(BigInt(seed), BigInt(i)) < threshold) return 0;
          kept++;
          return Math.fround(v * Math.fround(scale));
        });
        scope(() => {
          const [y] = run('dropout', [f32(x)], [poisoned(n)], [n, seed, threshold], [scale]);
          expect(sameBits(y, ref)).toBe(true);
          // in place, and the same mask again for the same seed (what the backward relies on)
          const xt = f32(x);
          run('dropout', [xt], [xt], [n, seed, threshold], [scale]);
          expect(sameBits(xt.toArray() as Float32Array, ref)).toBe(true);
        });
        if (n > 4000) {
          const sd = Math.sqrt(n * p * (1 - p));
          expect(Math.abs(kept - n * (1 - p))).toBeLessThan(5 * sd); // the kept share is 1 - p
        }
      });
    }
    // p = 1: threshold 2^24 is above every 24-bit draw, so nothing is kept and Y is +0 everywhere, also where X is
    // NaN or infinite (a dropped element is 0, never X * scale) and whatever the scale (F.dropout refuses p = 1,
    // whose scale 1 / (1 - p) is infinite; the op takes any finite one).
    it('threshold 2^24 (p = 1) drops every element, NaN and Inf included', () => {
      const n = 4099, x = rngFor('dropout:p1').normals(n, 3);
      x.set([NaN, Infinity, -Infinity, -0, 3.4e38]);
      scope(() => {
        for (const scale of [1, 0, -2.5e38]) {
          const [y] = run('dropout', [f32(x)], [poisoned(n)], [n, 2 ** 53 - 1, 2 ** 24], [scale]);
          expect(sameBits(y, new Float32Array(n))).toBe(true);
        }
        const xt = f32(x); // in place
        run('dropout', [xt], [xt], [n, 12345, 2 ** 24], [2]);
        expect(sameBits(xt.toArray() as Float32Array, new Float32Array(n))).toBe(true);
      });
    });

    it('rejects a seed outside [0, 2^53) and a threshold above 2^24', () => {
      scope(() => {
        expect(() => run('dropout', [f32([1])], [out(1)], [1, -1, 5], [1])).toThrow(/\[dropout\] seed must be in \[0, 9007199254740991\], got -1/);
        expect(() => run('dropout', [f32([1])], [out(1)], [1, 1, 2 ** 24 + 1], [1])).toThrow(/\[dropout\] threshold must be in \[0, 16777216\]/);
        expect(() => run('dropout', [f32([1])], [out(1)], [1, 1, 5], [NaN])).toThrow(/\[dropout\] scale must be finite/);
      });
    });
  });

  describe('add_broadcast', () => {
    for (const [B, n] of [[1, 1], [7, 33], [1, 100_003], [3, 70_001], [300, 257], [0, 5], [3, 0]]) {
      it(`B=${B} n=${n}`, () => {
        const rng = rngFor(`addb:${B}:${n}`);
        const x = rng.normals(B * n), y = rng.normals(n);
        const ref = Float64Array.from(x, (v, i) => v + y[i % Math.max(n, 1)]);
        scope(() => {
          const [z] = run('add_broadcast', [f32(x), f32(y)], [poisoned(B * n)], [B, n]);
          expectErr('add_broadcast', relErr(z, ref), TOL);
          const xt = f32(x);
          run('add_broadcast', [xt, f32(y)], [xt], [B, n]);
          expect(sameBits(xt.toArray() as Float32Array, z)).toBe(true);
        });
      });
    }
  });

  describe('fill', () => {
    for (const n of [0, 1, 33, 300_001])
      for (const v of [0, -0, 2.5, NaN, -Infinity]) {
        it(`n=${n} value=${v}`, () => {
          scope(() => {
            const [x] = run('fill', [], [poisoned(n, 7)], [n], [v]);
            expect(sameBits(x, new Float32Array(n).fill(v))).toBe(true);
          });
        });
      }
    it('fills only the first n elements', () => {
      scope(() => {
        const [x] = run('fill', [], [poisoned(5, 7)], [3], [1]);
        expect([...x]).toEqual([1, 1, 1, 7, 7]);
      });
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32(new Float32Array(4));
      expect(() => run('axpby', [x, f32([1, 2])], [out(4)], [4], [1, 1])).toThrow(/\[axpby\] Y holds 8 bytes but needs 16/);
      expect(() => run('axpby', [x, x], [out(4)], [4], [1])).toThrow(/missing float parameter 1 \(b\)/);
      expect(() => run('axpby', [x, x], [out(3)], [4], [1, 1])).toThrow(/Z holds 12 bytes but needs 16/);
      expect(() => run('mul', [x, x], [out(4)], [-1])).toThrow(/\[mul\] n must be >= 0, got -1/);
      expect(() => run('mul', [x], [out(4)], [4])).toThrow(/missing input 1 \(Y\)/);
      // operands of different sizes: each buffer is checked against n
      expect(() => run('mul', [x, f32([1, 2])], [out(4)], [4])).toThrow(/^\[mul\] Y holds 8 bytes but needs 16/);
      expect(() => run('mul', [f32([1, 2, 3]), x], [out(4)], [4])).toThrow(/^\[mul\] X holds 12 bytes but needs 16/);
      expect(() => run('mul', [x, x], [out(3)], [4])).toThrow(/^\[mul\] Z holds 12 bytes but needs 16/);
      expect(() => run('dropout', [f32([1, 2, 3])], [out(4)], [4, 1, 5], [1])).toThrow(/^\[dropout\] X holds 12 bytes but needs 16/);
      expect(() => run('dropout', [x], [out(3)], [4, 1, 5], [1])).toThrow(/^\[dropout\] Y holds 12 bytes but needs 16/);
      expect(() => run('add_broadcast', [x, f32([1, 2])], [out(4)], [2, 3])).toThrow(/\[add_broadcast\] X holds 16 bytes but needs 24/);
      expect(() => run('add_broadcast', [x, f32([1])], [out(4)], [2, 2])).toThrow(/y holds 4 bytes but needs 8/);
      expect(() => run('fill', [], [out(2)], [3], [0])).toThrow(/\[fill\] X holds 8 bytes but needs 12/);
      expect(() => run('fill', [], [out(2)], [2], [])).toThrow(/missing float parameter 0 \(value\)/);
    });
  });
});
