// The launcher of `vwlmm train|demo --nproc-per-node 2` under one Ctrl-C or SIGTERM at a random moment: what a user is
// promised whenever the signal lands (loading, mpirun starting the ranks, preparing the data, a step, the end).
// tests/distributed/launcher_signals.test.ts signals at a few chosen moments; the races between the launcher's,
// mpirun's and the ranks' handlers show only over many random ones. Each trial checks:
//   (a) the launcher exits 130 / 143 (0: the run finished first; killed by the signal: it came before the launcher's
//       handlers, an outcome of its own, not a violation), and no hang (90 s)
//   (b) no mpirun or rank left (looked for 1.5 s after the launcher exits)   (c) no .vwlmm.lock left in --out
//   (d) exactly one stop line: a rank's "SIGxxx: stopping after the current step" / "SIGxxx: stopped outside the
//       training steps", or else the launcher's "data-parallel run stopped by SIGxxx" / "SIGxxx: stopped before the
//       ranks started"
//   (e) a checkpoint written or a --resume command printed: that command (the same one without a printed line) runs
//       to exit 0, leaving no process and no lock
// One line per trial, a JSON record per trial (stderr included) in DIR/results-<mode>-seed<seed>.jsonl, then a
// summary; exit 1 on any violation. An observation tool for long runs (40 trials: 10-20 minutes on 2 CPU cores).
//   npx tsx benchmarks/launcher_signals_stress.ts [--mode train|demo] [--trials 40] [--min-delay 0.2] [--max-delay 2.3]
//     [--seed 1] [--steps 60] [--scale 0.02] [--work-dir DIR]
// --steps: train's optimizer steps; --scale: demo's; the delay is uniform in [min, max] seconds after the launcher's
// start. Needs Open MPI's mpirun and an addon built with MPI (VWLMM_ADDON, or build/), as tests/distributed do. The
// fixture (tests/train/support/tiny.ts), the runs' --out folders and the results go to DIR (default: a fresh temporary
// folder), kept at the end.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { cpu } from '../src/native';
import { Generator, MAX_SEED } from '../src/random';
import { writeCliFixture } from '../tests/train/support/tiny';
import { arg, declareFlags, numArg } from './support';

declareFlags(['mode', 'trials', 'min-delay', 'max-delay', 'seed', 'steps', 'scale', 'work-dir']);
const refuse = (message: string): never => {
  console.error(`${path.basename(__filename)}: ${message}`);
  process.exit(2);
};
const mode = arg('mode', 'train');
if (mode !== 'train' && mode !== 'demo') refuse(`--mode takes train or demo, got '${mode}'`);
const N = numArg('trials', 40, { integer: true, min: 1 });
const dmin = numArg('min-delay', 0.2, { min: 0 }), dmax = numArg('max-delay', 2.3, { min: dmin });
const seed = numArg('seed', 1, { integer: true, min: 0, max: MAX_SEED });
const steps = numArg('steps', 60, { integer: true, min: 1 }), scale = numArg('scale', 0.02, { min: 0, minExclusive: true, max: 100 });
const HANG_S = 90, RESUME_TIMEOUT_S = 180;

if (spawnSync('mpirun', ['--version']).status !== 0) refuse("needs Open MPI's mpirun on PATH");
try {
  if (!(cpu().backendInfo() as { mpi?: { built?: boolean } }).mpi?.built) refuse('needs an addon built with MPI (VWLMM_ADDON or build/)');
} catch (e) {
  refuse(`needs the addon (VWLMM_ADDON or build/): ${(e as Error).message.split('\n')[0]}`);
}

const root = path.join(__dirname, '..');
const cliArgs = ['--import', 'tsx', path.join(root, 'src', 'cli.ts')];
// one thread per rank: the 2 ranks, mpirun and the launcher share the machine's cores
const env = { ...process.env, VWLMM_NUM_THREADS: '1' };
const workDir = arg('work-dir', '');
const work = workDir ? (fs.mkdirSync(workDir, { recursive: true }), workDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-signals-'));
const tag = `${mode}-seed${seed}`;
const runsDir = path.join(work, `runs-${tag}`);
const resultsFile = path.join(work, `results-${tag}.jsonl`);
const fix = writeCliFixture(path.join(work, 'fixture'), { images: 3 });
fs.mkdirSync(runsDir, { recursive: true });
fs.writeFileSync(resultsFile, '');
// the same signals and delays for the same --seed
const gen = new Generator(seed);
const rnd = () => gen.uniform();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes (other than this one) whose command line mentions `text`: a run's launcher, mpirun and ranks name its --out. */
function procsNaming(text: string): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(text)) found.push({ pid: Number(e), cmd });
    } catch { /* gone */ }
  }
  return found;
}
/** SIGKILL, by pid, whatever of the run in `out` is left, and the launcher's process group (it was started detached). */
function killLeft(out: string, launcherPid: number): void {
  for (const q of procsNaming(out)) { try { process.kill(q.pid, 'SIGKILL'); } catch { /* gone */ } }
  try { process.kill(-launcherPid, 'SIGKILL'); } catch { /* gone */ }
}
/** The train records in the run's metrics log (the demo logs under vw/). */
function trainSteps(out: string): number {
  let n = 0;
  for (const f of [path.join(out, 'metrics.jsonl'), path.join(out, 'vw', 'metrics.jsonl')]) {
    let lines: string[] = [];
    try { lines = fs.readFileSync(f, 'utf8').split('\n').filter(Boolean); } catch { /* none */ }
    // the last line may be half written
    n = Math.max(n, lines.filter((l) => { try { return JSON.parse(l).type === 'train'; } catch { return false; } }).length);
  }
  return n;
}
const hasCheckpoint = (out: string) => fs.existsSync(path.join(out, 'checkpoint', 'config.json')) || fs.existsSync(path.join(out, 'vw', 'checkpoint', 'config.json'));
/** What runs at the moment of the signal: launcher, mpirun, ranks; the lock; the steps done. */
function snapshot(out: string, launcherPid: number) {
  const kinds = procsNaming(out).map((p) => p.pid === launcherPid ? 'launcher' : p.cmd.startsWith('mpirun') ? 'mpirun' : 'rank');
  return { procs: kinds.join(','), lock: fs.existsSync(path.join(out, '.vwlmm.lock')), steps: trainSteps(out), ckpt: hasCheckpoint(out) };
}
/** The words of a command line as the CLI's resume command quotes them ('...', with '\'' for a quote). */
const shellWords = (line: string) => [...line.matchAll(/(?:[^\s'\\]+|'[^']*'|\\.)+/g)].map((m) => m[0].replace(/'([^']*)'|\\(.)/g, (_, q, e) => q ?? e));

// the trial running now: the script's own Ctrl-C kills it rather than leave a detached launcher, mpirun and ranks
let current: { out: string; pid: number } | null = null;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (current) killLeft(current.out, current.pid);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  });
}

type Outcome = 'rank line' | 'launcher line' | 'finished' | 'killed' | 'other';
interface Trial { outcome: Outcome; sent: boolean; exitAfterSignal: number | null; violations: string[] }

async function trial(i: number): Promise<Trial> {
  const out = path.join(runsDir, `t${String(i).padStart(2, '0')}`);
  fs.rmSync(out, { recursive: true, force: true });
  const sig: NodeJS.Signals = rnd() < 0.5 ? 'SIGINT' : 'SIGTERM';
  const delay = dmin + (dmax - dmin) * rnd();
  const args = mode === 'train'
    ? ['train', '--init', fix.init, '--data', fix.data, '--image-folder', fix.imageFolder, '--out', out, '--steps', String(steps), '--batch-size', '2', '--nproc-per-node', '2']
    : ['demo', '--scale', String(scale), '--nproc-per-node', '2', '--out', out];
  // detached: the signal goes to the launcher alone, as a `kill` or a scheduler's would, not to a terminal's group
  const p = spawn(process.execPath, [...cliArgs, ...args], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  current = { out, pid: p.pid! };
  let stdout = '', stderr = '';
  p.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exitCode: number | null | undefined, exitSig: string | null = null, exitAt = 0;
  const exited = new Promise<void>((res) => p.on('exit', (c, sg) => { exitCode = c; exitSig = sg; exitAt = Date.now(); res(); }));
  await Promise.race([sleep(delay * 1000), exited]);
  let sent = false, atSignal: ReturnType<typeof snapshot> | null = null, stderrBeforeSignal = 0;
  if (exitCode === undefined) {
    atSignal = snapshot(out, p.pid!);
    stderrBeforeSignal = stderr.length;
    try { process.kill(p.pid!, sig); sent = true; } catch { /* gone */ }
  }
  const sentAt = Date.now();
  let hang = false;
  await Promise.race([exited, sleep(HANG_S * 1000).then(() => { hang = exitCode === undefined; })]);
  if (hang) {
    try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ }
    await sleep(500);
  }
  await sleep(1500);
  const left = procsNaming(out);
  const leftKinds = left.map((q) => q.cmd.startsWith('mpirun') ? `mpirun(${q.pid})` : `${q.pid}:${q.cmd.slice(0, 60)}`);
  let lingerS: number | null = null;
  if (left.length && !hang) {
    // how long the leftovers stay by themselves (at most 30 s more)
    const t1 = Date.now();
    for (let k = 0; k < 300 && procsNaming(out).length; k++) await sleep(100);
    lingerS = procsNaming(out).length ? null : +((Date.now() - t1) / 1000 + 1.5).toFixed(1);
  }
  if (hang || procsNaming(out).length) {
    killLeft(out, p.pid!);
    await sleep(500);
  }
  current = null;
  const lockLeft = fs.existsSync(path.join(out, '.vwlmm.lock'));
  const locksAside = fs.existsSync(out) ? fs.readdirSync(out).filter((f) => f.startsWith('.vwlmm.lock')) : [];
  const stopLines = stderr.match(new RegExp(`${sig}: (stopped outside the training steps|stopping after the current step)`, 'g')) ?? [];
  const launcherLine = new RegExp(`data-parallel run stopped by ${sig}|${sig}: stopped before the ranks started`).test(stderr);
  const stepsDone = trainSteps(out);
  const ckpt = hasCheckpoint(out);
  const resumeLine = (stdout + '\n' + stderr).split('\n').find((l) => l.includes('--resume')) ?? null;
  let resume = 'n/a', resumeOk = true, resumeStderr = '';
  if (ckpt || resumeLine) {
    const m = resumeLine?.match(/vwlmm ((train|demo) .*?--resume)/);
    const how = m ? 'printed' : 'fallback';
    // no line (a run that finished): the same command line plus --resume
    const rargs = m ? shellWords(m[1]) : [...args, '--resume'];
    const r = spawnSync(process.execPath, [...cliArgs, ...rargs], { cwd: root, env, encoding: 'utf8', timeout: RESUME_TIMEOUT_S * 1000 });
    await sleep(1000);
    const rleft = procsNaming(out), rlock = fs.existsSync(path.join(out, '.vwlmm.lock'));
    resume = `${how}:exit ${r.status}${r.signal ? '/' + r.signal : ''}${rleft.length ? ` procs-left ${rleft.length}` : ''}${rlock ? ' lock-left' : ''}`;
    resumeOk = r.status === 0 && !rleft.length && !rlock;
    if (!resumeOk) resumeStderr = r.stderr.slice(-3000);
    for (const q of rleft) { try { process.kill(q.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  const expected = sig === 'SIGINT' ? 130 : 143;
  const finished = mode === 'train' ? stepsDone >= steps : /answers to/.test(stdout + stderr);
  // the signal before the launcher's handlers were in: Node's default action, nothing of the run started yet
  const killedBySig = exitSig === sig && exitCode === null;
  const v: string[] = [];
  if (hang) v.push('hang');
  if (!(exitCode === expected || killedBySig || (exitCode === 0 && (finished || !sent)))) v.push(`(a) exit ${exitCode}${exitSig ? '/' + exitSig : ''}`);
  if (left.length) v.push(`(b) left: ${leftKinds.join('; ')} ${lingerS !== null ? `(gone by itself ${lingerS} s after the launcher)` : '(still there 31.5 s after: killed)'}`);
  if (lockLeft) v.push('(c) lock left');
  if (sent && exitCode !== 0 && !killedBySig && !((stopLines.length === 1 && !launcherLine) || (stopLines.length === 0 && launcherLine))) v.push(`(d) stop lines ${stopLines.length}, launcher line ${launcherLine}`);
  if (sent && exitCode === 0 && stopLines.length > 1) v.push(`(d) ${stopLines.length} stop lines on exit 0`);
  if (!resumeOk) v.push(`(e) resume ${resume}`);
  if (sent && exitCode !== 0 && ckpt && !resumeLine) v.push('(e) checkpoint but no --resume line');
  const outcome: Outcome = hang ? 'other' : killedBySig ? 'killed' : exitCode === 0 && (finished || !sent) ? 'finished'
    : exitCode === expected && stopLines.length === 1 && !launcherLine ? 'rank line' : exitCode === expected && stopLines.length === 0 && launcherLine ? 'launcher line' : 'other';
  const rec = {
    i, sig, delay: +delay.toFixed(2), sent, atSignal, exitCode, exitSig, exitAfterSignal: sent && !hang ? +((exitAt - sentAt) / 1000).toFixed(2) : null,
    killedBySig, outcome, lingerS, stopLine: stopLines.length ? `${stopLines.length}x "${stopLines[0]}"` : launcherLine ? 'launcher line' : 'none', launcherLine, lockLeft, locksAside, left: leftKinds,
    stepsDone, ckpt, resumeLine, resume, hang, violations: v, stderr, stdout: stdout.slice(-2000), stderrBeforeSignal, resumeStderr,
  };
  fs.appendFileSync(resultsFile, JSON.stringify(rec) + '\n');
  const at = atSignal ? `${atSignal.procs}|lock=${atSignal.lock}|steps=${atSignal.steps}` : '-';
  console.log(`${i}\t${sig}\t${rec.delay}\tsent=${sent}\t@${at}\texit=${exitCode ?? 'killed:' + exitSig}\t${rec.stopLine}\tlock=${lockLeft}\tleft=${left.length}`
    + `\tsteps=${stepsDone}\tckpt=${ckpt}\tresume=${resume}\t${v.length ? 'VIOLATION ' + v.join(' | ') : 'ok'}`);
  return { outcome, sent, exitAfterSignal: rec.exitAfterSignal, violations: v };
}

(async () => {
  console.log(`vwlmm ${mode} --nproc-per-node 2: ${N} trials, one SIGINT or SIGTERM ${dmin}-${dmax} s after the start (seed ${seed}); runs in ${runsDir}`);
  const trials: Trial[] = [];
  for (let i = 0; i < N; i++) trials.push(await trial(i));
  const count = (f: (t: Trial) => boolean) => trials.filter(f).length;
  const row = (what: string, value: string | number) => console.log(`${what.padEnd(52)} ${value}`);
  const violationKinds: [string, string][] = [['hang', `hang (no exit ${HANG_S} s after the signal)`], ['(a)', '(a) exit code'], ['(b)', '(b) mpirun or rank left'], ['(c)', '(c) lock left'], ['(d)', '(d) stop lines'], ['(e)', '(e) resume']];
  const delays = trials.map((t) => t.exitAfterSignal).filter((x): x is number => x !== null);
  console.log('');
  row('trials', N);
  row('signals sent', count((t) => t.sent));
  row('outcomes:', '');
  row('  clean stop, a rank\'s stop line', count((t) => t.outcome === 'rank line'));
  row('  clean stop, the launcher\'s line', count((t) => t.outcome === 'launcher line'));
  row('  finished before the signal', count((t) => t.outcome === 'finished'));
  row('  killed by the default action before the handlers', count((t) => t.outcome === 'killed'));
  row('  other (violations)', count((t) => t.outcome === 'other'));
  row('violations:', count((t) => t.violations.length > 0));
  for (const [key, what] of violationKinds) row(`  ${what}`, count((t) => t.violations.some((x) => x.startsWith(key))));
  row('max seconds from signal to exit', delays.length ? Math.max(...delays).toFixed(2) : '-');
  row('results (JSONL, a record per trial)', resultsFile);
  process.exit(trials.some((t) => t.violations.length) ? 1 : 0);
})();
