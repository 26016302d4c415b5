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
  });
});
