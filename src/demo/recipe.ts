// The Sort-of-CLEVR demo recipe: a small VW-LMM trained from scratch on the CPU in two stages.
//   stage 1 ("captions"): dense captions (every object's colour, shape and position words, all
//     supervised, LLaVA's `plain` template) teach the vision tower what the objects are and the decoder
//     the colour-keyed lookup from a word to its object: the long plateau of question-only training
//     (../shared/method/DEMO_NOTES.md) is a missing word -> object binding;
//   stage 2 ("questions"): multi-turn conversations of an image's questions (vicuna_v1, every answer
//     supervised) mixed with captions, so the binding is kept while the question kinds are learned.
// From scratch every part is trainable in both stages (LLaVA's frozen-LLM stage 1 assumes a pretrained
// LLM and tower). All sizes and budgets are fields of Recipe; the defaults are what the demo runs.
import { Turn } from '../data/conversation';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../model/config';
import { VwLmm } from '../model/vwlmm';
import { Generator } from '../random';
import { Stage, Trainer } from '../train/trainer';
import { Accuracy, evaluateSplit } from './evaluate';
import { renderScene, Scene } from '../data/sort_of_clevr';
import { batchOf, captionText, makeSplit, makeTokenizer, questionConversation, SplitData, TaskSample, tokenizeSamples } from './task';

export interface Recipe {
  seed: number;
  trainImages: number;
  testImages: number;
  model: { d: number; layers: number; heads: number; ffn: number; visionD: number; visionLayers: number; visionHeads: number; visionFfn: number; patch: number; projector: string; initStd: number };
  vmWeight: number;
  /** subsets: each caption image shows a random subset of 1..6 of the objects (binding is easy with few). */
  stage1: { steps: number; batchSize: number; lr: number; subsets: boolean };
  stage2: { steps: number; batchSize: number; lr: number; questionsPerSample: number; captionShare: number };
  evalEvery: number;
  evalQuestions: number;
}

export const DEFAULT_RECIPE: Recipe = {
  seed: 0,
  trainImages: 9800,
  testImages: 200,
  model: { d: 64, layers: 2, heads: 4, ffn: 128, visionD: 64, visionLayers: 2, visionHeads: 4, visionFfn: 128, patch: 15, projector: 'mlp2x_gelu', initStd: 0.05 },
  vmWeight: 1,
  stage1: { steps: 600, batchSize: 32, lr: 2e-3, subsets: true },
  stage2: { steps: 1500, batchSize: 16, lr: 1e-3, questionsPerSample: 8, captionShare: 0.25 },
  evalEvery: 250,
  evalQuestions: 600,
};

export function recipeConfig(r: Recipe, vocabSize: number): VwLmmConfig {
  const m = r.model;
  return {
    llm: { vocabSize, hiddenSize: m.d, intermediateSize: m.ffn, numLayers: m.layers, numHeads: m.heads, numKvHeads: m.heads, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 1024, initializerRange: m.initStd },
    vision: { hiddenSize: m.visionD, intermediateSize: m.visionFfn, numLayers: m.visionLayers, numHeads: m.visionHeads, imageSize: 75, patchSize: m.patch, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: m.initStd, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: m.projector, selectLayer: -1, selectFeature: 'patch', vmWeight: r.vmWeight, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 75, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

export interface RecipeResult {
  model: VwLmm;
  test: Accuracy;
  seconds: number;
  train: SplitData;
  testSplit: SplitData;
}

export function runRecipe(r: Recipe, opts: { outDir: string; onLog?: (rec: Record<string, unknown>) => void; tokenizerJson?: Record<string, unknown> }): RecipeResult {
  const t0 = Date.now();
  const gen = new Generator(r.seed);
  const { tokenizer, json } = makeTokenizer();
  const train = makeSplit(r.trainImages, gen.fork('train'), { nonRelational: 10, relational: 10 });
  const test = makeSplit(r.testImages, gen.fork('test'), { nonRelational: 10, relational: 10 });
  const cfg = recipeConfig(r, tokenizer.vocabSize);
  const model = VwLmm.create(cfg, r.seed);
  const P = model.numImageTokens;
  const bopts = { imageSize: 75, numPatches: P, padId: tokenizer.padId, mean: cfg.image.mean, std: cfg.image.std };
  // stage 1 images: the training scenes, or (subsets) each reduced to a random subset of its objects
  const capGen = gen.fork('caption-subsets');
  const capScenes = train.scenes.map((sc) => {
    if (!r.stage1.subsets) return sc;
    const k = 1 + capGen.int(sc.objects.length);
    const keep = capGen.shuffle(sc.objects.map((_, j) => j)).slice(0, k).sort((a, b) => a - b);
    return { objects: keep.map((j) => sc.objects[j]) };
  });
  const capSplit: SplitData = { scenes: capScenes, rgb: capScenes.map((sc, i) => (sc === train.scenes[i] ? train.rgb[i] : renderScene(sc))), questions: [] };
  const captionTurns = (sc: Scene): Turn[] => [{ from: 'human', value: '<image>' }, { from: 'gpt', value: captionText(sc) }];
  const captions = tokenizeSamples(capScenes.map((sc, i) => ({ image: i, turns: captionTurns(sc) })), tokenizer, 'plain').samples;
  const fullCaptions = tokenizeSamples(train.scenes.map((sc, i) => ({ image: i, turns: captionTurns(sc) })), tokenizer, 'plain').samples;
  // stage 2: each image's 20 questions split into conversations of questionsPerSample turns
  const k = r.stage2.questionsPerSample;
  const convs: { image: number; turns: Turn[] }[] = [];
  train.questions.forEach((qs, i) => {
    for (let s = 0; s < qs.length; s += k) convs.push({ image: i, turns: questionConversation(qs.slice(s, s + k)) });
  });
  const questions = tokenizeSamples(convs, tokenizer, 'vicuna_v1').samples;
  // the mixture: questions then captions; captionShare of the stage's samples are captions
  const nCap = Math.round((questions.length * r.stage2.captionShare) / (1 - r.stage2.captionShare));
  const mixed: TaskSample[] = [...questions, ...Array.from({ length: nCap }, (_, j) => fullCaptions[j % fullCaptions.length])];
  const all = { trainable: { visionTower: true, projector: true, llm: true, vmHead: true } };
  const stages: Stage[] = [
    { name: 'captions', size: captions.length, makeBatch: (idx: number[]) => batchOf(idx.map((i: number) => captions[i]), capSplit, bopts), steps: r.stage1.steps, batchSize: r.stage1.batchSize, lr: r.stage1.lr, warmupRatio: 0.03, ...all },
    { name: 'questions', size: mixed.length, makeBatch: (idx: number[]) => batchOf(idx.map((i: number) => mixed[i]), train, bopts), steps: r.stage2.steps, batchSize: r.stage2.batchSize, lr: r.stage2.lr, warmupRatio: 0.03, ...all },
  ].filter((s) => (s.steps ?? 0) > 0);
  const trainer = new Trainer(model, stages, {
    seed: r.seed, outDir: opts.outDir, evalEvery: r.evalEvery,
    evaluate: (m) => {
      const a = evaluateSplit(m, test, tokenizer, 'vicuna_v1', { maxQuestions: r.evalQuestions });
      return { accuracy: a.accuracy, nonRelational: a.groups['non-relational']?.accuracy ?? 0, relational: a.groups.relational?.accuracy ?? 0, ...Object.fromEntries(Object.entries(a.categories).map(([c, v]) => [`acc_${c}`, v.accuracy])) };
    },
    onLog: opts.onLog, checkpointFiles: { tokenizer: opts.tokenizerJson ?? json },
    logEvery: 10,
  });
  trainer.run();
  const acc = evaluateSplit(model, test, tokenizer, 'vicuna_v1');
  return { model, test: acc, seconds: (Date.now() - t0) / 1000, train, testSplit: test };
}
