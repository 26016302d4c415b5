// merge-adapter's --out: never one of its inputs (the same folder, inside one, or holding one, in any spelling), and a
// non-empty --out only with --overwrite-output-dir: `--out` = `--checkpoint` wiped the training checkpoint's optimizer and
// trainer state (the run could not be resumed), and a second merge into one folder replaced the first silently.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('merge-out');

describe('merge-adapter --out', () => {
  let dir: string, run: string, ck: string;
  beforeAll(() => {
    dir = tmp();
    const fx = writeCliFixture(dir, { images: 2 });
    run = path.join(dir, 'run');
    ck = path.join(run, 'checkpoint');
    const r = cli('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', run, '--steps', '1', '--batch-size', '2', '--lora-r', '2');
    expect(r.status, r.stderr).toBe(0);
  });

  it("refuses its --checkpoint's folder, a folder inside it or holding it, and leaves the training checkpoint whole", () => {
    const files = fs.readdirSync(ck).sort();
    expect(files).toEqual(expect.arrayContaining(['optimizer.safetensors', 'trainer_state.json']));
    fs.symlinkSync(ck, path.join(dir, 'link'));
    for (const [out, how] of [[ck, 'is'], [path.join(dir, 'link'), 'is'], [path.join(ck, 'merged'), 'is inside'], [run, 'holds']] as const) {
      const r = cli('merge-adapter', '--checkpoint', ck, '--out', out, '--overwrite-output-dir');
      expect(r.status, out).toBe(2);
      expect(r.stderr).toContain(`vwlmm: --out ${out} ${how} --checkpoint ${ck}: merge-adapter writes a new checkpoint beside its inputs and never over them`);
    }
    expect(fs.readdirSync(ck).sort()).toEqual(files);
  });

  it('refuses a non-empty --out unless --overwrite-output-dir', () => {
    const m1 = path.join(dir, 'm1');
    expect(cli('merge-adapter', '--checkpoint', ck, '--out', m1).status).toBe(0);
    const stamp = fs.statSync(path.join(m1, 'model.safetensors')).mtimeMs;
    const again = cli('merge-adapter', '--checkpoint', ck, '--out', m1);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(`vwlmm: --out ${m1} is not empty: merge-adapter writes a new checkpoint (--overwrite-output-dir replaces what is there)`);
    expect(fs.statSync(path.join(m1, 'model.safetensors')).mtimeMs).toBe(stamp);
    const replaced = cli('merge-adapter', '--checkpoint', ck, '--out', m1, '--overwrite-output-dir');
    expect(replaced.status, replaced.stderr).toBe(0);
  });
});
