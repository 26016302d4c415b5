// Issue 13's ablations: the demo recipe's four arms on the same budget, per seed, scored on the validation split
// (accuracy by category) with the visual words' agreement, its chance level and their mean entropy.
//   vw        VW-LMM (the recipe as it is)
//   llava     plain LLaVA: vmWeight 0 (no KL, no vm_head)
//   detached  the KL's target detached from the graph (Recipe.detachTarget)
//   pif       the PIF variant (Recipe.pif)
// Per seed, stage 0 runs once (the first arm) and the other arms start from its tower (RunRecipeOptions
// .pretrainedTower: stage 0 sees neither the LLM nor the objective, so it would give the same weights). One line of
// JSON per (seed, arm) is appended to --jsonl (default /tmp/vwlmm-ablations.jsonl, kept: the results); --summarize
// FILE... prints mean +- sd over the seeds as a markdown table. A (arm, seed) recorded more than once (a rerun appended
// to the same file, or in two files) counts once, its last record (files in the order given, lines in file order),
// and the summary says how many were replaced. The runs' folders go to --out DIR (kept) or, without it, to a fresh
// temporary folder removed at the end.
// --score ARM=CHECKPOINT scores a model the arm's recipe already trained (`vwlmm demo --seed N` trains the vw arm's
// runRecipe at the default recipe: its out/vw/checkpoint) the same way, without training it again (seconds: null).
//
//   npx tsx benchmarks/ablations.ts ['{"stage2":{"steps":3000}}'] --seeds 0,1 --jsonl /tmp/abl.jsonl [--arms vw,llava]
//   npx tsx benchmarks/ablations.ts --seeds 0 --score vw=DEMO_OUT/vw/checkpoint --jsonl /tmp/abl.jsonl
//   npx tsx benchmarks/ablations.ts --summarize /tmp/abl-a.jsonl /tmp/abl-b.jsonl
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { visualWordStats } from '../src/demo/demo';
import { Accuracy, evaluateSplit } from '../src/demo/evaluate';
import { DEFAULT_RECIPE, Recipe, runRecipe, validationSplit } from '../src/demo/recipe';
import { loadCheckpoint } from '../src/model/checkpoint';
import { makeTokenizer } from '../src/demo/task';
import { arg, declareFlags, overridesArg, recipeWith } from './support';

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
  declareFlags(['seeds', 'arms', 'jsonl', 'out', 'score']);
  const base = recipeWith(DEFAULT_RECIPE, overridesArg());
  const seeds = arg('seeds', '0').split(',').map(Number);
  const arms = arg('arms', Object.keys(ARMS).join(',')).split(',');
  for (const a of arms) if (!(a in ARMS)) throw new Error(`ablations: unknown arm '${a}' (${Object.keys(ARMS).join(', ')})`);
  const out = arg('jsonl', '/tmp/vwlmm-ablations.jsonl'), givenDir = arg('out', '');
  const dir = givenDir || (arg('score', '') ? '' : fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-ablations-')));
  // only a folder this script made is removed
  if (!givenDir && dir) process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
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
  const all: Row[] = files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Row));
  // --jsonl is appended to: a rerun of one (arm, seed) must not count as another seed. The last record of each wins.
  const last = new Map<string, Row>();
  for (const r of all) {
    const k = `${r.arm}\u0000${r.seed}`;
    last.delete(k); // re-inserted at the end: the table keeps the order of the last records
    last.set(k, r);
  }
  const rows = [...last.values()];
  if (rows.length < all.length) console.log(`${all.length - rows.length} of ${all.length} records repeat an (arm, seed) and were replaced by its last record\n`);
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
