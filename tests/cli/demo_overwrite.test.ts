// A demo trial's findings: `demo --overwrite-output-dir` left the old run's files (an ablation's llava/, an old scale's
// images, old event files) beside the new run's, which broke its --resume; `data --out` inside a folder a live demo
// writes deleted the demo's images mid-run; `demo --resume` on an empty --out started a new run without a word.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { removeDemoRun } from '../../src/demo';
import { processStartTime } from '../../src/distributed';
import { writeSortOfClevr } from '../../src/data';
import { cli } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('demo-over');

describe('demo --overwrite-output-dir and the folders of a live run', () => {
  it("removeDemoRun: what a demo wrote goes (both runs, the data set, its stage files and subset images); a user's files stay", () => {
    const out = tmp();
    const data = path.join(out, 'data');
    writeSortOfClevr(data, { train: 2, test: 1, seed: 1 });
    fs.mkdirSync(path.join(data, 'stages'));
    fs.writeFileSync(path.join(data, 'stages', 'questions.json'), '[]');
    fs.writeFileSync(path.join(data, 'images', 'caption-subsets_00003.png'), 'x');
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.writeFileSync(path.join(data, f), '{}');
    for (const run of ['vw', 'llava']) {
      for (const d of ['checkpoint', 'checkpoint.old-1', 'init', 'answers', 'runs']) fs.mkdirSync(path.join(out, run, d), { recursive: true });
      for (const f of ['metrics.jsonl', 'loss_curve.png', 'visual_words.png', 'reproduce.sh', 'checkpoint/config.json']) fs.writeFileSync(path.join(out, run, f), 'x');
    }
    fs.writeFileSync(path.join(out, 'vw', 'my_notes.txt'), 'mine');
    fs.writeFileSync(path.join(data, 'images', 'my_photo.jpg'), 'mine');
    fs.writeFileSync(path.join(out, 'README.txt'), 'mine');
    removeDemoRun(out);
    const left = (d: string): string[] => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? left(path.join(d, e.name)) : [path.relative(out, path.join(d, e.name))]));
    expect(left(out).sort()).toEqual(['README.txt', 'data/images/my_photo.jpg', 'vw/my_notes.txt']);
    // a folder without a data set of the demo's: its data/ is not touched
    const other = tmp();
    fs.mkdirSync(path.join(other, 'data', 'images'), { recursive: true });
    fs.writeFileSync(path.join(other, 'data', 'images', 'train_00000.png'), 'mine');
    removeDemoRun(other);
    expect(fs.existsSync(path.join(other, 'data', 'images', 'train_00000.png'))).toBe(true);
  });

  it('data --out inside a folder a live run holds is refused; demo --resume of nothing is refused', () => {
    const out = tmp();
    // a live run's lock (this test process's: alive, with its start time)
    fs.writeFileSync(path.join(out, '.vwlmm.lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), started: 'now', procStart: processStartTime(process.pid) ?? null, command: 'vwlmm demo' }) + '\n');
    const r = cli('data', 'sort-of-clevr', '--out', path.join(out, 'data'), '--train', '2', '--test', '1', '--overwrite-output-dir');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`vwlmm: --out ${path.join(out, 'data')} is inside ${out}, which is being written by vwlmm demo (pid ${process.pid} on ${os.hostname()}, started now): wait for it to end, or give another --out\n`);
    expect(fs.existsSync(path.join(out, 'data'))).toBe(false);
    const empty = tmp();
    const d = cli('demo', '--out', empty, '--scale', '0.00001', '--resume');
    expect(d.status).toBe(2);
    expect(d.stderr).toBe(`vwlmm: --resume: --out ${empty} holds no demo run to continue (no data/, vw/ or llava/): run without --resume to start one\n`);
  });
});
