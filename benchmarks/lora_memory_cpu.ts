// Memory of issue 12's LoRA step (benchmarks/train_throughput.ts --lora R --grad-ckpt: r R, alpha 2R, dropout 0.05,
// projector and vm_head trainable, autocast bf16, AdamW), traced on the CPU at 7B's widths with fewer layers and
// tokens, for what a GPU would hold. Every tensor buffer the addon allocates is counted at the size class the CUDA
// caching allocator would serve it from (native/core/block_cache.h with the CUDA addon's settings: a 512-byte
// granule up to 1 MiB, then 4 classes per octave, all cached). So the live peak is what the GPU's live bytes would
// reach, and the reserved peak what its cache would hold if it never released a block (an upper bound). Native
// scratch is not counted: on CUDA it comes from the stream's pool.
//   npx tsx benchmarks/lora_memory_cpu.ts [--layers 1] [--batch 2] [--text 2000] [--image 112] [--vocab 2000]
//     [--d 4096] [--ff 11008] [--heads 32] [--lora 128] [--residual-dtype bf16|fp32] [--no-grad-ckpt]
// Prints one JSON line: bytes after the forward, the step's live and reserved peaks, the op that was allocating at
// the live peak, the size classes live there, and the loss and squared gradient norm (the same across builds that
// change only memory).
import { AdamW, autocast, memoryStats, scope, zeroGrad } from '../src';
import { parseComputeDtype } from '../src/amp';
import { collate, nextTokenTargets, visualWordRows } from '../src/data/collate';
import { applyLora } from '../src/model/lora';
import { ModelBatch, VwLmm } from '../src/model/vwlmm';
import { cpu, NativeBuffer } from '../src/native';
import { Generator } from '../src/random';
import { applyTrainable } from '../src/train/trainer';
import { initOnDevice, sizeConfig } from './model_sizes';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['layers', 'batch', 'text', 'image', 'lora', 'residual-dtype', 'd', 'ff', 'heads', 'vocab'], ['no-grad-ckpt']);

const classOf = (bytes: number): number => {
  const b = Math.max(1, bytes);
  if (b <= 2 ** 20) return Math.ceil(b / 512) * 512;
  let p = 2 ** 20;
  while (p * 2 < b) p *= 2;
  const step = p / 4;
  return Math.ceil(b / step) * step;
};

// The trace: every NativeBuffer made through the addon, by class; the op last called when the live peak was reached.
const addon = cpu() as unknown as { NativeBuffer: new (bytes: number, zero?: boolean) => NativeBuffer; callOp: (...xs: unknown[]) => unknown };
const live = new Map<number, number>(), most = new Map<number, number>();
let liveBytes = 0, livePeak = 0, atPeak = new Map<number, number>(), lastOp = '', peakOp = '';
const Base = addon.NativeBuffer;
addon.NativeBuffer = function traced(bytes: number, zero?: boolean) {
  const b = new Base(bytes, zero), c = classOf(bytes);
  const n = (live.get(c) ?? 0) + 1;
  live.set(c, n);
  most.set(c, Math.max(most.get(c) ?? 0, n));
  liveBytes += c;
  if (liveBytes > livePeak) [livePeak, atPeak, peakOp] = [liveBytes, new Map(live), lastOp];
  const dispose = b.dispose.bind(b);
  let done = false;
  Object.defineProperty(b, 'dispose', { value: () => {
    if (!done) {
      done = true;
      live.set(c, live.get(c)! - 1);
      liveBytes -= c;
    }
    dispose();
  } });
  return b;
} as unknown as typeof Base;
addon.NativeBuffer.prototype = Base.prototype;
const call = addon.callOp.bind(addon);
addon.callOp = (...xs: unknown[]) => ((lastOp = String(xs[0])), call(...xs));

// sizes and counts: integers >= 1 (LoRA is always on here, so --lora too)
const num = (n: string, d: number) => numArg(n, d, { integer: true, min: 1 });
const L = num('layers', 1), B = num('batch', 2), textTokens = num('text', 2000), image = num('image', 112);
const r = num('lora', 128), residual = parseComputeDtype('--residual-dtype', arg('residual-dtype', 'bf16'));
const s = {
  vision: { d: 256, ff: 1024, L: 2, heads: 4, image, patch: 14 },
  text: { d: num('d', 4096), ff: num('ff', 11008), L, heads: num('heads', 32), V: num('vocab', 2000) },
  batch: B, textTokens,
};
const model = VwLmm.create(sizeConfig(s as Parameters<typeof sizeConfig>[0]), 0, { device: 'cpu', uninitialized: true, linearDtype: 'bfloat16' });
initOnDevice(model.namedParameters(), 0.02, new Generator(0));
applyLora(model, { r, alpha: 2 * r, dropout: 0.05 });
applyTrainable(model, { projector: true, vmHead: true, lora: true });
model.gradientCheckpointing = !process.argv.includes('--no-grad-ckpt');
model.residualDtype = residual;

const gen = new Generator(0), patches = (image / 14) ** 2, prefix = 4, question = Math.max(1, Math.floor(textTokens / 4));
const samples = Array.from({ length: B }, () => {
  const text = Array.from({ length: textTokens }, () => gen.int(s.text.V - 1));
  const inputIds = [...text.slice(0, prefix), -200, ...text.slice(prefix)];
  return { inputIds, labels: inputIds.map((t, i) => (i <= prefix + question ? -100 : t)), image: gen.normals(3 * image * image) };
});
const b = collate(samples, { padId: 0, numPatches: patches });
const batch: ModelBatch = { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
const opt = new AdamW(model.parameters().filter((p) => p.requiresGrad), { lr: 1e-5 });

const t0 = Date.now();
const before = liveBytes;
let afterForward = 0, loss = 0, gradSq = 0;
scope(() => {
  autocast('bfloat16', () => scope(() => {
    const out = model.loss(batch);
    afterForward = liveBytes;
    out.loss.backward();
    loss = out.loss.item();
  }));
  for (const p of model.parameters()) if (p.requiresGrad && p.grad) gradSq += (p.grad.toArray() as Float32Array).reduce((a, v) => a + v * v, 0);
  opt.step();
  zeroGrad(model.parameters());
});
const GiB = 2 ** 30, round = (x: number) => Math.round(x * 1000) / 1000;
let reserved = 0;
for (const [c, n] of most) reserved += c * n;
const classes = [...atPeak].filter(([, n]) => n > 0).sort((x, y) => y[0] * y[1] - x[0] * x[1]).slice(0, 8).map(([c, n]) => `${n} x ${(c / 2 ** 20).toFixed(1)} MiB`);
console.log(JSON.stringify({
  layers: L, tokens: b.B * b.T, d: s.text.d, ff: s.text.ff, vocab: s.text.V, lora: r, residualDtype: residual, gradientCheckpointing: model.gradientCheckpointing,
  modelGiB: round(before / GiB), afterForwardGiB: round(afterForward / GiB), livePeakGiB: round(livePeak / GiB), reservedPeakGiB: round(reserved / GiB),
  peakOp, classesAtPeak: classes, cpuPeakReservedGiB: round(memoryStats().cpu.peakReservedBytes / GiB), loss, gradSq, seconds: (Date.now() - t0) / 1000,
}));
model.dispose();
opt.dispose();
