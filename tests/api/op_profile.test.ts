// The op profile (profileOps / opProfile, src/call_op.ts): one entry per device, op and input dtypes and shapes,
// with its call count and host wall time; off by default, reset when started, stopped by profileOps(false).
import { describe, expect, it } from 'vitest';
import { F, Tensor, opProfile, profileOps, scope } from '../../src';

describe('op profile', () => {
  it('counts every op call by device, op, input dtypes and shapes (and integer parameters), most time first', () => {
    expect(opProfile()).toEqual([]); // off until started
    scope(() => {
      const a = Tensor.fromArray(new Float32Array(6).fill(1), [2, 3]), b = Tensor.fromArray(new Float32Array(12).fill(1), [3, 4]);
      F.matmul(a, b); // not recorded
      expect(profileOps(true)).toEqual([]);
      F.matmul(a, b);
      F.matmul(a, b);
      F.matmul(b, Tensor.fromArray(new Float32Array(4).fill(1), [4, 1]));
      F.axpby(a, a, 2, 3);
      const entries = opProfile();
      const matmuls = entries.filter((e) => e.key.startsWith('cpu matmul '));
      expect(matmuls.map((e) => e.calls).sort()).toEqual([1, 2]);
      expect(matmuls.find((e) => e.calls === 2)!.key).toMatch(/^cpu matmul f32\[2,3\] f32\[3,4\]/);
      expect(entries.find((e) => e.key.startsWith('cpu axpby '))!.calls).toBe(1);
      expect(entries.reduce((n, e) => n + e.calls, 0)).toBe(4);
      for (const e of entries) expect(e.ms).toBeGreaterThanOrEqual(0);
      for (let i = 1; i < entries.length; i++) expect(entries[i - 1].ms).toBeGreaterThanOrEqual(entries[i].ms);
      expect(profileOps(false).reduce((n, e) => n + e.calls, 0)).toBe(4); // returns what was recorded, then stops
      F.matmul(a, b);
      expect(opProfile()).toEqual([]);
    });
    expect(() => profileOps('yes' as never)).toThrow(/profileOps: expected a boolean for on but received/);
  });
});
