// One run at a time writes a --out: `train` and `demo` hold <out>/.vwlmm.lock (pid, host, start time) while they run, so
// a second run into it (even with --overwrite-output-dir) is refused naming the first, instead of interleaving its
// metrics and checkpoints. The lock goes on every exit path (the end, an error, a stop by SIGTERM); a lock whose
// process is gone is taken over with a note.
import { ChildProcess, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, cliAsync, writeCliFixture } from './support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('outlock');

function finished(proc: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((res) => proc.on('exit', (code) => res({ code, stderr })));
}
const lockOf = (out: string) => path.join(out, '.vwlmm.lock');
/** A lock as a run on this host leaves it. */
const writeLock = (out: string, pid: number) => {
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(lockOf(out), JSON.stringify({ pid, host: os.hostname(), started: '2024-01-01T00:00:00.000Z', command: 'vwlmm train' }) + '\n');
};

describe('the --out lock of train and demo', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string;
  const train = (out: string, ...more: string[]) => ['train', '--init', fx.init, '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--batch-size', '2', ...more];
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir);
  });

  it('a second train while the first runs is refused naming its pid; a SIGTERM stop releases the lock', async () => {
    const out = path.join(dir, 'run');
    const first = cliAsync(...train(out, '--steps', '5000'));
    const done = finished(first);
    try {
      for (let i = 0; i < 600 && !fs.existsSync(path.join(out, 'metrics.jsonl')); i++) {
        if (first.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(JSON.parse(fs.readFileSync(lockOf(out), 'utf8'))).toMatchObject({ pid: first.pid, host: os.hostname(), command: 'vwlmm train' });
      const second = cli(...train(out, '--steps', '1', '--overwrite-output-dir'));
      expect(second.status).toBe(2);
      expect(second.stderr).toMatch(new RegExp(`vwlmm: --out ${out} is being written by vwlmm train \\(pid ${first.pid} on ${os.hostname()}, started [^)]+\\): wait for it to end, or give another --out`));
      first.kill('SIGTERM');
      const r = await done;
      expect(r.code, r.stderr).toBe(143);
      expect(fs.existsSync(lockOf(out))).toBe(false);
    } finally {
      if (first.exitCode === null) first.kill('SIGKILL'); // a failed expectation leaves no run behind
    }
  }, 60_000);

  it("a gone process's lock is taken over with a note; the lock goes at the end and on an error", () => {
    const out = path.join(dir, 'stale');
    const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const pid = Number(gone.stdout.trim());
    writeLock(out, pid);
    const r = cli(...train(out, '--steps', '1'));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`vwlmm: --out ${out}: taking over the lock of vwlmm train (pid ${pid} on ${os.hostname()}, started 2024-01-01T00:00:00.000Z), which is gone`);
    expect(fs.existsSync(lockOf(out))).toBe(false);
    // an error after the lock was taken (here: a run already in --out) releases it too
    const again = cli(...train(out, '--steps', '1'));
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('already holds a training run');
    expect(fs.existsSync(lockOf(out))).toBe(false);
  }, 60_000);

  it('a lock whose write fails (a full disk: here a file-size limit of 0) is not left behind to block the next run', () => {
    const out = path.join(dir, 'nospace');
    fs.mkdirSync(out);
    // SIGXFSZ ignored, so the write fails with EFBIG instead of killing the process (as ENOSPC fails on a full disk)
    const args = [path.join(__dirname, '..', '..', 'src', 'cli.ts'), ...train(out, '--steps', '1')].map((a) => `'${a}'`).join(' ');
    const r = spawnSync('bash', ['-c', `trap '' XFSZ; ulimit -f 0; exec '${process.execPath}' --import tsx ${args}`], { cwd: path.join(__dirname, '..', '..'), encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`vwlmm: --out ${out}: cannot create the lock ${lockOf(out)} \\(EFBIG`));
    expect(fs.readdirSync(out)).toEqual([]);
    const again = cli(...train(out, '--steps', '1'));
    expect(again.status, again.stderr).toBe(0);
  }, 60_000);

  it('--overwrite-output-dir removes the old run\'s checkpoint at once, so a failed new run leaves nothing to --resume; the advice names the way out', () => {
    const out = path.join(dir, 'overwrite');
    const first = cli(...train(out, '--steps', '2'));
    expect(first.status, first.stderr).toBe(0);
    expect(fs.existsSync(path.join(out, 'checkpoint', 'config.json'))).toBe(true);
    // its own checkpoint as --init would be removed under it: refused, nothing removed
    const self = cli('train', '--init', path.join(out, 'checkpoint'), '--data', fx.data, '--image-folder', fx.imageFolder, '--out', out, '--batch-size', '2', '--steps', '1', '--overwrite-output-dir');
    expect(self.status).toBe(2);
    expect(self.stderr).toContain(`--init ${path.join(out, 'checkpoint')} is the old run's checkpoint ${path.join(out, 'checkpoint')}, which --overwrite-output-dir removes`);
    expect(fs.existsSync(path.join(out, 'checkpoint', 'config.json'))).toBe(true);
    // a new run that fails before its first save (no record it can train on)
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify([{ id: 'x', image: 'missing.png', conversations: [{ from: 'human', value: '<image>\nq' }, { from: 'gpt', value: 'a' }] }]));
    const second = cli('train', '--init', fx.init, '--data', bad, '--image-folder', fx.imageFolder, '--out', out, '--batch-size', '2', '--steps', '1', '--overwrite-output-dir');
    expect(second.status).not.toBe(0);
    expect(fs.readdirSync(out).filter((n) => n.startsWith('checkpoint'))).toEqual([]);
    // --resume has nothing to continue (before: the old run's weights, silently), and says what to do instead
    const resume = cli(...train(out, '--steps', '2', '--resume'));
    expect(resume.status).toBe(2);
    expect(resume.stderr).toContain(`vwlmm: --resume: there is no checkpoint in ${path.join(out, 'checkpoint')}; the run stopped before its first checkpoint was saved: start it over with --overwrite-output-dir`);
    // an unfinished save's folder is named as such
    fs.mkdirSync(path.join(out, 'checkpoint'));
    const partial = cli(...train(out, '--steps', '2', '--resume'));
    expect(partial.stderr).toContain(`${path.join(out, 'checkpoint')} is not a complete checkpoint (it has no config.json: a save that did not finish)`);
  }, 120_000);

  it("--overwrite-output-dir removes only what saves made (never a user's checkpoint.bak or notes), and a checkpoint/ of other files is refused before training", () => {
    const out = path.join(dir, 'userfiles');
    fs.mkdirSync(path.join(out, 'checkpoint.bak'), { recursive: true });
    fs.writeFileSync(path.join(out, 'checkpoint.bak', 'notes.txt'), 'mine');
    fs.writeFileSync(path.join(out, 'checkpoint.txt'), 'mine');
    fs.mkdirSync(path.join(out, 'checkpoint'));
    fs.writeFileSync(path.join(out, 'checkpoint', 'notes.txt'), 'mine');
    // without --overwrite-output-dir too: refused before the first step, not after the last (no place to save)
    for (const extra of [[], ['--overwrite-output-dir']]) {
      const r = cli(...train(out, '--steps', '1', ...extra));
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--out ${out}: the run saves its checkpoint to ${path.join(out, 'checkpoint')}, but ${path.join(out, 'checkpoint')} holds files that are not a checkpoint's (notes.txt)`);
      expect(fs.existsSync(path.join(out, 'metrics.jsonl'))).toBe(false);
    }
    fs.rmSync(path.join(out, 'checkpoint'), { recursive: true });
    const first = cli(...train(out, '--steps', '1'));
    expect(first.status, first.stderr).toBe(0);
    fs.mkdirSync(path.join(out, 'checkpoint.old-000001000000000-1-0')); // a save killed between its renames
    const again = cli(...train(out, '--steps', '1', '--overwrite-output-dir'));
    expect(again.status, again.stderr).toBe(0);
    expect(fs.readdirSync(out).filter((n) => n.startsWith('checkpoint')).sort()).toEqual(['checkpoint', 'checkpoint.bak', 'checkpoint.txt']);
    expect(fs.readFileSync(path.join(out, 'checkpoint.bak', 'notes.txt'), 'utf8')).toBe('mine');
  }, 120_000);

  it('--resume with --pif / --no-pif against the run\'s own vm_pif is refused; the same one is accepted (a finished run: nothing to train, said so)', () => {
    const out = path.join(dir, 'pif');
    const first = cli(...train(out, '--steps', '1'));
    expect(first.status, first.stderr).toBe(0);
    const switched = cli(...train(out, '--steps', '1', '--resume', '--pif'));
    expect(switched.status).toBe(2);
    expect(switched.stderr).toContain(`vwlmm: --resume: the run trains without PIF (vm_pif false in ${path.join(out, 'checkpoint', 'config.json')}), and --pif would switch it mid-run: resume without it`);
    const state = fs.readFileSync(path.join(out, 'checkpoint', 'model.safetensors'));
    const same = cli(...train(out, '--steps', '1', '--resume', '--no-pif'));
    expect(same.status, same.stderr).toBe(0);
    // the run had finished: said so, not "trained 1 step in 0 s", and its checkpoint left as it was
    expect(same.stdout).toContain(`the run in ${out} was already complete at global step 1: nothing to train (its checkpoint ${path.join(out, 'checkpoint')} is unchanged)`);
    expect(fs.readFileSync(path.join(out, 'checkpoint', 'model.safetensors')).equals(state)).toBe(true);
  }, 60_000);

  it("demo: a live process's lock refuses the run before any work", () => {
    const out = path.join(dir, 'demo');
    writeLock(out, process.pid); // this test's process: alive
    const r = cli('demo', '--out', out, '--scale', '0.01');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`vwlmm: --out ${out} is being written by vwlmm train (pid ${process.pid} on ${os.hostname()}`);
    expect(fs.readdirSync(out)).toEqual(['.vwlmm.lock']); // no data, nothing calibrated
  });
});
