// ms per decoding step of VwLmm.generate, greedy against sampled (temperature, top-k, top-p as transformers' warpers,
// src/model/sampling.ts), at B 8 prompts and V 32000 on a tiny model (so the sampler's share shows). Best of 3.
//   npx tsx benchmarks/sampling.ts [--steps 8]
import { VwLmm } from '../src/model/vwlmm';
import { tinyConfig } from '../tests/train/support/tiny';

const i = process.argv.indexOf('--steps');
const steps = i >= 0 ? Number(process.argv[i + 1]) : 8;
const V = 32000;
const model = VwLmm.create({ ...tinyConfig(V), llm: { ...tinyConfig(V).llm, vocabSize: V } }, 2);
const prompts = Array.from({ length: 8 }, (_, b) => ({ tokenIds: Int32Array.from({ length: 12 }, (_, k) => (b * 977 + k * 31) % V), imagePositions: new Int32Array(0), pixelValues: null }));
const msPerStep = (o: object) => {
  model.generate(prompts, { maxNewTokens: 2, ...o });
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    model.generate(prompts, { maxNewTokens: steps, ...o });
    best = Math.min(best, (performance.now() - t0) / steps);
  }
  return best;
};
console.log(`sampling: B 8, V ${V}, ${steps} steps, ${new Date().toISOString().slice(0, 10)}`);
for (const o of [{}, { temperature: 1 }, { temperature: 1, topP: 0.9 }, { temperature: 0.7, topP: 0.9 }, { temperature: 1, topK: 50 }, { temperature: 1, topK: 50, topP: 0.9 }])
  console.log(`${JSON.stringify(o) === '{}' ? 'greedy' : JSON.stringify(o)}: ${msPerStep(o).toFixed(1)} ms/step`);
model.dispose();
