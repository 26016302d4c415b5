// Host synchronisations and time per optimizer step of the demo model's Trainer on one device: how often the
// host waits for the backend inside a step (hostSyncs(), native/core/host_sync.h). The CPU count is the
// orchestration's (tests/train/host_syncs.test.ts holds it to 1); on CUDA every wait inside an op counts too, so
// this lists what is left of "one synchronisation per step". Run it with VWLMM_CUDA_ASYNC=0 as well (a wait
// at the end of every op).
//
//   npx tsx benchmarks/host_syncs.ts [--device cuda] [--dtype bf16] [--steps 20] [--accum 2] [--profile N]
// --profile N: the op profile of the steps after the first 2 (benchmarks/support.ts printOpProfile) on stderr.
// meanMsPerStep is over the steps after the first 2 (warm-up), so --steps must be at least 3.
import { hostSyncs, isAsync, profileOps } from '../src';
import { parseComputeDtype } from '../src/amp';
import { DeviceSpec, useDevice } from '../src/device';
import { DEFAULT_RECIPE, recipeConfig } from '../src/demo/recipe';
import { batchOf, makeSplit, makeTokenizer, questionConversation, tokenizeSamples } from '../src/demo/task';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { Trainer } from '../src/train/trainer';
import { arg, declareFlags, numArg, printOpProfile } from './support';

declareFlags(['device', 'dtype', 'steps', 'accum', 'profile']);
const WARMUP = 2; // steps left out of meanMsPerStep and the op profile
const device = arg('device', 'cpu') as DeviceSpec;
useDevice('--device', device);
// steps past the warm-up: with steps <= WARMUP the mean would be of nothing (it printed 0); --profile 0: off
const steps = numArg('steps', 20, { integer: true, min: WARMUP + 1 }), accum = numArg('accum', 2, { integer: true, min: 1 }), top = numArg('profile', 0, { integer: true, min: 0 });
const dtype = parseComputeDtype('--dtype', arg('dtype', device.startsWith('cuda') ? 'bf16' : 'fp32'));
const { tokenizer } = makeTokenizer();
const split = makeSplit(64, new Generator(1), { nonRelational: 4, relational: 4 });
const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
const cfg = recipeConfig(DEFAULT_RECIPE, tokenizer.vocabSize);
const model = VwLmm.create(cfg, 1, { device });
const size = cfg.vision.imageSize, patches = (size / cfg.vision.patchSize) ** 2;
const makeBatch = (idx: number[]) => batchOf(idx.map((i) => samples[i]), split, { imageSize: size, numPatches: patches, padId: tokenizer.padId, mean: cfg.image.mean, std: cfg.image.std });
const per: { syncs: number; ms: number }[] = [];
let last = 0, t = 0;
const trainer = new Trainer(model, [{ name: 'q', size: samples.length, makeBatch, steps, batchSize: 16, gradAccum: accum, lr: 1e-3, trainable: { projector: true, llm: true, vmHead: true } }], {
  seed: 1, dtype,
  onLog: (r) => {
    if (r.type !== 'train') return;
    const now = hostSyncs(device.startsWith('cuda') ? 'cuda' : 'cpu');
    per.push({ syncs: now - last, ms: Date.now() - t });
    if (top > 0 && per.length === WARMUP) profileOps(true);
    last = now;
    t = Date.now();
  },
});
last = hostSyncs(device.startsWith('cuda') ? 'cuda' : 'cpu');
t = Date.now();
trainer.run();
const steady = per.slice(WARMUP);
if (top > 0) printOpProfile(profileOps(false), steady.length, top);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
console.log(JSON.stringify({ device, dtype, accum, async: isAsync(device.startsWith('cuda') ? 'cuda' : 'cpu'), syncsPerStep: per.map((p) => p.syncs), meanMsPerStep: mean(steady.map((p) => p.ms)) }));
model.dispose();
