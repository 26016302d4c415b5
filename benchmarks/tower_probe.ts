// Where the relational answers are lost (issue 13): linear probes of the vision tower's output features after
// stage 0, per object, for each attribute the read-out learns (shape, left, top, closest, furthest, count). The
// LLM reads an object's answer from the patches the question's colour word points it at; if a linear probe of
// those patches cannot tell an object's closest shape while stage 0's attention read-out can, the relation is
// not where the LLM looks for it.
//   (a) the patch that the object covers most; (b) the mean of the patches it covers (objectAtPatch).
// Ridge least squares in float64 on one-hot targets, fitted on the training split, scored on the validation split.
//
//   npx tsx benchmarks/tower_probe.ts ['{"stage0":{"steps":4000}}'] [--probe-images 3000]
import { noGrad } from '../src/autograd';
import { answerFor } from '../src/data/sort_of_clevr';
import { normalizeRgb } from '../src/data/images';
import { DEFAULT_RECIPE, Recipe, runRecipe } from '../src/demo/recipe';
import { objectAtPatch, SplitData } from '../src/demo/task';
import { PRETRAIN_ATTRIBUTES } from '../src/demo/vision_pretrain';
import { VwLmm } from '../src/model/vwlmm';
import { scope, Tensor } from '../src/tensor';
import { arg, declareFlags, numArg, overridesArg, recipeWith, ridge, ridgePredict } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['out', 'probe-images']);
// read before the training: a bad value stops at once
const probeImages = numArg('probe-images', 3000, { integer: true, min: 1 });

/** Per object of images [0, n): its feature rows (a: most-covered patch, b: mean of covered patches) and attribute classes. */
function objectRows(model: VwLmm, split: SplitData, n: number, r: Recipe): { a: number[][]; b: number[][]; y: number[][] } {
  const S = 75, P = Math.floor(S / r.model.patch), D = r.model.visionD;
  const a: number[][] = [], b: number[][] = [], y: number[][] = [];
  for (let s = 0; s < n; s += 50) {
    const idx = Array.from({ length: Math.min(50, n - s) }, (_, j) => s + j);
    const px = new Float32Array(idx.length * 3 * S * S);
    idx.forEach((i, k) => px.set(normalizeRgb(split.rgb[i], S, r.imageMean, r.imageStd), k * 3 * S * S));
    const feats = noGrad(() => scope(() => {
      const out = model.visionTower.vision_model.forward(Tensor.fromArray(px, [idx.length, 3, S, S])).lastHiddenState;
      return out.toArray() as Float32Array; // [B, 1 + P*P, D]
    }));
    idx.forEach((img, k) => {
      const sc = split.scenes[img];
      const cover: number[][] = sc.objects.map(() => []);
      for (let row = 0; row < P; row++) for (let col = 0; col < P; col++) {
        const o = objectAtPatch(sc, row, col, r.model.patch);
        if (o >= 0) cover[o].push(row * P + col);
      }
      sc.objects.forEach((_, o) => {
        if (cover[o].length === 0) return;
        const row = (p: number) => Array.from(feats.subarray((k * (1 + P * P) + 1 + p) * D, (k * (1 + P * P) + 2 + p) * D));
        // objectAtPatch picks the most-covering object per patch; the object's own best patch is the first it covers
        // most: approximate by the patch nearest its centre among those it covers
        const centre = cover[o].reduce((best, p) => {
          const d = (q: number) => ((q % P + 0.5) * r.model.patch - sc.objects[o].cx) ** 2 + ((Math.floor(q / P) + 0.5) * r.model.patch - sc.objects[o].cy) ** 2;
          return d(p) < d(best) ? p : best;
        });
        a.push(row(centre));
        const m = new Array(D).fill(0);
        cover[o].forEach((p) => row(p).forEach((v, j) => (m[j] += v / cover[o].length)));
        b.push(m);
        y.push(PRETRAIN_ATTRIBUTES.map(({ kind, classes }) => classes.indexOf(answerFor(sc, kind, o))));
      });
    });
  }
  return { a, b, y };
}

/** Share of rows whose highest ridge output is their class. */
function score(w: Float64Array[], x: number[][], y: number[]): number {
  return x.filter((row, i) => {
    const out = ridgePredict(w, row);
    return out.indexOf(Math.max(...out)) === y[i];
  }).length / x.length;
}

(async () => {
  // stages 1 and 2 of one step each: the tower stays frozen after stage 0 (stage0.frozenSteps), so the model's tower
  // is stage 0's
  const r = recipeWith(DEFAULT_RECIPE, { stage1: { steps: 1 }, stage2: { steps: 1 }, evalEvery: 100000 }, overridesArg());
  const res = await runRecipe(r, {
    outDir: arg('out', '/tmp/vwlmm-tower-probe'),
    onLog: (rec) => { if (rec.stage === 'vision' && rec.done) console.log('stage 0 read-out', JSON.stringify(rec)); },
  });
  const n = Math.min(probeImages, res.train.scenes.length);
  const tr = objectRows(res.model, res.train, n, r), va = objectRows(res.model, res.valSplit, res.valSplit.scenes.length, r);
  const out: Record<string, Record<string, string>> = {};
  for (const key of ['a', 'b'] as const) {
    out[key === 'a' ? 'centre patch' : 'mean of its patches'] = Object.fromEntries(PRETRAIN_ATTRIBUTES.map((att, j) => {
      const w = ridge(tr[key], tr.y.map((t) => att.classes.map((_, c) => (c === t[j] ? 1 : 0))), 1e-3 * tr[key].length);
      return [att.kind, `${(100 * score(w, va[key], va.y.map((t) => t[j]))).toFixed(1)}%`];
    }));
  }
  console.log(JSON.stringify({ trainObjects: tr.a.length, valObjects: va.a.length, probes: out }, null, 1));
  res.model.dispose();
})();
