// Stage.loadBatch (batches loaded asynchronously, e.g. images decoded per batch): runAsync() loads the next
// optimizer step's micro-batches before it runs the current step, so loading overlaps computation; training is
// bit for bit the one makeBatch gives; run() and malformed stages are refused with a clear error; a failing load
// rejects runAsync with its error.
import { describe, expect, it } from 'vitest';
import { VwLmm } from '../../src/model/vwlmm';
import { Stage, Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from './support/tiny';

const { tokenizer, split, makeBatch } = tinyData(8);
const size = split.scenes.length;

/** Async stages of tinyStages, with an event log: `load <stage>/<first index>` when a batch starts loading. */
function asyncStages(events: string[]): Stage[] {
  return tinyStages(makeBatch, size).map((s, k) => {
    const { makeBatch: mb, ...rest } = s;
    return {
      ...rest,
      loadBatch: async (idx: number[]) => {
        events.push(`load ${k}:${idx.join(',')}`);
        await new Promise<void>((res) => setTimeout(res, 1)); // resolves on a later turn of the event loop
        return mb!(idx);
      },
    };
  });
}

const weights = (m: VwLmm) => [...m.namedParameters()].map(([n, p]) => [n, Array.from(p.toArray())] as const);

describe('Stage.loadBatch', () => {
  it('trains exactly as makeBatch does, with each step\'s batches loading while the previous step runs', async () => {
    const sync = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4), prefetched = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const syncLosses: number[] = [], asyncLosses: number[] = [];
    new Trainer(sync, tinyStages(makeBatch, size), { seed: 9, onLog: (r) => r.type === 'train' && syncLosses.push(r.loss as number) }).run();
    const events: string[] = [];
    await new Trainer(prefetched, asyncStages(events), {
      seed: 9,
      onLog: (r) => {
        if (r.type === 'train') {
          asyncLosses.push(r.loss as number);
          events.push(`step ${r.stage}:${r.step}`);
        }
      },
    }).runAsync();
    expect(asyncLosses).toEqual(syncLosses);
    expect(weights(prefetched)).toEqual(weights(sync));
    // 4 steps of stage a (1 batch each), 4 of stage b (2 micro-batches each): every batch loaded exactly once
    const loads = events.filter((e) => e.startsWith('load'));
    expect(loads.length).toBe(4 + 4 * 2);
    expect(new Set(loads).size).toBe(loads.length);
    // before step k finished, step k+1's batches had started loading (across the stage boundary too)
    const steps = events.filter((e) => e.startsWith('step'));
    expect(steps.length).toBe(8);
    for (let k = 0; k + 1 < steps.length; k++) {
      const loadsBefore = events.slice(0, events.indexOf(steps[k])).filter((e) => e.startsWith('load')).length;
      const neededThrough = (j: number) => (j < 4 ? j + 1 : 4 + 2 * (j - 3)); // batches of steps 0..j
      expect(loadsBefore, `before ${steps[k]}`).toBeGreaterThanOrEqual(neededThrough(k + 1));
    }
    sync.dispose();
    prefetched.dispose();
  });

  it('run() refuses it, a stage with both makeBatch and loadBatch is refused, and a failing load rejects runAsync', async () => {
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const stages = asyncStages([]);
    expect(() => new Trainer(model, stages, { seed: 1 }).run()).toThrow(/stage 'a' loads its batches asynchronously \(loadBatch\): train it with runAsync\(\), not run\(\)/);
    expect(() => new Trainer(model, [{ ...stages[0], makeBatch }], { seed: 1 })).toThrow(/has both makeBatch and loadBatch/);
    expect(() => new Trainer(model, [{ ...stages[0], loadBatch: 'x' as never }], { seed: 1 })).toThrow(/loadBatch/);
    let calls = 0;
    const failing: Stage = { ...stages[0], loadBatch: async (idx) => { if (++calls === 3) throw new Error('image 7.png could not be read'); return makeBatch(idx); } };
    await expect(new Trainer(model, [failing], { seed: 1 }).runAsync()).rejects.toThrow('image 7.png could not be read');
    model.dispose();
  });
});
