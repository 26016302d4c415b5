// The loss curve of a run: drawn from the finite losses of its metrics, and skipped (no file, false) when there are
// none, as in a run whose every step was skipped as non-finite (it failed at its end with "nothing to plot").
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { plotMetrics } from '../../src/viz/plot';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('plot');
const metrics = (dir: string, rows: object[]) => {
  const f = path.join(dir, 'metrics.jsonl');
  fs.writeFileSync(f, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return f;
};

describe('plotMetrics', () => {
  it('draws the finite losses; with none it writes no file and says so', async () => {
    const dir = tmp();
    const png = path.join(dir, 'curve.png');
    // JSON writes a NaN loss as null: a step skipped as non-finite
    const some = metrics(dir, [{ type: 'train', globalStep: 1, loss: null }, { type: 'train', globalStep: 2, loss: 2.5, ce: 2, kl: 0.5 }, { type: 'eval', globalStep: 2, accuracy: 0.5 }]);
    expect(await plotMetrics(some, png, 'run')).toBe(true);
    expect((await sharp(png).metadata()).format).toBe('png');
    fs.rmSync(png);
    const none = metrics(dir, [{ type: 'train', globalStep: 1, loss: null }, { type: 'train', globalStep: 2, loss: null }, { type: 'summary', skippedSteps: 2 }]);
    expect(await plotMetrics(none, png, 'run')).toBe(false);
    expect(fs.existsSync(png)).toBe(false);
  });
});
