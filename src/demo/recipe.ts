// The Sort-of-CLEVR demo recipe: a small VW-LMM trained from scratch on the CPU in three stages.
//   stage 0 ("vision", src/demo/vision_pretrain.ts): the vision tower alone learns the objects' attributes,
//     standing in for the pretrained CLIP tower LLaVA starts from (a Trainer of its own, writing nothing to
//     outDir: the run's checkpoint and metrics are those of stages 1 and 2);
//   stage 1 ("captions"): dense captions (every object's colour, shape and position words, all
//     supervised, LLaVA's `plain` template) teach the vision tower what the objects are and the decoder
//     the colour-keyed lookup from a word to its object: the long plateau of question-only training
//     (../shared/method/DEMO_NOTES.md) is a missing word -> object binding;
//   stage 2 ("questions"): multi-turn conversations of an image's questions (vicuna_v1, every answer
//     supervised) mixed with captions, so the binding is kept while the question kinds are learned.
// From scratch the LLM is trainable in both stages (LLaVA's frozen-LLM stage 1 assumes a pretrained LLM);
// after stage 0 the tower is frozen (stage0.frozenSteps, stage2.visionTowerLr; by default for the whole run).
// All sizes and budgets are fields of Recipe; the defaults are what the demo runs.
import * as fs from 'fs';
import * as path from 'path';
import { ComputeDtype, defaultComputeDtype, parseComputeDtype } from '../amp';
import { DeviceSpec, parseDevice } from '../device';
import { tokenizeConversation, Turn } from '../data/conversation';
import { TextTokenizer } from '../data/tokenizer';
import * as F from '../functional';
import { resolveCheckpointDir, saveCheckpoint } from '../model/checkpoint';
import { VwLmmConfig } from '../model/config';
import { VwLmm } from '../model/vwlmm';
import { Generator } from '../random';
import { Tensor } from '../tensor';
import { installStopHandlers, StopRequest } from '../train/interrupt';
import { checkResumePlan, readTrainerState, Stage, Trainer } from '../train/trainer';
import { Accuracy, CAPTION_WORDS, captionWordAccuracies, evaluateSplit } from './evaluate';
import { answerFor, questionText, renderScene, Scene, sortOfClevrImageName } from '../data/sort_of_clevr';
import { pretrainVisionTower, rankShare } from './vision_pretrain';
import type { ProcessGroup } from '../distributed/process_group';
import type { SceneImageWriter } from '../data/scene_writer';
import { RecordStage, reproduceScript, StageConversation, stageSamples, writeStageFiles } from './reproduce';
import { stageBatches, captionText, makeSplit, positionCaptionText, sceneGridText, makeTokenizer, questionConversation, SplitData, TaskSample } from './task';

export interface Recipe {
  seed: number;
  trainImages: number;
  testImages: number;
  model: { d: number; layers: number; heads: number; ffn: number; visionD: number; visionLayers: number; visionHeads: number; visionFfn: number; patch: number; projector: string; initStd: number; selectFeature?: 'patch' | 'cls_patch';
    /** Std of the vision tower's position embeddings at init (CLIP's: initStd). */
    positionInitStd?: number };
  /** Pixel normalisation mean and std (per channel, on [0, 1] values). */
  imageMean: [number, number, number];
  imageStd: [number, number, number];
  vmWeight: number;
  /**
   * 'embedding': as stage 1 begins (after the text stage), vm_head starts as a copy of the word embeddings, so a patch's
   * first visual word is the word whose embedding its feature is most like (an experiment of issue 13; absent: vm_head
   * keeps its random init, as the official code's nn.Linear).
   */
  vmHeadInit?: 'embedding';
  /**
   * The PIF variant (VISUAL_WORDS.md section 3): the LLM reads each patch as its visual word's mixture of word
   * embeddings, softmax(vm_head(x)) . E, instead of x. Default false.
   */
  pif?: boolean;
  /** Detach the KL's target (the visual word) from the graph, an ablation of the paper's objective. Default false. */
  detachTarget?: boolean;
  /**
   * Stage 0: vision tower pretraining on object attributes (src/demo/vision_pretrain.ts); 0 steps = none.
   * frozenSteps: the first stage-1 steps keep the tower frozen (as LLaVA keeps its pretrained CLIP tower)
   * while the LLM learns to read it; trained from then on. Trained from the start, the random LLM's
   * gradients wiped the tower's shape features (caption shape words 50%).
   */
  stage0: { steps: number; batchSize: number; lr: number; frozenSteps: number;
    /** How stage 0 reads an object's attributes from the tower (VisionPretrainOptions.readout; default 'attention'). */
    readout?: 'attention' | 'object' | 'both' };
  /**
   * subsets: each caption image shows a random subset of 1..maxObjects of its objects (binding a colour
   * word to its object is easy with few objects). warmupObjects/warmupSteps: a first caption stage with
   * at most that many objects (a growing curriculum); 0 steps = none.
   */
  stage1: { steps: number; batchSize: number; lr: number; subsets: boolean; warmupObjects: number; warmupSteps: number; relational: boolean;
    /**
     * Keep the LLM (embeddings, decoder, lm_head) frozen through stage 1, as VW-LMM and LLaVA do: the projector and
     * vm_head learn to speak to a language model that already exists (pair it with `text`).
     */
    freezeLlm?: boolean;
    /**
     * The share of the captions, stage 1's and stage 2's, that are position captions (positionCaptionText: "red left top
     * , green right bottom , ..."), drawn per caption. In the full caption the colour word is followed by the shape, so
     * its look-up of the object must carry the shape, but nothing asks it for the position first-hand; on the left/top
     * plateau's first form that look-up carried the shape and not the position (benchmarks/route_probe.ts, RESULTS.md).
     * Absent or 0: none.
     */
    positionCaptions?: number };
  /**
   * The text stage before stage 1 (VW-LMM starts from a pretrained Vicuna): the LLM alone learns the scene language
   * from text, every token supervised: each training image's caption and its questions with their answers, with no
   * image. Absent or 0 steps: none.
   */
  text?: { steps: number; batchSize: number; lr: number;
    /**
     * Also each training scene written out patch by patch (sceneGridText: the colour of the object on each patch, "."
     * elsewhere) followed by its caption: text in which words name what is where, in the image tokens' positions.
     */
    grid?: boolean | 'nearest' };
  /**
   * describeTurns: extra turns per conversation asking "What is the {colour} object?" answered with its
   * attribute words (as in the caption: "circle left top", plus the relational words with
   * stage1.relational): dense supervision for binding the question's colour word to its object.
   * positionTurns: extra left/top questions per conversation (colour and kind drawn at random): the yes/no
   * answers need the question kind crossed with the object's position, which the other kinds never train.
   * positionPairs: extra pairs per conversation of the left and the top question about one object (in random order):
   * two questions that differ only in the kind word, whose answers differ whenever the object's two position bits do.
   * On the left/top plateau the model answered both kinds from one bit (RESULTS.md); a pair makes that cost a token.
   */
  stage2: { steps: number; batchSize: number; lr: number; questionsPerSample: number; captionShare: number; describeTurns: number; positionTurns?: number; positionPairs?: number;
    /**
     * A first stage-2 phase of this many steps (before `steps`, same batch and lr) whose conversations hold only the
     * non-relational questions (shape, left, top), with the same describe turns and caption share: a curriculum for
     * the left/top yes/no answers, which need the question kind crossed with the object's position and otherwise
     * sometimes stay on a plateau (RESULTS.md). Absent or 0: none.
     */
    nonRelationalSteps?: number;
    /** The vision tower's peak learning rate in stage 2 (LLaVA's mm_vision_tower_lr): absent = lr, 0 = frozen. */
    visionTowerLr?: number };
  evalEvery: number;
  evalQuestions: number;
}

export const DEFAULT_RECIPE: Recipe = {
  seed: 0,
  trainImages: 9800,
  testImages: 200,
  // 8 heads in both towers: binding a colour word to its object broke earlier than with 4 (RESULTS.md)
  // a 3-layer tower with FFN 256: the relational attributes come from tower depth and width (stage-0 read-out
  // closest / furthest 66% / 72% with 2 layers and FFN 128, 87% / 94% with this tower)
  model: { d: 64, layers: 2, heads: 8, ffn: 128, visionD: 64, visionLayers: 3, visionHeads: 8, visionFfn: 256, patch: 15, projector: 'mlp2x_gelu', initStd: 0.05,
    // 10x CLIP's: after the pre-LayerNorm an object patch's content dwarfs a 0.05 position code (stage-0
    // left/top 62% -> 78%)
    positionInitStd: 0.5 },
  // white background -> 0: a patch's embedding is the sum of its object pixels only (caption words 84%
  // after 2,000 steps, against 61% with CLIP's normalisation)
  imageMean: [1, 1, 1],
  imageStd: [0.5, 0.5, 0.5],
  vmWeight: 1,
  // stage 0 of 6,000 steps teaches the tower every attribute (read-out >= 99% shape / left / top, 89-90% closest,
  // 96% furthest, 97% count); the tower then stays frozen, as LLaVA keeps its CLIP tower: trained further by the
  // LLM's gradients it lost the vertical position (a probe of its features: 61%). The 'both' read-out puts the
  // relations on the object's own patches, where the LLM looks them up by the colour word: with the attention
  // read-out alone a probe there found closest / furthest at 66%, and the demo answered 68-69% / 76-83%; with 'both'
  // 88% / 96-98% (benchmarks/RESULTS.md)
  stage0: { steps: 6000, batchSize: 32, lr: 3e-3, frozenSteps: 1000, readout: 'both' },
  // relational captions: each object's closest / furthest shapes and same-shape count as dense targets.
  // positionCaptions 0.25: a quarter of the captions name each object's colour and position only, so the colour word's
  // look-up of its object must carry the position first-hand; without them about 1 run in 8 stayed on the left/top
  // plateau (seed 0 with Cooperlake at 71.4%, seed 3 at 82.9%), with them every named run held; at 0.5 the shape
  // suffered instead (seed 1: 87.7%) (RESULTS.md)
  stage1: { steps: 1000, batchSize: 32, lr: 3e-3, subsets: true, warmupObjects: 2, warmupSteps: 0, relational: true, positionCaptions: 0.25 },
  // positionPairs: without them the left/top yes/no answers stayed on a plateau (both kinds answered from one position
  // bit, or one bit hardly read: left or top 58-69%) on 2 of 4 runs (seeds 0-2, and seed 0 with OpenBLAS's Cooperlake
  // kernels); with 2 pairs a conversation on 1 of 6 (seed 1, Cooperlake), with 4 on 1 of 5 and relational accuracy
  // lower (RESULTS.md). 6,000 steps rather than 3,000: runs leave the plateau one position bit at a time, some only
  // after step 3,000 (seed 2 with Cooperlake: top 61% at 3,000, 100% at 4,000), where the cosine schedule of a shorter
  // stage has decayed its rate (with 4,500 steps that run stopped half way, top 77%; with 3,000 seed 1 with Cooperlake
  // stayed on the plateau, 73%)
  stage2: { steps: 6000, batchSize: 16, lr: 2e-3, questionsPerSample: 8, captionShare: 0.25, describeTurns: 3, positionPairs: 2, visionTowerLr: 0 },
  evalEvery: 1000,
  evalQuestions: 600,
};

/**
 * The paper's schedule at demo scale: a text stage first (the stand-in for the pretrained LLM), then stage 1 with the
 * LLM frozen while the projector and vm_head learn (CE + KL), then stage 2 with everything but the tower trained.
 */
export function paperSchedule(r: Recipe): Recipe {
  return { ...r, text: r.text ?? { steps: 3000, batchSize: 32, lr: 3e-3 }, stage1: { ...r.stage1, freezeLlm: true } };
}

export function recipeConfig(r: Recipe, vocabSize: number): VwLmmConfig {
  const m = r.model;
  return {
    llm: { vocabSize, hiddenSize: m.d, intermediateSize: m.ffn, numLayers: m.layers, numHeads: m.heads, numKvHeads: m.heads, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 1024, initializerRange: m.initStd },
    vision: { hiddenSize: m.visionD, intermediateSize: m.visionFfn, numLayers: m.visionLayers, numHeads: m.visionHeads, imageSize: 75, patchSize: m.patch, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: m.initStd, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: m.projector, selectLayer: -1, selectFeature: m.selectFeature ?? 'patch', vmWeight: r.vmWeight, pif: r.pif ?? false, detachTarget: r.detachTarget ?? false,
    template: 'vicuna_v1', image: { size: 75, mean: [...r.imageMean] as [number, number, number], std: [...r.imageStd] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

export interface RecipeResult {
  model: VwLmm;
  /** The vision tower's weights after stage 0 (host copies), to hand to another run (`pretrainedTower`); null without stage 0. */
  tower: Map<string, Float32Array> | null;
  /** Accuracy on the validation split (what recipes are tuned on; the demo scores data/test.json instead: validate false). */
  val: Accuracy;
  seconds: number;
  train: SplitData;
  valSplit: SplitData;
}

export interface RunRecipeOptions {
  outDir: string;
  /** Where the model is created and trains: 'cpu' (default), 'cuda' or 'cuda:N'. */
  device?: DeviceSpec;
  /** The compute dtype of every stage (TrainerOptions.dtype): default bf16 on CUDA, fp32 on the CPU. */
  dtype?: ComputeDtype;
  /** TrainerOptions.replay for every stage (default true): steps replayed as op programs, the same numbers bit for bit. */
  replay?: boolean;
  onLog?: (rec: Record<string, unknown>) => void;
  tokenizerJson?: Record<string, unknown>;
  /** Continue from the newest complete checkpoint in outDir (stage 0 is skipped: its tower is in it). */
  resume?: boolean;
  /** SIGINT / SIGTERM stop training after the current step with a checkpoint (TrainingInterrupted). */
  handleSignals?: boolean;
  /**
   * The tower weights another run of the same recipe and seed got from stage 0 (RecipeResult.tower): loaded
   * instead of running stage 0 again, which would give the same weights (stage 0 sees neither the LLM nor
   * vmWeight). The demo's ablation uses it.
   */
  pretrainedTower?: Map<string, Float32Array>;
  /**
   * Data-parallel over this group (every rank calls runRecipe with the same recipe): the recipe's batch sizes stay
   * the global ones, each rank takes its share (TrainerOptions.processGroup); the ranks end with the same model.
   */
  processGroup?: ProcessGroup;
  /**
   * Write what `vwlmm train` needs to run stages 1 and 2 again (src/demo/reproduce.ts): their LLaVA files under
   * dataDir (which must hold writeSortOfClevr's files of this seed and trainImages), <outDir>/init and
   * <outDir>/reproduce.sh. `writer`: writes the caption subsets' images (await its flush() before they are read).
   */
  reproduce?: { dataDir: string; writer?: SceneImageWriter };
  /** Write a train record every N steps (default 10; stage 0's default 100). */
  logEvery?: number;
  /** TrainerOptions.reportTo: ['tensorboard'] also writes the stages' train and eval scalars in <outDir>/runs (stage 0's read-out has no log). */
  reportTo?: readonly 'tensorboard'[];
  /**
   * Answer every question of the validation split at the end (RecipeResult.val; default true). false: val is null,
   * for a caller that scores a test set of its own (the demo answers data/test.json).
   */
  validate?: boolean;
}

/** Questions per image of the splits (writeSortOfClevr's defaults: data/train.json holds the same). */
const QUESTIONS_PER_IMAGE = { nonRelational: 10, relational: 10 };

/**
 * The recipe's generator and the streams its splits are drawn from, forked in this order (the run's later draws
 * depend on it): the training split, and the validation split every evaluation during training (and stage 0's
 * read-out) uses, to tune on, never the test set the demo scores (data/test.json).
 */
function recipeStreams(seed: number): { gen: Generator; train: Generator; val: Generator } {
  const gen = new Generator(seed);
  const train = gen.fork('train');
  return { gen, train, val: gen.fork('val') };
}

/** The validation split of a run with this seed: `images` (the recipe's testImages) images, drawn as runRecipe draws it. */
export function validationSplit(seed: number, images: number): SplitData {
  return makeSplit(images, recipeStreams(seed).val, QUESTIONS_PER_IMAGE);
}

/**
 * The Trainer's stages of a run of this recipe, by name and steps, as runRecipe builds them (it checks that it does):
 * what the recipe alone decides of a checkpoint's run, without its data.
 */
export function recipeStagePlan(r: Recipe): { name: string; steps: number }[] {
  const frozen = r.stage0.steps > 0 ? Math.min(r.stage0.frozenSteps, r.stage1.steps) : 0;
  return [
    { name: 'text', steps: r.text?.steps ?? 0 },
    { name: 'captions-warmup', steps: r.stage1.warmupSteps },
    { name: 'captions-frozen-tower', steps: frozen },
    { name: 'captions', steps: r.stage1.steps - frozen },
    { name: 'questions-non-relational', steps: r.stage2.nonRelationalSteps ?? 0 },
    { name: 'questions', steps: r.stage2.steps },
  ].filter((s) => s.steps > 0);
}

/**
 * The file each checkpoint of runRecipe holds beside config.json: what config.json does not record of how the run
 * trained, its compute dtype ({ "dtype": "float32" | "bfloat16" }, as the Trainer ran it). Checkpoints written before it
 * existed lack it (their dtype is not checked on resume).
 */
export const RECIPE_RUN_FILE = 'recipe_run.json';

/** The ablation arm of a recipe (`vwlmm demo --ablation`, its llava/ run): the same run with vmWeight 0, not PIF. */
export function ablationRecipe(r: Recipe): Recipe {
  return { ...r, vmWeight: 0, pif: false };
}

/** The CLI's spelling of a compute dtype (--dtype bf16 / fp32). */
const dtypeFlag = (d: ComputeDtype) => `--dtype ${d === 'bfloat16' ? 'bf16' : 'fp32'}`;

/** A JSON file's object, or null where it is absent or not a readable JSON object (then nothing is checked against it). */
function readJsonObject(f: string): Record<string, unknown> | null {
  try {
    const j: unknown = JSON.parse(fs.readFileSync(f, 'utf8'));
    return j !== null && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Refuses, before anything is written, a resume of runRecipe(r, { outDir, resume: true, dtype, device }) that would not
 * continue the checkpoint's run exactly: what the Trainer would refuse as it starts (its checkResume rules, on what the
 * recipe alone decides: the seed, the stages' names and steps), in its words; the model's variant against the one
 * config.json records (vm_pif, vm_detach_target, vm_weight: `vwlmm demo --pif`, `--detach-target`, the --ablation arm);
 * and the compute dtype (`dtype`, else the device's default) against the one RECIPE_RUN_FILE records. The demo checks it
 * before it writes its data set and reproduce files, runRecipe before it trains. No checkpoint in outDir: nothing to check.
 */
export function checkRecipeResume(r: Recipe, outDir: string, run: { dtype?: ComputeDtype; device?: DeviceSpec } = {}): void {
  const dir = resolveCheckpointDir(path.join(outDir, 'checkpoint'));
  if (dir === null || !fs.existsSync(path.join(dir, 'trainer_state.json'))) return;
  const again = 'resume with the recipe the checkpoint\'s run had (vwlmm demo: the same --scale, --seed and --schedule)';
  checkResumePlan(readTrainerState(dir).state, r.seed, recipeStagePlan(r), dir, again);
  const it = `the checkpoint ${dir}`, exactly = 'the run would not continue exactly';
  // the variant: what config.json records of the model the checkpoint's run built (keys it lacks are not checked)
  const config = readJsonObject(path.join(dir, 'config.json'));
  if (config) {
    const flag = (name: string, key: string, was: unknown, is: boolean) => {
      if (typeof was !== 'boolean' || was === is) return;
      throw new Error(`resume: ${it} was trained with ${key} ${was} (config.json), this run has ${key} ${is} (${is ? `with ${name}` : `without ${name}`}): ${exactly}; resume ${was ? 'with' : 'without'} ${name}, as the run was started`);
    };
    flag('--pif', 'vm_pif', config.vm_pif, r.pif ?? false);
    flag('--detach-target', 'vm_detach_target', config.vm_detach_target, r.detachTarget ?? false);
    if (typeof config.vm_weight === 'number' && config.vm_weight !== r.vmWeight)
      throw new Error(`resume: ${it} was trained with vm_weight ${config.vm_weight} (config.json), this run has vmWeight ${r.vmWeight}: ${exactly}; resume with the recipe's vmWeight the run was started with (vwlmm demo: vw/ is the VW-LMM run, llava/ the --ablation run with vmWeight 0)`);
  }
  // the compute dtype, as RECIPE_RUN_FILE records it. Refused, where the Trainer lets a resume change precision with a
  // warning: a demo run is a recorded experiment whose reproduce.sh replays its stages in one dtype, which a run of
  // mixed precision would not reproduce
  const recorded = readJsonObject(path.join(dir, RECIPE_RUN_FILE))?.dtype;
  if (recorded === 'float32' || recorded === 'bfloat16') {
    const device = parseDevice('checkRecipeResume', run.device ?? 'cpu').device;
    const dtype = run.dtype === undefined ? defaultComputeDtype(device) : parseComputeDtype('checkRecipeResume', run.dtype);
    if (dtype !== recorded)
      throw new Error(`resume: ${it} was trained in compute dtype ${recorded} (${dtypeFlag(recorded)}, ${RECIPE_RUN_FILE}), this run would train in ${dtype} (${run.dtype === undefined ? `no --dtype: the default on ${device === 'cpu' ? 'the CPU' : 'CUDA'}` : dtypeFlag(dtype)}): ${exactly}; resume with ${dtypeFlag(recorded)}, as the run was started`);
  }
}

/** Trains a model by the recipe (async: the trainer yields between steps, so signals are handled). */
export async function runRecipe(r: Recipe, opts: RunRecipeOptions & { validate: false }): Promise<Omit<RecipeResult, 'val'> & { val: null }>;
export async function runRecipe(r: Recipe, opts: RunRecipeOptions): Promise<RecipeResult>;
export async function runRecipe(r: Recipe, opts: RunRecipeOptions): Promise<Omit<RecipeResult, 'val'> & { val: Accuracy | null }> {
  const t0 = Date.now();
  // a resume that would not continue the checkpoint's run exactly, refused before anything is built or written
  if (opts.resume) checkRecipeResume(r, opts.outDir, { dtype: opts.dtype, device: opts.device });
  const streams = recipeStreams(r.seed), gen = streams.gen;
  const { tokenizer, json } = makeTokenizer();
  const train = makeSplit(r.trainImages, streams.train, QUESTIONS_PER_IMAGE);
  const val = makeSplit(r.testImages, streams.val, QUESTIONS_PER_IMAGE);
  const cfg = recipeConfig(r, tokenizer.vocabSize);
  const model = VwLmm.create(cfg, r.seed, { device: opts.device });
  try {
    return await trainByRecipe(r, opts, model, { t0, gen, tokenizer, json, train, val, cfg });
  } catch (e) {
    model.dispose(); // the caller never gets it: release its native memory now
    throw e;
  }
}

/**
 * The text stage (Recipe.text): the LLM alone, on each training image's caption and on its questions with their
 * answers as text (vicuna_v1, no image), every token supervised: the language a pretrained LLM would bring. Its own
 * loss: next-token cross-entropy over the LLM's embeddings, decoder and lm_head; nothing else trains.
 */
function textStage(t: NonNullable<Recipe['text']>, train: SplitData, tokenizer: TextTokenizer, relational: boolean, patch: number): Stage {
  const texts: number[][] = [];
  train.scenes.forEach((sc, i) => {
    texts.push(tokenizer.encode(captionText(sc, relational), { addBos: true }));
    if (t.grid) texts.push(tokenizer.encode(`${sceneGridText(sc, 75, patch, t.grid === 'nearest' ? 'nearest' : 'object')} ${captionText(sc, relational)}`, { addBos: true }));
    const turns = questionConversation(train.questions[i]).map((x) => ({ ...x, value: x.value.replace('<image>\n', '') }));
    texts.push(tokenizeConversation(turns, tokenizer, 'vicuna_v1').inputIds);
  });
  return {
    name: 'text', size: texts.length, steps: t.steps, batchSize: t.batchSize, lr: t.lr, warmupRatio: 0.03,
    trainable: { visionTower: false, projector: false, llm: true, vmHead: false },
    loss: (m, idx) => {
      const seqs = idx.map((i) => texts[i]);
      const B = seqs.length, T = Math.max(...seqs.map((x) => x.length));
      const ids = new Int32Array(B * T).fill(tokenizer.padId), mask = new Int32Array(B * T), targets = new Int32Array(B * T).fill(-100);
      seqs.forEach((x, b) => x.forEach((id, j) => {
        ids[b * T + j] = id;
        mask[b * T + j] = 1;
        if (j + 1 < x.length) targets[b * T + j] = x[j + 1];
      }));
      const dev = { device: m.device };
      const e = m.model.embed_tokens.forward(Tensor.fromArray(ids, [B, T], dev));
      const h = m.model.forward(e, { keyMask: Tensor.fromArray(mask, [B, T], dev) }).last;
      return F.linearCrossEntropy(F.reshape(h, [B * T, m.config.llm.hiddenSize]), m.lm_head.weight, Tensor.fromArray(targets, [B * T], dev));
    },
  };
}

/** Writes another run's stage-0 tower into the model, after checking that it fits name by name. */
function loadTower(model: VwLmm, weights: Map<string, Float32Array>): void {
  const params = model.visionTower.namedParameters();
  for (const [name, t] of params) {
    const w = weights.get(name);
    if (!w || w.length !== t.size) throw new RangeError(`runRecipe: pretrainedTower has no ${t.size}-value '${name}' (made by another recipe?)`);
  }
  if (weights.size !== params.size) throw new RangeError(`runRecipe: pretrainedTower has ${weights.size} tensors, the tower ${params.size}`);
  for (const [name, t] of params) t.buffer.write(weights.get(name)!);
}

async function trainByRecipe(r: Recipe, opts: RunRecipeOptions, model: VwLmm, c: {
  t0: number; gen: Generator; tokenizer: TextTokenizer; json: Record<string, unknown>; train: SplitData; val: SplitData; cfg: VwLmmConfig;
}): Promise<Omit<RecipeResult, 'val'> & { val: Accuracy | null }> {
  const { t0, gen, tokenizer, json, train, val, cfg } = c;
  if (r.model.positionInitStd !== undefined) {
    const pe = model.visionTower.vision_model.embeddings.position_embedding.weight;
    const k = r.model.positionInitStd / r.model.initStd;
    pe.buffer.write((pe.toArray() as Float32Array).map((v) => v * k));
  }
  const resuming = !!opts.resume && resolveCheckpointDir(path.join(opts.outDir, 'checkpoint')) !== null;
  let tower: Map<string, Float32Array> | null = null;
  if (r.stage0.steps > 0 && !resuming && opts.pretrainedTower) {
    loadTower(model, opts.pretrainedTower);
    tower = opts.pretrainedTower;
  } else if (r.stage0.steps > 0 && !resuming) {
    const stop = new StopRequest();
    const remove = opts.handleSignals ? installStopHandlers(stop) : null;
    try {
      const v = await pretrainVisionTower(model, train, { ...r.stage0, seed: r.seed, mean: cfg.image.mean, std: cfg.image.std, onLog: opts.onLog, logEvery: opts.logEvery ?? 100, stop, dtype: opts.dtype, processGroup: opts.processGroup, replay: opts.replay }, val);
      opts.onLog?.({ stage: 'vision', done: true, seconds: v.seconds, ...Object.fromEntries(Object.entries(v.accuracy).map(([k, a]) => [`acc_${k}`, a])) });
      tower = new Map([...model.visionTower.namedParameters()].map(([n, t]) => [n, t.toArray() as Float32Array]));
    } finally {
      remove?.();
    }
  }
  const P = model.numImageTokens;
  const bopts = { imageSize: 75, numPatches: P, padId: tokenizer.padId, mean: cfg.image.mean, std: cfg.image.std };
  // Stages 1 and 2 train on conversations about image files, tokenised in order: the records of the LLaVA files
  // `vwlmm train` reproduces them from (src/demo/reproduce.ts). StageData: a stage's split (its images in memory),
  // conversations, their samples, and the images only the stage files bring.
  type StageData = { split: SplitData; conversations: StageConversation[]; samples: TaskSample[]; images: Map<string, Scene> };
  const stageData = (label: string, split: SplitData, conversations: StageConversation[], images = new Map<string, Scene>()): StageData =>
    ({ split, conversations, images, samples: stageSamples(`runRecipe: ${label}`, conversations, tokenizer) });
  const trainFile = (i: number) => sortOfClevrImageName('train', i, train.scenes.length);
  const positionShare = r.stage1.positionCaptions ?? 0;
  if (!(positionShare >= 0 && positionShare <= 1)) throw new RangeError(`runRecipe: stage1.positionCaptions must be a share in [0, 1], got ${positionShare}`);
  const positionGen = positionShare > 0 ? gen.fork('position-captions') : null; // forked only when used: the default run's draws stay
  const captionOf = (sc: Scene, image: number, file: string): StageConversation => {
    const text = positionGen && positionGen.uniform() < positionShare ? positionCaptionText(sc) : captionText(sc, r.stage1.relational);
    return { image, file, template: 'plain', turns: [{ from: 'human', value: '<image>' }, { from: 'gpt', value: text }] };
  };
  // stage 1 images: the training scenes, or (subsets) each reduced to a random subset of its objects
  const subsetSplit = (maxObjects: number, label: string): StageData => {
    const g = gen.fork(label);
    const scenes = train.scenes.map((sc) => {
      if (!r.stage1.subsets && maxObjects >= sc.objects.length) return sc;
      const k = 1 + g.int(Math.min(maxObjects, sc.objects.length));
      const keep = g.shuffle(sc.objects.map((_, j) => j)).slice(0, k).sort((a, b) => a - b);
      return { objects: keep.map((j) => sc.objects[j]) };
    });
    const split: SplitData = { scenes, rgb: scenes.map((sc, i) => (sc === train.scenes[i] ? train.rgb[i] : renderScene(sc))), questions: [] };
    const images = new Map<string, Scene>();
    const conversations = scenes.map((sc, i) => {
      if (sc === train.scenes[i]) return captionOf(sc, i, trainFile(i));
      const file = sortOfClevrImageName(label, i, scenes.length);
      images.set(file, sc); // split.rgb[i] is its renderScene
      return captionOf(sc, i, file);
    });
    return stageData(label, split, conversations, images);
  };
  const cap = subsetSplit(6, 'caption-subsets');
  const warm = r.stage1.warmupSteps > 0 ? subsetSplit(r.stage1.warmupObjects, 'caption-warmup') : null;
  const fullCaptions = train.scenes.map((sc, i) => captionOf(sc, i, trainFile(i)));
  // stage 2: each image's 20 questions (or only those `keep` accepts) split into conversations of questionsPerSample turns
  const k = r.stage2.questionsPerSample;
  const questionConversations = (label: string, keep: (q: (typeof train.questions)[number][number]) => boolean): StageConversation[] => {
    const convs: StageConversation[] = [];
    const describeGen = gen.fork(label);
    const pairGen = (r.stage2.positionPairs ?? 0) > 0 ? gen.fork(`${label}-pairs`) : null; // forked only when used: the default run's draws stay
    train.questions.forEach((all, i) => {
      const scene = train.scenes[i], n = scene.objects.length;
      const described = captionText({ objects: scene.objects }, r.stage1.relational).split(' , ').map((o) => o.split(' ').slice(1).join(' '));
      const ask = (turns: Turn[], kind: 'left' | 'top', j: number) => turns.push({ from: 'human', value: questionText(kind, scene.objects[j].colour) }, { from: 'gpt', value: answerFor(scene, kind, j) });
      const qs = all.filter(keep);
      for (let s = 0; s < qs.length; s += k) {
        const turns = questionConversation(qs.slice(s, s + k));
        for (let d = 0; d < r.stage2.describeTurns; d++) {
          const j = describeGen.int(n);
          turns.push({ from: 'human', value: `What is the ${scene.objects[j].colour} object?` }, { from: 'gpt', value: described[j] });
        }
        for (let p = 0; p < (r.stage2.positionTurns ?? 0); p++) {
          const j = describeGen.int(n);
          ask(turns, describeGen.int(2) === 0 ? 'left' : 'top', j);
        }
        for (let p = 0; p < (r.stage2.positionPairs ?? 0); p++) {
          const j = pairGen!.int(n), first = pairGen!.int(2);
          for (const kind of first === 0 ? (['left', 'top'] as const) : (['top', 'left'] as const)) ask(turns, kind, j);
        }
        convs.push({ image: i, file: trainFile(i), turns, template: 'vicuna_v1' });
      }
    });
    return convs;
  };
  // the mixture: questions (vicuna_v1) then captions (plain); captionShare of the stage's samples are captions
  const withCaptions = (label: string, convs: StageConversation[]): StageData => {
    const nCap = Math.round((convs.length * r.stage2.captionShare) / (1 - r.stage2.captionShare));
    return stageData(label, train, [...convs, ...Array.from({ length: nCap }, (_, j) => fullCaptions[j % fullCaptions.length])]);
  };
  const mixed = withCaptions('questions', questionConversations('describe', () => true));
  const nonRelSteps = r.stage2.nonRelationalSteps ?? 0;
  const nonRel = nonRelSteps > 0 ? withCaptions('questions-non-relational', questionConversations('describe-non-relational', (q) => q.group === 'non-relational')) : null;
  // a stage with every schedule field set: reproduce.sh writes each one out (the global batch; ranks take shares below)
  const recordStage = (name: string, d: StageData, steps: number, b: { batchSize: number; lr: number }, tower: boolean, visionTowerLr?: number): RecordStage => ({
    conversations: d.conversations, images: d.images,
    stage: {
      name, size: d.samples.length, makeBatch: stageBatches(d.samples, d.split, bopts), steps, batchSize: b.batchSize, gradAccum: 1, lr: b.lr,
      warmupRatio: 0.03, weightDecay: 0, maxGradNorm: 1, visionTowerLr: tower ? visionTowerLr : undefined,
      trainable: { visionTower: tower, projector: true, llm: !(name.startsWith('captions') && r.stage1.freezeLlm), vmHead: true },
    },
  });
  const frozen = r.stage0.steps > 0 ? Math.min(r.stage0.frozenSteps, r.stage1.steps) : 0;
  const recordStages = [
    ...(warm ? [recordStage('captions-warmup', warm, r.stage1.warmupSteps, r.stage1, true)] : []),
    recordStage('captions-frozen-tower', cap, frozen, r.stage1, false),
    recordStage('captions', cap, r.stage1.steps - frozen, r.stage1, true),
    ...(nonRel ? [recordStage('questions-non-relational', nonRel, nonRelSteps, r.stage2, r.stage2.visionTowerLr !== 0, r.stage2.visionTowerLr)] : []),
    recordStage('questions', mixed, r.stage2.steps, r.stage2, r.stage2.visionTowerLr !== 0, r.stage2.visionTowerLr),
  ].filter((s) => s.stage.steps > 0);
  const stages: Stage[] = [
    ...(r.text && r.text.steps > 0 ? [textStage({ ...r.text, batchSize: rankShare('text', r.text.batchSize, opts.processGroup) }, train, tokenizer, r.stage1.relational, r.model.patch)] : []),
    ...recordStages.map((s) => ({ ...s.stage, batchSize: rankShare(s.stage.name, s.stage.batchSize, opts.processGroup) })),
  ].filter((s) => (s.steps ?? 0) > 0);
  const plan = recipeStagePlan(r);
  if (stages.map((s) => `${s.name}:${s.steps}`).join() !== plan.map((s) => `${s.name}:${s.steps}`).join())
    throw new Error(`runRecipe: the stages [${stages.map((s) => `${s.name} ${s.steps}`).join(', ')}] are not recipeStagePlan's [${plan.map((s) => `${s.name} ${s.steps}`).join(', ')}]`);
  // data-parallel: rank 0 alone writes (the ranks hold the same model)
  const reproduce = opts.reproduce && (opts.processGroup?.rank ?? 0) === 0 && recordStages.length > 0 ? opts.reproduce : null;
  const writeReproduce = (dtype: ComputeDtype) => {
    writeStageFiles(reproduce!.dataDir, recordStages, { seed: r.seed, trainImages: r.trainImages, ...QUESTIONS_PER_IMAGE }, reproduce!.writer);
    fs.writeFileSync(path.join(opts.outDir, 'reproduce.sh'), reproduceScript(opts.outDir, reproduce!.dataDir, recordStages, { seed: r.seed, device: model.device, dtype, ranks: opts.processGroup?.worldSize ?? 1 }), { mode: 0o755 });
  };
  // what the checkpoints record of the run beyond config.json (checkRecipeResume reads it): the dtype the Trainer runs
  const dtype = opts.dtype === undefined ? defaultComputeDtype(model.device) : parseComputeDtype('runRecipe', opts.dtype);
  const runFile = JSON.stringify({ dtype }, null, 2) + '\n';
  const trainer = new Trainer(model, stages, {
    seed: r.seed, outDir: opts.outDir, evalEvery: r.evalEvery, autoResume: !!opts.resume, handleSignals: !!opts.handleSignals, dtype, processGroup: opts.processGroup, replay: opts.replay, reportTo: opts.reportTo,
    evaluate: (m, where) => {
      if (where.stage === 'text') return {} as Record<string, number>; // no image has been seen yet
      // data-parallel: every rank scores its share (the Trainer evaluates on every rank), the ranks sum the counts
      const group = opts.processGroup;
      const [captions, shapes] = captionWordAccuracies(m, val, tokenizer, [CAPTION_WORDS, ['square', 'circle']], r.stage1.relational, undefined, group);
      if (where.stage.startsWith('captions')) return { captionAccuracy: captions, captionShapeAccuracy: shapes };
      const a = evaluateSplit(m, val, tokenizer, 'vicuna_v1', { maxQuestions: r.evalQuestions, processGroup: group });
      return { captionAccuracy: captions, captionShapeAccuracy: shapes, accuracy: a.accuracy, questions: a.count, nonRelational: a.groups['non-relational']?.accuracy ?? 0, relational: a.groups.relational?.accuracy ?? 0, ...Object.fromEntries(Object.entries(a.categories).map(([c, v]) => [`acc_${c}`, v.accuracy])) };
    },
    onLog: opts.onLog, checkpointFiles: { tokenizer: opts.tokenizerJson ?? json, extraFiles: { [RECIPE_RUN_FILE]: runFile } },
    logEvery: opts.logEvery ?? 10,
    // reproduce.sh's --init: the model the first record stage starts from (after stage 0 and the text stage)
    onStageStart: (m, s) => {
      if (r.vmHeadInit === 'embedding' && s.name === recordStages[0].stage.name && m.vm_head) m.vm_head.weight.buffer.write(m.model.embed_tokens.weight.toArray() as Float32Array);
      if (reproduce && s.name === recordStages[0].stage.name) saveCheckpoint(path.join(opts.outDir, 'init'), m, { tokenizer: opts.tokenizerJson ?? json });
    },
  });
  // a resume writes them once the Trainer has taken it (its checks run as it starts): a refused one leaves the files
  // the checkpoint's run wrote, which reproduce it
  if (reproduce && !resuming) writeReproduce(trainer.dtype);
  await trainer.runAsync();
  if (reproduce && resuming) writeReproduce(trainer.dtype);
  const acc = opts.validate === false ? null : evaluateSplit(model, val, tokenizer, 'vicuna_v1', { processGroup: opts.processGroup });
  return { model, tower, val: acc, seconds: (Date.now() - t0) / 1000, train, valSplit: val };
}
