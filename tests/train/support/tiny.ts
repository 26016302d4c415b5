// A tiny VW-LMM and Sort-of-CLEVR batches for the training tests (milliseconds per step), shared by the
// in-process tests and the child processes they start (train_child.ts).
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { saveCheckpoint } from '../../../src/model/checkpoint';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../../../src/model/config';
import { ModelBatch, VwLmm } from '../../../src/model/vwlmm';
import { sortOfClevrVocabulary, writeSortOfClevr } from '../../../src/data/sort_of_clevr';
import { writeWordLevelTokenizer } from '../../../src/data/word_level_tokenizer';
import { TextTokenizer } from '../../../src/data/tokenizer';
import { batchOf, makeSplit, makeTokenizer, questionConversation, tokenizeSamples } from '../../../src/demo/task';
import { Generator } from '../../../src/random';
import { Stage, Trainer, TrainerOptions } from '../../../src/train/trainer';

export function tinyConfig(vocabSize: number, vmWeight = 1): VwLmmConfig {
  return {
    llm: { vocabSize, hiddenSize: 16, intermediateSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.1 },
    vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 2, numHeads: 2, imageSize: 75, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 75, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

export function tinyData(n = 8) {
  const { tokenizer, json } = makeTokenizer();
  const split = makeSplit(n, new Generator(3), { nonRelational: 2, relational: 2 });
  const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
  const bopts = { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD };
  const makeBatch = (idx: number[]): ModelBatch => batchOf(idx.map((i) => samples[i]), split, bopts);
  return { tokenizer, json, split, samples, makeBatch };
}

/** A model's parameters by name, as float64 copies. */
export function weightsOf(m: VwLmm): Map<string, Float64Array> {
  return new Map([...m.namedParameters()].map(([n, p]) => [n, Float64Array.from(p.toArray() as Float32Array)]));
}

/** One Trainer run (seed 3, checkpoints in `out`) of a tiny model made with seed 5: its weights before and after. */
export function trainTiny(vocabSize: number, tokenizerJson: string | Record<string, unknown>, stages: Stage[], opts: Partial<TrainerOptions>, out: string): { w0: Map<string, Float64Array>; w1: Map<string, Float64Array> } {
  const m = VwLmm.create(tinyConfig(vocabSize), 5);
  try {
    const w0 = weightsOf(m);
    new Trainer(m, stages, { seed: 3, outDir: out, checkpointFiles: { tokenizer: tokenizerJson }, ...opts }).run();
    return { w0, w1: weightsOf(m) };
  } finally {
    m.dispose();
  }
}

/** Two stages as in LLaVA (projector + vm_head, then everything with accumulation) of `steps` steps each. */
export function tinyStages(makeBatch: (idx: number[]) => ModelBatch, size: number, steps = 4): Stage[] {
  return [
    { name: 'a', size, makeBatch, steps, batchSize: 2, lr: 3e-3, trainable: { visionTower: false, projector: true, llm: false, vmHead: true } },
    { name: 'b', size, makeBatch, steps, batchSize: 3, gradAccum: 2, lr: 2e-3, trainable: { visionTower: true, projector: true, llm: true, vmHead: true } },
  ];
}

/**
 * Files for CLI runs: a Sort-of-CLEVR test split (LLaVA JSON + PNGs, 20 questions per image) with its
 * word-level tokenizer, and a tiny initial checkpoint (vocabulary = the tokenizer's + vocabDelta).
 */
export function writeCliFixture(dir: string, opts: { images?: number; vocabDelta?: number } = {}): { init: string; data: string; imageFolder: string; tokenizer: string } {
  const dataDir = path.join(dir, 'data');
  writeSortOfClevr(dataDir, { train: 0, test: opts.images ?? 3, seed: 1 });
  const tokenizer = path.join(dataDir, 'tokenizer.json');
  writeWordLevelTokenizer(tokenizer, sortOfClevrVocabulary());
  const model = VwLmm.create(tinyConfig(new TextTokenizer(tokenizer).vocabSize + (opts.vocabDelta ?? 0)), 5);
  saveCheckpoint(path.join(dir, 'init'), model, { tokenizer });
  model.dispose();
  return { init: path.join(dir, 'init'), data: path.join(dataDir, 'test.json'), imageFolder: dataDir, tokenizer };
}

const root = path.join(__dirname, '..', '..', '..');
/** Runs the CLI from source (synchronously). */
export const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
/** Starts the CLI from source (for signals). */
export const cliAsync = (...args: string[]) => spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });

/** (globalStep, loss) of every train record of a metrics log. */
export function trainLosses(outDir: string): [number, number][] {
  return fs.readFileSync(path.join(outDir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((r) => r.type === 'train').map((r) => [r.globalStep, r.loss]);
}
