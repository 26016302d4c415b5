// Tape mechanics: analytic gradients, accumulation across backward calls, noGrad, deterministic release.
import { describe, expect, it } from 'vitest';
import { gradientCheckpoint, onGradReady, record } from '../../src/autograd';
import { isGraphHeld } from '../../src/tensor';
import { callOp } from '../../src/call_op';
import { AdamW, autocast, clearTape, keep, memoryStats, noGrad, F, scope, tapeLength, Tensor, zeroGrad } from '../../src';

const t = (a: number[], shape = [a.length]) => Tensor.fromArray(Float32Array.from(a), shape);

describe('autograd tape', () => {
  it('gradients of (a + b) * a summed, accumulated over two backward calls', () => {
    const a = t([1, 2, 3]), b = t([4, -5, 6]);
    a.requiresGrad = b.requiresGrad = true;
    for (let k = 0; k < 2; k++) scope(() => F.sum(F.mul(F.add(a, b), a)).backward());
    // d/da = 2a + b, d/db = a; twice
    expect(Array.from(a.grad!.toArray())).toEqual([12, -2, 24]);
    expect(Array.from(b.grad!.toArray())).toEqual([2, 4, 6]);
    zeroGrad([a, b]);
    expect(a.grad).toBeNull();
    a.dispose();
    b.dispose();
  });

  it('noGrad records nothing; backward clears the tape and frees every temporary', () => {
    const w = t([0.5, -1, 2, 0.25], [2, 2]);
    w.requiresGrad = true;
    scope(() => {
      noGrad(() => F.linear(t([1, 2], [1, 2]), w));
      expect(tapeLength()).toBe(0);
    });
    const before = memoryStats().cpu.liveBuffers;
    scope(() => {
      const x = t([1, 2, 3, 4], [2, 2]);
      const y = F.sum(F.softmax(F.linear(F.rmsNorm(x, t([1, 1]), 1e-6), w)));
      expect(tapeLength()).toBeGreaterThan(0);
      y.backward();
      expect(tapeLength()).toBe(0);
    });
    // only w.grad survives the scope
    expect(memoryStats().cpu.liveBuffers).toBe(before + 1);
    w.dispose();
    expect(memoryStats().cpu.liveBuffers).toBe(before - 1);
  });

  it('a scope frees the graph intermediates no backward reads (GradNode.reads); the gradients are unchanged', () => {
    const x = t([0.5, -1, 2, 0.25, 3, -0.5, 1, 2], [1, 2, 2, 2]);
    x.requiresGrad = true;
    const run = (inner: boolean) => scope(() => {
      let a: Tensor | null = null, v: Tensor | null = null;
      const body = () => {
        a = F.scale(x, 2);                     // read by no backward (reshape and rope read nothing)
        const b = F.rope(F.reshape(a, [1, 2, 2, 2]), 10000);
        v = F.reshape(F.scale(b, 1), [8]);     // a view that the caller keeps: its base stays
        return { c: F.mul(b, b), v };          // mul reads b
      };
      const { c, v: view } = inner ? scope(body) : body();
      const live = [a!.disposed, b0(c).disposed, view.disposed, v!.disposed];
      const kept = Array.from(view.toArray());
      F.sum(c).backward();
      const g = Array.from(x.grad!.toArray());
      zeroGrad([x]);
      return { live, kept, g };
    });
    const b0 = (c: Tensor) => c.gradFn!.inputs[0]!; // mul's input b
    const freed = run(true), whole = run(false);
    expect(freed.live).toEqual([true, false, false, false]); // a released; b, the view and its base kept
    expect(whole.live).toEqual([false, false, false, false]);
    expect(freed.kept).toEqual(whole.kept);
    expect(freed.g).toEqual(whole.g);
    // a released tensor says why it cannot be read
    scope(() => {
      let a: Tensor | null = null;
      const c = scope(() => {
        a = F.scale(x, 2);
        return F.scale(a, 3);
      });
      expect(() => a!.toArray()).toThrow(/was freed when its scope ended: it is an intermediate of a recorded graph that no backward reads/);
      F.sum(c).backward();
      expect(Array.from(x.grad!.toArray())).toEqual(new Array(8).fill(6));
      zeroGrad([x]);
    });
    x.dispose();
  });

  it("a linear with a frozen weight does not keep its input (only a weight's gradient reads it), in float32 and under autocast", () => {
    const x0 = t([0.5, -1, 2, 0.25, 3, -0.5], [2, 3]);
    x0.requiresGrad = true;
    const w = t([1, 2, -1, 0.5, 0, 1, 2, -2, 1], [3, 3]);
    const run = (trainable: boolean, dtype: 'float32' | 'bfloat16') => scope(() => autocast(dtype, () => {
      w.requiresGrad = trainable;
      let x: Tensor | null = null;
      const y = scope(() => {
        x = F.scale(x0, 2); // the linear's input, made in the scope
        return F.linear(x, w);
      });
      // float32 reads x itself; autocast a bf16 copy of it, saved with the node (x is then free either way)
      const kept = !x!.disposed || y.gradFn!.saved.some((c) => c.shape.join() === x!.shape.join());
      F.sum(F.mul(y, y)).backward();
      const g = [Array.from(x0.grad!.toArray()), trainable ? Array.from(w.grad!.toArray()) : null];
      zeroGrad([x0, w]);
      return { kept, g };
    }));
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const frozen = run(false, dtype), trainable = run(true, dtype);
      expect(frozen.kept, dtype).toBe(false);
      expect(trainable.kept, dtype).toBe(true);
      expect(frozen.g[0], dtype).toEqual(trainable.g[0]); // dx does not depend on whether w trains
    }
    // the other way round: an input that needs no gradient, so the weight's bf16 copy (read only for dx) is not kept
    scope(() => autocast('bfloat16', () => {
      w.requiresGrad = true;
      const y = F.linear(t([0.5, -1, 2, 0.25, 3, -0.5], [2, 3]), w);
      expect(y.gradFn!.saved.some((c) => c.shape.join() === w.shape.join())).toBe(false);
      F.sum(y).backward();
      expect(Array.from(w.grad!.toArray())).toEqual([0.75, 2, 1.5, 0.75, 2, 1.5, 0.75, 2, 1.5]); // each row: the column sums of x, exact in bf16
      zeroGrad([w]);
    }));
    [x0, w].forEach((v) => v.dispose());
  });

  it('nested scopes: a tensor an inner scope kept behind two released links stays alive in the outer scope', () => {
    // the shape of a decoder layer's half inside the decoder's per-layer scope: h = x + s (w2 a), a = w1 x. The inner
    // scope keeps a (w2's backward reads it) and releases w2 a and s (w2 a) (read by no backward); the outer scope must
    // still find a through those links, or it frees a before the backward (it did: 'inputs[1] has been disposed')
    const x = t([0.5, -1, 2, 0.25, 3, -0.5], [2, 3]);
    const w1 = t([1, 2, -1, 0.5, 0, 1, 2, -2, 1], [3, 3]), w2 = t([0.5, -1, 1, 2, 1, 0, -1, 0.25, 2], [3, 3]);
    w1.requiresGrad = w2.requiresGrad = true;
    const run = (nested: boolean) => {
      const body = () => F.add(x, F.scale(F.linear(F.linear(x, w1), w2), 3));
      scope(() => {
        const out = scope(() => F.add(nested ? scope(body) : body(), x)); // the per-layer scope ends before the backward
        F.sum(out).backward();
      });
      const g = [w1, w2].map((w) => Array.from(w.grad!.toArray()));
      zeroGrad([w1, w2]);
      return g;
    };
    const whole = run(false);
    expect(scope(() => run(true))).toEqual(whole);
    [x, w1, w2].forEach((v) => v.dispose());
  });

  it('pruning the tape keeps the nodes that a live output reaches through released links, and drops abandoned ones', () => {
    const x = t([1, -2, 3]);
    x.requiresGrad = true;
    scope(() => {
      const before = tapeLength();
      let h = x;
      for (let i = 0; i < 6000; i++) h = scope(() => F.scale(F.scale(h, 1), 1)); // the inner output is a link
      expect(tapeLength() - before).toBeGreaterThan(10_000 - before); // pruned at least once on the way
      F.sum(h).backward();
      expect(Array.from(x.grad!.toArray())).toEqual([1, 1, 1]);
      zeroGrad([x]);
      // graphs abandoned without backward: their nodes go at the next pruning (the threshold is now >= 20,000)
      for (let i = 0; i < 11_000; i++) scope(() => void F.scale(F.scale(x, 1), 1));
      expect(tapeLength()).toBeLessThan(10_000);
      clearTape();
    });
    x.dispose();
  });

  it('forwards never back-propagated whose outputs are left alive (outside any scope, not disposed): one warning past 50,000 nodes, naming the cure', async () => {
    const x = t([1, -2, 3]);
    x.requiresGrad = true;
    const warnings: Error[] = [];
    const listen = (w: Error) => warnings.push(w);
    process.on('warning', listen);
    const kept: Tensor[] = [];
    try {
      clearTape();
      for (let i = 0; i < 90_000; i++) kept.push(F.scale(x, 1)); // an evaluation loss per batch, let go without noGrad
      await new Promise((resolve) => setImmediate(resolve)); // (a warning is emitted on a later tick)
      const ours = warnings.filter((w) => w.name === 'VwlmmAutogradWarning');
      expect(ours).toHaveLength(1);
      expect(ours[0].message).toMatch(/^the autograd tape holds \d+ nodes of forwards never back-propagated whose outputs are still alive .*noGrad\(\), or inside scope\(\), or dispose the results; clearTape\(\) frees the graphs$/);
    } finally {
      process.off('warning', listen);
      clearTape();
      for (const k of kept) k.dispose();
      x.dispose();
    }
  });

  it("a gradient arrives in its tensor's dtype: one returned in float32 for a bf16 input is cast (as torch does)", () => {
    scope(() => {
      const x = Tensor.fromArray(Float32Array.from([0.5, -1, 2]), [3], { dtype: 'bfloat16' });
      x.requiresGrad = true;
      const h = F.silu(x); // bf16: its backward takes a bf16 gradient only
      // an op whose backward hands its bf16 input a float32 gradient
      const y = Tensor.fromArray(Float32Array.from(h.toArray()), [3]);
      record('to_f32', [h], [y], ([g]) => {
        const gh = Tensor.empty([3]);
        callOp('axpby', 'cpu', [g!, g!], [gh], [3], [2, 0]);
        return [gh];
      });
      F.sum(y).backward();
      expect(x.grad!.dtype).toBe('bfloat16');
      const s = (v: number) => 1 / (1 + Math.exp(-v)), ref = [0.5, -1, 2].map((v) => 2 * (s(v) + v * s(v) * (1 - s(v))));
      Array.from(x.grad!.toArray()).forEach((g, i) => expect(Math.abs(g - ref[i])).toBeLessThan(1e-2 * Math.abs(ref[i]) + 1e-3));
      x.dispose();
    });
  });

  it("a backward goes through its own graph only; a second one through the same graph is torch's error", () => {
    const w = t([0.5, -1, 2]);
    w.requiresGrad = true;
    scope(() => {
      // two independent losses: each backward adds its own gradient (the second used to find an empty tape)
      const l1 = F.sum(F.mul(w, w)), l2 = F.sum(F.scale(w, 3));
      l1.backward();
      expect(Array.from(w.grad!.toArray())).toEqual([1, -2, 4]);
      expect(tapeLength()).toBeGreaterThan(0); // l2's graph is still there
      l2.backward();
      expect(Array.from(w.grad!.toArray())).toEqual([4, 1, 7]);
      expect(tapeLength()).toBe(0);
      // the same loss twice, and a second loss that shares the first's graph: an error, and w.grad is as it was
      expect(() => l1.backward()).toThrow(/Trying to backward through the graph a second time/);
      const h = F.mul(w, w), a = F.sum(h), b = F.sum(F.scale(h, 2));
      a.backward();
      expect(() => b.backward()).toThrow(/backward: an input of .* was computed by a graph that a backward has already been through/);
      expect(Array.from(w.grad!.toArray())).toEqual([5, -1, 11]);
      // a gradient of the wrong shape is named
      const y = F.scale(w, 2);
      expect(() => y.backward(t([1, 1]))).toThrow('backward: gradient has shape [2] but the tensor has shape [3]');
      clearTape();
    });
    w.dispose();
  });

  it('backward through empty inputs (a zero-size dimension): gradients of the right shapes, zero for the parameters', () => {
    // a batch with no rows of some kind (no image tokens, no answer tokens) still runs forward and backward: every
    // input gets a gradient of its own shape, an empty one for the empty input and exact zeros for a non-empty
    // parameter it met (nothing flowed to it), or the other inputs' share where one is documented (concat, slice)
    const param = (shape: number[]) => {
      const p = Tensor.fromArray(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i + 1)), shape);
      p.requiresGrad = true;
      return p;
    };
    const zeros = (n: number) => new Array(n).fill(0);
    const none = Tensor.fromArray(new Int32Array(0), [0]);
    const cases: [string, number[][], (ps: Tensor[]) => Tensor, (number[] | null)[], boolean?][] = [
      // [name, input shapes, loss, each input's gradient (null: empty, checked by shape only), the loss sums values]
      ['F.linear, 0 rows', [[0, 3], [4, 3], [4]], ([x, w, b]) => F.sum(F.linear(x, w, b)), [null, zeros(12), zeros(4)]],
      ['F.linear, [2, 0, 3]', [[2, 0, 3], [4, 3]], ([x, w]) => F.sum(F.linear(x, w)), [null, zeros(12)]],
      ['F.attention, 0 queries', [[1, 0, 2, 4], [1, 3, 2, 4], [1, 3, 2, 4]], ([q, k, v]) => F.sum(F.attention(q, k, v, { causal: true })), [null, zeros(24), zeros(24)]],
      // the empty piece gets an empty gradient, the other its part of the output's (ones: d sum / d out)
      ['F.concat, an empty piece', [[2, 0, 3], [2, 2, 3]], ([a, b]) => F.sum(F.concat([a, b], 1)), [null, new Array(12).fill(1)], true],
      ['F.slice of length 0', [[2, 4, 3]], ([a]) => F.sum(F.slice(a, 1, 2, 0)), [zeros(24)]],
      ['F.linearCrossEntropy, N = 0', [[0, 4], [5, 4]], ([h, w]) => F.linearCrossEntropy(h, w, none), [null, zeros(20)]],
      ['F.visualWordKL, N = 0', [[0, 4], [5, 4], [0, 4], [5, 4]], ([h, wLm, x, wVm]) => F.visualWordKL(h, wLm, x, wVm), [null, zeros(20), null, zeros(20)]],
      ['F.rmsNorm, 0 rows', [[0, 4], [4]], ([x, w]) => F.sum(F.rmsNorm(x, w, 1e-6)), [null, zeros(4)]],
    ];
    for (const [name, shapes, loss, want, valued] of cases) {
      scope(() => {
        const ps = shapes.map(param);
        const l = loss(ps);
        // a sum over nothing; the fused losses' mean over no rows is 0, not NaN
        if (!valued) expect(l.item(), name).toBe(0);
        l.backward();
        ps.forEach((p, i) => {
          expect(p.grad, `${name}: input ${i}`).not.toBeNull();
          expect(p.grad!.shape, `${name}: input ${i}`).toEqual(shapes[i]);
          if (want[i]) expect(Array.from(p.grad!.toArray()), `${name}: input ${i}`).toEqual(want[i]);
        });
        expect(tapeLength()).toBe(0);
        ps.forEach((p) => p.dispose());
      });
    }
    none.dispose();
    // no features (I = 0): y = b on every row (the rows come from x's shape, not its size), so db counts the rows
    scope(() => {
      const [x, w, b] = [[2, 0], [4, 0], [4]].map(param);
      const y = F.linear(x, w, b);
      expect(y.shape).toEqual([2, 4]);
      expect(Array.from(y.toArray())).toEqual([...b.toArray(), ...b.toArray()]);
      F.sum(y).backward();
      expect(Array.from(b.grad!.toArray())).toEqual([2, 2, 2, 2]);
      expect([x.grad!.shape, w.grad!.shape]).toEqual([[2, 0], [4, 0]]);
      [x, w, b].forEach((p) => p.dispose());
    });
  });

  it('backward needs a scalar root that depends on a parameter', () => {
    scope(() => {
      const a = t([1, 2]);
      expect(() => F.sum(a).backward()).toThrow(/does not require grad/);
      a.requiresGrad = true;
      expect(() => F.scale(a, 2).backward()).toThrow(/scalar/);
      clearTape(); // a failed backward leaves the tape as it was
      expect(tapeLength()).toBe(0);
    });
  });
});

describe('what a backward needs', () => {
  it('keep() keeps a loss\'s graph and a view\'s memory, as returning them from the scope does (nested scopes too)', () => {
    const w = t([1, 2]), x = t([3, 4]);
    w.requiresGrad = true;
    let loss: Tensor | null = null;
    scope(() => {
      loss = keep(F.sum(F.mul(F.mul(w, x), w)));
    });
    loss!.backward(); // d/dw sum(w^2 x) = 2 w x
    expect(Array.from(w.grad!.toArray())).toEqual([6, 16]);
    zeroGrad([w]);
    scope(() => scope(() => {
      loss = keep(F.sum(F.mul(F.mul(w, x), w)));
    }));
    loss!.backward();
    expect(Array.from(w.grad!.toArray())).toEqual([6, 16]);
    let v: Tensor | null = null;
    scope(() => {
      v = keep(F.reshape(t([1, 2, 3, 4], [2, 2]), [4]));
    });
    expect(Array.from(v!.toArray())).toEqual([1, 2, 3, 4]);
    zeroGrad([w]);
    for (const d of [w, x, v!]) d.dispose();
  });

  it('a tensor of the graph disposed before the backward is an error, not gradients silently dropped', () => {
    const w = t([1, 2]), x = t([3, 4]);
    w.requiresGrad = true;
    const y = F.mul(w, x), z = F.sum(y);
    y.dispose();
    expect(() => z.backward()).toThrow(/^backward: an input of sum \(Tensor \[2\] float32\) has been disposed, and with it the graph behind it/);
    expect(w.grad).toBeNull();
    clearTape();
    for (const d of [w, x, z]) d.dispose();
  });

  it('a tensor the backward reads, written in place (F.writeAt) after the op was recorded, is an error (torch\'s version check)', () => {
    const a = t([1, 2], [1, 2]), b = t([3, 4], [1, 2]);
    a.requiresGrad = true;
    const y = F.sum(F.mul(a, b));
    F.writeAt(b, t([100, 100], [1, 2]), 0, 0);
    expect(() => y.backward()).toThrow(/^backward: input 1 of mul \(Tensor \[1, 2\] float32\), which its backward reads, was written in place \(F\.writeAt, an optimizer step\) after mul was recorded/);
    clearTape();
    // written before the op: its gradient uses the values it read
    const y2 = F.sum(F.mul(a, b));
    y2.backward();
    expect(Array.from(a.grad!.toArray())).toEqual([100, 100]);
    zeroGrad([a]);
    for (const d of [a, b, y, y2]) d.dispose();
  });
});

describe('an optimizer step between forward and backward', () => {
  it('is refused at the backward: the parameters it read were updated in place (torch refuses it too)', () => {
    const w = t([1, 2]), x = t([3, 4]);
    w.requiresGrad = true;
    const opt = new AdamW([w], { lr: 0.1 });
    scope(() => F.sum(F.mul(w, x)).backward());
    const loss = F.sum(F.mul(w, x)); // recorded with the weights before the step
    opt.step();
    expect(() => loss.backward()).toThrow(/^backward: input 0 of mul \(Tensor \[2\] float32\), which its backward reads, was written in place/);
    clearTape();
    zeroGrad([w]);
    // the usual order (forward, backward, step) is untouched
    scope(() => F.sum(F.mul(w, x)).backward());
    opt.step();
    for (const d of [w, x, loss]) d.dispose();
  });
});

describe('requiresGrad', () => {
  it('is refused on an int32 tensor (ids, masks): only float tensors have gradients', () => {
    const ids = Tensor.fromArray(Int32Array.from([1, 2]), [2]);
    expect(() => { ids.requiresGrad = true; }).toThrow('Tensor: an int32 tensor (shape [2]) cannot require gradients: only float tensors have them');
    ids.requiresGrad = false; // turning it off is fine
    expect(ids.requiresGrad).toBe(false);
    ids.dispose();
  });
});

// A loss returned by an outermost scope keeps the activations its backward reads; nothing else owns them, so the
// backward frees them (as torch frees a graph's saved tensors), or the tape does when their nodes are dropped unreached.
describe('activations kept for a graph outside any scope', () => {
  const live = () => memoryStats().cpu.liveBuffers;
  const setup = () => {
    const w = t([0.5, -1, 2, 0.25, 1, -0.5], [3, 2]);
    w.requiresGrad = true;
    return w;
  };
  // rmsNorm -> linear -> softmax: activations the backward reads, made inside the scope
  const forward = (w: Tensor) => F.sum(F.softmax(F.linear(F.rmsNorm(t([1, 2, 3, 4], [2, 2]), t([1, 1]), 1e-6), w)));

  it('are freed by the backward: only the loss and the gradient remain', () => {
    const w = setup(), before = live();
    for (let k = 0; k < 3; k++) {
      const loss = scope(() => forward(w));
      expect(live()).toBeGreaterThan(before + 2);
      loss.backward();
      expect(live()).toBe(before + 2); // the loss and w.grad
      loss.dispose();
    }
    expect(tapeLength()).toBe(0);
    w.dispose();
  });

  it('what the scope returns besides the loss stays, even when the graph reads it', () => {
    const w = setup(), before = live();
    const { loss, h } = scope(() => {
      const h = F.linear(t([1, 2, 3, 4], [2, 2]), w);
      return { loss: F.sum(F.softmax(h)), h };
    });
    loss.backward();
    expect(Array.from(h.toArray()).every(Number.isFinite)).toBe(true);
    expect(live()).toBe(before + 3); // loss, h, w.grad
    loss.dispose();
    h.dispose();
    w.dispose();
  });

  it('two losses of one scope, back-propagated one after the other: the first backward leaves what the second reads', () => {
    const w = setup(), before = live();
    // x, made in the scope, is read by both graphs' linear backward (for w's gradient); the graphs share no node
    const [a, b] = scope(() => {
      const x = t([1, 2, 3, 4], [2, 2]);
      return [F.sum(F.softmax(F.linear(x, w))), F.sum(F.linear(x, w))];
    });
    a.backward();
    const afterA = Array.from(w.grad!.toArray());
    b.backward(); // reads x
    // d/dw of sum(x w^T) adds the column sums of x to every row of w's gradient: [4, 6] per row
    const g = Array.from(w.grad!.toArray());
    expect(g.map((v, i) => v - afterA[i])).toEqual([4, 6, 4, 6, 4, 6]);
    expect(live()).toBe(before + 3); // a, b, w.grad
    a.dispose();
    b.dispose();
    w.dispose();
  });

  it('a loss disposed without a backward (an evaluation that forgot noGrad): freed with its nodes at the next backward', () => {
    const w = setup(), before = live();
    const dropped = scope(() => forward(w));
    dropped.dispose();
    expect(live()).toBeGreaterThan(before + 1);
    const loss = scope(() => forward(w));
    loss.backward();
    expect(live()).toBe(before + 2);
    loss.dispose();
    w.dispose();
  });
});

describe("what a scope keeps for a backward that does not read it", () => {
  it('F.matmul, F.patchEmbed: their outputs are freed with the scope (their backwards read the inputs or the columns)', () => {
    const live = () => memoryStats().cpu.liveBuffers;
    const a = t([1, 2, 3, 4, 5, 6], [2, 3]), b = t([1, 0, -1, 2, 0.5, 1], [3, 2]);
    a.requiresGrad = true;
    const before = live();
    const loss = scope(() => F.sum(F.matmul(a, b)));
    // the loss alone (b is read by the backward but is the caller's)
    expect(live()).toBe(before + 1);
    loss.backward();
    expect(Array.from(a.grad!.toArray())).toEqual([1, 1, 1.5, 1, 1, 1.5]); // b's row sums, per row of a
    loss.dispose();
    const w = t(Array.from({ length: 2 * 3 * 2 * 2 }, (_, i) => (i % 5) - 2), [2, 3, 2, 2]);
    w.requiresGrad = true;
    const images = t(Array.from({ length: 3 * 4 * 4 }, (_, i) => i / 10), [1, 3, 4, 4]);
    const mid = live();
    const l2 = scope(() => F.sum(F.patchEmbed(images, w)));
    expect(live()).toBe(mid + 2); // the loss and the patch columns its backward reads
    l2.backward();
    l2.dispose();
    for (const x of [a, b, w, images]) x.dispose();
  });
});

describe('a tensor a backward reads, disposed by hand before it ran', () => {
  it('is named with the op that reads it', () => {
    const w = t([1, 2, 3, 4], [2, 2]);
    w.requiresGrad = true;
    const x = t([1, 0, 0, 1], [2, 2]);
    const h = F.mul(F.linear(x, w), x);
    const loss = F.sum(h);
    x.dispose();
    expect(() => loss.backward()).toThrow(/^backward: the backward of mul reads a tensor \(Tensor \[2, 2\] float32, its input 1\) that has been disposed: keep what a backward reads alive until it has run$/);
    clearTape();
    for (const y of [w, h, loss]) y.dispose();
  });
});

// What a review of the graph-held freeing found: a backward under way (a checkpoint's recomputation inside another, or
// the dead nodes dropped as one starts) must keep what its nodes read; a view's base and an abandoned tape are freed.
describe('graph-held tensors and the backwards under way', () => {
  const live = () => memoryStats().cpu.liveBuffers;
  const weights = () => {
    const w1 = t([1, 2, 3, 4], [2, 2]), w2 = t([0.5, 1, -1, 2], [2, 2]);
    w1.requiresGrad = w2.requiresGrad = true;
    return [w1, w2];
  };

  it("a checkpoint's recomputation leaves an input it shares with the outer graph (a key mask, an input needing no grad)", () => {
    const [w1, w2] = weights();
    const loss = scope(() => {
      const x = t([1, 0, 2, 1], [2, 2]); // made in the scope, needs no grad: graph-held
      const a = F.linear(x, w2); // recorded first: its backward runs after the checkpoint's and reads x
      const h = gradientCheckpoint((xx) => F.linear(xx, w1), [x], [w1]);
      return F.sum(F.mul(a, h));
    });
    loss.backward();
    // d/dw2 sum((x w2^T) * (x w1^T)) = (x w1^T)^T x
    expect(Array.from(w2.grad!.toArray())).toEqual([9, 4, 23, 10]);
    for (const x of [loss, w1, w2]) x.dispose();
  });

  it('an output disposed before the backward: its dropped nodes leave what the backward reads', () => {
    const [w1, w2] = weights();
    const { loss, aux } = scope(() => {
      const x = t([1, 0, 2, 1], [2, 2]);
      return { loss: F.sum(F.linear(x, w1)), aux: F.linear(x, w2) };
    });
    aux.dispose();
    loss.backward();
    expect(Array.from(w1.grad!.toArray())).toEqual([3, 1, 3, 1]);
    for (const x of [loss, w1, w2]) x.dispose();
  });

  it("a checkpoint's recomputation leaves the other graphs waiting on the tape", () => {
    const [w1, w2] = weights();
    const x = t([1, 0, 2, 1], [2, 2]);
    const b = F.sum(F.linear(x, w2)); // pending
    const a = F.sum(gradientCheckpoint((xx) => F.linear(xx, w1), [x], [w1]));
    a.backward();
    b.backward();
    expect(Array.from(w2.grad!.toArray())).toEqual([3, 1, 3, 1]);
    for (const y of [a, b, x, w1, w2]) y.dispose();
  });

  it("a view's base and an abandoned tape (clearTape) are freed with the graph", () => {
    const [w] = weights();
    const before = live();
    const loss = scope(() => F.sum(F.linear(F.reshape(t([1, 0, 2, 1]), [2, 2]), w)));
    loss.backward();
    loss.dispose();
    expect(live()).toBe(before + 1); // w.grad
    const dropped = scope(() => F.sum(F.softmax(F.linear(t([1, 0, 2, 1], [2, 2]), w))));
    clearTape();
    dropped.dispose();
    expect(live()).toBe(before + 1);
    w.dispose();
  });
});

describe('graph-held tensors: ownership taken back, and a prune during a recomputation', () => {
  it("a leaf's .grad that a fused op saved for its backward is the leaf's: a later graph reading it does not free it", () => {
    const h = t([1, 2, 3, 4, 5, 6], [2, 3]), w = t([0.1, 0.2, 0.3, -0.1, 0.5, 0.2, 0, 0.3, -0.2, 0.4, 0.1, 0.1], [4, 3]);
    h.requiresGrad = w.requiresGrad = true;
    const targets = Tensor.fromArray(Int32Array.from([1, 3]), [2]);
    const ce = scope(() => F.linearCrossEntropy(F.scale(h, 1), w, targets));
    ce.backward();
    expect(isGraphHeld(w.grad!)).toBe(false);
    const x = t(new Array(12).fill(1), [4, 3]);
    x.requiresGrad = true;
    const l2 = scope(() => F.sum(F.mul(x, w.grad!))); // a diagnostic that reads the gradient
    l2.backward();
    expect(w.grad!.disposed).toBe(false);
    expect(Array.from(x.grad!.toArray())).toEqual(Array.from(w.grad!.toArray()));
    // and a tensor kept by hand after its scope is the keeper's
    const [a, w2] = [t([1, 0, 2, 1], [2, 2]), t([1, 2, 3, 4], [2, 2])];
    w2.requiresGrad = true;
    let captured: Tensor | null = null;
    const loss = scope(() => F.sum(F.mul((captured = F.linear(a, w2)), a))); // mul's backward reads it: graph-held
    keep(captured!);
    loss.backward();
    expect(captured!.disposed).toBe(false);
    for (const y of [ce, l2, loss, captured!, h, w, x, a, w2, targets]) y.dispose();
  });

  it('saved tensors and moved gradients leave the set (no entry left per step)', () => {
    const w = t([0.5, -1, 2, 0.25, 1, -0.5], [3, 2]);
    w.requiresGrad = true;
    for (let k = 0; k < 3; k++) {
      const loss = scope(() => F.sum(F.rmsNorm(F.linear(t([1, 2, 3, 4], [2, 2]), w), t([1, 1, 1], [3]), 1e-6)));
      const saved = [loss.gradFn!.inputs[0]!.gradFn!.saved].flat();
      expect(saved.length).toBeGreaterThan(0);
      loss.backward();
      loss.dispose();
      for (const s of saved) expect(isGraphHeld(s)).toBe(false);
    }
    w.dispose();
  });

  it("a prune of the tape during a checkpoint's recomputation (a dead node before it) loses none of its nodes", () => {
    const w1 = t([1, 2, 3, 4], [2, 2]), w2 = t([1, 1, 1, 1], [2, 2]), p = t([1], [1]);
    for (const x of [w1, w2, p]) x.requiresGrad = true;
    // another graph waiting on the tape, near the prune threshold (10,000 nodes)
    let y = p;
    for (let k = 0; k < 9994; k++) y = F.scale(y, 1);
    const l2 = F.sum(y);
    const ck = gradientCheckpoint((xx) => {
      let z = F.mul(xx, xx);
      for (let k = 0; k < 5; k++) z = F.scale(z, 1);
      return z;
    }, [F.scale(w1, 1)], []);
    const l1 = F.sum(F.add(ck, F.mul(w2, t([1, 1, 1, 1], [2, 2]))));
    // a hook recording a node whose output its scope frees: a dead node on the tape before the recomputation
    const off = onGradReady((leaf) => {
      if (leaf === w2) scope(() => void F.scale(w2, 2));
    });
    try {
      l1.backward();
    } finally {
      off();
    }
    expect(Array.from(w1.grad!.toArray())).toEqual([2, 4, 6, 8]);
    l2.backward();
    expect(tapeLength()).toBe(0);
    for (const x of [l1, l2, w1, w2, p]) x.dispose();
  });
});
