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

  it("demo: a live process's lock refuses the run before any work", () => {
    const out = path.join(dir, 'demo');
    writeLock(out, process.pid); // this test's process: alive
    const r = cli('demo', '--out', out, '--scale', '0.01');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`vwlmm: --out ${out} is being written by vwlmm train (pid ${process.pid} on ${os.hostname()}`);
    expect(fs.readdirSync(out)).toEqual(['.vwlmm.lock']); // no data, nothing calibrated
  });
});
