// Native memory a program keeps when it calls the library outside any scope(), in a synchronous loop (no event-loop
// turn, so nothing waits for the garbage collector to free it): (1) a hand-written training step, model.loss(batch) ->
// backward -> AdamW.step, with the loss tensors disposed; (2) an op the kernel refuses (F.embedding with an id past the
// table), caught. Prints one JSON line per measurement: live native buffers and bytes above the start.
//
//   VWLMM_NUM_THREADS=1 node --import tsx benchmarks/unscoped_memory.ts [--steps 1000] [--refused 400]
import { AdamW, F, memoryStats, Tensor, zeroGrad } from '../src';
import { VwLmm } from '../src/model/vwlmm';
import { tinyConfig, tinyData } from '../tests/train/support/tiny';

const arg = (name: string, d: number) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : d;
};
const live = () => memoryStats().cpu;

// (1) the training step outside any scope
const steps = arg('--steps', 1000);
const { tokenizer, makeBatch } = tinyData(8);
const model = VwLmm.create({ ...tinyConfig(tokenizer.vocabSize), llm: { ...tinyConfig(tokenizer.vocabSize).llm, numLayers: 2 } }, 1);
const params = model.parameters().filter((p) => p.requiresGrad);
const opt = new AdamW(params, { lr: 1e-4 });
const batch = makeBatch([0, 1]);
const start = live();
for (let s = 1; s <= steps; s++) {
  const out = model.loss(batch);
  out.loss.backward();
  for (const t of [out.loss, out.ceLoss, out.klLoss]) t?.dispose();
  opt.step();
  zeroGrad(params);
  if (s === 1 || s === steps) {
    const m = live();
    console.log(JSON.stringify({ case: 'model.loss outside a scope', step: s, liveBuffers: m.liveBuffers - start.liveBuffers, liveKiB: Math.round((m.liveBytes - start.liveBytes) / 1024) }));
  }
}
opt.dispose();
model.dispose();

// (2) refused ops: an 8 MiB embedding output per call
const refused = arg('--refused', 400);
const table = Tensor.fromArray(new Float32Array(4 * 1024), [4, 1024]), ids = Tensor.fromArray(new Int32Array(2048).fill(1).map((v, i) => (i === 2047 ? 4 : v)), [2048]);
const before = live();
for (let k = 0; k < refused; k++) {
  try {
    F.embedding(ids, table);
  } catch {
    /* refused: id 4 of a 4-row table */
  }
}
const after = live();
console.log(JSON.stringify({ case: 'refused F.embedding outside a scope', calls: refused, liveBuffers: after.liveBuffers - before.liveBuffers, liveMiB: Math.round((after.liveBytes - before.liveBytes) / 2 ** 20) }));
table.dispose();
ids.dispose();
