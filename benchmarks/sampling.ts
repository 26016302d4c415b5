// ms per decoding step of VwLmm.generate, greedy against sampled (temperature, top-k, top-p as transformers' warpers,
// src/model/sampling.ts), at B 8 prompts and V 32000 on a tiny model (so the sampler's share shows). Best of 3.
// The prefill is measured apart: a run of 1 new token (the prompt's forward + the first token's choice) and a run of
// --steps new tokens; ms per decoding step = (t_steps - t_1) / (steps - 1), each t the best of 3. (Before 2026-12-06
// it was t_steps / steps, the prefill spread over the steps.) No eosId: every run makes its whole budget.
//   npx tsx benchmarks/sampling.ts [--steps 8]
import { VwLmm } from '../src/model/vwlmm';
import { tinyConfig } from '../tests/train/support/tiny';
import { declareFlags, numArg } from './support';

declareFlags(['steps']);
// at least 2: the decode cost is the difference to a 1-token run
const steps = numArg('steps', 8, { integer: true, min: 2 });
const V = 32000;
const model = VwLmm.create({ ...tinyConfig(V), llm: { ...tinyConfig(V).llm, vocabSize: V } }, 2);
const prompts = Array.from({ length: 8 }, (_, b) => ({ tokenIds: Int32Array.from({ length: 12 }, (_, k) => (b * 977 + k * 31) % V), imagePositions: new Int32Array(0), pixelValues: null }));
const best = (o: object, n: number) => {
  let t = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    model.generate(prompts, { maxNewTokens: n, ...o });
    t = Math.min(t, performance.now() - t0);
  }
  return t;
};
const timing = (o: object) => {
  model.generate(prompts, { maxNewTokens: 2, ...o }); // warm-up
  const prefill = best(o, 1), full = best(o, steps);
  return { prefill, perStep: (full - prefill) / (steps - 1) };
};
console.log(`sampling: B 8, V ${V}, ${steps} steps, ${new Date().toISOString().slice(0, 10)}; ms per decoding step without the prefill (the 1-token run, shown apart)`);
for (const o of [{}, { temperature: 1 }, { temperature: 1, topP: 0.9 }, { temperature: 0.7, topP: 0.9 }, { temperature: 1, topK: 50 }, { temperature: 1, topK: 50, topP: 0.9 }]) {
  const t = timing(o);
  console.log(`${JSON.stringify(o) === '{}' ? 'greedy' : JSON.stringify(o)}: ${t.perStep.toFixed(1)} ms/step (prefill + first token ${t.prefill.toFixed(1)} ms)`);
}
model.dispose();
