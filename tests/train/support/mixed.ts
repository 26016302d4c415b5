// Mixed data for the training tests: Sort-of-CLEVR question conversations with their images, and the same
// conversations without an image (text-only samples, as LLaVA's mix665k has), in one stage grouped by modality
// (LLaVA's group_by_modality_length), so that whole batches are text-only.
import { collate, nextTokenTargets, visualWordRows } from '../../../src/data/collate';
import { tokenizeConversation } from '../../../src/data/conversation';
import { normalizeRgbWriter } from '../../../src/data/images';
import { makeSplit, makeTokenizer, questionConversation } from '../../../src/demo/task';
import { CLIP_MEAN, CLIP_STD } from '../../../src/model/config';
import type { ModelBatch } from '../../../src/model/vwlmm';
import { Generator } from '../../../src/random';

export function mixedData(images = 6, textOnly = 10) {
  const { tokenizer, json } = makeTokenizer();
  const split = makeSplit(images, new Generator(3), { nonRelational: 2, relational: 2 });
  const samples: { inputIds: number[]; labels: number[]; image: number | null }[] = [];
  split.questions.forEach((q, i) => {
    const t = tokenizeConversation(questionConversation(q), tokenizer, 'vicuna_v1');
    samples.push({ inputIds: t.inputIds, labels: t.labels, image: i });
  });
  for (let k = 0; k < textOnly; k++) {
    const turns = questionConversation(split.questions[k % images]).map((t) => ({ ...t, value: t.value.replace('<image>\n', '') }));
    // a different length per sample, so that the text-only batches have several shapes
    const t = tokenizeConversation(turns.slice(0, 2 + 2 * (k % 3)), tokenizer, 'vicuna_v1');
    samples.push({ inputIds: t.inputIds, labels: t.labels, image: null });
  }
  // LLaVA's modality_lengths: words, negative for text-only samples
  const modalityLengths = samples.map((s) => (s.image === null ? -1 : 1) * s.inputIds.length);
  const makeBatch = (idx: number[]): ModelBatch => {
    const b = collate(idx.map((i) => ({
      inputIds: samples[i].inputIds, labels: samples[i].labels,
      image: samples[i].image === null ? null : normalizeRgbWriter(split.rgb[samples[i].image!], 75, CLIP_MEAN, CLIP_STD),
    })), { padId: tokenizer.padId, numPatches: 25 });
    return { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
  };
  return { tokenizer, json, samples, modalityLengths, makeBatch, isTextOnly: (idx: number[]) => idx.every((i) => samples[i].image === null) };
}
