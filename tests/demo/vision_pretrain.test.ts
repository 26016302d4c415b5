// Stage 0 of the demo (src/demo/vision_pretrain.ts): it trains the vision tower only, frees everything it
// made, leaves the tower frozen, and stops on a stop request with TrainingInterrupted (no checkpoint).
import { describe, expect, it } from 'vitest';
import { memoryStats } from '../../src';
import { DEFAULT_RECIPE, recipeConfig } from '../../src/demo/recipe';
import { makeSplit, makeTokenizer } from '../../src/demo/task';
import { pretrainVisionTower } from '../../src/demo/vision_pretrain';
import { VwLmm } from '../../src/model/vwlmm';
import { Generator } from '../../src/random';
import { TrainingInterrupted } from '../../src/train/interrupt';

function setup() {
  const { tokenizer } = makeTokenizer();
  const cfg = recipeConfig(DEFAULT_RECIPE, tokenizer.vocabSize);
  const model = VwLmm.create(cfg, 3);
  const split = makeSplit(24, new Generator(7), { nonRelational: 1, relational: 1 });
  return { cfg, model, split };
}

const snapshot = (ps: { toArray(): ArrayLike<number> }[]) => ps.map((p) => Float32Array.from(p.toArray()));
const changed = (a: Float32Array[], b: Float32Array[]) => a.some((x, i) => x.some((v, j) => v !== b[i][j]));

describe('demo stage 0: vision tower pretraining', () => {
  it('trains the tower only, frees its read-out and optimizer, and leaves the tower frozen', async () => {
    const { cfg, model, split } = setup();
    const tower = model.visionTower.vision_model.parameters();
    const rest = model.parameters().filter((p) => !tower.includes(p));
    const tower0 = snapshot(tower), rest0 = snapshot(rest);
    const live0 = memoryStats().cpu.liveBuffers;
    const logs: Record<string, unknown>[] = [];
    const r = await pretrainVisionTower(model, split, { steps: 6, batchSize: 4, lr: 3e-3, seed: 1, mean: cfg.image.mean, std: cfg.image.std, onLog: (x) => logs.push(x), logEvery: 3 }, split);
    expect(changed(snapshot(tower), tower0)).toBe(true);
    expect(changed(snapshot(rest), rest0)).toBe(false);
    expect(memoryStats().cpu.liveBuffers).toBe(live0);
    expect(tower.every((p) => !p.requiresGrad)).toBe(true);
    expect(logs.map((l) => l.step)).toEqual([3, 6]);
    expect(logs.every((l) => Number.isFinite(l.loss as number))).toBe(true);
    expect(Object.keys(r.accuracy).sort()).toEqual(['closest', 'count', 'furthest', 'left', 'shape', 'top']);
    for (const a of Object.values(r.accuracy)) {
      expect(a).toBeGreaterThanOrEqual(0);
      expect(a).toBeLessThanOrEqual(1);
    }
    model.dispose();
  });

  it('a stop request ends it with TrainingInterrupted (no checkpoint) and frees what it made', async () => {
    const { cfg, model, split } = setup();
    const live0 = memoryStats().cpu.liveBuffers;
    let calls = 0;
    const run = pretrainVisionTower(model, split, { steps: 50, batchSize: 2, lr: 3e-3, seed: 1, mean: cfg.image.mean, std: cfg.image.std, stopRequested: () => (++calls === 2 ? 'SIGTERM' : null) });
    const err = await run.then(() => null, (e) => e);
    expect(err).toBeInstanceOf(TrainingInterrupted);
    expect(err.exitCode).toBe(143);
    expect(err.checkpoint).toBeNull();
    expect(err.message).toMatch(/stage 0\) step 2\/50/);
    expect(memoryStats().cpu.liveBuffers).toBe(live0);
    model.dispose();
  });
});
