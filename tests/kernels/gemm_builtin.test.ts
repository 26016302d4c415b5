// The built-in GEMM (native/cpu/gemm_builtin.cpp: packed, cache-blocked, AVX-512F, AVX2+FMA or portable
// micro-kernel, and a few-rows path for M <= 4), reached through sgemm(..., { builtin: true }) in every build, checked against a float64 reference on fresh
// random inputs. Each element must meet the rigorous rounding-error bound of a float32 dot product in any
// summation order, |err_ij| <= 2 (K + 2) u (|alpha| sum_k |a_ik b_kj| + |beta c_ij|), u = 2^-24: K roundings of
// the K-sum (gamma_K <= 2 K u), plus the alpha scaling and the beta update (the +2). As that bound grows with K
// and could hide a lost term at large K, inputs of small integers (every product and partial sum exact in
// float32) must also give the exact result, whatever the blocking. Then: determinism (bit-identical across
// runs, thread counts and the two micro-kernels' own runs), the portable micro-kernel (VWLMM_SIMD=generic, in a
// child process as in tests/kernels/simd.test.ts), BLAS edge semantics and the binding's argument checks.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../../src';
import { cpu } from '../../src/native';
import { relErr } from '../support/compare';
import { Rng, rngFor, runSeed } from '../support/random';

const U = 2 ** -24;

interface Case {
  ta: boolean; tb: boolean; M: number; N: number; K: number;
  alpha?: number; beta?: number; lda?: number; ldb?: number; ldc?: number;
}
interface Inputs { A: Float32Array; B: Float32Array; C: Float32Array; lda: number; ldb: number; ldc: number }

const tag = (c: Case): string =>
  `${c.ta ? 'T' : 'N'}${c.tb ? 'T' : 'N'} ${c.M}x${c.N}x${c.K} alpha=${c.alpha ?? 1} beta=${c.beta ?? 0}` +
  `${c.lda || c.ldb || c.ldc ? ` ld=${c.lda ?? '-'}/${c.ldb ?? '-'}/${c.ldc ?? '-'}` : ''} (seed ${runSeed})`;

// Stored shapes: A is [M, K] ([K, M] when ta), B [K, N] ([N, K] when tb), C [M, N]; row strides >= widths.
function layout(c: Case) {
  const aRows = c.ta ? c.K : c.M, aW = c.ta ? c.M : c.K, bRows = c.tb ? c.N : c.K, bW = c.tb ? c.K : c.N;
  const lda = c.lda ?? Math.max(1, aW), ldb = c.ldb ?? Math.max(1, bW), ldc = c.ldc ?? Math.max(1, c.N);
  return { aRows, aW, bRows, bW, lda, ldb, ldc };
}

/** Random inputs: entries from `fill`, row padding NaN (never to be read), C NaN when beta = 0 (never to be read). */
function makeInputs(c: Case, rng: Rng, fill: () => number = () => rng.normal()): Inputs {
  const { aRows, aW, bRows, bW, lda, ldb, ldc } = layout(c);
  const mat = (rows: number, w: number, ld: number, f: () => number) => {
    const m = new Float32Array(Math.max(1, rows * ld)).fill(NaN);
    for (let r = 0; r < rows; r++) for (let j = 0; j < w; j++) m[r * ld + j] = f();
    return m;
  };
  const beta = c.beta ?? 0;
  return {
    A: mat(aRows, aW, lda, fill), B: mat(bRows, bW, ldb, fill),
    C: mat(c.M, c.N, ldc, beta === 0 ? () => NaN : fill), lda, ldb, ldc,
  };
}

/** C after the built-in (or the in-use) GEMM, the whole stored C including its row padding. */
function runGemm(c: Case, inp: Inputs, builtin = true): Float32Array {
  const a = cpu();
  const buf = (x: Float32Array) => {
    const b = new a.NativeBuffer(x.length * 4);
    b.write(x);
    return b;
  };
  const A = buf(inp.A), B = buf(inp.B), C = buf(inp.C);
  try {
    a.sgemm!(c.ta, c.tb, c.M, c.N, c.K, A, B, C, { builtin, alpha: c.alpha ?? 1, beta: c.beta ?? 0, lda: inp.lda, ldb: inp.ldb, ldc: inp.ldc });
    const out = new Float32Array(inp.C.length);
    C.read(out);
    return out;
  } finally {
    [A, B, C].forEach((b) => b.dispose());
  }
}

/**
 * Float64 reference at the given elements (all by default): value and the error bound. Returns the worst
 * |err| / bound (must be <= 1; a NaN or an error where the bound is 0 gives Infinity) and checks that the row
 * padding of C was left alone.
 */
function check(c: Case, inp: Inputs, got: Float32Array, sample?: [number, number][]): number {
  const { ldc } = inp, alpha = c.alpha ?? 1, beta = c.beta ?? 0, K = c.K;
  const a = (i: number, k: number) => (c.ta ? inp.A[k * inp.lda + i] : inp.A[i * inp.lda + k]);
  const b = (k: number, j: number) => (c.tb ? inp.B[j * inp.ldb + k] : inp.B[k * inp.ldb + j]);
  // op(A) rows and op(B) columns as contiguous float64 (the reference loop is then a plain dot product)
  const rows = new Map<number, Float64Array>(), cols = new Map<number, Float64Array>();
  const rowOf = (i: number) => rows.get(i) ?? rows.set(i, Float64Array.from({ length: K }, (_, k) => a(i, k))).get(i)!;
  const colOf = (j: number) => cols.get(j) ?? cols.set(j, Float64Array.from({ length: K }, (_, k) => b(k, j))).get(j)!;
  const elems = sample ?? Array.from({ length: c.M * c.N }, (_, e) => [Math.floor(e / c.N), e % c.N] as [number, number]);
  let worst = 0;
  for (const [i, j] of elems) {
    const x = rowOf(i), y = colOf(j);
    let s = 0, mag = 0;
    for (let k = 0; k < K; k++) {
      const p = x[k] * y[k];
      s += p;
      mag += Math.abs(p);
    }
    const c0 = inp.C[i * ldc + j];
    const ref = alpha * s + (beta === 0 ? 0 : beta * c0);
    const bound = 2 * (K + 2) * U * (Math.abs(alpha) * mag + (beta === 0 ? 0 : Math.abs(beta * c0)));
    const err = Math.abs(got[i * ldc + j] - ref);
    const r = err === 0 ? 0 : bound > 0 ? err / bound : Infinity;
    worst = Number.isNaN(r) ? Infinity : Math.max(worst, r);
  }
  for (let i = 0; i < c.M; i++) for (let j = c.N; j < ldc; j++) if (!Number.isNaN(got[i * ldc + j])) return Infinity;  // padding written
  return worst;
}

function expectWithinBound(c: Case, label: string, fill?: (rng: Rng) => () => number, builtin = true): { got: Float32Array; inp: Inputs } {
  const rng = rngFor(`${label} ${tag(c)}`);
  const inp = makeInputs(c, rng, fill?.(rng));
  const got = runGemm(c, inp, builtin);
  expect(check(c, inp, got), tag(c)).toBeLessThanOrEqual(1);
  return { got, inp };
}

/**
 * Small-integer inputs (every product and partial sum exact in float32) and power-of-two scales: the GEMM must give
 * the float64 reference exactly, whatever its blocking, tiles and summation order.
 */
function expectExact(c0: Case, label: string, builtin: boolean): void {
  const c = { ...c0, alpha: c0.alpha === undefined ? 1 : 0.5, beta: c0.beta === undefined || c0.beta === 0 ? 0 : 2 };
  const rng = rngFor(`${label} ${tag(c)}`);
  const inp = makeInputs(c, rng, () => rng.int(17) - 8);
  const got = runGemm(c, inp, builtin);
  const { ldc } = inp;
  const ref = new Float64Array(c.M * c.N), res = new Float64Array(c.M * c.N);
  const a = (i: number, k: number) => (c.ta ? inp.A[k * inp.lda + i] : inp.A[i * inp.lda + k]);
  const b = (k: number, j: number) => (c.tb ? inp.B[j * inp.ldb + k] : inp.B[k * inp.ldb + j]);
  for (let i = 0; i < c.M; i++)
    for (let j = 0; j < c.N; j++) {
      let s = 0;
      for (let k = 0; k < c.K; k++) s += a(i, k) * b(k, j);
      ref[i * c.N + j] = c.alpha * s + (c.beta === 0 ? 0 : c.beta * inp.C[i * ldc + j]);
      res[i * c.N + j] = got[i * ldc + j];
    }
  expect(relErr(res, ref), tag(c)).toBe(0);
}

const SIZES = [1, 5, 17, 33, 100, 257];
const TRANS: [boolean, boolean][] = [[false, false], [false, true], [true, false], [true, true]];
const SCALES: [number, number][] = [[1, 0], [0.75, 0], [-1.5, 0.5], [1, 1], [2, -0.25]];

// Odd sizes: every (M, N) pair of SIZES with K cycling through them, in each trans case, alpha/beta rotating.
function oddCases(): Case[] {
  const out: Case[] = [];
  let n = 0;
  for (const [ta, tb] of TRANS)
    for (let i = 0; i < SIZES.length; i++)
      for (let j = 0; j < SIZES.length; j++) {
        const [alpha, beta] = SCALES[n++ % SCALES.length];
        out.push({ ta, tb, M: SIZES[i], N: SIZES[j], K: SIZES[(i + 2 * j + (ta ? 1 : 0)) % SIZES.length], alpha, beta });
      }
  return out;
}

// Around the blocking (AVX2 MR x NR = 6 x 16, portable 4 x 8, MC = 144, KC = 256, NC = 4096) and the thread
// grid (tall, wide, several K blocks), with strided operands.
function blockingCases(): Case[] {
  const out: Case[] = [];
  for (const [ta, tb] of TRANS) {
    out.push({ ta, tb, M: 143, N: 47, K: 255 }, { ta, tb, M: 144, N: 48, K: 256, beta: 1 }, { ta, tb, M: 145, N: 49, K: 257, alpha: -0.5 });
    out.push({ ta, tb, M: 37, N: 33, K: 513, beta: 0.5 }, { ta, tb, M: 7, N: 4097, K: 9 }, { ta, tb, M: 289, N: 15, K: 31, alpha: 3 });
    out.push({ ta, tb, M: 600, N: 12, K: 40 }, { ta, tb, M: 12, N: 600, K: 40, beta: -1 }, { ta, tb, M: 150, N: 150, K: 700 });
    const w = { M: 23, N: 29, K: 31 };
    out.push({ ta, tb, ...w, lda: (ta ? w.M : w.K) + 3, ldb: (tb ? w.K : w.N) + 5, ldc: w.N + 7, beta: 0.25 });
    out.push({ ta, tb, ...w, lda: (ta ? w.M : w.K) + 1, ldb: (tb ? w.K : w.N) + 2, ldc: w.N + 1 });
  }
  return out;
}

// The demo's linear layers (src/demo/recipe.ts: vision tower d 64, FFN 256, 32 images x 26 tokens, patch
// embedding 675 -> 64 on 800 patches; LLM d 64, FFN 128, vocab 72, 32 sequences x ~91 tokens): forward
// x W^T (NT), dX = dY W (NN), dW += dY^T x (TN, beta 1).
function demoCases(): Case[] {
  const out: Case[] = [];
  for (const [rows, inF, outF] of [[800, 675, 64], [832, 64, 64], [832, 64, 256], [832, 256, 64], [2912, 64, 64], [2912, 64, 128], [2912, 128, 64], [2912, 64, 72]]) {
    out.push({ ta: false, tb: true, M: rows, N: outF, K: inF }, { ta: false, tb: false, M: rows, N: inF, K: outF });
    out.push({ ta: true, tb: false, M: outF, N: inF, K: rows, beta: 1 });
  }
  return out;
}

const b64 = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('base64');
const unb64 = (s: string) => {
  const b = Buffer.from(s, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const sameBits = (x: Float32Array, y: Float32Array) =>
  x.length === y.length && Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) === 0;

// Child process: runs the built-in GEMM on the cases it is sent and returns C's bits (its environment picks
// the micro-kernel and the thread count).
const childScript = `
const { cpu } = require(${JSON.stringify(path.join(__dirname, '../../src/native'))});
const { backendInfo } = require(${JSON.stringify(path.join(__dirname, '../../src'))});
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const f32 = (s) => { const b = Buffer.from(s, 'base64'); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); };
const a = cpu();
const out = input.cases.map((c) => {
  const bufs = [c.A, c.B, c.C].map((s) => { const x = f32(s); const b = new a.NativeBuffer(x.length * 4); b.write(x); return b; });
  a.sgemm(c.ta, c.tb, c.M, c.N, c.K, bufs[0], bufs[1], bufs[2], { builtin: true, alpha: c.alpha ?? 1, beta: c.beta ?? 0, lda: c.lda, ldb: c.ldb, ldc: c.ldc });
  const r = new Float32Array(f32(c.C).length);
  bufs[2].read(r);
  bufs.forEach((b) => b.dispose());
  return Buffer.from(r.buffer).toString('base64');
});
process.stdout.write(JSON.stringify({ simd: backendInfo().cpu.simd, gemm: backendInfo().cpu.gemm, threads: backendInfo().cpu.threads, out }));
`;

function runChild(cases: { c: Case; inp: Inputs }[], env: Record<string, string>): { simd: string; gemm: string; threads: number; out: Float32Array[] } {
  const payload = cases.map(({ c, inp }) => ({ ...c, lda: inp.lda, ldb: inp.ldb, ldc: inp.ldc, A: b64(inp.A), B: b64(inp.B), C: b64(inp.C) }));
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', childScript], {
    input: JSON.stringify({ cases: payload }), env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 28,
  });
  expect(r.status, r.stderr).toBe(0);
  const got = JSON.parse(r.stdout);
  return { simd: got.simd, gemm: got.gemm, threads: got.threads, out: got.out.map(unb64) };
}

describe('built-in GEMM against the float64 reference', () => {
  it('odd sizes (1, 5, 17, 33, 100, 257), all four trans cases, alpha/beta variations', () => {
    for (const c of oddCases()) expectWithinBound(c, 'odd');
  });

  it('sizes around MR / NR / MC / KC / NC and the thread grid, strided operands (NaN padding never read or written)', () => {
    for (const c of blockingCases()) expectWithinBound(c, 'blocking');
  });

  it('the demo recipe shapes (linear layers forward and backward)', () => {
    for (const c of demoCases()) expectWithinBound(c, 'demo');
  }, 120_000);

  it('the fused kernels chunk GEMMs at full size (d 1024, V 32000, 192-row chunk), sampled elements', () => {
    const rng = rngFor('fused');
    const nc = 192, d = 1024, V = 32000;
    const h = rng.normals(nc * d), w = rng.normals(V * d), z = rng.normals(nc * V, 0.01);
    const sample = (M: number, N: number) => Array.from({ length: 400 }, () => [rng.int(M), rng.int(N)] as [number, number]);
    // logits = h W^T, dh = G W, dW += G^T h (beta 1, dW starts as W's first d columns block)
    const cases: [Case, Inputs][] = [
      [{ ta: false, tb: true, M: nc, N: V, K: d }, { A: h, B: w, C: new Float32Array(nc * V).fill(NaN), lda: d, ldb: d, ldc: V }],
      [{ ta: false, tb: false, M: nc, N: d, K: V }, { A: z, B: w, C: new Float32Array(nc * d).fill(NaN), lda: V, ldb: d, ldc: d }],
      [{ ta: true, tb: false, M: V, N: d, K: nc, beta: 1 }, { A: z, B: h, C: w, lda: V, ldb: d, ldc: d }],
    ];
    for (const [c, inp] of cases) {
      const got = runGemm(c, inp);
      expect(check(c, inp, got, sample(c.M, c.N)), tag(c)).toBeLessThanOrEqual(1);
    }
  }, 300_000);

  it('exact on small-integer inputs (every product and partial sum exact in float32), any blocking', () => {
    for (const c of [...blockingCases(), ...oddCases().filter((_, i) => i % 3 === 0)]) expectExact(c, 'exact', true);
  }, 120_000);
});

// The GEMM in use: OpenBLAS where the build found it, run single-threaded on each tile of C that the pool's threads
// share (native/cpu/gemm.cpp gemm_grid), so every tile's offsets into strided A, B and C are exercised here; without
// OpenBLAS it is the built-in GEMM again.
describe('the GEMM in use (OpenBLAS in tiles over the threads) against the float64 reference', () => {
  it('odd sizes, sizes around the tiles, strided operands, the demo recipe shapes; two runs bit-identical', () => {
    const cases = [...oddCases().filter((_, i) => i % 2 === 0), ...blockingCases(), ...demoCases()];
    for (const c of cases) {
      const { got, inp } = expectWithinBound(c, 'in use', undefined, false);
      expect(sameBits(runGemm(c, inp, false), got), `rerun: ${tag(c)}`).toBe(true);
    }
  }, 120_000);

  it('exact on small-integer inputs, whatever the tiles', () => {
    // the blocking cases and a quarter of the demo's (forward, dX and dW products alike; tiled on 2 or more threads)
    for (const c of [...blockingCases(), ...demoCases().filter((_, i) => i % 4 === 0)]) expectExact(c, 'in use exact', false);
  }, 120_000);
});

describe('built-in GEMM: BLAS edge semantics', () => {
  it('K = 0: C = beta C, zeros when beta = 0 even over NaN', () => {
    for (const beta of [0, 0.5, 1]) {
      const c: Case = { ta: false, tb: true, M: 7, N: 19, K: 0, beta };
      const rng = rngFor(`k0 ${beta}`);
      const inp = makeInputs(c, rng);
      const got = runGemm(c, inp);
      for (let i = 0; i < 7 * 19; i++) expect(got[i]).toBe(beta === 0 ? 0 : Math.fround(beta * inp.C[i]));
    }
  });

  it('alpha = 0: C = beta C without reading A or B', () => {
    const c: Case = { ta: true, tb: false, M: 9, N: 21, K: 13, alpha: 0, beta: -0.5 };
    const inp = makeInputs(c, rngFor('alpha0'));
    inp.A.fill(NaN);
    inp.B.fill(Infinity);
    const got = runGemm(c, inp);
    for (let i = 0; i < 9 * 21; i++) expect(got[i]).toBe(Math.fround(-0.5 * inp.C[i]));
  });

  it('M = 0 or N = 0: C is left alone', () => {
    const a = cpu();
    for (const [M, N] of [[0, 5], [5, 0], [0, 0]]) {
      const A = new a.NativeBuffer(4 * 40), B = new a.NativeBuffer(4 * 40), C = new a.NativeBuffer(4 * 8);
      const sentinel = new Float32Array(8).fill(42);
      C.write(sentinel);
      a.sgemm!(false, false, M, N, 8, A, B, C, { builtin: true, beta: 0 });
      const out = new Float32Array(8);
      C.read(out);
      expect(Array.from(out)).toEqual(Array.from(sentinel));
      [A, B, C].forEach((b) => b.dispose());
    }
  });
});

describe('built-in GEMM: determinism and the portable micro-kernel', () => {
  // Large enough that the built-in GEMM splits them over threads (tall, wide, several K blocks).
  const threaded: Case[] = [
    { ta: false, tb: true, M: 2000, N: 40, K: 64 }, { ta: true, tb: false, M: 40, N: 2000, K: 70, beta: 0.5 },
    { ta: false, tb: false, M: 150, N: 150, K: 700, alpha: 1.25 }, { ta: true, tb: true, M: 333, N: 257, K: 300 },
  ];

  it('two runs give bit-identical results', () => {
    for (const c of threaded) {
      const inp = makeInputs(c, rngFor(`det ${tag(c)}`));
      expect(sameBits(runGemm(c, inp), runGemm(c, inp)), tag(c)).toBe(true);
    }
  });

  it('one thread gives the same bits as all threads, the AVX-512 kernel as the AVX2 one; the portable kernel (VWLMM_SIMD=generic) meets the bound, on any thread count', () => {
    const cases = [...threaded, ...oddCases().filter((_, i) => i % 4 === 1), ...blockingCases().filter((_, i) => i % 3 === 0)]
      .map((c) => ({ c, inp: makeInputs(c, rngFor(`child ${tag(c)}`)) }));
    const here = cases.map(({ c, inp }) => runGemm(c, inp));
    const one = runChild(cases, { VWLMM_NUM_THREADS: '1' });
    expect(one.threads).toBe(1);
    cases.forEach(({ c }, i) => expect(sameBits(one.out[i], here[i]), `1 thread vs ${backendInfo().cpu.threads}: ${tag(c)}`).toBe(true));

    // the AVX-512 kernel (where the CPU has it) runs the AVX2 kernel's fma chains: the same bits. VWLMM_GEMM=builtin
    // makes backendInfo name the built-in kernel these calls run, also where OpenBLAS is the default (an AMD EPYC
    // whose OpenBLAS takes its Haswell kernels)
    const avx2 = runChild(cases, { VWLMM_SIMD: 'avx2', VWLMM_GEMM: 'builtin' });
    if (/avx2/.test(backendInfo().cpu.simd)) {
      expect(avx2.gemm).toMatch(/avx2\+fma 6x16/);
      cases.forEach(({ c }, i) => expect(sameBits(avx2.out[i], here[i]), `${backendInfo().cpu.gemm.split(/[:;)]/)[0]} vs VWLMM_SIMD=avx2: ${tag(c)}`).toBe(true));
    }

    const gen = runChild(cases, { VWLMM_SIMD: 'generic' });
    expect(gen.simd).toBe('generic');
    cases.forEach(({ c, inp }, i) => expect(check(c, inp, gen.out[i]), `generic: ${tag(c)}`).toBeLessThanOrEqual(1));
    const gen1 = runChild(cases, { VWLMM_SIMD: 'generic', VWLMM_NUM_THREADS: '1' });
    cases.forEach(({ c }, i) => expect(sameBits(gen1.out[i], gen.out[i]), `generic, 1 thread: ${tag(c)}`).toBe(true));
  }, 240_000);

  // M <= 4 runs the few-rows path (op(B) read in place), larger M the packed one: a row of C must have the same bits
  // either way (batch invariance of decoding), for both micro-kernels, around the K blocks, the column tails, strided
  // operands and a column split over threads.
  it('rows of C have the same bits whatever M: the few-rows path (M <= 4) against the packed one, AVX2 and portable', () => {
    const shapes: Omit<Case, 'ta' | 'tb' | 'M'>[] = [
      { N: 37, K: 600 }, { N: 8, K: 8, alpha: -0.5, beta: 0.5 }, { N: 17, K: 257, beta: 1, lda: 260, ldb: 259, ldc: 19 },
      { N: 4100, K: 70, alpha: 1.5 }, { N: 1, K: 1, beta: -2 }, { N: 23, K: 5, alpha: 0.75, beta: 0.25 },
    ];
    const pairs: { big: { c: Case; inp: Inputs }; small: { c: Case; inp: Inputs; r0: number }[] }[] = [];
    for (const [ta, tb] of TRANS)
      for (const s of shapes) {
        const c: Case = { ta, tb, M: 11, ...s, lda: s.lda === undefined ? undefined : ta ? 13 : s.lda };
        const inp = makeInputs(c, rngFor(`few rows ${tag(c)}`));
        const small = [1, 2, 3, 4].map((M, i) => {
          const r0 = [0, 3, 5, 7][i];
          const sub: Inputs = {
            ...inp, A: ta ? inp.A.slice(r0) : inp.A.slice(r0 * inp.lda), C: inp.C.slice(r0 * inp.ldc, (r0 + M) * inp.ldc),
          };
          return { c: { ...c, M }, inp: sub, r0 };
        });
        pairs.push({ big: { c, inp }, small });
      }
    const rowsOf = (C: Float32Array, r0: number, M: number, ldc: number) => C.slice(r0 * ldc, (r0 + M) * ldc);
    for (const { big, small } of pairs) {
      const whole = runGemm(big.c, big.inp);
      for (const s of small) expect(sameBits(runGemm(s.c, s.inp), rowsOf(whole, s.r0, s.c.M, big.inp.ldc)), `M ${s.c.M} at row ${s.r0} of ${tag(big.c)}`).toBe(true);
    }
    const flat = pairs.flatMap(({ big, small }) => [big, ...small]);
    const gen = runChild(flat, { VWLMM_SIMD: 'generic' });
    expect(gen.simd).toBe('generic');
    let i = 0;
    for (const { big, small } of pairs) {
      const whole = gen.out[i++];
      expect(check(big.c, big.inp, whole), `generic: ${tag(big.c)}`).toBeLessThanOrEqual(1);
      for (const s of small) expect(sameBits(gen.out[i++], rowsOf(whole, s.r0, s.c.M, big.inp.ldc)), `generic: M ${s.c.M} at row ${s.r0} of ${tag(big.c)}`).toBe(true);
    }
  }, 240_000);

  it('without OpenBLAS (or with it set aside), sgemm is the built-in GEMM (same bits)', () => {
    const c: Case = { ta: false, tb: true, M: 50, N: 70, K: 90, beta: 0.5 };
    const inp = makeInputs(c, rngFor('in-use'));
    const builtin = runGemm(c, inp), inUse = runGemm(c, inp, false);
    if (/^builtin\b/.test(backendInfo().cpu.gemm)) expect(sameBits(inUse, builtin)).toBe(true);
    else expect(check(c, inp, inUse), 'OpenBLAS meets the same bound').toBeLessThanOrEqual(1);
  });
});

describe('sgemm options: argument checks', () => {
  const a = cpu();
  it('rejects bad options with errors naming them', () => {
    const b = new a.NativeBuffer(4 * 64);
    try {
      expect(() => a.sgemm!(false, false, 4, 4, 4, b, b, b, 5 as never)).toThrow(/\[sgemm\] options must be an object/);
      expect(() => a.sgemm!(false, false, 4, 4, 4, b, b, b, { builtin: 1 as never })).toThrow(/\[sgemm\] option builtin must be a boolean/);
      expect(() => a.sgemm!(false, false, 4, 4, 4, b, b, b, { alpha: NaN })).toThrow(/\[sgemm\] option alpha must be finite/);
      expect(() => a.sgemm!(false, false, 4, 4, 4, b, b, b, { lda: 3 })).toThrow(/\[sgemm\] lda must be >= 4/);
      expect(() => a.sgemm!(false, true, 4, 4, 4, b, b, b, { ldb: 2.5 })).toThrow(/\[sgemm\] ldb must be an integer/);
      expect(() => a.sgemm!(false, false, 4, 4, 4, b, b, b, { ldc: 40 })).toThrow(/\[sgemm\] C holds 256 bytes but needs 496/);
      expect(() => a.sgemm!(true, false, 4, 4, 4, b, b, b, { lda: 21, builtin: true })).toThrow(/\[sgemm\] A holds 256 bytes but needs 268/);
    } finally {
      b.dispose();
    }
  });
});
