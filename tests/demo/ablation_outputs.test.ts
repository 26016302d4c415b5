// What `vwlmm demo --ablation` writes for each arm (README's list): vw/ has its loss curve and the visual-word picture,
// llava/ (vmWeight 0, no vm_head) its loss curve and no picture; both their checkpoint, metrics and answers.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { runDemo } from '../../src/demo/demo';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('demo-ablation');

describe('demo --ablation outputs', () => {
  it('each arm its checkpoint, metrics, answers and loss curve; the visual words only where there is a vm_head', async () => {
    const out = tmp();
    const recipe = tinyRecipe({ seed: 3, trainImages: 8, evalEvery: 100, steps: [1, 1, 1] });
    await runDemo({ outDir: out, seed: recipe.seed, ablation: true, scale: 1, quiet: true, recipe });
    for (const arm of ['vw', 'llava'])
      for (const f of ['checkpoint/config.json', 'metrics.jsonl', 'loss_curve.png', 'answers/test.jsonl']) expect(fs.existsSync(path.join(out, arm, f)), `${arm}/${f}`).toBe(true);
    expect(fs.existsSync(path.join(out, 'vw', 'visual_words.png'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'llava', 'visual_words.png'))).toBe(false);
    expect(fs.readFileSync(path.join(out, 'llava', 'loss_curve.png')).subarray(1, 4).toString()).toBe('PNG');
  }, 120_000);
});
