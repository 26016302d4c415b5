// A LoRA run resumes exactly (src/nn/lora.ts LoraDropoutStream, src/model/lora.ts loraTrainingRecord /
// resumeLoraTraining): with dropout on, a run stopped and resumed from its checkpoint ends bit for bit where the
// uninterrupted one does, whatever seed the resumed model's adapters were made with (vwlmm train --resume makes them
// with loadCheckpoint's); replayed op programs never repeat a step's masks. A resume whose trainable parameters or
// adapters are not the checkpoint's is refused, naming them (not "AdamW.loadState: entry 0 does not fit").
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { applyLora } from '../../src/model/lora';
import { VwLmm } from '../../src/model/vwlmm';
import { readTrainerState, Stage, Trainable, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tinyConfig, tinyData } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('lora-resume');

describe('LoRA training resumes', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const lora: Trainable = { lora: true, projector: true, vmHead: true };
  // two stages, the second with accumulation (two forwards a step): 3 + 3 steps
  const stages = (first: Trainable = lora): Stage[] => [
    { name: 'a', size: samples.length, makeBatch, steps: 3, batchSize: 2, lr: 3e-3, warmupRatio: 0, trainable: first },
    { name: 'b', size: samples.length, makeBatch, steps: 3, batchSize: 2, gradAccum: 2, lr: 2e-3, trainable: { lora: true } },
  ];
  const model = (seed = 5, loraSeed: number | null = 11, r = 2) => {
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), seed);
    if (loraSeed !== null) applyLora(m, { r, alpha: 2 * r, dropout: 0.1, seed: loraSeed });
    return m;
  };
  const weights = (m: VwLmm) => new Map([...m.namedParameters()].map(([n, p]) => [n, Array.from(p.toArray())]));
  const run = (m: VwLmm, opts: Partial<TrainerOptions>, s = stages()) => {
    const log: Record<string, unknown>[] = [];
    new Trainer(m, s, { seed: 3, checkpointFiles: { tokenizer: json }, onLog: (r) => log.push(r), ...opts }).run();
    return log;
  };

  it('with dropout 0.1, stopped and resumed (in either stage, with gradient checkpointing) it ends bit for bit where the uninterrupted run does', () => {
    for (const gradientCheckpointing of [false, true]) {
      const full = model();
      const fullLog = run(full, { outDir: tmp(), gradientCheckpointing });
      const want = weights(full);
      full.dispose();
      // dropout matters (the same run without it ends elsewhere), and replay never repeats a step's masks: the run
      // with op programs off ends in the same place
      const plain = model();
      run(plain, { outDir: tmp(), replay: false, gradientCheckpointing });
      expect(weights(plain)).toEqual(want);
      plain.dispose();
      expect(fullLog.filter((r) => r.type === 'train').length).toBe(6);
      for (const stopAt of [2, 4]) {
        const out = tmp();
        const first = model();
        run(first, { outDir: out, saveEvery: 1, stopAfterSteps: stopAt, gradientCheckpointing });
        first.dispose();
        const rec = readTrainerState(path.join(out, 'checkpoint')).state as unknown as Record<string, Record<string, unknown>>;
        // stage a: one forward a step; stage b: two
        expect(rec.lora).toMatchObject({ r: 2, alpha: 4, dropout: 0.1, seed: 11, calls: stopAt <= 3 ? stopAt : 3 + 2 * (stopAt - 3) });
        // as vwlmm train --resume: adapters made anew (loadCheckpoint's seed 0), every weight from the checkpoint
        const resumed = model(77, 0);
        run(resumed, { outDir: out, autoResume: true, gradientCheckpointing });
        const got = weights(resumed);
        resumed.dispose();
        for (const [n, w] of want) expect(got.get(n), `${n} (stopped at ${stopAt}, gradientCheckpointing ${gradientCheckpointing})`).toEqual(w);
      }
    }
  });

  it('a resume with other trainable parts or another LoRA setup is refused, naming both sides', () => {
    const out = tmp();
    const first = model();
    run(first, { outDir: out, saveEvery: 1, stopAfterSteps: 2 });
    first.dispose();
    const resume = (m: VwLmm, s: Stage[]) => () => run(m, { outDir: out, autoResume: true }, s);
    // --trainable lora instead of projector,vm,lora
    const m1 = model(77, 0);
    expect(resume(m1, stages({ lora: true }))).toThrow(/resume: stage 'a': the checkpoint's run trained projector \(4 tensors\), vm \(1 tensors\), lora \(14 tensors\), this run trains lora \(14 tensors\) \(--trainable/);
    m1.dispose();
    // LoRA adapters of another rank (their weights from the checkpoint do not fit either: refused on load, naming them)
    const m2 = model(77, 0, 4);
    expect(resume(m2, stages())).toThrow(/lora_A.weight has shape \[2, 16\] but the model expects \[4, 16\]/);
    m2.dispose();
    // another dropout: the same tensors, another run
    const m3 = VwLmm.create(tinyConfig(tokenizer.vocabSize), 77);
    applyLora(m3, { r: 2, alpha: 4, dropout: 0.2 });
    expect(resume(m3, stages())).toThrow(/resume: stage 'a': the checkpoint's run had LoRA adapters of r 2, alpha 4, dropout 0.1 on q_proj, .*, this model has adapters of r 2, alpha 4, dropout 0.2/);
    m3.dispose();
    // a run without LoRA resumed with adapters (vwlmm train --resume --lora-r on a checkpoint trained without)
    const plainOut = tmp();
    const p = model(5, null);
    const full: Trainable = { projector: true, vmHead: true, llm: true };
    run(p, { outDir: plainOut, saveEvery: 1, stopAfterSteps: 1 }, stages(full));
    p.dispose();
    // (the CLI loads the checkpoint's weights, adds the adapters, then resumes with its trainer state)
    const withLora = model(5, 0);
    const cliResume = () => new Trainer(withLora, stages(lora), { seed: 3, outDir: plainOut, checkpointFiles: { tokenizer: json } }).run(readTrainerState(path.join(plainOut, 'checkpoint')));
    expect(cliResume).toThrow(/the checkpoint's run had no LoRA adapters, this model has adapters of r 2/);
    withLora.dispose();
    const moreParts = model(5, null);
    expect(() => run(moreParts, { outDir: plainOut, autoResume: true }, stages({ ...full, visionTower: true }))).toThrow(/trained projector \(4 tensors\), llm \(\d+ tensors\), vm \(1 tensors\), this run trains vision \(\d+ tensors\), projector/);
    moreParts.dispose();
  });
});
