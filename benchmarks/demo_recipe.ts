// The driver behind the demo-recipe experiments in benchmarks/RESULTS.md: DEFAULT_RECIPE with the given
// overrides (deep-merged JSON), trained by runRecipe; prints the stage-0 read-out accuracies and every
// evaluation as they come, then the per-kind accuracies on the validation split (the recipe's tuning split).
//
//   npx tsx benchmarks/demo_recipe.ts '{"stage2":{"steps":3000}}' [--out /tmp/recipe-run]
// Data-parallel (the recipe's batches are the global ones, each rank takes its share; rank 0 prints):
//   VWLMM_NUM_THREADS=1 mpirun -np 2 --oversubscribe npx tsx benchmarks/demo_recipe.ts '{}'
import { DEFAULT_RECIPE, runRecipe } from '../src/demo/recipe';
import { initProcessGroup, launchEnv } from '../src/distributed';
import { arg, declareFlags, overridesArg, recipeWith } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['out']);

const recipe = recipeWith(DEFAULT_RECIPE, overridesArg());
const t0 = Date.now();
const at = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
(async () => {
  const group = launchEnv().worldSize > 1 ? await initProcessGroup({ backend: 'mpi' }) : null;
  const lead = (group?.rank ?? 0) === 0;
  const res = await runRecipe(recipe, {
    outDir: arg('out', '/tmp/vwlmm-recipe-run'),
    handleSignals: true,
    processGroup: group ?? undefined,
    onLog: (rec) => {
      if (lead && (rec.done || rec.type === 'eval')) console.log(at(), JSON.stringify(rec));
    },
  });
  const kinds = Object.fromEntries(Object.entries(res.val.categories).map(([k, v]) => [k, v.accuracy]));
  if (lead) console.log('final', at(), JSON.stringify({ seconds: res.seconds, ranks: group?.worldSize ?? 1, groups: res.val.groups, kinds }));
  res.model.dispose();
  group?.destroy();
})();
