// What launched this process, read from its environment: torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; `vwlmm train --nproc-per-node N` sets them too) or mpirun's (Open
// MPI's OMPI_COMM_WORLD_*, MPICH's PMI_*). Malformed values are errors that name the variable, and so are both sets
// present with different ranks or world sizes.

import * as os from 'os';

export interface LaunchEnv {
  /** Who started the ranks; null: a single process, started by hand. */
  launcher: 'torchrun' | 'mpirun' | null;
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  /** The rendezvous of rank 0 (torchrun-style only). */
  masterAddr: string | null;
  masterPort: number | null;
}

function int(env: NodeJS.ProcessEnv, name: string, min: number): number | null {
  const v = env[name];
  if (v === undefined || v === '') return null;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min) throw new RangeError(`launch environment: ${name} must be an integer >= ${min}, got '${v}'`);
  return Number(v);
}

export function launchEnv(env: NodeJS.ProcessEnv = process.env): LaunchEnv {
  const rank = int(env, 'RANK', 0), world = int(env, 'WORLD_SIZE', 1);
  const mpiRank = int(env, 'OMPI_COMM_WORLD_RANK', 0) ?? int(env, 'PMI_RANK', 0);
  const mpiSize = int(env, 'OMPI_COMM_WORLD_SIZE', 1) ?? int(env, 'PMI_SIZE', 1);
  // both sets: torchrun-style variables left exported in the shell that runs mpirun (or the reverse). Where they
  // disagree, trusting either would start ranks that think they are alone, or the wrong rank (two runs in one --out)
  if ((rank !== null || world !== null) && mpiRank !== null && mpiSize !== null && (rank !== mpiRank || world !== mpiSize)) {
    const [r, s] = env.OMPI_COMM_WORLD_RANK !== undefined && env.OMPI_COMM_WORLD_RANK !== '' ? ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'] : ['PMI_RANK', 'PMI_SIZE'];
    throw new RangeError(`launch environment: RANK=${env.RANK ?? '(unset)'} WORLD_SIZE=${env.WORLD_SIZE ?? '(unset)'} (torchrun-style) disagree with mpirun's ${r}=${mpiRank} ${s}=${mpiSize}: this process cannot tell which run it belongs to (under mpirun, unset RANK / WORLD_SIZE / LOCAL_RANK; under torchrun-style variables, do not start it through mpirun)`);
  }
  if (rank !== null || world !== null) {
    if (rank === null || world === null) throw new RangeError(`launch environment: RANK and WORLD_SIZE go together (got ${rank === null ? 'WORLD_SIZE' : 'RANK'} alone)`);
    if (rank >= world) throw new RangeError(`launch environment: RANK ${rank} is not below WORLD_SIZE ${world}`);
    const localRank = int(env, 'LOCAL_RANK', 0) ?? rank, localWorld = int(env, 'LOCAL_WORLD_SIZE', 1) ?? world;
    if (localRank >= localWorld) throw new RangeError(`launch environment: LOCAL_RANK ${localRank} is not below LOCAL_WORLD_SIZE ${localWorld}`);
    const port = int(env, 'MASTER_PORT', 1);
    if (port !== null && port > 65535) throw new RangeError(`launch environment: MASTER_PORT must be a port number (1-65535), got ${port}`);
    return { launcher: 'torchrun', rank, worldSize: world, localRank, localWorldSize: localWorld, masterAddr: env.MASTER_ADDR || null, masterPort: port };
  }
  if (mpiRank !== null && mpiSize !== null) {
    const localRank = int(env, 'OMPI_COMM_WORLD_LOCAL_RANK', 0) ?? int(env, 'MPI_LOCALRANKID', 0) ?? mpiRank;
    const localWorld = int(env, 'OMPI_COMM_WORLD_LOCAL_SIZE', 1) ?? int(env, 'MPI_LOCALNRANKS', 1) ?? mpiSize;
    return { launcher: 'mpirun', rank: mpiRank, worldSize: mpiSize, localRank, localWorldSize: localWorld, masterAddr: null, masterPort: null };
  }
  return { launcher: null, rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: null, masterPort: null };
}

/**
 * The CPU threads each of several ranks on this machine runs its kernels on when VWLMM_NUM_THREADS is unset: the CPUs
 * it may run on shared out between the ranks here, at least one (torchrun sets OMP_NUM_THREADS=1 for the same
 * reason). Ranks that torchrun-style variables, `--nproc-per-node` (mpirun --bind-to none) or mpirun's socket
 * binding start all see every CPU: each taking all of them, N ranks x N threads on N cores preempted each other while
 * they spun. mpirun's default binding of 2 ranks (one core each) gives 1. null: a single process, or a launch
 * environment that does not parse (the command that reads it says why).
 */
export function rankThreads(env: NodeJS.ProcessEnv = process.env, cpus = os.availableParallelism()): number | null {
  let local: number;
  try {
    local = launchEnv(env).localWorldSize;
  } catch {
    return null;
  }
  return local > 1 ? Math.max(1, Math.floor(cpus / local)) : null;
}
