// The paper's schedule at demo scale (paperSchedule, issue 13): a text stage that trains the LLM alone (embeddings,
// decoder, lm_head) on the scene language, then stage 1 with the LLM frozen while the projector and vm_head learn.
// Checked on the weights of tiny runs that stop after each stage: what each stage moves, and what it leaves alone.
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { paperSchedule, Recipe, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('paper-schedule');
const tiny: Recipe = paperSchedule(tinyRecipe({ trainImages: 10, evalEvery: 0, steps: [2, 3, 0], text: { steps: 3, batchSize: 4, lr: 3e-3 } }));

type Weights = Map<string, number[]>;
async function trained(r: Recipe, dir: string): Promise<{ weights: Weights; stages: string[] }> {
  const stages: string[] = [];
  const res = await runRecipe(r, { outDir: dir, onLog: (rec) => { if (rec.type === 'train' && stages[stages.length - 1] !== rec.stage) stages.push(String(rec.stage)); } });
  const weights = new Map([...res.model.namedParameters()].map(([n, t]) => [n, Array.from(t.toArray())]));
  res.model.dispose();
  return { weights, stages };
}
const part = (w: Weights, re: RegExp) => [...w].filter(([n]) => re.test(n));
const LLM = /^(model\.(embed_tokens|layers|norm)\.|lm_head\.)/;
const HEADS = /^(model\.mm_projector\.|vm_head\.)/;
const TOWER = /^model\.vision_tower\./;

describe(`the paper's schedule (paperSchedule)`, () => {
  it('the text stage trains only the LLM; stage 1 then trains the projector and vm_head with the LLM frozen', async () => {
    const dir = tmp();
    const none = await trained({ ...tiny, text: { ...tiny.text!, steps: 0 }, stage1: { ...tiny.stage1, steps: 0 } }, path.join(dir, 'none'));
    const text = await trained({ ...tiny, stage1: { ...tiny.stage1, steps: 0 } }, path.join(dir, 'text'));
    const both = await trained(tiny, path.join(dir, 'both'));
    expect(text.stages).toEqual(['text']);
    expect(both.stages).toEqual(['text', 'captions-frozen-tower', 'captions']);
    const same = (a: Weights, b: Weights, re: RegExp) => part(a, re).every(([n, v]) => v.every((x, i) => x === b.get(n)![i]));
    // text: the LLM moves, nothing else does (the tower is stage 0's in all three runs)
    expect(same(text.weights, none.weights, LLM)).toBe(false);
    expect(same(text.weights, none.weights, HEADS)).toBe(true);
    expect(same(text.weights, none.weights, TOWER)).toBe(true);
    // stage 1: the LLM stays where the text stage left it; the projector and vm_head learn
    expect(same(both.weights, text.weights, LLM)).toBe(true);
    expect(same(both.weights, text.weights, /^model\.mm_projector\./)).toBe(false);
    expect(same(both.weights, text.weights, /^vm_head\./)).toBe(false);
  });

  it('runs the PIF variant and the detached target, which the model then carries in its config', async () => {
    for (const v of [{ pif: true }, { detachTarget: true }]) {
      const res = await runRecipe({ ...tiny, ...v, text: { ...tiny.text!, steps: 1 } }, { outDir: tmp() });
      expect(res.model.config).toMatchObject({ pif: !!v.pif, detachTarget: !!v.detachTarget, vmWeight: 1 });
      expect(Number.isFinite(res.val.accuracy)).toBe(true);
      res.model.dispose();
    }
  });
});
