// The Sort-of-CLEVR task in memory, for the demo and recipe experiments: scenes, questions and captions
// generated with the project's generator (src/data/sort_of_clevr.ts), tokenised once with the word-level
// tokenizer and the conversation templates, images kept as raw RGB and normalised per batch. Samples
// are either one image with several question turns (multi-turn, every answer supervised) or a caption.
import { collate, nextTokenTargets, visualWordRows } from '../data/collate';
import { TemplateName, tokenizeConversation, Turn } from '../data/conversation';
import { normalizeRgb } from '../data/images';
import {
  answerFor, captionFor, COLOURS, renderScene, Scene, sortOfClevrSplit, sortOfClevrVocabulary, SortOfClevrQuestion,
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
    const base = `${o.colour} ${o.shape} ${o.cx < 37.5 ? 'left' : 'right'} ${o.cy < 37.5 ? 'top' : 'bottom'}`;
    const rel = scene.objects.length > 1 ? ` closest ${answerFor(scene, 'closest', i)} furthest ${answerFor(scene, 'furthest', i)}` : '';
    return `${base}${rel} same ${answerFor(scene, 'count', i)}`;
  }).join(' , ');
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

/** A ModelBatch from samples of one split (images normalised on the fly). */
export function batchOf(samples: TaskSample[], split: SplitData, opts: { imageSize: number; numPatches: number; padId: number; mean: readonly number[]; std: readonly number[] }): ModelBatch {
  const b = collate(samples.map((s) => ({ inputIds: s.inputIds, labels: s.labels, image: normalizeRgb(split.rgb[s.image], opts.imageSize, opts.mean, opts.std) })), { padId: opts.padId, numPatches: opts.numPatches });
  return {
    B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions,
    pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b),
  };
}

export { COLOURS };

export { normalizeAnswer } from '../eval/llava_eval';
