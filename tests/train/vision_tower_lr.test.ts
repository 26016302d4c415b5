// Stage.visionTowerLr (LLaVA's mm_vision_tower_lr): the tower trains as its own AdamW group on the same
// schedule. Checked on the first update (same batch and gradients, Adam's first step is lr * g / (|g| + eps),
// so the tower's update scales exactly with its rate), with rate 0 (tower untouched, the rest trains), and
// through a resume (the groups reorder the optimizer's parameters; the resumed run must still be exact).
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { VwLmm } from '../../src/model/vwlmm';
import { Stage, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tinyConfig, tinyData, trainTiny, weightsOf } from './support/tiny';

const tmp = tempDirs('towerlr');

describe('Stage.visionTowerLr', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const stage = (steps: number, visionTowerLr?: number): Stage[] => [{
    name: 'all', size: samples.length, makeBatch, steps, batchSize: 2, lr: 2e-3, warmupRatio: 0, visionTowerLr, // no warmup: the first update runs at the full lr (HF's schedule)
    trainable: { visionTower: true, projector: true, llm: true, vmHead: true },
  }];
  const weights = weightsOf;
  /** Parameter deltas of one training run from the same initial model. */
  const train = (stages: Stage[], opts: Partial<TrainerOptions> = {}, out = tmp()) => {
    const { w0, w1 } = trainTiny(tokenizer.vocabSize, json, stages, opts, out);
    return { out, delta: new Map([...w1].map(([n, v]) => [n, v.map((x, i) => x - w0.get(n)![i])])) };
  };
  const isTower = (n: string) => n.startsWith('model.vision_tower.');
  const norm = (v: Float64Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));

  it('scales the tower update by visionTowerLr / lr and leaves the other parameters as they were', () => {
    const base = train(stage(1)).delta, tenth = train(stage(1, 2e-4)).delta, same = train(stage(1, 2e-3)).delta, zero = train(stage(1, 0)).delta;
    let towerParams = 0, otherParams = 0;
    for (const [n, d] of base) {
      expect(same.get(n), n).toEqual(d); // rate = lr: bit for bit the single-group run
      if (isTower(n)) {
        if (norm(d) === 0) continue; // e.g. a layer the selected features do not reach
        towerParams++;
        const r = tenth.get(n)!;
        const err = Math.sqrt(d.reduce((a, x, i) => a + (r[i] - 0.1 * x) ** 2, 0)) / norm(d);
        expect(err, n).toBeLessThan(1e-3); // eps and float rounding only
        expect(norm(zero.get(n)!), n).toBe(0);
      } else {
        if (norm(d) > 0) otherParams++;
        expect(tenth.get(n), n).toEqual(d);
        expect(zero.get(n), n).toEqual(d);
      }
    }
    expect(towerParams).toBeGreaterThan(10); // tower parameters that did move, so the checks above ran
    expect(otherParams).toBeGreaterThan(10);
  });

  it('a run stopped and resumed with tower groups ends exactly where the uninterrupted one does', () => {
    const full = train(stage(4, 5e-4)).delta;
    const out = tmp();
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    const w0 = weights(m);
    new Trainer(m, stage(4, 5e-4), { seed: 3, outDir: out, saveEvery: 1, stopAfterSteps: 2, checkpointFiles: { tokenizer: json } }).run();
    m.dispose();
    const fresh = VwLmm.create(tinyConfig(tokenizer.vocabSize), 77); // autoResume overwrites every weight
    new Trainer(fresh, stage(4, 5e-4), { seed: 3, outDir: out, autoResume: true, checkpointFiles: { tokenizer: json } }).run();
    const w = weights(fresh);
    fresh.dispose();
    for (const [n, d] of full) expect(w.get(n)!.map((x, i) => x - w0.get(n)![i]), n).toEqual(d);
  });

  it('refuses a negative or non-finite tower rate, naming the stage', () => {
    expect(() => train(stage(1, -1))).toThrow(/stage 'all': visionTowerLr must be a finite number >= 0 \(in float32: at most 3.4e38\), got -1/);
    expect(() => train(stage(1, NaN))).toThrow(/visionTowerLr must be a finite number >= 0 \(in float32: at most 3.4e38\), got NaN/);
    // finite in float64 but infinite in the float32 the optimizer computes in: every weight it touched became NaN
    expect(() => train(stage(1, 1e39))).toThrow(/visionTowerLr must be a finite number >= 0 \(in float32: at most 3.4e38\), got 1e\+39/);
    // the stage's own rate and weight decay alike
    expect(() => train([{ ...stage(1)[0], lr: 1e39 }])).toThrow(/stage 'all': lr must be a number >= 0 \(in float32: at most 3.4e38\), got 1e\+39/);
    expect(() => train([{ ...stage(1)[0], weightDecay: -3.5e38 * 2 }])).toThrow(/stage 'all': weightDecay must be a number >= 0 \(in float32/);
  });

  it('projectorLr (mm_projector_lr) scales the projector update the same way, beside a tower rate', () => {
    const withProj = (steps: number, projectorLr?: number, visionTowerLr?: number): Stage[] => stage(steps, visionTowerLr).map((s) => ({ ...s, projectorLr }));
    const base = train(withProj(1)).delta, both = train(withProj(1, 4e-4, 2e-4)).delta;
    const isProjector = (n: string) => n.startsWith('model.mm_projector.');
    let checked = 0;
    for (const [n, d] of base) {
      if (norm(d) === 0) continue;
      const k = isProjector(n) ? 0.2 : isTower(n) ? 0.1 : 1;
      const r = both.get(n)!;
      const err = Math.sqrt(d.reduce((a, x, i) => a + (r[i] - k * x) ** 2, 0)) / norm(d);
      expect(err, n).toBeLessThan(1e-3);
      if (isProjector(n)) checked++;
    }
    expect(checked).toBe(4); // the mlp2x_gelu projector's two weights and biases
    expect(() => train(withProj(1, -2))).toThrow(/stage 'all': projectorLr must be a finite number >= 0 \(in float32: at most 3.4e38\), got -2/);
  });
});
