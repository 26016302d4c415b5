/// <reference types="node" preserve="true" />
// Public API of the Sort-of-CLEVR demo: the whole run (`vwlmm demo`) and the recipe it trains by.
// Re-exported by the package root and by 'vwlmm/demo'.
export { runDemo, visualWordAgreement, visualWordStats, removeDemoRun } from './demo';
export type { DemoResult, DemoRunResult, VisualWordStats, DemoOptions } from './demo';
export type { Calibration, DemoEstimate } from './estimate';
export { ablationRecipe, checkRecipeResume, DEFAULT_RECIPE, paperSchedule, RECIPE_RUN_FILE, recipeConfig, recipeStagePlan, runRecipe, validationSplit } from './recipe';
export type { Recipe, RecipeResult, RunRecipeOptions } from './recipe';
// types in the signatures above (RecipeResult's splits and accuracy)
export type { SplitData, TaskSample } from './task';
export type { Accuracy } from './evaluate';
