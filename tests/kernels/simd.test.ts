// The row primitives exist in two builds (baseline and AVX2+FMA, native/cpu/vec.cpp). The suite runs
// on the one this CPU selects; this test runs a child process forced to the other one
// (VWLMM_SIMD=generic) through representative kernel calls and checks them against the reference.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { backendInfo } from '../../src';
import { magErr, scalarRelErr } from '../support/compare';
import { linearCrossEntropyRef, visualWordKLRef } from '../support/reference';
import { rngFor } from '../support/random';

const childScript = `
const { fused, scope, Tensor, backendInfo } = require(${JSON.stringify(path.join(__dirname, '../../src'))});
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const T = (a, s) => Tensor.fromArray(Float32Array.from(a), s);
const { M, d, V } = input;
const out = scope(() => {
  const kl = fused.visualWordKL(T(input.h, [M, d]), T(input.w, [V, d]), T(input.x, [M, d]), T(input.w2, [V, d]));
  const ce = fused.linearCrossEntropy(T(input.h, [M, d]), T(input.w, [V, d]), Tensor.fromArray(Int32Array.from(input.t), [M]));
  return { simd: backendInfo().cpu.simd, kl: kl.loss, dx: Array.from(kl.dx.toArray()), dh: Array.from(kl.dh.toArray()), ce: ce.loss, dw: Array.from(ce.dw.toArray()) };
});
process.stdout.write(JSON.stringify(out));
`;

describe('SIMD builds', () => {
  it('the baseline build matches the float64 reference too', () => {
    const rng = rngFor('simd');
    const M = 7, d = 13, V = 1001;
    const h = rng.normals(M * d, 0.5), w = rng.normals(V * d), x = rng.normals(M * d, 0.5), w2 = rng.normals(V * d);
    const t = Int32Array.from({ length: M }, () => rng.int(V));
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', childScript], {
      input: JSON.stringify({ M, d, V, h: Array.from(h), w: Array.from(w), x: Array.from(x), w2: Array.from(w2), t: Array.from(t) }),
      env: { ...process.env, VWLMM_SIMD: 'generic' }, encoding: 'utf8', timeout: 60_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.simd).toBe('generic');
    const kl = visualWordKLRef(h, w, x, w2, M, d, V), ce = linearCrossEntropyRef(h, w, t, M, d, V);
    expect(scalarRelErr(got.kl, kl.loss)).toBeLessThan(1e-5);
    expect(magErr(got.dx, kl.dx, kl.dxMag)).toBeLessThan(1e-5);
    expect(magErr(got.dh, kl.dh, kl.dhMag)).toBeLessThan(1e-5);
    expect(scalarRelErr(got.ce, ce.loss)).toBeLessThan(1e-5);
    expect(magErr(got.dw, ce.dw, ce.dwMag)).toBeLessThan(1e-5);
    expect(['avx2+fma', 'avx2+fma, avx512f element-wise', 'generic']).toContain(backendInfo().cpu.simd);
  });

  // With AVX-512F the element-wise primitives (exp, the KL's and softmax's gradients) run in 16 lanes, each lane the
  // AVX2 build's operations, and the sums stay AVX2's: a child capped at AVX2 must give this process's bits.
  it('VWLMM_SIMD=avx2 gives the same bits as this process (fused KL and cross-entropy, forward and gradients)', () => {
    const rng = rngFor('simd avx2');
    const M = 9, d = 37, V = 3001;
    const h = rng.normals(M * d, 0.5), w = rng.normals(V * d), x = rng.normals(M * d, 0.5), w2 = rng.normals(V * d);
    const t = Int32Array.from({ length: M }, () => rng.int(V));
    const input = JSON.stringify({ M, d, V, h: Array.from(h), w: Array.from(w), x: Array.from(x), w2: Array.from(w2), t: Array.from(t) });
    const run = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', childScript], { input, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 26 });
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { simd: string; kl: number; ce: number; dx: number[]; dh: number[]; dw: number[] };
    };
    const here = run({}), avx2 = run({ VWLMM_SIMD: 'avx2' });
    if (!/avx2/.test(here.simd)) return; // no AVX2 on this CPU: both are the baseline build
    expect(avx2.simd).toBe('avx2+fma');
    const f32 = (a: number[]) => Buffer.from(Float32Array.from(a).buffer);
    expect([here.kl, here.ce]).toEqual([avx2.kl, avx2.ce]);
    for (const k of ['dx', 'dh', 'dw'] as const) expect(f32(here[k]).equals(f32(avx2[k])), k).toBe(true);
  });
});
