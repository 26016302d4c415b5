// Where a trained demo model carries an object's attributes (issue 13's left/top plateau): linear probes on the LLM's
// hidden states, per layer, at the last positions of single-question prompts ("... Is the red object on the left?
// ASSISTANT:") and on the asked object's own image token. For every object of the validation split's images and every
// asked kind, the states are collected; a ridge least-squares probe is fitted on the first half of them and scored on
// the second half (sign accuracy; 50% = not linearly there) for the object's left bit, top bit and shape, and, at the
// answer position, for the question's kind (the first of --kinds against the others) and its answer.
//
// The model carries an attribute to the answer in one of two ways: the colour word's position retrieves it from the
// object's patches in layer 1 and the answer position reads it there in layer 2, or the answer position retrieves it
// itself. A probe row per offset from the answer position says which, and where it is lost.
//
//   npx tsx benchmarks/route_probe.ts --checkpoint RUN/checkpoint --seed N [--kinds left,top] [--offsets 8] [--images 200]
import { buildGenerationPrompt } from '../src/data/conversation';
import { collate } from '../src/data/collate';
import { normalizeRgb } from '../src/data/images';
import { answerFor, NON_RELATIONAL_KINDS, QuestionKind, questionText, RELATIONAL_KINDS } from '../src/data/sort_of_clevr';
import { noGrad } from '../src/autograd';
import { validationSplit } from '../src/demo/recipe';
import { makeTokenizer } from '../src/demo/task';
import { loadCheckpoint } from '../src/model/checkpoint';
import { Tensor } from '../src/tensor';
import { MAX_SEED } from '../src/random';
import { arg, declareFlags, numArg, ridge, ridgePredict } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['kinds', 'offsets', 'checkpoint', 'seed', 'images']);

const KINDS: readonly string[] = [...NON_RELATIONAL_KINDS, ...RELATIONAL_KINDS];
const kinds = arg('kinds', 'left,top').split(',');
for (const k of kinds) if (!KINDS.includes(k)) throw new RangeError(`route_probe: --kinds takes ${KINDS.join(', ')}; got '${k}'`);
const offsets = numArg('offsets', 8, { integer: true, min: 1 });
// read before the checkpoint: a bad value stops at once
const seed = numArg('seed', 0, { integer: true, min: 0, max: MAX_SEED }), images = numArg('images', 200, { integer: true, min: 1 });
const { model } = loadCheckpoint(arg('checkpoint', '/tmp/vwlmm-recipe-run/checkpoint'));
const { tokenizer } = makeTokenizer();
const val = validationSplit(seed, images);
const cfg = model.config, D = cfg.llm.hiddenSize, grid = cfg.image.size / cfg.vision.patchSize;

interface Row { kind: number; left: number; top: number; shape: number; answer: number;
  /** [offset][layer]: the hidden state offset tokens before the last prompt position (layer 0 = the embeddings). */
  at: Float32Array[][];
  /** [layer]: the state at the object's image token (the patch holding its centre). */
  patch: Float32Array[] }
const rows: Row[] = [];
let tail: string[] = [];
noGrad(() => val.scenes.forEach((sc, i) => {
  const pixels = normalizeRgb(val.rgb[i], cfg.image.size, cfg.image.mean, cfg.image.std);
  sc.objects.forEach((o, j) => kinds.forEach((kind, ki) => {
    const p = buildGenerationPrompt([{ from: 'human', value: `<image>\n${questionText(kind as QuestionKind, o.colour)}` }], 'vicuna_v1', tokenizer);
    const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
    const emb = model.inputEmbeddings({ B: 1, T: b.T, tokenIds: b.tokenIds, imagePositions: b.imagePositions }, model.imageFeatures(b.pixelValues!, 1));
    const states = model.model.forward(emb, { keyMask: Tensor.fromArray(b.attentionMask, [1, b.T]), outputHiddenStates: true }).hiddenStates!.map((h) => h.toArray() as Float32Array);
    const row = (pos: number) => states.map((s) => s.slice(pos * D, (pos + 1) * D));
    const left = answerFor(sc, 'left', j) === 'yes' ? 1 : -1, top = answerFor(sc, 'top', j) === 'yes' ? 1 : -1;
    rows.push({
      kind: ki === 0 ? 1 : -1, left, top, shape: o.shape === 'circle' ? 1 : -1, answer: kind === 'left' ? left : kind === 'top' ? top : 0,
      at: Array.from({ length: offsets }, (_, k) => row(b.T - 1 - k)),
      patch: row(b.imagePositions[Math.floor(o.cy / cfg.vision.patchSize) * grid + Math.floor(o.cx / cfg.vision.patchSize)]),
    });
    if (!tail.length) tail = Array.from(b.tokenIds.slice(b.T - offsets), (id) => tokenizer.decode([id]));
  }));
}));
model.dispose();

/** A ridge probe fitted on the first half of (X, y in +-1), its sign accuracy on the second half. */
function probe(X: Float32Array[], y: number[]): number {
  const half = X.length >> 1;
  const w = ridge(X.slice(0, half), y.slice(0, half).map((v) => [v]), 1e-3 * half);
  let ok = 0;
  for (let i = half; i < X.length; i++) if ((ridgePredict(w, X[i])[0] >= 0 ? 1 : -1) === y[i]) ok++;
  return ok / (X.length - half);
}
const pct = (v: number) => +(100 * v).toFixed(1);
const attrs = (X: Float32Array[]) => ({ left: pct(probe(X, rows.map((r) => r.left))), top: pct(probe(X, rows.map((r) => r.top))), shape: pct(probe(X, rows.map((r) => r.shape))) });
const layers = rows[0].at[0].length;
console.log(`kinds ${kinds.join(', ')}; ${rows.length} prompts; the last ${offsets} tokens: "${tail.join(' ')}"`);
for (let k = offsets - 1; k >= 0; k--) for (let l = 1; l < layers; l++) {
  const X = rows.map((r) => r.at[k][l]);
  const extra = k === 0 ? { kind: kinds.length > 1 ? pct(probe(X, rows.map((r) => r.kind))) : null, answer: rows.every((r) => r.answer !== 0) ? pct(probe(X, rows.map((r) => r.answer))) : null } : {};
  console.log(JSON.stringify({ offset: -k, token: tail[offsets - 1 - k], layer: l, ...attrs(X), ...extra }));
}
for (let l = 0; l < layers; l++) console.log(JSON.stringify({ at: 'object patch', layer: l, ...attrs(rows.map((r) => r.patch[l])) }));
