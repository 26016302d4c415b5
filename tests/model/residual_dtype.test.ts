// The LLM's residual stream in bf16 (LlamaDecoder.residualDtype / VwLmm.residualDtype: a model loaded in bf16, as
// LLaVA's LoRA recipe and transformers with torch_dtype=bfloat16 hold it). Under autocast('bfloat16') the stream, the
// norms' outputs and the layer outputs are bf16 and the checkpoints of gradient checkpointing take half the bytes;
// the loss and gradients track float32 within bf16's rounding; checkpointing stays bit-exact; float32 compute and
// generation are unchanged.
import { describe, expect, it } from 'vitest';
import { autocast, cudaAvailable, memoryStats, profileOps, scope } from '../../src';
import { applyLora, loraParameters } from '../../src/model/lora';
import { VwLmm } from '../../src/model/vwlmm';
import { applyTrainable, Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData } from '../train/support/tiny';
import { l2Err, relErr } from '../support/compare';
import { runSeed } from '../support/random';

const { tokenizer, makeBatch } = tinyData(6);
const batch = makeBatch([0, 1, 2, 3, 4, 5]);
const config = (() => {
  const c = tinyConfig(tokenizer.vocabSize);
  return { ...c, llm: { ...c.llm, numLayers: 6, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 48 } };
})();

/** A LoRA model as LLaVA's recipe trains it: adapters, projector and vm_head trainable; the rest frozen. */
function loraModel(device: 'cpu' | 'cuda' = 'cpu'): VwLmm {
  const model = VwLmm.create(config, 11, { device });
  applyLora(model, { r: 4, alpha: 8, seed: runSeed });
  applyTrainable(model, { projector: true, vmHead: true, lora: true });
  // lora_B != 0, so that lora_A gets a gradient too
  let k = 0;
  for (const [n, p] of loraParameters(model)) if (n.endsWith('lora_B.weight')) p.buffer.write(Float32Array.from({ length: p.size }, () => 0.05 * Math.sin(++k * 0.7 + runSeed)));
  return model;
}

/** One forward + backward: the loss, every trainable gradient, the ops run and the bytes held after the forward. */
function step(model: VwLmm, dtype: 'bfloat16' | 'float32') {
  for (const p of model.parameters()) p.grad?.dispose(), (p.grad = null);
  const before = memoryStats()[model.device === 'cpu' ? 'cpu' : 'cuda']!.liveBytes;
  let heldAfterForward = 0;
  profileOps(true);
  const loss = scope(() => autocast(dtype, () => {
    const out = model.loss(batch);
    heldAfterForward = memoryStats()[model.device === 'cpu' ? 'cpu' : 'cuda']!.liveBytes - before;
    out.loss.backward();
    return out.loss.item();
  }));
  const ops = profileOps(false).map((e) => e.key);
  const grads = new Map([...model.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, Array.from(p.grad!.toArray())]));
  return { loss, grads, ops, heldAfterForward };
}

describe(`a bf16 residual stream (seed ${runSeed})`, () => {
  it('under autocast(bf16): the stream and norms run in bf16, and loss and gradients track the float32 stream and float32 compute', () => {
    const model = loraModel();
    const f32 = step(model, 'float32'), b32 = step(model, 'bfloat16');
    model.residualDtype = 'bfloat16';
    const b16 = step(model, 'bfloat16');
    expect(b16.ops.some((k) => k.startsWith('cpu rms_norm_forward bf16['))).toBe(true);
    expect(b16.ops.some((k) => k.startsWith('cpu rms_norm_backward bf16['))).toBe(true);
    expect(b16.ops.some((k) => k.startsWith('cpu axpby bf16['))).toBe(true);
    expect(b32.ops.some((k) => k.startsWith('cpu rms_norm_forward bf16['))).toBe(false);
    // over 25 seeds: the loss 3e-5-7e-4 from the float32 stream's and 8e-5-8e-4 from float32 compute's (relative);
    // gradients normwise 0.9-1.3% from float32 compute's, cosine >= 0.99992
    expect(Math.abs(b16.loss - b32.loss) / f32.loss).toBeLessThan(5e-3);
    expect(Math.abs(b16.loss - f32.loss) / f32.loss).toBeLessThan(5e-3);
    // gradients by direction and normwise over all trainable tensors; a lost term, wrong cast or sign in the bf16
    // backward is far outside these
    const flat = (g: Map<string, number[]>) => [...g.values()].flat();
    expect(b16.grads.size).toBe(f32.grads.size);
    const e = l2Err(flat(b16.grads), flat(f32.grads));
    expect(e.cosine).toBeGreaterThan(0.999);
    expect(e.rel).toBeLessThan(0.05);
    model.dispose();
  });

  it('gradient checkpointing keeps half the bytes per layer and stays bit-exact; float32 compute is untouched', () => {
    const model = loraModel();
    model.residualDtype = 'bfloat16';
    const plain = step(model, 'bfloat16');
    model.gradientCheckpointing = true;
    const ckpt16 = step(model, 'bfloat16');
    expect(ckpt16.loss).toBe(plain.loss);
    for (const [n, g] of plain.grads) expect(ckpt16.grads.get(n), n).toEqual(g);
    model.residualDtype = 'float32';
    const ckpt32 = step(model, 'bfloat16');
    // what is held between forward and backward, per [N, D] = [B*T, D] tensor: the L layers' inputs (layer 0's: the
    // spliced embeddings, or their bf16 cast) and the final norm's float32 input; so L N D 2 bytes less with the bf16
    // stream (measured exactly that): 32 x 256 MiB at 7B and 16 x 2048 tokens. It takes VwLmm.loss's scope, which
    // frees what no backward reads (the last layer's bf16 output, the final hidden states) before the backward:
    // without it, (L - 3) N D 2
    const { numLayers, hiddenSize } = config.llm, rows = batch.B * batch.T;
    expect(ckpt32.heldAfterForward - ckpt16.heldAfterForward).toBeGreaterThanOrEqual(numLayers * rows * hiddenSize * 2);
    // float32 compute: the setting changes nothing, bit for bit
    model.gradientCheckpointing = false;
    const f32 = step(model, 'float32');
    model.residualDtype = 'bfloat16';
    const f32b = step(model, 'float32');
    expect(f32b.loss).toBe(f32.loss);
    for (const [n, g] of f32.grads) expect(f32b.grads.get(n), n).toEqual(g);
    expect(f32b.ops.some((k) => k.includes('bf16['))).toBe(false);
    model.dispose();
  });

  it('generation keeps its float32 stream; a bad dtype is refused by name', () => {
    const model = loraModel();
    const prompt = { tokenIds: batch.tokenIds.slice(0, 12), imagePositions: new Int32Array(0), pixelValues: null };
    const run = () => model.generate([prompt], { maxNewTokens: 4, temperature: 0, dtype: 'bfloat16' });
    const want = run();
    model.residualDtype = 'bfloat16';
    expect(run()).toEqual(want);
    expect(() => { model.residualDtype = 'float16' as never; }).toThrow(/LlamaDecoder.residualDtype.*'bf16' or 'fp32'.*float16/);
    expect(model.residualDtype).toBe('bfloat16');
    // the Trainer will not take a bf16 stream it would run in float32
    const stage = { name: 's', size: 6, makeBatch, steps: 1, batchSize: 2, lr: 1e-3, trainable: { visionTower: false, projector: true, llm: false, vmHead: true } };
    expect(() => new Trainer(model, [stage], { seed: 0, dtype: 'float32', residualDtype: 'bfloat16' }))
      .toThrow(/Trainer: expected 'float32' with float32 compute \(a bf16 stream needs dtype 'bfloat16'\) for residualDtype but received 'bfloat16'/);
    expect(new Trainer(model, [stage], { seed: 0, dtype: 'bfloat16', residualDtype: 'float32' }).model.residualDtype).toBe('float32');
    model.dispose();
  });

  // For the first GPU session: the bf16 stream on CUDA (rms_norm, axpby and the linears' bf16 outputs there).
  it.skipIf(!cudaAvailable())('on CUDA a LoRA step with a bf16 stream agrees with the CPU (loss, gradients)', () => {
    const run = (device: 'cpu' | 'cuda') => {
      const model = loraModel(device);
      model.residualDtype = 'bfloat16';
      model.gradientCheckpointing = true;
      const r = step(model, 'bfloat16');
      model.dispose();
      return r;
    };
    const cpu = run('cpu'), cuda = run('cuda');
    expect(Math.abs(cuda.loss - cpu.loss) / cpu.loss).toBeLessThan(1e-2);
    expect(cuda.ops.some((k) => k.startsWith('cuda rms_norm_forward bf16['))).toBe(true);
    for (const [n, g] of cpu.grads) expect(relErr(cuda.grads.get(n)!, g), `grad ${n}`).toBeLessThan(2e-2);
  });
});
