// What a PyTorch user types and gets wrong is named, not ignored or left to a native message (from an API trial):
// unknown option keys (torch's spellings too), wrong dtypes and shapes at the F layer, batches with image positions
// but no images, generate's options, state dicts whose data do not fill their shape; and LoRA's dropout runs only
// while its adapter trains, so evaluating an adapted model is deterministic.
import { describe, expect, it } from 'vitest';
import { AdamW, F, fused, Generator, noGrad, scope, Tensor } from '../../src';
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
      // (the kernel's own "[copy_2d] src must be float32" named neither the function nor the argument)
      expect(() => F.slice(b, 0, 0, 1)).toThrow(/^F\.slice: expected a float32 tensor for x but received bfloat16/);
      expect(() => F.gatherRows(b, Tensor.fromArray(Int32Array.from([0]), [1]))).toThrow(/^F\.gatherRows: expected a float32 tensor for src but received bfloat16/);
    });
  });

  it('F refuses a bad argument with an error that names the function and the argument', () => {
    scope(() => {
      const x = t([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]), w = t([1, 1, 1, 1]), b = t([0, 0, 0, 0]), gen = new Generator(1);
      const int = Tensor.fromArray(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), [2, 4]), ids = Tensor.fromArray(Int32Array.from([0, 1]), [2]);
      const wv = t(new Array(20).fill(0.1), [5, 4]), e = t(new Array(10).fill(0.2), [5, 2]);
      const pixels = Tensor.zeros([1, 3, 4, 4]);
      pixels.requiresGrad = true;
      // [call, the function its error names, the argument it names]; the fused ops' shape checks are fused.*'s, run
      // under F's name (a user who called F.pseudoImageFeatures is not sent looking for fused.pseudoImageFeatures)
      const cases: [string, () => unknown, string, string][] = [
        ['F.mul shapes', () => F.mul(x, t([1, 2, 3], [1, 3])), 'F.mul', 'b'],
        ['F.mul dtypes', () => F.mul(x, t(new Array(8).fill(1), [2, 4], 'bfloat16')), 'F.mul', 'b'],
        ['F.mul int32', () => F.mul(int, x), 'F.mul', 'a'],
        ['F.mul a number', () => F.mul(x, 2 as never), 'F.mul', 'b'],
        ['F.attention head size 0', () => F.attention(Tensor.zeros([1, 2, 2, 0]), Tensor.zeros([1, 2, 2, 0]), Tensor.zeros([1, 2, 2, 0])), 'F.attention', 'q'],
        ['F.mul a look-alike', () => F.mul(x, { shape: [2, 4], dtype: 'float32', device: 'cpu' } as never), 'F.mul', 'b'],
        ['F.addBroadcast trailing dims', () => F.addBroadcast(x, t([1, 2])), 'F.addBroadcast', 'y'],
        // y of more dims than x, whose last dims match y's first: broadcast to [4, 2, 4] by torch, never [2, 4]
        ['F.addBroadcast y [4, 1, 1]', () => F.addBroadcast(x, t([1, 2, 3, 4], [4, 1, 1])), 'F.addBroadcast', 'y'],
        ['F.addBroadcast y [4, 1] for x [4]', () => F.addBroadcast(w, t([1, 2, 3, 4], [4, 1])), 'F.addBroadcast', 'y'],
        ['F.addBroadcast bf16 y', () => F.addBroadcast(x, t([1, 2, 3, 4], [4], 'bfloat16')), 'F.addBroadcast', 'y'],
        ['F.addBroadcast 0-D x', () => F.addBroadcast(t([1], []), t([1], [])), 'F.addBroadcast', 'x'],
        ['F.dropout p = 1', () => F.dropout(x, 1, gen), 'F.dropout', 'p'],
        ['F.dropout p < 0', () => F.dropout(x, -0.1, gen), 'F.dropout', 'p'],
        ['F.dropout p NaN', () => F.dropout(x, NaN, gen), 'F.dropout', 'p'],
        ['F.dropout p a string', () => F.dropout(x, '0.5' as never, gen), 'F.dropout', 'p'],
        ['F.dropout no generator (p = 0 too)', () => F.dropout(x, 0, undefined as never), 'F.dropout', 'generator'],
        ['F.cast float16', () => F.cast(x, 'float16' as never), 'F.cast', 'dtype'],
        ['F.cast int32', () => F.cast(x, 'int32' as never), 'F.cast', 'dtype'],
        ['F.rmsNorm eps < 0', () => F.rmsNorm(x, w, -1e-6), 'F.rmsNorm', 'eps'],
        ['F.rmsNorm eps NaN', () => F.rmsNorm(x, w, NaN), 'F.rmsNorm', 'eps'],
        ['F.rmsNorm w [5]', () => F.rmsNorm(x, t([1, 1, 1, 1, 1]), 1e-6), 'F.rmsNorm', 'w'],
        ['F.rmsNorm w [1, 4]', () => F.rmsNorm(x, t([1, 1, 1, 1], [1, 4]), 1e-6), 'F.rmsNorm', 'w'],
        ['F.layerNorm eps Infinity', () => F.layerNorm(x, w, b, Infinity), 'F.layerNorm', 'eps'],
        ['F.layerNorm eps < 0', () => F.layerNorm(x, w, b, -1), 'F.layerNorm', 'eps'],
        ['F.layerNorm w [3]', () => F.layerNorm(x, t([1, 1, 1]), b, 1e-5), 'F.layerNorm', 'w'],
        ['F.layerNorm b [3]', () => F.layerNorm(x, w, t([0, 0, 0]), 1e-5), 'F.layerNorm', 'b'],
        ['F.layerNorm no b', () => F.layerNorm(x, w, undefined as never, 1e-5), 'F.layerNorm', 'b'],
        // gradients reach the weight only, so pixels that require one are refused rather than left without
        ['F.patchEmbed pixels requiring grad', () => F.patchEmbed(pixels, Tensor.zeros([5, 3, 2, 2])), 'F.patchEmbed', 'images'],
        ['F.pseudoImageFeatures e int32', () => F.pseudoImageFeatures(x, wv, Tensor.zeros([5, 2], { dtype: 'int32' })), 'F.pseudoImageFeatures', 'e'],
        ['F.pseudoImageFeatures x null', () => F.pseudoImageFeatures(null as never, wv, e), 'F.pseudoImageFeatures', 'x'],
        ['F.pseudoImageFeatures e rows', () => F.pseudoImageFeatures(x, wv, t([1, 2, 3, 4], [2, 2])), 'F.pseudoImageFeatures', 'e'],
        ['F.pseudoImageFeatures wVm hidden size', () => F.pseudoImageFeatures(x, t(new Array(15).fill(0), [5, 3]), e), 'F.pseudoImageFeatures', 'wVm'],
        ['F.linearCrossEntropy w hidden size', () => F.linearCrossEntropy(x, t(new Array(15).fill(0), [5, 3]), ids), 'F.linearCrossEntropy', 'w'],
        ['F.linearCrossEntropy targets rows', () => F.linearCrossEntropy(x, wv, Tensor.fromArray(Int32Array.from([0]), [1])), 'F.linearCrossEntropy', 'targets'],
        ['F.visualWordKL wVm vocabulary', () => F.visualWordKL(x, wv, x, t(new Array(16).fill(0), [4, 4])), 'F.visualWordKL', 'wVm'],
        ['F.visualWordKL x 1-D', () => F.visualWordKL(x, wv, w, wv), 'F.visualWordKL', 'x'],
        ['F.pseudoImageFeatures x 3-D', () => F.pseudoImageFeatures(F.reshape(x, [1, 2, 4]), wv, e), 'F.pseudoImageFeatures', 'x'],
        // reduction 'none' has no scalar to differentiate: fused.* gives the per-row losses
        ["F.linearCrossEntropy reduction 'none'", () => F.linearCrossEntropy(x, wv, ids, { reduction: 'none' }), 'F.linearCrossEntropy', 'reduction'],
        ["F.visualWordKL reduction 'none'", () => F.visualWordKL(x, wv, x, wv, { reduction: 'none' }), 'F.visualWordKL', 'reduction'],
      ];
      // a look-alike is said to be one, not "a float32 cpu tensor" (which would contradict "expected a Tensor")
      expect(() => F.mul(x, { shape: [2, 4], dtype: 'float32', device: 'cpu' } as never)).toThrow(/received an object that is not a Tensor \(shape \[2, 4\], dtype float32, device cpu\)/);
      // under noGrad nothing is recorded: pixels that require grad are fine there, as in torch
      expect(noGrad(() => F.patchEmbed(pixels, Tensor.zeros([5, 3, 2, 2])).shape)).toEqual([1, 4, 5]);
      for (const [label, call, where, arg] of cases) {
        let err: unknown = null;
        try {
          call();
        } catch (e) {
          err = e;
        }
        expect(err, `${label}: returned normally`).toBeInstanceOf(Error);
        const { message } = err as Error;
        expect(err instanceof TypeError || err instanceof RangeError, `${label}: ${message}`).toBe(true);
        expect(message.startsWith(`${where}: `), `${label}: ${message}`).toBe(true);
        // named where the message names a value ('expected a Tensor for b', 'w [5] must', 'and wVm must'): not any 'a'
        expect(message, label).toMatch(new RegExp(`(: |for |and |but )${arg} |expected ${arg} to `));
      }
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
