// Starting the local ranks of a data-parallel run, as torchrun --nproc-per-node does (`vwlmm train
// --nproc-per-node N`): for MPI through `mpirun -np N` (MPI ranks can only be started by MPI's launcher), for
// NCCL as N processes with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT on a free port). The supervisor ends every rank when one fails (torchrun's behaviour; mpirun
// does the same for its ranks): no rank is left waiting for a dead one.
import { ChildProcess, spawn } from 'child_process';
import * as net from 'net';
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
}

export interface LaunchResult {
  /** 0 when every rank succeeded, else the first failure's exit code (128 + signal for a signal). */
  code: number;
  /** Which rank failed first and how, or null. */
  failure: string | null;
  /** Each rank's output when stdio is 'pipe' (mpirun: one stream for all ranks, in [0]). */
  output: string[];
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
export function mpirunArgs(nproc: number, command: string[]): string[] {
  // --oversubscribe: ranks may outnumber the cores Open MPI counts; as root Open MPI refuses to start unless told
  // (the variables below), which a user who runs vwlmm as root has already decided
  return ['-np', String(nproc), '--oversubscribe', ...command];
}

export async function launchRanks(o: LaunchOptions): Promise<LaunchResult> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new RangeError(`launchRanks: nproc must be an integer >= 1, got ${o.nproc}`);
  const env = { ...(o.env ?? process.env) };
  const pipe = o.stdio === 'pipe';
  // whether the ranks' output ends on a terminal: mpirun gives each rank a pseudo-terminal whatever its own output is
  // (src/train/progress.ts)
  env.VWLMM_STDOUT_TTY ??= !pipe && process.stdout.isTTY ? '1' : '0';
  const procs: { rank: number; child: ChildProcess; out: string }[] = [];
  if (o.backend === 'mpi') {
    if (process.getuid?.() === 0) Object.assign(env, { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' });
    const child = spawn(o.mpirun ?? 'mpirun', mpirunArgs(o.nproc, o.command), { env, stdio: pipe ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    procs.push({ rank: -1, child, out: '' });
  } else {
    const port = await freePort();
    for (let rank = 0; rank < o.nproc; rank++) {
      const renv = { ...env, RANK: String(rank), WORLD_SIZE: String(o.nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(o.nproc), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
      const child = spawn(o.command[0], o.command.slice(1), { env: renv, stdio: pipe ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
      procs.push({ rank, child, out: '' });
    }
  }
  return new Promise((resolve) => {
    let failure: string | null = null, code = 0, left = procs.length, killTimer: NodeJS.Timeout | null = null;
    const endOthers = () => {
      for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      killTimer = setTimeout(() => {
        for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
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
          endOthers();
        }
      });
      p.child.on('close', (c, sig) => {
        if ((c !== 0 || sig) && !failure) {
          const who = p.rank < 0 ? `mpirun (${o.nproc} ranks)` : `rank ${p.rank}`;
          failure = sig ? `${who} was killed by ${sig}` : `${who} exited with code ${c}`;
          code = c ?? 128 + 15;
          endOthers();
        }
        if (--left === 0) {
          if (killTimer) clearTimeout(killTimer);
          resolve({ code, failure, output: procs.map((q) => q.out) });
        }
      });
    }
  });
}
