// Issue 13's ablations: the demo recipe's four arms on the same budget, per seed, scored on the validation split
// (accuracy by category) with the visual words' agreement, its chance level and their mean entropy.
//   vw        VW-LMM (the recipe as it is)
//   llava     plain LLaVA: vmWeight 0 (no KL, no vm_head)
//   detached  the KL's target detached from the graph (Recipe.detachTarget)
//   pif       the PIF variant (Recipe.pif)
// Per seed, stage 0 runs once (the first arm) and the other arms start from its tower (RunRecipeOptions
// .pretrainedTower: stage 0 sees neither the LLM nor the objective, so it would give the same weights). One line of
// JSON per (seed, arm) goes to --jsonl; --summarize FILE... prints mean +- sd over the seeds as a markdown table.
// --score ARM=CHECKPOINT scores a model the arm's recipe already trained (`vwlmm demo --seed N` trains the vw arm's
// runRecipe at the default recipe: its out/vw/checkpoint) the same way, without training it again (seconds: null).
//
//   npx tsx benchmarks/ablations.ts ['{"stage2":{"steps":3000}}'] --seeds 0,1 --jsonl /tmp/abl.jsonl [--arms vw,llava]
//   npx tsx benchmarks/ablations.ts --seeds 0 --score vw=DEMO_OUT/vw/checkpoint --jsonl /tmp/abl.jsonl
//   npx tsx benchmarks/ablations.ts --summarize /tmp/abl-a.jsonl /tmp/abl-b.jsonl
import * as fs from 'fs';
import * as path from 'path';
import { visualWordStats } from '../src/demo/demo';
import { Accuracy, evaluateSplit } from '../src/demo/evaluate';
import { DEFAULT_RECIPE, Recipe, runRecipe, validationSplit } from '../src/demo/recipe';
import { loadCheckpoint } from '../src/model/checkpoint';
import { makeTokenizer } from '../src/demo/task';
import { arg, overridesArg, recipeWith } from './support';

const ARMS: Record<string, Partial<Recipe>> = {
  vw: {},
  llava: { vmWeight: 0, pif: false },
  detached: { detachTarget: true },
  pif: { pif: true },
};
const KINDS = ['shape', 'left', 'top', 'closest', 'furthest', 'count'];

interface Row {
  seed: number; arm: string; seconds: number | null; nonRelational: number; relational: number; kinds: Record<string, number>;
  agreement: number | null; chance: number | null; entropy: number | null;
}

async function run(): Promise<void> {
  const base = recipeWith(DEFAULT_RECIPE, overridesArg());
  const seeds = arg('seeds', '0').split(',').map(Number);
  const arms = arg('arms', Object.keys(ARMS).join(',')).split(',');
  for (const a of arms) if (!(a in ARMS)) throw new Error(`ablations: unknown arm '${a}' (${Object.keys(ARMS).join(', ')})`);
  const out = arg('jsonl', '/tmp/vwlmm-ablations.jsonl'), dir = arg('out', '/tmp/vwlmm-ablations');
  const { tokenizer } = makeTokenizer();
  const record = (seed: number, arm: string, seconds: number | null, val: Accuracy, vw: ReturnType<typeof visualWordStats>) => {
    const row: Row = {
      seed, arm, seconds,
      nonRelational: val.groups['non-relational'].accuracy, relational: val.groups.relational.accuracy,
      kinds: Object.fromEntries(KINDS.map((k) => [k, val.categories[k]?.accuracy ?? 0])),
      agreement: vw.agreement, chance: vw.chance, entropy: vw.meanEntropy,
    };
    fs.appendFileSync(out, JSON.stringify(row) + '\n');
    console.log(JSON.stringify(row));
  };
  const score = arg('score', '');
  if (score) {
    const m = /^(\w+)=(.+)$/.exec(score);
    if (!m || !(m[1] in ARMS) || seeds.length !== 1) throw new Error(`ablations: --score wants ARM=CHECKPOINT (arms: ${Object.keys(ARMS).join(', ')}) and one --seeds, got '${score}'`);
    const { model } = loadCheckpoint(m[2]);
    try {
      // runRecipe's final evaluation and the split it scores (recipeStreams(seed).val, testImages images)
      const val = validationSplit(seeds[0], base.testImages);
      record(seeds[0], m[1], null, evaluateSplit(model, val, tokenizer, 'vicuna_v1'), visualWordStats(model, tokenizer, val));
    } finally {
      model.dispose();
    }
    return;
  }
  for (const seed of seeds) {
    let tower: Map<string, Float32Array> | undefined;
    for (const arm of arms) {
      const r: Recipe = { ...base, ...ARMS[arm], seed };
      const res = await runRecipe(r, { outDir: path.join(dir, `seed${seed}-${arm}`), pretrainedTower: tower });
      tower = tower ?? res.tower ?? undefined;
      record(seed, arm, res.seconds, res.val, visualWordStats(res.model, tokenizer, res.valSplit));
      res.model.dispose();
    }
  }
}

function summarize(files: string[]): void {
  const rows: Row[] = files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Row));
  const stat = (xs: number[]) => {
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1)) : 0;
    return `${(100 * m).toFixed(1)} ± ${(100 * sd).toFixed(1)}`;
  };
  console.log(`| arm | seeds | non-relational | relational | ${KINDS.join(' | ')} | visual-word agreement (chance) | mean entropy (nats) |`);
  console.log(`|---|---|---|---|${KINDS.map(() => '---').join('|')}|---|---|`);
  for (const arm of Object.keys(ARMS)) {
    const rs = rows.filter((r) => r.arm === arm);
    if (rs.length === 0) continue;
    const vw = rs.filter((r) => r.agreement !== null);
    const agreement = vw.length ? `${stat(vw.map((r) => r.agreement!))}% (${stat(vw.map((r) => r.chance!))}%)` : 'n/a (no vm_head)';
    const entropy = vw.length ? (vw.reduce((a, r) => a + r.entropy!, 0) / vw.length).toFixed(2) : 'n/a';
    console.log(`| ${arm} | ${rs.map((r) => r.seed).join(', ')} | ${stat(rs.map((r) => r.nonRelational))}% | ${stat(rs.map((r) => r.relational))}% | ${KINDS.map((k) => `${stat(rs.map((r) => r.kinds[k]))}%`).join(' | ')} | ${agreement} | ${entropy} |`);
  }
}

const i = process.argv.indexOf('--summarize');
if (i >= 0) summarize(process.argv.slice(i + 1));
else void run();
