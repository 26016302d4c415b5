// Engine op rope (native/cpu/rope.cpp): HF LLaMA rotate_half RoPE; inverse = 1 is its backward.
import { describe, expect, it } from 'vitest';
import { scope } from '../../src';
import { relErr } from '../support/compare';
import { dotF64, ropeRef, ropeVjpRef, someCoords } from '../support/engine_reference';
import { expectErr, f32, out, poisoned, run, sameBits } from '../support/engine_harness';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;

interface Case { name: string; B: number; T: number; H: number; Dh: number; pos?: number; theta?: number }
const cases: Case[] = [
  { name: 'smallest Dh=2', B: 1, T: 1, H: 1, Dh: 2 },
  { name: 'B=2 T=7 H=3 Dh=8', B: 2, T: 7, H: 3, Dh: 8 },
  { name: 'T=33 H=2 Dh=64 posOffset 5', B: 1, T: 33, H: 2, Dh: 64, pos: 5 },
  { name: 'Dh=6 (half not a vector width)', B: 3, T: 5, H: 1, Dh: 6 },
  { name: 'positions near 1e5 (double angles), theta 5e5', B: 1, T: 3, H: 2, Dh: 128, pos: 99_998, theta: 500_000 },
  { name: 'B=0', B: 0, T: 3, H: 2, Dh: 4 },
  { name: 'Dh=0', B: 2, T: 3, H: 2, Dh: 0 },
];

describe(`engine rope (seed ${runSeed})`, () => {
  for (const c of cases) {
    it(c.name, () => {
      const pos = c.pos ?? 0, theta = c.theta ?? 10_000, n = c.B * c.T * c.H * c.Dh;
      const rng = rngFor(`rope:${c.name}`);
      const x = rng.normals(n), dy = rng.normals(n);
      const ints = (inverse: number) => [c.B, c.T, c.H, c.Dh, pos, inverse];
      scope(() => {
        const [y] = run('rope', [f32(x)], [poisoned(n)], ints(0), [theta]);
        expectErr('rope forward', relErr(y, ropeRef(x, c.B, c.T, c.H, c.Dh, pos, theta)), TOL);
        const [dx] = run('rope', [f32(dy)], [poisoned(n)], ints(1), [theta]);
        expectErr('rope backward (inverse = 1)', relErr(dx, ropeVjpRef(dy, c.B, c.T, c.H, c.Dh, pos, theta)), TOL);
        // In place gives the same bits as out of place.
        const xt = f32(x);
        run('rope', [xt], [xt], ints(0), [theta]);
        expect(sameBits(xt.toArray() as Float32Array, y)).toBe(true);
      });
    });
  }

  it('inverse = 1 matches central finite differences of the forward, and undoes it', () => {
    const B = 1, T = 4, H = 2, Dh = 6, pos = 3, theta = 10_000, n = B * T * H * Dh;
    const rng = rngFor('rope:fd');
    const x = rng.normals(n), g = rng.normals(n);
    scope(() => {
      const [dx] = run('rope', [f32(g)], [out(n)], [B, T, H, Dh, pos, 1], [theta]);
      for (const k of someCoords(n, 8, () => rng.next())) {
        const fd = finiteDifference((p) => dotF64(g, ropeRef(p, B, T, H, Dh, pos, theta)), x, k);
        expectErr('rope backward vs finite differences', Math.abs(dx[k] - fd) / Math.max(...dx.map(Math.abs)), TOL);
      }
      const [y] = run('rope', [f32(x)], [out(n)], [B, T, H, Dh, pos, 0], [theta]);
      const [back] = run('rope', [f32(y)], [out(n)], [B, T, H, Dh, pos, 1], [theta]);
      expectErr('rope inverse(forward(x)) = x', relErr(back, x), TOL);
    });
  });

  // The last few cos/sin tables are kept (a decoder's layers rotate at the same positions): a call must get its own
  // table whatever ran before it. Seven settings differing in one key each (theta, Dh, positions, T, direction), run
  // round robin twice (hits, and evictions: more settings than tables kept), each against the reference.
  it('kept cos/sin tables: every call gets the table of its own theta, Dh, positions, length and direction', () => {
    const H = 2, B = 1;
    const settings = [
      { T: 9, Dh: 8, pos: 0, theta: 10_000, inverse: 0 }, { T: 9, Dh: 8, pos: 0, theta: 10_000, inverse: 1 },
      { T: 9, Dh: 8, pos: 1, theta: 10_000, inverse: 0 }, { T: 9, Dh: 8, pos: 0, theta: 1_000_000, inverse: 0 },
      { T: 9, Dh: 6, pos: 0, theta: 10_000, inverse: 0 }, { T: 8, Dh: 8, pos: 0, theta: 10_000, inverse: 0 },
      { T: 1, Dh: 8, pos: 9, theta: 10_000, inverse: 0 },
    ];
    const rng = rngFor('rope:tables');
    scope(() => {
      for (let round = 0; round < 2; round++)
        for (const st of settings) {
          const n = B * st.T * H * st.Dh, x = rng.normals(n);
          const [y] = run('rope', [f32(x)], [poisoned(n)], [B, st.T, H, st.Dh, st.pos, st.inverse], [st.theta]);
          const ref = st.inverse ? ropeVjpRef(x, B, st.T, H, st.Dh, st.pos, st.theta) : ropeRef(x, B, st.T, H, st.Dh, st.pos, st.theta);
          expectErr(`round ${round} ${JSON.stringify(st)}`, relErr(y, ref), TOL);
        }
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32(new Float32Array(24));
      expect(() => run('rope', [x], [out(24)], [1, 2, 3, 4, 0, 0], [1e4])).not.toThrow();
      expect(() => run('rope', [x], [out(24)], [1, 8, 1, 3, 0, 0], [1e4])).toThrow(/\[rope\] Dh must be even .*got 3/);
      expect(() => run('rope', [x], [out(24)], [1, 2, 3, 4, 0, 0], [0])).toThrow(/theta must be finite and > 0, got 0/);
      expect(() => run('rope', [x], [out(24)], [1, 2, 3, 4, -1, 0], [1e4])).toThrow(/posOffset must be >= 0, got -1/);
      expect(() => run('rope', [x], [out(24)], [1, 2, 3, 4, 0, 2], [1e4])).toThrow(/inverse must be 0 or 1, got 2/);
      expect(() => run('rope', [x], [out(24)], [1, 2, 3, 6, 0, 0], [1e4])).toThrow(/X holds 96 bytes but needs 144/);
      expect(() => run('rope', [x], [out(20)], [1, 2, 3, 4, 0, 0], [1e4])).toThrow(/Y holds 80 bytes but needs 96/);
    });
  });
});
