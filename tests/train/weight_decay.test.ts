// Weight decay as transformers' Trainer applies it (get_decay_parameter_names, used by LLaVA's trainer too): biases
// and norm layers in an AdamW group without decay. Checked on the first update against the same run without decay
// (AdamW's decay is p *= 1 - lr * wd before the Adam step, so the difference is exactly -lr * wd * p0 where it
// decays and nothing where it does not), and through resumes: the groups reorder the optimizer's parameters, and
// checkpoints written before its entries were indexed by the stage's parameters still resume exactly.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { VwLmm } from '../../src/model/vwlmm';
import { noDecayParameters, Stage, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tinyConfig, tinyData, trainTiny, weightsOf } from './support/tiny';

const tmp = tempDirs('decay');

describe('weight decay groups (transformers Trainer: no decay on biases and norms)', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const lr = 2e-3, wd = 0.1;
  const stage = (steps: number, weightDecay: number, visionTowerLr?: number): Stage[] => [{
    name: 'all', size: samples.length, makeBatch, steps, batchSize: 2, lr, warmupRatio: 0, weightDecay, visionTowerLr,
    trainable: { visionTower: true, projector: true, llm: true, vmHead: true },
  }];
  const weights = weightsOf;
  const train = (stages: Stage[], opts: Partial<TrainerOptions> = {}, out = tmp()) => trainTiny(tokenizer.vocabSize, json, stages, opts, out);
  // an independent statement of transformers' rule for this model's names: CLIP's norms are layer_norm1/2,
  // pre_layrnorm (sic) and post_layernorm, LLaMA's input_layernorm, post_attention_layernorm and norm
  const isNoDecay = (n: string) => /bias/.test(n) || /(layer_norm[12]|pre_layrnorm|post_layernorm|input_layernorm|post_attention_layernorm|\.norm)\.weight$/.test(n);

  it('noDecayParameters is every bias and every norm weight, and nothing else', () => {
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    try {
      const skip = noDecayParameters(m);
      const names = [...m.namedParameters()];
      expect(names.filter(([, p]) => skip.has(p)).map(([n]) => n)).toEqual(names.filter(([n]) => isNoDecay(n)).map(([n]) => n));
      expect(skip.size).toBeGreaterThan(10);
      expect(names.filter(([n]) => n.endsWith('norm.weight') || n.endsWith('layernorm.weight')).every(([, p]) => skip.has(p))).toBe(true);
    } finally {
      m.dispose();
    }
  });

  it('decays every other parameter by lr * wd * p0 on the first update, and biases and norms not at all', () => {
    const plain = train(stage(1, 0)), decayed = train(stage(1, wd));
    let decays = 0, skips = 0;
    for (const [n, p0] of plain.w0) {
      const a = plain.w1.get(n)!, b = decayed.w1.get(n)!;
      if (a.every((x, i) => x === p0[i])) continue; // not reached by the loss (no gradient: AdamW skips it)
      if (isNoDecay(n)) {
        expect(b, n).toEqual(a);
        skips++;
      } else {
        const diff = b.map((x, i) => x - a[i]), want = p0.map((x) => -lr * wd * x);
        const err = Math.sqrt(diff.reduce((s, x, i) => s + (x - want[i]) ** 2, 0)) / Math.sqrt(want.reduce((s, x) => s + x * x, 0));
        expect(err, n).toBeLessThan(2e-2); // float32 rounding of p and of p * (1 - lr * wd), against a 2e-4 relative change
        decays++;
      }
    }
    expect(skips).toBeGreaterThan(10);
    expect(decays).toBeGreaterThan(10);
  });

  /** Stops a run after 2 of 4 steps, optionally edits its checkpoint, resumes it; the result must equal the full run. */
  const resumesExactly = (stages: Stage[], edit?: (dir: string) => void) => {
    const full = train(stages).w1;
    const out = tmp();
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m, stages, { seed: 3, outDir: out, saveEvery: 1, stopAfterSteps: 2, checkpointFiles: { tokenizer: json } }).run();
    m.dispose();
    edit?.(path.join(out, 'checkpoint'));
    const fresh = VwLmm.create(tinyConfig(tokenizer.vocabSize), 77); // autoResume overwrites every weight
    new Trainer(fresh, stages, { seed: 3, outDir: out, autoResume: true, checkpointFiles: { tokenizer: json } }).run();
    const w = weights(fresh);
    fresh.dispose();
    for (const [n, v] of full) expect(w.get(n), n).toEqual(v);
  };

  it('a run with decay groups and a tower group, stopped and resumed, ends exactly where the uninterrupted one does', () => {
    resumesExactly(stage(4, wd, 5e-4));
  });

  it('resumes exactly from a checkpoint indexed by the optimizer groups (written before optimizerIndex)', () => {
    // rewrite the checkpoint as older versions wrote it: entries in the order of the learning-rate groups (the rest,
    // then the tower), no optimizerIndex; without decay those groups are the optimizer's own
    resumesExactly(stage(4, 0, 5e-4), (dir) => {
      const stateFile = path.join(dir, 'trainer_state.json');
      const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
      expect(state.optimizerIndex).toBe('parameters');
      delete state.optimizerIndex;
      fs.writeFileSync(stateFile, JSON.stringify(state));
      const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
      const params = m.trainableParameters(), tower = new Set(m.visionTower.parameters());
      const legacy = [...params.filter((p) => !tower.has(p)), ...params.filter((p) => tower.has(p))].map((p) => params.indexOf(p));
      m.dispose();
      expect(legacy).not.toEqual(params.map((_, i) => i)); // the orders differ, so the test can fail
      const file = path.join(dir, 'optimizer.safetensors'), saved = readSafetensors(file), out = new Map<string, HostTensor>();
      legacy.forEach((i, k) => {
        for (const part of ['m', 'v', 'step']) if (saved.has(`${i}.${part}`)) out.set(`${k}.${part}`, saved.get(`${i}.${part}`)!);
      });
      expect(out.size).toBe(saved.size);
      writeSafetensors(file, out, undefined, { checksum: true }); // as every vwlmm version wrote it
    });
  });
});
