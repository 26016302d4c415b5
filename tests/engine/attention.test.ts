// attention_forward / attention_backward (native/cpu/attention.cpp) against the independent float64
// reference in tests/support/attention_reference.ts: odd sizes, MHA / GQA / MQA, causal (Tq = Tk, a KV
// cache Tq < Tk, and Tq > Tk), key padding (including rows that see no key at all), large scores,
// empty tensors, finite differences of sum(O * R), determinism and argument errors.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { scope, Tensor } from '../../src';
import { callOp } from '../../src/call_op';
import { magErr, relErr } from '../support/compare';
import { attentionBackwardRef, attentionLoss, attentionRef, AttnDims } from '../support/attention_reference';
import { finiteDifference } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

type MaskKind = 'none' | 'random' | 'right-pad' | 'left-pad';

/** The op's dimensions (the reference's, less the scale: 1 / sqrt(Dh) x scoreScale) and what to vary. */
interface Case extends Omit<AttnDims, 'scale'> {
  name: string;
  mask?: MaskKind;
  /** Batch rows whose keys are all padding. */
  emptyRows?: number[];
  /** Score scale multiplier (scores ~ N(0, scoreScale^2)). */
  scoreScale?: number;
  /** Finite-difference checks on this case. */
  fd?: boolean;
}

const cases: Case[] = [
  { name: 'tiny B=1 T=1 Dh=1', B: 1, Tq: 1, Tk: 1, Hq: 1, Hkv: 1, Dh: 1, causal: false, fd: true },
  { name: 'odd sizes B=2 T=5 H=3 Dh=3', B: 2, Tq: 5, Tk: 5, Hq: 3, Hkv: 3, Dh: 3, causal: false, fd: true },
  { name: 'MHA causal B=3 T=33 H=2 Dh=8', B: 3, Tq: 33, Tk: 33, Hq: 2, Hkv: 2, Dh: 8, causal: true, fd: true },
  { name: 'GQA 4/2 causal B=2 T=33 Dh=8', B: 2, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, Dh: 8, causal: true, fd: true },
  { name: 'MQA 4/1 causal B=2 T=130 Dh=64', B: 2, Tq: 130, Tk: 130, Hq: 4, Hkv: 1, Dh: 64, causal: true },
  { name: 'one (b, kv head) task, MQA B=1 H=2/1 T=130 Dh=16', B: 1, Tq: 130, Tk: 130, Hq: 2, Hkv: 1, Dh: 16, causal: true },
  { name: 'bidirectional B=1 T=130 H=2 Dh=3', B: 1, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, Dh: 3, causal: false },
  { name: 'bidirectional cross Tq=33 Tk=130 GQA 4/2 Dh=64', B: 2, Tq: 33, Tk: 130, Hq: 4, Hkv: 2, Dh: 64, causal: false },
  { name: 'KV cache causal Tq=5 Tk=33 Dh=8', B: 2, Tq: 5, Tk: 33, Hq: 2, Hkv: 2, Dh: 8, causal: true, fd: true },
  { name: 'decode causal Tq=1 Tk=130 GQA 4/1', B: 3, Tq: 1, Tk: 130, Hq: 4, Hkv: 1, Dh: 16, causal: true },
  // Tq <= 4 takes the CPU's direct path (no packing; generation's decode step), with the same semantics:
  { name: 'direct: decode over a left-padded cache, Tq=1 Tk=67 GQA 4/2', B: 3, Tq: 1, Tk: 67, Hq: 4, Hkv: 2, Dh: 16, causal: true, mask: 'left-pad', fd: true },
  { name: 'direct: Tq=4 Tk=37 causal, random mask, an all-padding row', B: 3, Tq: 4, Tk: 37, Hq: 2, Hkv: 1, Dh: 8, causal: true, mask: 'random', emptyRows: [2], fd: true },
  { name: 'direct: Tq=3 Tk=40 bidirectional, scores x100', B: 2, Tq: 3, Tk: 40, Hq: 2, Hkv: 2, Dh: 8, causal: false, scoreScale: 100 },
  { name: 'causal Tq=33 > Tk=5 (first rows see nothing)', B: 2, Tq: 33, Tk: 5, Hq: 2, Hkv: 1, Dh: 8, causal: true, fd: true },
  { name: 'random key mask + an all-padding batch row', B: 3, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, Dh: 8, causal: false, mask: 'random', emptyRows: [1], fd: true },
  { name: 'right padding, causal, T=130', B: 3, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, Dh: 8, causal: true, mask: 'right-pad' },
  { name: 'left padding, causal: early rows see only padding', B: 2, Tq: 33, Tk: 33, Hq: 2, Hkv: 1, Dh: 8, causal: true, mask: 'left-pad', fd: true },
  { name: 'large scores x100', B: 2, Tq: 33, Tk: 33, Hq: 2, Hkv: 1, Dh: 8, causal: true, scoreScale: 100 },
  { name: 'huge scores x1e4', B: 1, Tq: 33, Tk: 130, Hq: 2, Hkv: 2, Dh: 8, causal: false, scoreScale: 1e4 },
  { name: 'empty Tq=0', B: 2, Tq: 0, Tk: 5, Hq: 2, Hkv: 1, Dh: 4, causal: true },
  { name: 'empty Tk=0', B: 2, Tq: 3, Tk: 0, Hq: 2, Hkv: 1, Dh: 4, causal: false },
  { name: 'empty B=0', B: 0, Tq: 3, Tk: 3, Hq: 2, Hkv: 2, Dh: 4, causal: false, mask: 'random' },
];

const TOL = 1e-5;

function dimsOf(c: Case): AttnDims {
  const s = c.scoreScale ?? 1;
  return { B: c.B, Tq: c.Tq, Tk: c.Tk, Hq: c.Hq, Hkv: c.Hkv, Dh: c.Dh, causal: c.causal, scale: s / Math.sqrt(c.Dh) };
}

function makeMask(c: Case, rng: ReturnType<typeof rngFor>): Int32Array | null {
  if (!c.mask || c.mask === 'none') return null;
  const m = new Int32Array(c.B * c.Tk).fill(1);
  for (let b = 0; b < c.B; b++) {
    const pad = 1 + rng.int(Math.max(1, Math.floor(c.Tk / 2)));
    for (let j = 0; j < c.Tk; j++) {
      if (c.mask === 'random') m[b * c.Tk + j] = rng.next() < 0.3 ? 0 : 1;
      else if (c.mask === 'right-pad') m[b * c.Tk + j] = j >= c.Tk - pad ? 0 : 1;
      else m[b * c.Tk + j] = j < pad + 5 ? 0 : 1;
    }
    if (c.emptyRows?.includes(b)) m.fill(0, b * c.Tk, (b + 1) * c.Tk);
  }
  return m;
}

function inputs(c: Case) {
  const rng = rngFor(`attention:${c.name}`);
  const nq = c.B * c.Tq * c.Hq * c.Dh, nk = c.B * c.Tk * c.Hkv * c.Dh;
  return { q: rng.normals(nq), k: rng.normals(nk), v: rng.normals(nk), R: rng.normals(nq), mask: makeMask(c, rng) };
}

function intsOf(d: AttnDims, mask: Int32Array | null): number[] {
  return [d.B, d.Tq, d.Tk, d.Hq, d.Hkv, d.Dh, d.causal ? 1 : 0, mask ? 1 : 0];
}

/** A float32 tensor filled with NaN: outputs must be overwritten completely. */
function poisoned(shape: number[]): Tensor {
  return Tensor.fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), shape);
}

function forward(d: AttnDims, q: Float32Array, k: Float32Array, v: Float32Array, mask: Int32Array | null) {
  return scope(() => {
    const Q = Tensor.fromArray(q, [d.B, d.Tq, d.Hq, d.Dh]);
    const K = Tensor.fromArray(k, [d.B, d.Tk, d.Hkv, d.Dh]);
    const V = Tensor.fromArray(v, [d.B, d.Tk, d.Hkv, d.Dh]);
    const M = mask ? Tensor.fromArray(mask, [d.B, d.Tk]) : null;
    const O = poisoned([d.B, d.Tq, d.Hq, d.Dh]), lse = poisoned([d.B, d.Hq, d.Tq]);
    callOp('attention_forward', 'cpu', [Q, K, V, M], [O, lse], intsOf(d, mask), [d.scale]);
    return { o: O.toArray() as Float32Array, lse: lse.toArray() as Float32Array };
  });
}

function backward(d: AttnDims, dO: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, o: Float32Array, lse: Float32Array, mask: Int32Array | null) {
  return scope(() => {
    const qs = [d.B, d.Tq, d.Hq, d.Dh], ks = [d.B, d.Tk, d.Hkv, d.Dh];
    const ins = [Tensor.fromArray(dO, qs), Tensor.fromArray(q, qs), Tensor.fromArray(k, ks), Tensor.fromArray(v, ks), Tensor.fromArray(o, qs), Tensor.fromArray(lse, [d.B, d.Hq, d.Tq]), mask ? Tensor.fromArray(mask, [d.B, d.Tk]) : null];
    const dQ = poisoned(qs), dK = poisoned(ks), dV = poisoned(ks);
    callOp('attention_backward', 'cpu', ins, [dQ, dK, dV], intsOf(d, mask), [d.scale]);
    return { dq: dQ.toArray() as Float32Array, dk: dK.toArray() as Float32Array, dv: dV.toArray() as Float32Array };
  });
}

/** Worst |lse - ref| / mag over finite entries (mag: max(1, |ref|) or a score-aware one); -Infinity must match. */
function lseErr(a: Float32Array, ref: Float64Array, mag?: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    if (ref[i] === -Infinity) {
      if (a[i] !== -Infinity) return Infinity;
      continue;
    }
    const e = Math.abs(a[i] - ref[i]) / (mag ? mag[i] : Math.max(1, Math.abs(ref[i])));
    worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
  }
  return worst;
}

function allFinite(a: Float32Array): boolean {
  return a.every(Number.isFinite);
}

describe(`attention (seed ${runSeed})`, () => {
  for (const c of cases) {
    it(c.name, () => {
      const d = dimsOf(c);
      const { q, k, v, R, mask } = inputs(c);
      const ref = attentionRef(q, k, v, mask, d);
      const { o, lse } = forward(d, q, k, v, mask);
      // Large scores: fp32 rounding of the scores (eps * |S|) is amplified by exp, and is part of the
      // problem's conditioning, so those cases are measured against the score-aware magnitudes.
      const large = (c.scoreScale ?? 1) > 1;
      expect(allFinite(o)).toBe(true);
      expect(large ? magErr(o, ref.o, ref.oMagS) : relErr(o, ref.o), 'O').toBeLessThanOrEqual(TOL);
      expect(lseErr(lse, ref.lse, large ? ref.lseMagS : undefined), 'lse').toBeLessThanOrEqual(TOL);

      const g = attentionBackwardRef(q, k, v, mask, R, d);
      const { dq, dk, dv } = backward(d, R, q, k, v, o, lse, mask);
      expect(allFinite(dq) && allFinite(dk) && allFinite(dv)).toBe(true);
      expect(magErr(dq, g.dq, large ? g.dqMagS : g.dqMag), 'dQ').toBeLessThanOrEqual(TOL);
      expect(magErr(dk, g.dk, large ? g.dkMagS : g.dkMag), 'dK').toBeLessThanOrEqual(TOL);
      expect(magErr(dv, g.dv, large ? g.dvMagS : g.dvMag), 'dV').toBeLessThanOrEqual(TOL);

      // Rows that see no key: O = 0, lse = -inf, dQ = 0; masked keys: dK = dV = 0 (exactly).
      for (let i = 0; i < ref.lse.length; i++) if (ref.lse[i] === -Infinity) expect(lse[i]).toBe(-Infinity);
      for (let i = 0; i < o.length; i++) if (ref.oMag[i] === 0) expect(Math.abs(o[i])).toBe(0);
      for (let i = 0; i < dq.length; i++) if (g.dqMag[i] === 0) expect(Math.abs(dq[i])).toBe(0);
      for (let i = 0; i < dv.length; i++) if (g.dvMag[i] === 0) {
        expect(Math.abs(dv[i])).toBe(0);
        expect(Math.abs(dk[i])).toBe(0);
      }

      if (c.fd) {
        // A few coordinates of each gradient against central differences of the float64 loss sum(O * R).
        const rng = rngFor(`attention-fd:${c.name}`);
        const picks = (n: number) => Array.from({ length: Math.min(n, 3) }, () => rng.int(n));
        const checks: [string, Float32Array, Float64Array, Float64Array, (p: Float64Array) => number][] = [
          ['dQ', dq, g.dq, g.dqMag, (p) => attentionLoss(p, k, v, mask, d, R)],
          ['dK', dk, g.dk, g.dkMag, (p) => attentionLoss(q, p, v, mask, d, R)],
          ['dV', dv, g.dv, g.dvMag, (p) => attentionLoss(q, k, p, mask, d, R)],
        ];
        for (const [name, got, want, mag, loss] of checks) {
          const at = name === 'dQ' ? q : name === 'dK' ? k : v;
          const scaleMag = Math.max(...mag, 1e-30);
          for (const i of picks(at.length)) {
            const fd = finiteDifference(loss, at, i, 1e-4);
            expect(Math.abs(want[i] - fd) / scaleMag, `${name}[${i}] reference vs fd`).toBeLessThanOrEqual(1e-7);
            expect(Math.abs(got[i] - fd) / scaleMag, `${name}[${i}] kernel vs fd`).toBeLessThanOrEqual(TOL);
          }
        }
      }
    });
  }

  it('two runs are bit-identical', () => {
    for (const c of cases.filter((x) => /MQA|one \(b, kv head\) task|all-padding batch row/.test(x.name))) {
      const d = dimsOf(c);
      const { q, k, v, R, mask } = inputs(c);
      const a = forward(d, q, k, v, mask), b = forward(d, q, k, v, mask);
      const ga = backward(d, R, q, k, v, a.o, a.lse, mask), gb = backward(d, R, q, k, v, a.o, a.lse, mask);
      for (const [x, y] of [[a.o, b.o], [a.lse, b.lse], [ga.dq, gb.dq], [ga.dk, gb.dk], [ga.dv, gb.dv]])
        expect(Buffer.from(x.buffer).equals(Buffer.from(y.buffer))).toBe(true);
    }
  });

  // On a CPU with AVX-512 the products run in 16-float vectors, elsewhere (and with VWLMM_SIMD=avx2) in 8-float ones:
  // every element is the same chain of fused multiply-adds, so a child capped at AVX2 must give the same bits (not
  // when this process runs the portable build: VWLMM_SIMD=generic).
  it.skipIf(process.env.VWLMM_SIMD === 'generic')('VWLMM_SIMD=avx2 (a child process) gives the same bits as this process\'s build, forward and backward', () => {
    const picked = cases.filter((x) => /MQA|one \(b, kv head\) task|all-padding batch row|KV cache/.test(x.name));
    expect(picked.length).toBeGreaterThan(2);
    const runs = picked.map((c) => {
      const d = dimsOf(c);
      const { q, k, v, R, mask } = inputs(c);
      const f = forward(d, q, k, v, mask);
      const g = backward(d, R, q, k, v, f.o, f.lse, mask);
      return { d, q, k, v, R, mask, here: [f.o, f.lse, g.dq, g.dk, g.dv] };
    });
    const b64 = (x: Float32Array | Int32Array | null) => (x ? Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64') : null);
    const child = `
const { scope, Tensor } = require(${JSON.stringify(path.join(__dirname, '../../src'))});
const { callOp } = require(${JSON.stringify(path.join(__dirname, '../../src/call_op'))});
const f32 = (s) => { const b = Buffer.from(s, 'base64'); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const i32 = (s) => { const b = Buffer.from(s, 'base64'); return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const out = JSON.parse(require('fs').readFileSync(0, 'utf8')).map((r) => scope(() => {
  const d = r.d, ints = [d.B, d.Tq, d.Tk, d.Hq, d.Hkv, d.Dh, d.causal ? 1 : 0, r.mask ? 1 : 0];
  const qs = [d.B, d.Tq, d.Hq, d.Dh], ks = [d.B, d.Tk, d.Hkv, d.Dh];
  const Q = Tensor.fromArray(f32(r.q), qs), K = Tensor.fromArray(f32(r.k), ks), V = Tensor.fromArray(f32(r.v), ks);
  const M = r.mask ? Tensor.fromArray(i32(r.mask), [d.B, d.Tk]) : null;
  const O = Tensor.zeros(qs), L = Tensor.zeros([d.B, d.Hq, d.Tq]);
  callOp('attention_forward', 'cpu', [Q, K, V, M], [O, L], ints, [d.scale]);
  const dQ = Tensor.zeros(qs), dK = Tensor.zeros(ks), dV = Tensor.zeros(ks);
  callOp('attention_backward', 'cpu', [Tensor.fromArray(f32(r.R), qs), Q, K, V, O, L, M], [dQ, dK, dV], ints, [d.scale]);
  return [O, L, dQ, dK, dV].map((t) => Buffer.from(t.toArray().buffer).toString('base64'));
}));
process.stdout.write(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', child], {
      input: JSON.stringify(runs.map((x) => ({ d: x.d, q: b64(x.q), k: b64(x.k), v: b64(x.v), R: b64(x.R), mask: b64(x.mask) }))),
      env: { ...process.env, VWLMM_SIMD: 'avx2' }, encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 26,
    });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout) as string[][];
    runs.forEach((x, i) => ['O', 'lse', 'dQ', 'dK', 'dV'].forEach((name, j) => {
      const mine = x.here[j];
      expect(Buffer.from(got[i][j], 'base64').equals(Buffer.from(mine.buffer, mine.byteOffset, mine.byteLength)), `${picked[i].name}: ${name}`).toBe(true);
    }));
  }, 120_000);

  describe('argument errors name the problem', () => {
    const d: AttnDims = { B: 2, Tq: 3, Tk: 4, Hq: 4, Hkv: 2, Dh: 8, causal: true, scale: 0.35 };
    const rng = rngFor('attention:errors');
    const q = rng.normals(2 * 3 * 4 * 8), k = rng.normals(2 * 4 * 2 * 8), v = rng.normals(2 * 4 * 2 * 8);
    const mask = new Int32Array(2 * 4).fill(1);
    const fwd = (is: number[], opts: { q?: Float32Array; mask?: Tensor | null; floats?: number[] } = {}) =>
      scope(() => {
        const Q = Tensor.fromArray(opts.q ?? q, [(opts.q ?? q).length]);
        const K = Tensor.fromArray(k, [k.length]), V = Tensor.fromArray(v, [v.length]);
        const M = opts.mask === undefined ? Tensor.fromArray(mask, [8]) : opts.mask;
        callOp('attention_forward', 'cpu', [Q, K, V, M], [Tensor.empty([q.length]), Tensor.empty([2 * 4 * 3])], is, opts.floats ?? [d.scale]);
      });
    const ints = (over: Partial<Record<'B' | 'Tq' | 'Tk' | 'Hq' | 'Hkv' | 'Dh' | 'causal' | 'hasMask', number>> = {}) => {
      const x = { B: 2, Tq: 3, Tk: 4, Hq: 4, Hkv: 2, Dh: 8, causal: 1, hasMask: 1, ...over };
      return [x.B, x.Tq, x.Tk, x.Hq, x.Hkv, x.Dh, x.causal, x.hasMask];
    };

    it('a valid call passes (the baseline of the cases below)', () => {
      expect(() => fwd(ints())).not.toThrow();
    });
    it('buffer sizes', () => {
      expect(() => fwd(ints(), { q: q.subarray(0, q.length - 1) })).toThrow(/\[attention_forward\] Q holds \d+ bytes but needs/);
      expect(() => fwd(ints({ Tk: 5 }))).toThrow(RangeError);
    });
    it('Hq not a multiple of Hkv', () => {
      expect(() => fwd(ints({ Hq: 3 }))).toThrow(/Hq = 3 query heads must be a multiple of Hkv = 2/);
    });
    it('sizes and flags', () => {
      expect(() => fwd(ints({ Tq: -1 }))).toThrow(/Tq must be >= 0/);
      expect(() => fwd(ints({ Dh: 0, Tq: 0, Tk: 0 }))).toThrow(/Dh must be >= 1/);
      expect(() => fwd(ints({ Hkv: 0 }))).toThrow(RangeError);
      expect(() => fwd(ints({ causal: 2 }))).toThrow(/causal must be 0 or 1/);
      expect(() => fwd(ints(), { floats: [Infinity] })).toThrow(/scale must be finite/);
      expect(() => fwd(ints(), { floats: [] })).toThrow(/scale/);
      expect(() => fwd(ints().slice(0, 7))).toThrow(/hasMask/);
    });
    it('key mask: values, dtype, presence', () => {
      const bad = Int32Array.from(mask);
      bad[1 * 4 + 2] = 2;
      expect(() => fwd(ints(), { mask: Tensor.fromArray(bad, [8]) })).toThrow(RangeError);
      expect(() => fwd(ints(), { mask: Tensor.fromArray(bad, [8]) })).toThrow(/keyMask\[1, 2\] = 2 must be 0 or 1/);
      expect(() => fwd(ints(), { mask: Tensor.fromArray(new Float32Array(8).fill(1), [8]) })).toThrow(/keyMask must be int32/);
      expect(() => fwd(ints(), { mask: null })).toThrow(/keyMask/);
      expect(() => fwd(ints({ hasMask: 0 }))).toThrow(/keyMask is given but hasMask = 0/);
      expect(() => fwd(ints({ hasMask: 0 }), { mask: null })).not.toThrow();
    });
    it('backward checks lse and the mask too', () => {
      const { o, lse } = forward(d, q, k, v, mask);
      const bwd = (is: number[], lseIn: Float32Array, maskIn: Int32Array) =>
        scope(() => {
          const t = (a: Float32Array | Int32Array) => Tensor.fromArray(a, [a.length]);
          callOp('attention_backward', 'cpu', [t(q), t(q), t(k), t(v), t(o), t(lseIn), t(maskIn)], [Tensor.empty([q.length]), Tensor.empty([k.length]), Tensor.empty([v.length])], is, [d.scale]);
        });
      expect(() => bwd(ints(), lse, mask)).not.toThrow();
      expect(() => bwd(ints(), lse.subarray(1), mask)).toThrow(/\[attention_backward\] lse holds/);
      const bad = Int32Array.from(mask);
      bad[5] = -1;
      expect(() => bwd(ints(), lse, bad)).toThrow(/\[attention_backward\] keyMask\[1, 1\] = -1/);
      expect(() => bwd(ints({ Hkv: 3 }), lse, mask)).toThrow(/multiple of Hkv/);
    });
  });
});
