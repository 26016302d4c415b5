// A checkpoint's optimizer state is checked against its trainer_state.json on resume, so that a damaged, edited or
// mixed checkpoint is refused (naming the file, the parameter, what was expected and what was found) rather than
// continued with fresh AdamW moments or at another position: an entry half there, a parameter's entries (or all of them)
// missing (trainer_state.json counts them: optimizerEntries), a file without vwlmm's checksum, a position that the
// AdamW step counts contradict. Refused before anything is written; a checkpoint from before the count resumes unchecked.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { HostTensor, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { readTrainerState, Stage, Trainer } from '../../src/train/trainer';
import { VwLmm } from '../../src/model/vwlmm';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData, weightsOf } from './support/tiny';

const tmp = tempDirs('optimizer-state');
const { tokenizer, json, samples, makeBatch } = tinyData(8);
const stages: Stage[] = [{ name: 's', size: samples.length, makeBatch, steps: 6, batchSize: 2, lr: 3e-3, trainable: { projector: true, vmHead: true } }];

/** A run stopped after 3 of 6 steps: its folder. */
function stopped(): string {
  const out = tmp();
  const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
  new Trainer(m, stages, { seed: 3, outDir: out, stopAfterSteps: 3, checkpointFiles: { tokenizer: json } }).run();
  m.dispose();
  return out;
}
const resume = (out: string) => {
  const ck = path.join(out, 'checkpoint');
  const m = loadCheckpoint(ck).model;
  try {
    new Trainer(m, stages, { seed: 3, outDir: out, checkpointFiles: { tokenizer: json } }).run(readTrainerState(ck));
    return weightsOf(m);
  } finally {
    m.dispose();
  }
};
/** Resumes `out` after `edit` changed its checkpoint: must be refused with `message`, metrics.jsonl as it was. */
function refused(edit: (ck: string) => void, message: RegExp): void {
  const out = stopped(), ck = path.join(out, 'checkpoint');
  edit(ck);
  const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
  expect(() => resume(out)).toThrow(message);
  expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(metrics);
}
/** Rewrites optimizer.safetensors without the entries `drop` names (with vwlmm's checksum, unless `checksum` is false). */
const rewrite = (ck: string, drop: (key: string) => boolean, checksum = true) => {
  const file = path.join(ck, 'optimizer.safetensors');
  const kept = new Map<string, HostTensor>([...readSafetensors(file)].filter(([k]) => !drop(k)));
  writeSafetensors(file, kept, undefined, { checksum });
};
const editState = (ck: string, edit: (st: Record<string, unknown>) => void) => {
  const file = path.join(ck, 'trainer_state.json');
  const st = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(st);
  fs.writeFileSync(file, JSON.stringify(st));
};
const file = (ck: string) => path.join(ck, 'optimizer.safetensors').replace(/[.\\/]/g, '\\$&');
const projector0 = "parameter 0 \\('model\\.mm_projector\\.0\\.weight'\\)";

describe('resume checks the optimizer state against the trainer state', () => {
  it('records the entries it writes: every trained parameter, all at the steps taken', () => {
    const out = stopped(), ck = path.join(out, 'checkpoint');
    const st = readTrainerState(ck);
    const m = loadCheckpoint(ck).model;
    const n = [...m.model.mm_projector.parameters(), ...m.vm_head!.parameters()].length;
    m.dispose();
    expect(st.state).toMatchObject({ step: 3, optimizerEntries: n, everyParameterStepped: true });
    expect(st.optimizer.size).toBe(3 * n);
    expect([...st.optimizer].filter(([k]) => k.endsWith('.step')).map(([, t]) => t.data[0])).toEqual(new Array(n).fill(3));
  });

  it("an entry half there, a parameter's entries missing, or all of them: refused, naming the first", () => {
    refused((ck) => rewrite(ck, (k) => k === '0.v'), new RegExp(`^resume: stage 's': ${'.*'}optimizer\\.safetensors: ${projector0} has '0\\.m' and '0\\.step' but no '0\\.v' \\(the checkpoint is damaged`));
    refused((ck) => rewrite(ck, (k) => k.startsWith('0.')), new RegExp(`optimizer\\.safetensors: expected AdamW state of 5 parameters \\(trainer_state\\.json's optimizerEntries\\), received 4; the first without any is ${projector0}: training would go on with fresh moments`));
    refused((ck) => rewrite(ck, () => true), /expected AdamW state of 5 parameters \(trainer_state\.json's optimizerEntries\), received 0; the first without any is parameter 0/);
    // an entry of a parameter the stage does not train
    refused((ck) => {
      const f = path.join(ck, 'optimizer.safetensors'), t = readSafetensors(f);
      t.set('9.step', { dtype: 'int32', shape: [1], data: Int32Array.of(3) });
      writeSafetensors(f, t, undefined, { checksum: true });
    }, /expected entries '<i>\.m', '<i>\.v', '<i>\.step' of the stage's 5 trained parameters \(i < 5\), received '9\.step'/);
  });

  it('an optimizer file without the checksum vwlmm writes is refused', () => {
    const out = stopped(), ck = path.join(out, 'checkpoint');
    rewrite(ck, () => false, false);
    expect(() => readTrainerState(ck)).toThrow(new RegExp(`^resume: ${file(ck)}: expected the vwlmm_data_sha256 checksum in its metadata \\(every one vwlmm writes has it\\), received a file without`));
  });

  it('a position the AdamW step counts contradict (trainer_state.json edited) is refused', () => {
    // the weights are at step 3: a state that says 2 (earlier), or 5 (later) than the optimizer's counts
    refused((ck) => editState(ck, (st) => Object.assign(st, { step: 2, globalStep: 2 })), new RegExp(`${projector0} has AdamW step count 3, but trainer_state\\.json puts the run at stage 's' step 2 \\(global step 2, 0 skipped\\): the position and the optimizer state disagree`));
    refused((ck) => editState(ck, (st) => Object.assign(st, { step: 5, globalStep: 5 })), /has AdamW step count 3, but trainer_state\.json puts the run at stage 's' step 5 \(global step 5, 0 skipped\), so every trained parameter has the same count, between 5 and 5: the position and the optimizer state disagree/);
    // step counts that differ between parameters
    refused((ck) => {
      const f = path.join(ck, 'optimizer.safetensors'), t = readSafetensors(f);
      t.set('1.step', { dtype: 'int32', shape: [1], data: Int32Array.of(2) });
      writeSafetensors(f, t, undefined, { checksum: true });
    }, /parameter 1 \('model\.mm_projector\.0\.bias'\) has AdamW step count 2, .* \(parameter 0 has 3\)/);
  });

  it('a checkpoint from before the count resumes with what its file holds; an unedited one resumes exactly', () => {
    const full = tmp(), m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m, stages, { seed: 3, outDir: full, checkpointFiles: { tokenizer: json } }).run();
    const want = weightsOf(m);
    m.dispose();
    const intact = stopped();
    expect(resume(intact)).toEqual(want);
    const old = stopped(), ck = path.join(old, 'checkpoint');
    editState(ck, (st) => {
      delete st.optimizerEntries;
      delete st.everyParameterStepped;
    });
    rewrite(ck, (k) => k.startsWith('0.'));
    const w = resume(old);
    expect(w.get('model.mm_projector.0.weight')).not.toEqual(want.get('model.mm_projector.0.weight')); // fresh moments
  });
});
