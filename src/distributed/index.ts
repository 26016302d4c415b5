/// <reference types="node" preserve="true" />
// Public API of data-parallel training (also 'vwlmm/distributed'): the process group (MPI on the CPU, NCCL on the GPU),
// ZeRO-1's sharded AdamW, the launch environment and the rank launcher of `vwlmm train --nproc-per-node N`.
export { initProcessGroup, processGroup, ProcessGroup, Work, DEFAULT_TIMEOUT_MS, collectiveTimeoutMs } from './process_group';
export type { Backend, ReduceOp, ProcessGroupOptions } from './process_group';
export { ZeroAdamW, DEFAULT_BUCKET_BYTES } from './zero';
export type { ZeroOptions } from './zero';
export { launchEnv, rankThreads } from './env';
export type { LaunchEnv } from './env';
export { launchRanks, freePort, watchLauncher, processStartTime, processRuns } from './launch';
export type { LaunchOptions, LaunchResult } from './launch';
export { rendezvous } from './rendezvous';
export type { RendezvousOptions } from './rendezvous';
