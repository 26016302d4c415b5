// Output paths that cannot be written are named by their option before any work (cli.ts outputFolder / outputFile):
// a file given as an output folder, a file on the way to one, a folder given as an output file. They were raw Node
// errors (EEXIST: file already exists, mkdir 'afile'; ENOTDIR), and the demo's came after 17-30 s of calibration.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('outpaths');

describe('output paths', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let afile: string, adir: string;
  beforeAll(() => {
    const dir = tmp();
    fx = writeCliFixture(dir, { images: 1 });
    afile = path.join(dir, 'afile');
    fs.writeFileSync(afile, 'not a folder\n');
    adir = path.join(dir, 'adir');
    fs.mkdirSync(adir);
  });
  const refused = (args: string[], message: string) => {
    const r = cli(...args);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toBe(`vwlmm: ${message}\n`);
    return r;
  };

  it('a file as an output folder, or on the way to one, is named with its option by every command', () => {
    const train = ['train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder];
    refused([...train, '--out', afile], `--out ${afile} is a file, not a folder: give a folder (it is made when absent)`);
    refused([...train, '--out', path.join(afile, 'x')], `--out ${path.join(afile, 'x')}: ${afile} is a file, so nothing can be made under it`);
    refused(['data', 'sort-of-clevr', '--out', path.join(afile, 'sub')], `--out ${path.join(afile, 'sub')}: ${afile} is a file, so nothing can be made under it`);
    refused(['init', '--config', path.join(fx.init, 'config.json'), '--tokenizer', fx.tokenizer, '--out', afile], `--out ${afile} is a file, not a folder: give a folder (it is made when absent)`);
    refused(['merge-adapter', '--checkpoint', fx.init, '--out', afile], `--out ${afile} is a file, not a folder: give a folder (it is made when absent)`);
    refused(['score', 'mme', '--answers', fx.data, '--benchmark', adir, '--out', afile], `--out ${afile} is a file, not a folder: give a folder (it is made when absent)`);
    // up front: no data written, nothing calibrated
    const demo = refused(['demo', '--out', afile, '--scale', '0.01'], `--out ${afile} is a file, not a folder: give a folder (it is made when absent)`);
    expect(demo.stdout).toBe('');
  });

  it("an empty path (an unset shell variable) is refused by its option, not read as the current folder", () => {
    // `data --out ''` wrote its files into the current folder, over a train.json there
    refused(['data', 'sort-of-clevr', '--out', '', '--train', '2', '--test', '1'], '--out is empty: give a path');
    refused(['train', '--init', fx.init, '--data', fx.data, '--out', ' '], '--out is empty: give a path');
    refused(['init', '--config', '', '--tokenizer', fx.tokenizer, '--out', path.join(adir, 'x')], '--config is empty: give a path');
    refused(['answer', '--checkpoint', fx.init, '--questions', fx.data, '--answers', ''], '--answers is empty: give a path');
  });

  it("a folder as an output file, or a file on the way to one: the submission's option is named", () => {
    refused(['score', 'seed', '--answers', fx.data, '--annotations', fx.data, '--submission', adir], `--submission ${adir} is a folder: give a file`);
    const under = path.join(afile, 'sub.json');
    refused(['score', 'vqav2', '--answers', fx.data, '--questions', fx.data, '--submission', under], `--submission ${under}: ${afile} is a file, so nothing can be made under it`);
    refused(['score', 'sqa', '--base-dir', adir, '--answers', fx.data, '--output-file', under], `--output-file ${under}: ${afile} is a file, so nothing can be made under it`);
  });
});
