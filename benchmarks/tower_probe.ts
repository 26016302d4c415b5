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
import { arg, overridesArg, recipeWith } from './support';

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

/** Ridge least squares W [(D+1) x C] for one-hot targets. */
function fit(x: number[][], y: number[], C: number, lambda = 1e-3): number[][] {
  const D = x[0].length + 1, A = Array.from({ length: D }, () => new Array(D).fill(0)), B = Array.from({ length: D }, () => new Array(C).fill(0));
  x.forEach((row, i) => {
    const r = [...row, 1];
    for (let p = 0; p < D; p++) {
      for (let q = 0; q < D; q++) A[p][q] += r[p] * r[q];
      B[p][y[i]] += r[p];
    }
  });
  for (let p = 0; p < D; p++) A[p][p] += lambda * x.length;
  // Gauss-Jordan on [A | B]
  for (let c = 0; c < D; c++) {
    let piv = c;
    for (let r = c + 1; r < D; r++) if (Math.abs(A[r][c]) > Math.abs(A[piv][c])) piv = r;
    [A[c], A[piv]] = [A[piv], A[c]];
    [B[c], B[piv]] = [B[piv], B[c]];
    const d = A[c][c];
    for (let q = 0; q < D; q++) A[c][q] /= d;
    for (let q = 0; q < C; q++) B[c][q] /= d;
    for (let r = 0; r < D; r++) if (r !== c && A[r][c] !== 0) {
      const f = A[r][c];
      for (let q = 0; q < D; q++) A[r][q] -= f * A[c][q];
      for (let q = 0; q < C; q++) B[r][q] -= f * B[c][q];
    }
  }
  return B;
}

function score(w: number[][], x: number[][], y: number[]): number {
  let right = 0;
  x.forEach((row, i) => {
    const r = [...row, 1], C = w[0].length;
    let best = 0, bestV = -Infinity;
    for (let c = 0; c < C; c++) {
      const v = r.reduce((s, xv, p) => s + xv * w[p][c], 0);
      if (v > bestV) [best, bestV] = [c, v];
    }
    if (best === y[i]) right++;
  });
  return right / x.length;
}

(async () => {
  // stages 1 and 2 of one step each: the tower stays frozen after stage 0 (stage0.frozenSteps), so the model's tower
  // is stage 0's
  const r = recipeWith(DEFAULT_RECIPE, { stage1: { steps: 1 }, stage2: { steps: 1 }, evalEvery: 100000 }, overridesArg());
  const res = await runRecipe(r, {
    outDir: arg('out', '/tmp/vwlmm-tower-probe'),
    onLog: (rec) => { if (rec.stage === 'vision' && rec.done) console.log('stage 0 read-out', JSON.stringify(rec)); },
  });
  const n = Math.min(Number(arg('probe-images', '3000')), res.train.scenes.length);
  const tr = objectRows(res.model, res.train, n, r), va = objectRows(res.model, res.valSplit, res.valSplit.scenes.length, r);
  const out: Record<string, Record<string, string>> = {};
  for (const key of ['a', 'b'] as const) {
    out[key === 'a' ? 'centre patch' : 'mean of its patches'] = Object.fromEntries(PRETRAIN_ATTRIBUTES.map((att, j) => {
      const w = fit(tr[key], tr.y.map((t) => t[j]), att.classes.length);
      return [att.kind, `${(100 * score(w, va[key], va.y.map((t) => t[j]))).toFixed(1)}%`];
    }));
  }
  console.log(JSON.stringify({ trainObjects: tr.a.length, valObjects: va.a.length, probes: out }, null, 1));
  res.model.dispose();
})();
