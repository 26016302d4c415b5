// `vwlmm demo`, the main job: generate Sort-of-CLEVR (LLaVA JSON + PNG + tokenizer.json), train a small
// VW-LMM from scratch through both stages on the CPU (src/demo/recipe.ts), evaluate it on the generated
// test split through the file pipeline (the same code as `vwlmm eval`), and write the checkpoint, the
// metrics log, the loss curve and a visual-words picture. With ablation, the same run with vmWeight 0.
// Before training it says which CPU GEMM runs and how long the run should take here (src/demo/estimate.ts).
import type { ComputeDtype } from '../amp';
import * as fs from 'fs';
import * as path from 'path';
import { DeviceSpec, useDevice } from '../device';
import { sortOfClevrVocabulary, writeSortOfClevr } from '../data/sort_of_clevr';
import { writeWordLevelTokenizer } from '../data/word_level_tokenizer';
import { TextTokenizer } from '../data/tokenizer';
import { normalizeRgb } from '../data/images';
import { evaluateFile } from '../eval/llava_eval';
import { drawVisualWords, visualWordsOf } from '../eval/visual_words';
import { plotMetrics } from '../viz/plot';
import { Progress } from '../train/progress';
import { VwLmm } from '../model/vwlmm';
import { cpu } from '../native';
import { Calibration, calibrate, DemoEstimate, demoWork, estimateDemo, estimateNotice, gemmNotice, stepsDone } from './estimate';
import { DEFAULT_RECIPE, Recipe, runRecipe } from './recipe';
import { SplitData } from './task';

const GROUP: Record<string, 'nonRelational' | 'relational'> = { shape: 'nonRelational', left: 'nonRelational', top: 'nonRelational', closest: 'relational', furthest: 'relational', count: 'relational' };

export interface DemoRunResult {
  accuracy: number;
  nonRelationalAccuracy: number;
  relationalAccuracy: number;
  categories: Record<string, { accuracy: number; count: number }>;
  visualWordAgreement: number | null;
  trainSeconds: number;
  checkpoint: string;
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
  /** The time expected at the start (compare with `seconds`) and the per-step costs it was computed from. */
  estimate: DemoEstimate & { calibration: Calibration };
}

function scaled(r: Recipe, scale: number): Recipe {
  const c: Recipe = JSON.parse(JSON.stringify(r));
  if (c.stage0.steps > 0) c.stage0.steps = Math.max(1, Math.round(c.stage0.steps * scale));
  c.stage0.frozenSteps = Math.round(c.stage0.frozenSteps * scale);
  c.stage1.steps = Math.max(1, Math.round(c.stage1.steps * scale));
  c.stage2.steps = Math.max(1, Math.round(c.stage2.steps * scale));
  c.evalEvery = Math.max(1, Math.round(c.evalEvery * scale));
  if (scale < 1) c.trainImages = Math.max(64, Math.round(c.trainImages * scale));
  return c;
}

/** Share of patches lying on an object whose top-1 visual word is that object's colour or shape word. */
export function visualWordAgreement(model: VwLmm, tokenizer: TextTokenizer, split: SplitData, maxImages = 50): number | null {
  if (!model.vm_head) return null;
  const cfg = model.config, p = cfg.vision.patchSize, S = cfg.vision.imageSize, grid = S / p;
  let hit = 0, total = 0;
  for (let i = 0; i < Math.min(maxImages, split.scenes.length); i++) {
    const patches = visualWordsOf(model, tokenizer, normalizeRgb(split.rgb[i], S, cfg.image.mean, cfg.image.std), 1);
    for (const patch of patches) {
      // the object covering most of the patch, if any
      let best = -1, bestCount = 0;
      split.scenes[i].objects.forEach((o, k) => {
        let c = 0;
        for (let y = patch.row * p; y < (patch.row + 1) * p; y++)
          for (let x = patch.col * p; x < (patch.col + 1) * p; x++) if (Math.abs(x - o.cx) <= 5 && Math.abs(y - o.cy) <= 5) c++;
        if (c > bestCount) [best, bestCount] = [k, c];
      });
      if (best < 0 || bestCount < (p * p) / 8) continue;
      const o = split.scenes[i].objects[best];
      total++;
      if (patch.words[0].token === o.colour || patch.words[0].token === o.shape) hit++;
    }
  }
  return total ? hit / total : null;
}

async function oneRun(recipe: Recipe, dir: string, dataDir: string, tokenizer: TextTokenizer, log: (s: string) => void, quiet: boolean, resume: boolean, device: DeviceSpec | undefined, dtype: ComputeDtype | undefined, pretrainedTower?: Map<string, Float32Array>): Promise<{ result: DemoRunResult; model: VwLmm; test: SplitData; tower: Map<string, Float32Array> | null }> {
  const t0 = Date.now();
  const progress = new Progress(50, quiet ? process.stderr : process.stdout);
  const res = await runRecipe(recipe, {
    outDir: dir, device, dtype, resume, handleSignals: true, pretrainedTower,
    tokenizerJson: JSON.parse(fs.readFileSync(path.join(dataDir, 'tokenizer.json'), 'utf8')),
    onLog: (r) => {
      progress.update(r);
      if (r.type === 'eval') log(`  eval after ${r.stage} step ${r.step}: caption words ${(100 * (r.captionAccuracy as number)).toFixed(1)}%${r.nonRelational !== undefined ? `, non-relational ${(100 * (r.nonRelational as number)).toFixed(1)}%, relational ${(100 * (r.relational as number)).toFixed(1)}%` : ''}`);
    },
  });
  progress.stop();
  const trainSeconds = (Date.now() - t0) / 1000;
  const ev = await evaluateFile(res.model, tokenizer, path.join(dataDir, 'test.json'), dataDir, { maxNewTokens: 4 });
  const groups = { nonRelational: { sum: 0, n: 0 }, relational: { sum: 0, n: 0 } };
  for (const [cat, v] of Object.entries(ev.categories)) {
    const g = GROUP[cat];
    if (g) {
      groups[g].sum += v.accuracy * v.count;
      groups[g].n += v.count;
    }
  }
  return {
    model: res.model,
    test: res.testSplit,
    tower: res.tower,
    result: {
      accuracy: ev.accuracy, nonRelationalAccuracy: groups.nonRelational.sum / Math.max(1, groups.nonRelational.n),
      relationalAccuracy: groups.relational.sum / Math.max(1, groups.relational.n), categories: ev.categories,
      visualWordAgreement: visualWordAgreement(res.model, tokenizer, res.testSplit), trainSeconds, checkpoint: path.join(dir, 'checkpoint'),
    },
  };
}

export async function runDemo(o: { outDir: string; seed: number; ablation: boolean; scale: number; quiet: boolean; recipe?: Recipe; resume?: boolean; device?: DeviceSpec; dtype?: ComputeDtype }): Promise<DemoResult> {
  const t0 = Date.now();
  const log = (s: string) => (o.quiet ? process.stderr.write(s + '\n') : console.log(s));
  const recipe = scaled({ ...(o.recipe ?? DEFAULT_RECIPE), seed: o.seed }, o.scale);
  const info = cpu().backendInfo() as { gemm: string; threads?: number; simd?: string };
  log(gemmNotice(info));
  // what a --resume has left: each run's trained steps from its checkpoint (stage 0 is then skipped)
  const done = o.resume ? { vw: stepsDone(path.join(o.outDir, 'vw')), llava: o.ablation ? stepsDone(path.join(o.outDir, 'llava')) : null } : undefined;
  useDevice('vwlmm demo', o.device); // before anything else: no GPU is an error now, not after the data
  const calibration = await calibrate(recipe, { device: o.device, dtype: o.dtype });
  const estimate = { ...estimateDemo(demoWork(recipe, { ablation: o.ablation, done }), calibration), calibration };
  log(estimateNotice(estimate, calibration, { ablation: o.ablation, resumed: !!done && (done.vw !== null || done.llava !== null) }));
  const dataDir = path.join(o.outDir, 'data');
  log(`vwlmm demo: generating Sort-of-CLEVR (${recipe.trainImages} + ${recipe.testImages} images) in ${dataDir}`);
  writeSortOfClevr(dataDir, { train: recipe.trainImages, test: recipe.testImages, seed: o.seed });
  writeWordLevelTokenizer(path.join(dataDir, 'tokenizer.json'), sortOfClevrVocabulary());
  const tokenizer = new TextTokenizer(path.join(dataDir, 'tokenizer.json'));
  log(`training VW-LMM (vmWeight ${recipe.vmWeight}): stage 0 vision tower ${recipe.stage0.steps} steps, stage 1 captions ${recipe.stage1.steps} steps, stage 2 questions ${recipe.stage2.steps} steps`);
  const main = await oneRun(recipe, path.join(o.outDir, 'vw'), dataDir, tokenizer, log, o.quiet, !!o.resume, o.device, o.dtype);
  const metrics = path.join(o.outDir, 'vw', 'metrics.jsonl');
  const lossCurve = path.join(o.outDir, 'vw', 'loss_curve.png');
  await plotMetrics(metrics, lossCurve, `VW-LMM on Sort-of-CLEVR (seed ${o.seed})`);
  let visualWords: string | null = null;
  if (main.model.vm_head) {
    visualWords = path.join(o.outDir, 'vw', 'visual_words.png');
    const cfg = main.model.config;
    const patches = visualWordsOf(main.model, tokenizer, normalizeRgb(main.test.rgb[0], cfg.vision.imageSize, cfg.image.mean, cfg.image.std), 3);
    await drawVisualWords(main.test.rgb[0], 75, 75, patches, cfg.vision.imageSize / cfg.vision.patchSize, visualWords);
  }
  main.model.dispose();
  let ablation: DemoRunResult | undefined;
  if (o.ablation) {
    log('ablation: the same run with vmWeight 0 (plain LLaVA objective), from the same stage-0 tower');
    const a = await oneRun({ ...recipe, vmWeight: 0 }, path.join(o.outDir, 'llava'), dataDir, tokenizer, log, o.quiet, !!o.resume, o.device, o.dtype, main.tower ?? undefined);
    a.model.dispose();
    ablation = a.result;
  }
  const seconds = (Date.now() - t0) / 1000;
  const row = (name: string, r: DemoRunResult) =>
    `| ${name.padEnd(14)} | ${(100 * r.nonRelationalAccuracy).toFixed(1).padStart(6)}% | ${(100 * r.relationalAccuracy).toFixed(1).padStart(6)}% | ${['shape', 'left', 'top', 'closest', 'furthest', 'count'].map((c) => `${(100 * (r.categories[c]?.accuracy ?? 0)).toFixed(1).padStart(5)}%`).join(' | ')} | ${r.visualWordAgreement === null ? '   n/a' : `${(100 * r.visualWordAgreement).toFixed(1).padStart(5)}%`} |`;
  log('\n| model          | non-rel | relational | shape | left | top | closest | furthest | count | VW agreement |');
  log('|---|---|---|---|---|---|---|---|---|---|');
  log(row('VW-LMM', main.result));
  if (ablation) log(row('LLaVA (vm 0)', ablation));
  log(`\n${seconds.toFixed(0)} s (expected ${(estimate.seconds + calibration.seconds).toFixed(0)} s with the calibration); checkpoint ${main.result.checkpoint}; loss curve ${lossCurve}${visualWords ? `; visual words ${visualWords}` : ''}`);
  return { ...main.result, seconds, outDir: o.outDir, metrics, lossCurve, visualWords, ablation, gemm: info.gemm, estimate };
}


