// Evaluation on any LLaVA-format file whose last assistant turn is the expected answer: greedy decoding
// of the reply to the conversation without that turn, exact match after normalisation (case and
// punctuation insensitive), overall and per `category`; the VQA soft accuracy with EvalAI's answer processing
// (src/eval/evalai.ts) when a record carries 10 `answers`.
import * as path from 'path';
import { collate } from '../data/collate';
import { buildGenerationPrompt, Turn } from '../data/conversation';
import { LlavaRecord, readLlavaRecords } from '../data/dataset';
import { loadImage, preprocessClip } from '../data/images';
import { TextTokenizer } from '../data/tokenizer';
import type { ComputeDtype } from '../amp';
import { VwLmm } from '../model/vwlmm';
import { vqaSoftAccuracy } from './evalai';

export interface EvalResult {
  accuracy: number;
  count: number;
  categories: Record<string, { accuracy: number; count: number }>;
  /** Records skipped (unreadable line, missing image) with the reason. */
  skipped: { id?: string; line?: number; reason: string }[];
}

export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, ' ').replace(/\s+/g, ' ').trim();
}

/** 1 when prediction and answer are equal after normalizeAnswer (case, punctuation, spacing), else 0. */
export function exactMatch(pred: string, answer: string): number {
  return Number(normalizeAnswer(pred) === normalizeAnswer(answer));
}


export async function evaluateFile(model: VwLmm, tokenizer: TextTokenizer, file: string, imageFolder: string, opts: { maxNewTokens?: number; strict?: boolean; limit?: number; dtype?: ComputeDtype } = {}): Promise<EvalResult> {
  const { records, skipped: badLines } = readLlavaRecords(file, { strict: opts.strict });
  const skipped: EvalResult['skipped'] = badLines.map((s) => ({ line: s.line, reason: s.reason }));
  const cfg = model.config;
  const prompts: { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null }[] = [];
  const kept: LlavaRecord[] = [];
  for (const r of records.slice(0, opts.limit ?? records.length)) {
    const turns = r.conversations as Turn[];
    const last = turns[turns.length - 1];
    if (!last || last.from !== 'gpt') {
      skipped.push({ id: r.id, reason: 'the last turn is not an assistant answer' });
      continue;
    }
    let pixels: Float32Array | null = null;
    if (r.image !== undefined) {
      try {
        const img = await loadImage(path.resolve(imageFolder, r.image));
        pixels = await preprocessClip(img, { size: cfg.image.size, mean: cfg.image.mean, std: cfg.image.std, aspect: cfg.image.aspect === 'pad' ? 'pad' : 'resize_crop' });
      } catch (e) {
        if (opts.strict) throw e;
        skipped.push({ id: r.id, reason: (e as Error).message });
        continue;
      }
    }
    const p = buildGenerationPrompt(turns.slice(0, -1), cfg.template, tokenizer);
    const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
    prompts.push({ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues });
    kept.push(r);
  }
  const outs = model.generate(prompts, { maxNewTokens: opts.maxNewTokens ?? 16, eosId: tokenizer.eosId ?? undefined, batchSize: 32, dtype: opts.dtype });
  const cats: Record<string, { sum: number; count: number }> = {};
  let sum = 0;
  outs.forEach((ids, i) => {
    const r = kept[i];
    const pred = tokenizer.decode(ids);
    const expected = r.conversations[r.conversations.length - 1].value;
    const score = Array.isArray(r.answers) && r.answers.length === 10 ? vqaSoftAccuracy(pred, r.answers) : exactMatch(pred, expected);
    sum += score;
    const c = (r.category as string | undefined) ?? 'all';
    cats[c] ??= { sum: 0, count: 0 };
    cats[c].sum += score;
    cats[c].count++;
  });
  return {
    accuracy: outs.length ? sum / outs.length : 0,
    count: outs.length,
    categories: Object.fromEntries(Object.entries(cats).map(([k, v]) => [k, { accuracy: v.sum / v.count, count: v.count }])),
    skipped,
  };
}
