// ClipImageWorkers (src/data/clip_workers.ts): the pixels made on worker threads are preprocessClip's on the caller's
// thread, byte for byte, for both aspect modes; a file that cannot be read rejects with loadImage's message naming
// it, and the other images of the batch still come back; 0 workers is the caller's thread.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClipImageWorkers } from '../../src/data/clip_workers';
import { loadImage, preprocessClip } from '../../src/data/images';
import { encodePng } from '../../src/data/sort_of_clevr';
import { rngFor, runSeed } from '../support/random';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-clip-workers-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe(`ClipImageWorkers (seed ${runSeed})`, () => {
  const rng = rngFor('clip-workers');
  const files = [[37, 23], [16, 40], [30, 30], [9, 9]].map(([w, h], k) => {
    const data = new Uint8Array(w * h * 3);
    for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
    const f = path.join(dir, `img${k}.png`);
    fs.writeFileSync(f, encodePng(data, w, h));
    return f;
  });
  const broken = path.join(dir, 'broken.png');
  fs.writeFileSync(broken, 'not an image');

  for (const aspect of ['pad', 'resize_crop'] as const) {
    it(`2 threads give the caller's pixels (${aspect}), and name a file that cannot be read`, async () => {
      const opts = { size: 24, aspect };
      const pool = new ClipImageWorkers(opts, { workers: 2 });
      try {
        expect(pool.threads).toBe(2);
        const got = await Promise.all(files.map((f) => pool.pixels(f)));
        for (let k = 0; k < files.length; k++) expect(got[k]).toEqual(await preprocessClip(await loadImage(files[k]), opts));
        const [bad, good] = await Promise.allSettled([pool.pixels(broken), pool.pixels(files[0])]);
        expect(bad.status).toBe('rejected');
        expect((bad as PromiseRejectedResult).reason.message).toContain(broken);
        expect(good.status).toBe('fulfilled');
      } finally {
        await pool.close();
      }
      await expect(pool.pixels(files[0])).rejects.toThrow(/after close\(\)/);
    });
  }

  it('0 threads: the caller makes them', async () => {
    const pool = new ClipImageWorkers({ size: 24 });
    expect(pool.threads).toBe(0);
    expect(await pool.pixels(files[1])).toEqual(await preprocessClip(await loadImage(files[1]), { size: 24 }));
    await pool.close();
    expect(() => new ClipImageWorkers({ size: 24 }, { workers: -1 })).toThrow(/workers must be a non-negative integer/);
  });
});
