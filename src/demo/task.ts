// The Sort-of-CLEVR task in memory, for the demo and recipe experiments: scenes, questions and captions
// generated with the project's generator (src/data/sort_of_clevr.ts), tokenised once with the word-level
// tokenizer and the conversation templates, images kept as raw RGB and normalised per batch. Samples
// are either one image with several question turns (multi-turn, every answer supervised) or a caption.
import { collate, nextTokenTargets, visualWordRows } from '../data/collate';
import { TemplateName, tokenizeConversation, Turn } from '../data/conversation';
import { normalizeRgbWriter } from '../data/images';
import {
  answerFor, captionFor, COLOURS, positionWords, renderScene, Scene, sortOfClevrSplit, sortOfClevrVocabulary, SortOfClevrQuestion,
} from '../data/sort_of_clevr';
import { wordLevelTokenizerJson, WORD_LEVEL_TOKENIZER_CONFIG } from '../data/word_level_tokenizer';
import { TextTokenizer } from '../data/tokenizer';
import { ModelBatch } from '../model/vwlmm';
import { Generator } from '../random';

export interface TaskSample {
  image: number;
  inputIds: number[];
  labels: number[];
}

export interface SplitData {
  scenes: Scene[];
  rgb: Uint8Array[];
  questions: SortOfClevrQuestion[][];
}

/** A split as writeSortOfClevr writes it from the same stream (sortOfClevrSplit), with its images rendered. */
export function makeSplit(n: number, gen: Generator, perImage: { nonRelational: number; relational: number }): SplitData {
  const { scenes, questions } = sortOfClevrSplit(gen, n, perImage);
  return { scenes, rgb: scenes.map(renderScene), questions };
}

export function makeTokenizer(): { tokenizer: TextTokenizer; json: Record<string, unknown> } {
  const json = wordLevelTokenizerJson(sortOfClevrVocabulary());
  return { tokenizer: new TextTokenizer(json, { config: WORD_LEVEL_TOKENIZER_CONFIG }), json };
}

/**
 * The stage-1 caption: the generator's dense caption (colour shape left|right top|bottom per object), or
 * with `relational` each object also gets "closest <shape> furthest <shape> same <n>" (the shapes of its
 * nearest and farthest objects and how many objects share its shape): the relations as dense targets.
 */
export function captionText(scene: Scene, relational = false): string {
  if (!relational) return captionFor(scene);
  return scene.objects.map((o, i) => {
    const base = `${o.colour} ${o.shape} ${positionWords(o)}`;
    const rel = scene.objects.length > 1 ? ` closest ${answerFor(scene, 'closest', i)} furthest ${answerFor(scene, 'furthest', i)}` : '';
    return `${base}${rel} same ${answerFor(scene, 'count', i)}`;
  }).join(' , ');
}

/**
 * The position caption (Recipe.stage1.positionCaptions): each object's colour and position words only, "red left top
 * , green right bottom , ...". After the colour word comes its position, where the full caption has its shape.
 */
export function positionCaptionText(scene: Scene): string {
  return scene.objects.map((o) => `${o.colour} ${positionWords(o)}`).join(' , ');
}

/** How many pixels of patch (row, col) object o of a scene covers (objects are the 11 x 11 squares around their centres). */
function coveredPixels(o: Scene['objects'][number], row: number, col: number, patch: number): number {
  const span = (lo: number, c: number) => Math.max(0, Math.min(lo + patch - 1, Math.floor(c + 5)) - Math.max(lo, Math.ceil(c - 5)) + 1);
  return span(col * patch, o.cx) * span(row * patch, o.cy);
}

/** The object covering most of patch (row, col) of a scene's image (at least 1/8 of the patch), or -1. */
export function objectAtPatch(scene: Scene, row: number, col: number, patch: number): number {
  let best = -1, bestCount = 0;
  scene.objects.forEach((o, k) => {
    const c = coveredPixels(o, row, col, patch);
    if (c > bestCount) [best, bestCount] = [k, c];
  });
  return bestCount >= (patch * patch) / 8 ? best : -1;
}

/**
 * Per object of a scene, the patches (raster index over a grid of `grid` x `grid`) it covers, each with the share of
 * the object's pixels in it (the shares sum to 1): where the object is in the image tokens, as a pooling weight.
 */
export function objectPatchWeights(scene: Scene, patch: number, grid: number): { patch: number; weight: number }[][] {
  return scene.objects.map((o) => {
    const cells: { patch: number; weight: number }[] = [];
    for (let row = 0; row < grid; row++)
      for (let col = 0; col < grid; col++) {
        const c = coveredPixels(o, row, col, patch);
        if (c > 0) cells.push({ patch: row * grid + col, weight: c });
      }
    const total = cells.reduce((a, c) => a + c.weight, 0);
    return cells.map((c) => ({ patch: c.patch, weight: c.weight / total }));
  });
}

/**
 * A scene written out as text, patch by patch in raster order (the image tokens' order): each patch's word is the
 * colour of the object covering it, or "." for the background. The text stage's stand-in for what a pretrained
 * LLM brings: words that name what is where, in the positions the image's patches will take.
 */
export function sceneGridText(scene: Scene, imageSize: number, patch: number, fill: 'object' | 'nearest' = 'object'): string {
  const n = Math.floor(imageSize / patch), words: string[] = [];
  for (let row = 0; row < n; row++)
    for (let col = 0; col < n; col++) {
      let k = objectAtPatch(scene, row, col, patch);
      if (k < 0 && fill === 'nearest') {
        // the object nearest the patch's centre: a map in which every patch is named
        const cx = (col + 0.5) * patch, cy = (row + 0.5) * patch;
        let best = Infinity;
        scene.objects.forEach((o, j) => {
          const d = (o.cx - cx) ** 2 + (o.cy - cy) ** 2;
          if (d < best) [best, k] = [d, j];
        });
      }
      words.push(k < 0 ? '.' : scene.objects[k].colour);
    }
  return words.join(' ');
}

export function questionConversation(qs: SortOfClevrQuestion[]): Turn[] {
  const turns: Turn[] = [];
  qs.forEach((q, i) => {
    turns.push({ from: 'human', value: i === 0 ? `<image>\n${q.question}` : q.question });
    turns.push({ from: 'gpt', value: q.answer });
  });
  return turns;
}

export function tokenizeSamples(convs: { image: number; turns: Turn[] }[], tokenizer: TextTokenizer, template: TemplateName): { samples: TaskSample[]; mismatches: number } {
  const samples: TaskSample[] = [];
  let mismatches = 0;
  for (const c of convs) {
    const t = tokenizeConversation(c.turns, tokenizer, template);
    if (t.mismatch) {
      mismatches++;
      continue;
    }
    samples.push({ image: c.image, inputIds: t.inputIds, labels: t.labels });
  }
  return { samples, mismatches };
}

/**
 * A ModelBatch from samples of one split (images normalised on the fly, straight into the batch's pixel array).
 * `pixels`: an array to fill instead of a new one (collate's options.pixelValues), for a caller done with the last batch.
 */
export function batchOf(samples: TaskSample[], split: SplitData, opts: { imageSize: number; numPatches: number; padId: number; mean: readonly number[]; std: readonly number[] }, pixels?: Float32Array): ModelBatch {
  const b = collate(samples.map((s) => ({ inputIds: s.inputIds, labels: s.labels, image: normalizeRgbWriter(split.rgb[s.image], opts.imageSize, opts.mean, opts.std) })), { padId: opts.padId, numPatches: opts.numPatches, pixelValues: pixels });
  return {
    B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions,
    pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b),
  };
}

/**
 * Stage.makeBatch over samples of one split: every batch fills the same pixel array, since the trainer is done with a
 * batch before it asks for the next (a new 2 MB array a step cost ~2 ms of page faults on the 2-core VM).
 */
export function stageBatches(samples: TaskSample[], split: SplitData, opts: Parameters<typeof batchOf>[2]): (indices: number[]) => ModelBatch {
  const perImage = 3 * opts.imageSize * opts.imageSize;
  let pixels = new Float32Array(0);
  return (indices) => {
    if (pixels.length < indices.length * perImage) pixels = new Float32Array(indices.length * perImage);
    return batchOf(indices.map((i) => samples[i]), split, opts, pixels);
  };
}

export { COLOURS };

export { normalizeAnswer } from '../eval/llava_eval';
