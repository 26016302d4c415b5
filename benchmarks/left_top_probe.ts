// What a trained demo model's left / top yes-no answers follow (issue 13's left/top plateau): for every object of the
// validation split (the recipe's tuning split, drawn as runRecipe draws it), both questions, "Is the <colour> object on
// the left?" and "... on the top?", answered greedily. Per kind: the share of "yes", how often the answer agrees with
// the object's left bit and with its top bit (a model that answers both kinds from one bit agrees with that bit on
// both), and the accuracy and "yes" share by band of the asked coordinate (15-pixel bands, one patch each; 37.5 splits
// the middle band).
//
//   npx tsx benchmarks/left_top_probe.ts --checkpoint RUN/checkpoint --seed N [--images 200]
import { buildGenerationPrompt } from '../src/data/conversation';
import { collate } from '../src/data/collate';
import { normalizeRgb } from '../src/data/images';
import { questionText } from '../src/data/sort_of_clevr';
import { validationSplit } from '../src/demo/recipe';
import { makeTokenizer } from '../src/demo/task';
import { loadCheckpoint } from '../src/model/checkpoint';
import { MAX_SEED } from '../src/random';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['checkpoint', 'seed', 'images']);

const HALF = 37.5;
// read before the checkpoint: a bad value stops at once
const seed = numArg('seed', 0, { integer: true, min: 0, max: MAX_SEED }), images = numArg('images', 200, { integer: true, min: 1 });
const { model } = loadCheckpoint(arg('checkpoint', '/tmp/vwlmm-recipe-run/checkpoint'));
const { tokenizer } = makeTokenizer();
const val = validationSplit(seed, images);
const cfg = model.config;
const asked: { kind: 'left' | 'top'; left: boolean; top: boolean; coord: number }[] = [];
const prompts: { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null }[] = [];
val.scenes.forEach((sc, i) => {
  const pixels = normalizeRgb(val.rgb[i], cfg.image.size, cfg.image.mean, cfg.image.std);
  for (const o of sc.objects) {
    for (const kind of ['left', 'top'] as const) {
      const p = buildGenerationPrompt([{ from: 'human', value: `<image>\n${questionText(kind, o.colour)}` }], 'vicuna_v1', tokenizer);
      const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
      prompts.push({ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues });
      asked.push({ kind, left: o.cx < HALF, top: o.cy < HALF, coord: kind === 'left' ? o.cx : o.cy });
    }
  }
});
const yes = model.generate(prompts, { maxNewTokens: 2, eosId: tokenizer.eosId ?? undefined, batchSize: 64 }).map((ids) => tokenizer.decode(ids).trim().startsWith('yes'));
model.dispose();
const pct = (n: number, d: number) => `${((100 * n) / Math.max(1, d)).toFixed(1)}%`;
const out: Record<string, unknown> = {};
for (const kind of ['left', 'top'] as const) {
  const idx = asked.map((_, i) => i).filter((i) => asked[i].kind === kind);
  const agree = (bit: 'left' | 'top') => idx.filter((i) => yes[i] === asked[i][bit]).length;
  const bands = [0, 15, 30, 45, 60, 75].slice(0, -1).map((lo) => {
    const s = idx.filter((i) => asked[i].coord >= lo && asked[i].coord < lo + 15);
    return { band: `${lo}-${lo + 15}`, n: s.length, accuracy: s.filter((i) => yes[i] === asked[i][kind]).length / Math.max(1, s.length), yes: s.filter((i) => yes[i]).length / Math.max(1, s.length) };
  });
  console.log(`${kind} questions (${idx.length}): yes ${pct(idx.filter((i) => yes[i]).length, idx.length)}, agree with the left bit ${pct(agree('left'), idx.length)}, with the top bit ${pct(agree('top'), idx.length)}`);
  console.log(`  by band of ${kind === 'left' ? 'x' : 'y'}: ${bands.map((b) => `${b.band} ${(100 * b.accuracy).toFixed(0)}% (yes ${(100 * b.yes).toFixed(0)}%)`).join(' | ')}`);
  out[kind] = { n: idx.length, yes: idx.filter((i) => yes[i]).length / idx.length, agreeLeft: agree('left') / idx.length, agreeTop: agree('top') / idx.length, bands };
}
console.log(JSON.stringify(out));
