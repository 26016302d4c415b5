// bfloat16 on the CPU (native/cpu/float32_view.h): the ops that take bf16 (matmul, cast, the fused ops, activations, SwiGLU, RoPE, attention, axpby, mul, dropout,
// RMSNorm)
// must give exactly what their float32 kernel gives on the bf16 values, rounded once where the output is
// bf16; the cast op must round as torch / the CUDA intrinsics (round to nearest even, NaN stays NaN,
// overflow to inf). Calls that mix dtypes the CUDA backend refuses are refused with its message, on every
// buffer of every op (a table over the whole op table), before anything is computed.
import { describe, expect, it } from 'vitest';
import { scope, Tensor } from '../../src';
import type { DType } from '../../src';
import { bf16ToF32, f32ToBf16 } from '../../src/bf16';
import { callOp, opNames } from '../../src/call_op';
import { opsDef } from '../support/backends';
import { sameBits } from '../support/engine_harness';
import { rngFor, runSeed } from '../support/random';

const rounded = (a: Float32Array) => bf16ToF32(f32ToBf16(a));

/** One op call as data: float inputs/outputs flagged `bf` run in bfloat16 in the bf16 call. */
interface Slot {
  data: Float32Array | Int32Array | null;
  bf?: boolean;
}

/**
 * Runs `op` twice: with the `bf` slots in bfloat16, and all in float32 holding the same (rounded) values.
 * Returns both sets of outputs and stats.
 */
function twice(op: string, ins: Slot[], outs: Slot[], ints: number[], floats: number[] = []) {
  const runAs = (bf: boolean) => scope(() => {
    const make = (s: Slot) => {
      if (s.data === null) return null;
      if (s.data instanceof Int32Array) return Tensor.fromArray(s.data, [s.data.length]);
      const dtype: DType = bf && s.bf ? 'bfloat16' : 'float32';
      return Tensor.fromArray(s.bf ? rounded(s.data) : s.data, [s.data.length], { dtype });
    };
    const i = ins.map(make), o = outs.map(make);
    const stats = callOp(op, 'cpu', i, o, ints, floats);
    return { outs: o.map((t) => (t ? Float32Array.from(t.toArray()) : null)), stats };
  });
  return { bf: runAs(true), f32: runAs(false) };
}

/** The bf16 call's outputs equal the float32 call's, rounded to bf16 where the output is bf16: bit for bit. */
function expectExact(op: string, ins: Slot[], outs: Slot[], ints: number[], floats: number[] = []) {
  const r = twice(op, ins, outs, ints, floats);
  r.bf.outs.forEach((got, k) => {
    const ref = r.f32.outs[k];
    if (got === null || ref === null) return;
    const want = outs[k].bf ? rounded(ref) : ref;
    expect(sameBits(got, want), `${op} output ${k}`).toBe(true);
  });
  return r;
}

/**
 * A float buffer of a dtype case: `same` has input 0's float type (float32, or bfloat16 where the op takes it), `f32`
 * is float32 whatever the others are, `wide` may be bf16 next to bf16 operands but is float32 next to float32 ones
 * (matmul's C and bias), `any` may be either whatever the others are (RMSNorm's weight: not varied).
 */
interface FSlot {
  name: string;
  n: number;
  kind: 'same' | 'f32' | 'wide' | 'any';
}
/** A dtype case: a valid call (all float32, or with its `same` buffers bf16), int32 buffers as data. */
interface DtypeCase {
  op: string;
  ins: (FSlot | Int32Array)[];
  outs: (FSlot | Int32Array)[];
  ints: number[];
  floats?: number[];
}
const same = (name: string, n: number): FSlot => ({ name, n, kind: 'same' });
const f32 = (name: string, n: number): FSlot => ({ name, n, kind: 'f32' });
const wide = (name: string, n: number): FSlot => ({ name, n, kind: 'wide' });
const anyT = (name: string, n: number): FSlot => ({ name, n, kind: 'any' });
const adam = [1e-3, 0.9, 0.999, 1e-8, 0, 1];
const MiB = 1 << 20;

// Every op of the table but cast (whose X and Y are each either dtype), with small valid shapes.
const dtypeCases: DtypeCase[] = [
  // float32 only
  { op: 'sum_rows', ins: [f32('X', 6)], outs: [f32('y', 3)], ints: [2, 3, 0] },
  { op: 'embedding_forward', ins: [Int32Array.from([0, 2]), f32('W', 6)], outs: [f32('Y', 4)], ints: [2, 3, 2] },
  { op: 'embedding_backward', ins: [Int32Array.from([0, 2]), f32('dY', 4)], outs: [f32('dW', 6)], ints: [2, 3, 2] },
  { op: 'layer_norm_forward', ins: [f32('X', 6), f32('w', 3), f32('b', 3)], outs: [f32('Y', 6), f32('mean', 2), f32('rstd', 2)], ints: [2, 3], floats: [1e-5] },
  { op: 'layer_norm_backward', ins: [f32('dY', 6), f32('X', 6), f32('w', 3), f32('mean', 2), f32('rstd', 2)], outs: [f32('dX', 6), f32('dw', 3), f32('db', 3)], ints: [2, 3] },
  { op: 'softmax_forward', ins: [f32('X', 6)], outs: [f32('Y', 6)], ints: [2, 3] },
  { op: 'softmax_backward', ins: [f32('dY', 6), f32('Y', 6)], outs: [f32('dX', 6)], ints: [2, 3] },
  { op: 'mul_scalar', ins: [f32('X', 4), f32('s', 1)], outs: [f32('Z', 4)], ints: [4] },
  { op: 'add_broadcast', ins: [f32('X', 6), f32('y', 3)], outs: [f32('Z', 6)], ints: [2, 3] },
  { op: 'copy_2d', ins: [f32('src', 6)], outs: [f32('dst', 6)], ints: [2, 3, 3, 3, 0, 0, 0] },
  { op: 'gather_rows', ins: [f32('src', 6), Int32Array.from([0, 2])], outs: [f32('dst', 4)], ints: [3, 2, 2] },
  { op: 'scatter_add_rows', ins: [f32('dDst', 4), Int32Array.from([0, 2])], outs: [f32('dSrc', 6)], ints: [3, 2, 2] },
  { op: 'im2col', ins: [f32('img', 8)], outs: [f32('cols', 8)], ints: [2, 1, 2, 2, 2] },
  { op: 'adamw_step', ins: [f32('g[0]', 4)], outs: [f32('p[0]', 4), f32('m[0]', 4), f32('v[0]', 4)], ints: [1, 1, 4], floats: adam },
  { op: 'sum_squares', ins: [f32('x[0]', 4)], outs: [f32('s', 1)], ints: [1, 4] },
  { op: 'fill', ins: [], outs: [f32('X', 4)], ints: [4], floats: [1] },
  { op: 'checks_failed', ins: [], outs: [f32('flag', 2)], ints: [1] },
  // bfloat16 too, one float type for the `same` buffers
  { op: 'matmul', ins: [same('A', 6), same('B', 6), wide('bias', 2)], outs: [wide('C', 4)], ints: [1, 2, 2, 3, 0, 0, 1, 0, 0, 0, 0], floats: [1] },
  { op: 'rms_norm_forward', ins: [same('x', 6), anyT('w', 3)], outs: [same('y', 6), f32('rstd', 2)], ints: [2, 3], floats: [1e-5] },
  { op: 'rms_norm_backward', ins: [same('dy', 6), same('x', 6), anyT('w', 3), f32('rstd', 2)], outs: [same('dx', 6), f32('dw', 3)], ints: [2, 3] },
  ...[0, 1].map((inverse) => ({ op: 'rope', ins: [same('X', 8)], outs: [same('Y', 8)], ints: [1, 2, 1, 4, 3, inverse], floats: [10000] })),
  { op: 'activation_forward', ins: [same('X', 4)], outs: [same('Y', 4)], ints: [4, 2] },
  { op: 'activation_backward', ins: [same('dY', 4), same('X', 4)], outs: [same('dX', 4)], ints: [4, 2] },
  { op: 'swiglu_forward', ins: [same('gate', 4), same('up', 4)], outs: [same('Y', 4)], ints: [4] },
  { op: 'swiglu_backward', ins: [same('dY', 4), same('gate', 4), same('up', 4)], outs: [same('dgate', 4), same('dup', 4)], ints: [4] },
  { op: 'axpby', ins: [same('X', 4), same('Y', 4)], outs: [same('Z', 4)], ints: [4], floats: [1, 2] },
  { op: 'mul', ins: [same('X', 4), same('Y', 4)], outs: [same('Z', 4)], ints: [4] },
  { op: 'dropout', ins: [same('X', 4)], outs: [same('Y', 4)], ints: [4, 7, 2 ** 23], floats: [2] },
  // B 1, Tq = Tk = 2, Hq 2, Hkv 1, Dh 2, causal, with a key mask
  { op: 'attention_forward', ins: [same('Q', 8), same('K', 4), same('V', 4), Int32Array.from([1, 1])], outs: [same('O', 8), f32('lse', 4)],
    ints: [1, 2, 2, 2, 1, 2, 1, 1], floats: [0.7] },
  { op: 'attention_backward', ins: [same('dO', 8), same('Q', 8), same('K', 4), same('V', 4), same('O', 8), f32('lse', 4), Int32Array.from([1, 1])],
    outs: [same('dQ', 8), same('dK', 4), same('dV', 4)], ints: [1, 2, 2, 2, 1, 2, 1, 1], floats: [0.7] },
  // N = M = 2 rows, d 2, V 3
  { op: 'linear_cross_entropy', ins: [same('h', 4), same('w', 6), Int32Array.from([0, 2])], outs: [f32('rowLoss', 2), same('dh', 4), f32('dw', 6), f32('loss', 1)],
    ints: [2, 2, 3, -100, 0, 1, 0, MiB], floats: [1, 0, 0] },
  { op: 'visual_word_kl', ins: [same('h', 4), same('wLm', 6), same('x', 4), same('wVm', 6)],
    outs: [f32('rowLoss', 2), same('dh', 4), f32('dwLm', 6), same('dx', 4), f32('dwVm', 6), f32('loss', 1)], ints: [2, 2, 3, 0, 1, 0, 0, MiB], floats: [1, 1] },
  { op: 'visual_words', ins: [same('x', 4), same('wVm', 6)], outs: [new Int32Array(4), f32('probs', 4)], ints: [2, 2, 3, 2, 0, MiB] },
  { op: 'pseudo_image_features', ins: [same('x', 4), same('wVm', 6), same('e', 6)], outs: [same('out', 4)], ints: [2, 2, 3, 2, 0, MiB] },
  { op: 'pseudo_image_features_backward', ins: [same('x', 4), same('wVm', 6), same('e', 6), same('gradOut', 4)],
    outs: [same('dx', 4), f32('dwVm', 6), f32('de', 6)], ints: [2, 2, 3, 2, 0, MiB] },
];

/** The error of `c` run with each float buffer in the dtype `dtypeOf` gives it (null: no error). */
function dtypeError(c: DtypeCase, dtypeOf: (s: FSlot) => DType): Error | null {
  return scope(() => {
    const make = (s: FSlot | Int32Array) => (s instanceof Int32Array ? Tensor.fromArray(s, [s.length])
      : Tensor.fromArray(new Float32Array(s.n).fill(0.5), [s.n], { dtype: dtypeOf(s) }));
    try {
      callOp(c.op, 'cpu', c.ins.map(make), c.outs.map(make), c.ints, c.floats ?? []);
      return null;
    } catch (e) {
      return e as Error;
    }
  });
}

const escapeRe = (s: string) => s.replace(/[[\]]/g, '\\$&');

describe(`bfloat16 on the CPU (seed ${runSeed})`, () => {
  it('cast rounds to nearest even as torch, keeps NaN, overflows to inf, widens exactly', () => {
    const x = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, Infinity, -Infinity, NaN, 3.4e38, -3.4e38, 65504, -2.5]);
    const nanLowPayload = new Float32Array(new Uint32Array([0x7f800001]).buffer); // a NaN whose payload is only in the low bits
    const all = new Float32Array([...x, nanLowPayload[0], ...rngFor('bf16_cpu:cast').normals(2001, 10)]);
    scope(() => {
      const src = Tensor.fromArray(all, [all.length]);
      const b = Tensor.empty([all.length], { dtype: 'bfloat16' });
      callOp('cast', 'cpu', [src], [b], [all.length]);
      const raw = new Uint16Array(all.length);
      b.buffer.read(raw);
      expect(Array.from(raw)).toEqual(Array.from(f32ToBf16(all)));
      expect(Array.from(b.toArray().slice(0, 11))).toEqual([1, 1, 1 + 2 ** -6, -0, Infinity, -Infinity, NaN, Infinity, -Infinity, 65536, -2.5]);
      expect(Number.isNaN(b.toArray()[11])).toBe(true);
      const back = Tensor.empty([all.length]);
      callOp('cast', 'cpu', [b], [back], [all.length]);
      expect(sameBits(back.toArray() as Float32Array, bf16ToF32(raw))).toBe(true);
      // same dtype: a copy; empty: nothing
      const copy = Tensor.empty([all.length], { dtype: 'bfloat16' });
      callOp('cast', 'cpu', [b], [copy], [all.length]);
      expect(sameBits(copy.toArray() as Float32Array, b.toArray() as Float32Array)).toBe(true);
      callOp('cast', 'cpu', [Tensor.empty([0])], [Tensor.empty([0], { dtype: 'bfloat16' })], [0]);
      expect(() => callOp('cast', 'cpu', [Tensor.fromArray(new Int32Array(3), [3])], [b], [3])).toThrow(/\[cast\] X must be float32, got int32/);
      expect(() => callOp('cast', 'cpu', [src], [b], [all.length + 1])).toThrow(/\[cast\] X holds .* bytes but needs/);
    });
  });

  it('matmul: bf16 A, B into a float32 or bf16 C, with a float32 or bf16 bias, accumulating', () => {
    const rng = rngFor('bf16_cpu:matmul');
    const [M, N, K] = [37, 19, 53];
    const A = rng.normals(M * K), B = rng.normals(K * N), bias = rng.normals(N), C0 = rng.normals(M * N);
    for (const cBf of [false, true]) {
      for (const biasBf of [false, true]) {
        for (const accumulate of [0, 1]) {
          for (const [ta, tb] of [[0, 0], [1, 1], [0, 1]]) {
            expectExact('matmul', [{ data: A, bf: true }, { data: B, bf: true }, { data: bias, bf: biasBf }], [{ data: C0, bf: cBf }],
              [1, M, N, K, ta, tb, 1, accumulate, 0, 0, 0], [0.75]);
          }
        }
      }
    }
    // batched, strideC = 0 summing every batch into one C (the dW of a shared weight)
    const bA = rng.normals(3 * M * K), bB = rng.normals(3 * K * N);
    expectExact('matmul', [{ data: bA, bf: true }, { data: bB, bf: true }, { data: null }], [{ data: C0 }], [3, M, N, K, 0, 0, 0, 1, M * K, K * N, 0], [1]);
    // the CUDA contract: A and B of one dtype (and no bf16 C from float32 products)
    scope(() => {
      const a16 = Tensor.fromArray(A, [A.length], { dtype: 'bfloat16' }), b32 = Tensor.fromArray(B, [B.length]);
      expect(() => callOp('matmul', 'cpu', [a16, b32, null], [Tensor.empty([M * N])], [1, M, N, K, 0, 0, 0, 0, 0, 0, 0], [1]))
        .toThrow(/^\[matmul\] B must be bfloat16, got float32/);
      const a32 = Tensor.fromArray(A, [A.length]);
      expect(() => callOp('matmul', 'cpu', [a32, b32, null], [Tensor.empty([M * N], { dtype: 'bfloat16' })], [1, M, N, K, 0, 0, 0, 0, 0, 0, 0], [1]))
        .toThrow(/^\[matmul\] C must be float32, got bfloat16/);
    });
  });

  it('the fused ops on bf16 operands: exactly their float32 kernel on the bf16 values; the widened copies count as workspace', () => {
    const rng = rngFor('bf16_cpu:fused');
    const [N, d, V] = [29, 24, 301];
    const h = rng.normals(N * d), w = rng.normals(V * d, 0.3), x = rng.normals(N * d), wv = rng.normals(V * d, 0.3), e = rng.normals(V * 16);
    const targets = Int32Array.from({ length: N }, (_, i) => (i % 7 === 3 ? -100 : rng.int(V)));
    const budget = 1 << 20;
    const ce = expectExact('linear_cross_entropy', [{ data: h, bf: true }, { data: w, bf: true }, { data: targets }],
      [{ data: new Float32Array(N) }, { data: new Float32Array(N * d), bf: true }, { data: new Float32Array(V * d) }],
      [N, d, V, -100, 0, 1, 0, budget], [1, 0.1, 1e-4]);
    expect(ce.bf.stats!.loss).toBe(ce.f32.stats!.loss);
    expect(ce.bf.stats!.workspaceBytes).toBe(ce.f32.stats!.workspaceBytes + 4 * (2 * N * d + V * d));
    const kl = expectExact('visual_word_kl', [{ data: h, bf: true }, { data: w, bf: true }, { data: x, bf: true }, { data: wv, bf: true }],
      [{ data: new Float32Array(N) }, { data: new Float32Array(N * d), bf: true }, { data: new Float32Array(V * d) }, { data: new Float32Array(N * d), bf: true }, { data: new Float32Array(V * d) }],
      [N, d, V, 0, 1, 0, 0, budget], [1.5, 1]);
    expect(kl.bf.stats!.loss).toBe(kl.f32.stats!.loss);
    expectExact('visual_words', [{ data: x, bf: true }, { data: wv, bf: true }], [{ data: new Int32Array(N * 3) }, { data: new Float32Array(N * 3) }], [N, d, V, 3, 0, budget]);
    expectExact('pseudo_image_features', [{ data: x, bf: true }, { data: wv, bf: true }, { data: e, bf: true }], [{ data: new Float32Array(N * 16), bf: true }], [N, d, V, 16, 0, budget]);
    expectExact('pseudo_image_features_backward', [{ data: x, bf: true }, { data: wv, bf: true }, { data: e, bf: true }, { data: rng.normals(N * 16), bf: true }],
      [{ data: new Float32Array(N * d), bf: true }, { data: new Float32Array(V * d) }, { data: new Float32Array(V * 16) }], [N, d, V, 16, 0, budget]);
  });

  it('activations, SwiGLU, axpby, mul and dropout in bf16 (autocast\'s MLP activations, their gradients, LoRA\'s dropout): their float32 kernel on the bf16 values, rounded once', () => {
    const rng = rngFor('bf16_cpu:act');
    const n = 1001, x = rng.normals(n, 3), y = rng.normals(n, 3), dy = rng.normals(n);
    for (const kind of [0, 1, 2, 3]) {
      expectExact('activation_forward', [{ data: x, bf: true }], [{ data: new Float32Array(n), bf: true }], [n, kind]);
      expectExact('activation_backward', [{ data: dy, bf: true }, { data: x, bf: true }], [{ data: new Float32Array(n), bf: true }], [n, kind]);
    }
    expectExact('swiglu_forward', [{ data: x, bf: true }, { data: y, bf: true }], [{ data: new Float32Array(n), bf: true }], [n]);
    expectExact('swiglu_backward', [{ data: dy, bf: true }, { data: x, bf: true }, { data: y, bf: true }], [{ data: new Float32Array(n), bf: true }, { data: new Float32Array(n), bf: true }], [n]);
    for (const [a, b] of [[1.5, -0.5], [2, 0], [0, 3]]) expectExact('axpby', [{ data: x, bf: true }, { data: y, bf: true }], [{ data: new Float32Array(n), bf: true }], [n], [a, b]);
    expectExact('mul', [{ data: x, bf: true }, { data: y, bf: true }], [{ data: new Float32Array(n), bf: true }], [n]);
    expectExact('dropout', [{ data: x, bf: true }], [{ data: new Float32Array(n), bf: true }], [n, 12345, Math.round(0.3 * 2 ** 24)], [1 / 0.7]);
    // one dtype for every buffer, as on CUDA
    scope(() => {
      const a = Tensor.fromArray(x, [n], { dtype: 'bfloat16' }), b = Tensor.fromArray(y, [n]);
      expect(() => callOp('swiglu_forward', 'cpu', [a, b], [Tensor.empty([n], { dtype: 'bfloat16' })], [n])).toThrow(/^\[swiglu_forward\] up must be bfloat16, got float32/);
      expect(() => callOp('activation_forward', 'cpu', [a], [Tensor.empty([n])], [n, 2])).toThrow(/^\[activation_forward\] Y must be bfloat16, got float32/);
    });
  });

  it('RoPE and attention in bf16 (autocast keeps q, k, v and the output bf16): their float32 kernels on the bf16 values', () => {
    const rng = rngFor('bf16_cpu:attention');
    const [B, T, H, Hkv, Dh] = [2, 7, 4, 2, 8];
    const nq = B * T * H * Dh, nk = B * T * Hkv * Dh, scale = 1 / Math.sqrt(Dh);
    for (const inverse of [0, 1]) expectExact('rope', [{ data: rng.normals(nq), bf: true }], [{ data: new Float32Array(nq), bf: true }], [B, T, H, Dh, 3, inverse], [10000]);
    const q = rng.normals(nq), k = rng.normals(nk), v = rng.normals(nk), mask = Int32Array.from({ length: B * T }, (_, i) => (i % T < 5 || i < T ? 1 : 0));
    for (const causal of [0, 1]) {
      const ints = [B, T, T, H, Hkv, Dh, causal, 1];
      const fwd = expectExact('attention_forward', [{ data: q, bf: true }, { data: k, bf: true }, { data: v, bf: true }, { data: mask }],
        [{ data: new Float32Array(nq), bf: true }, { data: new Float32Array(B * H * T) }], ints, [scale]);
      const [o, lse] = fwd.bf.outs as Float32Array[];
      expectExact('attention_backward', [{ data: rng.normals(nq), bf: true }, { data: q, bf: true }, { data: k, bf: true }, { data: v, bf: true }, { data: o, bf: true }, { data: lse }, { data: mask }],
        [{ data: new Float32Array(nq), bf: true }, { data: new Float32Array(nk), bf: true }, { data: new Float32Array(nk), bf: true }], ints, [scale]);
    }
    scope(() => {
      const a = Tensor.fromArray(q, [nq], { dtype: 'bfloat16' }), b = Tensor.fromArray(k, [nk]);
      expect(() => callOp('attention_forward', 'cpu', [a, b, b, null], [Tensor.empty([nq], { dtype: 'bfloat16' }), Tensor.empty([B * H * T])], [B, T, T, H, Hkv, Dh, 0, 0], [scale]))
        .toThrow(/^\[attention_forward\] K must be bfloat16, got float32/);
      expect(() => callOp('rope', 'cpu', [a], [Tensor.empty([nq])], [B, T, H, Dh, 0, 0], [10000])).toThrow(/^\[rope\] Y must be bfloat16, got float32/);
    });
  });

  it('RMSNorm in bf16 (a bf16 residual stream): x, y, dy, dx bf16 with a float32 or bf16 weight; rstd and dw float32', () => {
    const rng = rngFor('bf16_cpu:rms_norm');
    const [R, C] = [13, 77], eps = 1e-5;
    const x = rng.normals(R * C, 2), dy = rng.normals(R * C), dw0 = rng.normals(C);
    for (const wBf of [false, true]) {
      const w = rng.normals(C, 0.5);
      const fwd = expectExact('rms_norm_forward', [{ data: x, bf: true }, { data: w, bf: wBf }], [{ data: new Float32Array(R * C), bf: true }, { data: new Float32Array(R) }], [R, C], [eps]);
      const rstd = fwd.bf.outs[1]!;
      expectExact('rms_norm_backward', [{ data: dy, bf: true }, { data: x, bf: true }, { data: w, bf: wBf }, { data: rstd }],
        [{ data: new Float32Array(R * C), bf: true }, { data: dw0 }], [R, C]);
    }
    scope(() => {
      const a = Tensor.fromArray(x, [R * C], { dtype: 'bfloat16' }), w = Tensor.fromArray(dw0, [C]);
      expect(() => callOp('rms_norm_forward', 'cpu', [a, w], [Tensor.empty([R * C]), Tensor.empty([R])], [R, C], [eps])).toThrow(/^\[rms_norm_forward\] y must be bfloat16, got float32/);
      expect(() => callOp('rms_norm_forward', 'cpu', [a, w], [Tensor.empty([R * C], { dtype: 'bfloat16' }), Tensor.empty([R], { dtype: 'bfloat16' })], [R, C], [eps]))
        .toThrow(/^\[rms_norm_forward\] rstd must be float32, got bfloat16/);
    });
  });

  // The CUDA backend's dtype rules, on every buffer of every op: a wrong dtype is refused with a TypeError naming the
  // op, the buffer and both dtypes, before anything runs (native/cpu/float32_view.h checks the call as given).
  it('every op refuses a buffer of the wrong dtype, naming the op and the buffer (the table covers every op)', () => {
    const def = opsDef();
    expect([...new Set([...dtypeCases.map((c) => c.op), 'cast'])].sort()).toEqual([...opNames()].sort());
    // the ops with a `same` buffer are those ops.def says take bf16
    expect([...new Set(dtypeCases.filter((c) => c.ins.some((s) => !(s instanceof Int32Array) && s.kind === 'same')).map((c) => c.op)), 'cast'].sort())
      .toEqual([...def.bf16].sort());
    const refused = (c: DtypeCase, slot: FSlot, want: DType, got: DType, dtypeOf: (s: FSlot) => DType) => {
      const e = dtypeError(c, dtypeOf);
      const what = `${c.op} ${slot.name} ${got} (ints ${c.ints.join(',')})`;
      expect(e, what).toBeInstanceOf(TypeError);
      expect(e!.message, what).toMatch(new RegExp(`^\\[${c.op}\\] ${escapeRe(slot.name)} must be ${want}, got ${got}`));
    };
    for (const c of dtypeCases) {
      const slots = [...c.ins, ...c.outs].filter((s): s is FSlot => !(s instanceof Int32Array));
      const bf16Op = slots.some((s) => s.kind === 'same');
      // the call is valid as given (so each refusal below is the dtype's): float32, and bf16 where the op takes it
      expect(dtypeError(c, () => 'float32'), `${c.op} float32`).toBeNull();
      if (!bf16Op) {
        for (const slot of slots) refused(c, slot, 'float32', 'bfloat16', (s) => (s === slot ? 'bfloat16' : 'float32'));
        continue;
      }
      expect((c.ins[0] as FSlot).kind, `${c.op}: input 0 sets the float type`).toBe('same');
      const bf = (s: FSlot): DType => (s.kind === 'same' ? 'bfloat16' : 'float32');
      expect(dtypeError(c, bf), `${c.op} bfloat16`).toBeNull();
      for (const slot of slots) {
        if (slot.kind === 'same' && slot !== c.ins[0]) {
          // one float32 buffer among bf16 ones (x bf16, dy float32), and one bf16 buffer among float32 ones
          refused(c, slot, 'bfloat16', 'float32', (s) => (s === slot ? 'float32' : bf(s)));
          refused(c, slot, 'float32', 'bfloat16', (s) => (s === slot ? 'bfloat16' : 'float32'));
        } else if (slot.kind === 'f32') {
          refused(c, slot, 'float32', 'bfloat16', (s) => (s === slot ? 'bfloat16' : bf(s)));
        } else if (slot.kind === 'wide') {
          refused(c, slot, 'float32', 'bfloat16', (s) => (s === slot ? 'bfloat16' : 'float32'));
        }
      }
    }
  });

  it('ops that take no bf16 refuse it with a TypeError naming the dtype', () => {
    scope(() => {
      const x = Tensor.fromArray(new Float32Array(4), [4], { dtype: 'bfloat16' }), w = Tensor.fromArray(new Float32Array(2), [2]);
      expect(() => callOp('layer_norm_forward', 'cpu', [x, w, w], [Tensor.empty([4]), Tensor.empty([2]), Tensor.empty([2])], [2, 2], [1e-6]))
        .toThrow(/^\[layer_norm_forward\] X must be float32, got bfloat16/);
      expect(() => callOp('sum_rows', 'cpu', [x], [Tensor.empty([2])], [2, 2, 0])).toThrow(/^\[sum_rows\] X must be float32, got bfloat16/);
    });
  });
});
