// A refused resume of the demo leaves the finished run as it was: the data set its checkpoint trained on, the stage
// files and reproduce.sh (which reproduce it bit for bit) are not written over. runDemo checks the checkpoint against
// the recipe and the data set before it writes (or calibrates); runRecipe writes the reproduce files of a resume only
// once the Trainer has taken it.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { writeSortOfClevr } from '../../src/data/sort_of_clevr';
import { runDemo } from '../../src/demo/demo';
import { Recipe, recipeStagePlan, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';
import { changed, snapshot } from '../support/snapshot';

const tmp = tempDirs('resume-refused');
const tiny: Recipe = tinyRecipe({ seed: 3, trainImages: 8, evalEvery: 100, steps: [1, 2, 2] });


describe('a refused demo resume', () => {
  // a finished run laid out as the demo lays it out: <out>/data (writeSortOfClevr), <out>/vw (runRecipe with reproduce)
  const finished = async () => {
    const out = tmp(), data = path.join(out, 'data');
    writeSortOfClevr(data, { train: tiny.trainImages, test: tiny.testImages, seed: tiny.seed });
    (await runRecipe(tiny, { outDir: path.join(out, 'vw'), reproduce: { dataDir: data } })).model.dispose();
    return { out, before: snapshot(out) };
  };

  it('runDemo: other steps or another data set are refused before anything is written', async () => {
    const { out, before } = await finished();
    const resume = (recipe: Recipe) => runDemo({ outDir: out, seed: tiny.seed, ablation: false, scale: 1, quiet: true, resume: true, recipe });
    // the trial's case: another --scale, other steps (and here the same data set)
    await expect(resume({ ...tiny, stage2: { ...tiny.stage2, steps: 4 } })).rejects.toThrow(/resume: stage 'questions' had 2 steps in the checkpoint's run .*, this run has 4 .*--scale/);
    expect(changed(before, snapshot(out))).toEqual([]);
    // the same steps on another data set (a --scale whose steps round alike): the data set would change under the checkpoint
    await expect(resume({ ...tiny, trainImages: 9 })).rejects.toThrow(/meta\.json describes the data set the checkpoint trained on \(trainImages 8\), this run would write trainImages 9 over it/);
    expect(changed(before, snapshot(out))).toEqual([]);
  });

  it('runRecipe: a resume the Trainer refuses leaves the stage files and reproduce.sh', async () => {
    const { out, before } = await finished();
    // the same stages and steps, another batch size: the Trainer's own check refuses it as it starts
    const other = { ...tiny, stage2: { ...tiny.stage2, batchSize: 2 } };
    expect(recipeStagePlan(other)).toEqual(recipeStagePlan(tiny));
    await expect(runRecipe(other, { outDir: path.join(out, 'vw'), resume: true, reproduce: { dataDir: path.join(out, 'data') } })).rejects.toThrow(/resume: stage 'questions' had/);
    // the Trainer truncates the metrics log to the checkpoint's step as it takes a resume: the same log here
    expect(changed(before, snapshot(out))).toEqual([]);
  });
});
