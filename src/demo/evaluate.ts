// Greedy-decoding evaluation of Sort-of-CLEVR questions held in memory: accuracy overall, per question
// kind and per group (non-relational / relational).
import { collate } from '../data/collate';
import { buildGenerationPrompt, TemplateName } from '../data/conversation';
import { normalizeRgb } from '../data/images';
import { TextTokenizer } from '../data/tokenizer';
import { VwLmm } from '../model/vwlmm';
import { noGrad } from '../autograd';
import * as F from '../functional';
import { scope, Tensor } from '../tensor';
import type { ProcessGroup } from '../distributed/process_group';
import { chunkOf } from '../eval/chunk';
import { batchOf, captionText, normalizeAnswer, SplitData, tokenizeSamples } from './task';

export interface Accuracy {
  accuracy: number;
  count: number;
  categories: Record<string, { accuracy: number; count: number }>;
  groups: Record<string, { accuracy: number; count: number }>;
}

/** This rank's contiguous share of the indices [0, n), as LLaVA's --num-chunks splits questions (all without a group). */
function shareOf(n: number, group?: ProcessGroup): number[] {
  return chunkOf(Array.from({ length: n }, (_, i) => i), group?.worldSize ?? 1, group?.rank ?? 0);
}

/** Counts summed over the group's ranks (an int32 all-reduce; the counts themselves without a group). */
function summed(counts: Int32Array, group?: ProcessGroup): Int32Array {
  if (!group || group.worldSize === 1) return counts;
  return scope(() => {
    const t = Tensor.fromArray(counts, [counts.length], { device: group.device });
    group.allReduce(t);
    return t.toArray() as Int32Array;
  });
}

/**
 * Greedy answers to the split's questions (the first maxQuestions), scored by exact match. With a process group every
 * rank answers its contiguous share and the ranks sum which were right (as HF's Trainer shards its evaluation): each
 * answer is the one a single process gives, so is the result.
 */
export function evaluateSplit(model: VwLmm, split: SplitData, tokenizer: TextTokenizer, template: TemplateName, opts: { maxQuestions?: number; maxNewTokens?: number; processGroup?: ProcessGroup } = {}): Accuracy {
  const cfg = model.config;
  const meta: { answer: string; category: string; group: string; image: number; question: string }[] = [];
  outer: for (let i = 0; i < split.scenes.length; i++) {
    for (const q of split.questions[i]) {
      if (opts.maxQuestions !== undefined && meta.length >= opts.maxQuestions) break outer;
      meta.push({ answer: q.answer, category: q.category, group: q.group, image: i, question: q.question });
    }
  }
  const share = shareOf(meta.length, opts.processGroup);
  const prompts: { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null }[] = [];
  let pixels: Float32Array | null = null, pixelsOf = -1;
  for (const m of share.map((i) => meta[i])) {
    if (m.image !== pixelsOf) [pixels, pixelsOf] = [normalizeRgb(split.rgb[m.image], cfg.image.size, cfg.image.mean, cfg.image.std), m.image];
    const p = buildGenerationPrompt([{ from: 'human', value: `<image>\n${m.question}` }], template, tokenizer);
    const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels! }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
    prompts.push({ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues });
  }
  const mine = model.generate(prompts, { maxNewTokens: opts.maxNewTokens ?? 4, eosId: tokenizer.eosId ?? undefined, batchSize: 64 });
  const right = new Int32Array(meta.length);
  mine.forEach((ids, k) => (right[share[k]] = normalizeAnswer(tokenizer.decode(ids)) === normalizeAnswer(meta[share[k]].answer) ? 1 : 0));
  const rightAll = summed(right, opts.processGroup);
  const tally = (m: Record<string, { correct: number; count: number }>, k: string, ok: boolean) => {
    m[k] ??= { correct: 0, count: 0 };
    m[k].count++;
    if (ok) m[k].correct++;
  };
  const cats: Record<string, { correct: number; count: number }> = {}, groups: Record<string, { correct: number; count: number }> = {};
  let correct = 0;
  meta.forEach((m, i) => {
    const ok = rightAll[i] === 1;
    if (ok) correct++;
    tally(cats, m.category, ok);
    tally(groups, m.group, ok);
  });
  const fin = (m: Record<string, { correct: number; count: number }>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { accuracy: v.correct / v.count, count: v.count }]));
  return { accuracy: correct / Math.max(1, meta.length), count: meta.length, categories: fin(cats), groups: fin(groups) };
}

/** The caption words the recipe's evaluations score (captionAccuracy in its log records). */
export const CAPTION_WORDS: readonly string[] = ['square', 'circle', 'left', 'right', 'top', 'bottom'];

/**
 * Teacher-forced accuracy of a caption's words of each set (CAPTION_WORDS: shape, left/right, top/bottom, the stage-1
 * signal, chance 50%; colour words and separators are not scored) on full scenes, from one pass over the images.
 * `relational`: the captions the relational recipe trains on (captionText's, whose closest / furthest shape words
 * count too); a model trained on those, scored on the plain ones, meets a "," where it learned "closest" and loses
 * track of the later objects. With a process group every rank scores its share of the images, and the ranks sum.
 */
export function captionWordAccuracies(model: VwLmm, split: SplitData, tokenizer: TextTokenizer, wordSets: readonly (readonly string[])[], relational = false, maxImages = 100, processGroup?: ProcessGroup): number[] {
  const sets = wordSets.map((words) => new Set(words.map((w) => tokenizer.tokenToId(w))));
  const images = shareOf(Math.min(maxImages, split.scenes.length), processGroup);
  const convs = images.map((i) => ({ image: i, turns: [{ from: 'human' as const, value: '<image>' }, { from: 'gpt' as const, value: captionText(split.scenes[i], relational) }] }));
  const { samples } = tokenizeSamples(convs, tokenizer, 'plain');
  const cfg = model.config;
  const counts = new Int32Array(2 * sets.length); // hits, then totals, of each set
  for (let s = 0; s < samples.length; s += 32) {
    const batch = batchOf(samples.slice(s, s + 32), split, { imageSize: cfg.image.size, numPatches: model.numImageTokens, padId: tokenizer.padId, mean: cfg.image.mean, std: cfg.image.std });
    noGrad(() => scope(() => {
      const { h } = model.hidden(batch);
      const logits = F.linear(h, model.lm_head.weight).toArray() as Float32Array;
      const V = cfg.llm.vocabSize;
      batch.targets!.forEach((t, r) => {
        if (t < 0 || !sets.some((set) => set.has(t))) return;
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[r * V + v] > logits[r * V + best]) best = v;
        sets.forEach((set, k) => {
          if (!set.has(t)) return;
          counts[sets.length + k]++;
          if (best === t) counts[k]++;
        });
      });
    }));
  }
  const all = summed(counts, processGroup);
  return sets.map((_, k) => (all[sets.length + k] ? all[k] / all[sets.length + k] : 0));
}
