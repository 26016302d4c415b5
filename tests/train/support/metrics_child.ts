// A training process for the write-failure tests (tests/train/write_errors.test.ts): trains the tiny model's first stage
// (projector + vm_head) in <outDir> for <steps> steps with a checkpoint every <saveEvery>, resuming from
// <outDir>/checkpoint when there is one (autoResume). An error ends it with exit code 1, its message on stderr as
// "error: <message>" and its code as "code: <code>".
//   node --import tsx metrics_child.ts <outDir> <steps> <saveEvery>
import { VwLmm } from '../../../src/model/vwlmm';
import { Trainer } from '../../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from './tiny';

const [outDir, steps, saveEvery] = process.argv.slice(2);
const { tokenizer, json, samples, makeBatch } = tinyData(8);
const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
try {
  new Trainer(model, tinyStages(makeBatch, samples.length, Number(steps)).slice(0, 1), { seed: 9, outDir, saveEvery: Number(saveEvery), autoResume: true, checkpointFiles: { tokenizer: json } }).run();
} catch (e) {
  process.stderr.write(`error: ${(e as Error).message}\ncode: ${(e as NodeJS.ErrnoException).code}\n`);
  process.exit(1);
}
model.dispose();
