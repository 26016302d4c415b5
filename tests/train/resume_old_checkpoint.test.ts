// A resume from <out>/checkpoint.old-* (what a kill between a save's two renames leaves: resolveCheckpointDir finds it)
// takes its tokenizer from that folder, which the run's first save removes: the Trainer reads the tokenizer's files
// when it starts, so every later save still has them (before, the second save failed: "options.tokenizer ... does not
// exist", and so did a Ctrl-C's save).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint, resolveCheckpointDir, tokenizerFiles } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { readTrainerState, Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData, tinyStages } from './support/tiny';

const tmp = tempDirs('resume-old');

describe('a resume from checkpoint.old-*', () => {
  it('saves every step after it with the tokenizer it was started with', () => {
    const { tokenizer, json, samples, makeBatch } = tinyData(8);
    const out = tmp(), tokFile = path.join(tmp(), 'tokenizer.json');
    fs.writeFileSync(tokFile, JSON.stringify(json));
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m, tinyStages(makeBatch, samples.length, 4), { seed: 9, outDir: out, saveEvery: 1, stopAfterSteps: 3, checkpointFiles: { tokenizer: tokFile } }).run();
    m.dispose();
    // the state a kill between the renames leaves: only the old checkpoint, under its .old- name
    const old = path.join(out, 'checkpoint.old-202612060000000-1-0');
    fs.renameSync(path.join(out, 'checkpoint'), old);
    const dir = resolveCheckpointDir(path.join(out, 'checkpoint'))!;
    expect(path.resolve(dir)).toBe(old);
    const ck = loadCheckpoint(dir);
    expect(ck.tokenizerPath).toBe(path.join(dir, 'tokenizer.json'));
    new Trainer(ck.model, tinyStages(makeBatch, samples.length, 4), { seed: 9, outDir: out, saveEvery: 1, checkpointFiles: { tokenizer: ck.tokenizerPath! } }).run(readTrainerState(dir));
    ck.model.dispose();
    expect(fs.existsSync(old)).toBe(false); // the first save removed it
    // (as the first run's checkpoints: tokenizer.json with the BOS template it does not state, tokenizerFiles)
    expect(fs.readFileSync(path.join(out, 'checkpoint', 'tokenizer.json'), 'utf8')).toBe(tokenizerFiles(tokFile)['tokenizer.json'].toString('utf8'));
    expect(readTrainerState(path.join(out, 'checkpoint')).state.globalStep).toBe(8);
  });
});
