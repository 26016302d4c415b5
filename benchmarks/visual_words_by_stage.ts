// Visual words stage by stage (issue 13): trains the demo recipe (optionally with the paper's schedule and PIF) at a
// scale, stopping after stage 1 and after stage 2, and prints the visual words' agreement, chance level and mean
// entropy on the validation split after each, plus the accuracy. Shows where the KL collapses (to one word or to
// uniform) instead of only at the end. One JSON line per stopping point.
//
//   npx tsx benchmarks/visual_words_by_stage.ts [--scale 0.25] [--schedule paper] [--pif] [--seed 0]
import * as os from 'os';
import * as path from 'path';
import { visualWordStats } from '../src/demo/demo';
import { DEFAULT_RECIPE, paperSchedule, Recipe, runRecipe } from '../src/demo/recipe';
import { makeTokenizer } from '../src/demo/task';
import { arg } from './support';

const scale = Number(arg('scale', '0.25')), seed = Number(arg('seed', '0'));
const paper = arg('schedule', 'default') === 'paper', pif = process.argv.includes('--pif');
const base: Recipe = { ...(paper ? paperSchedule(DEFAULT_RECIPE) : DEFAULT_RECIPE), pif, seed };
const s = (n: number) => Math.max(1, Math.round(n * scale));
const scaled: Recipe = {
  ...base, trainImages: Math.max(64, Math.round(base.trainImages * scale)), evalEvery: 0,
  stage0: { ...base.stage0, steps: s(base.stage0.steps), frozenSteps: Math.round(base.stage0.frozenSteps * scale) },
  stage1: { ...base.stage1, steps: s(base.stage1.steps) },
  stage2: { ...base.stage2, steps: s(base.stage2.steps) },
  ...(base.text ? { text: { ...base.text, steps: s(base.text.steps) } } : {}),
};
const { tokenizer } = makeTokenizer();
const dir = path.join(os.tmpdir(), `vw-by-stage-${process.pid}`);
(async () => {
  let tower: Map<string, Float32Array> | undefined; // stage 0's, shared by the second run (the same weights)
  for (const upTo of ['stage1', 'stage2'] as const) {
    const r: Recipe = upTo === 'stage1' ? { ...scaled, stage2: { ...scaled.stage2, steps: 0 } } : scaled;
    const res = await runRecipe(r, { outDir: path.join(dir, upTo), pretrainedTower: tower });
    tower ??= res.tower ?? undefined;
    const vw = visualWordStats(res.model, tokenizer, res.valSplit);
    console.log(JSON.stringify({ upTo, scale, schedule: paper ? 'paper' : 'default', pif, seed, ...vw, nonRelational: res.val.groups['non-relational']?.accuracy, relational: res.val.groups.relational?.accuracy, seconds: res.seconds }));
    res.model.dispose();
  }
})();
