// runRecipe's pretrainedTower: a second run of the same recipe and seed that takes the first run's stage-0
// tower (as the demo's --ablation does) ends bit for bit where the run that redoes stage 0 ends, and a tower
// from another recipe is refused by name, its run's model released.
// validate: false leaves out the validation split's answers at the end (the demo scores its test.json instead).
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { memoryStats } from '../../src';
import { Recipe, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('recipe');
const tiny: Recipe = tinyRecipe({ trainImages: 12, evalEvery: 0, steps: [3, 2, 2] });
const weights = (m: { namedParameters(): Map<string, { toArray(): ArrayLike<number> }> }) => new Map([...m.namedParameters()].map(([n, t]) => [n, Array.from(t.toArray())]));

describe('runRecipe pretrainedTower', () => {
  it('gives the same model as running stage 0 again, and refuses a tower of another shape', async () => {
    const dir = tmp();
    const first = await runRecipe(tiny, { outDir: path.join(dir, 'a') });
    expect(first.tower).not.toBeNull();
    first.model.dispose();
    const ablation = { ...tiny, vmWeight: 0 };
    const redo = await runRecipe(ablation, { outDir: path.join(dir, 'b') });
    // (and validate: false skips the final answers to the validation split, which change nothing of the model)
    const shared = await runRecipe(ablation, { outDir: path.join(dir, 'c'), pretrainedTower: first.tower!, validate: false });
    expect(shared.tower).toBe(first.tower);
    expect(weights(shared.model)).toEqual(weights(redo.model));
    expect([redo.val.count, shared.val]).toEqual([tiny.testImages * 20, null]);
    redo.model.dispose();
    shared.model.dispose();
    const wider = { ...tiny, model: { ...tiny.model, visionFfn: 20 } };
    const live = memoryStats().cpu.liveBuffers;
    await expect(runRecipe(wider, { outDir: path.join(dir, 'd'), pretrainedTower: first.tower! })).rejects.toThrow(/pretrainedTower has no \d+-value 'vision_model\.encoder\.layers\.0\.mlp\.fc1\.weight'/);
    expect(memoryStats().cpu.liveBuffers).toBe(live); // the refused run's model is released, not leaked
  });
});
