// The backend parity table: every op of the table (native/core/ops.def; native/cuda/**/*.cu against
// native/cpu/*.cpp) runs on both backends on the same random inputs (odd sizes, both row-kernel paths (rows of <= 1024 and
// > 1024 elements), batches with gaps, masks, GQA, causal KV caches, empty tensors) and the outputs are
// compared normwise (max |cuda - cpu| / max |cpu|, tests/support/compare.ts relErr).
// Tolerances: float32 1e-5; 1e-4 for attention (different summation orders over keys and head dims, and
// flash-style rescaling vs the CPU's two-pass softmax) and for long reductions (sums over >= 1000 rows or
// tens of thousands of elements, summed in another order); bfloat16 1e-2 (the inputs are rounded to bf16
// for both backends, so the error measured is the CUDA output's own rounding plus fp32 arithmetic).
// Also: the same error messages as the CPU for bad ids / masks / flags, bf16-only extensions (fp32 C from
// bf16 products, fp32 rms weights with bf16 activations, adamw_step bf16Copies), the TypeError of fp32-only
// ops given bf16, and run-to-run bitwise determinism of the reductions.
// Needs a GPU: without one every parity case is reported as skipped; the table's coverage (every op, a bfloat16
// case for every op that takes bf16) and the empty cases on the CPU are checked on every machine.
import { describe, expect, it } from 'vitest';
import { cudaAttention, cudaAvailable, scope, setAsync, setCudaAttention, Tensor } from '../../src';
import type { CudaAttentionSettings } from '../../src';
import type { DType } from '../../src';
import { roundToBf16 } from '../../src/bf16';
import { callOp, opNames } from '../../src/call_op';
import { opsDef } from '../support/backends';
import { relErr } from '../support/compare';
import { expectErr, sameBits } from '../support/engine_harness';
import { Rng, rngFor, runSeed } from '../support/random';

const hasCuda = cudaAvailable();

const TOL_F32 = 1e-5;
const TOL_LONG = 1e-4; // attention, long reductions
const TOL_BF16 = 1e-2;

/** An input: int32 data, float data (`cast`: takes the run's float dtype), or null (absent). */
interface In {
  data: Float32Array | Int32Array | null;
  cast?: boolean;
}
/** An output of n elements, pre-filled with `init` (for "+=" outputs) or NaN; n < 0: absent (null). */
interface Out {
  n: number;
  init?: Float32Array;
  cast?: boolean;
  /** int32 (the fused top-k ids); compared exactly. */
  int?: boolean;
}
interface Case {
  name: string;
  op: string;
  inputs: In[];
  outputs: Out[];
  ints: number[];
  floats?: number[];
  /** float32 tolerance (default TOL_F32). */
  tol?: number;
  /** Also run with the `cast` buffers in bfloat16. */
  bf16?: boolean;
  /** Touches no element (a zero-size dimension): also run on the CPU without a GPU, every output left as given. */
  empty?: boolean;
}

const cast = (data: Float32Array): In => ({ data, cast: true });
const f = (data: Float32Array): In => ({ data });
const ids = (data: Int32Array): In => ({ data });
const none: In = { data: null };
const out = (n: number, castOut = false): Out => ({ n, cast: castOut });
const acc = (init: Float32Array, castOut = false): Out => ({ n: init.length, init, cast: castOut });
const noOut: Out = { n: -1 };
const intOut = (n: number): Out => ({ n, int: true });

function normals(rng: Rng, n: number, scale = 1, shift = 0): Float32Array {
  const a = rng.normals(n, scale);
  for (let i = 0; i < n; i++) a[i] += shift;
  return a;
}
function randIds(rng: Rng, n: number, S: number): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.int(S);
  return a;
}
const rounded = (a: Float32Array) => a.map(roundToBf16);

/** Runs `c` on `device`; `dtype` is the dtype of the cast buffers on CUDA (the CPU gets float32 holding the same values). */
function runOn(c: Case, device: 'cpu' | 'cuda', dtype: DType): Float32Array[] {
  return scope(() => {
    const bf = dtype === 'bfloat16';
    const ins = c.inputs.map((s) => {
      if (s.data === null) return null;
      if (s.data instanceof Int32Array) return Tensor.fromArray(s.data, [s.data.length], { device });
      const data = bf && s.cast ? rounded(s.data) : s.data;
      return Tensor.fromArray(data, [data.length], { device, dtype: device === 'cuda' && s.cast ? dtype : 'float32' });
    });
    const outs = c.outputs.map((o) => {
      if (o.n < 0) return null;
      if (o.int) return Tensor.fromArray(new Int32Array(o.n).fill(-1), [o.n], { device });
      const init = o.init ? (bf && o.cast ? rounded(o.init) : o.init) : new Float32Array(o.n).fill(NaN);
      return Tensor.fromArray(init, [o.n], { device, dtype: device === 'cuda' && o.cast ? dtype : 'float32' });
    });
    callOp(c.op, device, ins, outs, c.ints, c.floats ?? []);
    return outs.filter((t) => t !== null).map((t) => Float32Array.from(t!.toArray()));
  });
}

/**
 * relErr over the entries finite in `ref`; a non-finite reference entry (lse = -inf of a row that sees no
 * key, NaN of a softmax row of -inf) must be matched exactly (Infinity otherwise).
 */
function parityErr(got: Float32Array, ref: Float32Array): number {
  if (got.length !== ref.length) return Infinity;
  const keep: number[] = [];
  for (let i = 0; i < ref.length; i++) {
    if (Number.isFinite(ref[i])) keep.push(i);
    else if (!(Object.is(got[i], ref[i]) || (Number.isNaN(got[i]) && Number.isNaN(ref[i])))) return Infinity;
  }
  return relErr(keep.map((i) => got[i]), keep.map((i) => ref[i]));
}

function expectParity(c: Case, dtype: DType): void {
  const ref = runOn(c, 'cpu', dtype);
  const got = runOn(c, 'cuda', dtype);
  const tol = dtype === 'bfloat16' ? TOL_BF16 : c.tol ?? TOL_F32;
  got.forEach((g, k) => expectErr(`${c.op} ${dtype}`, parityErr(g, ref[k]), tol, `${c.name}, output ${k}`));
}

function errorOf(fn: () => void): string {
  try {
    fn();
  } catch (e) {
    return `${(e as Error).constructor.name}: ${(e as Error).message}`;
  }
  return 'no error';
}

// ------------------------------------------------------------------------------------------ cases

function matmulCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  const mm = (name: string, p: { batch?: number; M: number; N: number; K: number; ta?: boolean; tb?: boolean; bias?: boolean; accumulate?: boolean;
    sA?: number; sB?: number; sC?: number; alpha?: number }) => {
    const batch = p.batch ?? 1, ta = p.ta ? 1 : 0, tb = p.tb ? 1 : 0;
    const sA = p.sA ?? p.M * p.K, sB = p.sB ?? p.K * p.N, sC = p.sC ?? p.M * p.N;
    const ext = (s: number, block: number) => (batch === 0 || block === 0 ? 0 : (batch - 1) * s + block);
    const nC = ext(sC, p.M * p.N);
    cases.push({
      name, op: 'matmul', bf16: true,
      inputs: [cast(normals(rng, ext(sA, p.M * p.K))), cast(normals(rng, ext(sB, p.K * p.N))), p.bias ? f(normals(rng, p.N)) : none],
      // Gaps between C blocks keep their values: compare the whole buffer.
      outputs: [p.accumulate || sC > p.M * p.N ? acc(normals(rng, nC), true) : out(nC, true)],
      ints: [batch, p.M, p.N, p.K, ta, tb, p.bias ? 1 : 0, p.accumulate ? 1 : 0, sA, sB, sC], floats: [p.alpha ?? 1],
    });
  };
  for (const ta of [false, true]) for (const tb of [false, true]) mm(`3x7x33 ta=${ta} tb=${tb}`, { M: 3, N: 7, K: 33, ta, tb, alpha: -0.75 });
  mm('bias', { M: 9, N: 33, K: 7, bias: true });
  mm('accumulate + bias + transB', { M: 7, N: 5, K: 31, accumulate: true, bias: true, tb: true, alpha: 2 });
  mm('larger 129x65x127 + bias', { M: 129, N: 65, K: 127, bias: true });
  mm('batched with gaps', { M: 5, N: 7, K: 3, batch: 3, sA: 19, sB: 22, sC: 38 });
  mm('batched, shared B, bias, accumulate', { M: 4, N: 6, K: 5, batch: 4, sB: 0, bias: true, accumulate: true, tb: true });
  mm('batched, shared A', { M: 3, N: 2, K: 8, batch: 2, sA: 0, ta: true });
  mm('strideC 0 + accumulate sums the batch', { M: 5, N: 4, K: 7, batch: 5, sC: 0, accumulate: true, ta: true });
  mm('strideC 0 + accumulate + bias per batch', { M: 3, N: 6, K: 2, batch: 3, sC: 0, accumulate: true, bias: true });
  mm('K = 0', { M: 3, N: 4, K: 0, batch: 2 });
  mm('K = 0 bias', { M: 3, N: 4, K: 0, bias: true });
  mm('K = 0 accumulate + bias', { M: 3, N: 4, K: 0, bias: true, accumulate: true });
  mm('empty batch', { M: 3, N: 4, K: 5, batch: 0 });
  return cases;
}

function rowsCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  for (const [R, C] of [[3, 5], [1, 1], [0, 4], [7, 300], [65, 33]]) {
    cases.push({ name: `sum_rows R=${R} C=${C}`, op: 'sum_rows', inputs: [f(normals(rng, R * C))], outputs: [out(C)], ints: [R, C, 0] });
    cases.push({ name: `sum_rows R=${R} C=${C} accumulate`, op: 'sum_rows', inputs: [f(normals(rng, R * C))], outputs: [acc(normals(rng, C))], ints: [R, C, 1] });
  }
  cases.push({ name: 'sum_rows long R=4097 C=3', op: 'sum_rows', inputs: [f(normals(rng, 4097 * 3))], outputs: [out(3)], ints: [4097, 3, 0], tol: TOL_LONG });
  for (const [n, V, D] of [[50, 7, 13], [1, 1, 1], [300, 40, 3], [0, 3, 4], [5, 3, 0], [257, 1000, 65]]) {
    const id = randIds(rng, n, V);
    cases.push({ name: `embedding_forward n=${n} V=${V} D=${D}`, op: 'embedding_forward', inputs: [ids(id), f(normals(rng, V * D))], outputs: [out(n * D)], ints: [n, V, D] });
    cases.push({ name: `embedding_backward n=${n} V=${V} D=${D}`, op: 'embedding_backward', inputs: [ids(id), f(normals(rng, n * D))], outputs: [acc(normals(rng, V * D))], ints: [n, V, D] });
    cases.push({ name: `gather_rows n=${n} S=${V} C=${D}`, op: 'gather_rows', inputs: [f(normals(rng, V * D)), ids(id)], outputs: [out(n * D)], ints: [V, n, D] });
    cases.push({ name: `scatter_add_rows n=${n} S=${V} C=${D}`, op: 'scatter_add_rows', inputs: [f(normals(rng, n * D)), ids(id)], outputs: [acc(normals(rng, V * D))], ints: [V, n, D] });
  }
  // Many repeats of one id (a padding token) next to unique ones.
  const rep = randIds(rng, 500, 50).map((x, i) => (i % 3 === 0 ? 7 : x));
  cases.push({ name: 'scatter_add_rows 500 ids, every third = 7', op: 'scatter_add_rows', inputs: [f(normals(rng, 500 * 9)), ids(rep)], outputs: [acc(normals(rng, 50 * 9))], ints: [50, 500, 9] });
  // A run of 603 equal ids (the image placeholders' id in a batch) over C = 300 columns: three column blocks of the
  // CUDA scatter, the last one partial, and a run length that is not a multiple of its 8-wide load batches.
  const run = randIds(rng, 700, 30).map((x, i) => (i < 603 ? 3 : x));
  cases.push({ name: 'embedding_backward 700 ids, a run of 603 equal ids, D=300', op: 'embedding_backward', inputs: [ids(run), f(normals(rng, 700 * 300))], outputs: [acc(normals(rng, 30 * 300))], ints: [700, 30, 300] });
  for (const a of [0, 1]) {
    cases.push({ name: `copy_2d strided, offsets, accumulate=${a}`, op: 'copy_2d', inputs: [f(normals(rng, 1 + 2 * 6 + 4))], outputs: [acc(normals(rng, 2 + 2 * 5 + 4))], ints: [3, 4, 6, 5, 1, 2, a] });
    cases.push({ name: `copy_2d srcStride < cols, accumulate=${a}`, op: 'copy_2d', inputs: [f(normals(rng, 20))], outputs: [acc(normals(rng, 40))], ints: [3, 4, 2, 9, 0, 3, a] });
  }
  for (const [B, Cin, H, W, p] of [[2, 3, 4, 6, 2], [1, 1, 5, 5, 5], [2, 2, 6, 3, 3], [1, 2, 3, 3, 1]]) {
    cases.push({ name: `im2col B=${B} Cin=${Cin} H=${H} W=${W} p=${p}`, op: 'im2col', inputs: [f(normals(rng, B * Cin * H * W))], outputs: [out(B * Cin * H * W)], ints: [B, Cin, H, W, p] });
  }
  // Zero-size copies (no rng draws, so the cases above keep their inputs): rows = 0 or cols = 0 into a longer dst
  // (offsets and strides past an empty source are never read; dst keeps every value), and images with B or Cin 0.
  for (const a of [0, 1]) {
    cases.push({ name: `copy_2d rows = 0, accumulate=${a}`, op: 'copy_2d', empty: true, inputs: [f(new Float32Array(0))], outputs: [acc(Float32Array.from([1, 2, 3, 4, 5]))], ints: [0, 4, 6, 5, 1, 2, a] });
    cases.push({ name: `copy_2d cols = 0, accumulate=${a}`, op: 'copy_2d', empty: true, inputs: [f(new Float32Array(0))], outputs: [acc(Float32Array.from([1, 2, 3, 4, 5]))], ints: [3, 0, 6, 5, 1, 2, a] });
  }
  cases.push({ name: 'im2col B = 0', op: 'im2col', empty: true, inputs: [f(new Float32Array(0))], outputs: [out(0)], ints: [0, 3, 4, 6, 2] });
  cases.push({ name: 'im2col Cin = 0', op: 'im2col', empty: true, inputs: [f(new Float32Array(0))], outputs: [out(0)], ints: [2, 0, 4, 6, 2] });
  return cases;
}

function normCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  for (const [R, C] of [[5, 7], [70, 64], [1, 1], [0, 5], [3, 1500], [1200, 8]]) {
    const long = C > 1024 || R >= 1000;
    const x = normals(rng, R * C, 2, 0.5), w = normals(rng, C), dy = normals(rng, R * C);
    const rstd = scope(() => {
      const o = [Tensor.empty([R * C]), Tensor.empty([R])];
      callOp('rms_norm_forward', 'cpu', [Tensor.fromArray(x, [R * C]), Tensor.fromArray(w, [C])], o, [R, C], [1e-5]);
      return o[1].toArray() as Float32Array;
    });
    cases.push({ name: `rms_norm_forward R=${R} C=${C}`, op: 'rms_norm_forward', bf16: true, inputs: [cast(x), cast(w)], outputs: [out(R * C, true), out(R)], ints: [R, C], floats: [1e-5], tol: long ? TOL_LONG : TOL_F32 });
    cases.push({ name: `rms_norm_backward R=${R} C=${C}`, op: 'rms_norm_backward', bf16: true, inputs: [cast(dy), cast(x), cast(w), f(rstd)], outputs: [out(R * C, true), acc(normals(rng, C))], ints: [R, C], tol: long ? TOL_LONG : TOL_F32 });
    // bf16 activations with the fp32 weight (the master copy).
    cases.push({ name: `rms_norm_forward fp32 w R=${R} C=${C}`, op: 'rms_norm_forward', bf16: true, inputs: [cast(x), f(w)], outputs: [out(R * C, true), out(R)], ints: [R, C], floats: [1e-5], tol: long ? TOL_LONG : TOL_F32 });
    cases.push({ name: `rms_norm_backward fp32 w R=${R} C=${C}`, op: 'rms_norm_backward', bf16: true, inputs: [cast(dy), cast(x), f(w), f(rstd)], outputs: [out(R * C, true), acc(normals(rng, C))], ints: [R, C], tol: long ? TOL_LONG : TOL_F32 });

    const xl = normals(rng, R * C, 1, 1000), b = normals(rng, C);
    const [mean, rs] = scope(() => {
      const o = [Tensor.empty([R * C]), Tensor.empty([R]), Tensor.empty([R])];
      callOp('layer_norm_forward', 'cpu', [Tensor.fromArray(xl, [R * C]), Tensor.fromArray(w, [C]), Tensor.fromArray(b, [C])], o, [R, C], [1e-5]);
      return [o[1].toArray() as Float32Array, o[2].toArray() as Float32Array];
    });
    cases.push({ name: `layer_norm_forward R=${R} C=${C} (mean 1000)`, op: 'layer_norm_forward', inputs: [f(xl), f(w), f(b)], outputs: [out(R * C), out(R), out(R)], ints: [R, C], floats: [1e-5], tol: long ? TOL_LONG : TOL_F32 });
    cases.push({ name: `layer_norm_backward R=${R} C=${C}`, op: 'layer_norm_backward', inputs: [f(dy), f(xl), f(w), f(mean), f(rs)], outputs: [out(R * C), acc(normals(rng, C)), acc(normals(rng, C))], ints: [R, C], tol: long ? TOL_LONG : TOL_F32 });
  }
  for (const inverse of [0, 1]) {
    for (const [B, T, H, Dh, pos] of [[2, 5, 3, 8, 7], [1, 3, 1, 2, 0], [1, 7, 2, 64, 100000]]) {
      cases.push({ name: `rope B=${B} T=${T} H=${H} Dh=${Dh} pos=${pos} inverse=${inverse}`, op: 'rope', bf16: true, inputs: [cast(normals(rng, B * T * H * Dh))], outputs: [out(B * T * H * Dh, true)], ints: [B, T, H, Dh, pos, inverse], floats: [10000] });
    }
    // T = 0: no position, so no cos/sin table and no row (the zero-size inputs draw nothing: later cases keep theirs)
    cases.push({ name: `rope empty B=2 T=0 inverse=${inverse}`, op: 'rope', bf16: true, empty: true, inputs: [cast(new Float32Array(0))], outputs: [out(0, true)], ints: [2, 0, 3, 8, 5, inverse], floats: [10000] });
  }
  for (const [R, C] of [[4, 9], [100, 1], [0, 3], [3, 0], [2, 1500]]) {
    const x = normals(rng, R * C, 3);
    const y = scope(() => {
      const o = Tensor.empty([R * C]);
      callOp('softmax_forward', 'cpu', [Tensor.fromArray(x, [R * C])], [o], [R, C]);
      return o.toArray() as Float32Array;
    });
    cases.push({ name: `softmax_forward R=${R} C=${C}`, op: 'softmax_forward', inputs: [f(x)], outputs: [out(R * C)], ints: [R, C], tol: C > 1024 ? TOL_LONG : TOL_F32 });
    cases.push({ name: `softmax_backward R=${R} C=${C}`, op: 'softmax_backward', inputs: [f(normals(rng, R * C)), f(y)], outputs: [out(R * C)], ints: [R, C], tol: C > 1024 ? TOL_LONG : TOL_F32 });
  }
  const xi = normals(rng, 15);
  for (let j = 5; j < 10; j++) xi[j] = -Infinity; // a row of -inf gives NaN on both
  xi[12] = -Infinity;
  cases.push({ name: 'softmax_forward -inf entries, an all -inf row', op: 'softmax_forward', inputs: [f(xi)], outputs: [out(15)], ints: [3, 5] });
  return cases;
}

function elementwiseCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  const n = 1001;
  for (let kind = 0; kind < 4; kind++) {
    const x = normals(rng, n, 4);
    x.set([0, -30, 30, -100, 1e-3]);
    cases.push({ name: `activation_forward kind ${kind}`, op: 'activation_forward', bf16: true, inputs: [cast(x)], outputs: [out(n, true)], ints: [n, kind] });
    cases.push({ name: `activation_backward kind ${kind}`, op: 'activation_backward', bf16: true, inputs: [cast(normals(rng, n)), cast(x)], outputs: [out(n, true)], ints: [n, kind] });
  }
  cases.push({ name: 'swiglu_forward', op: 'swiglu_forward', bf16: true, inputs: [cast(normals(rng, n, 4)), cast(normals(rng, n))], outputs: [out(n, true)], ints: [n] });
  cases.push({ name: 'swiglu_backward', op: 'swiglu_backward', bf16: true, inputs: [cast(normals(rng, n)), cast(normals(rng, n, 4)), cast(normals(rng, n))], outputs: [out(n, true), out(n, true)], ints: [n] });
  cases.push({ name: 'axpby', op: 'axpby', bf16: true, inputs: [cast(normals(rng, n)), cast(normals(rng, n))], outputs: [out(n, true)], ints: [n], floats: [0.3, -1.7] });
  cases.push({ name: 'axpby b = 0 never reads Y (NaN)', op: 'axpby', bf16: true, inputs: [cast(normals(rng, n)), cast(new Float32Array(n).fill(NaN))], outputs: [out(n, true)], ints: [n], floats: [0.3, 0] });
  cases.push({ name: 'axpby a = 0 never reads X (NaN)', op: 'axpby', bf16: true, inputs: [cast(new Float32Array(n).fill(NaN)), cast(normals(rng, n))], outputs: [out(n, true)], ints: [n], floats: [0, 2] });
  cases.push({ name: 'mul', op: 'mul', bf16: true, inputs: [cast(normals(rng, n)), cast(normals(rng, n))], outputs: [out(n, true)], ints: [n] });
  cases.push({ name: 'dropout p 0.3', op: 'dropout', bf16: true, inputs: [cast(normals(rng, n))], outputs: [out(n, true)], ints: [n, 2 ** 53 - 12345, Math.round(0.3 * 2 ** 24)], floats: [1 / 0.7] });
  cases.push({ name: 'dropout p 0', op: 'dropout', bf16: true, inputs: [cast(normals(rng, n))], outputs: [out(n, true)], ints: [n, 7, 0], floats: [1] });
  cases.push({ name: 'mul_scalar', op: 'mul_scalar', inputs: [f(normals(rng, n)), f(normals(rng, 1))], outputs: [out(n)], ints: [n] });
  cases.push({ name: 'mul_scalar n = 0', op: 'mul_scalar', empty: true, inputs: [f(new Float32Array(0)), f(normals(rng, 1))], outputs: [out(0)], ints: [0] });
  cases.push({ name: 'mul n = 0', op: 'mul', bf16: true, empty: true, inputs: [cast(new Float32Array(0)), cast(new Float32Array(0))], outputs: [out(0, true)], ints: [0] });
  cases.push({ name: 'add_broadcast', op: 'add_broadcast', inputs: [f(normals(rng, 3 * 7)), f(normals(rng, 7))], outputs: [out(21)], ints: [3, 7] });
  cases.push({ name: 'fill', op: 'fill', inputs: [], outputs: [out(1000)], ints: [1000], floats: [2.5] });
  // nothing pending here (tests/engine/error_flags.test.ts flags failures); the other elements stay as they were
  cases.push({ name: 'checks_failed', op: 'checks_failed', inputs: [], outputs: [acc(normals(rng, 5))], ints: [3] });
  // cast: in the bf16 run each direction (bf16 -> f32 widens, f32 -> bf16 rounds once) and a bf16 copy
  const big = normals(rng, n, 1e30);
  big.set([NaN, Infinity, -Infinity, -0, 3.4e38, 1 + 2 ** -8, 1e-40]);
  cases.push({ name: 'cast widen', op: 'cast', bf16: true, inputs: [cast(big)], outputs: [out(n)], ints: [n] });
  cases.push({ name: 'cast round', op: 'cast', bf16: true, inputs: [f(normals(rng, n))], outputs: [out(n, true)], ints: [n] });
  cases.push({ name: 'cast copy', op: 'cast', bf16: true, inputs: [cast(normals(rng, n))], outputs: [out(n, true)], ints: [n] });
  cases.push({ name: 'cast n = 0', op: 'cast', bf16: true, empty: true, inputs: [cast(new Float32Array(0))], outputs: [out(0, true)], ints: [0] });
  // Empty tensors (n = 0, B = 0): the launch paths of a zero-size grid. Their inputs draw nothing from rng, so the
  // cases above keep their inputs.
  const zero = () => cast(new Float32Array(0));
  for (const kind of [0, 3]) {
    cases.push({ name: `activation_forward kind ${kind} n = 0`, op: 'activation_forward', bf16: true, empty: true, inputs: [zero()], outputs: [out(0, true)], ints: [0, kind] });
    cases.push({ name: `activation_backward kind ${kind} n = 0`, op: 'activation_backward', bf16: true, empty: true, inputs: [zero(), zero()], outputs: [out(0, true)], ints: [0, kind] });
  }
  cases.push({ name: 'swiglu_forward n = 0', op: 'swiglu_forward', bf16: true, empty: true, inputs: [zero(), zero()], outputs: [out(0, true)], ints: [0] });
  cases.push({ name: 'swiglu_backward n = 0', op: 'swiglu_backward', bf16: true, empty: true, inputs: [zero(), zero(), zero()], outputs: [out(0, true), out(0, true)], ints: [0] });
  cases.push({ name: 'axpby n = 0', op: 'axpby', bf16: true, empty: true, inputs: [zero(), zero()], outputs: [out(0, true)], ints: [0], floats: [0.3, -1.7] });
  cases.push({ name: 'dropout n = 0', op: 'dropout', bf16: true, empty: true, inputs: [zero()], outputs: [out(0, true)], ints: [0, 99, Math.round(0.3 * 2 ** 24)], floats: [1 / 0.7] });
  cases.push({ name: 'add_broadcast B = 0', op: 'add_broadcast', empty: true, inputs: [f(new Float32Array(0)), f(Float32Array.from([1, 2, 3, 4, 5, 6, 7]))], outputs: [out(0)], ints: [0, 7] });
  cases.push({ name: 'add_broadcast n = 0', op: 'add_broadcast', empty: true, inputs: [f(new Float32Array(0)), f(new Float32Array(0))], outputs: [out(0)], ints: [3, 0] });
  // n = 0 in a longer buffer: nothing written
  cases.push({ name: 'fill n = 0', op: 'fill', empty: true, inputs: [], outputs: [acc(Float32Array.from([1, -2, 3]))], ints: [0], floats: [2.5] });
  return cases;
}

function optimizerCases(rng: Rng): Case[] {
  const sizes = [5, 70000, 1, 0];
  const k = sizes.length;
  const g = sizes.map((n) => f(normals(rng, n)));
  const pmv = [...sizes.map((n) => acc(normals(rng, n))), ...sizes.map((n) => acc(normals(rng, n, 0.1))), ...sizes.map((n) => acc(normals(rng, n, 0.1).map((x) => x * x)))];
  return [
    { name: 'adamw_step k=4 (one empty)', op: 'adamw_step', inputs: g, outputs: pmv, ints: [k, 3, ...sizes], floats: [1e-3, 0.9, 0.999, 1e-8, 0.01, 0.5] },
    { name: 'adamw_step k=0', op: 'adamw_step', inputs: [], outputs: [], ints: [0, 1], floats: [1e-3, 0.9, 0.999, 1e-8, 0, 1] },
    { name: 'sum_squares k=4 (long)', op: 'sum_squares', inputs: g, outputs: [out(1)], ints: [k, ...sizes], tol: TOL_LONG },
    { name: 'sum_squares k=0', op: 'sum_squares', inputs: [], outputs: [out(1)], ints: [0] },
  ];
}

interface Attn {
  name: string; B: number; Tq: number; Tk: number; Hq: number; Hkv: number; Dh: number; causal: boolean;
  mask?: 'random' | 'right-pad' | 'left-pad'; emptyRow?: boolean; scoreScale?: number;
}
const attnConfigs: Attn[] = [
  { name: 'tiny', B: 1, Tq: 1, Tk: 1, Hq: 1, Hkv: 1, Dh: 1, causal: false },
  { name: 'odd B=2 T=5 H=3 Dh=3', B: 2, Tq: 5, Tk: 5, Hq: 3, Hkv: 3, Dh: 3, causal: false },
  { name: 'MHA causal T=33 Dh=8', B: 3, Tq: 33, Tk: 33, Hq: 2, Hkv: 2, Dh: 8, causal: true },
  { name: 'GQA 4/2 causal T=33', B: 2, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, Dh: 8, causal: true },
  { name: 'MQA 4/1 causal T=130 Dh=64', B: 2, Tq: 130, Tk: 130, Hq: 4, Hkv: 1, Dh: 64, causal: true },
  { name: 'bidirectional T=130 Dh=17', B: 1, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, Dh: 17, causal: false },
  { name: 'cross Tq=33 Tk=130 GQA Dh=33', B: 2, Tq: 33, Tk: 130, Hq: 4, Hkv: 2, Dh: 33, causal: false },
  { name: 'KV cache causal Tq=5 Tk=33', B: 2, Tq: 5, Tk: 33, Hq: 2, Hkv: 2, Dh: 8, causal: true },
  { name: 'decode Tq=1 Tk=130', B: 3, Tq: 1, Tk: 130, Hq: 4, Hkv: 1, Dh: 16, causal: true },
  { name: 'causal Tq=33 > Tk=5', B: 2, Tq: 33, Tk: 5, Hq: 2, Hkv: 1, Dh: 8, causal: true },
  { name: 'random mask + an all-padding row', B: 3, Tq: 33, Tk: 33, Hq: 4, Hkv: 2, Dh: 8, causal: false, mask: 'random', emptyRow: true },
  { name: 'right padding, causal', B: 3, Tq: 130, Tk: 130, Hq: 2, Hkv: 2, Dh: 8, causal: true, mask: 'right-pad' },
  { name: 'left padding, causal', B: 2, Tq: 33, Tk: 33, Hq: 2, Hkv: 1, Dh: 8, causal: true, mask: 'left-pad' },
  { name: 'large scores x100', B: 2, Tq: 33, Tk: 33, Hq: 2, Hkv: 1, Dh: 8, causal: true, scoreScale: 100 },
  { name: 'Dh=100, masked, causal', B: 1, Tq: 65, Tk: 65, Hq: 2, Hkv: 1, Dh: 100, causal: true, mask: 'random' },
  { name: 'Dh=128', B: 1, Tq: 40, Tk: 40, Hq: 2, Hkv: 2, Dh: 128, causal: true },
  { name: 'Dh=256', B: 1, Tq: 33, Tk: 40, Hq: 1, Hkv: 1, Dh: 256, causal: false },
  // bf16 with an even head size off a multiple of 8: the gemm kernel leaves it to the tiled one (cuBLAS alignment)
  { name: 'Dh=12 GQA 4/2 causal, random mask', B: 2, Tq: 37, Tk: 37, Hq: 4, Hkv: 2, Dh: 12, causal: true, mask: 'random' },
  // 80,000 (b, head) entries: the gemm kernel's batched GEMMs in two groups of at most 65,535
  { name: 'many heads B=2 H=40000 T=3', B: 2, Tq: 3, Tk: 3, Hq: 40000, Hkv: 40000, Dh: 8, causal: true },
  { name: 'empty Tq=0', B: 2, Tq: 0, Tk: 5, Hq: 2, Hkv: 1, Dh: 4, causal: true },
  { name: 'empty Tk=0', B: 2, Tq: 3, Tk: 0, Hq: 2, Hkv: 1, Dh: 4, causal: false },
  { name: 'empty B=0', B: 0, Tq: 3, Tk: 3, Hq: 2, Hkv: 2, Dh: 4, causal: false, mask: 'random' },
];

function attentionCases(rng: Rng, a: Attn): Case[] {
  const nq = a.B * a.Tq * a.Hq * a.Dh, nk = a.B * a.Tk * a.Hkv * a.Dh, nl = a.B * a.Hq * a.Tq;
  let mask: Int32Array | null = null;
  if (a.mask) {
    mask = new Int32Array(a.B * a.Tk).fill(1);
    for (let b = 0; b < a.B; b++) {
      const pad = 1 + rng.int(Math.max(1, Math.floor(a.Tk / 2)));
      for (let j = 0; j < a.Tk; j++) {
        const i = b * a.Tk + j;
        if (a.mask === 'random') mask[i] = rng.next() < 0.3 ? 0 : 1;
        else if (a.mask === 'right-pad') mask[i] = j >= a.Tk - pad ? 0 : 1;
        else mask[i] = j < pad + 5 ? 0 : 1;
      }
      if (a.emptyRow && b === 1) mask.fill(0, b * a.Tk, (b + 1) * a.Tk);
    }
  }
  const q = normals(rng, nq), k = normals(rng, nk), v = normals(rng, nk), dO = normals(rng, nq);
  const ints = [a.B, a.Tq, a.Tk, a.Hq, a.Hkv, a.Dh, a.causal ? 1 : 0, mask ? 1 : 0];
  const floats = [(a.scoreScale ?? 1) / Math.sqrt(a.Dh)];
  const maskIn = mask ? [ids(mask)] : [];
  const [o, lse] = scope(() => {
    const outs = [Tensor.empty([nq]), Tensor.empty([nl])];
    const ins = [q, k, v].map((x) => Tensor.fromArray(x, [x.length]));
    callOp('attention_forward', 'cpu', [...ins, mask ? Tensor.fromArray(mask, [mask.length]) : null], outs, ints, floats);
    return outs.map((t) => t.toArray() as Float32Array);
  });
  return [
    { name: `attention_forward ${a.name}`, op: 'attention_forward', bf16: true, tol: TOL_LONG, inputs: [cast(q), cast(k), cast(v), ...maskIn],
      outputs: [out(nq, true), out(nl)], ints, floats },
    { name: `attention_backward ${a.name}`, op: 'attention_backward', bf16: true, tol: TOL_LONG,
      inputs: [cast(dO), cast(q), cast(k), cast(v), cast(o), f(lse), ...maskIn], outputs: [out(nq, true), out(nk, true), out(nk, true)], ints, floats },
  ];
}

// The fused vocabulary ops: both row-pass widths (V % 4 == 0 and not), several row chunks, ignored rows,
// label smoothing and z-loss, detached targets, k > 1, gradients off, empty inputs. Logits stay moderate
// (|z| of a few units), so the CPU and CUDA summation orders differ by float32 rounding only.
function fusedCases(rng: Rng): Case[] {
  const cases: Case[] = [];
  const MiB64 = 64 * 2 ** 20;
  const small = (n: number) => normals(rng, n, 0.3);
  for (const [N, d, V, chunk] of [[37, 19, 101, 8], [40, 16, 128, 0], [0, 5, 7, 0]]) {
    const t = randIds(rng, N, V).map((x, i) => (i % 5 === 2 ? -100 : x));
    for (const [red, grad, ls, z] of [[0, 1, 0.1, 1e-3], [1, 1, 0, 0], [2, 0, 0, 0]]) {
      cases.push({ name: `linear_cross_entropy N=${N} V=${V} red=${red} grad=${grad}`, op: 'linear_cross_entropy', bf16: true, tol: TOL_LONG,
        inputs: [cast(small(N * d)), cast(small(V * d)), ids(t)], outputs: [out(N), grad ? out(N * d, true) : noOut, grad ? out(V * d) : noOut],
        ints: [N, d, V, -100, red, grad, chunk, MiB64], floats: [1, ls, z] });
    }
    for (const detach of [0, 1]) {
      cases.push({ name: `visual_word_kl M=${N} V=${V} detach=${detach}`, op: 'visual_word_kl', bf16: true, tol: TOL_LONG,
        inputs: [cast(small(N * d)), cast(small(V * d)), cast(small(N * d)), cast(small(V * d))],
        outputs: [out(N), out(N * d, true), out(V * d), detach ? noOut : out(N * d, true), detach ? noOut : out(V * d)],
        ints: [N, d, V, 0, 1, detach, chunk, MiB64], floats: [1.5, 0.5] });
    }
    for (const k of [1, 5]) {
      // ids are compared exactly: float32 only (bf16 rounding may swap near-ties; the bf16 cases are below)
      cases.push({ name: `visual_words N=${N} V=${V} k=${k}`, op: 'visual_words', tol: TOL_LONG,
        inputs: [cast(small(N * d)), cast(small(V * d))], outputs: [intOut(N * k), out(N * k)], ints: [N, d, V, k, chunk, MiB64] });
    }
    const dE = 9;
    cases.push({ name: `pseudo_image_features N=${N} V=${V}`, op: 'pseudo_image_features', bf16: true, tol: TOL_LONG,
      inputs: [cast(small(N * d)), cast(small(V * d)), cast(small(V * dE))], outputs: [out(N * dE, true)], ints: [N, d, V, dE, chunk, MiB64] });
    cases.push({ name: `pseudo_image_features_backward N=${N} V=${V}`, op: 'pseudo_image_features_backward', bf16: true, tol: TOL_LONG,
      inputs: [cast(small(N * d)), cast(small(V * d)), cast(small(V * dE)), cast(small(N * dE))],
      outputs: [out(N * d, true), out(V * d), out(V * dE)], ints: [N, d, V, dE, chunk, MiB64] });
  }
  // Gradient outputs left null with grad = 1 (a frozen head's dW, an h that needs none; native/core/fused_args.h):
  // their GEMMs are skipped, and on CUDA a KL side with neither output gets no gradient block. Drawn after the
  // cases above, so those keep their inputs. Rows of an all-ignored chunk (N=6, every target -100) take the
  // memset paths.
  for (const [N, d, V, chunk, ignored] of [[37, 19, 101, 8, false], [6, 5, 7, 0, true], [0, 5, 7, 0, false]] as [number, number, number, number, boolean][]) {
    const t = randIds(rng, N, V).map((x, i) => (ignored || i % 5 === 2 ? -100 : x));
    const h = small(N * d), w = small(V * d);
    for (const [dh, dw] of [[1, 0], [0, 1]]) {
      cases.push({ name: `linear_cross_entropy N=${N} V=${V} grad=1 dh=${dh} dw=${dw}`, op: 'linear_cross_entropy', bf16: true, tol: TOL_LONG,
        inputs: [cast(h), cast(w), ids(t)], outputs: [out(N), dh ? out(N * d, true) : noOut, dw ? out(V * d) : noOut],
        ints: [N, d, V, -100, 0, 1, chunk, MiB64], floats: [1, 0.1, 1e-3] });
    }
    const x = small(N * d), wVm = small(V * d);
    // [detachTarget, dh, dwLm, dx, dwVm]: frozen lm_head; both heads frozen; the target side only; detached with a
    // frozen lm_head; the weight gradients only
    for (const [detach, ...given] of [[0, 1, 0, 1, 1], [0, 1, 0, 1, 0], [0, 0, 0, 1, 1], [1, 1, 0, 0, 0], [0, 0, 1, 0, 1]]) {
      const [gh, gwl, gx, gwv] = given;
      cases.push({ name: `visual_word_kl M=${N} V=${V} detach=${detach} dh,dwLm,dx,dwVm=${given.join('')}`, op: 'visual_word_kl', bf16: true, tol: TOL_LONG,
        inputs: [cast(h), cast(w), cast(x), cast(wVm)],
        outputs: [out(N), gh ? out(N * d, true) : noOut, gwl ? out(V * d) : noOut, gx ? out(N * d, true) : noOut, gwv ? out(V * d) : noOut],
        ints: [N, d, V, 0, 1, detach, chunk, MiB64], floats: [1.5, 0.5] });
    }
  }
  // Gradient groups (bf16 on CUDA; native/core/fused_args.h plan_chunks; tests/kernels checks the split itself): budgets
  // of 256 float32 logit rows and ~600 bf16 gradient rows give 3 groups of 2 chunks at V % 4 = 0 (vec4), and with a
  // requested chunk of 100 rows at V odd, groups of whole chunks; the last group and chunk short in both. Drawn last,
  // so the cases above keep their inputs.
  for (const [N, V, chunk, logitRows, gradRows] of [[1301, 104, 0, 256, 600], [601, 101, 100, 100, 420]]) {
    const d = 16;
    const t = randIds(rng, N, V).map((x, i) => (i % 5 === 2 ? -100 : x));
    const h = small(N * d), w = small(V * d), x = small(N * d), wVm = small(V * d);
    const budget = (f32: number, bf16: number) => logitRows * 4 * V * f32 + gradRows * 2 * V * bf16 + 8 * N + 6144;
    cases.push({ name: `linear_cross_entropy N=${N} V=${V} groups chunk=${chunk}`, op: 'linear_cross_entropy', bf16: true, tol: TOL_LONG,
      inputs: [cast(h), cast(w), ids(t)], outputs: [out(N), out(N * d, true), out(V * d)],
      ints: [N, d, V, -100, 0, 1, chunk, budget(1, 1)], floats: [1, 0.1, 1e-3] });
    for (const detach of [0, 1]) {
      cases.push({ name: `visual_word_kl M=${N} V=${V} groups chunk=${chunk} detach=${detach}`, op: 'visual_word_kl', bf16: true, tol: TOL_LONG,
        inputs: [cast(h), cast(w), cast(x), cast(wVm)],
        outputs: [out(N), out(N * d, true), out(V * d), detach ? noOut : out(N * d, true), detach ? noOut : out(V * d)],
        ints: [N, d, V, 0, 1, detach, chunk, budget(2, detach ? 1 : 2)], floats: [1.5, 0.5] });
    }
  }
  // visual_words in bf16: ids are compared exactly, so the logits must not depend on rounding. x and wVm are exact in
  // bf16 (multiples of 1/16 with few bits), and their products sum exactly in float32 on either backend: logit(r, v) =
  // s_r v / 4 + e with s_r = +-1 and |e| <= 7/256 < 1/8, distinct for every v of a row, so both backends rank the same
  // ids; only the probabilities differ, by float32 rounding. Its own rng: the cases above keep their inputs.
  {
    const N = 45, d = 8, V = 67, r2 = rngFor('cuda_parity:visual_words exact');
    const x = new Float32Array(N * d), wVm = new Float32Array(V * d);
    for (let i = 0; i < N; i++) {
      x[i * d] = r2.next() < 0.5 ? -1 : 1;
      for (let j = 1; j < d; j++) x[i * d + j] = (r2.int(3) - 1) / 16;
    }
    for (let v = 0; v < V; v++) {
      wVm[v * d] = v / 4;
      for (let j = 1; j < d; j++) wVm[v * d + j] = (r2.int(3) - 1) / 16;
    }
    for (const k of [1, 5, 20])
      cases.push({ name: `visual_words exact logits N=${N} V=${V} k=${k}`, op: 'visual_words', bf16: true, tol: TOL_LONG,
        inputs: [cast(x), cast(wVm)], outputs: [intOut(N * k), out(N * k)], ints: [N, d, V, k, 0, MiB64] });
  }
  return cases;
}

// ------------------------------------------------------------------------------------------ tests

describe(`CUDA ops match the CPU ops (seed ${runSeed})`, () => {
  const groups: [string, (rng: Rng) => Case[]][] = [
    ['matmul', matmulCases], ['rows', rowsCases], ['norms, rope, softmax', normCases], ['element-wise', elementwiseCases],
    ['optimizer', optimizerCases], ...attnConfigs.map((a): [string, (rng: Rng) => Case[]] => [`attention ${a.name}`, (rng) => attentionCases(rng, a)]),
    ['fused', fusedCases],
  ];

  let built: Case[] | null = null;
  const allCases = () => (built ??= groups.flatMap(([g, make]) => make(rngFor(`cuda_parity:${g}`))));

  // Runs without a GPU too: an op added to ops.def without a case here, or a bf16 op without a bf16 case, fails on
  // every machine. The bf16 ops are those ops.def's header names (tests/support/backends.ts opsDef), checked here
  // against this list so that a parse that finds nothing cannot pass.
  it('the table has cases for every op of the table, in both dtypes where the op takes bfloat16', () => {
    const def = opsDef();
    expect([...def.ops].sort()).toEqual([...opNames()].sort());
    expect([...def.bf16].sort()).toEqual([
      'activation_backward', 'activation_forward', 'attention_backward', 'attention_forward', 'axpby', 'cast', 'dropout',
      'linear_cross_entropy', 'matmul', 'mul', 'pseudo_image_features', 'pseudo_image_features_backward', 'rms_norm_backward',
      'rms_norm_forward', 'rope', 'swiglu_backward', 'swiglu_forward', 'visual_word_kl', 'visual_words',
    ]);
    const all = allCases();
    expect([...new Set(all.map((c) => c.op))].sort()).toEqual([...def.ops].sort());
    const bf = all.filter((c) => c.bf16);
    expect([...new Set(bf.map((c) => c.op))].sort()).toEqual([...def.bf16].sort());
    // a bf16 case must have a buffer that goes bf16 (else its bf16 run repeats the float32 one)
    for (const c of bf) expect([...c.inputs, ...c.outputs].some((b) => b.cast), `${c.name}: a bf16 case without a bf16 buffer`).toBe(true);
  });

  it.skipIf(!hasCuda)('the CUDA backend has the same op table', () => {
    expect([...opNames('cuda')].sort()).toEqual([...opNames()].sort());
  });

  // The CPU side of the empty cases, on every machine: no error, and every output (a longer one too) as it was.
  it('the empty cases run on the CPU and write nothing', () => {
    const empty = allCases().filter((c) => c.empty);
    expect([...new Set(empty.map((c) => c.op))].sort()).toEqual(['activation_backward', 'activation_forward', 'add_broadcast', 'axpby', 'cast', 'copy_2d',
      'dropout', 'fill', 'im2col', 'mul', 'mul_scalar', 'rope', 'swiglu_backward', 'swiglu_forward']);
    for (const c of empty) {
      const got = runOn(c, 'cpu', 'float32');
      const given = c.outputs.filter((o) => o.n >= 0).map((o) => o.init ?? new Float32Array(o.n).fill(NaN));
      got.forEach((g, k) => expect(sameBits(g, given[k]), `${c.name}, output ${k}`).toBe(true));
    }
  });
  for (const [group, make] of groups) {
    describe(group, () => {
      it.skipIf(!hasCuda)('float32', () => {
        for (const c of make(rngFor(`cuda_parity:${group}`))) expectParity(c, 'float32');
      });
      it.skipIf(!hasCuda)('bfloat16', () => {
        const cases = make(rngFor(`cuda_parity:${group}`)).filter((c) => c.bf16);
        for (const c of cases) expectParity(c, 'bfloat16');
      });
    });
  }
});

/** fn() with CUDA in sync mode (each op waits for its kernels, so a failure names its op), the mode restored after. */
function inSyncMode<R>(fn: () => R): R {
  const was = setAsync('cuda', false);
  try {
    return fn();
  } finally {
    setAsync('cuda', was);
  }
}

/** fn() with the CUDA attention settings changed, restored after. */
function withAttention<R>(settings: Partial<CudaAttentionSettings>, fn: () => R): R {
  const was = setCudaAttention(settings);
  try {
    return fn();
  } finally {
    setCudaAttention(was);
  }
}

// The gemm attention kernel (setCudaAttention) on the same cases: with the default workspace (one chunk of query
// rows here) and with 1 byte (chunks of 16 rows: the seams between chunks, each chunk's causal key range, and the
// leading chunks of `causal Tq=33 > Tk=5` that see no key at all). Each call must have run on the gemm kernel,
// except empty ones and bf16 head sizes that are not a multiple of 8 (sent to the tiled kernels: attention_gemm.cu).
// In sync mode: until this kernel has run on a GPU, a fault should name its op and case.
describe(`CUDA attention through the gemm kernel matches the CPU (seed ${runSeed})`, () => {
  for (const workspaceBytes of [undefined, 1]) {
    for (const dtype of ['float32', 'bfloat16'] as const) {
      it.skipIf(!hasCuda)(`${dtype}, workspace ${workspaceBytes ?? 'default'}`, () => {
        withAttention({ kernel: 'gemm', ...(workspaceBytes ? { workspaceBytes } : {}) }, () => inSyncMode(() => {
          for (const a of attnConfigs) {
            for (const c of attentionCases(rngFor(`cuda_parity:attention ${a.name}`), a)) {
              const before = cudaAttention()!.gemmCalls;
              expectParity(c, dtype);
              const work = c.op === 'attention_forward' ? a.B * a.Tq * a.Hq * a.Dh > 0 : a.B * a.Hkv > 0;
              const gemm = work && (dtype === 'float32' || a.Dh % 8 === 0);
              expect(cudaAttention()!.gemmCalls - before, `${c.name} ${dtype}: calls on the gemm kernel`).toBe(gemm ? 1 : 0);
            }
          }
        }));
      });
    }
  }
});

describe('CUDA engine ops: errors, extensions, determinism', () => {
  const sameError = (op: string, inputs: In[], outputs: Out[], ints: number[], floats: number[] = []) => {
    const c: Case = { name: op, op, inputs, outputs, ints, floats };
    const cpuErr = errorOf(() => runOn(c, 'cpu', 'float32'));
    expect(cpuErr).not.toBe('no error');
    // in sync mode, as the CPU raises them (CUDA's async default raises a data check at the next read instead,
    // with a note saying so: tests/engine/error_flags.test.ts)
    inSyncMode(() => expect(errorOf(() => runOn(c, 'cuda', 'float32'))).toBe(cpuErr));
  };

  it.skipIf(!hasCuda)('bad ids, masks and parameters give the CPU errors', () => {
    const rng = rngFor('cuda_parity:errors');
    sameError('embedding_forward', [ids(Int32Array.from([0, 3, 7, 1])), f(normals(rng, 14))], [out(8)], [4, 7, 2]);
    sameError('embedding_backward', [ids(Int32Array.from([0, -1, 2, 1])), f(normals(rng, 8))], [acc(normals(rng, 14))], [4, 7, 2]);
    sameError('scatter_add_rows', [f(normals(rng, 8)), ids(Int32Array.from([0, 9, 7, 1]))], [acc(normals(rng, 14))], [7, 4, 2]);
    sameError('gather_rows', [f(normals(rng, 14)), ids(Int32Array.from([0, 1, 2, 7]))], [out(8)], [7, 4, 2]);
    sameError('attention_forward', [f(normals(rng, 8)), f(normals(rng, 8)), f(normals(rng, 8)), ids(Int32Array.from([1, 1, 2, 1, 0, 1, 1, 1]))],
      [out(8), out(8)], [2, 4, 4, 1, 1, 1, 0, 1], [1]);
    sameError('attention_forward', [f(normals(rng, 8)), f(normals(rng, 8)), f(normals(rng, 8)), ids(Int32Array.from([1, 1, 1, 1, 0, 1, 1, 1]))],
      [out(8), out(8)], [2, 4, 4, 1, 1, 1, 0, 0], [1]);
    sameError('attention_backward', [f(normals(rng, 24)), f(normals(rng, 24)), f(normals(rng, 16)), f(normals(rng, 16)), f(normals(rng, 24)), f(normals(rng, 6))],
      [out(24), out(16), out(16)], [1, 2, 2, 3, 2, 4, 0, 0], [1]);
    sameError('matmul', [f(normals(rng, 6)), f(normals(rng, 6))], [out(4)], [1, 2, 2, 3, 2, 0, 0, 0, 0, 0, 0], [1]);
    sameError('matmul', [f(normals(rng, 6)), f(normals(rng, 5))], [out(4)], [1, 2, 2, 3, 0, 0, 0, 0, 0, 0, 0], [1]);
    // batch > 1 with every stride 0 (one product repeated into one C) is refused on both
    sameError('matmul', [f(normals(rng, 6)), f(normals(rng, 6))], [out(4)], [3, 2, 2, 3, 0, 0, 0, 0, 0, 0, 0], [1]);
    sameError('copy_2d', [f(normals(rng, 20))], [out(20)], [3, 4, 4, 3, 0, 0, 0]);
    sameError('im2col', [f(normals(rng, 180))], [out(180)], [2, 3, 5, 6, 2]);
    sameError('activation_forward', [f(normals(rng, 3))], [out(3)], [3, 4]);
    sameError('rope', [f(normals(rng, 6))], [out(6)], [1, 1, 2, 3, 0, 0], [10000]);
    sameError('layer_norm_forward', [f(normals(rng, 2)), f(normals(rng, 2)), f(normals(rng, 2))], [out(2), out(1), out(1)], [1, 2], [-1]);
    // rms_norm: C = 0 (a mean over no values) and an eps that is negative, NaN or infinite, in both directions
    sameError('rms_norm_forward', [f(normals(rng, 2)), f(normals(rng, 2))], [out(2), out(1)], [1, 0], [1e-5]);
    for (const eps of [-1e-5, NaN, Infinity]) sameError('rms_norm_forward', [f(normals(rng, 2)), f(normals(rng, 2))], [out(2), out(1)], [1, 2], [eps]);
    sameError('rms_norm_backward', [f(normals(rng, 2)), f(normals(rng, 2)), f(normals(rng, 2)), f(normals(rng, 1))], [out(2), acc(normals(rng, 2))], [1, 0]);
    sameError('adamw_step', [f(normals(rng, 3))], [acc(normals(rng, 3)), acc(normals(rng, 3)), acc(normals(rng, 3))], [1, 0, 3], [1e-3, 0.9, 0.999, 1e-8, 0, 1]);
    sameError('sum_squares', [f(normals(rng, 3))], [out(1)], [1, 3, 4]);
    sameError('checks_failed', [], [out(3)], [3]);
    // grad = 1 with every gradient output null
    sameError('linear_cross_entropy', [f(normals(rng, 4)), f(normals(rng, 12)), ids(Int32Array.from([0, 2]))], [out(2), noOut, noOut], [2, 2, 6, -100, 0, 1, 0, 64], [1, 0, 0]);
    sameError('visual_word_kl', [f(normals(rng, 4)), f(normals(rng, 12)), f(normals(rng, 4)), f(normals(rng, 12))], [out(2), noOut, noOut, noOut, noOut],
      [2, 2, 6, 0, 1, 0, 0, 64], [1, 1]);
  });

  it.skipIf(!hasCuda)('float32-only ops reject bfloat16 with a TypeError naming the dtype', () => {
    const rng = rngFor('cuda_parity:fp32-only');
    for (const [op, inputs, outputs, ints, floats] of [
      ['layer_norm_forward', [cast(normals(rng, 4)), f(normals(rng, 2)), f(normals(rng, 2))], [out(4, true), out(2), out(2)], [2, 2], [1e-5]],
      ['softmax_forward', [cast(normals(rng, 4))], [out(4, true)], [2, 2], []],
      ['fill', [], [out(4, true)], [4], [1]],
      ['checks_failed', [], [out(4, true)], [0], []],
      ['sum_rows', [cast(normals(rng, 4))], [out(2)], [2, 2, 0], []],
    ] as [string, In[], Out[], number[], number[]][]) {
      const msg = errorOf(() => runOn({ name: op, op, inputs, outputs, ints, floats }, 'cuda', 'bfloat16'));
      expect(msg).toMatch(/^TypeError: .*bfloat16/);
    }
  });

  it.skipIf(!hasCuda)('matmul: bf16 A, B with a float32 C (fp32 weight gradients from bf16 activations)', () => {
    const rng = rngFor('cuda_parity:matmul-f32-out');
    const A = normals(rng, 33 * 17).map(roundToBf16), B = normals(rng, 9 * 17).map(roundToBf16), bias = normals(rng, 9), C0 = normals(rng, 33 * 9);
    const ints = [1, 33, 9, 17, 0, 1, 1, 1, 0, 0, 0];
    const ref = scope(() => {
      const C = Tensor.fromArray(C0, [C0.length]);
      callOp('matmul', 'cpu', [Tensor.fromArray(A, [A.length]), Tensor.fromArray(B, [B.length]), Tensor.fromArray(bias, [9])], [C], ints, [0.5]);
      return C.toArray();
    });
    const got = scope(() => {
      const C = Tensor.fromArray(C0, [C0.length], { device: 'cuda' });
      callOp('matmul', 'cuda', [Tensor.fromArray(A, [A.length], { device: 'cuda', dtype: 'bfloat16' }),
        Tensor.fromArray(B, [B.length], { device: 'cuda', dtype: 'bfloat16' }), Tensor.fromArray(bias, [9], { device: 'cuda' })], [C], ints, [0.5]);
      return C.toArray();
    });
    // Exact bf16 inputs, fp32 accumulation on both sides: float32 tolerance.
    expectErr('matmul bf16 -> f32', parityErr(got as Float32Array, ref as Float32Array), TOL_F32);
  });

  it.skipIf(!hasCuda)('adamw_step bf16Copies = 1 writes bf16(p) after the fp32 update; the CPU rejects the flag', () => {
    const rng = rngFor('cuda_parity:adamw-copies');
    const sizes = [7, 40000];
    const g = sizes.map((n) => normals(rng, n)), p = sizes.map((n) => normals(rng, n));
    const m = sizes.map((n) => normals(rng, n, 0.1)), v = sizes.map((n) => normals(rng, n, 0.1).map((x) => x * x));
    const floats = [1e-3, 0.9, 0.999, 1e-8, 0.01, 1];
    const step = (device: 'cpu' | 'cuda', copies: boolean) => scope(() => {
      const t = (a: Float32Array, dtype: DType = 'float32') => Tensor.fromArray(a, [a.length], { device, dtype });
      const outs = [...p.map((a) => t(a)), ...m.map((a) => t(a)), ...v.map((a) => t(a))];
      const c = copies ? sizes.map((n) => t(new Float32Array(n).fill(NaN), 'bfloat16')) : [];
      callOp('adamw_step', device, g.map((a) => t(a)), [...outs, ...c], [2, 5, ...sizes, ...(copies ? [1] : [])], floats);
      return { pmv: outs.map((x) => x.toArray() as Float32Array), c: c.map((x) => x.toArray() as Float32Array) };
    });
    const ref = step('cpu', false);
    const got = step('cuda', true);
    got.pmv.forEach((a, i) => expectErr('adamw_step pmv', parityErr(a, ref.pmv[i]), TOL_F32));
    got.c.forEach((c, i) => expect(sameBits(c, got.pmv[i].map(roundToBf16))).toBe(true));
    expect(errorOf(() => scope(() => {
      const t = (a: Float32Array) => Tensor.fromArray(a, [a.length]);
      callOp('adamw_step', 'cpu', g.map(t), [...p.map(t), ...m.map(t), ...v.map(t), ...p.map(t)], [2, 5, ...sizes, 1], floats);
    }))).toMatch(/^TypeError: \[adamw_step\]/);
  });

  it.skipIf(!hasCuda)('reductions and attention gradients are bitwise run-to-run identical', () => {
    const rng = rngFor('cuda_parity:determinism');
    const cases: Case[] = [
      { name: 'sum_rows', op: 'sum_rows', inputs: [f(normals(rng, 5000 * 7))], outputs: [out(7)], ints: [5000, 7, 0] },
      { name: 'scatter', op: 'embedding_backward', inputs: [ids(randIds(rng, 3000, 20)), f(normals(rng, 3000 * 33))], outputs: [acc(new Float32Array(20 * 33))], ints: [3000, 20, 33] },
      { name: 'sum_squares', op: 'sum_squares', inputs: [f(normals(rng, 100000)), f(normals(rng, 3))], outputs: [out(1)], ints: [2, 100000, 3] },
      ...attentionCases(rng, { name: 'determinism', B: 2, Tq: 200, Tk: 200, Hq: 4, Hkv: 1, Dh: 64, causal: true }),
      ...normCases(rng).filter((c) => c.op.endsWith('_backward')),
    ];
    for (const c of cases) {
      const a = runOn(c, 'cuda', 'float32'), b = runOn(c, 'cuda', 'float32');
      a.forEach((x, i) => expect(sameBits(x, b[i])).toBe(true));
    }
    // the gemm kernel too, in both dtypes, across chunk seams
    const gemm = attentionCases(rng, { name: 'determinism', B: 2, Tq: 200, Tk: 200, Hq: 4, Hkv: 2, Dh: 64, causal: true });
    withAttention({ kernel: 'gemm', workspaceBytes: 1 }, () => {
      for (const c of gemm) {
        for (const dtype of ['float32', 'bfloat16'] as const) {
          const a = runOn(c, 'cuda', dtype), b = runOn(c, 'cuda', dtype);
          a.forEach((x, i) => expect(sameBits(x, b[i])).toBe(true));
        }
      }
    });
  });
});
