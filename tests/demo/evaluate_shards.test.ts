// The demo's evaluations over data-parallel ranks (src/demo/evaluate.ts): each rank answers or scores its contiguous
// share and the ranks sum the counts (one int32 all-reduce). Here W ranks are played in one process by stand-in groups:
// ranks 1..W-1 run first and their all-reduce records what they hand in; rank 0's adds those, as MPI would.
import { describe, expect, it } from 'vitest';
import { collate } from '../../src/data/collate';
import { buildGenerationPrompt } from '../../src/data/conversation';
import { normalizeRgb } from '../../src/data/images';
import { CAPTION_WORDS, captionWordAccuracies, evaluateSplit } from '../../src/demo/evaluate';
import { captionText } from '../../src/demo/task';
import type { SplitData } from '../../src/demo/task';
import type { ProcessGroup } from '../../src/distributed/process_group';
import { normalizeAnswer } from '../../src/eval/llava_eval';
import { VwLmm } from '../../src/model/vwlmm';
import type { Tensor } from '../../src/tensor';
import { tinyConfig, tinyData } from '../train/support/tiny';

/** The result of `run` on rank 0 of W stand-in ranks (each rank's all-reduce calls in the order it makes them). */
function overRanks<T>(world: number, run: (group: ProcessGroup) => T): T {
  const handed: Int32Array[][] = []; // per all-reduce call: the arrays ranks 1..W-1 handed in
  for (let rank = 1; rank < world; rank++) {
    let call = 0;
    run({ rank, worldSize: world, device: 'cpu', allReduce: (t: Tensor) => void (handed[call++] ??= []).push((t.toArray() as Int32Array).slice()) } as unknown as ProcessGroup);
  }
  let call = 0;
  return run({
    rank: 0, worldSize: world, device: 'cpu',
    allReduce: (t: Tensor) => {
      const sum = (t.toArray() as Int32Array).slice();
      for (const other of handed[call++] ?? []) other.forEach((x, i) => (sum[i] += x));
      t.buffer.write(sum);
    },
  } as unknown as ProcessGroup);
}

describe('the demo evaluations over data-parallel ranks', () => {
  const { tokenizer, split } = tinyData(25); // 100 questions: shares of 100 / W, batches of 64 inside them
  const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 11);
  const cfg = model.config;

  it('questions: every rank answers its share, the counts summed are those of one process, question by question', () => {
    // what the model answers each question alone (a batch of one): the answers of half of them are made those, so the
    // accuracies are neither 0 nor 1 and a question scored on the wrong rank, twice or not at all changes them
    const rigged: SplitData = { ...split, questions: split.questions.map((qs) => qs.map((q) => ({ ...q }))) };
    let j = 0, right = 0;
    const perCategory: Record<string, { correct: number; count: number }> = {};
    for (let i = 0; i < rigged.scenes.length; i++) {
      const pixels = normalizeRgb(rigged.rgb[i], cfg.image.size, cfg.image.mean, cfg.image.std);
      for (const q of rigged.questions[i]) {
        const p = buildGenerationPrompt([{ from: 'human', value: `<image>\n${q.question}` }], 'vicuna_v1', tokenizer);
        const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
        const said = tokenizer.decode(model.generate([{ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues }], { maxNewTokens: 4, eosId: tokenizer.eosId ?? undefined, batchSize: 1 })[0]);
        if (j++ % 2 === 0) q.answer = said;
        const ok = normalizeAnswer(said) === normalizeAnswer(q.answer);
        right += ok ? 1 : 0;
        perCategory[q.category] ??= { correct: 0, count: 0 };
        perCategory[q.category].count++;
        perCategory[q.category].correct += ok ? 1 : 0;
      }
    }
    expect(j).toBe(100);
    expect(right).toBeGreaterThanOrEqual(50);
    expect(right).toBeLessThan(100);
    const one = evaluateSplit(model, rigged, tokenizer, 'vicuna_v1');
    expect(one.accuracy).toBe(right / 100);
    expect(one.categories).toEqual(Object.fromEntries(Object.entries(perCategory).map(([c, v]) => [c, { accuracy: v.correct / v.count, count: v.count }])));
    for (const world of [2, 3, 7]) expect(overRanks(world, (g) => evaluateSplit(model, rigged, tokenizer, 'vicuna_v1', { processGroup: g })), `${world} ranks`).toEqual(one);
    // the first maxQuestions only, shared out the same way
    const first = evaluateSplit(model, rigged, tokenizer, 'vicuna_v1', { maxQuestions: 37 });
    expect(first.count).toBe(37);
    expect(overRanks(2, (g) => evaluateSplit(model, rigged, tokenizer, 'vicuna_v1', { maxQuestions: 37, processGroup: g }))).toEqual(first);
  });

  it('captions: every rank scores its share of the images, both word sets from one pass, summed as one process counts them', () => {
    // an lm_head that says "square" or "circle" everywhere (rows w and -w, all others 0): about half the shape words
    // right, none of left / right / top / bottom, so the two sets score differently and neither 0
    const V = tokenizer.vocabSize, d = model.lm_head.weight.size / V, w = new Float32Array(V * d);
    const sq = tokenizer.tokenToId('square')!, ci = tokenizer.tokenToId('circle')!;
    for (let k = 0; k < d; k++) [w[sq * d + k], w[ci * d + k]] = [Math.sin(7 * k + 1), -Math.sin(7 * k + 1)];
    model.lm_head.weight.buffer.write(w);
    const one = captionWordAccuracies(model, split, tokenizer, [CAPTION_WORDS, ['square', 'circle']], false, 20);
    expect(one[1]).toBeGreaterThan(0.2);
    expect(one[1]).toBeLessThan(0.8);
    expect(one[0]).toBeGreaterThan(0);
    expect(one[0]).toBeLessThan(one[1]);
    // both sets are right on the same words (the shape words), so their ratio is that of the words they score, counted
    // here from the captions' text: every caption word is a target
    const words = split.scenes.slice(0, 20).flatMap((sc) => captionText(sc).split(/[^a-z]+/));
    const count = (set: readonly string[]) => words.filter((x) => set.includes(x)).length;
    expect(one[0] / one[1]).toBeCloseTo(count(['square', 'circle']) / count(CAPTION_WORDS), 12);
    for (const world of [2, 3]) expect(overRanks(world, (g) => captionWordAccuracies(model, split, tokenizer, [CAPTION_WORDS, ['square', 'circle']], false, 20, g)), `${world} ranks`).toEqual(one);
    // each set scored on its own gives the same numbers
    expect([captionWordAccuracies(model, split, tokenizer, [CAPTION_WORDS], false, 20)[0], captionWordAccuracies(model, split, tokenizer, [['square', 'circle']], false, 20)[0]]).toEqual(one);
  });
});
