// A resume keeps each micro-batch's size (TrainerState.stageSettings.batchSize): a micro-batch's loss is a token mean over
// its own samples, so another batch size trains another objective even at the same samples per step (1 rank at batch 4
// is not 2 ranks at batch 2 when answers differ in length), while the same micro-batches over other ranks x accumulation
// are the same (tests/distributed/data_parallel.test.ts resumes 2 ranks x accumulation 1 as 1 rank x accumulation 2).
// A checkpoint written before the field was recorded resumes as before. One process: the check is the same on N ranks.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { readTrainerState, Stage, Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData } from '../train/support/tiny';

const tmp = tempDirs('resume-batch');

describe('resume and the micro-batch size', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const stage = (batchSize: number, gradAccum: number): Stage => ({ name: 's', size: samples.length, makeBatch, steps: 4, batchSize, gradAccum, lr: 1e-3, trainable: { projector: true, vmHead: true } });
  const run = (outDir: string, batchSize: number, gradAccum: number, resume: boolean) => {
    // a resume runs on the checkpoint's weights (the Trainer refuses other weights by their fingerprint)
    const model = resume ? loadCheckpoint(path.join(outDir, 'checkpoint')).model : VwLmm.create(tinyConfig(tokenizer.vocabSize), 3);
    try {
      const t = new Trainer(model, [stage(batchSize, gradAccum)], { seed: 1, outDir, checkpointFiles: { tokenizer: json }, ...(resume ? {} : { stopAfterSteps: 2, saveEvery: 2 }), dtype: 'float32' });
      return t.run(resume ? readTrainerState(path.join(outDir, 'checkpoint')) : undefined);
    } finally {
      model.dispose();
    }
  };

  it('records it, refuses a resume that changes it (naming it) at the same samples per step, and resumes a checkpoint that lacks it', () => {
    const dir = tmp();
    run(dir, 4, 1, false);
    const file = path.join(dir, 'checkpoint', 'trainer_state.json');
    const state = JSON.parse(fs.readFileSync(file, 'utf8')) as { globalStep: number; stageSettings: Record<string, unknown>[] };
    expect(state.globalStep).toBe(2);
    expect(state.stageSettings[0]).toMatchObject({ samplesPerStep: 4, batchSize: 4 });
    // 2 x accumulation 2: the same 4 samples per step, split into other micro-batches
    expect(() => run(dir, 2, 2, true)).toThrow(/resume: stage 's' had samples per micro-batch on each rank \(batch size\) 4 in the checkpoint's run, this run has 2 \(the run would not continue exactly: keep batch size 4 and give ranks x grad accumulation 1, the product the checkpoint's run had \(this run: 1 rank x 2\)/);
    // a checkpoint from before the field: not checked (and samples per step still are)
    const old = structuredClone(state);
    delete old.stageSettings[0].batchSize;
    fs.writeFileSync(file, JSON.stringify(old));
    expect(() => run(dir, 2, 1, true)).toThrow(/samples per optimizer step \(batch size x grad accumulation x ranks\) 4 in the checkpoint's run, this run has 2/);
    expect(run(dir, 2, 2, true).globalStep).toBe(4);
  });
});
