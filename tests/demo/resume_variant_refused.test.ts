// A demo --resume with another --pif, --detach-target or --dtype than the run was started with, or an --ablation arm
// whose checkpoint is not a vmWeight-0 run, is refused before anything is written, naming the flag, the recorded value
// and the given one: it was taken (mid-training the run switched to PIF; a finished run was evaluated again and its
// answers written over). The variant is read from the checkpoint's config.json (vm_pif, vm_detach_target, vm_weight), the
// compute dtype from the recipe_run.json runRecipe writes into each checkpoint (a checkpoint without it is not checked).
// A resume with the flags the run was started with goes on.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { writeSortOfClevr } from '../../src/data/sort_of_clevr';
import { DemoOptions, runDemo } from '../../src/demo/demo';
import { checkRecipeResume, Recipe, RECIPE_RUN_FILE, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';
import { changed, snapshot } from '../support/snapshot';

const tmp = tempDirs('resume-variant');
const tiny: Recipe = tinyRecipe({ seed: 5, trainImages: 8, evalEvery: 100, steps: [1, 1, 1] });


/** A finished run laid out as the demo lays it out (<out>/data, <out>/vw), trained with these flags. */
async function finished(o: Pick<DemoOptions, 'pif' | 'detachTarget' | 'dtype'> = {}) {
  const out = tmp(), data = path.join(out, 'data');
  const r = { ...tiny, ...(o.pif !== undefined ? { pif: o.pif } : {}), ...(o.detachTarget !== undefined ? { detachTarget: o.detachTarget } : {}) };
  writeSortOfClevr(data, { train: tiny.trainImages, test: tiny.testImages, seed: tiny.seed });
  (await runRecipe(r, { outDir: path.join(out, 'vw'), dtype: o.dtype, reproduce: { dataDir: data } })).model.dispose();
  return { out, before: snapshot(out) };
}

const resume = (out: string, o: Partial<DemoOptions> = {}) => runDemo({ outDir: out, seed: tiny.seed, ablation: false, scale: 1, quiet: true, resume: true, recipe: tiny, ...o });

describe('a demo resume with other flags than the run had', () => {
  it('--pif, --detach-target, --dtype added to a plain fp32 run, or an ablation arm that is not vmWeight 0: refused, nothing written', async () => {
    const { out, before } = await finished();
    expect(JSON.parse(fs.readFileSync(path.join(out, 'vw', 'checkpoint', RECIPE_RUN_FILE), 'utf8'))).toEqual({ dtype: 'float32' });
    await expect(resume(out, { pif: true })).rejects.toThrow(/^resume: the checkpoint \S+ was trained with vm_pif false \(config\.json\), this run has vm_pif true \(with --pif\): the run would not continue exactly; resume without --pif/);
    await expect(resume(out, { detachTarget: true })).rejects.toThrow(/was trained with vm_detach_target false \(config\.json\), this run has vm_detach_target true \(with --detach-target\).*resume without --detach-target/);
    await expect(resume(out, { dtype: 'bfloat16' })).rejects.toThrow(/was trained in compute dtype float32 \(--dtype fp32, recipe_run\.json\), this run would train in bfloat16 \(--dtype bf16\).*resume with --dtype fp32/);
    // --ablation: llava/ is checked against the vmWeight-0 arm (here it holds a copy of the vmWeight-1 run)
    fs.cpSync(path.join(out, 'vw'), path.join(out, 'llava'), { recursive: true });
    const withLlava = snapshot(out);
    await expect(resume(out, { ablation: true })).rejects.toThrow(/llava\/checkpoint was trained with vm_weight 1 \(config\.json\), this run has vmWeight 0/);
    expect(changed(withLlava, snapshot(out))).toEqual([]);
    fs.rmSync(path.join(out, 'llava'), { recursive: true });
    expect(changed(before, snapshot(out))).toEqual([]);
    // runRecipe refuses it on its own, before it trains
    await expect(runRecipe({ ...tiny, pif: true }, { outDir: path.join(out, 'vw'), resume: true })).rejects.toThrow(/vm_pif false .*this run has vm_pif true/);
    expect(changed(before, snapshot(out))).toEqual([]);
    // a checkpoint written before the dtype was recorded: its dtype is not checked
    fs.rmSync(path.join(out, 'vw', 'checkpoint', RECIPE_RUN_FILE));
    expect(() => checkRecipeResume(tiny, path.join(out, 'vw'), { dtype: 'bfloat16' })).not.toThrow();
  });

  it('a --pif --detach-target --dtype bf16 run: resumed without them refused, with them it goes on', async () => {
    const { out, before } = await finished({ pif: true, detachTarget: true, dtype: 'bfloat16' });
    await expect(resume(out)).rejects.toThrow(/vm_pif true \(config\.json\), this run has vm_pif false \(without --pif\).*resume with --pif/);
    await expect(resume(out, { pif: true })).rejects.toThrow(/vm_detach_target true \(config\.json\), this run has vm_detach_target false \(without --detach-target\).*resume with --detach-target/);
    await expect(resume(out, { pif: true, detachTarget: true })).rejects.toThrow(/compute dtype bfloat16 \(--dtype bf16, recipe_run\.json\), this run would train in float32 \(no --dtype: the default on the CPU\).*resume with --dtype bf16/);
    expect(changed(before, snapshot(out))).toEqual([]);
    const res = await resume(out, { pif: true, detachTarget: true, dtype: 'bfloat16' });
    expect(fs.existsSync(res!.answers)).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'vw', 'checkpoint', 'config.json'), 'utf8'))).toMatchObject({ vm_pif: true, vm_detach_target: true });
  });
});
