// `vwlmm demo`, the main job: generate Sort-of-CLEVR (LLaVA JSON + PNG + tokenizer.json), train a small
// VW-LMM from scratch through both stages on the CPU (src/demo/recipe.ts), evaluate it on the generated
// test split through the file pipeline (the same code as `vwlmm eval`: LLaVA's answers file
// <run>/answers/test.jsonl, then its score), and write the checkpoint, the metrics log, the loss curve, a
// visual-words picture, and what `vwlmm train` needs to run stages 1 and 2 again (src/demo/reproduce.ts:
// data/stages/, <run>/init, <run>/reproduce.sh). With ablation, the same run with vmWeight 0.
// Before training it says which CPU GEMM runs and how long the run should take here (src/demo/estimate.ts).
import type { ProcessGroup } from '../distributed/process_group';
import type { ComputeDtype } from '../amp';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceSpec, useDevice } from '../device';
import { checkKeys, typeError } from '../errors';
import { checkSeed } from '../random';
import { removeSortOfClevr, SORT_OF_CLEVR_GENERATOR_VERSION, sortOfClevrVocabulary, writeSortOfClevr } from '../data/sort_of_clevr';
import { SceneImageWriter, spareImageWorkers } from '../data/scene_writer';
import { writeWordLevelTokenizer } from '../data/word_level_tokenizer';
import { TextTokenizer } from '../data/tokenizer';
import { normalizeRgb } from '../data/images';
import { modelIdOf } from '../eval/answer';
import { shellWord } from './reproduce';
import { evaluateFile } from '../eval/llava_eval';
import { drawVisualWords, visualWordsOf } from '../eval/visual_words';
import { plotMetrics } from '../viz/plot';
import { Progress } from '../train/progress';
import { VwLmm } from '../model/vwlmm';
import { saveLeftovers } from '../model/checkpoint';
import { cpu } from '../native';
import { Calibration, calibrate, DemoEstimate, demoWork, estimateDemo, estimateNotice, gemmNotice, stepsDone } from './estimate';
import { ablationRecipe, checkRecipeResume, DEFAULT_RECIPE, paperSchedule, Recipe, runRecipe } from './recipe';
import { objectAtPatch, SplitData } from './task';

const GROUP: Record<string, 'nonRelational' | 'relational'> = { shape: 'nonRelational', left: 'nonRelational', top: 'nonRelational', closest: 'relational', furthest: 'relational', count: 'relational' };

export interface DemoRunResult {
  accuracy: number;
  nonRelationalAccuracy: number;
  relationalAccuracy: number;
  categories: Record<string, { accuracy: number; count: number }>;
  visualWordAgreement: number | null;
  /** Its chance level (the best constant word's agreement, and that word) and the mean entropy of the visual words. */
  visualWordChance: number | null;
  visualWordChanceWord: string | null;
  visualWordEntropy: number | null;
  visualWordMaxEntropy: number;
  trainSeconds: number;
  checkpoint: string;
  /** The answers to data/test.json that the accuracies score (LLaVA's answer lines; `vwlmm score sort-of-clevr` rescoring them). */
  answers: string;
  /** The script that runs stages 1 and 2 again with `vwlmm train` on the files they trained on (src/demo/reproduce.ts). */
  reproduce: string;
}

export interface DemoResult extends DemoRunResult {
  seconds: number;
  outDir: string;
  metrics: string;
  lossCurve: string;
  visualWords: string | null;
  ablation?: DemoRunResult;
  /** backendInfo().cpu.gemm: "openblas <config>" or "builtin". */
  gemm: string;
  /** The data-parallel ranks that trained it (DemoOptions.processGroup); absent for one process. */
  ranks?: number;
  /** The time expected at the start (compare with `seconds`) and the per-step costs it was computed from. */
  estimate: DemoEstimate & { calibration: Calibration };
}

function scaled(r: Recipe, scale: number): Recipe {
  const c: Recipe = JSON.parse(JSON.stringify(r));
  if (c.stage0.steps > 0) c.stage0.steps = Math.max(1, Math.round(c.stage0.steps * scale));
  // at least one step, as the others: at --scale 0.00001 the frozen-tower stage rounded to 0 and vanished
  if (c.stage0.frozenSteps > 0) c.stage0.frozenSteps = Math.max(1, Math.round(c.stage0.frozenSteps * scale));
  c.stage1.steps = Math.max(1, Math.round(c.stage1.steps * scale));
  if (c.text && c.text.steps > 0) c.text.steps = Math.max(1, Math.round(c.text.steps * scale));
  c.stage2.steps = Math.max(1, Math.round(c.stage2.steps * scale));
  if (c.stage2.nonRelationalSteps) c.stage2.nonRelationalSteps = Math.max(1, Math.round(c.stage2.nonRelationalSteps * scale));
  c.evalEvery = Math.max(1, Math.round(c.evalEvery * scale));
  if (scale < 1) c.trainImages = Math.max(64, Math.round(c.trainImages * scale));
  // the test split too (the final answers file and the in-training evaluations draw on it), down to 50 images: 1,000
  // questions, a standard error of at most 1.6 points; 4,000 answers were most of a smoke run's time
  if (scale < 1) c.testImages = Math.max(50, Math.round(c.testImages * scale));
  // and the in-training evaluations' questions, down to 100: they run as often as at full scale (evalEvery scales with
  // the steps), and 6 x 600 answers were half of a --scale 0.02 run's training time
  if (scale < 1) c.evalQuestions = Math.min(c.evalQuestions, Math.max(100, Math.round(c.evalQuestions * scale)));
  return c;
}

export interface VisualWordStats {
  /** Share of object patches whose top-1 visual word is the object's colour or shape word (null without vm_head). */
  agreement: number | null;
  /** The chance level: the best agreement a constant word would get on the same patches, and that word. */
  chance: number | null;
  chanceWord: string | null;
  /** Mean entropy (nats) of the patches' visual-word distributions; log V is a uniform one, 0 a collapsed one. */
  meanEntropy: number | null;
  maxEntropy: number;
}

/**
 * What the visual words say on the first maxImages images of a split: agreement with the objects' colour and shape
 * words, its chance level, and whether the distributions collapsed (their mean entropy).
 */
export function visualWordStats(model: VwLmm, tokenizer: TextTokenizer, split: SplitData, maxImages = 50): VisualWordStats {
  const V = model.config.llm.vocabSize;
  if (!model.vm_head) return { agreement: null, chance: null, chanceWord: null, meanEntropy: null, maxEntropy: Math.log(V) };
  const cfg = model.config, p = cfg.vision.patchSize, S = cfg.vision.imageSize;
  let hit = 0, total = 0, entropy = 0, patches = 0;
  const wordHits = new Map<string, number>(); // patches a constant word would get right
  for (let i = 0; i < Math.min(maxImages, split.scenes.length); i++) {
    for (const patch of visualWordsOf(model, tokenizer, normalizeRgb(split.rgb[i], S, cfg.image.mean, cfg.image.std), V)) {
      let h = 0;
      for (const w of patch.words) if (w.prob > 0) h -= w.prob * Math.log(w.prob);
      entropy += h;
      patches++;
      const k = objectAtPatch(split.scenes[i], patch.row, patch.col, p);
      if (k < 0) continue;
      const o = split.scenes[i].objects[k];
      total++;
      if (patch.words[0].token === o.colour || patch.words[0].token === o.shape) hit++;
      for (const w of new Set([o.colour, o.shape])) wordHits.set(w, (wordHits.get(w) ?? 0) + 1);
    }
  }
  let chanceWord: string | null = null, best = 0;
  for (const [w, n] of wordHits) if (n > best) [chanceWord, best] = [w, n];
  return { agreement: total ? hit / total : null, chance: total ? best / total : null, chanceWord, meanEntropy: patches ? entropy / patches : null, maxEntropy: Math.log(V) };
}

/** Share of patches lying on an object whose top-1 visual word is that object's colour or shape word. */
export function visualWordAgreement(model: VwLmm, tokenizer: TextTokenizer, split: SplitData, maxImages = 50): number | null {
  return visualWordStats(model, tokenizer, split, maxImages).agreement;
}

async function oneRun(recipe: Recipe, dir: string, dataDir: string, tokenizer: TextTokenizer, log: (s: string) => void, quiet: boolean, resume: boolean, device: DeviceSpec | undefined, dtype: ComputeDtype | undefined, pretrainedTower?: Map<string, Float32Array>, group?: ProcessGroup, replay?: boolean, writer?: SceneImageWriter, reportTo?: readonly 'tensorboard'[]): Promise<{ result: DemoRunResult | null; model: VwLmm; val: SplitData; tower: Map<string, Float32Array> | null }> {
  const t0 = Date.now();
  const progress = new Progress(50, quiet ? process.stderr : process.stdout);
  const res = await runRecipe(recipe, {
    outDir: dir, device, dtype, resume, handleSignals: true, pretrainedTower, processGroup: group, replay, reproduce: { dataDir, writer }, validate: false, reportTo,
    tokenizerJson: JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer.json'), 'utf8')),
    onLog: (r) => {
      progress.update(r);
      if (r.type === 'eval') log(`  eval after ${r.stage} step ${r.step}: caption words ${(100 * (r.captionAccuracy as number)).toFixed(1)}%${r.nonRelational !== undefined ? `, non-relational ${(100 * (r.nonRelational as number)).toFixed(1)}%, relational ${(100 * (r.relational as number)).toFixed(1)}%` : ''}`);
    },
  });
  progress.stop();
  const trainSeconds = (Date.now() - t0) / 1000;
  await writer?.flush(); // the images written while it trained (the data set's, the caption subsets'): evaluateFile reads the test set's
  await group?.barrierAsync(); // data-parallel: rank 0 (the writer) has written them
  // answered afresh every time: a file left by an earlier run (or by one resumed with another --scale) holds another
  // model's answers, which evaluateFile would keep
  const answers = path.join(dir, 'answers', 'test.jsonl');
  const lead = (group?.rank ?? 0) === 0;
  if (lead) fs.rmSync(answers, { force: true });
  // data-parallel: the ranks (holding the same model) share the questions; rank 0 writes the answers
  const ev = await evaluateFile(res.model, tokenizer, path.join(dataDir, 'test.json'), dataDir, { maxNewTokens: 4, answers, modelId: modelIdOf(path.join(dir, 'checkpoint')), processGroup: group });
  if (!lead) return { model: res.model, val: res.valSplit, tower: res.tower, result: null };
  const groups = { nonRelational: { sum: 0, n: 0 }, relational: { sum: 0, n: 0 } };
  for (const [cat, v] of Object.entries(ev.categories)) {
    const g = GROUP[cat];
    if (g) {
      groups[g].sum += v.accuracy * v.count;
      groups[g].n += v.count;
    }
  }
  const vw = visualWordStats(res.model, tokenizer, res.valSplit);
  return {
    model: res.model,
    val: res.valSplit,
    tower: res.tower,
    result: {
      accuracy: ev.accuracy, nonRelationalAccuracy: groups.nonRelational.sum / Math.max(1, groups.nonRelational.n),
      relationalAccuracy: groups.relational.sum / Math.max(1, groups.relational.n), categories: ev.categories,
      visualWordAgreement: vw.agreement, visualWordChance: vw.chance, visualWordChanceWord: vw.chanceWord, visualWordEntropy: vw.meanEntropy,
      visualWordMaxEntropy: vw.maxEntropy, trainSeconds, checkpoint: path.join(dir, 'checkpoint'), answers, reproduce: path.join(dir, 'reproduce.sh'),
    },
  };
}

export interface DemoOptions {
  outDir: string; seed: number; ablation: boolean; scale: number; quiet: boolean; recipe?: Recipe; resume?: boolean; device?: DeviceSpec; dtype?: ComputeDtype;
  /** 'paper': the recipe through paperSchedule (a text stage, then stage 1 with the LLM frozen). Default 'default'. */
  schedule?: 'default' | 'paper';
  /** The PIF variant / a detached KL target (Recipe.pif, Recipe.detachTarget); default the recipe's. */
  pif?: boolean; detachTarget?: boolean;
  /** TrainerOptions.replay (default true; `vwlmm demo --no-replay`): steps replayed as op programs, the same numbers. */
  replay?: boolean;
  /** TrainerOptions.reportTo: ['tensorboard'] writes each run's train and eval scalars in its runs/ (vw/runs, llava/runs). */
  reportTo?: readonly 'tensorboard'[];
  /**
   * Data-parallel over this group's ranks, each running runDemo with the same options (`vwlmm demo --nproc-per-node
   * N`): the recipe's batches are the global ones, split over the ranks (RunRecipeOptions.processGroup). Rank 0
   * writes the data, logs and plots; all answer their share of the test questions (rank 0 writes and scores the answers);
   * the others resolve with null.
   */
  processGroup?: ProcessGroup;
}

const DEMO_KEYS = {
  outDir: true, seed: true, ablation: true, scale: true, quiet: true, recipe: true, resume: true, device: true, dtype: true, schedule: true, pif: true,
  detachTarget: true, replay: true, processGroup: true, reportTo: true,
} satisfies Record<keyof DemoOptions, true>;

/** The most runDemo's scale may be, as `vwlmm demo --scale`: 100 x the default budget (about 12 hours on 2 CPU cores). */
const MAX_DEMO_SCALE = 100;

/**
 * runDemo's options, checked before anything runs: a misspelt key (shedule) would leave the default in force, a scale
 * of 0 or -1 make stages of 1 (or 1,001) steps, a seed of 1.5 act as 1.
 */
function checkDemoOptions(o: DemoOptions): void {
  const where = 'runDemo';
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(where, 'options', `an object { ${Object.keys(DEMO_KEYS).join(', ')} }`, o);
  checkKeys(where, 'option', o, DEMO_KEYS);
  if (typeof o.outDir !== 'string' || o.outDir === '') throw typeError(where, 'outDir', 'a directory path (a non-empty string)', o.outDir);
  checkSeed(where, 'seed', o.seed);
  if (typeof o.scale !== 'number' || Number.isNaN(o.scale)) throw typeError(where, 'scale', `a number in (0, ${MAX_DEMO_SCALE}]`, o.scale);
  if (!(o.scale > 0 && o.scale <= MAX_DEMO_SCALE))
    throw new RangeError(`${where}: expected a number in (0, ${MAX_DEMO_SCALE}] for scale (the training steps' multiplier, as vwlmm demo --scale) but received ${o.scale}`);
  for (const k of ['ablation', 'quiet', 'resume', 'pif', 'detachTarget', 'replay'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw typeError(where, k, 'a boolean', o[k]);
  }
  // before the data is written (the Trainer would refuse it only then)
  if (o.reportTo !== undefined && !(Array.isArray(o.reportTo) && o.reportTo.every((r) => r === 'tensorboard')))
    throw typeError(where, 'reportTo', "['tensorboard'] or [] (TrainerOptions.reportTo)", o.reportTo);
}

/** A data-parallel demo's other ranks: they wait for rank 0's data, train the same runs with it, answer their share of the test questions, and write nothing. */
async function trainOnly(o: DemoOptions, recipe: Recipe, group: ProcessGroup): Promise<null> {
  const dataDir = path.join(o.outDir, 'data');
  await group.barrierAsync(); // rank 0 has written the data (a Ctrl-C meanwhile reaches this rank: Work.waitAsync)
  const tokenizer = new TextTokenizer(path.join(dataDir, 'tokenizer.json'));
  const run = async (r: Recipe, dir: string, tower?: Map<string, Float32Array>) => oneRun(r, path.join(o.outDir, dir), dataDir, tokenizer, () => undefined, o.quiet, !!o.resume, o.device, o.dtype, tower, group, o.replay);
  const main = await run(recipe, 'vw');
  main.model.dispose();
  await group.barrierAsync(); // rank 0's visual words and plots
  if (o.ablation) (await run(ablationRecipe(recipe), 'llava', main.tower ?? undefined)).model.dispose();
  return null;
}

/**
 * A --resume is checked before anything is written: each run's checkpoint against its recipe (checkRecipeResume: what
 * the Trainer would refuse as it starts, and the variant and compute dtype the run was started with: --pif,
 * --detach-target, the arm's vmWeight, --dtype), and the data set the checkpoints trained on (data/meta.json) against
 * the one this run would write over it. A refused resume leaves the run as it was: its data set, stage files,
 * reproduce.sh, answers.
 */
function checkDemoResume(o: DemoOptions, recipe: Recipe): void {
  const arms = [{ dir: 'vw', r: recipe }, ...(o.ablation ? [{ dir: 'llava', r: ablationRecipe(recipe) }] : [])];
  const runs = arms.map((a) => path.join(o.outDir, a.dir));
  arms.forEach((a, i) => checkRecipeResume(a.r, runs[i], { dtype: o.dtype, device: o.device })); // the ablation's stages are the same, its vmWeight 0
  if (!runs.some((dir) => stepsDone(dir) !== null)) return; // nothing trained yet: the data set is written afresh
  const f = path.join(o.outDir, 'data', 'meta.json');
  let meta: { generatorVersion?: unknown; seed?: unknown; counts?: { trainImages?: unknown; testImages?: unknown } };
  try {
    meta = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch {
    return; // no data set (or a broken one) to keep: written again as the checkpoint's run wrote it
  }
  const got: Record<string, unknown> = { generatorVersion: meta.generatorVersion, seed: meta.seed, trainImages: meta.counts?.trainImages, testImages: meta.counts?.testImages };
  const want: Record<string, unknown> = { generatorVersion: SORT_OF_CLEVR_GENERATOR_VERSION, seed: recipe.seed, trainImages: recipe.trainImages, testImages: recipe.testImages };
  const diff = Object.keys(want).filter((k) => got[k] !== want[k]);
  if (diff.length)
    throw new Error(`resume: ${f} describes the data set the checkpoint trained on (${diff.map((k) => `${k} ${JSON.stringify(got[k])}`).join(', ')}), this run would write ${diff.map((k) => `${k} ${JSON.stringify(want[k])}`).join(', ')} over it: resume with the --scale and --seed the run was started with`);
}

export function runDemo(o: DemoOptions & { processGroup?: undefined }): Promise<DemoResult>;
export function runDemo(o: DemoOptions): Promise<DemoResult | null>;
export async function runDemo(o: DemoOptions): Promise<DemoResult | null> {
  checkDemoOptions(o);
  const t0 = Date.now();
  const group = o.processGroup, lead = (group?.rank ?? 0) === 0;
  const log = (s: string) => (o.quiet ? process.stderr.write(s + '\n') : console.log(s));
  if (o.schedule !== undefined && o.schedule !== 'default' && o.schedule !== 'paper') throw new TypeError(`runDemo: schedule must be 'default' or 'paper', got ${String(o.schedule)}`);
  const base = o.recipe ?? DEFAULT_RECIPE;
  const variant = { ...(o.pif !== undefined ? { pif: o.pif } : {}), ...(o.detachTarget !== undefined ? { detachTarget: o.detachTarget } : {}) };
  const recipe = scaled({ ...(o.schedule === 'paper' ? paperSchedule(base) : base), ...variant, seed: o.seed }, o.scale);
  const info = cpu().backendInfo() as { gemm: string; threads?: number; simd?: string };
  if (lead) log(gemmNotice(info));
  // what a --resume has left: each run's trained steps from its checkpoint (stage 0 is then skipped)
  const done = o.resume ? { vw: stepsDone(path.join(o.outDir, 'vw')), llava: o.ablation ? stepsDone(path.join(o.outDir, 'llava')) : null } : undefined;
  if (o.resume) checkDemoResume(o, recipe); // on every rank, before any is written (or calibrated)
  const device = useDevice('vwlmm demo', o.device); // before anything else: no GPU is an error now, not after the data
  // data-parallel: rank 0 alone calibrates (the others wait at the barrier below, so its timings are not shared
  // cores'); its estimate is for one process
  if (!lead) return trainOnly(o, recipe, group!);
  const calibration = await calibrate(recipe, { device: o.device, dtype: o.dtype });
  const estimate = { ...estimateDemo(demoWork(recipe, { ablation: o.ablation, done }), calibration), calibration };
  log(estimateNotice(estimate, calibration, { ablation: o.ablation, resumed: !!done && (done.vw !== null || done.llava !== null) }) + (group ? ` (for one process: ${group.worldSize} data-parallel ranks share the training steps)` : ''));
  const dataDir = path.join(o.outDir, 'data');
  log(`vwlmm demo: generating Sort-of-CLEVR (${recipe.trainImages} + ${recipe.testImages} images) in ${dataDir}`);
  // PNG files on threads the run can spare while it trains (on a GPU the main thread drives the device): none on a CPU
  // whose cores the engine uses
  const writer = new SceneImageWriter({ workers: spareImageWorkers(device === 'cpu' ? info.threads ?? os.availableParallelism() : 1) });
  let ran = false;
  try {
    writeSortOfClevr(dataDir, { train: recipe.trainImages, test: recipe.testImages, seed: o.seed, writer });
    writeWordLevelTokenizer(path.join(dataDir, 'tokenizer.json'), sortOfClevrVocabulary());
    await group?.barrierAsync(); // the other ranks read the tokenizer rank 0 wrote (trainOnly)
    const tokenizer = new TextTokenizer(path.join(dataDir, 'tokenizer.json'));
    log(`training VW-LMM (vmWeight ${recipe.vmWeight}${recipe.pif ? ', PIF' : ''}${recipe.detachTarget ? ', target detached' : ''}): stage 0 vision tower ${recipe.stage0.steps} steps, ${recipe.text?.steps ? `text ${recipe.text.steps} steps, ` : ''}stage 1 captions ${recipe.stage1.steps} steps${recipe.stage1.freezeLlm ? ' (LLM frozen)' : ''}, stage 2 questions ${recipe.stage2.steps} steps`);
    const main = await oneRun(recipe, path.join(o.outDir, 'vw'), dataDir, tokenizer, log, o.quiet, !!o.resume, o.device, o.dtype, undefined, group, o.replay, writer, o.reportTo);
    const metrics = path.join(o.outDir, 'vw', 'metrics.jsonl');
    const lossCurve = path.join(o.outDir, 'vw', 'loss_curve.png');
    await plotMetrics(metrics, lossCurve, `VW-LMM on Sort-of-CLEVR (seed ${o.seed})`);
    let visualWords: string | null = null;
    if (main.model.vm_head) {
      visualWords = path.join(o.outDir, 'vw', 'visual_words.png');
      const cfg = main.model.config;
      const patches = visualWordsOf(main.model, tokenizer, normalizeRgb(main.val.rgb[0], cfg.vision.imageSize, cfg.image.mean, cfg.image.std), 3);
      await drawVisualWords(main.val.rgb[0], 75, 75, patches, cfg.vision.imageSize / cfg.vision.patchSize, visualWords);
    }
    main.model.dispose();
    await group?.barrierAsync();
    let ablation: DemoRunResult | undefined;
    if (o.ablation) {
      log('ablation: the same run with vmWeight 0 (plain LLaVA objective), from the same stage-0 tower');
      const a = await oneRun(ablationRecipe(recipe), path.join(o.outDir, 'llava'), dataDir, tokenizer, log, o.quiet, !!o.resume, o.device, o.dtype, main.tower ?? undefined, group, o.replay, writer, o.reportTo);
      a.model.dispose();
      // its curve beside VW-LMM's (no visual words: no vm_head)
      await plotMetrics(path.join(o.outDir, 'llava', 'metrics.jsonl'), path.join(o.outDir, 'llava', 'loss_curve.png'), `LLaVA (vmWeight 0) on Sort-of-CLEVR (seed ${o.seed})`);
      ablation = a.result!;
    }
    const seconds = (Date.now() - t0) / 1000;
    const row = (name: string, r: DemoRunResult) =>
      `| ${name.padEnd(14)} | ${(100 * r.nonRelationalAccuracy).toFixed(1).padStart(6)}% | ${(100 * r.relationalAccuracy).toFixed(1).padStart(6)}% | ${['shape', 'left', 'top', 'closest', 'furthest', 'count'].map((c) => `${(100 * (r.categories[c]?.accuracy ?? 0)).toFixed(1).padStart(5)}%`).join(' | ')} | ${r.visualWordAgreement === null ? '   n/a' : `${(100 * r.visualWordAgreement).toFixed(1).padStart(5)}% (chance ${(100 * r.visualWordChance!).toFixed(1)}%)`} |`;
    log('\n| model          | non-rel | relational | shape | left | top | closest | furthest | count | VW agreement |');
    log('|---|---|---|---|---|---|---|---|---|---|');
    log(row('VW-LMM', main.result!));
    if (ablation) log(row('LLaVA (vm 0)', ablation));
    const m = main.result!;
    if (m.visualWordEntropy !== null)
      log(`visual words: ${(100 * m.visualWordAgreement!).toFixed(1)}% of object patches name their object's colour or shape (chance: "${m.visualWordChanceWord}" everywhere, ${(100 * m.visualWordChance!).toFixed(1)}%); mean entropy ${m.visualWordEntropy.toFixed(2)} nats of at most ${m.visualWordMaxEntropy.toFixed(2)}`);
    log(`\n${seconds.toFixed(0)} s (expected ${(estimate.seconds + calibration.seconds).toFixed(0)} s with the calibration${group ? ', for one process' : ''}); checkpoint ${m.checkpoint}; loss curve ${lossCurve}${visualWords ? `; visual words ${visualWords}` : ''}`);
    // (the commands' paths quoted for a shell: an --out with a space broke a copy-paste)
    log(`answers to ${path.join(dataDir, 'test.json')}: ${m.answers}${ablation ? ` (and ${ablation.answers})` : ''}; score them again with: vwlmm score sort-of-clevr --answers ${shellWord(m.answers)} --data ${shellWord(path.join(dataDir, 'test.json'))}`);
    log(`stages 1 and 2 again with \`vwlmm train\`, on the files they trained on (${path.join(dataDir, 'stages')}): bash ${shellWord(m.reproduce)}`);
    const result = { ...m, ...(group ? { ranks: group.worldSize } : {}), seconds, outDir: o.outDir, metrics, lossCurve, visualWords, ablation, gemm: info.gemm, estimate };
    ran = true;
    return result;
  } finally {
    // also when a run fails: the threads end, what was handed over is written; a run's own error wins over a file's
    await writer.close().catch((e: unknown) => {
      if (ran) throw e;
    });
  }
}

/**
 * `demo --overwrite-output-dir`: what an earlier demo wrote in `out` goes (its runs' checkpoints, logs, answers and
 * plots, its data set, stage files and images), so the new run starts in a clean folder (an old ablation's llava/, or
 * an old scale's images, stayed beside the new run's and broke its --resume). Names the demo writes only: a user's own
 * files stay.
 */
export function removeDemoRun(out: string): void {
  const rm = (p: string) => fs.rmSync(p, { recursive: true, force: true });
  const rmdirIfEmpty = (d: string) => {
    if (fs.existsSync(d) && fs.statSync(d).isDirectory() && fs.readdirSync(d).length === 0) fs.rmdirSync(d);
  };
  for (const run of ['vw', 'llava']) {
    const dir = path.join(out, run);
    if (!fs.existsSync(dir)) continue;
    for (const ck of ['checkpoint', 'init']) {
      for (const d of saveLeftovers(path.join(dir, ck))) rm(d);
      rm(path.join(dir, ck));
    }
    for (const f of ['answers', 'runs', 'metrics.jsonl', 'loss_curve.png', 'visual_words.png', 'reproduce.sh']) rm(path.join(dir, f));
    rmdirIfEmpty(dir);
  }
  const data = path.join(out, 'data');
  try {
    removeSortOfClevr(data);
  } catch {
    return; // no data set of the demo's
  }
  rm(path.join(data, 'stages'));
  const images = path.join(data, 'images');
  if (fs.existsSync(images)) for (const n of fs.readdirSync(images)) if (/^[\w-]+_\d+\.png$/.test(n)) rm(path.join(images, n)); // the caption subsets'
  rmdirIfEmpty(images);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) rm(path.join(data, f));
  rmdirIfEmpty(data);
}
