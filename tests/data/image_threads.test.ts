// The image threads (API trial findings): their options checked when made (workers at most 64, as
// VWLMM_IMAGE_WORKERS); a script that hands SceneImageWriter files and never flushes
// exits only once they are written (the threads stay ref'd while writes are pending); and the CLIP aspect is named as LLaVA's image_aspect_ratio ('square'), with
// 'resize_crop' kept as its alias.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { ClipImageWorkers } from '../../src/data/clip_workers';
import { clipView, loadImage, preprocessClip } from '../../src/data/images';
import { SceneImageWriter } from '../../src/data/scene_writer';
import { encodePng } from '../../src/data/sort_of_clevr';
import { rngFor } from '../support/random';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('image-threads');
const rng = rngFor('image_threads');
const root = path.resolve(__dirname, '..', '..');

describe('options', () => {
  it('ClipImageWorkers and SceneImageWriter check their options when made, not at the first image', async () => {
    const img = { width: 2, height: 1, data: new Uint8Array(6) };
    await expect(preprocessClip(img, { size: 2, aspct: 'pad' } as never)).rejects.toThrow("preprocessClip: unknown option 'aspct' (did you mean 'aspect'?); known: size, mean, std, aspect");
    await expect(clipView(img, { size: 2, crop: true } as never)).rejects.toThrow("clipView: unknown option 'crop'");
    expect(() => new ClipImageWorkers({ size: -5 })).toThrow('ClipImageWorkers: size must be a positive integer, got -5');
    expect(() => new ClipImageWorkers({ size: 8, aspect: 'crop' as never })).toThrow("ClipImageWorkers: aspect must be 'pad' or 'square' (alias 'resize_crop'), got 'crop' (string)");
    expect(() => new ClipImageWorkers({ size: 8, std: [0, 1, 1] })).toThrow('ClipImageWorkers: std must be positive and mean finite');
    expect(() => new ClipImageWorkers({ size: 8, aspct: 'pad' } as never)).toThrow("ClipImageWorkers: unknown option 'aspct' (did you mean 'aspect'?)");
    expect(() => new ClipImageWorkers({ size: 8 }, { worker: 2 } as never)).toThrow("ClipImageWorkers: unknown option 'worker' (did you mean 'workers'?); known: workers");
    // a thread each: a count far above the cores is refused, as VWLMM_IMAGE_WORKERS above 64 is, rather than started
    expect(() => new ClipImageWorkers({ size: 8 }, { workers: 65 })).toThrow('ClipImageWorkers: workers must be at most 64, got 65');
    expect(() => new SceneImageWriter({ workers: 1e6 })).toThrow('SceneImageWriter: workers must be at most 64, got 1000000');
    expect(() => new SceneImageWriter({ threads: 2 } as never)).toThrow("SceneImageWriter: unknown option 'threads'; known: workers");
  });
});

describe('SceneImageWriter without flush()', () => {
  it('a script that never flushes exits with every file written', () => {
    const dir = tmp();
    const script = path.join(dir, 'no_flush.ts');
    // 70 files: one full chunk of 64 sent at once and a partial one that only the next turn of the event loop sends
    fs.writeFileSync(script, [
      `const { SceneImageWriter } = require(${JSON.stringify(path.join(root, 'src', 'data', 'scene_writer'))});`,
      `const { writeSortOfClevr } = require(${JSON.stringify(path.join(root, 'src', 'data', 'sort_of_clevr'))});`,
      'const writer = new SceneImageWriter({ workers: 2 });',
      `writeSortOfClevr(${JSON.stringify(path.join(dir, 'data'))}, { train: 60, test: 10, nonRelational: 1, relational: 1, writer });`,
      'console.log("pending " + writer.pending);',
    ].join('\n'));
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('pending 70'); // not written when the script's code ended: the threads write them after
    const pngs = fs.readdirSync(path.join(dir, 'data', 'images')).filter((f) => f.endsWith('.png'));
    expect(pngs).toHaveLength(70);
    for (const f of pngs) expect(fs.statSync(path.join(dir, 'data', 'images', f)).size, f).toBeGreaterThan(0);
  }, 120_000);
});

describe("aspect 'square'", () => {
  it("is LLaVA's name for resize-and-centre-crop; 'resize_crop' is its alias, and the default", async () => {
    const dir = tmp();
    const data = new Uint8Array(13 * 7 * 3);
    for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
    fs.writeFileSync(path.join(dir, 'a.png'), encodePng(data, 13, 7));
    const img = await loadImage(path.join(dir, 'a.png'));
    const square = await preprocessClip(img, { size: 5, aspect: 'square' });
    expect(await preprocessClip(img, { size: 5, aspect: 'resize_crop' })).toEqual(square);
    expect(await preprocessClip(img, { size: 5 })).toEqual(square);
    expect(await preprocessClip(img, { size: 5, aspect: 'pad' })).not.toEqual(square);
    expect(await clipView(img, { size: 5, aspect: 'square' })).toEqual(await clipView(img, { size: 5, aspect: 'resize_crop' }));
    await expect(preprocessClip(img, { size: 5, aspect: 'crop' as never })).rejects.toThrow("preprocessClip: aspect must be 'pad' or 'square' (alias 'resize_crop'), got 'crop' (string)");
    const pool = new ClipImageWorkers({ size: 5, aspect: 'square' }, { workers: 1 });
    try {
      expect(await pool.pixels(path.join(dir, 'a.png'))).toEqual(square);
    } finally {
      await pool.close();
    }
  }, 60_000);
});
