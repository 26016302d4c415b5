// TensorBoard event files (src/train/tensorboard.ts): the bytes of TensorBoard's own writer for the same events
// (tests/fixtures/tensorboard, scripts/make_tensorboard_fixture.py), and the Trainer's reportTo: the scalars of its
// records at their global steps, a resume's file that tells TensorBoard to drop the steps it trains again, refusals.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { crc32c, encodeEvent, TensorBoardWriter, tensorboardScalars, tfRecord } from '../../src/train/tensorboard';
import { readTrainerState, Trainer, TrainerOptions } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { cli, tinyConfig, tinyData, tinyStages, writeCliFixture } from './support/tiny';

const tmp = tempDirs('tensorboard');
const FIXTURE = path.join(__dirname, '../fixtures/tensorboard');

type FixtureEvent = { wallTime: number; fileVersion?: string; sessionStart?: number; step?: number; tag?: string; value?: number | string };
const numberOf = (v: number | string) => (v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : (v as number));

/** An independent reader: TFRecords checked by their CRCs, and the Event fields written here (wire format by hand). */
function readEvents(file: string): { wallTime: number; step: number; fileVersion?: string; sessionStart?: boolean; tag?: string; value?: number }[] {
  const buf = fs.readFileSync(file);
  const mask = (c: number) => (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
  const out = [];
  for (let at = 0; at < buf.length; ) {
    const len = Number(buf.readBigUInt64LE(at));
    expect(buf.readUInt32LE(at + 8)).toBe(mask(crc32c(buf.subarray(at, at + 8))));
    const data = buf.subarray(at + 12, at + 12 + len);
    expect(buf.readUInt32LE(at + 12 + len)).toBe(mask(crc32c(data)));
    at += 16 + len;
    const ev: { wallTime: number; step: number; fileVersion?: string; sessionStart?: boolean; tag?: string; value?: number } = { wallTime: 0, step: 0 };
    const fields = (b: Buffer, visit: (field: number, wire: number, value: bigint | Buffer) => void) => {
      let i = 0;
      const varint = () => {
        let v = 0n, shift = 0n;
        for (;;) {
          const x = b[i++];
          v |= BigInt(x & 0x7f) << shift;
          shift += 7n;
          if (x < 0x80) return v;
        }
      };
      while (i < b.length) {
        const k = Number(varint()), field = k >> 3, wire = k & 7;
        if (wire === 0) visit(field, wire, varint());
        else if (wire === 1) (visit(field, wire, b.subarray(i, i + 8)), (i += 8));
        else if (wire === 5) (visit(field, wire, b.subarray(i, i + 4)), (i += 4));
        else if (wire === 2) {
          const n = Number(varint());
          visit(field, wire, b.subarray(i, i + n));
          i += n;
        } else throw new Error(`wire type ${wire}`);
      }
    };
    fields(data, (f, _w, v) => {
      if (f === 1) ev.wallTime = (v as Buffer).readDoubleLE(0);
      else if (f === 2) ev.step = Number(v as bigint);
      else if (f === 3) ev.fileVersion = (v as Buffer).toString('utf8');
      else if (f === 7) fields(v as Buffer, (g, _x, s) => g === 1 && (ev.sessionStart = s === 1n));
      else if (f === 5)
        fields(v as Buffer, (g, _x, val) => {
          expect(g).toBe(1);
          fields(val as Buffer, (h, _y, x) => {
            if (h === 1) ev.tag = (x as Buffer).toString('utf8');
            if (h === 2) ev.value = (x as Buffer).readFloatLE(0);
          });
        });
      else throw new Error(`Event field ${f}`);
    });
    out.push(ev);
  }
  return out;
}

describe('TensorBoard event files', () => {
  it("CRC-32C's check value; TFRecord framing of an empty record", () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(tfRecord(new Uint8Array(0)).length).toBe(16);
  });

  it("writes the bytes TensorBoard's own writer writes for the same events (zeros, -0, NaN, infinities, a float32 subnormal and overflow, step 0, a 2^40 step, UTF-8 tags)", () => {
    const events = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'events.json'), 'utf8')) as FixtureEvent[];
    const [version, start, ...rest] = events;
    expect(version.fileVersion).toBe('brain.Event:2');
    const times = [version.wallTime, start.wallTime];
    const dir = tmp();
    const w = new TensorBoardWriter(dir, { firstStep: start.sessionStart, now: () => times.shift()! });
    for (const e of rest) {
      if (e.sessionStart !== undefined) w.addSessionStart(e.sessionStart, e.wallTime);
      else w.addScalar(e.tag!, numberOf(e.value!), e.step!, e.wallTime);
    }
    w.close();
    expect(path.basename(w.file)).toMatch(/^events\.out\.tfevents\.1765100000\..+\.\d+\.0$/);
    const expected = fs.readFileSync(path.join(FIXTURE, 'events.out.tfevents.1765100000.fixture'));
    expect(fs.readFileSync(w.file).equals(expected)).toBe(true);
    // and the reader here reads back what was written (checked against the fixture: the reader is checked too)
    const read = readEvents(w.file);
    expect(read.length).toBe(events.length);
    expect(read[2]).toEqual({ wallTime: rest[0].wallTime, step: 1, tag: 'train/loss', value: Math.fround(2.302585092994046) });
  });

  it('a second writer in the same folder and second takes the next counter; a closed writer refuses to write; bad arguments are named', () => {
    const dir = tmp();
    const a = new TensorBoardWriter(dir, { now: () => 1e9 }), b = new TensorBoardWriter(dir, { now: () => 1e9 });
    expect([a.file, b.file].map((f) => f.slice(-2))).toEqual(['.0', '.1']);
    a.close();
    b.close();
    expect(() => a.addScalar('x', 1, 1)).toThrow(/TensorBoardWriter: .*events\.out\.tfevents\.1000000000\..*\.0 is closed/);
    expect(() => new TensorBoardWriter(dir, { firstStp: 1 } as never)).toThrow("TensorBoardWriter: unknown option 'firstStp' (did you mean 'firstStep'?)");
    expect(() => new TensorBoardWriter(dir, { firstStep: -1 })).toThrow('TensorBoardWriter: firstStep must be an integer >= 0, got -1');
    const c = new TensorBoardWriter(dir);
    expect(() => c.addScalar('', 1, 1)).toThrow(/expected a non-empty string for tag/);
    expect(() => c.addScalar('t', '1' as never, 1)).toThrow(/expected a number for value of 't' but received '1' \(string\)/);
    expect(() => c.addScalar('t', 1, 1.5)).toThrow('TensorBoardWriter.addScalar: step must be an integer >= 0, got 1.5');
    c.close();
    const file = path.join(tmp(), 'a-file');
    fs.writeFileSync(file, '');
    expect(() => new TensorBoardWriter(path.join(file, 'runs'))).toThrow(/TensorBoardWriter: creating the folder .*a-file\/runs failed: ENOTDIR/);
  });

  it("a record's scalars under transformers' tags, at its global step", () => {
    expect(tensorboardScalars({ type: 'train', globalStep: 3, loss: 1.5, ce: 1, kl: 0.5, lr: 2e-5, gradNorm: NaN, tokensPerSec: 10, elapsed: 1 })).toEqual([
      { tag: 'train/loss', value: 1.5, step: 3 }, { tag: 'train/ce', value: 1, step: 3 }, { tag: 'train/kl', value: 0.5, step: 3 },
      { tag: 'train/learning_rate', value: 2e-5, step: 3 }, { tag: 'train/grad_norm', value: NaN, step: 3 }, { tag: 'train/tokens_per_second', value: 10, step: 3 },
    ]);
    expect(tensorboardScalars({ type: 'eval', stage: 'a', step: 2, globalStep: 6, accuracy: 0.75, note: 'x' })).toEqual([{ tag: 'eval/accuracy', value: 0.75, step: 6 }]);
    expect(tensorboardScalars({ type: 'nonfinite', globalStep: 4, skippedSteps: 2, loss: NaN })).toEqual([{ tag: 'train/skipped_steps', value: 2, step: 4 }]);
    expect(tensorboardScalars({ type: 'summary', globalStep: 8 })).toEqual([]);
  });
});

describe("the Trainer's reportTo ['tensorboard']", () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const stages = () => tinyStages(makeBatch, samples.length, 4); // stage a (4 steps), stage b (4 steps)
  function train(out: string, opts: Partial<TrainerOptions> = {}, resume = false): void {
    const ck = resume ? path.join(out, 'checkpoint') : null;
    const m = ck ? loadCheckpoint(ck).model : VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    try {
      const evaluate = () => ({ accuracy: 0.25 });
      new Trainer(m, stages(), { seed: 9, outDir: out, checkpointFiles: { tokenizer: json }, reportTo: ['tensorboard'], evaluate, evalEvery: 2, ...opts }).run(ck ? readTrainerState(ck) : undefined);
    } finally {
      m.dispose();
    }
  }
  const records = (out: string) => fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const files = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('events.out.tfevents.')).sort().map((f) => path.join(dir, f));

  it("writes the records' scalars at their global steps in <outDir>/runs; a resume's file starts by dropping the steps it trains again", () => {
    const out = tmp();
    train(out, { stopAfterSteps: 5 });
    train(out, {}, true);
    const [first, second] = files(path.join(out, 'runs'));
    expect(files(path.join(out, 'runs')).length).toBe(2);
    const a = readEvents(first), b = readEvents(second);
    expect(a.slice(0, 2).map((e) => [e.fileVersion, e.sessionStart, e.step])).toEqual([['brain.Event:2', undefined, 0], [undefined, true, 1]]);
    expect(b.slice(0, 2).map((e) => [e.fileVersion, e.sessionStart, e.step])).toEqual([['brain.Event:2', undefined, 0], [undefined, true, 6]]);
    // every scalar of metrics.jsonl (the resumed log: steps 1-5 of the first run, 6-8 of the second), float32-rounded
    const expected = records(out).flatMap((r) => tensorboardScalars(r)).map((x) => ({ ...x, value: Math.fround(x.value) }));
    const written = [...a.slice(2), ...b.slice(2)].map((e) => ({ tag: e.tag, value: e.value, step: e.step }));
    expect(written).toEqual(expected);
    expect(new Set(written.map((x) => x.tag))).toEqual(new Set(['train/loss', 'train/ce', 'train/kl', 'train/learning_rate', 'train/grad_norm', 'train/tokens_per_second', 'eval/accuracy']));
    expect(written.filter((x) => x.tag === 'train/loss').map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(written.filter((x) => x.tag === 'eval/accuracy').map((x) => x.step)).toEqual([2, 4, 6, 8]);
  });

  it('a refused resume (a shortened metrics.jsonl) adds no event file: the earlier points stay visible', () => {
    const out = tmp();
    train(out, { stopAfterSteps: 5 });
    const metrics = path.join(out, 'metrics.jsonl');
    fs.writeFileSync(metrics, fs.readFileSync(metrics, 'utf8').split('\n').filter((l) => !l.includes('"globalStep":2,')).join('\n'));
    expect(() => train(out, {}, true)).toThrow(/expected the train record of every step up to the checkpoint/);
    expect(files(path.join(out, 'runs')).length).toBe(1);
  });

  it('loggingDir puts the files elsewhere, and needs no outDir; unknown integrations and a missing folder are refused', () => {
    const logs = path.join(tmp(), 'logs');
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    try {
      new Trainer(m, stages().slice(0, 1), { seed: 9, reportTo: ['tensorboard'], loggingDir: logs }).run();
      expect(readEvents(files(logs)[0]).filter((e) => e.tag === 'train/loss').length).toBe(4);
      expect(() => new Trainer(m, stages(), { seed: 9, reportTo: ['wandb' as never], outDir: tmp() })).toThrow(/Trainer: expected 'tensorboard' \(the one integration there is; metrics\.jsonl is always written\) for an entry of reportTo but received 'wandb' \(string\)/);
      expect(() => new Trainer(m, stages(), { seed: 9, reportTo: 'tensorboard' as never, outDir: tmp() })).toThrow(/expected an array of integrations/);
      expect(() => new Trainer(m, stages(), { seed: 9, reportTo: ['tensorboard'] })).toThrow(/expected a directory for reportTo \['tensorboard'\] \(or an outDir: its runs\/ folder\) for loggingDir/);
    } finally {
      m.dispose();
    }
  });
});

describe('vwlmm train --report-to tensorboard', () => {
  it('writes the logged steps (--logging-steps) in <out>/runs or --logging-dir; other integrations and a lone --logging-dir are refused', () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 4 });
    const base = ['train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--steps', '5', '--batch-size', '2'];
    const out = path.join(dir, 'out');
    const r = cli(...base, '--out', out, '--report-to', 'tensorboard', '--logging-steps', '2');
    expect(r.status, r.stderr).toBe(0);
    const [file] = fs.readdirSync(path.join(out, 'runs'));
    const losses = readEvents(path.join(out, 'runs', file)).filter((e) => e.tag === 'train/loss');
    // every 2nd step and the stage's last, as metrics.jsonl
    expect(losses.map((e) => e.step)).toEqual([2, 4, 5]);
    const logged = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.type === 'train');
    expect(losses.map((e) => e.value)).toEqual(logged.map((x) => Math.fround(x.loss)));
    const logs = path.join(dir, 'logs');
    expect(cli(...base, '--steps', '1', '--out', path.join(dir, 'out2'), '--report-to', 'all', '--logging-dir', logs).status).toBe(0);
    expect(fs.readdirSync(logs).length).toBe(1);
    const w = cli(...base, '--out', path.join(dir, 'out3'), '--report-to', 'wandb');
    expect(w.status).not.toBe(0);
    expect(w.stderr).toContain('--report-to wandb: the integrations are tensorboard (event files for `tensorboard --logdir`) and none; wandb is a service vwlmm does not talk to: metrics.jsonl in --out holds every logged record');
    const l = cli(...base, '--out', path.join(dir, 'out4'), '--logging-dir', logs);
    expect(l.stderr).toContain('--logging-dir is where --report-to tensorboard writes its event files: give --report-to tensorboard as well');
    expect(fs.existsSync(path.join(dir, 'out3'))).toBe(false);
  });
});
