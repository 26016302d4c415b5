// benchmarks/support.ts's ridge, the linear probe of the demo's probe scripts (demo_probe, tower_probe, route_probe):
// checked against known answers, not against itself. Noiseless data from a drawn W is recovered exactly (lambda 0);
// with a penalty, the normal equations (X'X + lambda I) W = X'Y hold to float64 rounding, evaluated directly.
import { describe, expect, it } from 'vitest';
import { ridge, ridgePredict } from '../../benchmarks/support';
import { rngFor } from '../support/random';

function data(label: string, n: number, d: number, c: number) {
  const rng = rngFor(label);
  const X = Array.from({ length: n }, () => Array.from({ length: d }, () => rng.normal()));
  const W = Array.from({ length: d + 1 }, () => Array.from({ length: c }, () => rng.normal())); // last row: bias
  const Y = X.map((x) => W[d].map((b, k) => x.reduce((s, v, p) => s + v * W[p][k], b)));
  return { X, W, Y };
}

describe('ridge (benchmarks/support.ts)', () => {
  it('recovers the weights and bias of noiseless data (lambda 0), odd sizes, several targets', () => {
    for (const [n, d, c] of [[40, 7, 1], [63, 13, 3], [9, 1, 2]]) {
      const { X, W, Y } = data(`exact ${n}x${d}x${c}`, n, d, c);
      const fit = ridge(X, Y, 0);
      expect(fit.length).toBe(d + 1);
      fit.forEach((row, p) => row.forEach((v, k) => expect(Math.abs(v - W[p][k])).toBeLessThan(1e-9)));
      expect(Math.abs(ridgePredict(fit, X[0])[c - 1] - Y[0][c - 1])).toBeLessThan(1e-9);
    }
  });

  it('with a penalty, solves the normal equations (X1^T X1 + lambda I) W = X1^T Y, bias penalised too', () => {
    const n = 31, d = 5, c = 2, lambda = 3.7;
    const { X, Y } = data('penalised', n, d, c);
    const fit = ridge(X, Y, lambda);
    const X1 = X.map((x) => [...x, 1]);
    for (let p = 0; p <= d; p++) for (let k = 0; k < c; k++) {
      let lhs = lambda * fit[p][k], rhs = 0;
      for (let i = 0; i < n; i++) {
        lhs += X1[i][p] * X1[i].reduce((s, v, q) => s + v * fit[q][k], 0);
        rhs += X1[i][p] * Y[i][k];
      }
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-9 * Math.max(1, Math.abs(rhs)));
    }
    // and the penalty shrinks: the fit's norm is below the unpenalised one's
    const norm = (w: ArrayLike<number>[]) => w.reduce((s, r) => s + Array.from(r).reduce((t, v) => t + v * v, 0), 0);
    expect(norm(fit)).toBeLessThan(norm(ridge(X, Y, 0)));
  });
});
