// Tape mechanics: analytic gradients, accumulation across backward calls, noGrad, deterministic release.
import { describe, expect, it } from 'vitest';
import { clearTape, memoryStats, noGrad, F, scope, tapeLength, Tensor, zeroGrad } from '../../src';

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
