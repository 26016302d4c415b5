// Every differentiable op's backward, wired through the tape, against central finite differences of
// the op's own forward (float32, so a wiring check with a loose tolerance: the engine kernels themselves
// are checked at 1e-5 against float64 references in tests/engine and tests/kernels).
import { describe, expect, it } from 'vitest';
import { F, Generator, scope, Tensor } from '../../src';
import { rngFor, runSeed } from '../support/random';

type Fn = (xs: Tensor[]) => Tensor;

/** Checks d sum(f(xs) * R)/d xs[k] for every float input against finite differences at a few coordinates. */
function gradcheck(label: string, f: Fn, inputs: { shape: number[]; scale?: number; int?: number[] }[], tol = 2e-2): void {
  const rng = rngFor(`gradcheck:${label}`);
  const data = inputs.map((s) => (s.int ? Int32Array.from(s.int) : rng.normals(s.shape.reduce((a, b) => a * b, 1), s.scale ?? 1)));
  const make = (arrs: (Float32Array | Int32Array)[]) => arrs.map((a, i) => Tensor.fromArray(a, inputs[i].shape));
  let R: Float32Array | null = null;
  const lossOf = (arrs: (Float32Array | Int32Array)[]): number =>
    scope(() => {
      const y = f(make(arrs));
      R ??= rng.normals(y.size);
      let s = 0;
      const ya = y.toArray();
      for (let i = 0; i < ya.length; i++) s += ya[i] * R[i];
      return s;
    });
  lossOf(data); // fixes R
  const grads = scope(() => {
    const xs = make(data);
    xs.forEach((x, i) => (x.requiresGrad = !inputs[i].int));
    const y = f(xs);
    const loss = F.sum(F.mul(y, Tensor.fromArray(R!, y.shape)));
    loss.backward();
    const g = xs.map((x) => (x.grad ? (x.grad.toArray() as Float32Array) : null));
    xs.forEach((x) => x.dispose());
    return g;
  });
  data.forEach((arr, k) => {
    if (inputs[k].int) return;
    const g = grads[k];
    expect(g, `${label}: input ${k} got no gradient`).not.toBeNull();
    let maxG = 0;
    for (const v of g!) maxG = Math.max(maxG, Math.abs(v));
    const picks = [0, Math.floor(arr.length / 2), arr.length - 1, rng.int(arr.length)];
    for (const i of picks) {
      const h = 1e-2 * Math.max(1, Math.abs(arr[i]));
      const up = Float32Array.from(arr as Float32Array), dn = Float32Array.from(arr as Float32Array);
      up[i] += h;
      dn[i] -= h;
      const fd = (lossOf(data.map((d, j) => (j === k ? up : d))) - lossOf(data.map((d, j) => (j === k ? dn : d)))) / (up[i] - dn[i]);
      expect(Math.abs(g![i] - fd), `${label}: d/dx${k}[${i}] autograd ${g![i]} vs finite difference ${fd}`).toBeLessThanOrEqual(tol * Math.max(1, maxG));
    }
  });
}

describe(`autograd gradients of ops.* (seed ${runSeed})`, () => {
  it('linear with and without bias', () => {
    gradcheck('linear+b', ([x, w, b]) => F.linear(x, w, b), [{ shape: [2, 3, 5] }, { shape: [4, 5] }, { shape: [4] }]);
    gradcheck('linear', ([x, w]) => F.linear(x, w), [{ shape: [7, 3] }, { shape: [2, 3] }]);
  });
  it('linears: one input, several weights (dx summed in the GEMMs), an output left out of the loss', () => {
    gradcheck('linears', ([x, a, b, c, bb]) => F.concat(F.linears(x, [a, b, c], [null, bb, null]), 2),
      [{ shape: [2, 3, 5] }, { shape: [4, 5] }, { shape: [6, 5] }, { shape: [1, 5] }, { shape: [6] }]);
    gradcheck('linears, two', ([x, a, b]) => F.concat(F.linears(x, [a, b]), 1), [{ shape: [7, 3] }, { shape: [2, 3] }, { shape: [5, 3] }]);
    // an output outside the loss: its weight gets no gradient, and dx is the other outputs' (the first GEMM writes)
    scope(() => {
      const rng = rngFor('linears:unused');
      const [x, a, b] = [[3, 4], [2, 4], [5, 4]].map((s) => Tensor.fromArray(rng.normals(s[0] * s[1]), s));
      for (const t of [x, a, b]) t.requiresGrad = true;
      F.sum(F.linears(x, [a, b])[1]).backward();
      expect(a.grad).toBeNull();
      const bd = b.toArray(), gx = x.grad!.toArray();
      for (let r = 0; r < 3; r++) for (let i = 0; i < 4; i++) {
        let s = 0;
        for (let o = 0; o < 5; o++) s += bd[o * 4 + i];
        expect(gx[r * 4 + i]).toBeCloseTo(s, 5);
      }
    });
  });
  it('matmul: transposes, batches, shared B', () => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = ta ? [2, 4, 3] : [2, 3, 4], bs = tb ? [5, 4] : [4, 5], bb = tb ? [2, 5, 4] : [2, 4, 5];
      gradcheck(`mm shared ${ta}${tb}`, ([x, y]) => F.matmul(x, y, { transA: ta, transB: tb }), [{ shape: a }, { shape: bs }]);
      gradcheck(`mm batched ${ta}${tb}`, ([x, y]) => F.matmul(x, y, { transA: ta, transB: tb }), [{ shape: a }, { shape: bb }]);
    }
  });
  it('elementwise: add, sub, scale, mul, addBroadcast, activations, swiglu, softmax, sum', () => {
    gradcheck('add', ([a, b]) => F.add(a, b), [{ shape: [3, 4] }, { shape: [3, 4] }]);
    gradcheck('sub', ([a, b]) => F.sub(a, b), [{ shape: [5] }, { shape: [5] }]);
    // alpha != 1 scales a's gradient (beta = 1 then passes b's through); one tensor on both sides gets both shares
    gradcheck('axpby', ([a, b]) => F.axpby(a, b, -0.6, 2.5), [{ shape: [3, 4] }, { shape: [3, 4] }]);
    gradcheck('axpby beta 1', ([a, b]) => F.axpby(a, b, 1.75, 1), [{ shape: [6] }, { shape: [6] }]);
    gradcheck('axpby a, a', ([a]) => F.axpby(a, a, -0.6, 1), [{ shape: [6] }]);
    gradcheck('scale', ([a]) => F.scale(a, -1.7), [{ shape: [6] }]);
    gradcheck('mul', ([a, b]) => F.mul(a, b), [{ shape: [2, 5] }, { shape: [2, 5] }]);
    gradcheck('addBroadcast', ([a, b]) => F.addBroadcast(a, b), [{ shape: [3, 2, 4] }, { shape: [2, 4] }]);
    for (const k of ['gelu', 'geluTanh', 'quickGelu', 'silu'] as const) gradcheck(k, ([a]) => F.activation(a, k), [{ shape: [9] }]);
    gradcheck('swiglu', ([a, b]) => F.swiglu(a, b), [{ shape: [2, 7] }, { shape: [2, 7] }]);
    gradcheck('softmax', ([a]) => F.softmax(a), [{ shape: [3, 6] }]);
    gradcheck('sum', ([a]) => F.sum(a), [{ shape: [4, 2] }]);
    gradcheck('reshape', ([a]) => F.reshape(a, [2, 6]), [{ shape: [3, 4] }]);
  });
  it('cast: float32 -> bf16 -> float32 passes the gradient through, rounded to the dtype it crosses', () => {
    // F.cast's gradient is the identity's (straight through the rounding), cast back to the input's dtype. The
    // round trip's forward rounds, so gradcheck's steps would measure bf16 rounding (~0.2 at its 1e-2 step);
    // here x and x +- h are exact in bf16 (multiples of 1/8 below 8 in size), the round trip is the identity on them,
    // and the float64 difference quotient is R exactly; the gradient crossed bf16 on the way back: 2^-8 relative (its unit roundoff).
    const rng = rngFor('gradcheck:cast');
    const n = 7, h = 1 / 8;
    const x0 = Float32Array.from({ length: n }, () => (rng.int(57) - 28) / 8), R = rng.normals(n);
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const lossOf = (xs: Float32Array) => scope(() => {
        const x = Tensor.fromArray(xs, [n], { dtype });
        const y = dtype === 'float32' ? F.cast(F.cast(x, 'bfloat16'), 'float32') : F.cast(x, 'float32');
        return Array.from(y.toArray()).reduce((s, v, i) => s + v * R[i], 0);
      });
      const g = scope(() => {
        const x = Tensor.fromArray(x0, [n], { dtype });
        x.requiresGrad = true;
        const y = dtype === 'float32' ? F.cast(F.cast(x, 'bfloat16'), 'float32') : F.cast(x, 'float32');
        expect(y.dtype).toBe('float32');
        F.sum(F.mul(y, Tensor.fromArray(R, [n]))).backward();
        expect(x.grad!.dtype, dtype).toBe(dtype); // in x's own dtype
        const ga = Array.from(x.grad!.toArray());
        x.dispose();
        return ga;
      });
      for (let i = 0; i < n; i++) {
        const up = Float32Array.from(x0), dn = Float32Array.from(x0);
        up[i] += h;
        dn[i] -= h;
        const fd = (lossOf(up) - lossOf(dn)) / (2 * h);
        expect(Math.abs(fd - R[i]), `${dtype}: the forward is exact on these points`).toBeLessThan(1e-9);
        expect(Math.abs(g[i] - fd), `${dtype}: d/dx[${i}] autograd ${g[i]} vs finite difference ${fd}`).toBeLessThanOrEqual(2 ** -8 * Math.abs(fd) + 1e-12);
      }
    }
  });
  it('norms, rope, embedding', () => {
    gradcheck('rmsNorm', ([x, w]) => F.rmsNorm(x, w, 1e-6), [{ shape: [3, 8] }, { shape: [8] }]);
    gradcheck('layerNorm', ([x, w, b]) => F.layerNorm(x, w, b, 1e-5), [{ shape: [4, 6] }, { shape: [6] }, { shape: [6] }]);
    gradcheck('rope', ([x]) => F.rope(x, 10000, 3), [{ shape: [2, 3, 2, 8] }]);
    gradcheck('embedding', ([ids, w]) => F.embedding(ids, w), [{ shape: [5], int: [0, 3, 3, 1, 0] }, { shape: [4, 3] }]);
  });
  it('concat, slice, gatherRows', () => {
    gradcheck('concat1', ([a, b]) => F.concat([a, b], 1), [{ shape: [2, 1, 3] }, { shape: [2, 4, 3] }]);
    gradcheck('concat0', ([a, b]) => F.concat([a, b], 0), [{ shape: [1, 3] }, { shape: [2, 3] }]);
    gradcheck('slice', ([a]) => F.slice(a, 1, 1, 2), [{ shape: [2, 4, 3] }]);
    gradcheck('gatherRows', ([a, i]) => F.gatherRows(a, i), [{ shape: [4, 3] }, { shape: [6], int: [3, 0, 0, 2, 3, 3] }]);
  });
  it('writeAt: an in-place write along an axis (the storage of a cache), refused where a gradient is needed', () => {
    scope(() => {
      const dst = Tensor.fromArray(Float32Array.from({ length: 2 * 5 * 3 }, (_, i) => i), [2, 5, 3]);
      const src = Tensor.fromArray(Float32Array.from({ length: 2 * 2 * 3 }, (_, i) => -1 - i), [2, 2, 3]);
      F.writeAt(dst, src, 1, 3);
      const want = Float32Array.from({ length: 30 }, (_, i) => i);
      for (let b = 0; b < 2; b++) for (let t = 0; t < 2; t++) for (let e = 0; e < 3; e++) want[(b * 5 + 3 + t) * 3 + e] = -1 - ((b * 2 + t) * 3 + e);
      expect(Array.from(dst.toArray())).toEqual(Array.from(want));
      expect(() => F.writeAt(dst, src, 1, 4)).toThrow(/F.writeAt: rows \[4, 6\) outside dst's 5 along axis 1/);
      expect(() => F.writeAt(dst, Tensor.zeros([2, 2, 4]), 1, 0)).toThrow(/must match dst \[2, 5, 3\] except along axis 1/);
      src.requiresGrad = true;
      expect(() => F.writeAt(dst, src, 1, 0)).toThrow(/F.writeAt: not differentiable/);
    });
  });

  it('attention: causal GQA with padding, bidirectional', () => {
    gradcheck('attn causal gqa', ([q, k, v]) => F.attention(q, k, v, { causal: true }), [{ shape: [2, 5, 4, 3] }, { shape: [2, 5, 2, 3] }, { shape: [2, 5, 2, 3] }]);
    gradcheck('attn masked', ([q, k, v, m]) => F.attention(q, k, v, { causal: false, keyMask: m }), [{ shape: [2, 3, 2, 4] }, { shape: [2, 4, 2, 4] }, { shape: [2, 4, 2, 4] }, { shape: [2, 4], int: [1, 1, 1, 1, 1, 1, 0, 0] }]);
  });
  it('patchEmbed (weight gradient)', () => {
    const img = rngFor('img').normals(2 * 3 * 4 * 4);
    gradcheck('patchEmbed', ([w]) => scope(() => F.patchEmbed(Tensor.fromArray(img, [2, 3, 4, 4]), w)), [{ shape: [5, 3, 2, 2] }]);
  });
  it('fused losses F.*', () => {
    // the same mask on every call (a generator of one seed each time): piecewise linear, so differences apply
    gradcheck('F.dropout', ([x]) => F.dropout(x, 0.3, new Generator(7)), [{ shape: [5, 7] }]);
    gradcheck('F.ce', ([h, w, t]) => F.linearCrossEntropy(h, w, t, { labelSmoothing: 0.1 }), [{ shape: [5, 4] }, { shape: [9, 4] }, { shape: [5], int: [1, -100, 8, 0, 3] }]);
    gradcheck('F.kl', ([h, w, x, v]) => F.visualWordKL(h, w, x, v), [{ shape: [3, 4] }, { shape: [7, 4] }, { shape: [3, 4] }, { shape: [7, 4] }]);
    gradcheck('F.pif', ([x, w, e]) => F.pseudoImageFeatures(x, w, e), [{ shape: [3, 4] }, { shape: [7, 4] }, { shape: [7, 5] }]);
  });
});
