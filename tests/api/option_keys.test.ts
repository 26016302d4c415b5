// Option objects are checked, not read selectively (from an API trial): a misspelt key ({ casual: true } for causal,
// which left attention non-causal without a word) is refused, naming the key, the nearest known one and all known
// ones. (The image functions' and threads' options: tests/data/image_threads.test.ts.)
import { describe, expect, it } from 'vitest';
import { collate, F, Generator, nn, questionsFor, scope, sortOfClevrSplit, Tensor, writeSortOfClevr } from '../../src';
import { generateScene } from '../../src/data/sort_of_clevr';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('option-keys');

describe('unknown option keys', () => {
  it('F and Tensor refuse them by name, with the nearest known key', () => {
    scope(() => {
      const q = Tensor.zeros([1, 2, 1, 2]);
      expect(() => F.attention(q, q, q, { casual: true } as never)).toThrow("F.attention: unknown option 'casual' (did you mean 'causal'?); known: causal, keyMask, scale");
      expect(() => Tensor.fromArray(new Float32Array(1), [1], { dtyp: 'int32' } as never)).toThrow("Tensor.fromArray: unknown option 'dtyp' (did you mean 'dtype'?); known: device, dtype");
      expect(() => Tensor.zeros([1], { requires_grad: true } as never)).toThrow("Tensor.zeros: unknown option 'requires_grad'; known: device, dtype");
      expect(() => Tensor.empty([1], { devise: 'cpu' } as never)).toThrow("Tensor.empty: unknown option 'devise' (did you mean 'device'?)");
      const a = Tensor.zeros([2, 2]);
      expect(() => F.matmul(a, a, { transpose_b: true } as never)).toThrow("F.matmul: unknown option 'transpose_b'; known: transA, transB");
      expect(() => F.linear(a, a, null, { bf16_output: true } as never)).toThrow("F.linear: unknown option 'bf16_output' (did you mean 'bf16Output'?)");
      expect(() => F.linears(a, [a], null, { out: 1 } as never)).toThrow("F.linears: unknown option 'out'; known: bf16Output");
      const ids = Tensor.fromArray(Int32Array.from([0, 1]), [2]);
      // F sets the fused op's gradient options itself: passing one is refused, not silently overridden
      expect(() => F.linearCrossEntropy(a, a, ids, { grad: false } as never)).toThrow("F.linearCrossEntropy: unknown option 'grad'; known: chunkRows, workspaceBudget, ignoreIndex, reduction, labelSmoothing, zLossWeight");
      expect(() => F.linearCrossEntropy(a, a, ids, { label_smoothing: 0.1 } as never)).toThrow("(did you mean 'labelSmoothing'?)");
      expect(() => F.visualWordKL(a, a, a, a, { deviceLoss: true } as never)).toThrow("F.visualWordKL: unknown option 'deviceLoss'");
      // the known keys still work
      expect(F.attention(q, q, q, { causal: true, scale: 1 }).shape).toEqual([1, 2, 1, 2]);
      expect(Tensor.zeros([1], { device: 'cpu', dtype: 'int32' }).dtype).toBe('int32');
    });
  });

  it('the data functions refuse them by name', () => {
    const sample = { inputIds: [1], labels: [1] };
    expect(() => collate([sample], { padId: 0, numPatches: 1, max_length: 3 } as never)).toThrow("collate: unknown option 'max_length' (did you mean 'maxLength'?); known: padId, imageTokenIndex, numPatches, maxLength, pixelValues");
    expect(() => collate([sample], null as never)).toThrow('collate: expected an object { padId, numPatches, imageTokenIndex?, maxLength?, pixelValues? } for options but received null');
    const dir = tmp();
    expect(() => writeSortOfClevr(dir, { tset: 3 } as never)).toThrow("writeSortOfClevr: unknown option 'tset' (did you mean 'test'?); known: train, test, seed, nonRelational, relational, writer");
    expect(() => writeSortOfClevr(dir, { train: 0, test: 0, writer: {} as never })).toThrow('writeSortOfClevr: expected a SceneImageWriter for writer');
    expect(() => sortOfClevrSplit(new Generator(0), 0, { relation: 1 } as never)).toThrow("sortOfClevrSplit: unknown option 'relation'");
    expect(() => questionsFor(generateScene(new Generator(0)), new Generator(1), { non_relational: 1 } as never)).toThrow("questionsFor: unknown option 'non_relational' (did you mean 'nonRelational'?)");
  });

  it('nn refuses them by name', () => {
    const init = { generator: new Generator(0) };
    expect(() => new nn.Linear(2, 2, { bias: false, std: 0.1, init, dtype: 'bfloat16' } as never)).toThrow("Linear: unknown option 'dtype'; known: bias, std, init");
    expect(() => new nn.Embedding(2, 2, { std: 0.1, init, padding_idx: 0 } as never)).toThrow("Embedding: unknown option 'padding_idx'; known: std, init");
    const lin = new nn.Linear(2, 2, { bias: false, std: 0.1, init });
    try {
      expect(() => lin.loadStateDict(new Map(), { strict: false, prefx: 'a.' } as never)).toThrow("loadStateDict: unknown option 'prefx' (did you mean 'prefix'?); known: strict, prefix");
      expect(() => nn.storeFrozenWeights(lin, 'bfloat16', { exclude_modules: [] } as never)).toThrow("storeFrozenWeights: unknown option 'exclude_modules'; known: exclude");
      expect(lin.loadStateDict(new Map(), { strict: false }).missing).toEqual(['weight']);
    } finally {
      lin.dispose();
    }
    // a module's forward too: transformers' attention_mask was dropped without a word (the padding then attended)
    const cfg = { vocabSize: 11, hiddenSize: 8, intermediateSize: 12, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 1e4, maxPositionEmbeddings: 32, initializerRange: 0.2 };
    const lm = new nn.LlamaForCausalLM(cfg, init);
    const tower = new nn.ClipVisionTransformer({ hiddenSize: 8, intermediateSize: 12, numLayers: 2, numHeads: 2, imageSize: 4, patchSize: 2, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 }, init);
    try {
      scope(() => {
        const ids = Tensor.fromArray(Int32Array.from([0, 1, 2]), [1, 3]), mask = Tensor.fromArray(Int32Array.from([0, 1, 1]), [1, 3]);
        expect(() => lm.forward(ids, { attentionMask: mask } as never)).toThrow("LlamaForCausalLM.forward: unknown option 'attentionMask' (did you mean 'keyMask'?); known: keyMask, cache, outputHiddenStates");
        expect(() => lm.model.forward(Tensor.zeros([1, 3, 8]), { attention_mask: mask } as never)).toThrow("LlamaDecoder.forward: unknown option 'attention_mask' (did you mean 'keyMask'?)");
        expect(() => lm.forward(ids, { past_key_values: null } as never)).toThrow("(did you mean 'cache'?)");
        expect(() => tower.forward(Tensor.zeros([1, 3, 4, 4]), { select_layer: -2 } as never)).toThrow("ClipVisionTransformer.forward: unknown option 'select_layer'; known: upToLayer");
        // the inputs' ranks, named before any kernel sees them
        expect(() => lm.forward(Tensor.fromArray(Int32Array.from([0, 1]), [2]))).toThrow('LlamaForCausalLM.forward: expected an int32 tensor [B, T] (token ids) for ids but received int32 cpu tensor of shape [2]');
        expect(() => lm.model.forward(Tensor.zeros([3, 8]))).toThrow('LlamaDecoder.forward: expected a float tensor [B, T, 8] (token embeddings) for inputsEmbeds but received float32 cpu tensor of shape [3, 8]');
        expect(lm.forward(ids, { keyMask: mask }).logits.shape).toEqual([1, 3, 11]);
      });
    } finally {
      lm.dispose();
      tower.dispose();
    }
  });

  it('nn modules check a config given in TypeScript when built, naming the field', () => {
    const init = { generator: new Generator(0) };
    const cfg = { vocabSize: 11, hiddenSize: 8, intermediateSize: 12, numLayers: 1, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 1e4, maxPositionEmbeddings: 32, initializerRange: 0.2 };
    const bad: [object, string][] = [
      [{ numKvHeads: 1.5 }, 'LlamaDecoder: numKvHeads must be a positive integer, got 1.5'],
      [{ numKvHeads: 0 }, 'LlamaDecoder: numKvHeads must be a positive integer, got 0'],
      [{ numHeads: 2, numKvHeads: 3 }, 'LlamaDecoder: numHeads 2 must be a multiple of numKvHeads 3 (grouped-query attention)'],
      [{ rmsNormEps: NaN }, 'LlamaDecoder: rmsNormEps must be a number > 0, got NaN'],
      [{ hiddenSize: 6, numHeads: 2 }, 'LlamaDecoder: hiddenSize 6 must split into 2 heads of an even size (RoPE rotates pairs)'],
      [{ num_layers: 2 }, "LlamaDecoder: unknown key 'num_layers' (did you mean 'numLayers'?)"],
      [{ slidingWindow: 0 }, 'LlamaDecoder: slidingWindow must be a positive integer, got 0'],
    ];
    for (const [change, message] of bad) expect(() => new nn.LlamaForCausalLM({ ...cfg, ...change } as never, init)).toThrow(message);
    const vision = { hiddenSize: 8, intermediateSize: 12, numLayers: 2, numHeads: 2, imageSize: 4, patchSize: 2, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' as const, initializerRange: 0.02, initializerFactor: 1 };
    expect(() => new nn.ClipVisionTransformer({ ...vision, patchSize: 3 }, init)).toThrow('ClipVisionTransformer: imageSize 4 must be a multiple of patchSize 3 (the patch grid)');
    expect(() => new nn.ClipVisionTransformer({ ...vision, hiddenAct: 'relu' } as never, init)).toThrow('ClipVisionTransformer: hiddenAct "relu" is not supported (quick_gelu | gelu)');
    expect(() => new nn.ClipVisionModel(null as never, init)).toThrow('ClipVisionTransformer: the config must be an object, got null');
  });
});
