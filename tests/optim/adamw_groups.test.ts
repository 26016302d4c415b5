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

  it('a refused step changes no state (step counts, moments, weights), and loadState checks every entry first', () => {
    const mk = (g: number[]) => {
      const p = Tensor.fromArray(new Float32Array([1, 2]), [2]);
      p.grad = Tensor.fromArray(new Float32Array(g), [2]);
      return p;
    };
    const [p1, p2, q] = [mk([0.5, 0.5]), mk([0.25, -1]), mk([0.5, 0.5])];
    const opt = new AdamW([{ params: [p1] }, { params: [p2] }], { lr: 0.1, weightDecay: 0 });
    const fresh = new AdamW([q], { lr: 0.1, weightDecay: 0 });
    try {
      opt.lr = NaN;
      expect(() => opt.step()).toThrow('AdamW.step: expected a finite number >= 0 for lr but received NaN');
      opt.lr = 0.1;
      expect(() => opt.step({ gradScale: Infinity })).toThrow('AdamW.step: expected a finite number for gradScale but received Infinity');
      // the second group's gradient is wrong: the first group is not updated either
      const good = p2.grad!;
      p2.grad = Tensor.fromArray(new Float32Array(3), [3]);
      expect(() => opt.step()).toThrow('AdamW.step: expected a float32 tensor of the same shape on cpu for the gradient of parameter 1 (AdamW.params[1], a float32 tensor of shape [2]) but received float32 cpu tensor of shape [3]');
      p2.grad.dispose();
      p2.grad = good;
      good.dispose();
      expect(() => opt.step()).toThrow('AdamW.step: the gradient of parameter 1 (AdamW.params[1], a float32 tensor of shape [2]) has been disposed');
      p2.grad = Tensor.fromArray(new Float32Array([0.25, -1]), [2]);
      expect(opt.stateEntries()).toEqual([]);
      expect(Array.from(p1.toArray())).toEqual([1, 2]);
      opt.step();
      fresh.step();
      // the first step's bias correction: as a fresh optimizer's, not a third step's
      expect(Array.from(p1.toArray())).toEqual(Array.from(q.toArray()));
      expect(opt.stateEntries().map((e) => e.step)).toEqual([1, 1]);

      const entry = (over: object) => ({ index: 0, step: 2, m: new Float32Array(2), v: new Float32Array(2), ...over });
      const bad: [object[], string][] = [
        [[entry({ step: NaN })], "AdamW.loadState: expected an integer >= 1 (the steps this parameter has taken) for entry 1's step but received NaN (number)"],
        [[entry({ step: 0 })], "for entry 1's step but received 0"],
        [[entry({}), entry({ index: 2 })], "AdamW.loadState: expected an integer in [0, 1] (a parameter's place in AdamW.params) for entry 2's index but received 2"],
        [[entry({}), entry({})], 'AdamW.loadState: entry 2: parameter 0 has two entries'],
        [[entry({ v: new Float32Array([0, -1e-3]) })], "AdamW.loadState: entry 1's v[1] is -0.0010000000474974513: expected a finite number >= 0 (a second moment)"],
        [[entry({ m: new Float32Array([NaN, 0]) })], "AdamW.loadState: entry 1's m[0] is NaN: expected a finite number"],
        [[entry({ m: new Float32Array(3) })], "AdamW.loadState: entry 1's m has 3 elements but parameter 0 (shape [2]) has 2"],
        [[entry({ v: [0, 0] })], "AdamW.loadState: expected a Float32Array for entry 1's v but received array(2)"],
      ];
      const before = opt.stateEntries().map((e) => [e.step, Array.from(e.m.toArray()), Array.from(e.v.toArray())]);
      for (const [entries, message] of bad) {
        // a valid first entry is not loaded either when a later one is refused
        expect(() => opt.loadState([entry({ index: 1, step: 7 }), ...entries] as never)).toThrow(message);
        expect(opt.stateEntries().map((e) => [e.step, Array.from(e.m.toArray()), Array.from(e.v.toArray())])).toEqual(before);
      }
    } finally {
      opt.dispose();
      fresh.dispose();
      [p1, p2, q].forEach((p) => p.dispose());
    }
  });
});
