// Mixed precision against fp32 on the demo model: the same short recipe (no stage 0; captions then questions,
// 200 optimizer steps by default) trained twice, run A and run B, each `<device>:<dtype>`; prints the train
// loss of both every 10 steps, the largest relative difference, and the seconds of each run. The check:
// A = cpu:fp32, B = cuda:bf16 ("200 bf16 steps of the demo model track the fp32 CPU loss curve").
//
//   npx tsx benchmarks/mixed_precision.ts [--a cpu:fp32] [--b cpu:bf16] [--steps 200] [--out DIR]
// The two runs' files go to --out DIR (kept), or without it to a fresh temporary folder removed at the end.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseComputeDtype } from '../src/amp';
import { parseDevice, DeviceSpec } from '../src/device';
import { DEFAULT_RECIPE, Recipe, runRecipe } from '../src/demo/recipe';
import { arg, declareFlags, numArg } from './support';

declareFlags(['a', 'b', 'steps', 'out']);
// at least 2: stages 1 and 2 take half each
const steps = numArg('steps', 200, { integer: true, min: 2 });
const given = arg('out', '');
// only a folder this script made is removed
const out = given || fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-amp-'));
if (!given) process.on('exit', () => fs.rmSync(out, { recursive: true, force: true }));
const recipe: Recipe = {
  ...DEFAULT_RECIPE, trainImages: 2000, testImages: 20, evalEvery: 100_000, evalQuestions: 20,
  stage0: { ...DEFAULT_RECIPE.stage0, steps: 0, frozenSteps: 0 },
  stage1: { ...DEFAULT_RECIPE.stage1, steps: Math.round(steps / 2) },
  stage2: { ...DEFAULT_RECIPE.stage2, steps: steps - Math.round(steps / 2) },
};

async function run(spec: string): Promise<{ losses: Map<number, number>; seconds: number }> {
  const parts = spec.split(':');
  const dtype = parseComputeDtype('--a/--b', parts.pop());
  const device = parts.join(':') as DeviceSpec;
  parseDevice('--a/--b', device);
  const losses = new Map<number, number>();
  const t0 = Date.now();
  const res = await runRecipe(recipe, {
    outDir: path.join(out, spec.replace(/:/g, '-')), device, dtype,
    onLog: (r) => {
      if (r.type === 'train') losses.set(r.globalStep as number, r.loss as number);
    },
  });
  res.model.dispose();
  return { losses, seconds: (Date.now() - t0) / 1000 };
}

(async () => {
  const a = arg('a', 'cpu:fp32'), b = arg('b', 'cpu:bf16');
  const ra = await run(a), rb = await run(b);
  let worst = 0;
  console.log(`step  ${a.padStart(10)}  ${b.padStart(10)}  rel. diff`);
  for (const [step, la] of ra.losses) {
    const lb = rb.losses.get(step);
    if (lb === undefined) continue;
    const d = Math.abs(lb - la) / Math.abs(la);
    worst = Math.max(worst, d);
    console.log(`${String(step).padStart(4)}  ${la.toFixed(4).padStart(10)}  ${lb.toFixed(4).padStart(10)}  ${(100 * d).toFixed(2)}%`);
  }
  console.log(JSON.stringify({ a, b, steps, logged: ra.losses.size, maxRelDiff: worst, secondsA: ra.seconds, secondsB: rb.seconds }));
})();
