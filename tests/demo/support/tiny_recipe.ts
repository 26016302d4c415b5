// The demo's recipe at a size the tests run in seconds: the model shrunk, a few images, each stage's steps as given.
import { DEFAULT_RECIPE, Recipe } from '../../../src/demo/recipe';

export const TINY_MODEL: Recipe['model'] = { ...DEFAULT_RECIPE.model, d: 16, ffn: 24, heads: 2, visionD: 12, visionFfn: 16, visionHeads: 2, visionLayers: 2 };

/**
 * DEFAULT_RECIPE with TINY_MODEL, 2 test images, 4 evaluation questions and batches of 4; `steps` are stage 0, 1 and 2's
 * steps, `frozenSteps` stage 0's (default 1); `stage2` adds to stage 2's settings; the rest overrides the recipe's.
 */
export function tinyRecipe(o: Partial<Omit<Recipe, 'stage2'>> & { steps: [number, number, number]; frozenSteps?: number; stage2?: Partial<Recipe['stage2']> }): Recipe {
  const { steps: [s0, s1, s2], frozenSteps = 1, stage2, ...rest } = o;
  return {
    ...DEFAULT_RECIPE, testImages: 2, evalQuestions: 4, model: TINY_MODEL, ...rest,
    stage0: { ...DEFAULT_RECIPE.stage0, steps: s0, batchSize: 4, frozenSteps },
    stage1: { ...DEFAULT_RECIPE.stage1, steps: s1, batchSize: 4 },
    stage2: { ...DEFAULT_RECIPE.stage2, steps: s2, batchSize: 4, ...stage2 },
  };
}
