// A Trainer checkpoint of a model with LLaVA's linear projector written before the projector took LLaVA's names
// (model.mm_projector.0.* then, model.mm_projector.* now) still resumes exactly (Trainer's loadLatest maps them).
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { VwLmm } from '../../src/model/vwlmm';
import { Stage, Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData } from './support/tiny';

const tmp = tempDirs('linear-proj');

describe('linear projector checkpoints written before LLaVA names', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const config = { ...tinyConfig(tokenizer.vocabSize), projectorType: 'linear' };
  const stages: Stage[] = [{ name: 'all', size: samples.length, makeBatch, steps: 4, batchSize: 2, lr: 2e-3, warmupRatio: 0, trainable: { visionTower: false, projector: true, llm: true, vmHead: true } }];
  const run = (out: string, opts: { stopAfterSteps?: number; autoResume?: boolean }, seed = 5) => {
    const m = VwLmm.create(config, seed);
    new Trainer(m, stages, { seed: 3, outDir: out, saveEvery: 1, checkpointFiles: { tokenizer: json }, ...opts }).run();
    const w = new Map([...m.namedParameters()].map(([n, p]) => [n, p.toArray()]));
    m.dispose();
    return w;
  };

  it('resumes exactly from mm_projector.0.*', () => {
    const full = run(tmp(), {});
    expect(full.has('model.mm_projector.weight')).toBe(true);
    const out = tmp();
    run(out, { stopAfterSteps: 2 });
    const file = path.join(out, 'checkpoint', 'model.safetensors'), t = readSafetensors(file), old = new Map<string, HostTensor>();
    for (const [n, v] of t) old.set(n.replace(/^model\.mm_projector\.(weight|bias)$/, 'model.mm_projector.0.$1'), v);
    expect(old.has('model.mm_projector.0.weight')).toBe(true);
    writeSafetensors(file, old);
    const resumed = run(out, { autoResume: true }, 77);
    for (const [n, v] of full) expect(resumed.get(n), n).toEqual(v);
  });
});
