// The fused losses' gradOutputs (a frozen weight's gradient not computed: LoRA's lm_head, issue 12) on every
// backend, in float32 and bfloat16 (the CPU widens bf16, native/cpu/float32_view.h):
//   - fused.*: a call that leaves gradients out returns the others exactly as the full call does (bitwise on
//     the CPU: the same GEMMs on the same dz; normwise on CUDA), the same loss, null for the rest, and
//     allocates nothing for them; the kept gradients also against the float64 reference
//     (tests/support/reference.ts);
//   - F.*: with a frozen weight (requiresGrad false) the input's gradient is the one a trainable weight gives,
//     the weight gets none, and no [V, d] buffer lives between forward and backward.
import { describe, expect, it } from 'vitest';
import { autocast, backward, F, fused, scope, Tensor } from '../../src';
import type { DType } from '../../src';
import type { LinearCrossEntropyOptions, VisualWordKLOptions } from '../../src/fused';
import { roundToBf16 } from '../../src/bf16';
import { backends, Backend } from '../support/backends';
import { magErr, relErr } from '../support/compare';
import { sameBits } from '../support/engine_harness';
import { liveMemory } from '../support/memory';
import { linearCrossEntropyRef, logitRoundingAllowance, visualWordKLRef } from '../support/reference';
import { rngFor, runSeed } from '../support/random';

/** The backend's dtypes: the CPU also runs bf16 operands (widened), CUDA its own dtype. */
const dtypesOf = (b: Backend): DType[] => (b.device === 'cpu' ? ['float32', 'bfloat16'] : [b.dtype]);
const tolOf = (dtype: DType) => (dtype === 'bfloat16' ? 1e-2 : 1e-5);
const bytesOf = (dtype: DType) => (dtype === 'bfloat16' ? 2 : 4);
const asValues = (a: Float32Array, dtype: DType) => (dtype === 'bfloat16' ? a.map(roundToBf16) : a);
const arr = (t: Tensor | null) => Float32Array.from(t!.toArray() as Float32Array);

/** got equals want: bit for bit on the CPU, within float32 rounding on CUDA (cuBLAS may pick another algorithm). */
function expectSame(b: Backend, what: string, got: Tensor | null, want: Tensor | null): void {
  expect(got, what).not.toBeNull();
  const g = arr(got), w = arr(want);
  if (b.device === 'cpu') expect(sameBits(g, w), `${what}: bitwise`).toBe(true);
  else expect(relErr(g, w), what).toBeLessThanOrEqual(1e-5);
}

describe(`fused losses: gradOutputs (seed ${runSeed})`, () => {
  for (const b of backends) {
    for (const dtype of dtypesOf(b)) {
      describe(`${b.name}${dtype !== b.dtype ? ` ${dtype} operands` : ''}`, () => {
        const t = (a: Float32Array, shape: number[]) => Tensor.fromArray(asValues(a, dtype), shape, { device: b.device, dtype });

        for (const [N, d, V, chunkRows, ignoredShare] of [[37, 19, 1003, 8, 0.3], [5, 4, 9, 0, 1], [0, 4, 9, 0, 0]]) {
          it.skipIf(!b.available)(`linearCrossEntropy N=${N} d=${d} V=${V}: dh alone and dw alone are the full call's`, () => {
            const rng = rngFor(`grad_outputs:ce:${N}`);
            const hv = asValues(rng.normals(N * d, 0.5), dtype), wv = asValues(rng.normals(V * d, 1), dtype);
            const tv = Int32Array.from({ length: N }, () => (rng.next() < ignoredShare ? -100 : rng.int(V)));
            const opts: LinearCrossEntropyOptions = { chunkRows, labelSmoothing: 0.1, zLossWeight: 1e-3 };
            scope(() => {
              const h = t(hv, [N, d]), w = t(wv, [V, d]), targets = Tensor.fromArray(tv, [N], { device: b.device });
              const full = fused.linearCrossEntropy(h, w, targets, opts);
              const before = liveMemory(b.device);
              const noW = fused.linearCrossEntropy(h, w, targets, { ...opts, gradOutputs: { dw: false } });
              // what stays allocated is dh alone: no [V, d] float32 buffer for the frozen weight
              expect(liveMemory(b.device).liveBytes - before.liveBytes).toBe(N * d * bytesOf(dtype));
              const noH = fused.linearCrossEntropy(h, w, targets, { ...opts, gradOutputs: { dh: false } });
              expect(noW.dw).toBeNull();
              expect(noH.dh).toBeNull();
              expectSame(b, 'dh without dw', noW.dh, full.dh);
              expectSame(b, 'dw without dh', noH.dw, full.dw);
              for (const r of [noW, noH]) {
                expect(r.loss).toBe(full.loss);
                expect(sameBits(r.losses, full.losses)).toBe(true);
                expect(r.rows).toBe(full.rows);
              }
              const none = fused.linearCrossEntropy(h, w, targets, { ...opts, gradOutputs: { dh: false, dw: false } });
              expect([none.dh, none.dw]).toEqual([null, null]);
              expect(none.loss).toBe(full.loss);
              // the kept gradient against the float64 reference (as tests/kernels/linear_cross_entropy.test.ts)
              if (N > 0 && ignoredShare < 1) {
                const ref = linearCrossEntropyRef(hv, wv, tv, N, d, V, opts);
                const gtol = tolOf(dtype) + logitRoundingAllowance(hv, wv, N, V, d);
                expect(magErr(arr(noW.dh), ref.dh, ref.dhMag)).toBeLessThanOrEqual(gtol);
                expect(magErr(arr(noH.dw), ref.dw, ref.dwMag)).toBeLessThanOrEqual(gtol);
              }
            });
          });
        }

        for (const [M, d, V, chunkRows] of [[29, 17, 1009, 7], [0, 4, 9, 0]]) {
          it.skipIf(!b.available)(`visualWordKL M=${M} d=${d} V=${V}: each partial call's gradients are the full call's`, () => {
            const rng = rngFor(`grad_outputs:kl:${M}`);
            const s = 1 / Math.sqrt(Math.sqrt(d));
            const hv = asValues(rng.normals(M * d, s), dtype), wLmv = asValues(rng.normals(V * d, 3 * s), dtype);
            const xv = asValues(rng.normals(M * d, s), dtype), wVmv = asValues(rng.normals(V * d, 3 * s), dtype);
            scope(() => {
              const h = t(hv, [M, d]), wLm = t(wLmv, [V, d]), x = t(xv, [M, d]), wVm = t(wVmv, [V, d]);
              const names = ['dh', 'dwLm', 'dx', 'dwVm'] as const;
              for (const detachTarget of [false, true]) {
                const opts: VisualWordKLOptions = { chunkRows, temperature: 1.5, detachTarget };
                const full = fused.visualWordKL(h, wLm, x, wVm, opts);
                const partial: VisualWordKLOptions['gradOutputs'][] = [
                  { dwLm: false }, // frozen lm_head
                  { dwLm: false, dwVm: false }, // both heads frozen
                  { dh: false }, // the weight gradients only
                  { dh: false, dwLm: false }, // nothing on the predicting side: its GEMMs (and CUDA's gradient block) skipped
                ];
                for (const gradOutputs of partial) {
                  const what = `${JSON.stringify(gradOutputs)} detachTarget=${detachTarget}`;
                  const before = liveMemory(b.device);
                  const r = fused.visualWordKL(h, wLm, x, wVm, { ...opts, gradOutputs });
                  const kept = names.filter((n) => gradOutputs![n] !== false && !(detachTarget && (n === 'dx' || n === 'dwVm')));
                  const bytes = kept.reduce((sum, n) => sum + (n === 'dh' || n === 'dx' ? M * d * bytesOf(dtype) : V * d * 4), 0);
                  expect(liveMemory(b.device).liveBytes - before.liveBytes, what).toBe(bytes);
                  for (const n of names) {
                    if (kept.includes(n)) expectSame(b, `${n} of ${what}`, r[n], full[n]);
                    else expect(r[n], `${n} of ${what}`).toBeNull();
                  }
                  expect(r.loss).toBe(full.loss);
                  expect(sameBits(r.losses, full.losses)).toBe(true);
                }
                if (M > 0 && !detachTarget) {
                  const ref = visualWordKLRef(hv, wLmv, xv, wVmv, M, d, V, opts);
                  const r = fused.visualWordKL(h, wLm, x, wVm, { ...opts, gradOutputs: { dwLm: false, dwVm: false } });
                  const gtol = tolOf(dtype) + logitRoundingAllowance(hv, wLmv, M, V, d, 1 / 1.5) + logitRoundingAllowance(xv, wVmv, M, V, d, 1 / 1.5);
                  expect(magErr(arr(r.dh), ref.dh, ref.dhMag)).toBeLessThanOrEqual(gtol);
                  expect(magErr(arr(r.dx), ref.dx, ref.dxMag)).toBeLessThanOrEqual(gtol);
                }
              }
            });
          });
        }
      });
    }
  }
});

// F.*: what a frozen head changes is only what is computed, never the gradients that flow.
describe(`F.linearCrossEntropy / F.visualWordKL with a frozen weight (seed ${runSeed})`, () => {
  for (const b of backends.filter((x) => x.dtype === 'float32')) {
    for (const compute of ['float32', 'bfloat16'] as const) {
      it.skipIf(!b.available)(`${b.name}, ${compute} compute: the input's gradient is the trainable run's, the weight gets none`, () => {
        const rng = rngFor(`grad_outputs:F:${compute}`);
        const N = 23, d = 16, V = 517;
        const hv = rng.normals(N * d, 0.5), wv = rng.normals(V * d, 0.5), xv = rng.normals(N * d, 0.5), vv = rng.normals(V * d, 0.5);
        const tv = Int32Array.from({ length: N }, (_, i) => (i % 6 === 1 ? -100 : rng.int(V)));
        const run = (trainableHead: boolean) => scope(() => autocast(compute, () => {
          const param = (a: Float32Array, shape: number[], grad: boolean) => {
            const p = Tensor.fromArray(a, shape, { device: b.device });
            p.requiresGrad = grad;
            return p;
          };
          const h = param(hv, [N, d], true), w = param(wv, [V, d], trainableHead);
          const x = param(xv, [N, d], true), wVm = param(vv, [V, d], false);
          const targets = Tensor.fromArray(tv, [N], { device: b.device });
          const before = liveMemory(b.device).liveBytes;
          const ce = F.linearCrossEntropy(h, w, targets, { labelSmoothing: 0.05 });
          const kl = F.visualWordKL(h, w, x, wVm, { temperature: 2 });
          // held between forward and backward: dh twice, dx and the two losses (float32), the autocast copies,
          // and the heads' [V, d] gradients only when the head is trainable
          const held = liveMemory(b.device).liveBytes - before;
          if (compute === 'float32') expect(held).toBe(3 * N * d * 4 + 2 * 4 + (trainableHead ? 2 * V * d * 4 : 0));
          backward(F.axpby(ce, kl));
          if (!trainableHead) expect(w.grad ?? null).toBeNull();
          expect(wVm.grad ?? null).toBeNull();
          return { held, loss: [ce.toArray()[0], kl.toArray()[0]], dh: arr(h.grad!), dx: arr(x.grad!) };
        }));
        const frozen = run(false), trainable = run(true);
        expect(trainable.held - frozen.held).toBe(2 * V * d * 4);
        expect(frozen.loss).toEqual(trainable.loss);
        if (b.device === 'cpu') {
          expect(sameBits(frozen.dh, trainable.dh)).toBe(true);
          expect(sameBits(frozen.dx, trainable.dx)).toBe(true);
        } else {
          expect(relErr(frozen.dh, trainable.dh)).toBeLessThanOrEqual(1e-5);
          expect(relErr(frozen.dx, trainable.dx)).toBeLessThanOrEqual(1e-5);
        }
      });
    }
  }
});
