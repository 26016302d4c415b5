// SceneImageWriter (src/data/scene_writer.ts): Sort-of-CLEVR's PNG files written on worker threads give the bytes the
// caller's thread writes; flush() waits for them, names a file that cannot be written; writeSortOfClevr with a writer
// writes the same data set.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { SceneImageWriter, spareImageWorkers } from '../../src/data/scene_writer';
import { encodePng, IMAGE_SIZE, renderScene, sortOfClevrSplit, writeSortOfClevr } from '../../src/data/sort_of_clevr';
import { Generator } from '../../src/random';
import { rngFor } from '../support/random';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('scene-writer');
const rng = rngFor('scene_writer');
const scenes = (n: number) => sortOfClevrSplit(new Generator(rng.int(1 << 30)).fork('train'), n).scenes;
const files = (dir: string) => fs.readdirSync(dir).sort();

describe('SceneImageWriter', () => {
  it('writes on its threads the bytes encodePng(renderScene) gives, every file once flush() resolves; close() ends the threads', async () => {
    const dir = tmp();
    const ss = scenes(150); // more than two chunks of 64: several messages, both threads
    const w = new SceneImageWriter({ workers: 2 });
    expect(w.threads).toBe(2);
    ss.forEach((s, i) => w.write(path.join(dir, `${i}.png`), s));
    expect(w.pending).toBe(150);
    await w.flush();
    expect(w.pending).toBe(0);
    for (let i = 0; i < ss.length; i++) expect(fs.readFileSync(path.join(dir, `${i}.png`)).equals(encodePng(renderScene(ss[i]), IMAGE_SIZE, IMAGE_SIZE)), `image ${i}`).toBe(true);
    await w.flush(); // nothing pending: at once
    await w.close();
    expect(() => w.write(path.join(dir, 'x.png'), ss[0])).toThrow(/after close\(\)/);
  }, 60_000);

  it('with no threads writes each file at once, on the caller\'s thread', async () => {
    const dir = tmp();
    const [s] = scenes(1);
    const w = new SceneImageWriter();
    expect(w.threads).toBe(0);
    w.write(path.join(dir, 'a.png'), s);
    expect(fs.readFileSync(path.join(dir, 'a.png')).equals(encodePng(renderScene(s), IMAGE_SIZE, IMAGE_SIZE))).toBe(true);
    await w.close();
    expect(() => new SceneImageWriter({ workers: -1 })).toThrow(/workers must be a non-negative integer, got -1/);
    expect(() => new SceneImageWriter({ workers: 1.5 })).toThrow(/workers must be a non-negative integer/);
  });

  it('a file that cannot be written fails flush() with its name, and every later write', async () => {
    const dir = tmp();
    const ss = scenes(3);
    const w = new SceneImageWriter({ workers: 1 });
    w.write(path.join(dir, 'ok.png'), ss[0]);
    const bad = path.join(dir, 'missing-folder', 'b.png');
    w.write(bad, ss[1]);
    await expect(w.flush()).rejects.toThrow(new RegExp(`SceneImageWriter: cannot write ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`));
    expect(() => w.write(path.join(dir, 'c.png'), ss[2])).toThrow(/cannot write .*b\.png/);
    await expect(w.close()).rejects.toThrow(/cannot write .*b\.png/);
    expect(fs.existsSync(path.join(dir, 'ok.png'))).toBe(true);
  }, 60_000);

  it('spareImageWorkers: the cores the computing threads and the main thread leave, at most 4; VWLMM_IMAGE_WORKERS overrides it', () => {
    const was = process.env.VWLMM_IMAGE_WORKERS;
    try {
      delete process.env.VWLMM_IMAGE_WORKERS;
      expect(spareImageWorkers(1e6)).toBe(0);
      expect(spareImageWorkers(0)).toBeLessThanOrEqual(4);
      process.env.VWLMM_IMAGE_WORKERS = '3';
      expect(spareImageWorkers(1e6)).toBe(3);
      process.env.VWLMM_IMAGE_WORKERS = 'two';
      expect(() => spareImageWorkers(1)).toThrow(/VWLMM_IMAGE_WORKERS must be an integer in \[0, 64\], got 'two'/);
    } finally {
      if (was === undefined) delete process.env.VWLMM_IMAGE_WORKERS;
      else process.env.VWLMM_IMAGE_WORKERS = was;
    }
  });

  it('writeSortOfClevr with a writer writes the same files, byte for byte, once flushed', async () => {
    const [a, b] = [tmp(), tmp()];
    const seed = rng.int(1000);
    writeSortOfClevr(a, { train: 9, test: 4, seed, nonRelational: 2, relational: 1 });
    const w = new SceneImageWriter({ workers: 2 });
    writeSortOfClevr(b, { train: 9, test: 4, seed, nonRelational: 2, relational: 1, writer: w });
    await w.close();
    expect(files(b)).toEqual(files(a));
    expect(files(path.join(b, 'images'))).toEqual(files(path.join(a, 'images')));
    expect(files(path.join(a, 'images'))).toHaveLength(13);
    for (const f of [...files(a).filter((f) => f.endsWith('.json')), ...files(path.join(a, 'images')).map((f) => path.join('images', f))])
      expect(fs.readFileSync(path.join(b, f)).equals(fs.readFileSync(path.join(a, f))), f).toBe(true);
  }, 60_000);
});
