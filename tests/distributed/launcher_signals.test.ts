// The launcher of `vwlmm train --nproc-per-node N` (src/distributed/launch.ts, launchRanksOf in src/cli.ts) under
// Ctrl-C / SIGTERM, as torchrun's: the signal goes to every rank, which finishes its step, writes the checkpoint and
// leaves with 130 / 143; the launcher waits for them and leaves with the same code (not 'data-parallel run failed'), rank
// 0 alone prints the stop and one resume command (with --nproc-per-node N), which resumes. Before, the launcher died at
// once and left mpirun and the ranks running, still writing --out. Also the launcher's and rank flags' errors.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../../src/native';
import { readTrainerState } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { cli, cliAsync, trainLosses, writeCliFixture } from '../train/support/tiny';

const tmp = tempDirs('dist-signals');
const root = path.join(__dirname, '..', '..');
const mpiReady = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0 && !!(cpu().backendInfo() as { mpi?: { built?: boolean } }).mpi?.built;
const required = process.env.VWLMM_REQUIRE_MPI === '1';

/** Processes (other than this one) whose command line mentions `text`. */
function processesNaming(text: string): string[] {
  const found: string[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(text)) found.push(`${e}: ${cmd}`);
    } catch {
      /* gone */
    }
  }
  return found;
}

async function trainRecords(out: string, n: number, alive: () => boolean, seconds = 60): Promise<void> {
  const f = path.join(out, 'metrics.jsonl');
  for (let i = 0; i < seconds * 20; i++) {
    if (!alive()) throw new Error('the run ended before the signal');
    if (fs.existsSync(f) && trainLosses(out).length >= n) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no training progress');
}

describe.skipIf(!mpiReady && !required)('vwlmm train --nproc-per-node 2 under a signal', () => {
  it('Ctrl-C while the ranks prepare (before training steps): every process ends, exit 130, the stop said once, no lock left', async () => {
    const dir = tmp(), f = writeCliFixture(dir), out = path.join(dir, 'early'), lock = path.join(out, '.vwlmm.lock');
    const proc = cliAsync('train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', out, '--steps', '150', '--batch-size', '2', '--nproc-per-node', '2');
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
    for (let i = 0; i < 1200 && !fs.existsSync(lock); i++) await new Promise((r) => setTimeout(r, 25));
    expect(fs.existsSync(lock), stderr).toBe(true);
    proc.kill('SIGINT');
    // (a rank that left with 130 outside the steps told its launcher every rank would stop at a step by itself)
    expect(await exited, stderr).toBe(130);
    expect(processesNaming(out)).toEqual([]);
    // (rank 0 removes it as it exits; one killed by mpirun, its launcher)
    expect(fs.existsSync(lock), stderr).toBe(false);
    // rank 0 says it (the ranks wait for each other with the event loop running: Work.waitAsync). Where the signal
    // falls within the few milliseconds between the ranks' handlers at the start of training, rank 0 may stand in a
    // collective until mpirun kills it, and the launcher's line says it instead
    // (once: rank 0's stop outside the steps exits 1 and marks that it said so, and the launcher does not say it again)
    const said = stderr.match(/SIGINT: (stopped outside the training steps|stopping after the current step)/g) ?? [];
    const launcher = /data-parallel run stopped by SIGINT/.test(stderr);
    expect((said.length === 1 && !launcher) || (said.length === 0 && launcher), stderr).toBe(true);
  }, 60_000);

  it('Ctrl-C as the ranks start (before their handlers): every process ends, exit 130, and the launcher says the stop', async () => {
    // ranks killed by the signal leave mpirun with 130, as ranks that stopped at a step and said so: the launcher tells
    // them apart by rank 0's mark (VWLMM_LAUNCHER_REPORT); before, it said nothing
    const dir = tmp(), f = writeCliFixture(dir), out = path.join(dir, 'starting');
    const proc = cliAsync('train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', out, '--steps', '150', '--batch-size', '2', '--nproc-per-node', '2');
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
    for (let i = 0; i < 1200 && !stderr.includes('starting 2 ranks'); i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200)); // mpirun has started the ranks, which are loading (0.5 s and more)
    proc.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(processesNaming(out)).toEqual([]);
    expect(fs.existsSync(path.join(out, '.vwlmm.lock'))).toBe(false);
    const said = stderr.match(/SIGINT: (stopped outside the training steps|stopping after the current step)|data-parallel run stopped by SIGINT|SIGINT: stopped before the ranks started/g) ?? [];
    expect(said.length, stderr).toBeGreaterThan(0);
    expect(said.filter((x) => x.startsWith('SIGINT: st')).length, stderr).toBeLessThanOrEqual(1);
  }, 60_000);

  it('Ctrl-C (SIGINT) reaches the ranks through the launcher: a checkpoint, exit 130 from every process, one stop message and one resume command (with --nproc-per-node 2), which resumes; no rank left behind', async () => {
    const dir = tmp(), f = writeCliFixture(dir), out = path.join(dir, 'out');
    const args = ['train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', out, '--steps', '150', '--batch-size', '2', '--lr', '1e-3', '--nproc-per-node', '2'];
    const proc = cliAsync(...args);
    let stdout = '', stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
    await trainRecords(out, 2, () => proc.exitCode === null);
    proc.kill('SIGINT');
    const code = await exited;
    const text = stdout + stderr;
    expect(code, text).toBe(130);
    expect(processesNaming(out)).toEqual([]); // mpirun and both ranks ended with the launcher
    expect(stderr.match(/SIGINT: stopping after the current step/g), text).toHaveLength(1);
    expect(stderr.match(/training interrupted by SIGINT at stage 'train' step \d+\/150/g), text).toHaveLength(1);
    expect(stderr).not.toMatch(/data-parallel run failed/);
    expect(text).not.toContain('\x1b[?25h'); // no terminal here: no cursor escape from any rank
    const hints = [...stderr.matchAll(/resume with: (vwlmm train .*)\n/g)].map((m) => m[1]);
    expect(hints, text).toHaveLength(1);
    expect(hints[0].split(' ')).toEqual(['vwlmm', ...args, '--resume']);
    const at = readTrainerState(path.join(out, 'checkpoint')).state.globalStep;
    expect(at).toBeGreaterThanOrEqual(2);
    expect(at).toBeLessThan(150);
    // the printed command continues the run (the hint without --nproc-per-node was refused: 2 samples per step, not 4)
    const again = cli(...hints[0].split(' ').slice(1));
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/trained 150 steps/);
    expect(trainLosses(out).map(([s]) => s)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
  }, 120_000);

  it('SIGKILL to the launcher (which no rank sees: they run in groups of their own) stops the ranks as SIGTERM would: a checkpoint, then every process gone', async () => {
    const dir = tmp(), f = writeCliFixture(dir), out = path.join(dir, 'out');
    const proc = cliAsync('train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', out, '--steps', '600', '--batch-size', '2', '--lr', '1e-3', '--nproc-per-node', '2');
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await trainRecords(out, 2, () => proc.exitCode === null);
    proc.kill('SIGKILL');
    // before, mpirun and both ranks trained on to step 600 with nobody to stop them
    for (let i = 0; i < 600 && processesNaming(out).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(processesNaming(out), stderr).toEqual([]);
    const at = readTrainerState(path.join(out, 'checkpoint')).state.globalStep;
    expect(at).toBeGreaterThanOrEqual(2);
    expect(at).toBeLessThan(600);
    expect(trainLosses(out).map(([s]) => s)).toEqual(Array.from({ length: at }, (_, i) => i + 1));
  }, 120_000);

  it('a rank flag that contradicts its launcher is an error on every rank: --nproc-per-node 4 under mpirun -np 2', () => {
    const dir = tmp(), f = writeCliFixture(dir, { images: 1 });
    const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };
    const r = spawnSync('mpirun', ['-np', '2', '--oversubscribe', process.execPath, '--import', 'tsx', path.join(root, 'src', 'cli.ts'), 'train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', path.join(dir, 'out'), '--batch-size', '2', '--nproc-per-node', '4'],
      { encoding: 'utf8', cwd: root, env, timeout: 60_000 });
    expect(r.status).not.toBe(0);
    expect(r.stderr.match(/--nproc-per-node 4, but this process is one of 2 rank\(s\) on this machine that mpirun started \(-np 2\)/g), r.stderr).toHaveLength(2);
    // each rank's error names the rank (mpirun's own report names it only in its boilerplate)
    for (const k of [0, 1]) expect(r.stderr).toContain(`vwlmm: rank ${k} of 2: --nproc-per-node 4, but this process`);
  }, 70_000);
});

describe('the launcher and the rank flags, without MPI', () => {
  it('torchrun-style ranks: a forwarded SIGTERM stops every rank, the launcher waits for them and leaves with 143; a rank\'s 143 is no failure that ends the others', async () => {
    // each rank: on SIGTERM, "writes its checkpoint" (rank 1 takes 1.5 s) and leaves with 143; before, the launcher left
    // at once, and a rank's 143 made it SIGTERM the others (a second signal: quit without the checkpoint)
    const dir = tmp();
    const rank = `const r = process.env.RANK, fs = require('fs'); let n = 0;
      process.on('SIGTERM', () => { if (n++) { fs.writeFileSync(${JSON.stringify(dir)} + '/second_' + r, ''); process.exit(1); }
        setTimeout(() => { fs.writeFileSync(${JSON.stringify(dir)} + '/done_' + r, ''); process.exit(143); }, r === '1' ? 1500 : 10); });
      fs.writeFileSync(${JSON.stringify(dir)} + '/ready_' + r, ''); setInterval(() => {}, 1000);`;
    const launcher = path.join(tmp(), 'launcher.ts');
    fs.writeFileSync(launcher, `import { launchRanks } from ${JSON.stringify(path.join(root, 'src', 'distributed', 'launch.ts'))};
      launchRanks({ nproc: 2, backend: 'nccl', command: [process.execPath, '-e', ${JSON.stringify(rank)}], graceMs: 10000 })
        .then((r) => { console.log(JSON.stringify(r)); process.exit(r.code); });`);
    const p = spawn(process.execPath, ['--import', 'tsx', launcher], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
    for (let i = 0; i < 400 && !(fs.existsSync(path.join(dir, 'ready_0')) && fs.existsSync(path.join(dir, 'ready_1'))); i++) await new Promise((r) => setTimeout(r, 50));
    p.kill('SIGTERM');
    expect(await exited, stdout).toBe(143);
    expect(fs.readdirSync(dir).sort()).toEqual(['done_0', 'done_1', 'ready_0', 'ready_1']);
    expect(JSON.parse(stdout.trim())).toMatchObject({ code: 143, failure: null, interrupted: 'SIGTERM', forwarded: 'SIGTERM' });
  }, 30_000);

  it('a signal that comes while launchRanks starts the ranks is forwarded to them as they start, not the end of the launcher alone', async () => {
    // before, the handlers went in after the spawn: a signal in between ended the launcher by the default action and left
    // mpirun and its ranks running (a stress run at 0.3 s after the start hit it 2 times in 16)
    const dir = tmp();
    const rank = `require('fs').writeFileSync(${JSON.stringify(dir)} + '/ready_' + process.env.RANK, ''); setInterval(() => {}, 1000);`;
    const launcher = path.join(tmp(), 'launcher.ts');
    fs.writeFileSync(launcher, `import { launchRanks } from ${JSON.stringify(path.join(root, 'src', 'distributed', 'launch.ts'))};
      const done = launchRanks({ nproc: 2, backend: 'nccl', command: [process.execPath, '-e', ${JSON.stringify(rank)}], graceMs: 10000 });
      process.kill(process.pid, 'SIGINT'); // before any rank exists (launchRanks awaits a free port first)
      done.then((r) => { console.log(JSON.stringify(r)); process.exit(0); });`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', launcher], { cwd: root, encoding: 'utf8', timeout: 30_000 });
    expect(r.signal, r.stderr).toBeNull();
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ forwarded: 'SIGINT', failure: expect.stringMatching(/^rank [01] was killed by SIGINT$/) });
    expect(processesNaming(dir)).toEqual([]);
  }, 40_000);

  it("a rank's stop handlers: rank 0 alone prints; a copy of the signal within 0.5 s (a process tree signalled, and its launcher forwarding) is the same stop, a later one quits at once", () => {
    const script = path.join(tmp(), 'stop.ts');
    fs.writeFileSync(script, `import { installStopHandlers, StopRequest } from ${JSON.stringify(path.join(root, 'src', 'train', 'interrupt.ts'))};
      const stop = new StopRequest();
      installStopHandlers(stop);
      process.kill(process.pid, 'SIGTERM');
      setTimeout(() => process.kill(process.pid, 'SIGTERM'), 100);
      setTimeout(() => { console.log('still here, ' + stop.requested()); process.kill(process.pid, 'SIGTERM'); }, 1200);
      setTimeout(() => console.log('not stopped'), 3000);`);
    const run = (rank: number) => spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', cwd: root, timeout: 20_000,
      env: { ...process.env, OMPI_COMM_WORLD_RANK: String(rank), OMPI_COMM_WORLD_SIZE: '2' } });
    const [zero, one] = [run(0), run(1)];
    for (const r of [zero, one]) {
      expect(r.status, r.stderr).toBe(143);
      expect(r.stdout).toBe('still here, SIGTERM\n');
    }
    expect(zero.stderr.match(/vwlmm: SIGTERM: stopping after the current step/g)).toHaveLength(1);
    expect(zero.stderr).toMatch(/vwlmm: SIGTERM again: quitting without a new checkpoint\n$/);
    expect(one.stderr).toBe('');
  }, 30_000);

  it('names what is wrong: mpirun missing (no other ranks to stop), nccl on the CPU, --dist-timeout without ranks', () => {
    const dir = tmp(), f = writeCliFixture(dir, { images: 1 });
    const base = ['train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder, '--out', path.join(dir, 'out')];
    const noMpirun = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...base, '--nproc-per-node', '2'],
      { encoding: 'utf8', cwd: root, env: { ...process.env, PATH: tmp() }, timeout: 60_000 });
    expect(noMpirun.status).toBe(2);
    expect(noMpirun.stderr).toMatch(/data-parallel run failed: mpirun could not start: spawn mpirun ENOENT \(the MPI backend launches through mpirun: apt install openmpi-bin\)\n$/);
    const nccl = cli(...base, '--nproc-per-node', '2', '--dist-backend', 'nccl');
    expect(nccl.status).toBe(2);
    expect(nccl.stderr).toMatch(/--dist-backend nccl reduces CUDA tensors: it needs --device cuda \(got --device cpu; the CPU's backend is mpi\)/);
    const timeout = cli(...base, '--dist-timeout', '30');
    expect(timeout.status).toBe(2);
    expect(timeout.stderr).toMatch(/--dist-timeout is for data-parallel runs/);
  }, 60_000);
});
