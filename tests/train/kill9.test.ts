// kill -9 at random moments: a child process trains the tiny model with a checkpoint after every step and
// is SIGKILLed at a random delay (during start-up and resume, steps, or checkpoint writes), again and again.
// After every kill the newest complete checkpoint must be findable and loadable, hold at least every step
// the child reported as saved, and the next child must resume exactly there; at the end the loss curve of
// the killed-and-resumed run equals the uninterrupted one. VWLMM_KILLS sets the number of kills (default 12).
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';
import { loadCheckpoint, resolveCheckpointDir } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { readTrainerState, Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages, trainLosses } from './support/tiny';

const root = path.join(__dirname, '..', '..');
const child = path.join(__dirname, 'support', 'train_child.ts');
const STEPS = Number(process.env.VWLMM_KILL_STEPS ?? 60); // per stage (two stages)
const KILLS = Number(process.env.VWLMM_KILLS ?? 12);

interface Run { proc: ChildProcess; lines: string[]; err: () => string; started: number; firstStep: Promise<number>; exit: Promise<number | null> }

function start(outDir: string): Run {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, outDir, String(STEPS)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '', err = '';
  let onFirst: (t: number) => void = () => {};
  const firstStep = new Promise<number>((res) => (onFirst = res));
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    for (const l of parts) {
      lines.push(l);
      if (l.startsWith('step ')) onFirst(Date.now());
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close': after the exit and after all of its output has been read
  const exit = new Promise<number | null>((res) => proc.on('close', (code) => res(code)));
  return { proc, lines, err: () => err, started: Date.now(), firstStep, exit };
}

const numbers = (lines: string[], tag: string) => lines.filter((l) => l.startsWith(tag + ' ')).map((l) => Number(l.slice(tag.length + 1)));
const losses = trainLosses;
const tempDir = tempDirs('kill9');

describe('kill -9 during training', () => {
  it('a save killed between its two renames: the .old- checkpoint is found, loaded and resumed exactly; the next save cleans up', () => {
    const { tokenizer, json, samples, makeBatch } = tinyData(8);
    const train = (outDir: string, extra: Record<string, unknown> = {}) => {
      const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
      new Trainer(m, tinyStages(makeBatch, samples.length, 3), { seed: 9, outDir, saveEvery: 1, checkpointFiles: { tokenizer: json }, ...extra }).run();
      m.dispose();
    };
    const tmp = tempDir();
    train(path.join(tmp, 'ref'));
    const out = path.join(tmp, 'run'), ck = path.join(out, 'checkpoint');
    train(out, { stopAfterSteps: 4 });
    // the state between rename(checkpoint -> .old-*) and rename(.tmp-* -> checkpoint) of a dead process
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const old = `${ck}.old-${String(Date.now()).padStart(15, '0')}-${dead}-7`;
    fs.renameSync(ck, old);
    fs.mkdirSync(`${ck}.tmp-${dead}-1-8`);
    fs.writeFileSync(`${ck}.tmp-${dead}-1-8/model.safetensors`, 'half');
    expect(resolveCheckpointDir(ck)).toBe(old);
    const loaded = loadCheckpoint(ck);
    expect(loaded.dir).toBe(old);
    loaded.model.dispose();
    expect(readTrainerState(ck).state.globalStep).toBe(4);
    train(out, { autoResume: true });
    expect(trainLosses(out)).toEqual(trainLosses(path.join(tmp, 'ref')));
    expect(fs.readdirSync(out).filter((n) => n.startsWith('checkpoint.'))).toEqual([]);
  });

  it(`${KILLS} SIGKILLs at random moments: the last complete checkpoint always loads and resumes exactly`, async () => {
    const tmp = tempDir();
    const t0 = Date.now();
    // the uninterrupted run, in this process (checkpoints do not change the numbers; the child saves every step)
    const { tokenizer, json, samples, makeBatch } = tinyData(8);
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    new Trainer(m, tinyStages(makeBatch, samples.length, STEPS), { seed: 9, outDir: path.join(tmp, 'ref'), checkpointFiles: { tokenizer: json } }).run();
    m.dispose();

    const out = path.join(tmp, 'run');
    const ck = path.join(out, 'checkpoint');
    let rng = 12345;
    const random = () => ((rng = (rng * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let savedEver = 0, expectFirst = 1, fellBack = false;
    let startup = 800, stepMs = 20; // refined from the children as they run
    // where the kills landed, from what the killed child left behind (names carry its pid)
    const stats = { kills: 0, survived: 0, beforeFirstStep: 0, resumesChecked: 0, writingCheckpoint: 0, betweenRenames: 0, beforeCleanup: 0, duringCleanup: 0, fellBackToOld: 0 };
    const log: string[] = [];
    for (let k = 0; k < KILLS; k++) {
      const run = start(out);
      // a random moment: a quarter of the kills during start-up (loading and resuming the checkpoint), the
      // rest within the first 8 steps after the first one (steps and checkpoint writes)
      if (k % 4 === 0) await new Promise((r) => setTimeout(r, random() * startup));
      else {
        await Promise.race([run.firstStep, run.exit]);
        await new Promise((r) => setTimeout(r, random() * 8 * stepMs));
      }
      run.proc.kill('SIGKILL');
      const code = await run.exit;
      const steps = numbers(run.lines, 'step'), saved = numbers(run.lines, 'saved');
      const where = `kill ${k} (steps ${steps.join(' ')}; saved ${saved.join(' ')}; exit ${code}; ${run.err().slice(-2000)})`;
      log.push(where);
      if (code === 0) break; // finished before the kill (not expected with these budgets)
      expect(code, where).toBeNull(); // killed, not failed
      stats.kills++;
      if (steps.length) {
        expect(steps[0], `${where}: the child resumed at the checkpoint`).toBe(expectFirst);
        stats.resumesChecked++;
        const first = await run.firstStep;
        startup = first - run.started;
        if (steps.length > 1) stepMs = Math.max(1, (Date.now() - first) / steps.length);
      } else stats.beforeFirstStep++;
      savedEver = Math.max(savedEver, ...saved);
      const siblings = fs.existsSync(out) ? fs.readdirSync(out).filter((n) => /^checkpoint\.(tmp|old|trash)-/.test(n)) : [];
      const pid = run.proc.pid!;
      const mine = (kind: string) => siblings.some((n) => n.startsWith(`checkpoint.${kind}-`) && (kind === 'tmp' ? n.startsWith(`checkpoint.tmp-${pid}-`) : n.split('-')[2] === String(pid)));
      if (mine('tmp')) stats.writingCheckpoint++;
      if (mine('old')) fs.existsSync(ck) ? stats.beforeCleanup++ : stats.betweenRenames++;
      if (mine('trash')) stats.duringCleanup++;
      const dir = resolveCheckpointDir(ck);
      if (savedEver === 0 && dir === null) {
        stats.survived++;
        continue; // killed before the first checkpoint: the next run starts from scratch
      }
      expect(dir, `${where}: a complete checkpoint is findable (siblings ${siblings.join(', ')})`).not.toBeNull();
      if (dir !== ck && !fellBack) stats.fellBackToOld++;
      fellBack = dir !== ck;
      const st = readTrainerState(dir!);
      expect(st.state.globalStep, `${where}: no reported save is lost`).toBeGreaterThanOrEqual(savedEver);
      const loaded = loadCheckpoint(ck);
      expect(loaded.dir, where).toBe(dir);
      loaded.model.dispose();
      expectFirst = st.state.globalStep + 1;
      stats.survived++;
    }
    const last = start(out);
    expect(await last.exit, last.err()).toBe(0);
    if (numbers(last.lines, 'step').length) expect(numbers(last.lines, 'step')[0]).toBe(expectFirst);
    expect(losses(out), log.join('\n')).toEqual(losses(path.join(tmp, 'ref')));
    expect(losses(out).length).toBe(2 * STEPS);
    expect(stats.survived).toBe(stats.kills);
    expect(stats.kills, log.join('\n')).toBe(KILLS);
    // leftovers of killed saves are cleaned up by the next save
    expect(fs.readdirSync(out).filter((n) => /^checkpoint\.(tmp|old|trash)-/.test(n))).toEqual([]);
    const report = { ...stats, finalStep: 2 * STEPS, startupMs: Math.round(startup), stepWithCheckpointMs: +stepMs.toFixed(1), seconds: +((Date.now() - t0) / 1000).toFixed(1) };
    process.stdout.write(`kill -9 report: ${JSON.stringify(report)}\n`);
  }, 120_000);
});
