// What `vwlmm demo` says before it trains: which CPU GEMM runs (OpenBLAS or the built-in one, with
// backendInfo().cpu.gemm) and how long the demo should take on this machine, now.
// The time is measured, not assumed: calibrate() trains a throwaway model of the recipe's size for a few real
// steps of each kind the demo runs (stage 0, caption steps, question steps), through the same runRecipe code,
// and times its evaluations, data setup and image writing; estimateDemo() multiplies those costs by the
// demo's step, question and image counts (demoWork). So a slow GEMM, a loaded machine or fewer cores all show
// up in the estimate. The calibration itself takes some 4-12 s on 2 cores with OpenBLAS (more with a slow
// GEMM: ~35 s with the first release's built-in one).
import type { ComputeDtype } from '../amp';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { DeviceSpec } from '../device';
import { sortOfClevrVocabulary, writeSortOfClevr } from '../data/sort_of_clevr';
import { writeWordLevelTokenizer } from '../data/word_level_tokenizer';
import { TextTokenizer } from '../data/tokenizer';
import { evaluateFile } from '../eval/llava_eval';
import { resolveCheckpointDir } from '../model/checkpoint';
import { packageRoot } from '../native';
import { readTrainerState } from '../train/trainer';
import { Recipe, runRecipe } from './recipe';

/** Questions per test image: the demo's test set and the recipe's validation split both ask 10 + 10. */
export const QUESTIONS_PER_IMAGE = 20;

/**
 * The install-time GEMM check (scripts/build-native.js, shipped with the package) holds the measured figures of
 * the built-in GEMM against OpenBLAS and the test of which kernel runs; the notice quotes them from there. The
 * estimate itself always comes from the calibration.
 */
interface GemmCheck {
  BUILTIN_VS_OPENBLAS: { avx2DemoSteps: string; avx512DemoSteps: string; portableDemoSteps: string; portableGemm: string };
  isBuiltinGemm(gemm: string): boolean;
  hasAvx2Kernel(simd: string | undefined): boolean;
}
// Read when a notice is made, not when the library loads.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const gemmCheck = (): GemmCheck => require(path.join(packageRoot, 'scripts', 'build-native.js')) as GemmCheck;

/** Seconds per unit of work, measured on this machine by calibrate(). */
export interface Calibration {
  /** One stage-0 step (vision tower pretraining, stage0.batchSize images). */
  stage0Step: number;
  /** One stage-1 (caption) optimizer step. */
  captionStep: number;
  /** One stage-2 (question conversation) optimizer step. */
  questionStep: number;
  /** One greedily answered evaluation question of the in-memory validation split (the trainer's and runRecipe's evaluations). */
  question: number;
  /** One question of the written test.json (the demo's final evaluation: also loads and preprocesses the image). */
  fileQuestion: number;
  /** The caption metrics of an evaluation, per validation image. */
  captionEvalImage: number;
  /** Generating, rendering and tokenising one training image's samples in memory (runRecipe's set-up). */
  setupImage: number;
  /** Writing one image of the data set (PNG + its records). */
  writeImage: number;
  /** How long the calibration itself took. */
  seconds: number;
}

/** What a demo run does, counted from its (scaled) recipe. */
export interface DemoWork {
  stage0Steps: number;
  captionSteps: number;
  questionSteps: number;
  /** Questions answered by generation in memory: the evaluations during training (the demo runs runRecipe with validate false). */
  questions: number;
  /** Questions of test.json answered by the demo's evaluation. */
  fileQuestions: number;
  /** Caption evaluations x validation images. */
  captionEvalImages: number;
  /** Training images set up in memory (once per run). */
  setupImages: number;
  /** Images written to the data set. */
  writeImages: number;
}

/** How many evaluations a stage of `steps` steps runs (every evalEvery steps and at its end, as the Trainer does). */
function evaluations(steps: number, evalEvery: number): number {
  if (steps <= 0) return 0;
  if (evalEvery <= 0) return 1;
  return Math.floor(steps / evalEvery) + (steps % evalEvery === 0 ? 0 : 1);
}

/** Steps already trained by a run whose checkpoint is in `dir` (for --resume), or null when there is none. */
export function stepsDone(dir: string): number | null {
  const ckpt = resolveCheckpointDir(path.join(dir, 'checkpoint'));
  if (ckpt === null || !fs.existsSync(path.join(ckpt, 'trainer_state.json'))) return null;
  return readTrainerState(ckpt).state.globalStep;
}

/**
 * The work of `vwlmm demo` with this (already scaled) recipe: the VW-LMM run and, with ablation, the vmWeight-0
 * run from the same stage-0 tower. done: steps already trained by each run (a --resume; null = starts afresh),
 * which skips its stage 0 and those steps.
 */
export function demoWork(r: Recipe, o: { ablation: boolean; done?: { vw: number | null; llava: number | null } }): DemoWork {
  const testQuestions = r.testImages * QUESTIONS_PER_IMAGE;
  // the trainer's stages as runRecipe builds them, each with its own step count (and evaluation schedule)
  const frozen = r.stage0.steps > 0 ? Math.min(r.stage0.frozenSteps, r.stage1.steps) : 0;
  const stages: { steps: number; questions: boolean }[] = [
    { steps: r.text?.steps ?? 0, questions: false }, // text steps (no image) cost less than a caption step: an upper bound
    { steps: r.stage1.warmupSteps, questions: false },
    { steps: frozen, questions: false },
    { steps: r.stage1.steps - frozen, questions: false },
    { steps: r.stage2.nonRelationalSteps ?? 0, questions: true },
    { steps: r.stage2.steps, questions: true },
  ].filter((s) => s.steps > 0);
  const w: DemoWork = { stage0Steps: 0, captionSteps: 0, questionSteps: 0, questions: 0, fileQuestions: 0, captionEvalImages: 0, setupImages: 0, writeImages: r.trainImages + r.testImages };
  const oneRun = (done: number | null, stage0: boolean) => {
    if (stage0 && done === null) w.stage0Steps += r.stage0.steps;
    let skip = done ?? 0; // steps behind us, counted through the stages in order
    for (const s of stages) {
      const left = Math.max(0, s.steps - skip);
      skip = Math.max(0, skip - s.steps);
      if (left === 0) continue;
      // a resumed stage evaluates at its own step multiples: those up to the steps done are behind us
      const evals = evaluations(s.steps, r.evalEvery) - (r.evalEvery > 0 ? Math.floor((s.steps - left) / r.evalEvery) : 0);
      if (s.questions) {
        w.questionSteps += left;
        w.questions += evals * Math.min(r.evalQuestions, testQuestions);
      } else {
        w.captionSteps += left;
      }
      w.captionEvalImages += evals * r.testImages; // question evaluations report caption accuracy too
    }
    w.fileQuestions += testQuestions; // the demo's evaluation of test.json
    w.setupImages += r.trainImages;
  };
  const done = o.done ?? { vw: null, llava: null };
  oneRun(done.vw, true);
  // the ablation takes the VW run's stage-0 tower; a resumed VW run has none to give, so it trains its own
  if (o.ablation) oneRun(done.llava, done.vw !== null);
  return w;
}

export interface DemoEstimate {
  seconds: number;
  parts: { stage0: number; captions: number; questions: number; evaluation: number; data: number };
}

export function estimateDemo(w: DemoWork, c: Calibration): DemoEstimate {
  const parts = {
    stage0: w.stage0Steps * c.stage0Step,
    captions: w.captionSteps * c.captionStep,
    questions: w.questionSteps * c.questionStep,
    evaluation: w.questions * c.question + w.fileQuestions * c.fileQuestion + w.captionEvalImages * c.captionEvalImage,
    data: w.setupImages * c.setupImage + w.writeImages * c.writeImage,
  };
  return { seconds: Object.values(parts).reduce((a, b) => a + b, 0), parts };
}

/** 'OpenBLAS' or 'built-in' from backendInfo().cpu.gemm ("openblas <config>" / "builtin"). */
export function gemmKind(gemm: string): 'OpenBLAS' | 'built-in' | 'unknown' {
  if (/^openblas\b/i.test(gemm.trim())) return 'OpenBLAS';
  return gemmCheck().isBuiltinGemm(gemm) ? 'built-in' : 'unknown';
}

const duration = (s: number) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);
const ms = (s: number) => `${(1000 * s).toFixed(s < 0.01 ? 1 : 0)} ms`;

/**
 * The line naming the GEMM; for the built-in one, which kernel and how it compares with OpenBLAS, and for its
 * slow portable kernel how to get OpenBLAS.
 */
export function gemmNotice(cpu: { gemm: string; threads?: number; simd?: string }): string {
  const kind = gemmKind(cpu.gemm);
  const { BUILTIN_VS_OPENBLAS, hasAvx2Kernel } = gemmCheck();
  const extra = [cpu.threads !== undefined ? `${cpu.threads} threads` : '', cpu.simd ?? ''].filter(Boolean).join(', ');
  const head = `vwlmm demo: CPU GEMM: ${kind} (${cpu.gemm})${extra ? `, ${extra}` : ''}`;
  if (kind !== 'built-in') return head;
  if (/avx512f/.test(cpu.gemm)) return `${head}: its AVX-512F kernel (the AVX2+FMA kernel's bits at 1.0-2.2x its rate; the demo's steps ${BUILTIN_VS_OPENBLAS.avx512DemoSteps} of their time with OpenBLAS's AVX2 kernels)`;
  if (hasAvx2Kernel(cpu.simd)) return `${head}: its AVX2+FMA kernel, on par with OpenBLAS (the demo's steps ${BUILTIN_VS_OPENBLAS.avx2DemoSteps} of its time)`;
  return `${head}\n  the built-in GEMM's portable kernel (no AVX2+FMA): ${BUILTIN_VS_OPENBLAS.portableGemm} slower matrix products than OpenBLAS, the demo's` +
    ` steps ${BUILTIN_VS_OPENBLAS.portableDemoSteps} as long.\n  For OpenBLAS: sudo apt-get install -y libopenblas-dev, then \`VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm\`` +
    ' (in a source checkout: `npm run build:native`).';
}

/** The line with the expected time and what it rests on. */
export function estimateNotice(e: DemoEstimate, c: Calibration, o: { ablation: boolean; resumed: boolean }): string {
  const p = e.parts;
  const what = `${o.ablation ? 'both runs' : 'the VW-LMM run'}${o.resumed ? ', the part left to resume' : ''}`;
  return `vwlmm demo: expected time on this machine: ~${duration(e.seconds)} (${what}: stage 0 ${duration(p.stage0)}, captions ${duration(p.captions)}, ` +
    `questions ${duration(p.questions)}, evaluation ${duration(p.evaluation)}, data ${duration(p.data)}); measured just now in ${c.seconds.toFixed(1)} s: ` +
    `a stage-0 step ${ms(c.stage0Step)}, a caption step ${ms(c.captionStep)}, a question step ${ms(c.questionStep)}, an evaluation question ${ms(c.question)}`;
}

/** Steps per calibrated kind; the per-step time is taken between the trainer's records at steps 10 and 20. */
const CAL_STEPS = 20;
/**
 * Stage 0 runs twice this many steps and is timed over the second half: its first steps cost more (a 2-core EPYC VM:
 * 46-49 ms a step over the first 24 steps, 38-40 ms over steps 20 to 40, 37.6 ms over the default's 6,000 steps).
 */
const STAGE0_FROM = 20;

/**
 * Times a few real steps of each kind with a throwaway model of the recipe's size (runRecipe on a small split,
 * in a temporary directory that is removed afterwards), then its answers to a small written test set (the
 * demo's file evaluation). Nothing of it touches the demo's own run.
 */
export async function calibrate(r: Recipe, opts: { device?: DeviceSpec; dtype?: ComputeDtype } = {}): Promise<Calibration> {
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-calibration-'));
  try {
    // 256 training images: the set-up's fixed part (model, trainer) spread thinly enough over them (per image
    // 5.3 ms measured with 64 images, 2.1 ms with 2,000)
    const trainImages = 256, testImages = 4, stage0Steps = 2 * STAGE0_FROM;
    const cal: Recipe = {
      ...r, trainImages, testImages, evalEvery: 0, evalQuestions: 40,
      // all caption steps with the tower frozen when the recipe's are (the default), else all trainable
      stage0: { ...r.stage0, steps: r.stage0.steps > 0 ? stage0Steps : 0, frozenSteps: r.stage0.frozenSteps >= r.stage1.steps ? CAL_STEPS : 0 },
      stage1: { ...r.stage1, steps: CAL_STEPS, warmupSteps: 0 },
      stage2: { ...r.stage2, steps: CAL_STEPS, nonRelationalSteps: 0 },
      text: undefined, // costed as caption steps (demoWork): an upper bound
    };
    const dataDir = path.join(dir, 'data');
    let t = Date.now();
    writeSortOfClevr(dataDir, { train: 14, test: 2, seed: r.seed });
    writeWordLevelTokenizer(path.join(dataDir, 'tokenizer.json'), sortOfClevrVocabulary());
    const writeImage = (Date.now() - t) / 1000 / 16;
    const times: { rec: Record<string, unknown>; at: number }[] = [];
    const start = Date.now();
    const res = await runRecipe(cal, { outDir: path.join(dir, 'run'), device: opts.device, dtype: opts.dtype, logEvery: 10, onLog: (rec) => times.push({ rec, at: Date.now() }) });
    const end = Date.now();
    let fileQuestion: number;
    try {
      t = Date.now();
      const ev = await evaluateFile(res.model, new TextTokenizer(path.join(dataDir, 'tokenizer.json')), path.join(dataDir, 'test.json'), dataDir, { maxNewTokens: 4 });
      fileQuestion = (Date.now() - t) / 1000 / Math.max(1, ev.count);
    } finally {
      res.model.dispose();
    }
    const fail = (what: string): never => {
      throw new Error(`demo calibration: ${what} (records: ${times.map((x) => JSON.stringify(x.rec).slice(0, 80)).join('; ')})`);
    };
    const train = (match: (stage: string) => boolean) => times.filter((x) => x.rec.type === 'train' && match(String(x.rec.stage)));
    // per-step time of a trainer stage between its records at steps 10 and 20 (past the first steps' warm-up)
    const perStep = (match: (stage: string) => boolean, label: string) => {
      const recs = train(match);
      const a = recs.find((x) => x.rec.step === 10), b = recs.find((x) => x.rec.step === CAL_STEPS);
      if (!a || !b) return fail(`no ${label} records at steps 10 and ${CAL_STEPS}`);
      return ((b.rec.elapsed as number) - (a.rec.elapsed as number)) / (CAL_STEPS - 10);
    };
    const isCaption = (s: string) => s.startsWith('captions'), isQuestion = (s: string) => s === 'questions';
    const captionStep = perStep(isCaption, 'caption');
    const questionStep = perStep(isQuestion, 'question');
    // a stage's evaluation runs right after its last step's record
    const evalAfter = (match: (stage: string) => boolean) => {
      const i = times.findIndex((x) => x.rec.type === 'eval' && match(String(x.rec.stage)));
      if (i < 1) return fail('no evaluation record after a training record');
      return (times[i].at - times[i - 1].at) / 1000;
    };
    const captionEvalImage = evalAfter(isCaption) / testImages;
    const summary = times.find((x) => x.rec.type === 'summary');
    if (!summary) return fail('no summary record');
    // after the summary, runRecipe only answers every question of its test split
    const question = (end - summary.at) / 1000 / (testImages * QUESTIONS_PER_IMAGE);
    // set-up: before stage 0 (splits, model) and between it and the first trainer step (samples, trainer)
    const firstTrain = times.find((x) => x.rec.type === 'train');
    if (!firstTrain) return fail('no training record');
    const trainerStart = firstTrain.at - 1000 * (firstTrain.rec.elapsed as number);
    let stage0Step = 0, stage0Ms = 0;
    if (cal.stage0.steps > 0) {
      const v = times.find((x) => x.rec.stage === 'vision' && x.rec.done);
      const at = (step: number) => times.find((x) => x.rec.stage === 'vision' && x.rec.step === step)?.rec.elapsed as number | undefined;
      const a = at(STAGE0_FROM), b = at(stage0Steps);
      if (!v || a === undefined || b === undefined) return fail(`no stage-0 records at steps ${STAGE0_FROM} and ${stage0Steps}`);
      stage0Step = (b - a) / (stage0Steps - STAGE0_FROM);
      stage0Ms = 1000 * (v.rec.seconds as number);
    }
    const setupImage = Math.max(0, trainerStart - start - stage0Ms) / 1000 / trainImages;
    return { stage0Step, captionStep, questionStep, question, fileQuestion, captionEvalImage, setupImage, writeImage, seconds: (Date.now() - t0) / 1000 };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
