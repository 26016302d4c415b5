// Visual words stage by stage (issue 13): trains the demo recipe (optionally with the paper's schedule and PIF) at a
// scale, stopping after stage 1 and after stage 2, and prints the visual words' agreement, chance level and mean
// entropy on the validation split after each, plus the accuracy. Shows where the KL collapses (to one word or to
// uniform) instead of only at the end, and what the object patches' top-1 words are. One JSON line per stopping point.
//
//   npx tsx benchmarks/visual_words_by_stage.ts [--scale 0.25] [--schedule paper] [--pif] [--grid] [--seed 0]
//     [--stops stage1,stage2] [--recipe '<Recipe fields as JSON, before scaling>']   e.g. '{"detachTarget":true}',
//     '{"text":{"steps":12000,"batchSize":32,"lr":0.003,"grid":"nearest"}}'; --recipe is deep-merged (recipeWith:
//     '{"stage1":{"steps":400}}' changes stage 1's steps and keeps its other fields). The runs' files go to a temporary
//     folder, removed at the end.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { visualWordStats } from '../src/demo/demo';
import { DEFAULT_RECIPE, paperSchedule, Recipe, runRecipe } from '../src/demo/recipe';
import { makeTokenizer, objectAtPatch } from '../src/demo/task';
import { visualWordsOf } from '../src/eval/visual_words';
import { normalizeRgb } from '../src/data/images';
import { MAX_SEED } from '../src/random';
import { arg, declareFlags, flag, numArg, recipeWith } from './support';

declareFlags(['scale', 'seed', 'schedule', 'recipe', 'stops'], ['pif', 'grid']);
const scale = numArg('scale', 0.25, { min: 0, minExclusive: true }), seed = numArg('seed', 0, { integer: true, min: 0, max: MAX_SEED });
const paper = arg('schedule', 'default') === 'paper', pif = flag('pif'), grid = flag('grid');
const overrides = JSON.parse(arg('recipe', '{}')) as Record<string, unknown>;
const sched = paper ? paperSchedule(DEFAULT_RECIPE) : DEFAULT_RECIPE;
// deep-merged, as the other drivers do: a stage's override changes only the fields it names
const base: Recipe = recipeWith(sched, grid && sched.text ? { text: { grid } } : {}, { pif, seed }, overrides);
const s = (n: number) => Math.max(1, Math.round(n * scale));
const scaled: Recipe = {
  ...base, trainImages: Math.max(64, Math.round(base.trainImages * scale)), evalEvery: 0,
  stage0: { ...base.stage0, steps: s(base.stage0.steps), frozenSteps: Math.round(base.stage0.frozenSteps * scale) },
  stage1: { ...base.stage1, steps: s(base.stage1.steps) },
  stage2: { ...base.stage2, steps: s(base.stage2.steps) },
  ...(base.text ? { text: { ...base.text, steps: s(base.text.steps) } } : {}),
};
const { tokenizer } = makeTokenizer();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vw-by-stage-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
(async () => {
  let tower: Map<string, Float32Array> | undefined; // stage 0's, shared by the second run (the same weights)
  const stops = arg('stops', 'stage1,stage2').split(',') as ('stage1' | 'stage2')[];
  for (const upTo of stops) {
    const r: Recipe = upTo === 'stage1' ? { ...scaled, stage2: { ...scaled.stage2, steps: 0 } } : scaled;
    const res = await runRecipe(r, { outDir: path.join(dir, upTo), pretrainedTower: tower });
    tower ??= res.tower ?? undefined;
    const vw = visualWordStats(res.model, tokenizer, res.valSplit);
    // what the object patches' top-1 words are: colour hits, shape hits, and the commonest words
    const top = new Map<string, number>();
    let colourHits = 0, shapeHits = 0, n = 0;
    const cfg = res.model.config;
    for (let i = 0; i < 50; i++) {
      for (const pw of visualWordsOf(res.model, tokenizer, normalizeRgb(res.valSplit.rgb[i], 75, cfg.image.mean, cfg.image.std), 1)) {
        const k = objectAtPatch(res.valSplit.scenes[i], pw.row, pw.col, cfg.vision.patchSize);
        if (k < 0) continue;
        const o = res.valSplit.scenes[i].objects[k], w = pw.words[0].token;
        n++;
        if (w === o.colour) colourHits++;
        if (w === o.shape) shapeHits++;
        top.set(w, (top.get(w) ?? 0) + 1);
      }
    }
    const commonest = [...top].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([w, c]) => `${w} ${(100 * c / n).toFixed(1)}%`);
    console.log(JSON.stringify({ upTo, scale, schedule: paper ? 'paper' : 'default', pif, grid: scaled.text?.grid ?? false, textSteps: scaled.text?.steps ?? 0, detachTarget: scaled.detachTarget ?? false, seed, ...vw, colourHits: colourHits / n, shapeHits: shapeHits / n, commonest, nonRelational: res.val.groups['non-relational']?.accuracy, relational: res.val.groups.relational?.accuracy, seconds: res.seconds }));
    res.model.dispose();
  }
})();
