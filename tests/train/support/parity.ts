// What tests/train/torch_parity.test.ts and lora_parity.test.ts share: the train_parity fixture's micro-batches (made
// by scripts/make_train_parity_fixture.py), one Trainer stage over them, and the comparisons with the torch runs.
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'vitest';
import { readSafetensors } from '../../../src/io/safetensors';
import { ModelBatch, VwLmm } from '../../../src/model/vwlmm';
import { Stage, Trainer } from '../../../src/train/trainer';

export const TRAIN_PARITY = path.join(__dirname, '..', '..', 'fixtures', 'train_parity');

/** The fixture script's grad_summary of a gradient: its L2 norm and its cosine with sin(1), sin(2), ... */
export type GradSummary = { norm: number; cos: number };

/** What reference.json holds per run (float64, float32): per-step values and step 1's gradient summaries. */
export interface StepValues { loss: number[]; ce: number[]; kl: number[]; grad_norm: number[]; lr: number[]; step1_grad: Record<string, GradSummary | null> }

export function readReference<T>(dir: string): T {
  return JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as T;
}

/** train_parity's micro-batches, in the order the torch loops consumed them, as vwlmm's ModelBatch. */
export function fixtureBatches(): ModelBatch[] {
  const t = readSafetensors(path.join(TRAIN_PARITY, 'batches.safetensors'));
  const out: ModelBatch[] = [];
  for (let k = 0; t.has(`${k}.input_ids`); k++) {
    const ids = t.get(`${k}.input_ids`)!;
    const [B, T] = ids.shape;
    const px = t.get(`${k}.pixel_values`);
    out.push({
      B, T, tokenIds: ids.data as Int32Array, attentionMask: t.get(`${k}.attention_mask`)!.data as Int32Array,
      imagePositions: t.get(`${k}.image_positions`)!.data as Int32Array, pixelValues: px ? (px.data as Float32Array) : null,
      targets: t.get(`${k}.targets`)!.data as Int32Array,
    });
  }
  return out;
}

/** Relative L2 distance of a to b. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, n = 0;
  for (let i = 0; i < b.length; i++) {
    d += (a[i] - b[i]) ** 2;
    n += b[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30);
}

export function gradSummary(g: Float32Array): GradSummary {
  let gg = 0, gr = 0, rr = 0;
  for (let i = 0; i < g.length; i++) {
    const r = Math.sin(i + 1);
    gg += g[i] * g[i];
    gr += g[i] * r;
    rr += r * r;
  }
  const norm = Math.sqrt(gg);
  return { norm, cos: gr / Math.max(norm * Math.sqrt(rr), 1e-300) };
}

export interface FixtureRun { records: Record<string, number>[]; init: Map<string, Float32Array>; final: Map<string, Float32Array>; served: number }

/**
 * One Trainer stage over the fixture's micro-batches in their order (makeBatch hands them out as the Trainer asks,
 * step by step), fp32, no replay: its train records and the model's weights before and after. `model` is disposed.
 */
export function trainOnFixture(model: VwLmm, stage: Omit<Stage, 'size' | 'batchSize' | 'makeBatch'>): FixtureRun {
  const batches = fixtureBatches();
  try {
    const weights = () => new Map([...model.namedParameters()].map(([n, p]) => [n, Float32Array.from(p.toArray() as Float32Array)]));
    const init = weights();
    let served = 0;
    const records: Record<string, number>[] = [];
    const full: Stage = { ...stage, size: batches.length, batchSize: 1, makeBatch: () => batches[served++] };
    new Trainer(model, [full], { seed: 0, dtype: 'float32', replay: false, onLog: (r) => void (r.type === 'train' && records.push(r as Record<string, number>)) }).run();
    return { records, init, final: weights(), served };
  } finally {
    model.dispose();
  }
}

/**
 * The train records against the float64 torch run's: loss, CE, KL (means over the micro-batches), gradient norm before
 * clipping and lr, each relative (absolute near 0: a text-only step's KL is exactly 0, the first step's lr too).
 * Returns the largest error of each.
 */
export function expectStepValues(records: Record<string, number>[], f64: StepValues, tol: { loss: number; gradNorm: number }): Record<string, number> {
  expect(records.map((r) => r.step)).toEqual(Array.from({ length: f64.loss.length }, (_, s) => s + 1));
  const worst = { loss: 0, ce: 0, kl: 0, gradNorm: 0, lr: 0 };
  records.forEach((r, s) => {
    const pairs: [keyof typeof worst, number, number, number][] = [
      ['loss', r.loss, f64.loss[s], tol.loss], ['ce', r.ce, f64.ce[s], tol.loss], ['kl', r.kl, f64.kl[s], tol.loss],
      ['gradNorm', r.gradNorm, f64.grad_norm[s], tol.gradNorm], ['lr', r.lr, f64.lr[s], 1e-12],
    ];
    for (const [k, got, want, t] of pairs) {
      const e = Math.abs(got - want) / Math.max(Math.abs(want), 1e-3);
      worst[k] = Math.max(worst[k], e);
      expect(e, `step ${s + 1} ${k}: ${got} vs torch ${want}`).toBeLessThanOrEqual(t);
    }
  });
  return worst;
}
