// `using` / `await using` (Symbol.dispose, Symbol.asyncDispose) free a Tensor, a Module's parameters, and end the
// image threads (ClipImageWorkers; SceneImageWriter after writing its files).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { Generator, memoryStats, nn, Tensor } from '../../src';
import { ClipImageWorkers } from '../../src/data/clip_workers';
import { SceneImageWriter } from '../../src/data/scene_writer';
import { encodePng, IMAGE_SIZE, renderScene, sortOfClevrSplit } from '../../src/data/sort_of_clevr';
import { rngFor } from '../support/random';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('dispose-symbol');
const rng = rngFor('dispose_symbol');

describe('Symbol.dispose', () => {
  it('`using` disposes a Tensor and a Module (its parameters) at the end of the block', () => {
    const before = memoryStats().cpu.liveBuffers;
    let t!: Tensor, lin!: nn.Linear;
    {
      using a = Tensor.zeros([4]);
      using m = new nn.Linear(3, 2, { bias: true, std: 0.1, init: { generator: new Generator(0) } });
      t = a;
      lin = m;
      expect(a.disposed).toBe(false);
    }
    expect(t.disposed).toBe(true);
    expect(lin.weight.disposed && lin.bias!.disposed).toBe(true);
    expect(memoryStats().cpu.liveBuffers).toBe(before);
    // used after its dispose: the error says so and names the parameter, not only that a weight is gone
    expect(() => lin.forward(Tensor.zeros([1, 3]))).toThrow("F.linear: w has been disposed with its module: Linear.dispose() freed its parameter 'weight' (the module was used after its dispose())");
  });
});

describe('the image threads', () => {
  it('`await using` closes a SceneImageWriter (its files written first)', async () => {
    const dir = tmp();
    const [s] = sortOfClevrSplit(new Generator(rng.int(1 << 30)).fork('train'), 1).scenes;
    let w!: SceneImageWriter;
    {
      await using writer = new SceneImageWriter({ workers: 1 });
      writer.write(path.join(dir, 'a.png'), s);
      w = writer;
    }
    expect(w.pending).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'a.png')).equals(encodePng(renderScene(s), IMAGE_SIZE, IMAGE_SIZE))).toBe(true);
    expect(() => w.write(path.join(dir, 'b.png'), s)).toThrow(/after close\(\)/);
  }, 60_000);

  it('`using` and `await using` end ClipImageWorkers', async () => {
    let a!: ClipImageWorkers, b!: ClipImageWorkers;
    {
      using pool = new ClipImageWorkers({ size: 8 }, { workers: 1 });
      a = pool;
    }
    await expect(a.pixels('x.png')).rejects.toThrow(/after close\(\)/);
    {
      await using pool = new ClipImageWorkers({ size: 8 }, { workers: 1 });
      b = pool;
    }
    await expect(b.pixels('x.png')).rejects.toThrow(/after close\(\)/);
  }, 60_000);
});
