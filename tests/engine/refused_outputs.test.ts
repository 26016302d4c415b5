// An op its kernel refuses (an id out of range, a key-mask value, a dtype pair the product does not take) frees the
// outputs it made for the call: a caller outside any scope keeps no buffer until the garbage collector runs (before,
// an 8 MiB embedding output per refused call piled up in a synchronous loop).
import { describe, expect, it } from 'vitest';
import { F, memoryStats, Tensor } from '../../src';

const live = () => memoryStats().cpu.liveBuffers;

describe('a refused op leaves no buffer behind', () => {
  const cases: [string, () => { inputs: Tensor[]; call: () => unknown; error: RegExp }][] = [
    ['F.embedding, an id past the table', () => {
      const table = Tensor.fromArray(new Float32Array(12), [4, 3]), ids = Tensor.fromArray(Int32Array.from([1, 4]), [2]);
      return { inputs: [table, ids], call: () => F.embedding(ids, table), error: /id|range/i };
    }],
    ['F.embedding, a negative id', () => {
      const table = Tensor.fromArray(new Float32Array(12), [4, 3]), ids = Tensor.fromArray(Int32Array.from([-1]), [1]);
      return { inputs: [table, ids], call: () => F.embedding(ids, table), error: /id|range/i };
    }],
    ['F.gatherRows, an index past the rows', () => {
      const src = Tensor.fromArray(new Float32Array(6), [3, 2]), idx = Tensor.fromArray(Int32Array.from([0, 7]), [2]);
      return { inputs: [src, idx], call: () => F.gatherRows(src, idx), error: /outside/ };
    }],
    ['F.attention, a key-mask value of 2', () => {
      const q = Tensor.fromArray(new Float32Array(1 * 3 * 2 * 4), [1, 3, 2, 4]);
      const mask = Tensor.fromArray(Int32Array.from([1, 2, 1]), [1, 3]);
      return { inputs: [q, mask], call: () => F.attention(q, q, q, { causal: true, keyMask: mask }), error: /mask/i };
    }],
    ['F.matmul, float32 by bfloat16', () => {
      const a = Tensor.fromArray(new Float32Array(6), [2, 3]), b = Tensor.fromArray(new Float32Array(6), [3, 2]).to('cpu', 'bfloat16');
      return { inputs: [a, b], call: () => F.matmul(a, b), error: /dtype|bfloat16|float32/i };
    }],
    ['F.patchEmbed, bfloat16 images and a float32 weight', () => {
      const images = Tensor.fromArray(new Float32Array(1 * 3 * 4 * 4), [1, 3, 4, 4]).to('cpu', 'bfloat16'), w = Tensor.fromArray(new Float32Array(5 * 3 * 2 * 2), [5, 3, 2, 2]);
      return { inputs: [images, w], call: () => F.patchEmbed(images, w), error: /dtype|bfloat16|float32/i };
    }],
  ];
  for (const [what, make] of cases) {
    it(what, () => {
      const { inputs, call, error } = make();
      const before = live();
      for (let i = 0; i < 3; i++) expect(call).toThrow(error);
      expect(live()).toBe(before);
      for (const t of inputs) t.dispose();
    });
  }
});
