// LLaVA's group_by_modality_length (src/train/sampler.ts): the sample order LLaVA's own functions give for the same
// permutations (tests/fixtures/sampler, scripts/make_sampler_fixture.py), its word counts, and the Trainer's use of it:
// each step one modality until the leftovers, a permutation every epoch, the same samples per step for any split of
// samplesPerStep into ranks x accumulation, checked stages, and resumes that would change the order refused.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { VwLmm } from '../../src/model/vwlmm';
import { lengthGroupedIndices, modalityLength, modalityLengthGroupedIndices } from '../../src/train/sampler';
import { batchIndices, Stage, Trainer } from '../../src/train/trainer';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { TextTokenizer } from '../../src/data/tokenizer';
import { prepareFile } from '../../src/train/from_file';
import { cli, tinyConfig, tinyData, tinyStages, writeCliFixture } from './support/tiny';

const tmp = tempDirs('sampler');
const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'sampler', 'expected.json'), 'utf8')) as {
  orders: { lengths: number[]; batch_size: number; world_size: number; perms: number[][]; order: number[] }[];
  lengths: { records: { image?: string; conversations: { value: string }[] }[]; lengths: number[] };
};

describe("LLaVA's group_by_modality_length order", () => {
  it("is LLaVA's, index for index, given LLaVA's permutations", () => {
    for (const c of fixture.orders) {
      const perms = c.perms.map((p) => p.slice());
      const randperm = (n: number) => {
        const p = perms.shift();
        expect(p?.length).toBe(n);
        return p!;
      };
      expect(modalityLengthGroupedIndices(c.lengths, c.batch_size, c.world_size, randperm)).toEqual(c.order);
      expect(perms).toEqual([]); // as many draws as LLaVA made
    }
  });

  it("counts words as LLaVA's modality_lengths (Python's str.split), a blank text record as -1", () => {
    const { records, lengths } = fixture.lengths;
    expect(records.map((r) => modalityLength(r.conversations, r.image !== undefined))).toEqual(lengths);
    expect(modalityLength([{ value: ' ' }, { value: '' }], false)).toBe(-1); // LLaVA's sampler asserts on its 0
  });

  it('refuses a zero length, as LLaVA asserts', () => {
    expect(() => modalityLengthGroupedIndices([3, 0, -2], 1, 1, (n) => Array.from({ length: n }, (_, i) => i)))
      .toThrow('modality length 1 must be a finite non-zero number (> 0: with an image, < 0: text only), got 0');
  });

  it('deals a sorted megabatch into batches of even total length', () => {
    // sorted longest first: 9 8 5 4 3 1 over 2 batches of 3 -> [9, 4, 3] (16) and [8, 5, 1] (14)
    const L = [9, 8, 5, 4, 3, 1];
    expect(lengthGroupedIndices(L, 3, 2, () => [5, 0, 3, 1, 4, 2])).toEqual([0, 3, 4, 1, 2, 5]);
  });
});

describe('Stage.modalityLengths in the Trainer', () => {
  const stage = (size: number, lengths: number[], batchSize: number, gradAccum: number): Stage => ({
    name: 's', size, modalityLengths: lengths, batchSize, gradAccum, lr: 1, trainable: { projector: true }, makeBatch: () => { throw new Error('unused'); },
  });
  // 30 image records and 13 text-only ones (i * 7 mod 43 runs over 0..42), of assorted lengths
  const lengths = Array.from({ length: 43 }, (_, i) => ((i * 7) % 43 < 30 ? 1 + ((i * 37) % 50) : -(1 + ((i * 11) % 20))));

  it('keeps each step to one modality until the leftovers, and every epoch is a permutation', () => {
    const s = stage(43, lengths, 2, 2); // 4 samples per step: 7 image steps, 3 text steps, then 2 + 1 leftovers
    const perStep = (step: number) => [0, 1].flatMap((m) => batchIndices(9, s, step, m));
    const stream = Array.from({ length: 22 }, (_, k) => perStep(k)).flat();
    const epoch = stream.slice(0, 43), next = stream.slice(43, 86);
    expect([...epoch].sort((a, b) => a - b)).toEqual(Array.from({ length: 43 }, (_, i) => i));
    for (let k = 0; k < 10; k++) expect(new Set(perStep(k).map((i) => lengths[i] > 0)).size).toBe(1);
    // the leftovers (2 image + 1 text record) come last, sorted by index, as LLaVA appends them
    const tail = perStep(10).slice(0, 3);
    expect(tail).toEqual([...tail].sort((a, b) => a - b));
    expect(tail.filter((i) => lengths[i] > 0)).toHaveLength(2);
    // the next epoch is another order of the same samples
    expect([...next].sort((a, b) => a - b)).toEqual(Array.from({ length: 43 }, (_, i) => i));
    expect(next).not.toEqual(epoch);
  });

  it('gives a step the same samples for any split of its samples into ranks x accumulation', () => {
    const accum = stage(43, lengths, 3, 2), ranks = stage(43, lengths, 3, 1);
    for (let step = 0; step < 6; step++) {
      const local = [0, 1].flatMap((m) => batchIndices(4, accum, step, m));
      const dp = [0, 1].flatMap((r) => batchIndices(4, ranks, step, 0, r, 2));
      expect(dp).toEqual(local); // rank r's micro-batch is LLaVA's chunk (micro x ranks + r)
    }
  });

  it('is checked with the stage', () => {
    const { tokenizer } = tinyData(4);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    try {
      expect(() => new Trainer(m, [stage(4, [1, 2, 3], 1, 1)], { seed: 1 })).toThrow("Trainer: stage 's': modalityLengths holds 3 lengths for 4 samples (size)");
      expect(() => new Trainer(m, [stage(3, [1, -0, 3], 1, 1)], { seed: 1 })).toThrow("Trainer: stage 's': modalityLengths[1] must be a finite non-zero number (> 0: with an image, < 0: text only), got 0");
      expect(() => new Trainer(m, [stage(2, [1, NaN], 1, 1)], { seed: 1 })).toThrow('modalityLengths[1] must be a finite non-zero number');
    } finally {
      m.dispose();
    }
  });

  it("refuses to resume with grouping switched on or off (the order would differ), and resumes with it kept", () => {
    const { tokenizer, json, samples, makeBatch } = tinyData(8);
    const grouped = () => tinyStages(makeBatch, samples.length, 3).map((s, i) => ({ ...s, modalityLengths: samples.map((_, k) => ((k + i) % 3 === 0 ? -2 : 5 + k)) }));
    const out = tmp();
    const run = (stages: Stage[], stopAfterSteps?: number) => {
      const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
      try {
        return new Trainer(m, stages, { seed: 3, outDir: out, autoResume: true, saveEvery: 1, stopAfterSteps, checkpointFiles: { tokenizer: json } }).run();
      } finally {
        m.dispose();
      }
    };
    run(grouped(), 2);
    expect(() => run(tinyStages(makeBatch, samples.length, 3), 0))
      .toThrow("resume: stage 'a' had samples grouped by modality and length (--group-by-modality-length) true in the checkpoint's run, this run has false");
    run(grouped()); // continues to the end
    // a checkpoint from before grouping existed (no such key) ordered its samples without it
    const stateFile = path.join(out, 'checkpoint', 'trainer_state.json');
    const st = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
    for (const x of st.stageSettings) delete x.groupByModalityLength;
    fs.writeFileSync(stateFile, JSON.stringify(st));
    expect(() => run(grouped(), 0)).toThrow("had samples grouped by modality and length (--group-by-modality-length) false in the checkpoint's run, this run has true");
  });
});

describe('vwlmm train --group-by-modality-length', () => {
  it("trains on the records' LLaVA lengths and records the grouping in the checkpoint", async () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 2 });
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image?: string; conversations: { value: string }[] }[];
    // every third record text-only (its placeholder and image key dropped)
    const mixed = recs.map((r, i) => (i % 3 ? r : { conversations: r.conversations.map((t) => ({ ...t, value: t.value.replace('<image>\n', '') })) }));
    const file = path.join(dir, 'mixed.json');
    fs.writeFileSync(file, JSON.stringify(mixed));
    const ck = loadCheckpoint(fx.init);
    try {
      const p = await prepareFile(ck.model, new TextTokenizer(fx.tokenizer), file, fx.imageFolder, true);
      expect(p.samples.map((x) => x.modalityLength)).toEqual(mixed.map((r) => modalityLength(r.conversations, r.image !== undefined)));
      expect(p.samples.filter((x) => x.modalityLength < 0)).toHaveLength(Math.ceil(mixed.length / 3));
    } finally {
      ck.model.dispose();
    }
    const out = path.join(dir, 'run');
    const r = cli('train', '--init', fx.init, '--data', file, '--image-folder', fx.imageFolder, '--out', out, '--steps', '2', '--batch-size', '2', '--group-by-modality-length');
    expect(r.status, r.stderr).toBe(0);
    const st = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint', 'trainer_state.json'), 'utf8'));
    expect(st.stageSettings[0].groupByModalityLength).toBe(true);
  });
});
