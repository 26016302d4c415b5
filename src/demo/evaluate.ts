// Greedy-decoding evaluation of Sort-of-CLEVR questions held in memory: accuracy overall, per question
// kind and per group (non-relational / relational).
import { collate } from '../data/collate';
import { buildGenerationPrompt, TemplateName } from '../data/conversation';
import { normalizeRgb } from '../data/images';
import { TextTokenizer } from '../data/tokenizer';
import { VwLmm } from '../model/vwlmm';
import { noGrad } from '../autograd';
import * as F from '../functional';
import { scope } from '../tensor';
import { batchOf, captionText, normalizeAnswer, SplitData, tokenizeSamples } from './task';

export interface Accuracy {
  accuracy: number;
  count: number;
  categories: Record<string, { accuracy: number; count: number }>;
  groups: Record<string, { accuracy: number; count: number }>;
}

export function evaluateSplit(model: VwLmm, split: SplitData, tokenizer: TextTokenizer, template: TemplateName, opts: { maxQuestions?: number; maxNewTokens?: number } = {}): Accuracy {
  const cfg = model.config;
  const prompts: { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null }[] = [];
  const meta: { answer: string; category: string; group: string }[] = [];
  outer: for (let i = 0; i < split.scenes.length; i++) {
    const pixels = normalizeRgb(split.rgb[i], cfg.image.size, cfg.image.mean, cfg.image.std);
    for (const q of split.questions[i]) {
      if (opts.maxQuestions !== undefined && prompts.length >= opts.maxQuestions) break outer;
      const p = buildGenerationPrompt([{ from: 'human', value: `<image>\n${q.question}` }], template, tokenizer);
      const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
      prompts.push({ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues });
      meta.push({ answer: q.answer, category: q.category, group: q.group });
    }
  }
  const outs = model.generate(prompts, { maxNewTokens: opts.maxNewTokens ?? 4, eosId: tokenizer.eosId ?? undefined, batchSize: 64 });
  const tally = (m: Record<string, { correct: number; count: number }>, k: string, ok: boolean) => {
    m[k] ??= { correct: 0, count: 0 };
    m[k].count++;
    if (ok) m[k].correct++;
  };
  const cats: Record<string, { correct: number; count: number }> = {}, groups: Record<string, { correct: number; count: number }> = {};
  let correct = 0;
  outs.forEach((ids, i) => {
    const ok = normalizeAnswer(tokenizer.decode(ids)) === normalizeAnswer(meta[i].answer);
    if (ok) correct++;
    tally(cats, meta[i].category, ok);
    tally(groups, meta[i].group, ok);
  });
  const fin = (m: Record<string, { correct: number; count: number }>) =>
    Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { accuracy: v.correct / v.count, count: v.count }]));
  return { accuracy: correct / Math.max(1, outs.length), count: outs.length, categories: fin(cats), groups: fin(groups) };
}

/** The caption words the recipe's evaluations score (captionAccuracy in its log records). */
export const CAPTION_WORDS: readonly string[] = ['square', 'circle', 'left', 'right', 'top', 'bottom'];

/**
 * Teacher-forced accuracy of a caption's words of each set (CAPTION_WORDS: shape, left/right, top/bottom, the stage-1
 * signal, chance 50%; colour words and separators are not scored) on full scenes, from one pass over the images.
 * `relational`: the captions the relational recipe trains on (captionText's, whose closest / furthest shape words
 * count too); a model trained on those, scored on the plain ones, meets a "," where it learned "closest" and loses
 * track of the later objects.
 */
export function captionWordAccuracies(model: VwLmm, split: SplitData, tokenizer: TextTokenizer, wordSets: readonly (readonly string[])[], relational = false, maxImages = 100): number[] {
  const sets = wordSets.map((words) => new Set(words.map((w) => tokenizer.tokenToId(w))));
  const n = Math.min(maxImages, split.scenes.length);
  const convs = Array.from({ length: n }, (_, i) => ({ image: i, turns: [{ from: 'human' as const, value: '<image>' }, { from: 'gpt' as const, value: captionText(split.scenes[i], relational) }] }));
  const { samples } = tokenizeSamples(convs, tokenizer, 'plain');
  const cfg = model.config;
  const hit = sets.map(() => 0), total = sets.map(() => 0);
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
          total[k]++;
          if (best === t) hit[k]++;
        });
      });
    }));
  }
  return sets.map((_, k) => (total[k] ? hit[k] / total[k] : 0));
}
