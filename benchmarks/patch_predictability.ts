// How predictable a patch's object is from the patches before it (issue 13). The KL of VW-LMM matches the visual word
// of patch t+1 to the LLM's prediction from patches <= t, so a visual word that names patch t+1's object costs KL
// unless that object already shows in an earlier patch. Counts, over generated Sort-of-CLEVR scenes, the object
// patches (as visualWordStats counts them: objectAtPatch, >= 1/8 of the patch covered) whose object covers some pixel
// of an earlier patch in the image tokens' raster order, and of the left or upper neighbour, per patch size.
//
//   npx tsx benchmarks/patch_predictability.ts [--scenes 2000] [--patches 15,5]
import { Generator } from '../src';
import { generateScene, shapeContains } from '../src/data/sort_of_clevr';
import type { Scene } from '../src/data/sort_of_clevr';
import { objectAtPatch } from '../src/demo/task';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['scenes', 'patches']);

const gen = new Generator(7);
const scenes = Array.from({ length: numArg('scenes', 2000, { integer: true, min: 1 }) }, () => generateScene(gen));

function covers(sc: Scene, k: number, row: number, col: number, patch: number): boolean {
  const o = sc.objects[k];
  for (let y = row * patch; y < (row + 1) * patch; y++)
    for (let x = col * patch; x < (col + 1) * patch; x++) if (shapeContains(o.shape, x - o.cx, y - o.cy)) return true;
  return false;
}

for (const patch of arg('patches', '15,5').split(',').map(Number)) {
  const grid = 75 / patch;
  let total = 0, earlier = 0, neighbour = 0;
  for (const sc of scenes)
    for (let r = 0; r < grid; r++)
      for (let c = 0; c < grid; c++) {
        const k = objectAtPatch(sc, r, c, patch);
        if (k < 0) continue;
        total++;
        let seen = false;
        for (let i = 0; i < r * grid + c && !seen; i++) seen = covers(sc, k, Math.floor(i / grid), i % grid, patch);
        if (seen) earlier++;
        if ((c > 0 && covers(sc, k, r, c - 1, patch)) || (r > 0 && covers(sc, k, r - 1, c, patch))) neighbour++;
      }
  console.log(JSON.stringify({ patch, grid: `${grid}x${grid}`, scenes: scenes.length, objectPatches: total,
    objectSeenEarlier: +(earlier / total).toFixed(4), objectInLeftOrUpperNeighbour: +(neighbour / total).toFixed(4) }));
}
