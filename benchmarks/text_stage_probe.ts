// Does the text stage teach the LLM to read a scene grid (issue 13)? Trains only the paper schedule's text stage with
// scene grids (Recipe.text.grid), then scores the teacher-forced caption position and shape words on validation
// scenes, after the grid and without it. One JSON line each.
//
//   npx tsx benchmarks/text_stage_probe.ts [steps, default 750] [--nearest]
// steps (a positive integer) may come before or after --nearest. The run's files go to a temporary folder, removed at
// the end.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_RECIPE, paperSchedule, Recipe, runRecipe } from '../src/demo/recipe';
import { captionText, makeTokenizer, sceneGridText } from '../src/demo/task';
import { Tensor } from '../src/tensor';
import { noGrad } from '../src/autograd';
import * as F from '../src/functional';
import { declareFlags, flag } from './support';

declareFlags([], ['nearest']);
const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (positional.length > 1) throw new RangeError(`text_stage_probe: one positional argument (steps), got ${positional.join(' ')}`);
const steps = Number(positional[0] ?? '750'), fill = flag('nearest') ? 'nearest' : 'object';
// a NaN or zero here would train nothing and still print scores for the untrained model
if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`text_stage_probe: steps takes a positive integer, got '${positional[0]}'`);
const base = paperSchedule(DEFAULT_RECIPE);
const r: Recipe = { ...base, trainImages: 2450, evalEvery: 0, stage0: { ...base.stage0, steps: 0 }, text: { ...base.text!, steps, grid: fill === 'nearest' ? 'nearest' : true }, stage1: { ...base.stage1, steps: 0 }, stage2: { ...base.stage2, steps: 0 } };
const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-'));
process.on('exit', () => fs.rmSync(outDir, { recursive: true, force: true }));
(async () => {
  const res = await runRecipe(r, { outDir });
  const { tokenizer } = makeTokenizer();
  const m = res.model;
  for (const withGrid of [true, false]) {
    let hit = 0, n = 0;
    for (let i = 0; i < 100; i++) {
      const sc = res.valSplit.scenes[i];
      const prefix = withGrid ? sceneGridText(sc, 75, 15, fill) + ' ' : '';
      const ids = tokenizer.encode(prefix + captionText(sc, true), { addBos: true });
      const start = withGrid ? 26 : 1;
      noGrad(() => {
        const e = m.model.embed_tokens.forward(Tensor.fromArray(Int32Array.from(ids), [1, ids.length]));
        const h = m.model.forward(e, {}).last;
        const logits = F.matmul(F.reshape(h, [ids.length, m.config.llm.hiddenSize]), m.lm_head.weight, { transB: true }).toArray() as Float32Array;
        const V = m.config.llm.vocabSize;
        for (let t = start; t + 1 < ids.length; t++) {
          const tok = tokenizer.idToToken(ids[t + 1]);
          if (!['left', 'right', 'top', 'bottom', 'square', 'circle'].includes(tok ?? '')) continue;
          let best = 0;
          for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + best]) best = v;
          n++;
          if (best === ids[t + 1]) hit++;
        }
      });
    }
    console.log(JSON.stringify({ steps, withGrid, positionAndShapeWordAcc: hit / n, n }));
  }
})();
