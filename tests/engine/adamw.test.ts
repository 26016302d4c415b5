// Engine ops adamw_step and sum_squares (native/cpu/adamw.cpp).
import { describe, expect, it } from 'vitest';
import { scope, Tensor } from '../../src';
import { magErr, relErr, updateErr } from '../support/compare';
import { adamwRef, AdamWParams } from '../support/engine_reference';
import { expectErr, f32, out, run, sameBits } from '../support/engine_harness';
import { callOp } from '../../src/call_op';
import { rngFor, runSeed } from '../support/random';

const TOL = 1e-5;
const opts: AdamWParams = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, gradScale: 0.5 };
const floats = (o: AdamWParams) => [o.lr, o.beta1, o.beta2, o.eps, o.weightDecay, o.gradScale];

/** One fused adamw_step over tensors p, m, v (updated in place) with grads g. */
function step(p: Tensor[], m: Tensor[], v: Tensor[], g: Tensor[], t: number, o: AdamWParams): void {
  callOp('adamw_step', 'cpu', g, [...p, ...m, ...v], [p.length, t, ...p.map((x) => x.size)], floats(o));
}

describe(`engine adamw_step (seed ${runSeed})`, () => {
  it('three steps over tensors of sizes 0, 1, 7, 33, 100003 match torch.optim.AdamW', () => {
    const sizes = [0, 1, 7, 33, 100_003];
    const rng = rngFor('adamw:steps');
    scope(() => {
      const p = sizes.map((n) => f32(rng.normals(n, 0.05))), m = sizes.map((n) => f32(new Float32Array(n))), v = sizes.map((n) => f32(new Float32Array(n)));
      for (let t = 1; t <= 3; t++) {
        const g = sizes.map((n) => rng.normals(n, t));
        // The reference steps from the kernel's own float32 state, so each step is judged on its own.
        const before = p.map((x) => x.toArray()), ref = sizes.map((_, i) => ({
          p: Float64Array.from(before[i]), m: Float64Array.from(m[i].toArray()), v: Float64Array.from(v[i].toArray()),
        }));
        const mags = ref.map((r, i) => adamwRef(r.p, r.m, r.v, g[i], t, opts));
        step(p, m, v, g.map((x) => f32(x)), t, opts);
        for (let i = 0; i < sizes.length; i++) {
          // Judge the update p_new - p_old (~lr), not p itself, which would hide a wrong update; m and the
          // update against their condition-aware magnitudes (a size-1 tensor's m may all but cancel).
          expectErr('adamw update (p_new - p_old)', updateErr(before[i], p[i].toArray(), ref[i].p, mags[i].updMag), TOL);
          expectErr('adamw m', magErr(m[i].toArray(), ref[i].m, mags[i].mMag), TOL);
          expectErr('adamw v', relErr(v[i].toArray(), ref[i].v), TOL);
        }
      }
    });
  });

  it('step 2 from a given state, no weight decay, gradScale 1, large lr', () => {
    const n = 257, rng = rngFor('adamw:state');
    const o = { ...opts, lr: 0.3, weightDecay: 0, gradScale: 1, beta1: 0.8, beta2: 0.95 };
    const p0 = rng.normals(n), m0 = rng.normals(n, 0.1), v0 = rng.normals(n, 0.1).map((x) => x * x), g = rng.normals(n);
    const ref = { p: Float64Array.from(p0), m: Float64Array.from(m0), v: Float64Array.from(v0) };
    const mag = adamwRef(ref.p, ref.m, ref.v, g, 2, o);
    scope(() => {
      const p = f32(p0), m = f32(m0), v = f32(v0);
      step([p], [m], [v], [f32(g)], 2, o);
      expectErr('adamw update (p_new - p_old)', updateErr(p0, p.toArray(), ref.p, mag.updMag), TOL);
      expectErr('adamw m', magErr(m.toArray(), ref.m, mag.mMag), TOL);
      expectErr('adamw v', relErr(v.toArray(), ref.v), TOL);
    });
  });

  it('a zero gradient from zero moments is pure decoupled weight decay', () => {
    const p0 = rngFor('adamw:decay').normals(33);
    scope(() => {
      const p = f32(p0);
      step([p], [f32(new Float32Array(33))], [f32(new Float32Array(33))], [f32(new Float32Array(33))], 5, opts);
      expectErr('adamw weight decay only', relErr(p.toArray(), Float64Array.from(p0, (x) => x * (1 - opts.lr * opts.weightDecay))), 1e-7);
    });
  });

  // g^2 of |g| > 1.8e19 overflows float32, and (1 - beta2) g^2 of |g| ~ 1e-16 is 1e-35: both are stored (v is float32),
  // so v ~ g^2 must be formed as ((1 - beta2) g) g, and gradScale applied before squaring (a loss-scaled gradient of
  // 3e23 with gradScale 1e-4). The small gradients run with eps = 1e-8 (sqrt(v) << eps: update ~ lr g / eps, judged
  // on p ~ 1e-12 so that it shows in float32) and with eps = 0 (update ~ lr sign(g)).
  for (const [g, gs, eps, pScale] of [[3e19, 1, 1e-8, 1], [3e23, 1e-4, 1e-8, 1], [1e-16, 1, 1e-8, 1e-12], [1e-16, 1, 0, 1]]) {
    it(`gradients of ~${g} (gradScale ${gs}, eps ${eps}) against float64`, () => {
      const n = 257, rng = rngFor(`adamw:extreme:${g}:${gs}:${eps}`), gi = g * gs;
      const o = { ...opts, eps, gradScale: gs };
      // a state from earlier steps at the same scale (v ~ (0.3 g)^2 stays in float32's range)
      const p0 = rng.normals(n, pScale), m0 = rng.normals(n, 0.1 * gi), v0 = rng.normals(n, 0.1 * gi).map((x) => x * x), g0 = rng.normals(n, g);
      const ref = { p: Float64Array.from(p0), m: Float64Array.from(m0), v: Float64Array.from(v0) };
      const mag = adamwRef(ref.p, ref.m, ref.v, g0, 3, o);
      scope(() => {
        const p = f32(p0), m = f32(m0), v = f32(v0);
        step([p], [m], [v], [f32(g0)], 3, o);
        expectErr('adamw update, extreme g', updateErr(p0, p.toArray(), ref.p, mag.updMag), TOL);
        expectErr('adamw m, extreme g', magErr(m.toArray(), ref.m, mag.mMag), TOL);
        expectErr('adamw v, extreme g', relErr(v.toArray(), ref.v), TOL);
      });
    });
  }

  it('k = 0 is a no-op', () => {
    expect(() => callOp('adamw_step', 'cpu', [], [], [0, 1], floats(opts))).not.toThrow();
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const t = () => f32(new Float32Array(4));
      const go = (ints: number[], fl = floats(opts), outs = [t(), t(), t()], ins = [t()]) => callOp('adamw_step', 'cpu', ins, outs, ints, fl);
      expect(() => go([1, 1, 4])).not.toThrow();
      expect(() => go([1, 0, 4])).toThrow(/\[adamw_step\] step must be >= 1/);
      expect(() => go([1, 1, 5])).toThrow(/g\[0\] holds 16 bytes but needs 20/);
      expect(() => go([1, 1, 4], floats(opts), [t(), f32([1]), t()])).toThrow(/m\[0\] holds 4 bytes but needs 16/);
      expect(() => go([1, 1])).toThrow(/expects 3 integer parameters for k = 1, got 2/);
      expect(() => go([2, 1, 4, 4])).toThrow(/expects 2 inputs and 6 outputs, got 1 and 3/);
      expect(() => go([1, 1, -4])).toThrow(/n\[0\] must be >= 0, got -4/);
      expect(() => go([1, 1, 4], [1e-3, 1, 0.999, 1e-8, 0, 1])).toThrow(/beta1 must be in \[0, 1\), got 1/);
      expect(() => go([1, 1, 4], [1e-3, 0.9, -0.1, 1e-8, 0, 1])).toThrow(/beta2 must be in \[0, 1\)/);
      expect(() => go([1, 1, 4], [NaN, 0.9, 0.999, 1e-8, 0, 1])).toThrow(/lr must be finite, got nan/);
      expect(() => go([1, 1, 4], [1e-3, 0.9, 0.999, -1, 0, 1])).toThrow(/eps must be >= 0/);
      expect(() => go([1, 1, 4], [1e-3, 0.9, 0.999, 1e-8, -1, 1])).toThrow(/weightDecay must be >= 0/);
      expect(() => go([1, 1, 4], [1e-3, 0.9, 0.999, 1e-8, 0])).toThrow(/missing float parameter 5 \(gradScale\)/);
      // bf16Copies is CUDA's alone (ops.def): the CPU refuses the extra integer whatever its value, 0 included, with a
      // TypeError giving the counts, with or without the bf16 copy outputs, and writes nothing
      const p = f32([1, 2, 3, 4]), m = f32([0.5, -0.5, 0.25, 0]), v = f32([1, 2, 4, 0.5]);
      for (const copies of [0, 1]) {
        for (const outs of [[p, m, v], [p, m, v, Tensor.empty([4], { dtype: 'bfloat16' })]]) {
          expect(() => go([1, 1, 4, copies], floats(opts), outs)).toThrow(TypeError);
          expect(() => go([1, 1, 4, copies], floats(opts), outs)).toThrow(/^\[adamw_step\] expects 3 integer parameters for k = 1, got 4/);
        }
        expect(() => go([2, 1, 4, 4, copies], floats(opts), [p, p, m, m, v, v], [t(), t()])).toThrow(/^\[adamw_step\] expects 4 integer parameters for k = 2, got 5/);
      }
      expect([...p.toArray(), ...m.toArray(), ...v.toArray()]).toEqual([1, 2, 3, 4, 0.5, -0.5, 0.25, 0, 1, 2, 4, 0.5]);
    });
  });
});

describe(`engine sum_squares (seed ${runSeed})`, () => {
  it('sums the squares of all tensors in double; bit-identical across runs', () => {
    const sizes = [0, 1, 7, 33, 257, 300_001];
    const rng = rngFor('sumsq');
    const xs = sizes.map((n, i) => rng.normals(n, 10 ** (i - 3)));
    let ref = 0;
    for (const x of xs) for (const v of x) ref += v * v;
    scope(() => {
      const ts = xs.map((x) => f32(x));
      const once = () => run('sum_squares', ts, [out(1)], [sizes.length, ...sizes])[0];
      const a = once(), b = once();
      expect(sameBits(a, b)).toBe(true);
      expectErr('sum_squares', Math.abs(a[0] - ref) / ref, 1e-7);
    });
  });

  // s is float32 but the squares are summed in double (ops.def): squares below float32's normal range (1e-44, which
  // float32 would hold to ~2%, or flush to 0) still add up to a normal float32 to rounding; a sum past float32's range
  // (a gradient of 1e20, or squares that fit but whose sum does not) is +Infinity, which clipGradNorm reports as non-
  // finite, never NaN; and a sum just below the range stays finite and accurate.
  it('squares beyond float32\'s range: tiny ones summed in double, a sum past float32 gives +Infinity', () => {
    scope(() => {
      const n = 2_000_000, tiny = new Float32Array(n).map((_, i) => (i % 2 ? 1e-22 : -1e-22));
      const ref = n * tiny[0] * tiny[0];
      expect(ref).toBeGreaterThan(2 ** -126);
      const [a] = run('sum_squares', [f32(tiny)], [out(1)], [1, n]);
      expectErr('sum_squares tiny squares', Math.abs(a[0] - ref) / ref, 1e-6);
      const top = f32([1.2e19, -1e19, 5e18]), topRef = [1.2e19, -1e19, 5e18].reduce((s, x) => s + Math.fround(x) ** 2, 0);
      expect(topRef).toBeLessThan(3.4e38);
      const [b] = run('sum_squares', [top], [out(1)], [1, 3]);
      expectErr('sum_squares near float32 max', Math.abs(b[0] - topRef) / topRef, 1e-7);
      expect(run('sum_squares', [f32([1, 1e20, -3])], [out(1)], [1, 3])[0][0]).toBe(Infinity);
      expect(run('sum_squares', [top, f32([1.3e19])], [out(1)], [2, 3, 1])[0][0]).toBe(Infinity);
    });
  });

  it('k = 0 and empty tensors give 0', () => {
    scope(() => {
      expect(run('sum_squares', [], [f32([5])], [0])[0][0]).toBe(0);
      expect(run('sum_squares', [f32([])], [f32([5])], [1, 0])[0][0]).toBe(0);
    });
  });

  it('argument errors name the problem', () => {
    scope(() => {
      const x = f32([1, 2, 3]);
      expect(() => run('sum_squares', [x], [out(1)], [1, 4])).toThrow(/\[sum_squares\] x\[0\] holds 12 bytes but needs 16/);
      expect(() => run('sum_squares', [x, x], [out(1)], [1, 3])).toThrow(/expects 1 inputs and 1 outputs, got 2 and 1/);
      expect(() => run('sum_squares', [x], [out(1)], [2, 3])).toThrow(/expects 3 integer parameters for k = 2, got 2/);
      expect(() => run('sum_squares', [x], [f32([])], [1, 3])).toThrow(/s holds 0 bytes but needs 4/);
    });
  });
});
