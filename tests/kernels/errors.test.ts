// Bad input never crashes: every kernel rejects wrong types, ranks, dtypes, sizes, ids and non-finite
// values with a TypeError/RangeError that names the argument.
import { describe, expect, it } from 'vitest';
import { fused, scope, Tensor } from '../../src';

const f = (shape: number[], fill = 0.5) => Tensor.fromArray(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill), shape);
const i32 = (a: number[]) => Tensor.fromArray(new Int32Array(a), [a.length]);

describe('kernel argument errors', () => {
  it('linearCrossEntropy', () => {
    scope(() => {
      const h = f([3, 4]), w = f([5, 4]), t = i32([0, 1, 2]);
      expect(() => fused.linearCrossEntropy(f([3, 4, 1]), w, t)).toThrow(/h to be 2-D/);
      expect(() => fused.linearCrossEntropy(h, f([5, 3]), t)).toThrow(/same hidden size d \(4 vs 3\)/);
      expect(() => fused.linearCrossEntropy(h, w, i32([0, 1]))).toThrow(/one entry per row of h \(2 vs 3\)/);
      expect(() => fused.linearCrossEntropy(h, w, f([3]))).toThrow(/int32 Tensor \[N\] for targets/);
      expect(() => fused.linearCrossEntropy(h, w, i32([0, 5, 1]))).toThrow(/targets\[1\] = 5 is outside \[0, 5\)/);
      expect(() => fused.linearCrossEntropy(h, w, i32([0, -1, 1]))).toThrow(RangeError);
      expect(() => fused.linearCrossEntropy(i32([1, 2]) as Tensor, w, t)).toThrow(/h/);
      expect(() => fused.linearCrossEntropy({} as Tensor, w, t)).toThrow(/expected a Tensor \[N, d\] for h but received \[object Object\]/);
      expect(() => fused.linearCrossEntropy(h, w, t, { reduction: 'avg' as 'mean' })).toThrow(/reduction/);
      expect(() => fused.linearCrossEntropy(h, w, t, { labelSmoothing: 2 })).toThrow(/labelSmoothing must be in \[0, 1\]/);
      expect(() => fused.linearCrossEntropy(h, w, t, { gradScale: NaN })).toThrow(/gradScale/);
      expect(() => fused.linearCrossEntropy(h, w, t, { chunkRows: -1 })).toThrow(/chunkRows/);
      expect(() => fused.linearCrossEntropy(h, w, t, { ignoreIndex: 0.5 })).toThrow(/ignoreIndex/);
      expect(() => fused.linearCrossEntropy(h, w, t, 'fast' as unknown as object)).toThrow(/options/);
      expect(() => fused.linearCrossEntropy(h, w, t, { gradOutputs: { dW: false } as never })).toThrow(/expected one of dh, dw for gradOutputs.dW but received 'dW'/);
      expect(() => fused.linearCrossEntropy(h, w, t, { gradOutputs: { dw: 0 as unknown as boolean } })).toThrow(/expected a boolean for gradOutputs.dw but received 0/);
      expect(() => fused.linearCrossEntropy(h, w, t, { gradOutputs: [] as never })).toThrow(/expected an object of booleans \{ dh, dw \} for gradOutputs/);
    });
  });

  it('non-finite inputs and overflowing logits are named, not propagated', () => {
    scope(() => {
      const bad = Tensor.fromArray(new Float32Array([0, 1, NaN, 2]), [1, 4]);
      const w = f([5, 4]);
      expect(() => fused.linearCrossEntropy(bad, w, i32([1]))).toThrow(/h contains a non-finite value \(nan\) at flat index 2/);
      const inf = Tensor.fromArray(new Float32Array([0, 1, 2, -Infinity]), [1, 4]);
      expect(() => fused.visualWordKL(f([1, 4]), w, inf, w)).toThrow(/x contains a non-finite value/);
      expect(() => fused.visualWords(f([1, 4]), Tensor.fromArray(new Float32Array(20).fill(Infinity), [5, 4]))).toThrow(/wVm contains a non-finite/);
      const huge = f([1, 4], 3e38);
      expect(() => fused.pseudoImageFeatures(huge, f([5, 4], 3e38), f([5, 2]))).toThrow(/logits of row 0 are not finite/);
      const e = f([5, 2]);
      const g = Tensor.fromArray(new Float32Array([1, NaN]), [1, 2]);
      expect(() => fused.pseudoImageFeaturesBackward(f([1, 4]), w, e, g)).toThrow(/gradOut contains a non-finite/);
    });
  });

  it('each op refuses a non-finite value in every input it promises to check, and names that input', () => {
    // native/cpu: visual_words checks x and wVm, pseudo_image_features x, wVm and e (and the backward's gradOut),
    // visual_word_kl all four inputs, with or without detachTarget (p still comes from x and wVm). One bad element,
    // not at index 0, in one input at a time: the message must name that input and that index.
    const at = 5, bad = (shape: number[], v: number) => {
      const a = new Float32Array(shape[0] * shape[1]).fill(0.5);
      a[at] = v;
      return Tensor.fromArray(a, shape);
    };
    const shapes = { x: [3, 4], h: [3, 4], wVm: [5, 4], wLm: [5, 4], e: [5, 2], gradOut: [3, 2] } as const;
    type Name = keyof typeof shapes;
    const ops: [string, Name[], (t: Record<Name, Tensor>) => unknown][] = [
      ['visual_words', ['x', 'wVm'], (t) => fused.visualWords(t.x, t.wVm, { topK: 2 })],
      ['pseudo_image_features', ['x', 'wVm', 'e'], (t) => fused.pseudoImageFeatures(t.x, t.wVm, t.e)],
      ['pseudo_image_features_backward', ['x', 'wVm', 'e', 'gradOut'], (t) => fused.pseudoImageFeaturesBackward(t.x, t.wVm, t.e, t.gradOut)],
      ['visual_word_kl', ['h', 'wLm', 'x', 'wVm'], (t) => fused.visualWordKL(t.h, t.wLm, t.x, t.wVm)],
      ['visual_word_kl', ['h', 'wLm', 'x', 'wVm'], (t) => fused.visualWordKL(t.h, t.wLm, t.x, t.wVm, { detachTarget: true })],
    ];
    scope(() => {
      for (const [op, names, run] of ops) {
        // the clean inputs run (so each error below is the bad value's)
        const clean = () => Object.fromEntries(Object.entries(shapes).map(([n, s]) => [n, f([...s])])) as Record<Name, Tensor>;
        expect(() => run(clean())).not.toThrow();
        for (const name of names) {
          for (const [v, shown] of [[NaN, 'nan'], [Infinity, 'inf']] as const) {
            const t = clean();
            t[name] = bad([...shapes[name]], v);
            expect(() => run(t), `${op} ${name} ${shown}`).toThrow(new RegExp(`\\[${op}\\] ${name} contains a non-finite value \\(${shown}\\) at flat index ${at}`));
          }
        }
      }
    });
  });

  it('visualWordKL', () => {
    scope(() => {
      const h = f([3, 4]), w = f([5, 4]);
      expect(() => fused.visualWordKL(h, w, f([2, 4]), w)).toThrow(/x must have as many rows as h \(2 vs 3\)/);
      expect(() => fused.visualWordKL(h, w, h, f([6, 4]))).toThrow(/wVm must have as many rows \(vocabulary\) as wLm \(6 vs 5\)/);
      expect(() => fused.visualWordKL(h, w, h, f([5, 3]))).toThrow(/hidden size/);
      expect(() => fused.visualWordKL(h, w, h, w, { temperature: 0 })).toThrow(/temperature must be > 0/);
      // PyTorch's 'mean' divides by M x V: refused, not taken as batchmean
      expect(() => fused.visualWordKL(h, w, h, w, { reduction: 'mean' as never })).toThrow(/reduction 'mean' is PyTorch's mean over all M x V elements.*use 'batchmean'/);
      expect(() => fused.visualWordKL(h, w, h, w, { detachTarget: 1 as unknown as boolean })).toThrow(/detachTarget/);
      expect(() => fused.visualWordKL(h, w, h, w, { gradOutputs: { dw: false } as never })).toThrow(/expected one of dh, dwLm, dx, dwVm for gradOutputs.dw/);
    });
  });

  it('visualWords and pseudoImageFeatures', () => {
    scope(() => {
      const x = f([3, 4]), w = f([5, 4]), e = f([5, 2]);
      expect(() => fused.visualWords(x, w, { topK: 6 })).toThrow(/topK \(6\) exceeds the vocabulary size V \(5\)/);
      expect(() => fused.visualWords(x, w, { topK: 0 })).toThrow(/topK/);
      expect(() => fused.pseudoImageFeatures(x, w, f([4, 2]))).toThrow(/e must have one row per vocabulary entry of wVm \(4 vs 5\)/);
      expect(() => fused.pseudoImageFeaturesBackward(x, w, e, f([3, 3]))).toThrow(/gradOut must have the width dE of e \(3 vs 2\)/);
      expect(() => fused.pseudoImageFeaturesBackward(x, w, e, f([2, 2]))).toThrow(/gradOut must have one row per row of x/);
    });
  });

  it('the native layer re-checks what reaches it directly (callOp with raw buffers)', async () => {
    const { cpu } = await import('../../src/native');
    const a = cpu();
    const small = new a.NativeBuffer(8), ids = new a.NativeBuffer(8), probs = new a.NativeBuffer(8);
    const vw = (x: unknown, ints: number[], dt = 'float32') => a.callOp('visual_words', [x as never, small], [dt, dt], [ids, probs], ['int32', 'float32'], ints, []);
    expect(() => vw(small, [1, 4, 1, 1, 0, 1])).toThrow(/\[visual_words\] x holds 8 bytes but needs 16/);
    expect(() => vw({}, [1, 1, 1, 1, 0, 1])).toThrow(/\[visual_words\] inputs\[0\] must be a cpu NativeBuffer/);
    expect(() => vw(small, [-1, 1, 1, 1, 0, 1])).toThrow(/\[visual_words\] N must be >= 0, got -1/);
    expect(() => vw(small, [1, 1, 1, 2, 0, 1])).toThrow(/\[visual_words\] k must be in \[1, 1\], got 2/);
    expect(() => vw(small, [1, 1, 1, 1, 0, 0])).toThrow(/workspaceBudget must be >= 1, got 0/);
    expect(() => vw(small, [1, 1, 1, 1, 0])).toThrow(/missing integer parameter 5 \(workspaceBudget\)/);
    expect(() => a.callOp('linear_cross_entropy', [small, small, ids], ['bfloat16', 'float32', 'int32'], [probs], ['float32'], [1, 1, 1, -100, 0, 0, 0, 64], [1, 0, 0]))
      .toThrow(/\[linear_cross_entropy\] w must be bfloat16, got float32/);
    expect(() => a.callOp('linear_cross_entropy', [small, small, ids], ['float32', 'float32', 'int32'], [probs, null, null], ['float32', 'float32', 'float32'], [1, 1, 1, -100, 0, 1, 0, 64], [1, 0, 0]))
      .toThrow(/\[linear_cross_entropy\] grad = 1 but dh and dw are both null: give one, or pass grad = 0/);
    const kl = (outs: (typeof probs | null)[], detach: number) => a.callOp('visual_word_kl', [small, small, small, small], ['float32', 'float32', 'float32', 'float32'],
      outs, outs.map(() => 'float32'), [1, 1, 1, 0, 1, detach, 0, 64], [1, 1]);
    expect(() => kl([probs, null, null, null, null], 0)).toThrow(/\[visual_word_kl\] grad = 1 but every gradient output is null \(dh, dwLm, dx, dwVm\)/);
    // with detachTarget, dx is not an output: it does not count as a gradient asked for
    expect(() => kl([probs, null, null, probs, null], 1)).toThrow(/\[visual_word_kl\] grad = 1 but every gradient output is null \(dh, dwLm\)/);
    expect(() => a.callOp('no_such_op', [], [], [], [], [], [])).toThrow(/\[no_such_op\] is not an op \(native\/core\/ops.def\) of the cpu backend/);
    // names are read into a fixed buffer on the stack (64 bytes for an op, 16 for a dtype): a longer one, or one that
    // fills it, is named whole in the error, never cut to a valid name
    const long = `axpby${'_'.repeat(100)}x`;
    expect(() => a.callOp(long, [], [], [], [], [], [])).toThrow(new RegExp(`\\[${long}\\] is not an op`));
    expect(() => a.callOp(`${'a'.repeat(63)}`, [], [], [], [], [], [])).toThrow(/\[a{63}\] is not an op/);
    expect(() => a.callOp('fill', [], [], [probs], ['float32' + ' '.repeat(20)], [1], [0])).toThrow(/\[fill\] unknown dtype 'float32 {20}'/);
    expect(() => a.callOp('fill', [], [], [probs], ['float32\u0000'], [1], [0])).toThrow(/\[fill\] unknown dtype 'float32/);
    expect(() => a.callOp('fill', [], [], [probs], ['bfloat16bfloat16'], [1], [0])).toThrow(/\[fill\] unknown dtype 'bfloat16bfloat16'/);
    expect(() => a.callOp('axpby\u0000', [], [], [], [], [], [])).toThrow(TypeError); // not axpby (its message ends at the NUL)
    expect(() => small.write(new Float32Array(3))).toThrow(/12 bytes at offset 0 exceed the buffer's 8 bytes/);
    small.dispose();
    expect(() => vw(small, [0, 1, 1, 1, 0, 1])).toThrow(/has been disposed/);
    ids.dispose();
    probs.dispose();
  });
});
