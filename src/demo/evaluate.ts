// Greedy-decoding evaluation of Sort-of-CLEVR questions held in memory: accuracy overall, per question
// kind and per group (non-relational / relational).
import { collate } from '../data/collate';
import { buildGenerationPrompt, TemplateName } from '../data/conversation';
import { normalizeRgb } from '../data/images';
import { TextTokenizer } from '../data/tokenizer';
import { VwLmm } from '../model/vwlmm';
import { normalizeAnswer, SplitData } from './task';

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
