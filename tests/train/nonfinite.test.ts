// Non-finite steps: a NaN injected into one sample's pixels (the kernels refuse the non-finite activations:
// a NaN loss) or into a gradient (finite loss, NaN global gradient norm) skips that optimizer step: the
// weights and AdamW moments stay bit for bit as before it, the step is counted (metrics.jsonl 'nonfinite'
// records with stage, step and sample indices, state.skippedSteps, the 'summary' record), and training goes
// on. nonFinite: 'stop' throws a NonFiniteError naming the step and the batch instead.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { Tensor, keep, setAsync } from '../../src';
import { HostTensor, readSafetensors } from '../../src/io/safetensors';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { NonFiniteError } from '../../src/train/interrupt';
import { batchIndices, Stage, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from './support/tiny';

const tmp = tempDirs('nonfinite');
const records = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const same = (a: Map<string, HostTensor>, b: Map<string, HostTensor>) => {
  expect([...a.keys()]).toEqual([...b.keys()]);
  for (const [k, t] of a) expect(Buffer.from(t.data.buffer).equals(Buffer.from(b.get(k)!.data.buffer)), k).toBe(true);
};

describe('non-finite loss or gradients', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const seed = 9;
  // stage a: one epoch of 8 samples in 4 steps of 2, so a poisoned sample is in exactly one step
  const base = () => tinyStages(makeBatch, samples.length, 4);
  const poisonedStep = 2; // 0-based step of stage a whose first sample gets a NaN pixel
  const poison = batchIndices(seed, base()[0], poisonedStep, 0)[0];
  const nanBatch = (idx: number[]): ModelBatch => {
    const b = makeBatch(idx);
    if (!idx.includes(poison)) return b;
    const px = b.pixelValues!.slice();
    px[idx.indexOf(poison) * 3 * 75 * 75 + 123] = NaN;
    return { ...b, pixelValues: px };
  };
  const withNaN = (): Stage[] => {
    const s = base();
    s[0] = { ...s[0], makeBatch: nanBatch };
    return s;
  };
  const run = (stages: Stage[], opts: Partial<TrainerOptions> = {}, model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5)) => {
    const out = tmp();
    const snapshots: { globalStep: number; model: Map<string, HostTensor>; opt: Map<string, HostTensor> }[] = [];
    const ck = () => path.join(out, 'checkpoint');
    const t = new Trainer(model, stages, {
      seed, outDir: out, saveEvery: 1, checkpointFiles: { tokenizer: json }, ...opts,
      // the checkpoint on disk when a record is logged is that of the step before (saved after logging)
      onLog: (r) => {
        if ((r.type === 'train' || r.type === 'nonfinite') && fs.existsSync(ck()))
          snapshots.push({ globalStep: (r.globalStep as number) - 1, model: readSafetensors(path.join(ck(), 'model.safetensors')), opt: readSafetensors(path.join(ck(), 'optimizer.safetensors')) });
      },
    });
    let error: unknown = null;
    let state = null;
    try {
      state = t.run();
    } catch (e) {
      error = e;
    }
    model.dispose();
    return { out, state, error, snapshots };
  };

  it("a NaN loss skips the step: weights and AdamW moments unchanged, counted, the batch named, training goes on", () => {
    const r = run(withNaN());
    expect(r.error).toBeNull();
    expect(r.state!.skippedSteps).toBe(1);
    expect(r.state!.globalStep).toBe(8);
    const recs = records(r.out);
    const bad = recs.filter((x) => x.type === 'nonfinite');
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ stage: 'a', step: poisonedStep + 1, globalStep: poisonedStep + 1, what: 'loss', microBatch: 0, action: 'skipped', skippedSteps: 1 });
    expect(bad[0].samples).toContain(poison);
    // the pixel named, not only the kernel's input every activation after the tower then is ("[linear_cross_entropy] h")
    const image = bad[0].samples.indexOf(poison);
    expect(bad[0].detail).toMatch(new RegExp(`pixelValues (contains|hold) a non-finite value \\(NaN\\) at index ${image * 3 * 75 * 75 + 123} \\(image ${image}`));
    expect(recs.filter((x) => x.type === 'train').map((x) => x.globalStep)).toEqual([1, 2, 4, 5, 6, 7, 8]);
    expect(recs.at(-1)).toMatchObject({ type: 'summary', globalStep: 8, skippedSteps: 1 });
    // the checkpoint after the skipped step (global 3) equals the one before it (global 2), bit for bit
    const before = r.snapshots.find((s) => s.globalStep === poisonedStep)!, after = r.snapshots.find((s) => s.globalStep === poisonedStep + 1)!;
    same(after.model, before.model);
    same(after.opt, before.opt);
    // and the next step did update them
    const next = r.snapshots.find((s) => s.globalStep === poisonedStep + 2)!;
    expect(Buffer.from(next.opt.get('0.m')!.data.buffer).equals(Buffer.from(after.opt.get('0.m')!.data.buffer))).toBe(false);
    for (const t of [...r.snapshots.at(-1)!.model.values()]) expect(t.data.every((v) => Number.isFinite(v))).toBe(true);
  });

  it('VwLmm.loss names a non-finite pixel (its image and index), not the kernel input it made non-finite', () => {
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    const b = makeBatch([0, 1]), px = b.pixelValues!.slice();
    px[3 * 75 * 75 + 7] = -Infinity;
    expect(() => model.loss({ ...b, pixelValues: px })).toThrow(/^VwLmm\.loss: batch\.pixelValues contains a non-finite value \(-Infinity\) at index 16882 \(image 1 of the batch\): every activation after the vision tower is then non-finite \(\[(linear_cross_entropy|visual_word_kl)\] \w+ contains a non-finite value/);
    expect(model.nonFinitePixel(b)).toBeNull();
    expect(Number.isFinite(model.loss(b).ce)).toBe(true); // the same batch with finite pixels
    model.dispose();
  });

  it("in async mode (a GPU's default) the kernels' refusal comes at the step's one read: the same step skipped, the same weights", () => {
    const sync = run(withNaN());
    const was = setAsync('cpu', true);
    let r: ReturnType<typeof run>;
    try {
      r = run(withNaN());
    } finally {
      setAsync('cpu', was);
    }
    expect(r.error).toBeNull();
    expect(r.state!.skippedSteps).toBe(1);
    const bad = records(r.out).filter((x) => x.type === 'nonfinite');
    expect(bad).toHaveLength(1);
    // which micro-batch is not known at the read: the step's samples are named
    expect(bad[0]).toMatchObject({ stage: 'a', step: poisonedStep + 1, what: 'loss', microBatch: null, action: 'skipped' });
    expect(bad[0].samples).toContain(poison);
    expect(bad[0].detail).toMatch(/^\[(linear_cross_entropy|visual_word_kl)\] \w+ contains a non-finite value \(nan\) at flat index \d+ \(an asynchronous check/);
    const image = batchIndices(seed, base()[0], poisonedStep, 0).indexOf(poison);
    expect(bad[0].detail).toContain(`; the batch's pixelValues hold a non-finite value (NaN) at index ${image * 3 * 75 * 75 + 123} (image ${image}): the image, not the model`);
    // the run is the synchronous one's: the same skipped step, the same final weights
    expect(records(r.out).filter((x) => x.type === 'train').map((x) => x.loss)).toEqual(records(sync.out).filter((x) => x.type === 'train').map((x) => x.loss));
    same(r.snapshots.at(-1)!.model, sync.snapshots.at(-1)!.model);
  });

  it("a stage that refills one pixel array (as the demo's): no pixel note from an array the next batch has overwritten", () => {
    // the next step's batch has a NaN pixel elsewhere (index 999): read after it was made, the array would name that
    const following = batchIndices(seed, base()[0], poisonedStep + 1, 0);
    let shared: Float32Array | null = null;
    const refill = (idx: number[]): ModelBatch => {
      const b = nanBatch(idx);
      shared ??= new Float32Array(b.pixelValues!.length);
      shared.set(b.pixelValues!);
      if (idx.join() === following.join()) shared[999] = NaN;
      return { ...b, pixelValues: shared };
    };
    const s = base();
    s[0] = { ...s[0], makeBatch: refill };
    const was = setAsync('cpu', true); // the refusal comes at the step's read, after the next batch was made
    let r: ReturnType<typeof run>;
    try {
      r = run(s);
    } finally {
      setAsync('cpu', was);
    }
    const bad = records(r.out).filter((x) => x.type === 'nonfinite');
    expect(bad.map((x) => x.step)).toEqual([poisonedStep + 1, poisonedStep + 2]);
    // the poisoned step's array held the next batch by the read: not named. The next step's is its own (a non-finite
    // step stops the replay, which made batches ahead): named
    expect(bad[0].detail).not.toContain('pixelValues');
    expect(bad[1].detail).toContain("; the batch's pixelValues hold a non-finite value (NaN) at index 999 (image 0): the image, not the model");
  });

  it('a NaN gradient with a finite loss (global norm NaN) is skipped too, with gradient accumulation', () => {
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    const loss = model.loss.bind(model);
    let calls = 0;
    // stage b step 2 (global step 6), micro-batch 1: a NaN lands in lm_head's accumulated gradient
    model.loss = (b: ModelBatch) => {
      calls++;
      const out = loss(b);
      if (calls === 4 + 2 * 1 + 2) {
        const w = model.lm_head.weight;
        const g = keep(Tensor.fromArray(new Float32Array(w.size).fill(NaN), w.shape));
        if (w.grad) w.grad.dispose();
        w.grad = g;
      }
      return out;
    };
    const r = run(base(), {}, model);
    expect(r.error).toBeNull();
    const bad = records(r.out).filter((x) => x.type === 'nonfinite');
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatchObject({ stage: 'b', step: 2, globalStep: 6, what: 'gradient norm', microBatch: null });
    expect(bad[0].samples).toHaveLength(6); // both micro-batches of 3
    const before = r.snapshots.find((s) => s.globalStep === 5)!, after = r.snapshots.find((s) => s.globalStep === 6)!;
    same(after.model, before.model);
    same(after.opt, before.opt);
    expect(r.state!.skippedSteps).toBe(1);
  });

  it("nonFinite: 'stop' throws a NonFiniteError naming the stage, step and sample indices", () => {
    const r = run(withNaN(), { nonFinite: 'stop' });
    expect(r.error).toBeInstanceOf(NonFiniteError);
    const msg = (r.error as Error).message;
    expect(msg).toMatch(new RegExp(`non-finite loss at stage 'a' step ${poisonedStep + 1}/4 \\(global step ${poisonedStep + 1}\\), micro-batch 0, sample indices \\[[^\\]]*\\b${poison}\\b`));
    expect(records(r.out).filter((x) => x.type === 'nonfinite')[0]).toMatchObject({ action: 'stop' });
  });
});
