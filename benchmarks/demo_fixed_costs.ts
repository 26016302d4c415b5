// What `vwlmm demo` costs besides its training steps: the default recipe on the full data (9,800 + 200 images) with two
// steps per stage, timed by phase from its log (the calibration, writing the data, the stages' set-up: tokenising the
// conversations, the stage files and their images, the evaluations, the plots). On the GPU these fixed costs are what
// the 90 s target leaves for the steps (issue 11; benchmarks/RESULTS.md, "The demo's fixed costs").
//   npx tsx benchmarks/demo_fixed_costs.ts [--out DIR] [--device cpu|cuda]
// With --out the demo's files stay in DIR (kept, whatever was in it before); without it they go to a fresh temporary
// folder that the script removes at the end.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runDemo } from '../src/demo/demo';
import { DEFAULT_RECIPE, Recipe } from '../src/demo/recipe';
import { arg, declareFlags } from './support';

declareFlags(['out', 'device']);
const given = arg('out', '');
// only a folder this script made is removed at the end; a user's --out is kept
const out = given || fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-demo-fixed-'));
const device = arg('device', 'cpu') as 'cpu' | 'cuda';

const recipe: Recipe = JSON.parse(JSON.stringify(DEFAULT_RECIPE));
recipe.stage0.steps = 2;
recipe.stage0.frozenSteps = 1;
recipe.stage1.steps = 2;
recipe.stage2.steps = 2;

(async () => {
  const t0 = Date.now();
  const log = console.log;
  // every line of the demo's log with the seconds since the start
  console.log = (...a: unknown[]) => log(`[${((Date.now() - t0) / 1000).toFixed(1)} s]`, ...a);
  try {
    const r = await runDemo({ outDir: out, seed: 0, ablation: false, scale: 1, quiet: false, recipe, device });
    log(`demo fixed costs: ${r.seconds.toFixed(1)} s in all, ${r.trainSeconds.toFixed(1)} s in runRecipe (6 steps of it), on ${device}`);
  } finally {
    console.log = log;
    if (given) log(`demo files kept in ${out}`);
    else {
      fs.rmSync(out, { recursive: true, force: true });
      log(`the temporary folder ${out} (the files the log names) is removed; pass --out DIR to keep them`);
    }
  }
})();
