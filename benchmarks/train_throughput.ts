// The vwlmm side of the end-to-end training comparison (issue 11; the HF side is benchmarks/hf_vwlmm_train.py: the
// same model, batch, loss and FLOP formula). A VW-LMM with a CLIP ViT-B/16 tower at 224 px (12 layers, d 768,
// quick_gelu, select layer -2, patch features), an mlp2x_gelu projector, a 16-layer LLaMA (d 1024, 16 heads, FFN
// 2816, V 32000) and vm_head; CE on the text plus the KL (batchmean, target not detached); AdamW; batch 16 x (196 +
// 129) tokens, one random batch repeated. Prints one JSON line: tokens/s, peak memory, the bytes the first forward
// leaves live for its backward (savedBytes), MFU (H200 bf16 989 TFLOPs).
//
//   npx tsx benchmarks/train_throughput.ts [--size issue|tiny] [--device cuda|cpu] [--steps 10] [--warmup 3] [--dtype bf16|fp32]
//                                         [--profile N] [--batch B]
// --batch B: B samples instead of the size's batch (e.g. the issue's model at batch 1 on the CPU, for its memory).
// --profile N: after the timed steps, 2 more steps with the op profile on (profileOps: host wall time per op; on
// CUDA with VWLMM_CUDA_ASYNC=0 each op waits for its kernels, so that is GPU time; by default, launch cost): the time per op name and
// the N costliest op/shape keys, per step, on stderr.
import { AdamW, autocast, hostSyncs, memoryStats, profileOps, scope, zeroGrad } from '../src';
import { parseComputeDtype } from '../src/amp';
import { collate, nextTokenTargets, visualWordRows } from '../src/data/collate';
import { DeviceSpec, useDevice } from '../src/device';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../src/model/config';
import { ModelBatch, VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { arg, printOpProfile } from './support';

const SIZES = {
  issue: { vision: { d: 768, ff: 3072, L: 12, heads: 12, image: 224, patch: 16 }, text: { d: 1024, ff: 2816, L: 16, heads: 16, V: 32000 }, batch: 16, textTokens: 129 },
  tiny: { vision: { d: 32, ff: 64, L: 2, heads: 2, image: 32, patch: 8 }, text: { d: 32, ff: 64, L: 2, heads: 2, V: 512 }, batch: 2, textTokens: 9 },
} as const;
const PEAK_BF16 = 989e12;

/** benchmarks/hf_vwlmm_train.py's flops_per_step. */
function flopsPerStep(s: (typeof SIZES)[keyof typeof SIZES], batch: number, seq: number, patches: number): number {
  const { d, ff, L, V } = s.text, v = s.vision;
  const llm = L * (4 * d * d + 3 * d * ff) + 2 * V * d;
  const vit = v.L * (4 * v.d * v.d + 2 * v.d * v.ff);
  const proj = v.d * d + d * d;
  return 6 * (llm * batch * seq + vit * batch * (patches + 1) + proj * batch * patches) + 12 * L * d * seq * seq * batch + 12 * v.L * v.d * (patches + 1) ** 2 * batch;
}

const size = arg('size', 'issue') as keyof typeof SIZES;
const s = SIZES[size];
const device = arg('device', 'cuda') as DeviceSpec;
useDevice('--device', device);
const dtype = parseComputeDtype('--dtype', arg('dtype', 'bf16'));
const steps = Number(arg('steps', '10')), warmup = Number(arg('warmup', '3'));
const cfg: VwLmmConfig = {
  llm: { vocabSize: s.text.V, hiddenSize: s.text.d, intermediateSize: s.text.ff, numLayers: s.text.L, numHeads: s.text.heads, numKvHeads: s.text.heads, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, initializerRange: 0.02 },
  vision: { hiddenSize: s.vision.d, intermediateSize: s.vision.ff, numLayers: s.vision.L, numHeads: s.vision.heads, imageSize: s.vision.image, patchSize: s.vision.patch, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 },
  visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 1, pif: false, detachTarget: false,
  template: 'vicuna_v1', image: { size: s.vision.image, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
};
const model = VwLmm.create(cfg, 0, { device });
const gen = new Generator(0);
const patches = (s.vision.image / s.vision.patch) ** 2, seq = patches + s.textTokens, prefix = 4, question = Math.max(1, Math.floor(s.textTokens / 4));
// one sample: 4 prompt tokens, the image, the question (not supervised), the answer
const batchSize = Number(arg('batch', String(s.batch)));
const samples = Array.from({ length: batchSize }, () => {
  const text = Array.from({ length: s.textTokens }, () => gen.int(s.text.V - 1));
  const inputIds = [...text.slice(0, prefix), -200, ...text.slice(prefix)];
  const labels = inputIds.map((t, i) => (i <= prefix + question ? -100 : t));
  return { inputIds, labels, image: gen.normals(3 * s.vision.image * s.vision.image) };
});
const b = collate(samples, { padId: 0, numPatches: patches });
const batch: ModelBatch = { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
if (b.T !== seq) throw new Error(`sequence ${b.T}, expected ${seq}`);
const opt = new AdamW(model.parameters(), { lr: 1e-5 });
const dev = device.startsWith('cuda') ? 'cuda' : 'cpu';
let loss = 0;
// live bytes the forward leaves for the backward (activations and saved copies), measured at the first step
let savedBytes: number | null = null;
const live = () => (dev === 'cuda' ? memoryStats().cuda?.liveBytes ?? 0 : memoryStats().cpu.liveBytes);
const step = () => {
  const l = autocast(dtype, () => scope(() => {
    const before = savedBytes === null ? live() : 0;
    const out = model.loss(batch);
    if (savedBytes === null) savedBytes = live() - before;
    out.loss.backward();
    return out.loss;
  }));
  opt.step();
  zeroGrad(model.parameters());
  return l;
};
for (let i = 0; i < warmup; i++) scope(() => void step());
const syncs0 = hostSyncs(dev);
const t0 = process.hrtime.bigint();
for (let i = 0; i < steps; i++) {
  if (i === steps - 1) loss = scope(() => step().item()); // the one read: waits for the last step
  else scope(() => void step());
}
const sec = Number(process.hrtime.bigint() - t0) / 1e9 / steps;
const fl = flopsPerStep(s, batchSize, seq, patches);
const mem = memoryStats();
console.log(JSON.stringify({
  impl: 'vwlmm', size, device, dtype, batch: batchSize, seq, secondsPerStep: sec, tokensPerSec: (batchSize * seq) / sec,
  peakBytes: dev === 'cuda' ? mem.cuda?.peakReservedBytes ?? null : mem.cpu.peakReservedBytes, savedBytes, flopsPerStep: fl,
  mfu: dev === 'cuda' ? fl / sec / PEAK_BF16 : null, loss, hostSyncsPerStep: (hostSyncs(dev) - syncs0) / steps,
}));
const top = Number(arg('profile', '0'));
if (top > 0) {
  profileOps(true);
  for (let i = 0; i < 2; i++) scope(() => void step().item());
  const entries = profileOps(false);
  printOpProfile(entries, 2, top);
}
model.dispose();
opt.dispose();
