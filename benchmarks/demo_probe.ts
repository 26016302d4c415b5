// Diagnostics of a trained Sort-of-CLEVR checkpoint, the measurements behind the recipe notes in
// benchmarks/RESULTS.md: (1) left/top answer accuracy by the object's distance from the midline (a model
// that reads the position is right far from the midline; one that guesses is not), (2) linear probes of the
// projected image features at each object's centre patch (does what the LLM receives encode the object's
// horizontal / vertical half?), (3) teacher-forced caption words.
//
//   npx tsx benchmarks/demo_probe.ts <checkpoint dir> [--images 150] [--plain-captions]
import { noGrad } from '../src/autograd';
import { answerFor, COLOURS, questionText, SortOfClevrQuestion } from '../src/data/sort_of_clevr';
import { normalizeRgb } from '../src/data/images';
import { captionWordAccuracies, evaluateSplit } from '../src/demo/evaluate';
import { makeSplit, makeTokenizer, SplitData } from '../src/demo/task';
import { loadCheckpoint } from '../src/model/checkpoint';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { scope } from '../src/tensor';
import { declareFlags, numArg, ridge, ridgePredict } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['images'], ['plain-captions']);

const dir = process.argv[2];
if (!dir || dir.startsWith('--')) throw new Error('usage: demo_probe.ts <checkpoint dir> [--images N]');
const images = numArg('images', 150, { integer: true, min: 1 }); // read before the checkpoint: a bad value stops at once
const { model } = loadCheckpoint(dir);
const { tokenizer } = makeTokenizer();
const split = makeSplit(images, new Generator(123), { nonRelational: 0, relational: 0 });

// (1) every object's left and top question, bucketed by |centre - 37.5| (the bucket rides in `category`,
// which evaluateSplit tallies by)
const bucket = (d: number) => (d < 3 ? '0-3' : d < 8 ? '3-8' : d < 15 ? '8-15' : '15+');
const qs: SplitData = {
  ...split,
  questions: split.scenes.map((s) => s.objects.flatMap((o, i) => (['left', 'top'] as const).map((k) => ({
    question: questionText(k, COLOURS[i]), answer: answerFor(s, k, i), group: k,
    category: `${k} |d| ${bucket(Math.abs((k === 'left' ? o.cx : o.cy) - 37.5))} px`,
  }) as unknown as SortOfClevrQuestion))),
};
const acc = evaluateSplit(model, qs, tokenizer, 'vicuna_v1');
console.log('answers by distance from the midline:');
for (const [k, v] of Object.entries(acc.categories).sort()) console.log(`  ${k.padEnd(18)} ${(100 * v.accuracy).toFixed(1)}%  (${v.count})`);

// (2) ridge-regression probes on the projected features of the patch holding each object's centre
console.log('linear probes of the projected features at object centres (held-out accuracy):');
for (const [k, v] of Object.entries(probes(model, split))) console.log(`  ${k.padEnd(18)} ${(100 * v).toFixed(1)}%`);

// (3) caption words, teacher-forced, on the captions the model trained on (--plain-captions: the generator's plain ones,
// for a recipe with stage1.relational false)
const relational = !process.argv.includes('--plain-captions');
const wordSets = [['square', 'circle'], ['left', 'right'], ['top', 'bottom']];
captionWordAccuracies(model, split, tokenizer, wordSets, relational).forEach((a, k) => console.log(`caption ${wordSets[k].join('/')}: ${(100 * a).toFixed(1)}%`));
model.dispose();

function probes(m: VwLmm, s: SplitData): Record<string, number> {
  const cfg = m.config, D = cfg.llm.hiddenSize;
  const rows: { f: number[]; y: Record<string, number> }[] = [];
  s.scenes.forEach((sc, i) => {
    const px = normalizeRgb(s.rgb[i], cfg.image.size, cfg.image.mean, cfg.image.std);
    const feats = noGrad(() => scope(() => m.imageFeatures(px, 1).toArray() as Float32Array));
    const grid = cfg.image.size / cfg.vision.patchSize;
    for (const o of sc.objects) {
      const p = Math.floor(o.cy / cfg.vision.patchSize) * grid + Math.floor(o.cx / cfg.vision.patchSize);
      rows.push({ f: Array.from(feats.subarray(p * D, (p + 1) * D)), y: { 'left half': o.cx < 37.5 ? 1 : 0, 'top half': o.cy < 37.5 ? 1 : 0 } });
    }
  });
  const cut = Math.floor((rows.length * 2) / 3);
  const out: Record<string, number> = {};
  for (const key of Object.keys(rows[0].y)) {
    const w = ridge(rows.slice(0, cut).map((r) => r.f), rows.slice(0, cut).map((r) => [r.y[key]]), 1e-2);
    const test = rows.slice(cut);
    out[key] = test.filter((r) => (ridgePredict(w, r.f)[0] > 0.5 ? 1 : 0) === r.y[key]).length / test.length;
  }
  return out;
}
