// The vwlmm side of the end-to-end training comparison (issue 11; the HF side is benchmarks/hf_vwlmm_train.py: the
// same model, batch, loss and FLOP formula). A VW-LMM with a CLIP ViT-B/16 tower at 224 px (12 layers, d 768,
// quick_gelu, select layer -2, patch features), an mlp2x_gelu projector, a 16-layer LLaMA (d 1024, 16 heads, FFN
// 2816, V 32000) and vm_head; CE on the text plus the KL (batchmean, target not detached); AdamW; batch 16 x (196 +
// 129) tokens, one random batch repeated. Prints one JSON line: tokens/s, peak memory, the bytes the first forward
// leaves live for its backward (savedBytes), MFU (H200 bf16 989 TFLOPs).
// --size 7b (issue 12): LLaVA-1.5-7B's shapes (Vicuna-7B: 32 layers, d 4096, FFN 11008; CLIP ViT-L/14 at 336 px, 24
// layers, 576 patches), batch 16 x 2048 tokens, with random weights drawn on the device (random signs of the init
// std: drawing 7B normals in JS would take minutes) and the LLM's and tower's Linear weights stored in bf16.
// --lora R: LLaVA-1.5's LoRA recipe (r R, alpha 2R, dropout 0.05 on every Linear of the LLM; the projector and vm_head
// train fully; the LLM and the tower frozen). The MFU then counts the products LoRA runs (frozen weights: forward and
// input gradient only; the frozen tower: forward only), the same formula as the HF side.
//
//   npx tsx benchmarks/train_throughput.ts [--size issue|tiny|7b] [--device cuda|cpu] [--steps 10] [--warmup 3] [--dtype bf16|fp32]
//                                         [--profile N] [--batch B] [--lora R] [--grad-ckpt] [--device-init]
//                                         [--residual-dtype fp32|bf16]
// --residual-dtype bf16: the LLM's residual stream (and so the gradient checkpoints) in bf16, as the HF side's 7B
// model holds it (loaded in bf16); default fp32, torch's autocast.
// --batch B: B samples instead of the size's batch (e.g. the model at batch 1 on the CPU, for its memory).
// --profile N: after the timed steps, 2 more steps with the op profile on (profileOps: host wall time per op; on
// CUDA with VWLMM_CUDA_ASYNC=0 each op waits for its kernels, so that is GPU time; by default, launch cost): the time per op name and
// the N costliest op/shape keys, per step, on stderr.
import { AdamW, autocast, hostSyncs, memoryStats, profileOps, scope, zeroGrad } from '../src';
import { parseComputeDtype } from '../src/amp';
import { collate, nextTokenTargets, visualWordRows } from '../src/data/collate';
import { DeviceSpec, useDevice } from '../src/device';
import { applyLora } from '../src/model/lora';
import { ModelBatch } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { applyTrainable } from '../src/train/trainer';
import { createSized, flopsPerStep, PEAK_BF16, SIZES, sizeName } from './model_sizes';
import { arg, declareFlags, numArg, printOpProfile } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['size', 'device', 'dtype', 'steps', 'warmup', 'lora', 'residual-dtype', 'batch', 'profile'], ['device-init', 'grad-ckpt']);

const args = process.argv.slice(2);
const size = sizeName(arg('size', 'issue'));
const s = SIZES[size];
const device = arg('device', 'cuda') as DeviceSpec;
useDevice('--device', device);
const dtype = parseComputeDtype('--dtype', arg('dtype', 'bf16'));
const steps = numArg('steps', 10, { integer: true, min: 1 }), warmup = numArg('warmup', 3, { integer: true, min: 0 });
// --lora 0 and --profile 0: off. All read before the model is made: a bad value stops at once
const loraR = numArg('lora', 0, { integer: true, min: 0 }), top = numArg('profile', 0, { integer: true, min: 0 });
const batchSize = numArg('batch', s.batch, { integer: true, min: 1 });
const model = createSized(size, device, size === '7b' || args.includes('--device-init'));
if (loraR > 0) {
  applyLora(model, { r: loraR, alpha: 2 * loraR, dropout: 0.05 });
  applyTrainable(model, { projector: true, vmHead: true, lora: true });
}
if (args.includes('--grad-ckpt')) model.gradientCheckpointing = true;
model.residualDtype = parseComputeDtype('--residual-dtype', arg('residual-dtype', 'fp32'));
const gen = new Generator(0);
const patches = (s.vision.image / s.vision.patch) ** 2, seq = patches + s.textTokens, prefix = 4, question = Math.max(1, Math.floor(s.textTokens / 4));
// one sample: 4 prompt tokens, the image, the question (not supervised), the answer
const samples = Array.from({ length: batchSize }, () => {
  const text = Array.from({ length: s.textTokens }, () => gen.int(s.text.V - 1));
  const inputIds = [...text.slice(0, prefix), -200, ...text.slice(prefix)];
  const labels = inputIds.map((t, i) => (i <= prefix + question ? -100 : t));
  return { inputIds, labels, image: gen.normals(3 * s.vision.image * s.vision.image) };
});
const b = collate(samples, { padId: 0, numPatches: patches });
const batch: ModelBatch = { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
if (b.T !== seq) throw new Error(`sequence ${b.T}, expected ${seq}`);
const opt = new AdamW(model.parameters().filter((p) => p.requiresGrad), { lr: 1e-5 });
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
const fl = flopsPerStep(s, batchSize, seq, patches, loraR);
const mem = memoryStats();
console.log(JSON.stringify({
  impl: 'vwlmm', size, device, dtype, residualDtype: model.residualDtype, lora: loraR, gradientCheckpointing: model.gradientCheckpointing,
  trainableParams: model.parameters().filter((p) => p.requiresGrad).reduce((a, p) => a + p.size, 0), batch: batchSize, seq, secondsPerStep: sec, tokensPerSec: (batchSize * seq) / sec,
  peakBytes: dev === 'cuda' ? mem.cuda?.peakReservedBytes ?? null : mem.cpu.peakReservedBytes, savedBytes, flopsPerStep: fl,
  mfu: dev === 'cuda' ? fl / sec / PEAK_BF16 : null, loss, hostSyncsPerStep: (hostSyncs(dev) - syncs0) / steps,
}));
if (top > 0) {
  profileOps(true);
  for (let i = 0; i < 2; i++) scope(() => void step().item());
  const entries = profileOps(false);
  printOpProfile(entries, 2, top);
}
model.dispose();
opt.dispose();
