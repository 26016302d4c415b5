// A training process for the crash tests: trains the tiny model (tiny.ts) in <outDir> with a checkpoint
// after every step, resuming from <outDir>/checkpoint when there is one (autoResume), and prints
// "step G" after each optimizer step and "saved G" once the checkpoint of global step G is complete.
//   node --import tsx train_child.ts <outDir> <stepsPerStage>
import { VwLmm } from '../../../src/model/vwlmm';
import { AdamW } from '../../../src/optim';
import { Trainer, TrainerState } from '../../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from './tiny';

class ReportingTrainer extends Trainer {
  override save(state: TrainerState, opt: AdamW): void {
    super.save(state, opt);
    process.stdout.write(`saved ${state.globalStep}\n`);
  }
}

const [outDir, steps] = process.argv.slice(2);
const { tokenizer, json, samples, makeBatch } = tinyData(8);
const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
const trainer = new ReportingTrainer(model, tinyStages(makeBatch, samples.length, Number(steps)), {
  seed: 9, outDir, saveEvery: 1, autoResume: true, checkpointFiles: { tokenizer: json },
  onLog: (r) => {
    if (r.type === 'train') process.stdout.write(`step ${r.globalStep as number}\n`);
  },
});
const state = trainer.run();
process.stdout.write(`done ${state.globalStep}\n`);
model.dispose();
