// The demo's visual-word figures (src/demo/demo.ts visualWordStats): agreement with the objects' colour and shape
// words, its chance level (the best constant word on the same patches), and the mean entropy that shows a collapse.
import { describe, expect, it } from 'vitest';
import { visualWordStats } from '../../src/demo/demo';
import { COLOURS } from '../../src/data/sort_of_clevr';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig, tinyData } from '../train/support/tiny';

describe('visual-word statistics of the demo', () => {
  it('a zero vm_head: uniform words (entropy log V), the lowest id everywhere, agreement 0 against a positive chance', () => {
    const { tokenizer, split } = tinyData(6);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 3);
    m.vm_head!.weight.buffer.write(new Float32Array(m.vm_head!.weight.size));
    const s = visualWordStats(m, tokenizer, split);
    expect(s.maxEntropy).toBeCloseTo(Math.log(tokenizer.vocabSize), 12);
    expect(Math.abs(s.meanEntropy! - s.maxEntropy)).toBeLessThan(1e-5);
    expect(s.agreement).toBe(0); // every patch's word is id 0, a special token
    expect(s.chance!).toBeGreaterThan(0);
    expect(s.chance!).toBeLessThanOrEqual(1);
    expect([...COLOURS, 'square', 'circle']).toContain(s.chanceWord);
    m.dispose();
  });

  it('a model without vm_head has no visual words', () => {
    const { tokenizer, split } = tinyData(2);
    const m = VwLmm.create({ ...tinyConfig(tokenizer.vocabSize, 0) }, 3);
    expect(m.vm_head).toBeNull(); // vmWeight 0 without PIF: plain LLaVA
    const s = visualWordStats(m, tokenizer, split);
    expect([s.agreement, s.chance, s.meanEntropy]).toEqual([null, null, null]);
    m.dispose();
  });
});
