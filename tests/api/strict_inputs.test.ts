// What a PyTorch user types and gets wrong is named, not ignored or left to a native message (from an API trial):
// unknown option keys (torch's spellings too), wrong dtypes and shapes at the F layer, batches with image positions
// but no images, generate's options, state dicts whose data do not fill their shape; and LoRA's dropout runs only
// while its adapter trains, so evaluating an adapted model is deterministic.
import { describe, expect, it } from 'vitest';
import { AdamW, F, fused, noGrad, scope, Tensor } from '../../src';
import { applyLora } from '../../src/model/lora';
import { VwLmm } from '../../src/model/vwlmm';
import { Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from '../train/support/tiny';

const t = (a: number[], shape = [a.length], dtype: 'float32' | 'bfloat16' = 'float32') => Tensor.fromArray(Float32Array.from(a), shape, { dtype });

describe('strict inputs', () => {
  it('unknown option keys are refused, with the camelCase name for a torch spelling', () => {
    scope(() => {
      const w = t([1, 2]);
      w.requiresGrad = true;
      expect(() => new AdamW([w], { lr: 1e-3, weight_decay: 0 } as never)).toThrow("AdamW: unknown option 'weight_decay' (did you mean 'weightDecay'?); known: lr, betas, eps, weightDecay");
      expect(() => new AdamW([{ params: [w], lr: 1e-2 }] as never, { lr: 1e-3 })).toThrow("AdamW: unknown key of parameter group 0 'lr'; known: params, lrScale, weightDecay");
      expect(() => new AdamW([w], undefined as never)).toThrow('AdamW: expected an object with lr for options but received undefined');
      const h = t([0.1, 0.2, 0.3, 0.4], [2, 2]), wv = t([1, 0, 0, 1, 1, 1], [3, 2]), ids = Tensor.fromArray(Int32Array.from([0, 2]), [2]);
      expect(() => fused.linearCrossEntropy(h, wv, ids, { label_smoothing: 0.1 } as never)).toThrow("fused.linearCrossEntropy: unknown option 'label_smoothing' (did you mean 'labelSmoothing'?)");
      expect(() => fused.visualWordKL(h, wv, h, wv, { temprature: 2 } as never)).toThrow("fused.visualWordKL: unknown option 'temprature'");
    });
    const { tokenizer, samples, makeBatch } = tinyData(4);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 1);
    const stages = tinyStages(makeBatch, samples.length, 1);
    expect(() => new Trainer(m, stages, { seed: 0, max_grad_norm: 0 } as never)).toThrow("Trainer: unknown option 'max_grad_norm'");
    expect(() => new Trainer(m, [{ ...stages[0], trainable: { llms: true } as never }], { seed: 0 })).toThrow("Trainer: stage 'a': unknown part of trainable 'llms' (did you mean 'llm'?); known: visionTower, projector, llm, vmHead, lora");
    expect(() => new Trainer(m, [{ ...stages[0], trainable: {} }], { seed: 0 })).toThrow("Trainer: stage 'a': trains nothing");
    expect(() => new Trainer(m, [{ ...stages[0], batchSize: 5 }], { seed: 0 })).toThrow("Trainer: stage 'a': one optimizer step takes 5 samples (batchSize 5 x gradAccum 1) but the stage has 4: some would appear twice in one step");
    expect(() => new Trainer(m, [{ ...stages[0], batch_size: 2 } as never], { seed: 0 })).toThrow("Trainer: stage 'a': unknown key 'batch_size' (did you mean 'batchSize'?)");
    m.dispose();
  });

  it('F names a dtype its kernel does not take, and mixed dtypes, instead of a native message', () => {
    scope(() => {
      const b = t([1, 2, 3], [3], 'bfloat16'), f = t([1, 2, 3]);
      expect(() => F.softmax(b)).toThrow(/^F\.softmax: expected a float32 tensor for x but received/);
      expect(() => F.sum(b)).toThrow(/^F\.sum: expected a float32 tensor for x/);
      expect(() => F.add(f, b)).toThrow('F.add: a is float32 but b is bfloat16 (one float dtype for both: cast one first)');
      expect(() => F.concat([f, b])).toThrow(/^F\.concat: expected a float32 tensor for xs\[1\]/);
    });
  });

  it('a batch with image positions but no images, generate options and short state-dict data are errors', () => {
    const { tokenizer, samples, makeBatch } = tinyData(2);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 1);
    const batch = makeBatch([0, 1]);
    expect(() => scope(() => m.loss({ ...batch, pixelValues: null }))).toThrow(/^VwLmm: the batch has \d+ image positions but no images \(pixelValues\)/);
    const prompt = { tokenIds: Int32Array.from(samples[0].inputIds), imagePositions: Int32Array.from([1]), pixelValues: null };
    expect(() => m.generate([prompt], { maxNewTokens: 2 })).toThrow('VwLmm.generate: prompt 0: image features and image tokens do not match: 0 image(s) (pixelValues null) need 0 image positions (25 per image), got 1');
    const text = { tokenIds: Int32Array.from([1, 2, 3]), imagePositions: new Int32Array(0), pixelValues: null };
    expect(() => m.generate([text], { maxNewTokens: 2.5 })).toThrow('VwLmm.generate: maxNewTokens must be an integer >= 0, got 2.5');
    expect(() => m.generate([text], { maxNewTokens: 2, temperature: -1 })).toThrow('VwLmm.generate: temperature must be a number >= 0');
    expect(() => m.generate([text], { maxNewTokens: 2, topP: 0 })).toThrow('VwLmm.generate: topP must be in (0, 1], got 0');
    const [name, p] = [...m.namedParameters()][0];
    expect(() => m.loadStateDict(new Map([[name, { dtype: 'float32', shape: [...p.shape], data: new Float32Array(1) }]]), { strict: false }))
      .toThrow(`${name} has shape [${p.shape.join(', ')}] (${p.size} values) but its data holds 1`);
    m.dispose();
  });

  it("LoRA dropout runs only while the adapter trains: a frozen adapter's loss is the same every time, with or without noGrad", () => {
    const { tokenizer, makeBatch } = tinyData(2);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 1);
    applyLora(m, { r: 2, alpha: 8, dropout: 0.5, seed: 3 });
    for (const [n, p] of m.namedParameters()) if (n.includes('lora_B')) scope(() => p.buffer.write(new Float32Array(p.size).fill(0.3)));
    const batch = makeBatch([0, 1]);
    const loss = () => scope(() => m.loss(batch).loss.item());
    m.setTrainable(false);
    const frozen = [loss(), loss(), noGrad(loss)];
    expect(new Set(frozen).size).toBe(1);
    // trained (the adapters require grad): dropout draws new masks, so two forwards differ
    for (const [n, p] of m.namedParameters()) if (n.includes('lora_')) p.requiresGrad = true;
    const a = loss(), b = loss();
    expect(a).not.toBe(b);
    m.dispose();
  });
});
