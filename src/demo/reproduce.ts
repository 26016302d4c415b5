// The demo's LLaVA-file stages (stage 1 "captions", stage 2 "questions") as `vwlmm train` runs them again. runRecipe
// trains a list of RecordStages; the same list writes:
//   <data>/stages/<stage>.json  one LLaVA record per sample, in the order of the stage's samples (the indices the
//                               Trainer draws), each with its conversation_template; image paths relative to <data>
//   <data>/images/<subset>_NNNNN.png  the caption subsets' images (the training scenes' are writeSortOfClevr's
//                               images/train_NNNNN.png, drawn from the same stream: checked against meta.json)
//   <run>/init/                 the model the first of them starts from (after stage 0 and the text stage, whose
//                               losses are their own, not a LLaVA file's): saved by runRecipe as that stage starts
//   <run>/reproduce.sh          one `vwlmm train` per stage, each from the previous one's checkpoint
// So the files and the commands cannot drift from the recipe. Why the run is the same, step for step:
//   - sample order: batchIndices draws it from (seed, stage name); the script passes both (--seed, --stage);
//   - pixels: the PNGs are lossless and 75 px images are not resized, so loadImage + preprocessClip end in the same
//     normalisation as normalizeRgb (images.ts normalizeRgbRegion), with the mean / std the checkpoint's config holds;
//   - tokens: tokenizeConversation with each record's template, the tokenizer saved in the checkpoint; both collate
//     with `collate` and take the same targets and KL rows;
//   - schedule, batch, trainable parts, learning rates: the Stage's own fields, written out as options (nothing is left
//     to a default that could differ between the Trainer and the command line);
//   - evaluation during the demo's run only reads the model.
// Bit for bit with the same number of threads (the kernels' reductions are fixed per thread count).
import * as fs from 'fs';
import * as path from 'path';
import type { ComputeDtype } from '../amp';
import { TemplateName, tokenizeConversation, Turn } from '../data/conversation';
import { Scene, SORT_OF_CLEVR_GENERATOR_VERSION, writeSceneImage } from '../data/sort_of_clevr';
import type { SceneImageWriter } from '../data/scene_writer';
import { TextTokenizer } from '../data/tokenizer';
import { Stage, TRAINABLE_PARTS } from '../train/trainer';
import { TaskSample } from './task';

/** One sample of a record stage: its conversation, the template it is tokenised with, its image (index and file). */
export interface StageConversation {
  /** The image's index in the stage's split (its RGB in memory). */
  image: number;
  /** The same image's file, relative to the data directory. */
  file: string;
  turns: Turn[];
  template: TemplateName;
}

/** A stage that trains on LLaVA records: what runRecipe's Trainer runs, and what the stage file and command hold. */
export interface RecordStage {
  /**
   * The Trainer's stage (makeBatch over `conversations` tokenised in order), with the global batch size (runRecipe gives
   * each data-parallel rank its share) and every schedule field set, so the command names each one.
   */
  stage: Stage & { steps: number; gradAccum: number; warmupRatio: number; weightDecay: number; maxGradNorm: number };
  conversations: StageConversation[];
  /** The images the stage file names that only the stage files bring (file -> scene): the caption subsets'. */
  images: Map<string, Scene>;
}

/**
 * The samples of a stage's conversations, in order, each tokenised with its own template (as `vwlmm train` tokenises
 * each record). A mismatch is an error: sample i must be record i of the stage file.
 */
export function stageSamples(where: string, conversations: StageConversation[], tokenizer: TextTokenizer): TaskSample[] {
  return conversations.map((c, k) => {
    const t = tokenizeConversation(c.turns, tokenizer, c.template);
    if (t.mismatch) throw new Error(`${where}: conversation ${k} (image ${c.file}) does not tokenise as the ${c.template} template expects: ${t.mismatchDetail}`);
    return { image: c.image, inputIds: t.inputIds, labels: t.labels };
  });
}

/**
 * Refuses a data directory whose training images are not this run's: the stage files name images/train_NNNNN.png,
 * which writeSortOfClevr wrote there from `new Generator(seed).fork('train')`, the stream runRecipe trains on.
 */
function checkTrainImages(dataDir: string, want: { seed: number; trainImages: number; nonRelational: number; relational: number }): void {
  const f = path.join(dataDir, 'meta.json');
  const fix = `writeSortOfClevr('${dataDir}', { train: ${want.trainImages}, seed: ${want.seed} }) first, as the demo does`;
  let meta: { generatorVersion?: unknown; seed?: unknown; counts?: Record<string, unknown> };
  try {
    meta = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (e) {
    throw new Error(`runRecipe reproduce: cannot read ${f} (${(e as Error).message}): the stage files name the training images writeSortOfClevr writes there; ${fix}`);
  }
  const got: Record<string, unknown> = { generatorVersion: meta.generatorVersion, seed: meta.seed, ...meta.counts };
  const expected: Record<string, unknown> = { generatorVersion: SORT_OF_CLEVR_GENERATOR_VERSION, ...want };
  const diff = Object.keys(expected).filter((k) => got[k] !== expected[k]);
  if (diff.length) throw new Error(`runRecipe reproduce: ${f} has ${diff.map((k) => `${k} ${JSON.stringify(got[k])}`).join(', ')}, this run ${diff.map((k) => `${k} ${JSON.stringify(expected[k])}`).join(', ')}: its training images are not the ones this run trains on; ${fix}`);
}

/**
 * Writes <dataDir>/stages/<stage>.json (one record per line inside the list) and the images only they name (through
 * `writer` when given: on disk once its flush() resolves).
 */
export function writeStageFiles(dataDir: string, stages: RecordStage[], train: { seed: number; trainImages: number; nonRelational: number; relational: number }, writer?: SceneImageWriter): void {
  checkTrainImages(dataDir, train);
  fs.mkdirSync(path.join(dataDir, 'stages'), { recursive: true });
  const written = new Set<string>();
  for (const { stage, conversations, images } of stages) {
    for (const [file, scene] of images) {
      if (written.has(file)) continue; // a split two stages share (captions-frozen-tower, captions)
      const to = path.join(dataDir, file);
      fs.mkdirSync(path.dirname(to), { recursive: true });
      // renderScene's pixels, as the run trained on (recipe.ts renders the split's images with it)
      if (writer) writer.write(to, scene);
      else writeSceneImage(to, scene);
      written.add(file);
    }
    const lines = conversations.map((c, k) => JSON.stringify({ id: `${stage.name}_${k}`, image: c.file, conversations: c.turns, conversation_template: c.template }));
    fs.writeFileSync(stageFile(dataDir, stage.name), `[\n${lines.join(',\n')}\n]\n`);
  }
}

function stageFile(dataDir: string, name: string): string {
  return path.join(dataDir, 'stages', `${name}.json`);
}

/** How the demo ran: its seed, device, compute dtype and data-parallel ranks (1: one process). */
export interface ReproduceRun {
  seed: number;
  device: string;
  dtype: ComputeDtype;
  ranks: number;
}

/**
 * `vwlmm train`'s options for one stage (everything but --init, --data, --image-folder and --out). On several ranks the
 * stage's (global) batch is split as the demo split it: each rank's share, on as many ranks.
 */
export function stageOptions(s: RecordStage['stage'], run: ReproduceRun): string[] {
  const parts = Object.keys(TRAINABLE_PARTS).filter((p) => s.trainable[TRAINABLE_PARTS[p]]);
  if (!Number.isInteger(run.ranks) || run.ranks < 1 || s.batchSize % run.ranks !== 0) throw new RangeError(`stageOptions: stage '${s.name}': its batch of ${s.batchSize} does not split over ${run.ranks} ranks`);
  return [
    ...(run.ranks > 1 ? ['--nproc-per-node', String(run.ranks)] : []),
    '--stage', s.name, '--steps', String(s.steps), '--batch-size', String(s.batchSize / run.ranks), '--grad-accum', String(s.gradAccum),
    '--lr', String(s.lr), '--warmup-ratio', String(s.warmupRatio), '--weight-decay', String(s.weightDecay), '--max-grad-norm', String(s.maxGradNorm),
    '--trainable', parts.join(','),
    ...(s.visionTowerLr !== undefined ? ['--mm-vision-tower-lr', String(s.visionTowerLr)] : []),
    ...(s.projectorLr !== undefined ? ['--mm-projector-lr', String(s.projectorLr)] : []),
    '--seed', String(run.seed), '--device', run.device, '--dtype', run.dtype === 'bfloat16' ? 'bf16' : 'fp32',
  ];
}

const SAFE = /^[\w.,:/+=-]+$/;
/** A word for bash: as it is when it has no special characters, else single-quoted. */
export const shellWord = (w: string) => (SAFE.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/**
 * reproduce.sh of a run directory: the record stages one after the other with `vwlmm train` (`$VWLMM`, default
 * `npx vwlmm`), the first from <runDir>/init, each next one from the previous one's checkpoint, into `$1` (default
 * <runDir>/reproduce/<stage>). Paths are relative to the script's own directory, so the output folder can move.
 */
export function reproduceScript(runDir: string, dataDir: string, stages: RecordStage[], run: ReproduceRun): string {
  const data = path.relative(path.resolve(runDir), path.resolve(dataDir)) || '.';
  const lines = [
    '#!/usr/bin/env bash',
    '# Written by vwlmm demo (src/demo/reproduce.ts): its LLaVA-file stages again with `vwlmm train`, on the files they',
    `# trained on (${path.join(data, 'stages')}/), from the model they started from (init/). With the same number of threads the`,
    '# per-step losses (<out>/<stage>/metrics.jsonl) and the last checkpoint are bit for bit the run\'s own (on as many',
    `# data-parallel ranks as it ran on: ${run.ranks}).`,
    '# Usage: reproduce.sh [out-dir]   (VWLMM: the command that runs vwlmm, default "npx vwlmm")',
    'set -euo pipefail',
    'here="$(cd "$(dirname "$0")" && pwd)"',
    `data="$here/${data}"`,
    'out="${1:-$here/reproduce}"',
    'vwlmm="${VWLMM:-npx vwlmm}"',
  ];
  stages.forEach(({ stage: s }, k) => {
    if (!SAFE.test(s.name)) throw new RangeError(`reproduceScript: stage name '${s.name}' is not a plain file name`);
    const init = k === 0 ? '"$here/init"' : `"$out/${stages[k - 1].stage.name}/checkpoint"`;
    // --overwrite-output-dir: running the script again starts each stage over
    lines.push(`$vwlmm train --init ${init} --data "$data/stages/${s.name}.json" --image-folder "$data" --out "$out/${s.name}" --overwrite-output-dir ${stageOptions(s, run).map(shellWord).join(' ')}`);
  });
  return lines.join('\n') + '\n';
}
