// The Trainer's API contract where a trial user found it loose: a resume refuses a model that does not hold the
// checkpoint's weights (the trainer state is the position and AdamW state only; TrainerState.weightsFingerprint), the
// options and stage names are checked before training, stopAfterSteps stops as an interruption does (a checkpoint at
// its step), the state run() returns is the one its last checkpoint records, the model's gradient checkpointing is
// back after a run (also one that failed), a stage with nothing to train is refused, and trainOnFile refuses unknown
// options.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { trainOnFile } from '../../src/train/from_file';
import { batchIndices, readTrainerState, Stage, Trainer, TrainerOptions, TrainerState } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData, tinyStages, trainLosses } from './support/tiny';

const tmp = tempDirs('trainer-api');

describe('Trainer API contract', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  // stage a: projector + vm_head, 3 steps; stage b: everything, 3 steps with accumulation
  const stages = () => tinyStages(makeBatch, samples.length, 3);
  const fresh = () => VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
  const trainer = (m: VwLmm, opts: Partial<TrainerOptions> = {}, s: Stage[] = stages()) => new Trainer(m, s, { seed: 9, checkpointFiles: { tokenizer: json }, ...opts });
  /** A run of a fresh model (disposed after): what run() returned. */
  const train = (opts: Partial<TrainerOptions>, resume?: ReturnType<typeof readTrainerState>, m = fresh()) => {
    try {
      return trainer(m, opts).run(resume);
    } finally {
      m.dispose();
    }
  };
  const position = (s: TrainerState) => ({ stage: s.stage, step: s.step, globalStep: s.globalStep });
  const saved = (out: string) => readTrainerState(path.join(out, 'checkpoint'));
  const full = tmp();
  const fullState = train({ outDir: full });

  it('run() returns the position its last checkpoint records: the last stage and its step count at the end', () => {
    expect(position(fullState)).toEqual({ stage: 1, step: 3, globalStep: 6 });
    expect(position(saved(full).state)).toEqual(position(fullState));
  });

  it('stopAfterSteps writes a checkpoint at its step (without saveEvery) and returns that checkpoint\'s state; a resume from it is exact', () => {
    const out = tmp();
    const st = train({ outDir: out, stopAfterSteps: 4 });
    expect(position(st)).toEqual({ stage: 1, step: 1, globalStep: 4 });
    expect(position(saved(out).state)).toEqual(position(st));
    const ck = loadCheckpoint(path.join(out, 'checkpoint'));
    train({ outDir: out }, saved(out), ck.model);
    expect(trainLosses(out)).toEqual(trainLosses(full));
    // at a stage's end: the stop is taken there (the next stage does not start), with the stage-end checkpoint
    const edge = tmp(), started: string[] = [];
    const atEdge = train({ outDir: edge, stopAfterSteps: 3, onStageStart: (_, s) => started.push(s.name) });
    expect(position(atEdge)).toEqual({ stage: 0, step: 3, globalStep: 3 });
    expect(position(saved(edge).state)).toEqual(position(atEdge));
    expect(started).toEqual(['a']);
    // at the run's last step it is the run's end (summary record included)
    const last = tmp(), records: Record<string, unknown>[] = [];
    expect(position(train({ outDir: last, stopAfterSteps: 6, onLog: (r) => records.push(r) }))).toEqual({ stage: 1, step: 3, globalStep: 6 });
    expect(records.at(-1)).toMatchObject({ type: 'summary', globalStep: 6 });
  });

  it("run(resume) and runAsync(resume) refuse a model without the checkpoint's weights, naming a parameter and how to load them", async () => {
    const out = tmp();
    train({ outDir: out, stopAfterSteps: 4 });
    const st = saved(out);
    // stage b trains every parameter of the model
    const m = fresh();
    expect(Object.keys(st.state.weightsFingerprint!).sort()).toEqual([...m.namedParameters().keys()].sort());
    const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
    // (stage b's first step ran at lr 0 (warmup): the weights stage a trained differ)
    const refusal = new RegExp(`^resume: the model's weights are not those of the checkpoint ${path.join(out, 'checkpoint').replace(/[.\\/]/g, '\\$&')}: 'model\\.mm_projector\\.0\\.weight' differs \\(and \\d+ more of the \\d+ parameters it trained\\)\\. The trainer state holds the position and the optimizer state, not the weights: load the model from the checkpoint \\(loadCheckpoint\\(.*\\)\\.model\\), or use autoResume: true`);
    expect(() => trainer(m, { outDir: out }).run(st)).toThrow(refusal);
    await expect(trainer(m, { outDir: out }).runAsync(st)).rejects.toThrow(refusal);
    // refused before the log was touched
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(metrics);
    // one weight changed in the loaded model: that one is named
    const ck = loadCheckpoint(path.join(out, 'checkpoint'));
    const [name, p] = [...ck.model.namedParameters()].find(([n]) => n.includes('mm_projector'))!;
    const values = p.toArray() as Float32Array;
    values[0] += 1;
    p.buffer.write(values);
    expect(() => trainer(ck.model, { outDir: out }).run(st)).toThrow(new RegExp(`'${name.replace(/\./g, '\\.')}' differs\\. The trainer state`));
    ck.model.dispose();
    m.dispose();
  });

  it('a checkpoint written before weights were fingerprinted resumes unchecked; a seed of 2^32 - 1 trains and resumes', () => {
    const out = tmp();
    train({ outDir: out, stopAfterSteps: 2 });
    const file = path.join(out, 'checkpoint', 'trainer_state.json');
    const st = JSON.parse(fs.readFileSync(file, 'utf8'));
    delete st.weightsFingerprint;
    fs.writeFileSync(file, JSON.stringify(st));
    expect(train({ outDir: out }, saved(out)).globalStep).toBe(6);
    const neg = tmp();
    train({ outDir: neg, seed: 2 ** 32 - 1, stopAfterSteps: 2 });
    expect(saved(neg).state.seed).toBe(2 ** 32 - 1);
    expect(train({ outDir: neg, seed: 2 ** 32 - 1, autoResume: true }).globalStep).toBe(6);
    // readTrainerState names what a seed must be (any integer)
    fs.writeFileSync(path.join(neg, 'checkpoint', 'trainer_state.json'), JSON.stringify({ ...saved(neg).state, seed: 0.5 }));
    expect(() => saved(neg)).toThrow(/trainer_state\.json: 'seed' must be an integer, got 0\.5$/);
  });

  it("a checkpoint whose position lies past the run's stages is refused naming its trainer_state.json", () => {
    const out = tmp();
    train({ outDir: out, stopAfterSteps: 2 });
    const file = path.join(out, 'checkpoint', 'trainer_state.json');
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), step: 500 }));
    let err: Error | null = null;
    try {
      train({ outDir: out }, saved(out));
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toContain(file);
    expect(err?.message).toMatch(/step 500/);
  });

  it('refuses option values that do not fit, naming Trainer, the option, what it takes and what it got', () => {
    const m = fresh();
    const refused: [Partial<TrainerOptions>, RegExp][] = [
      [{ saveEvery: -1, outDir: tmp() }, /^Trainer: expected an integer >= 0 \(0: only at the end of each stage\) for saveEvery but received -1 \(number\)$/],
      [{ logEvery: 0 }, /^Trainer: expected an integer >= 1 \(a train record every N steps\) for logEvery but received 0 \(number\)$/],
      [{ logEvery: NaN }, /for logEvery but received NaN \(number\)$/],
      [{ evalEvery: -1 }, /^Trainer: expected an integer >= 0 .* for evalEvery but received -1 \(number\)$/],
      [{ evalEvery: 1.5 }, /for evalEvery but received 1\.5 \(number\)$/],
      [{ stopAfterSteps: -1 }, /^Trainer: expected an integer >= 0 \(optimizer steps in total\) for stopAfterSteps but received -1 \(number\)$/],
      [{ nonFinite: 'ignore' as never }, /^Trainer: expected 'skip' or 'stop' for nonFinite but received 'ignore' \(string\)$/],
      [{ seed: 0.5 }, /^Trainer: expected an integer in \[0, 4294967295\] \(2\^32 would repeat seed 0's run\) for seed but received 0\.5 \(number\)$/],
      [{ seed: '0' as never }, /for seed but received '0' \(string\)$/],
      // 32-bit seeds: 2^32 trained seed 0's run again, and -1 seed 2^32 - 1's
      [{ seed: 2 ** 32 }, /for seed but received 4294967296 \(number\)$/],
      [{ seed: -1 }, /for seed but received -1 \(number\)$/],
      [{ gradientCheckpointing: 'yes' as never }, /^Trainer: expected a boolean for gradientCheckpointing but received 'yes' \(string\)$/],
      [{ stop: {} as never }, /^Trainer: expected a StopRequest for stop but received/],
      [{ gatherDtype: 'fp16' as never }, /^Trainer: expected 'float32' or 'bfloat16' for gatherDtype but received 'fp16'/],
      [{ checkpointFiles: { tokeniser: json } as never }, /^Trainer: unknown key of checkpointFiles 'tokeniser'/],
      // at construction, not at the first save steps later: the checkpoint's own files, and names that are paths
      [{ checkpointFiles: { extraFiles: { 'trainer_state.json': '{}' } } }, /^Trainer: expected a plain file name other than the checkpoint's own \(config\.json, model\.safetensors, trainer_state\.json, optimizer\.safetensors, stage_parameters\.safetensors\) for a name in checkpointFiles\.extraFiles but received 'trainer_state\.json'/],
      [{ checkpointFiles: { tokenizer: json, extraFiles: { 'tokenizer_config.json': '{}' } } }, /checkpoint's own \(config\.json, .*, tokenizer\.json, tokenizer_config\.json, .*\) for a name in checkpointFiles\.extraFiles but received 'tokenizer_config\.json'/],
      [{ checkpointFiles: { extraFiles: { 'sub/x.json': '{}' } } }, /for a name in checkpointFiles\.extraFiles but received 'sub\/x\.json'/],
      [{ checkpointFiles: { extraFiles: 'x' as never } }, /^Trainer: expected an object of file contents by file name for checkpointFiles\.extraFiles but received 'x'/],
    ];
    for (const [opts, message] of refused) expect(() => trainer(m, opts), JSON.stringify(opts)).toThrow(message);
    m.dispose();
  });

  it('refuses what is not a model, a stage of no samples that has steps to run, and a batch that is not a ModelBatch (naming the stage)', () => {
    expect(() => new Trainer(null as never, stages(), { seed: 0 })).toThrow(/^Trainer: expected a VwLmm for model but received null$/);
    const m = fresh();
    expect(() => trainer(m, {}, [{ ...stages()[0], size: 0 }])).toThrow(/^Trainer: stage 'a': has no samples \(size 0\) but \d+ steps to draw batches for$/);
    expect(() => trainer(m, {}, [{ ...stages()[0], makeBatch: () => ({}) as never }]).run()).toThrow(/^Trainer: stage 'a': the batch of makeBatch: expected a positive integer \(the number of rows\) for batch\.B but received undefined/);
    m.dispose();
  });

  it('batchIndices refuses arguments it would read as other indices or as nothing', () => {
    const s = { ...stages()[0], batchSize: 4, size: 64, gradAccum: 2 };
    expect(batchIndices(0, s, 1, 1, 1, 2)).toHaveLength(4);
    const cases: [unknown[], RegExp][] = [
      [[0, s, -1, 0, 0, 1], /^batchIndices: expected an integer in \[0, \d+\) for step but received -1/],
      [[0, s, 1.5, 0, 0, 1], /for step but received 1\.5/],
      [[0, 'a', 1, 0, 0, 1], /^batchIndices: expected a Stage .* for s but received 'a'/],
      [[0, s, 1, 0, 5, 2], /^batchIndices: expected an integer in \[0, 2\) for rank but received 5/],
      [[0, s, 1, 2, 0, 1], /^batchIndices: expected an integer in \[0, 2\) for micro but received 2/],
      [[0, s, 1, 0, 0, 0], /^batchIndices: expected a positive integer for worldSize but received 0/],
      [[0, { ...s, size: 0 }, 0, 0, 0, 1], /^batchIndices: stage 'a' has no samples to draw from \(size 0\)/],
      [[-1, s, 0, 0, 0, 1], /^batchIndices: expected an integer in \[0, 4294967295\] for seed but received -1/],
    ];
    for (const [args, message] of cases) expect(() => (batchIndices as (...a: unknown[]) => number[])(...args), String(args)).toThrow(message);
  });

  it('refuses empty and repeated stage names (a name keys its stage\'s sample order) and a stage with nothing to train', () => {
    const m = fresh();
    expect(() => trainer(m, {}, [stages()[0], { ...stages()[1], name: 'a' }])).toThrow(/^Trainer: stages 0 and 1 are both named 'a': stage names must differ/);
    expect(() => trainer(m, {}, [{ ...stages()[0], name: '' }])).toThrow(/^Trainer: expected a non-empty string \(it keys the stage's sample order\) for a stage's name but received '' \(string\)$/);
    expect(() => trainer(m, {}, [{ ...stages()[0], name: undefined as never }])).toThrow(/for a stage's name but received undefined$/);
    m.dispose();
    // plain LLaVA (vmWeight 0) has no vm_head
    const llava = VwLmm.create(tinyConfig(tokenizer.vocabSize, 0), 5);
    expect(llava.vm_head).toBeNull();
    expect(() => trainer(llava, {}, [{ ...stages()[0], trainable: { vmHead: true } }]).run()).toThrow(/^Trainer: stage 'a': has no parameters to train: trainable \{"vmHead":true\} selects none/);
    llava.dispose();
  });

  it("gradientCheckpointing applies while a run lasts: the model's own setting is back after run(), runAsync() and a run that threw", async () => {
    const m = fresh();
    expect(m.gradientCheckpointing).toBe(false);
    const during: boolean[] = [];
    const opts = { gradientCheckpointing: true, onStageStart: (x: VwLmm) => during.push(x.gradientCheckpointing) };
    const t = trainer(m, opts);
    expect(m.gradientCheckpointing).toBe(false); // not at construction either
    t.run();
    expect(m.gradientCheckpointing).toBe(false);
    await trainer(m, opts).runAsync();
    expect(m.gradientCheckpointing).toBe(false);
    const failing = stages().map((s) => ({ ...s, makeBatch: () => {
      throw new Error('no batch');
    } }));
    expect(() => trainer(m, opts, failing).run()).toThrow('no batch');
    expect(m.gradientCheckpointing).toBe(false);
    expect(during).toEqual([true, true, true, true, true]);
    // the other way round: a model that recomputes keeps doing so after a run that turned it off
    m.gradientCheckpointing = true;
    trainer(m, { gradientCheckpointing: false, onStageStart: (x) => during.push(x.gradientCheckpointing) }, [stages()[0]]).run();
    expect(during.at(-1)).toBe(false);
    expect(m.gradientCheckpointing).toBe(true);
    m.dispose();
  });

  it('trainOnFile refuses an unknown option (or LoRA key) before it reads anything', async () => {
    const m = fresh();
    const o = {
      data: '/nonexistent.json', imageFolder: '/nonexistent', outDir: tmp(), batchSize: 1, gradAccum: 1, lr: 1e-3, warmupRatio: 0, weightDecay: 0,
      maxGradNorm: 1, seed: 1, saveEvery: 0, trainable: { projector: true }, strict: false,
    };
    await expect(trainOnFile(m, tokenizer, 'tokenizer.json', { ...o, saveEvy: 1 } as never)).rejects.toThrow(/^trainOnFile: unknown option 'saveEvy'.*; known: data, imageFolder, /);
    await expect(trainOnFile(m, tokenizer, 'tokenizer.json', { ...o, save_every: 1 } as never)).rejects.toThrow(/unknown option 'save_every' \(did you mean 'saveEvery'\?\)/);
    await expect(trainOnFile(m, tokenizer, 'tokenizer.json', { ...o, lora: { r: 2, alpha: 4, dropout: 0, rank: 2 } } as never)).rejects.toThrow(/^trainOnFile: unknown key of lora 'rank'/);
    m.dispose();
  });
});
