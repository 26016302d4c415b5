// F.reshape infers one -1 dimension as torch's view / reshape do, and its errors name F.reshape (an API trial found
// -1 refused, and the message naming Tensor.view).
import { describe, expect, it } from 'vitest';
import { F, scope, Tensor } from '../../src';

describe('F.reshape', () => {
  it('infers one -1 dimension, gradient included', () => {
    const x = Tensor.fromArray(Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    x.requiresGrad = true;
    const y = F.reshape(x, [-1, 2]);
    expect(y.shape).toEqual([3, 2]);
    expect(Array.from(y.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(F.reshape(x, [3, -1]).shape).toEqual([3, 2]);
    expect(F.reshape(x, [-1]).shape).toEqual([6]);
    expect(x.view([1, -1, 3]).shape).toEqual([1, 2, 3]);
    expect(F.reshape(Tensor.zeros([0, 3]), [-1, 3]).shape).toEqual([0, 3]);
    F.sum(F.mul(y, Tensor.fromArray(Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]))).backward();
    expect(x.grad!.shape).toEqual([2, 3]);
    expect(Array.from(x.grad!.toArray())).toEqual([1, 2, 3, 4, 5, 6]);
    x.dispose();
    y.dispose();
  });

  it('refuses two -1s, a size that does not divide and an ambiguous -1, naming F.reshape', () => {
    scope(() => {
      const x = Tensor.zeros([2, 3]);
      expect(() => F.reshape(x, [-1, -1])).toThrow('F.reshape: only one dimension can be -1, got [-1, -1]');
      expect(() => F.reshape(x, [-1, 4])).toThrow('F.reshape: cannot view [2, 3] (6 elements) as [-1, 4]: 6 is not a multiple of 4, the product of the other dimensions');
      expect(() => F.reshape(x, [5])).toThrow('F.reshape: cannot view [2, 3] (6 elements) as [5] (5 elements)');
      expect(() => F.reshape(x, [-2, 3])).toThrow('F.reshape: expected an array of non-negative integers (one of them may be -1) for shape but received array(2)');
      expect(() => F.reshape(Tensor.zeros([0, 3]), [0, -1])).toThrow('F.reshape: cannot view [0, 3] (0 elements) as [0, -1]: the -1 is ambiguous beside a 0 dimension');
      expect(() => x.view([4, -1])).toThrow(/^Tensor\.view: cannot view/);
    });
  });
});
