// AdamW parameter groups (src/optim.ts): each group steps with lr * lrScale and its own weightDecay (default: the
// optimizer's), against the float64 reference.
import { describe, expect, it } from 'vitest';
import { AdamW, Tensor } from '../../src';
import { relErr } from '../support/compare';
import { adamwRef } from '../support/engine_reference';
import { rngFor, runSeed } from '../support/random';

describe(`AdamW parameter groups (seed ${runSeed})`, () => {
  it('three groups (lrScale 1, 0.1, 1; weightDecay default, 0.2, 0) follow the reference with their own rates over 3 steps', () => {
    const rng = rngFor('adamw:groups');
    const sizes = [[7, 33], [129], [5, 17]];
    const scales = [1, 0.1, 1];
    const decays = [undefined, 0.2, 0];
    const base = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, gradScale: 1 };
    const params = sizes.map((g) => g.map((n) => Tensor.fromArray(Float32Array.from(rng.normals(n)), [n])));
    const refs = params.flat().map((p) => ({ p: Float64Array.from(p.toArray()), m: new Float64Array(p.size), v: new Float64Array(p.size) }));
    const opt = new AdamW(params.map((ps, i) => ({ params: ps, lrScale: scales[i], ...(decays[i] === undefined ? {} : { weightDecay: decays[i] }) })), { lr: base.lr, weightDecay: base.weightDecay });
    try {
      expect(opt.params).toEqual(params.flat());
      for (let t = 1; t <= 3; t++) {
        opt.lr = base.lr / t; // the schedule moves both groups
        let k = 0;
        params.forEach((ps, gi) => ps.forEach((p) => {
          const g = rng.normals(p.size);
          p.grad = Tensor.fromArray(Float32Array.from(g), p.shape);
          adamwRef(refs[k].p, refs[k].m, refs[k].v, g, t, { ...base, lr: (base.lr / t) * scales[gi], weightDecay: decays[gi] ?? base.weightDecay });
          k++;
        }));
        const before = params.flat().map((p) => p.toArray());
        opt.step();
        params.flat().forEach((p, i) => {
          // the reference stepped from its own float64 state; compare the whole trajectory
          expect(relErr(p.toArray(), refs[i].p)).toBeLessThan(1e-5);
          expect(before[i]).not.toEqual(p.toArray());
          p.grad!.dispose();
          p.grad = null;
        });
      }
    } finally {
      opt.dispose();
      params.flat().forEach((p) => p.dispose());
    }
  });

  it('refuses mixed tensors and groups, a bad lrScale or weightDecay (naming the group) and an empty parameter list', () => {
    const a = Tensor.fromArray(new Float32Array(3), [3]), b = Tensor.fromArray(new Float32Array(3), [3]);
    try {
      expect(() => new AdamW([a, { params: [b] }] as never, { lr: 1 })).toThrow(/either tensors or parameter groups/);
      expect(() => new AdamW([{ params: [a] }, { params: [b], lrScale: -1 }], { lr: 1 })).toThrow(/invalid lrScale -1 in parameter group 1/);
      expect(() => new AdamW([{ params: [a] }, { params: [b], weightDecay: NaN }], { lr: 1 })).toThrow(/invalid weightDecay NaN in parameter group 1/);
      expect(() => new AdamW([{ params: [a] }, { params: [a] }], { lr: 1 })).toThrow(/appears twice/);
      // torch's "optimizer got an empty parameter list"; a group without parameters stays (a ZeRO-1 rank's empty shard)
      expect(() => new AdamW([], { lr: 1 })).toThrow(/^AdamW: params is empty: expected the tensors to train \(or parameter groups of them\) but received none$/);
      expect(() => new AdamW(new Set<Tensor>(), { lr: 1 })).toThrow(/AdamW: params is empty/);
      new AdamW([{ params: [] }], { lr: 1 }).dispose();
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
