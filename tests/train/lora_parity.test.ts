// The Trainer's LoRA fine-tuning against PyTorch + transformers + PEFT over 6 optimizer steps, as LLaVA-1.5's LoRA
// recipe runs it (tests/fixtures/lora_parity, made by scripts/make_lora_parity_fixture.py, which states the torch loop
// in full; the model and the 12 micro-batches are tests/fixtures/train_parity's): PEFT adapters (r 4, alpha 8: scaling
// 2; lora_dropout 0 so that both sides are deterministic, LLaVA's recipe has 0.05) on every Linear of the LLM's decoder
// layers (LLaVA's find_all_linear_names: q/k/v/o, gate/up/down; not lm_head, vm_head, the projector or the tower),
// the base frozen, the projector and vm_head trained fully, the projector at its own peak lr (LLaVA's mm_projector_lr:
// four AdamW groups, decay / no decay x projector or not), LoRA's A and B decayed (0.1), gradient accumulation 2,
// clip_grad_norm_ at 4 over the trained parameters (steps 1, 2, 6 clip; 3-5 do not), transformers' cosine schedule
// with warmup (2 of 6), the official VW-LMM loss, a text-only micro-batch and a text-only step (the projector and
// vm_head step on zero gradients: LLaVA's dummy image).
//
// Both sides start from PEFT's initial adapters (lora_A kaiming-uniform as PEFT draws it, lora_B zeros), loaded from
// the fixture's PeftModel.save_pretrained folder with loadLoraAdapter. With B = 0, A's gradient is exactly zero until
// B moves (step 1 has lr 0: from step 3 on).
//
// The reference ran in float64; the same torch loop in float32 lies within 1.9e-6 (per-tensor relative L2) of its
// final weights, within 3.6e-5 of its updates (final - initial; the largest on lora_A, whose first AdamW steps turn
// gradients near rounding level into lr-sized moves), 4e-7 of its step values and 3e-7 of its step-1 gradients
// (reference.json keeps that run too): the tolerances below are float32 rounding with a 10x margin.
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import * as F from '../../src/functional';
import { zeroGrad } from '../../src/autograd';
import { readSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { loadLoraAdapter, loraConfigOf } from '../../src/model/lora';
import { scope } from '../../src/tensor';
import { applyTrainable, Trainable } from '../../src/train/trainer';
import { expectStepValues, fixtureBatches, FixtureRun, gradSummary, GradSummary, readReference, relErr, StepValues, TRAIN_PARITY, trainOnFixture } from './support/parity';

const FIX = path.join(__dirname, '..', 'fixtures', 'lora_parity');
const BASE = TRAIN_PARITY;

const ref = readReference<{
  steps: number; gradAccum: number; lr: number; projectorLr: number; warmupRatio: number; weightDecay: number; maxGradNorm: number;
  lora: { r: number; alpha: number; dropout: number }; trained: string[];
  float64: StepValues & { projector_lr: number[]; step1_grad: Record<string, GradSummary> }; float32: StepValues;
  float32FinalRelErr: Record<string, number>; float32UpdateRelErr: Record<string, number>;
}>(FIX);
/** LLaVA-1.5's LoRA recipe: the adapters, the projector and (VW-LMM) vm_head; the tower and the LLM's weights frozen. */
const LORA: Trainable = { lora: true, projector: true, vmHead: true };

/** train_parity's initial model with the fixture's initial PEFT adapters loaded. */
function loraModel() {
  const { model } = loadCheckpoint(path.join(BASE, 'init'));
  try {
    expect(loadLoraAdapter(path.join(FIX, 'init_adapter'), model)).toEqual({ adapters: 2 * 7, nonLoraTrainables: 0 });
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

const minus = (a: ArrayLike<number>, b: ArrayLike<number>) => Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);

/** One Trainer run over the fixture (run once, shared by the tests). */
let trained: FixtureRun | null = null;
function trainOnce(): FixtureRun {
  if (trained) return trained;
  expect(fixtureBatches().length).toBe(ref.steps * ref.gradAccum);
  trained = trainOnFixture(loraModel(), {
    name: 'lora-parity', gradAccum: ref.gradAccum, steps: ref.steps,
    lr: ref.lr, projectorLr: ref.projectorLr, warmupRatio: ref.warmupRatio, weightDecay: ref.weightDecay, maxGradNorm: ref.maxGradNorm, trainable: LORA,
  });
  return trained;
}

describe('Trainer vs PyTorch + transformers + PEFT: 6 steps of LLaVA-1.5-style LoRA fine-tuning (fixture lora_parity)', () => {
  it("loads PEFT's initial adapters: r 4, alpha 8 on the seven Linear layers of both decoder layers, B = 0", () => {
    const model = loraModel();
    try {
      expect(loraConfigOf(model)).toEqual({ r: ref.lora.r, alpha: ref.lora.alpha, dropout: ref.lora.dropout, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
      applyTrainable(model, LORA);
      const trainable = [...model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n).sort();
      expect(trainable).toEqual([...ref.trained].sort()); // the same parameters train on both sides (33 tensors)
      for (const [n, p] of model.namedParameters()) if (n.endsWith('.lora_B.weight')) expect((p.toArray() as Float32Array).every((x) => x === 0), n).toBe(true);
    } finally {
      model.dispose();
    }
  });

  it('step 1: the accumulated gradient of the trained parameters matches torch tensor by tensor (lora_A: exactly 0)', () => {
    const batches = fixtureBatches();
    const model = loraModel();
    try {
      applyTrainable(model, LORA);
      for (const b of batches.slice(0, ref.gradAccum)) scope(() => F.scale(model.loss(b).loss, 1 / ref.gradAccum).backward());
      const want = ref.float64.step1_grad;
      const global = Math.sqrt(Object.values(want).reduce((a, g) => a + g.norm ** 2, 0));
      let normErr = 0, cosErr = 0, compared = 0;
      for (const [n, p] of model.namedParameters()) {
        if (!p.requiresGrad) {
          expect(p.grad, `${n}: frozen, yet has a gradient`).toBeNull();
          continue;
        }
        expect(n in want, n).toBe(true);
        const w = want[n];
        const g = p.grad ? (p.grad.toArray() as Float32Array) : new Float32Array(p.size); // the Trainer adds the zeros
        if (n.endsWith('.lora_A.weight')) {
          expect(w.norm, `${n}: torch`).toBe(0);
          expect(g.every((x) => x === 0), `${n}: B = 0, so A's gradient is 0`).toBe(true);
          continue;
        }
        const got = gradSummary(g);
        const e = Math.abs(got.norm - w.norm) / global;
        normErr = Math.max(normErr, e);
        expect(e, `${n}: gradient norm ${got.norm} vs torch ${w.norm}`).toBeLessThan(3e-6);
        if (w.norm > 1e-4 * global) {
          cosErr = Math.max(cosErr, Math.abs(got.cos - w.cos));
          expect(Math.abs(got.cos - w.cos), `${n}: gradient direction`).toBeLessThan(3e-6);
          compared++;
        }
      }
      expect(compared).toBe(14 + 4 + 1); // the 14 lora_B, the projector's 4 tensors, vm_head
      console.log(`step 1 gradients vs float64 torch: largest |norm difference| / global norm ${normErr.toExponential(2)}, largest cosine difference ${cosErr.toExponential(2)} (${compared} tensors)`);
      zeroGrad(model.parameters());
    } finally {
      model.dispose();
    }
  });

  it('per step: loss, CE, KL, gradient norm before clipping (over the trained parameters) and lr match torch', () => {
    const { records, served } = trainOnce();
    expect(served).toBe(ref.steps * ref.gradAccum);
    const f64 = ref.float64;
    const worst = expectStepValues(records, f64, { loss: 1e-6, gradNorm: 4e-6 });
    // both clipping branches ran; the projector's schedule is the same cosine at its own peak
    expect(f64.grad_norm.map((g) => g > ref.maxGradNorm)).toEqual([true, true, false, false, false, true]);
    f64.projector_lr.forEach((plr, s) => expect(plr).toBeCloseTo((f64.lr[s] * ref.projectorLr) / ref.lr, 15));
    expect(records[4].kl).toBe(0);
    console.log(`per step vs float64 torch, largest relative errors: ${Object.entries(worst).map(([k, e]) => `${k} ${e.toExponential(2)}`).join(', ')}`);
  });

  it('final adapters, projector and vm_head match torch (weights and updates), within float32 rounding', () => {
    const { final, init } = trainOnce();
    const want = readSafetensors(path.join(FIX, 'final.safetensors'));
    expect([...want.keys()].sort()).toEqual([...ref.trained].sort());
    const errs: [string, number, number][] = [];
    for (const n of ref.trained) {
      const w = final.get(n)!, t = want.get(n)!.data, w0 = init.get(n)!;
      const e = relErr(w, t);
      // the update (final - initial) too: lora_A moves little against its own size
      const u = relErr(minus(w, w0), minus(t, w0));
      errs.push([n, e, u]);
      expect(e, `${n}: relative L2 error of the final weights (float32 torch: ${ref.float32FinalRelErr[n]})`).toBeLessThan(2e-5);
      expect(u, `${n}: relative L2 error of the update (float32 torch: ${ref.float32UpdateRelErr[n]})`).toBeLessThan(Math.max(10 * ref.float32UpdateRelErr[n], 1e-5));
      expect(relErr(w, w0), `${n}: trained`).toBeGreaterThan(1e-4);
    }
    expect(errs.length).toBe(28 + 4 + 1);
    const top = (k: 1 | 2) => [...errs].sort((a, b) => b[k] - a[k]).slice(0, 3).map((x) => `${x[0]} ${x[k].toExponential(2)}`).join('; ');
    console.log(`final weights vs float64 torch (${errs.length} tensors), largest per-tensor relative L2 errors: ${top(1)}; of the updates: ${top(2)}`);
  });

  it('the frozen base (tower, LLM weights, lm_head) is unchanged, bit for bit', () => {
    const { final, init } = trainOnce();
    const trainedSet = new Set(ref.trained);
    let frozen = 0;
    for (const [n, w] of final) {
      if (trainedSet.has(n)) continue;
      expect(w, `${n}: frozen`).toEqual(init.get(n)!);
      frozen++;
    }
    expect(frozen).toBe(60);
  });
});
