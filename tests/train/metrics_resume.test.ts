// The metrics log on resume: the run rewrites it up to the checkpoint's step, dropping only what a kill can leave (a cut
// last line) and what comes after the checkpoint. A line that is not a record before the end, or a log that lacks the
// train records of steps up to the checkpoint (shortened, or another run's), is refused, naming the line or the first
// missing step, with the log untouched; a deleted log starts anew with a warning on stderr (moving the log away is the
// way to continue without it).
import * as fs from 'fs';
import * as path from 'path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { readTrainerState, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { tinyConfig, tinyData, tinyStages, trainLosses } from './support/tiny';

const tmp = tempDirs('metrics-resume');
const { tokenizer, json, samples, makeBatch } = tinyData(8);
const stages = () => tinyStages(makeBatch, samples.length, 4); // stage a (4 steps), stage b (4 steps)
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

function train(out: string, opts: Partial<TrainerOptions> = {}, resumeFrom?: string): void {
  const ck = resumeFrom && path.join(resumeFrom, 'checkpoint');
  const m = ck ? loadCheckpoint(ck).model : VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
  try {
    new Trainer(m, stages(), { seed: 9, outDir: out, checkpointFiles: { tokenizer: json }, ...opts }).run(ck ? readTrainerState(ck) : undefined);
  } finally {
    m.dispose();
  }
}
/** A run stopped after 6 steps (inside stage b), with every record of them logged. */
function stopped(opts: Partial<TrainerOptions> = {}): { out: string; metrics: string } {
  const out = tmp();
  train(out, { stopAfterSteps: 6, ...opts });
  return { out, metrics: path.join(out, 'metrics.jsonl') };
}
const full = tmp();
train(full);

afterEach(() => vi.restoreAllMocks());

describe('the metrics log on resume', () => {
  it('a last line cut by a kill is dropped, as are the records after the checkpoint; the log then continues exactly', () => {
    const { out, metrics } = stopped();
    // records of two more steps that the checkpoint does not hold, the last cut in the middle
    const extra = ['{"type":"train","stage":"b","step":3,"globalStep":7,"loss":1}', '{"type":"train","stage":"b","step":4,"globalSte'];
    fs.appendFileSync(metrics, `${extra[0]}\n${extra[1]}`);
    train(out, {}, out);
    expect(trainLosses(out)).toEqual(trainLosses(full));
    expect(fs.readFileSync(metrics, 'utf8')).not.toContain('"loss":1}');
  });

  it('a line that is not a record before the end is refused, naming it; the log is untouched', () => {
    const { out, metrics } = stopped();
    const text = fs.readFileSync(metrics, 'utf8').split('\n');
    text[2] = text[2].slice(0, 30);
    fs.writeFileSync(metrics, text.join('\n'));
    const before = fs.readFileSync(metrics, 'utf8');
    expect(() => train(out, {}, out)).toThrow(new RegExp(`^resume: ${escape(metrics)}:3: expected a JSON record on every line but the last \\(a kill cuts only the last\\), received '\\{"type":"train","stage":"a","s': the log is damaged; repair or remove that line, or move it away to start a new log at the checkpoint's global step 6$`));
    expect(fs.readFileSync(metrics, 'utf8')).toBe(before);
  });

  it("a log that lacks train records up to the checkpoint is refused, naming the first missing step; logEvery's steps are the ones expected", () => {
    const { out, metrics } = stopped();
    const records = fs.readFileSync(metrics, 'utf8').trim().split('\n');
    // without the records of global steps 2 and 5 (stage a step 2, stage b step 1)
    fs.writeFileSync(metrics, records.filter((l) => !/"globalStep":(2|5),/.test(l) || !l.includes('"type":"train"')).map((l) => l + '\n').join(''));
    const before = fs.readFileSync(metrics, 'utf8');
    expect(() => train(out, {}, out)).toThrow(new RegExp(`^resume: ${escape(metrics)}: expected the train record of every step up to the checkpoint's global step 6, 6 records, but it lacks 2, the first of stage 'a' step 2: the log was shortened, or is another run's; restore it, or move it away to start a new log at the checkpoint's global step 6$`));
    expect(fs.readFileSync(metrics, 'utf8')).toBe(before);
    // logEvery 3: steps 3 and 4 of stage a (4: its last), none of stage b's first two
    const every = stopped({ logEvery: 3 });
    expect(trainLosses(every.out).map(([g]) => g)).toEqual([3, 4]);
    const kept = fs.readFileSync(every.metrics, 'utf8');
    fs.writeFileSync(every.metrics, kept.split('\n').filter((l) => !l.includes('"globalStep":4,')).join('\n'));
    expect(() => train(every.out, { logEvery: 3 }, every.out)).toThrow(/expected the train record of every step up to the checkpoint's global step 6 that the run logs \(every 3 steps and each stage's last\), 2 records, but it lacks 1, the first of stage 'a' step 4/);
    fs.writeFileSync(every.metrics, kept);
    train(every.out, { logEvery: 3 }, every.out);
    expect(trainLosses(every.out).map(([g]) => g)).toEqual([3, 4, 7, 8]);
  });

  it("a deleted log starts anew at the checkpoint's step, with a warning on stderr; a resume into another folder starts one without", () => {
    const { out, metrics } = stopped();
    fs.rmSync(metrics);
    const said: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation(((s: string) => (said.push(String(s)), true)) as typeof process.stderr.write);
    train(out, {}, out);
    expect(said).toEqual([`vwlmm: warning: ${metrics} does not exist: the resumed run starts a new log at the checkpoint's global step 6 (the records before it are not in it)\n`]);
    expect(trainLosses(out)).toEqual(trainLosses(full).slice(6));
    said.length = 0;
    const elsewhere = tmp();
    const from = stopped();
    train(elsewhere, {}, from.out);
    expect(said).toEqual([]);
    expect(trainLosses(elsewhere)).toEqual(trainLosses(full).slice(6));
  });

  it('a log begun anew, or continued at another logEvery, says so (log_start), and a later resume expects records from there on', () => {
    // begun anew at step 3 (the log deleted), stopped at 5, resumed again: only steps 4 and 5 are expected
    const out = tmp();
    train(out, { stopAfterSteps: 3 });
    fs.rmSync(path.join(out, 'metrics.jsonl'));
    vi.spyOn(process.stderr, 'write').mockImplementation((() => true) as typeof process.stderr.write);
    train(out, { stopAfterSteps: 5 }, out);
    const starts = () => fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.type === 'log_start');
    expect(starts()).toMatchObject([{ globalStep: 3, logEvery: 1 }]);
    train(out, {}, out);
    expect(trainLosses(out)).toEqual(trainLosses(full).slice(3));
    // a run logged every 3rd step, resumed logging every step: the next resume expects every 3rd step up to 6 (and each
    // stage's last), every step after (before, every step from 1, which the log never had)
    const { out: o2 } = stopped({ logEvery: 3 });
    train(o2, { stopAfterSteps: 7 }, o2);
    const log = fs.readFileSync(path.join(o2, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(log.filter((r) => r.type === 'log_start')).toMatchObject([{ globalStep: 6, logEvery: 1 }]);
    train(o2, {}, o2);
    expect(trainLosses(o2).slice(-2)).toEqual(trainLosses(full).slice(-2));
  });
});
