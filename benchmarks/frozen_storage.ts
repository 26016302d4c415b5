// Frozen Linear weights stored in bf16 (TrainerOptions.frozenDtype, nn.storeFrozenWeights) against float32 storage, in
// LoRA training on the CPU: a VW-LMM whose LLM has LLaVA-like proportions at small scale (d 512, 8 layers, FFN 1376,
// V 32000; LoRA r 16 on every decoder Linear; projector and vm_head trained), Sort-of-CLEVR batches of 4. For each
// compute dtype, both storages alternate: the bytes of the model's parameters, the peak the caching allocator
// reserved in the run, and seconds per step (median). Prints a table and one JSON line.
//
//   npx tsx benchmarks/frozen_storage.ts [--steps 6] [--rounds 2]
import * as os from 'os';
import { memoryStats, releaseHostCache } from '../src';
import type { ComputeDtype } from '../src';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../src/model/config';
import { applyLora } from '../src/model/lora';
import { ModelBatch, VwLmm } from '../src/model/vwlmm';
import { batchOf, makeSplit, makeTokenizer, questionConversation, tokenizeSamples } from '../src/demo/task';
import { Generator } from '../src/random';
import { Trainer } from '../src/train/trainer';
import { declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['steps', 'rounds']);

// at least 2 steps: the first warms up and is not timed
const steps = numArg('steps', 6, { integer: true, min: 2 }), rounds = numArg('rounds', 2, { integer: true, min: 1 });
const config: VwLmmConfig = {
  llm: { vocabSize: 32000, hiddenSize: 512, intermediateSize: 1376, numLayers: 8, numHeads: 8, numKvHeads: 8, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 512, initializerRange: 0.02 },
  vision: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 2, imageSize: 75, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 },
  visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 1, pif: false, detachTarget: false,
  template: 'vicuna_v1', image: { size: 75, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
};
const { tokenizer } = makeTokenizer();
const split = makeSplit(16, new Generator(3), { nonRelational: 2, relational: 2 });
const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
const bopts = { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD };
const makeBatch = (idx: number[]): ModelBatch => batchOf(idx.map((i) => samples[i]), split, bopts);

interface Run { paramBytes: number; peakReserved: number; seconds: number[] }
function run(dtype: ComputeDtype, frozenDtype: ComputeDtype): Run {
  releaseHostCache();
  const before = memoryStats().cpu.liveBytes;
  const model = VwLmm.create(config, 1);
  applyLora(model, { r: 16, alpha: 32, seed: 1 });
  const seconds: number[] = [];
  let paramBytes = 0, last = 0;
  const trainer = new Trainer(model, [{ name: 'lora', size: samples.length, makeBatch, steps, batchSize: 4, lr: 1e-3, warmupRatio: 0, trainable: { lora: true, projector: true, vmHead: true } }], {
    seed: 1, dtype, frozenDtype,
    onLog: (r) => {
      if (r.type !== 'train') return;
      const now = Number(r.elapsed);
      if (Number(r.step) > 1) seconds.push(now - last); // the first step warms up
      last = now;
    },
  });
  const parameters = () => model.parameters().reduce((a, p) => a + p.size * (p.dtype === 'bfloat16' ? 2 : 4), 0);
  trainer.run();
  paramBytes = parameters();
  const peakReserved = memoryStats().cpu.peakReservedBytes;
  model.dispose();
  if (memoryStats().cpu.liveBytes !== before) throw new Error('frozen_storage: the run leaked native memory');
  return { paramBytes, peakReserved, seconds };
}

const results: Record<string, Run> = {};
for (let r = 0; r < rounds; r++) {
  for (const dtype of ['float32', 'bfloat16'] as const) {
    for (const frozen of ['float32', 'bfloat16'] as const) {
      const k = `${dtype}/${frozen}`;
      const x = run(dtype, frozen);
      const acc = (results[k] ??= { paramBytes: 0, peakReserved: 0, seconds: [] });
      acc.paramBytes = x.paramBytes;
      acc.peakReserved = Math.max(acc.peakReserved, x.peakReserved);
      acc.seconds.push(...x.seconds);
    }
  }
}
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(`${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; LLM d ${config.llm.hiddenSize}, ${config.llm.numLayers} layers, V ${config.llm.vocabSize}; LoRA r 16; batch 4; ${rounds} rounds x ${steps} steps`);
console.log('| compute dtype | frozen weights stored in | parameters (MiB) | peak reserved (MiB) | seconds per step (median) |');
console.log('|---|---|---|---|---|');
for (const [k, v] of Object.entries(results)) {
  const [dtype, frozen] = k.split('/');
  console.log(`| ${dtype} | ${frozen} | ${MiB(v.paramBytes)} | ${MiB(v.peakReserved)} | ${med(v.seconds).toFixed(3)} |`);
}
console.log(JSON.stringify({ date: new Date().toISOString(), command: `npx tsx benchmarks/frozen_storage.ts ${process.argv.slice(2).join(' ')}`.trim(), results: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { paramBytes: v.paramBytes, peakReservedBytes: v.peakReserved, secondsPerStep: med(v.seconds) }])) }));
