// SIGINT / SIGTERM during training: the current step finishes, a checkpoint (weights, optimizer state, data
// position) is written, the run stops with TrainingInterrupted (the CLI: exit 130 / 143 and the command that
// resumes), and the resumed run continues the loss curve exactly. Signal handlers are removed afterwards.
import { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { StopRequest, TrainingInterrupted } from '../../src/train/interrupt';
import { readTrainerState, Trainer, TrainerOptions } from '../../src/train/trainer';
import { readSafetensors } from '../../src/io/safetensors';
import { cli, cliAsync, tinyConfig, tinyData, tinyStages, trainLosses, writeCliFixture } from './support/tiny';

const tmp = tempDirs('interrupt');

describe('Trainer interruption', () => {
  const { tokenizer, json, samples, makeBatch } = tinyData(8);
  const stages = () => tinyStages(makeBatch, samples.length, 4);
  const train = (outDir: string, opts: Partial<TrainerOptions> = {}) => {
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    const t = new Trainer(m, stages(), { seed: 9, outDir, checkpointFiles: { tokenizer: json }, ...opts });
    return { m, t };
  };
  const full = tmp();
  const ref = train(full);
  ref.t.run();
  ref.m.dispose();

  for (const at of [5, 4]) {
    it(`a stop requested at global step ${at}${at === 4 ? ' (a stage boundary)' : ' (mid-stage, gradient accumulation)'}: checkpoint there, then an exact resume`, () => {
      const out = tmp();
      const stop = new StopRequest();
      const { m, t } = train(out, { stop, saveEvery: 3, onLog: (r) => r.type === 'train' && r.globalStep === at && stop.request('SIGTERM') });
      let err: unknown;
      try {
        t.run();
      } catch (e) {
        err = e;
      }
      m.dispose();
      expect(err).toBeInstanceOf(TrainingInterrupted);
      const ti = err as TrainingInterrupted;
      expect(ti.exitCode).toBe(143);
      expect(ti.checkpoint).toBe(path.join(out, 'checkpoint'));
      expect(ti.message).toMatch(new RegExp(`interrupted by SIGTERM at stage 'b' step ${at - 4}/4 \\(global step ${at}\\)`));
      const st = readTrainerState(ti.checkpoint!);
      expect(st.state.globalStep).toBe(at);
      // optimizer state travels with it: moments and step counts of the stage's parameters
      const opt = readSafetensors(path.join(ti.checkpoint!, 'optimizer.safetensors'));
      if (at === 5) expect([...opt.keys()].some((k) => k.endsWith('.m'))).toBe(true);
      const records = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
      expect(records.at(-1)).toMatchObject({ type: 'interrupted', signal: 'SIGTERM', globalStep: at });
      const ck = loadCheckpoint(ti.checkpoint!);
      new Trainer(ck.model, stages(), { seed: 9, outDir: out, checkpointFiles: { tokenizer: json } }).run(st);
      ck.model.dispose();
      expect(trainLosses(out)).toEqual(trainLosses(full));
    });
  }

  it('runAsync + handleSignals: SIGINT stops it cleanly, the handlers are removed, autoResume continues exactly', async () => {
    const before = [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    const out = tmp();
    const { m, t } = train(out, { handleSignals: true, onLog: (r) => r.type === 'train' && r.globalStep === 3 && process.emit('SIGINT', 'SIGINT') });
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(before);
    await expect(t.runAsync()).rejects.toMatchObject({ name: 'TrainingInterrupted', signal: 'SIGINT', exitCode: 130 });
    expect([process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')]).toEqual(before);
    m.dispose();
    expect(readTrainerState(path.join(out, 'checkpoint')).state.globalStep).toBe(3);
    // autoResume loads weights, optimizer state and position from <outDir>/checkpoint into a fresh model
    const fresh = train(out, { autoResume: true });
    await fresh.t.runAsync();
    fresh.m.dispose();
    expect(trainLosses(out)).toEqual(trainLosses(full));
    // a synchronous run cannot receive signals: it refuses handleSignals instead of ignoring them
    const sync = train(tmp(), { handleSignals: true });
    expect(() => sync.t.run()).toThrow(/handleSignals needs runAsync/);
    sync.m.dispose();
  });

  it('resume refuses a run with other stages or step counts (it would not be exact)', () => {
    const out = tmp();
    const { m, t } = train(out, { stopAfterSteps: 2, saveEvery: 1 });
    t.run();
    const st = readTrainerState(path.join(out, 'checkpoint'));
    const other = new Trainer(m, tinyStages(makeBatch, samples.length, 5), { seed: 9, outDir: out });
    expect(() => other.run(st)).toThrow(`stage 'a' had 4 steps in the checkpoint's run (${st.dir}), this run has 5`);
    // a checkpoint from before the sample order was keyed by the stage's name (no sampleOrder) would resume
    // with other batches: refused, as is an order this version does not draw
    const same = new Trainer(m, stages(), { seed: 9, outDir: out });
    expect(st.state.sampleOrder).toBe('by-stage-name');
    expect(() => same.run({ ...st, state: { ...st.state, sampleOrder: undefined } })).toThrow(/an older order \(keyed by the stage's position\)/);
    expect(() => same.run({ ...st, state: { ...st.state, sampleOrder: 'by-index' } })).toThrow(/the order 'by-index'.*would not continue exactly/);
    m.dispose();
  });
});

/** Waits until the metrics log of a CLI run has `n` train records, for up to `seconds`. */
async function waitForSteps(outDir: string, n: number, proc: ChildProcess, seconds = 30): Promise<void> {
  const f = path.join(outDir, 'metrics.jsonl');
  for (let i = 0; i < seconds * 20; i++) {
    if (proc.exitCode !== null) throw new Error('the run ended before the signal');
    if (fs.existsSync(f) && fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.includes('"type":"train"')).length >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no training progress');
}

function finished(proc: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((res) => proc.on('exit', (code) => res({ code, stdout, stderr })));
}

describe('vwlmm CLI interruption', () => {
  it('train: SIGINT as soon as --out is locked (before or as training starts) exits 130 and leaves no lock', async () => {
    const dir = tmp();
    const fx = writeCliFixture(dir);
    const out = path.join(dir, 'early'), lock = path.join(out, '.vwlmm.lock');
    const proc = cliAsync('train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '800', '--batch-size', '2');
    const done = finished(proc);
    for (let i = 0; i < 600 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 25));
    expect(fs.existsSync(lock)).toBe(true);
    proc.kill('SIGINT');
    const res = await done;
    // (Node's default ended the process silently, without its exit handlers: the lock stayed)
    expect(res.code, res.stderr).toBe(130);
    expect(res.stderr).toMatch(/vwlmm: SIGINT: (stopped outside the training steps|stopping after the current step)/);
    expect(res.stderr).not.toMatch(/\n\s+at /);
    expect(res.stderr).not.toContain('resume with'); // (nothing was saved to resume)
    expect(fs.existsSync(lock)).toBe(false);
  });

  it('train: SIGINT (130), resume, SIGTERM (143), resume: the loss curve of the uninterrupted run', async () => {
    const dir = tmp();
    const fx = writeCliFixture(dir);
    const args = (out: string) => ['train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--steps', '800', '--batch-size', '2', '--lr', '3e-3'];
    const refOut = path.join(dir, 'ref');
    const r = cli(...args(refOut));
    expect(r.status, r.stderr).toBe(0);
    const out = path.join(dir, 'run');
    let resumeArgs: string[] = [];
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const proc = cliAsync(...(resumeArgs.length ? resumeArgs : args(out)));
      const done = finished(proc);
      await waitForSteps(out, signal === 'SIGINT' ? 1 : trainLosses(out).length + 1, proc);
      proc.kill(signal);
      const res = await done;
      expect(res.code, res.stderr).toBe(code);
      expect(res.stderr).toMatch(new RegExp(`training interrupted by ${signal} at stage 'train' step \\d+/800`));
      const m = /resume with: (vwlmm train .*--resume)\n/.exec(res.stderr);
      expect(m, res.stderr).not.toBeNull();
      expect(res.stderr).not.toMatch(/\n\s+at /);
      const st = readTrainerState(path.join(out, 'checkpoint')).state;
      expect(st.globalStep).toBeGreaterThan(0);
      expect(st.globalStep).toBeLessThan(800);
      resumeArgs = m![1].split(' ').slice(1); // the printed command (no quoting needed for these paths)
      expect(resumeArgs).toEqual([...args(out), '--resume']);
    }
    // a stop while the resume prepares its data (outside the steps) names the resume too: the checkpoint is the run's
    const lock = path.join(out, '.vwlmm.lock');
    const early = cliAsync(...resumeArgs);
    const stopped = finished(early);
    for (let i = 0; i < 600 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 25));
    early.kill('SIGINT');
    const e = await stopped;
    expect(e.code, e.stderr).toBe(130);
    expect(e.stderr).toContain(`resume with: vwlmm ${resumeArgs.join(' ')}\n`);
    const fin = cli(...resumeArgs);
    expect(fin.status, fin.stderr).toBe(0);
    // the steps of this process said apart from the run's (the time is theirs)
    expect(fin.stdout).toMatch(/trained 800 steps \((\d+) of them in this run, resumed at step (\d+)\) on/);
    const [, ran, at] = /\((\d+) of them in this run, resumed at step (\d+)\)/.exec(fin.stdout)!;
    expect(Number(ran) + Number(at)).toBe(800);
    expect(trainLosses(out)).toEqual(trainLosses(refOut));
  }, 60_000);

  it('demo: SIGTERM stops training at a step boundary with a checkpoint (143) and the resume command', async () => {
    const out = path.join(tmp(), 'demo');
    // 0.02 of the budget: 20 caption steps, so the stop usually lands in stage 1 (any stage of the run will do)
    const proc = cliAsync('demo', '--out', out, '--scale', '0.02', '--json');
    const done = finished(proc);
    // the demo writes its data and calibrates before the first step: ~10 s alone, over 30 s on a loaded 2-core machine
    await waitForSteps(path.join(out, 'vw'), 1, proc, 120);
    proc.kill('SIGTERM');
    const res = await done;
    expect(res.code, res.stderr).toBe(143);
    expect(res.stderr).toMatch(/training interrupted by SIGTERM at stage '(captions[a-z-]*|questions)' step \d+\/\d+/);
    expect(res.stderr).toContain(`resume with: vwlmm demo --out ${out} --scale 0.02 --json --resume`);
    const st = readTrainerState(path.join(out, 'vw', 'checkpoint')).state;
    expect(st.globalStep).toBeGreaterThanOrEqual(10);
    expect(fs.existsSync(path.join(out, 'vw', 'checkpoint', 'optimizer.safetensors'))).toBe(true);
    expect(res.stdout).not.toMatch(/accuracy/); // stopped before the evaluation
  }, 180_000);
});
