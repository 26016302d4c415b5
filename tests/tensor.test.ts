// Tensor, scope and native memory: round trips, disposal, leak accounting, bf16 conversion.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cachedHostBytes, callOp, cudaAvailable, keep, F, fused, memoryStats, releaseHostCache, scope, Tensor } from '../src';
import { cancelFirstAccess, onFirstAccess } from '../src/tensor';
import { bf16ToF32, f32ToBf16, roundToBf16 } from '../src/bf16';
import { rngFor } from './support/random';
import { liveMemory } from './support/memory';

const live = () => memoryStats().cpu.liveBuffers;
const root = path.join(__dirname, '..');

describe('Tensor', () => {
  it('round-trips float32 and int32 data and reports shape, dtype, device', () => {
    const f = Tensor.fromArray(new Float32Array([1.5, -2, 3e-8, 4e30, 0, -0]), [2, 3]);
    expect(f.shape).toEqual([2, 3]);
    expect(f.dtype).toBe('float32');
    expect(f.device).toBe('cpu');
    expect(Array.from(f.toArray())).toEqual([1.5, -2, Math.fround(3e-8), Math.fround(4e30), 0, -0]);
    const i = Tensor.fromArray(new Int32Array([7, -2147483648, 2147483647]), [3]);
    expect(i.dtype).toBe('int32');
    expect(Array.from(i.toArray())).toEqual([7, -2147483648, 2147483647]);
    f.dispose();
    i.dispose();
  });

  it('disposed host blocks are cached by size class, reused, and released on request', () => {
    releaseHostCache();
    const a = Tensor.fromArray(new Float32Array(100_000), [100_000]);
    a.dispose();
    const cached = cachedHostBytes();
    expect(cached).toBeGreaterThanOrEqual(400_000);
    const b = Tensor.fromArray(new Float32Array(99_000).fill(7), [99_000]); // same size class: reused
    expect(cachedHostBytes()).toBe(0);
    expect(b.toArray()[98_999]).toBe(7);
    b.dispose();
    expect(releaseHostCache()).toBe(cached);
    expect(cachedHostBytes()).toBe(0);
  });

  it('a full host cache hands back its least recently freed blocks to keep the new ones (VWLMM_HOST_CACHE_MIB)', () => {
    // In a child with a 4 MiB cache: four 1 MiB blocks fill it; then a block of another size class, allocated and
    // disposed five times, is kept after its first disposal (evicting old blocks), so it comes from the system once.
    // Before, a full cache sent every block of a new size back to the system: five system allocations.
    const code = `const v = require('./src');
      const a = [0, 1, 2, 3].map(() => v.Tensor.zeros([262144]));
      a.forEach((t) => t.dispose());
      const s0 = v.memoryStats().cpu;
      for (let i = 0; i < 5; i++) v.Tensor.zeros([393216]).dispose();
      const s1 = v.memoryStats().cpu;
      console.log(JSON.stringify({ cached0: s0.cachedBytes, allocs: s1.systemAllocs - s0.systemAllocs, evictions: s1.evictions - s0.evictions, cached: s1.cachedBytes }));`;
    const run = (mib: string) => spawnSync(process.execPath, ['--import', 'tsx', '-e', code], { cwd: root, env: { ...process.env, VWLMM_HOST_CACHE_MIB: mib }, encoding: 'utf8' });
    const r = run('4');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.cached0).toBe(4 << 20);
    expect(out.allocs).toBe(1);
    expect(out.evictions).toBe(2); // 1.5 MiB needs two of the oldest 1 MiB blocks gone
    expect(out.cached).toBe((2 << 20) + 1.5 * (1 << 20));
    const bad = run('lots');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/VWLMM_HOST_CACHE_MIB must be a whole number of MiB from 0 to 16777216, got 'lots'/);
  });

  it('holds empty tensors', () => {
    const t = Tensor.fromArray(new Float32Array(0), [0, 5]);
    expect(t.size).toBe(0);
    expect(t.toArray().length).toBe(0);
    t.dispose();
  });

  it('dispose is idempotent, frees memory at once, and later use throws', () => {
    const before = liveMemory();
    const t = Tensor.fromArray(new Float32Array(1000), [10, 100]);
    expect(memoryStats().cpu.liveBytes - before.liveBytes).toBe(4000);
    t.dispose();
    t.dispose();
    expect(liveMemory()).toEqual(before);
    expect(t.disposed).toBe(true);
    expect(() => t.toArray()).toThrow(/disposed/);
    const w = Tensor.fromArray(new Float32Array(4), [2, 2]);
    expect(() => fused.visualWords(t, w)).toThrow(/x has been disposed/);
    w.dispose();
  });

  it('what F and callOp check without asking the addon (isFreed), and what the binding still catches', () => {
    const t = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const v = t.view([4]), vv = v.view([1, 4]);
    expect([t.isFreed(), v.isFreed(), vv.isFreed()]).toEqual([false, false, false]);
    // a view goes with the tensor it views: disposed, moved or given new storage
    t.dispose();
    expect([v.isFreed(), vv.isFreed(), v.disposed, vv.disposed]).toEqual([true, true, true, true]);
    expect(() => F.add(v, v)).toThrow(/F.add: a has been disposed/);
    expect(() => callOp('fill', 'cpu', [], [vv], [4], [0])).toThrow(/callOp \[fill\]: outputs\[0\] has been disposed/);
    const m = Tensor.fromArray(new Float32Array(4), [4]), mv = m.view([2, 2]);
    const moved = m.moveTo([2, 2]);
    expect([m.isFreed(), mv.isFreed(), moved.isFreed()]).toEqual([true, true, false]);
    const p = Tensor.fromArray(new Float32Array(4), [4]), pv = p.view([2, 2]);
    p.adoptStorage(Tensor.fromArray(new Float32Array([5, 6, 7, 8]), [4]));
    expect([p.isFreed(), pv.isFreed(), pv.disposed]).toEqual([false, true, true]);
    expect(Array.from(p.toArray())).toEqual([5, 6, 7, 8]);
    // a buffer disposed by hand under a live tensor: `disposed` asks the addon, and the binding refuses it
    const h = Tensor.fromArray(new Float32Array(4), [4]);
    h.buffer.dispose();
    expect([h.isFreed(), h.disposed]).toEqual([false, true]);
    expect(() => F.add(h, h)).toThrow(/\[axpby\] inputs\[0\] has been disposed/);
    expect(() => callOp('fill', 'cpu', [], [h], [4], [0])).toThrow(/\[fill\] outputs\[0\] has been disposed/);
    expect(() => h.toArray()).toThrow(/Tensor \[4\] float32 has been disposed/);
    // a tensor a scope released (in a kept graph, read by no backward) says so wherever it is used
    const x = Tensor.fromArray(new Float32Array([1, 2]), [2]);
    x.requiresGrad = true;
    let mid: Tensor | null = null;
    const y = scope(() => F.scale((mid = F.scale(x, 2)), 3));
    expect(mid!.isFreed()).toBe(true);
    expect(() => callOp('fill', 'cpu', [], [mid], [2], [0])).toThrow(/callOp \[fill\]: outputs\[0\] was freed when its scope ended/);
    expect(() => F.add(mid!, mid!)).toThrow(/F.add: a was freed when its scope ended/);
    for (const z of [y, x, moved, p, h]) z.dispose();
  });

  it('scope disposes intermediates and keeps what it returns (nested)', () => {
    const base = live();
    const kept = scope(() => {
      Tensor.fromArray(new Float32Array(3), [3]);
      const inner = scope(() => {
        Tensor.fromArray(new Float32Array(2), [2]);
        return { a: Tensor.fromArray(new Float32Array([1, 2]), [2]), list: [Tensor.fromArray(new Int32Array([5]), [1])] };
      });
      expect(live()).toBe(base + 3); // the outer temp + the two returned from inner
      return inner;
    });
    expect(live()).toBe(base + 2);
    expect(Array.from(kept.a.toArray())).toEqual([1, 2]);
    kept.a.dispose();
    kept.list[0].dispose();
    expect(live()).toBe(base);
  });

  it("a view a scope returns frees, when disposed last, the memory the scope kept only for it (torch's storage)", () => {
    const base = live();
    const x = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
    // F.reshape of an intermediate: the gelu output is kept only as the view's memory
    const y = scope(() => F.reshape(F.gelu(F.scale(x, 2)), [4]));
    const z = y.view([2, 2]); // a second view of the same memory
    expect(live()).toBe(base + 2);
    y.dispose();
    expect(live()).toBe(base + 2); // z still views it
    expect(z.toArray()[3]).toBeCloseTo(8, 5);
    z.dispose();
    expect(live()).toBe(base + 1); // x alone
    expect(() => y.base!.toArray()).toThrow(/freed with the last view of it/);
    // what the scope returns as itself, or a tensor of the caller's, is never freed by its views
    const both = scope(() => {
      const t = F.scale(x, 3);
      return { t, v: F.reshape(t, [4]) };
    });
    both.v.dispose();
    expect(Array.from(both.t.toArray())).toEqual([3, 6, 9, 12]);
    x.view([4]).dispose();
    expect(x.toArray()[0]).toBe(1);
    // keep() makes the caller the owner of a tensor whose views go out (a nested scope had kept it for them)
    const kept = scope(() => {
      const v = scope(() => F.reshape(F.scale(x, 4), [4]));
      return keep(v.base!);
    });
    F.reshape(kept, [4]).dispose();
    expect(kept.toArray()[0]).toBe(4);
    // so does any later scope that returns it as itself (reached through the view's .base)
    const v2 = scope(() => F.reshape(F.scale(x, 5), [2, 2]));
    const held = scope(() => ({ y: v2.base!, s: F.sum(v2.base!) }));
    v2.dispose();
    expect(held.y.toArray()[0]).toBe(5);
    held.y.dispose();
    held.s.dispose();
    // a recorded graph that reads the memory keeps it until its backward: one kept from an enclosing scope, and one
    // built from v.base outside any scope (the views' dispose would have freed what the backward reads)
    const p = Tensor.fromArray(Float32Array.of(1, 2, 3, 4), [4]);
    p.requiresGrad = true;
    let k!: Tensor;
    scope(() => {
      const v = scope(() => F.reshape(F.scale(p, 2), [2, 2]));
      const b = v.base!;
      k = keep(F.mul(b, b)); // its backward reads b; v is disposed as this scope ends
      return null;
    });
    const loss = F.sum(k);
    loss.backward();
    expect(Array.from(p.grad!.toArray())).toEqual([8, 16, 24, 32]);
    const v3 = scope(() => F.reshape(F.scale(p, 2), [2, 2]));
    const m = F.mul(v3.base!, v3.base!), top = F.sum(m);
    v3.dispose();
    p.grad!.dispose();
    p.grad = null;
    top.backward();
    expect(Array.from(p.grad!.toArray())).toEqual([8, 16, 24, 32]);
    for (const t of [k, loss, m, top, p]) t.dispose();
    // a non-owner made by hand (new Tensor(buffer, ..., false)) frees nothing, nor do its views: x's memory stays
    const alias = scope(() => new Tensor(x.buffer, [4], 'float32', 'cpu', false).view([2, 2]));
    alias.dispose();
    new Tensor(x.buffer, [4], 'float32', 'cpu', false).dispose();
    expect(x.toArray()[0]).toBe(1);
    both.t.dispose();
    kept.dispose();
    x.dispose();
    expect(live()).toBe(base);
  });

  it('scope disposes everything when fn throws, and keep() exempts a tensor', () => {
    const base = live();
    let escaped: Tensor | null = null;
    expect(() =>
      scope(() => {
        escaped = keep(Tensor.fromArray(new Float32Array(1), [1]));
        Tensor.fromArray(new Float32Array(1), [1]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(live()).toBe(base + 1);
    escaped!.dispose();
    expect(live()).toBe(base);
  });

  it('kernel outputs are native tensors that scope frees; repeated calls do not leak', () => {
    const rng = rngFor('leak');
    const h = Tensor.fromArray(rng.normals(16 * 8), [16, 8]);
    const w = Tensor.fromArray(rng.normals(50 * 8), [50, 8]);
    const t = Tensor.fromArray(new Int32Array(16).fill(3), [16]);
    const base = liveMemory();
    for (let i = 0; i < 50; i++) {
      scope(() => {
        fused.linearCrossEntropy(h, w, t);
        fused.visualWordKL(h, w, h, w);
        fused.visualWords(h, w, { topK: 2 });
        fused.pseudoImageFeaturesBackward(h, w, w, fused.pseudoImageFeatures(h, w, w));
      });
    }
    expect(liveMemory()).toEqual(base);
    [h, w, t].forEach((x) => x.dispose());
  });

  it('a failing kernel call frees the outputs it had allocated', () => {
    const h = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const w = Tensor.fromArray(new Float32Array([1, 0, 0, 1, 1, 1]), [3, 2]);
    const t = Tensor.fromArray(new Int32Array([1, 7]), [2]);
    const base = liveMemory();
    expect(() => fused.linearCrossEntropy(h, w, t)).toThrow(RangeError);
    expect(liveMemory()).toEqual(base);
    [h, w, t].forEach((x) => x.dispose());
  });

  it('rejects bad construction arguments with errors that name them', () => {
    expect(() => Tensor.fromArray(new Float32Array(5), [2, 3])).toThrow(/5 elements but shape \[2, 3\] needs 6/);
    expect(() => Tensor.fromArray([1, 2] as unknown as Float32Array, [2])).toThrow(TypeError);
    expect(() => Tensor.fromArray(new Float32Array(2), [2, -1])).toThrow(/shape/);
    expect(() => Tensor.fromArray(new Float32Array(2), [2.5])).toThrow(/shape/);
    expect(() => Tensor.fromArray(new Float32Array(2), [2], { dtype: 'int32' })).toThrow(/Int32Array/);
    expect(() => Tensor.fromArray(new Float32Array(2), [2], { device: 'tpu' as 'cpu' })).toThrow(/device/);
  });

  it('holds bfloat16 on the CPU (rounded to nearest even) and converts with to()', () => {
    const a = new Float32Array([1, 1 + 2 ** -8, -2.5, 3.14159, 1e-3, NaN, Infinity]);
    scope(() => {
      const b = Tensor.fromArray(a, [7], { dtype: 'bfloat16' });
      expect(b.buffer.bytes).toBe(14);
      expect(Array.from(b.toArray())).toEqual(Array.from(bf16ToF32(f32ToBf16(a))));
      expect(b.to('cpu').dtype).toBe('bfloat16');
      expect(Array.from(b.to('cpu', 'float32').toArray())).toEqual(Array.from(b.toArray()));
      expect(Tensor.zeros([3], { dtype: 'bfloat16' }).toArray()).toEqual(new Float32Array(3));
      expect(() => b.to('cpu', 'int32')).toThrow(/a float dtype for a bfloat16 tensor/);
    });
  });

  it.skipIf(cudaAvailable())('asking for CUDA without a GPU names the reason', () => {
    expect(() => Tensor.fromArray(new Float32Array(2), [2], { device: 'cuda' })).toThrow(/CUDA is unavailable: .+/);
  });

  it.skipIf(!cudaAvailable())('moves data between cpu and cuda, including bfloat16', () => {
    const a = new Float32Array([1, -2.5, 3.14159, 1e-3]);
    scope(() => {
      const c = Tensor.fromArray(a, [4]).to('cuda');
      expect(c.device).toBe('cuda');
      expect(Array.from(c.to('cpu').toArray())).toEqual(Array.from(a));
      const b = Tensor.fromArray(a, [4], { device: 'cuda', dtype: 'bfloat16' });
      expect(Array.from(b.toArray())).toEqual(Array.from(a, roundToBf16));
    });
  });
});

describe('bfloat16 conversion', () => {
  it('rounds to nearest even and keeps NaN/Inf', () => {
    // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even mantissa (1).
    const x = new Float32Array([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, Infinity, -Infinity, NaN, 65504, 1e-40]);
    const y = bf16ToF32(f32ToBf16(x));
    expect(y[0]).toBe(1);
    expect(y[1]).toBe(1);
    expect(y[2]).toBe(1 + 4 * 2 ** -8);
    expect(Object.is(y[3], -0)).toBe(true);
    expect(y[4]).toBe(Infinity);
    expect(y[5]).toBe(-Infinity);
    expect(Number.isNaN(y[6])).toBe(true);
    expect(Math.abs(y[7] - 65504) / 65504).toBeLessThan(2 ** -8);
    for (let i = 0; i < x.length; i++) if (!Number.isNaN(x[i])) expect(y[i]).toBe(roundToBf16(x[i]));
  });
});

describe('values still arriving (onFirstAccess)', () => {
  it('the completion runs once, before the first read, write or op on the tensor; cancelled or disposed, never', () => {
    scope(() => {
      const t = Tensor.fromArray(new Float32Array([1, 2, 3]), [3]);
      let runs = 0;
      const arrive = () => {
        runs++;
        t.buffer.write(new Float32Array([7, 8, 9])); // its own entry is gone: no recursion
      };
      onFirstAccess(t, arrive);
      expect(t.shape).toEqual([3]); // metadata is no access
      expect(runs).toBe(0);
      expect(Array.from(F.scale(t, 2).toArray())).toEqual([14, 16, 18]); // an op's input
      expect(Array.from(t.toArray())).toEqual([7, 8, 9]);
      expect(runs).toBe(1);
      onFirstAccess(t, arrive);
      t.buffer.write(new Float32Array([0, 0, 0])); // a write completes it first, then overwrites
      expect([runs, ...Array.from(t.toArray())]).toEqual([2, 0, 0, 0]);
      onFirstAccess(t, arrive);
      cancelFirstAccess(t);
      expect([runs, ...Array.from(t.toArray())]).toEqual([2, 0, 0, 0]);
      const u = Tensor.zeros([2]);
      onFirstAccess(u, () => runs++);
      u.dispose();
      expect(runs).toBe(2);
    });
  });
});
