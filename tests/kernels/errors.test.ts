// Bad input never crashes: every kernel rejects wrong types, ranks, dtypes, sizes, ids and non-finite
// values with a TypeError/RangeError that names the argument.
import { describe, expect, it } from 'vitest';
import { kernels, scope, Tensor } from '../../src';

const f = (shape: number[], fill = 0.5) => Tensor.fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape);
const i32 = (a: number[]) => Tensor.fromArray(new Int32Array(a), [a.length]);

describe('kernel argument errors', () => {
  it('linearCrossEntropy', () => {
    scope(() => {
      const h = f([3, 4]), w = f([5, 4]), t = i32([0, 1, 2]);
      expect(() => kernels.linearCrossEntropy(f([3, 4, 1]), w, t)).toThrow(/h to be 2-D/);
      expect(() => kernels.linearCrossEntropy(h, f([5, 3]), t)).toThrow(/same hidden size d \(4 vs 3\)/);
      expect(() => kernels.linearCrossEntropy(h, w, i32([0, 1]))).toThrow(/one entry per row of h \(2 vs 3\)/);
      expect(() => kernels.linearCrossEntropy(h, w, f([3]))).toThrow(/int32 Tensor \[N\] for targets/);
      expect(() => kernels.linearCrossEntropy(h, w, i32([0, 5, 1]))).toThrow(/targets\[1\] = 5 is outside \[0, 5\)/);
      expect(() => kernels.linearCrossEntropy(h, w, i32([0, -1, 1]))).toThrow(RangeError);
      expect(() => kernels.linearCrossEntropy(i32([1, 2]) as Tensor, w, t)).toThrow(/h/);
      expect(() => kernels.linearCrossEntropy({} as Tensor, w, t)).toThrow(/expected a Tensor \[N, d\] for h but received \[object Object\]/);
      expect(() => kernels.linearCrossEntropy(h, w, t, { reduction: 'avg' as 'mean' })).toThrow(/reduction/);
      expect(() => kernels.linearCrossEntropy(h, w, t, { labelSmoothing: 2 })).toThrow(/labelSmoothing must be in \[0, 1\]/);
      expect(() => kernels.linearCrossEntropy(h, w, t, { gradScale: NaN })).toThrow(/gradScale/);
      expect(() => kernels.linearCrossEntropy(h, w, t, { chunkRows: -1 })).toThrow(/chunkRows/);
      expect(() => kernels.linearCrossEntropy(h, w, t, { ignoreIndex: 0.5 })).toThrow(/ignoreIndex/);
      expect(() => kernels.linearCrossEntropy(h, w, t, 'fast' as unknown as object)).toThrow(/options/);
    });
  });

  it('non-finite inputs and overflowing logits are named, not propagated', () => {
    scope(() => {
      const bad = Tensor.fromArray(new Float32Array([0, 1, NaN, 2]), [1, 4]);
      const w = f([5, 4]);
      expect(() => kernels.linearCrossEntropy(bad, w, i32([1]))).toThrow(/h contains a non-finite value \(nan\) at flat index 2/);
      const inf = Tensor.fromArray(new Float32Array([0, 1, 2, -Infinity]), [1, 4]);
      expect(() => kernels.visualWordKL(f([1, 4]), w, inf, w)).toThrow(/x contains a non-finite value/);
      expect(() => kernels.visualWords(f([1, 4]), Tensor.fromArray(new Float32Array(20).fill(Infinity), [5, 4]))).toThrow(/wVm contains a non-finite/);
      const huge = f([1, 4], 3e38);
      expect(() => kernels.pseudoImageFeatures(huge, f([5, 4], 3e38), f([5, 2]))).toThrow(/logits of row 0 are not finite/);
      const e = f([5, 2]);
      const g = Tensor.fromArray(new Float32Array([1, NaN]), [1, 2]);
      expect(() => kernels.pseudoImageFeaturesBackward(f([1, 4]), w, e, g)).toThrow(/gradOut contains a non-finite/);
    });
  });

  it('visualWordKL', () => {
    scope(() => {
      const h = f([3, 4]), w = f([5, 4]);
      expect(() => kernels.visualWordKL(h, w, f([2, 4]), w)).toThrow(/x must have as many rows as h \(2 vs 3\)/);
      expect(() => kernels.visualWordKL(h, w, h, f([6, 4]))).toThrow(/wVm must have as many rows \(vocabulary\) as wLm \(6 vs 5\)/);
      expect(() => kernels.visualWordKL(h, w, h, f([5, 3]))).toThrow(/hidden size/);
      expect(() => kernels.visualWordKL(h, w, h, w, { temperature: 0 })).toThrow(/temperature must be > 0/);
      expect(() => kernels.visualWordKL(h, w, h, w, { detachTarget: 1 as unknown as boolean })).toThrow(/detachTarget/);
    });
  });

  it('visualWords and pseudoImageFeatures', () => {
    scope(() => {
      const x = f([3, 4]), w = f([5, 4]), e = f([5, 2]);
      expect(() => kernels.visualWords(x, w, { topK: 6 })).toThrow(/topK \(6\) exceeds the vocabulary size V \(5\)/);
      expect(() => kernels.visualWords(x, w, { topK: 0 })).toThrow(/topK/);
      expect(() => kernels.pseudoImageFeatures(x, w, f([4, 2]))).toThrow(/e must have one row per vocabulary entry of wVm \(4 vs 5\)/);
      expect(() => kernels.pseudoImageFeaturesBackward(x, w, e, f([3, 3]))).toThrow(/gradOut must have the width dE of e \(3 vs 2\)/);
      expect(() => kernels.pseudoImageFeaturesBackward(x, w, e, f([2, 2]))).toThrow(/gradOut must have one row per row of x/);
    });
  });

  it('the native layer re-checks what reaches it directly', async () => {
    const { cpu } = await import('../../src/native');
    const a = cpu();
    const small = new a.NativeBuffer(8);
    expect(() => a.visualWords(small, small, { N: 1, d: 4, V: 1 }, {})).toThrow(/x holds 8 bytes but its shape needs 16/);
    expect(() => a.visualWords({} as never, small, { N: 1, d: 1, V: 1 }, {})).toThrow(/x must be a cpu NativeBuffer/);
    expect(() => a.visualWords(small, small, { N: -1, d: 1, V: 1 }, {})).toThrow(/dims.N must be a non-negative integer/);
    expect(() => a.linearCrossEntropy(small, small, small, { N: 1, d: 1, V: 1 }, { dtype: 'bfloat16' })).toThrow(/CPU backend computes in float32/);
    expect(() => small.write(new Float32Array(3))).toThrow(/12 bytes at offset 0 exceed the buffer's 8 bytes/);
    small.dispose();
    expect(() => a.visualWords(small, small, { N: 0, d: 1, V: 1 }, {})).toThrow(/has been disposed/);
  });
});
