// Starting the local ranks of a data-parallel run, as torchrun --nproc-per-node does (`vwlmm train
// --nproc-per-node N`): for MPI through `mpirun -np N` (MPI ranks can only be started by MPI's launcher), for
// NCCL as N processes with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT on a free port). The supervisor ends every rank when one fails (torchrun's behaviour; mpirun
// does the same for its ranks): no rank is left waiting for a dead one.
//
// Signals: SIGINT / SIGTERM to the supervisor (Ctrl-C, a scheduler) go to every rank, once each time they come, and
// the supervisor waits for the ranks, as torchrun does: the ranks finish their step, write the checkpoint and leave
// with 130 / 143 (src/train/interrupt.ts), a second signal makes them quit at once. SIGHUP goes to them as SIGTERM.
// The ranks run in process groups of their own (mpirun puts each of its ranks in one; the supervisor starts mpirun,
// and each NCCL rank, in one), so a terminal's Ctrl-C reaches them only through the supervisor, once.
// mpirun itself is not signalled: on SIGINT / SIGTERM it sends the ranks SIGTERM only after odls_base_sigkill_timeout
// seconds and SIGKILL as many seconds later (1 by default: too soon for a checkpoint), both waits blocking mpirun, and
// it runs the same sequence whenever a rank leaves with a non-zero code, 130 / 143 included (Open MPI 4.1; measured:
// with 10 s, mpirun left 20.8 s after ranks that exited 130 0.4 s apart). The supervisor signals its ranks (mpirun's
// children, read from /proc) directly instead; they leave together (MPI_Finalize waits for all of them), so the kill
// grace only has to cover their last lines, and a long one would delay the end of every interrupted or failed run by
// twice its length: mpirun starts with 3 s (killGraceS; VWLMM_MPI_KILL_GRACE), which also leaves the ranks 3 s when a
// scheduler signals mpirun as well. Where /proc cannot tell (not Linux), or before mpirun has started its ranks, the
// signal goes to mpirun.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import type { Backend } from './process_group';

export interface LaunchOptions {
  nproc: number;
  backend: Backend;
  /** The command every rank runs (argv[0] the program: process.execPath for the CLI). */
  command: string[];
  env?: NodeJS.ProcessEnv;
  /** The mpirun to run (default: `mpirun` on the PATH). */
  mpirun?: string;
  /** Where each rank's output goes (default: inherited). */
  stdio?: 'inherit' | 'pipe';
  /** How long the others get after SIGTERM before SIGKILL, when one rank failed. */
  graceMs?: number;
  /**
   * Forward SIGINT / SIGTERM / SIGHUP that reach this process to the ranks while they run (see the file's header).
   * While forwarding, these signals do not end this process. Default: with stdio 'inherit' (a command line's
   * launcher, as `vwlmm train --nproc-per-node`), not with 'pipe' (a program that reads the ranks' output keeps its
   * own signal handling).
   */
  forwardSignals?: boolean;
  /**
   * mpirun's odls_base_sigkill_timeout: seconds before its SIGTERM, then before its SIGKILL, once a rank left with a
   * non-zero code or mpirun itself got SIGINT / SIGTERM (default: VWLMM_MPI_KILL_GRACE, else 3; see the file's header).
   */
  killGraceS?: number;
}

export interface LaunchResult {
  /** 0 when every rank succeeded, else the first failure's exit code (128 + signal for a signal). */
  code: number;
  /** Which rank failed first and how, or null. */
  failure: string | null;
  /** Each rank's output when stdio is 'pipe' (mpirun: one stream for all ranks, in [0]). */
  output: string[];
  /**
   * The ranks stopped on a signal as training does (src/train/interrupt.ts: a checkpoint, then exit 130 / 143): the
   * signal ('SIGINT' / 'SIGTERM'), and `code` is its exit code; null otherwise. Not a failure.
   */
  interrupted: string | null;
  /** The first signal this process forwarded to the ranks (forwardSignals), or null. */
  forwarded: string | null;
  /** False when the ranks (or mpirun) could not be started at all: there were no others to stop. */
  started: boolean;
}

/** The processes whose parent is `pid`, from /proc (Linux); null where /proc cannot tell. */
function childPids(pid: number): number[] | null {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return null;
  }
  const out: number[] = [];
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (Number(statFields(Number(e))[1]) === pid) out.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** /proc/PID/stat's fields after `pid (comm)` (state, ppid, ...): comm may hold spaces and parentheses, so after the last ')'. */
function statFields(pid: number): string[] {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** A process's start time (/proc/PID/stat field 22, clock ticks since boot): undefined when it is gone, null where /proc cannot tell. */
export function processStartTime(pid: number): string | null | undefined {
  try {
    return statFields(pid)[19];
  } catch (e) {
    if (!fs.existsSync('/proc/self/stat')) return null;
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : null;
  }
}

/**
 * Whether process `pid` still runs and is the one that had start time `started` (processStartTime; a reused pid is
 * another process). Without a start time to compare (no /proc), the pid alone decides; another user's process runs.
 */
export function processRuns(pid: number, started: string | null | undefined): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  if (typeof started !== 'string') return started !== undefined;
  const now = processStartTime(pid);
  return now === null || now === started;
}

/**
 * In a rank that launchRanks started (VWLMM_LAUNCHER_PID), checks once a second that the launcher still runs, and calls
 * onGone(pid) once when it does not. The ranks run in process groups of their own (the file's header), so a SIGKILL
 * to the launcher, or to its group, would leave them running unsupervised; the CLI's ranks then stop as on SIGTERM
 * (a checkpoint, exit 143). Identified by pid and start time (/proc), so a reused pid is not taken for the launcher.
 * Returns the function that stops watching, or null when this process has no launcher to watch.
 */
export function watchLauncher(onGone: (pid: number) => void, env: NodeJS.ProcessEnv = process.env, periodMs = 1000): (() => void) | null {
  const pid = Number(env.VWLMM_LAUNCHER_PID);
  if (!(Number.isInteger(pid) && pid > 1) || pid === process.pid) return null;
  const started = processStartTime(pid);
  const timer = setInterval(() => {
    if (processRuns(pid, started)) return;
    clearInterval(timer);
    onGone(pid);
  }, periodMs);
  timer.unref();
  if (started === undefined) {
    clearInterval(timer);
    setImmediate(() => onGone(pid));
  }
  return () => clearInterval(timer);
}

/** The exit code of a process that stopped on a signal the way training does (130 SIGINT, 143 SIGTERM), or null. */
function interruptSignal(code: number | null): string | null {
  return code === 130 ? 'SIGINT' : code === 143 ? 'SIGTERM' : null;
}

/** A free TCP port on the loopback interface (for MASTER_PORT). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The mpirun command line for `nproc` local ranks of `command`. */
export function mpirunArgs(nproc: number, command: string[], killGraceS = 3): string[] {
  // --oversubscribe: ranks may outnumber the cores Open MPI counts; as root Open MPI refuses to start unless told
  // (the variables below), which a user who runs vwlmm as root has already decided. --bind-to none: Open MPI binds
  // each of 2 ranks to one core (on 16 cores, 14 idle); unbound, each rank sees every CPU and takes its share of
  // them as kernel threads (rankThreads). The kill grace: the file's header
  return ['-np', String(nproc), '--oversubscribe', '--bind-to', 'none', '--mca', 'odls_base_sigkill_timeout', String(killGraceS), ...command];
}

export async function launchRanks(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new RangeError(`launchRanks: nproc must be an integer >= 1, got ${o.nproc}`);
  const env = { ...(o.env ?? process.env) };
  const fromEnv = env.VWLMM_MPI_KILL_GRACE;
  const killGraceS = o.killGraceS ?? (fromEnv ? Number(fromEnv) : 3);
  if (!Number.isInteger(killGraceS) || killGraceS < 1)
    throw new RangeError(`launchRanks: ${o.killGraceS === undefined ? `VWLMM_MPI_KILL_GRACE must be an integer number of seconds >= 1, got '${fromEnv}'` : `killGraceS must be an integer >= 1 (seconds), got ${o.killGraceS}`}`);
  const pipe = o.stdio === 'pipe';
  // whether the ranks' output ends on a terminal: mpirun gives each rank a pseudo-terminal whatever its own output is
  // (src/train/progress.ts)
  env.VWLMM_STDOUT_TTY ??= !pipe && process.stdout.isTTY ? '1' : '0';
  env.VWLMM_LAUNCHER_PID = String(process.pid); // the ranks watch it (watchLauncher)
  // a process group of their own (the file's header), and no terminal input: a process outside the terminal's
  // foreground group that reads it is stopped (mpirun forwards its stdin to rank 0)
  const stdio: ('ignore' | 'pipe' | 'inherit')[] = ['ignore', pipe ? 'pipe' : 'inherit', pipe ? 'pipe' : 'inherit'];
  const procs: { rank: number; child: ChildProcess; out: string }[] = [];
  const running = (p: (typeof procs)[number]) => p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined;
  // a signal for the ranks: mpirun's children directly where /proc lists them (the file's header), else mpirun
  const deliver = (sig: NodeJS.Signals) => {
    for (const p of procs) {
      if (!running(p)) continue;
      const ranks = p.rank < 0 ? childPids(p.child.pid!) : null;
      if (ranks?.length) {
        for (const pid of ranks) {
          try {
            process.kill(pid, sig);
          } catch {
            /* already gone */
          }
        }
      } else p.child.kill(sig);
    }
  };
  let forwarded: string | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    const to = sig === 'SIGHUP' ? 'SIGTERM' : sig;
    forwarded ??= to;
    deliver(to); // a second one too: the ranks then quit at once
  };
  // before anything starts: a signal between the spawn and its handler would end this process alone (no listener, the
  // default action), leaving mpirun and the ranks running; one before the spawn goes to the ranks as they start
  const forwarding = o.forwardSignals ?? !pipe;
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  if (forwarding) for (const s of signals) process.on(s, onSignal);
  if (o.backend === 'mpi') {
    if (process.getuid?.() === 0) Object.assign(env, { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' });
    const child = spawn(o.mpirun ?? 'mpirun', mpirunArgs(o.nproc, o.command, killGraceS), { env, stdio, detached: true });
    procs.push({ rank: -1, child, out: '' });
  } else {
    const port = await freePort();
    for (let rank = 0; rank < o.nproc; rank++) {
      const renv = { ...env, RANK: String(rank), WORLD_SIZE: String(o.nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(o.nproc), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
      const child = spawn(o.command[0], o.command.slice(1), { env: renv, stdio, detached: true });
      procs.push({ rank, child, out: '' });
    }
  }
  if (forwarded) deliver(forwarded as NodeJS.Signals);
  return new Promise((resolve) => {
    let failure: string | null = null, code = 0, left = procs.length, killTimer: NodeJS.Timeout | null = null, started = true;
    let interrupted: string | null = null;
    const endOthers = () => {
      for (const p of procs) if (running(p)) p.child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        for (const p of procs) if (running(p)) p.child.kill('SIGKILL');
      }, o.graceMs ?? 5000);
      killTimer.unref();
    };
    for (const p of procs) {
      if (pipe) {
        p.child.stdout!.on('data', (d: Buffer) => (p.out += d.toString()));
        p.child.stderr!.on('data', (d: Buffer) => (p.out += d.toString()));
      }
      p.child.on('error', (e) => {
        if (!failure) {
          failure = `${p.rank < 0 ? o.mpirun ?? 'mpirun' : `rank ${p.rank}`} could not start: ${e.message}${p.rank < 0 ? ' (the MPI backend launches through mpirun: apt install openmpi-bin)' : ''}`;
          code = 127;
          // mpirun: nothing else was started; a torchrun-style rank: the ones that did start are stopped
          started = p.rank >= 0 && procs.some((q) => q !== p && running(q));
          endOthers();
        }
      });
      p.child.on('close', (c, sig) => {
        // a rank that stopped on a signal as training does (checkpoint written, then 130 / 143) is no failure: the
        // others stop at the same step by themselves (the stop is agreed in the step's all-reduce)
        const stop = sig ? null : interruptSignal(c);
        if (stop && !failure) {
          interrupted ??= stop;
          if (code === 0) code = c!;
        } else if ((c !== 0 || sig) && !failure) {
          const who = p.rank < 0 ? `mpirun (${o.nproc} ranks)` : `rank ${p.rank}`;
          failure = sig ? `${who} was killed by ${sig}` : `${who} exited with code ${c}`;
          code = c ?? 128 + ((sig && os.constants.signals[sig as NodeJS.Signals]) || 15);
          endOthers();
        }
        if (--left === 0) {
          if (killTimer) clearTimeout(killTimer);
          if (forwarding) for (const s of signals) process.removeListener(s, onSignal);
          resolve({ code, failure, output: procs.map((q) => q.out), interrupted: failure ? null : interrupted, forwarded, started });
        }
      });
    }
  });
}
