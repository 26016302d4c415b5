// A process group as torch.distributed has one: rank, world size, local rank, and the collectives all-reduce,
// reduce-scatter, all-gather and broadcast on tensors, over MPI on the CPU (OpenMPI: `mpirun -np N`) and NCCL on
// the GPU. One group per process. Collectives run in call order on the group's own queue (a host thread for MPI,
// a CUDA stream for NCCL: native/distributed/collective.h); the `Async` forms return a Work to wait for later, so a
// gradient bucket can travel while the backward pass goes on. Every wait has a deadline (timeoutMs, or
// VWLMM_COLLECTIVE_TIMEOUT seconds, else 10 minutes): a rank that died or hangs ends the others with an error naming the
// collective, never a hang. Neither MPI nor NCCL checks that the ranks' sizes agree: checkCollectives (VWLMM_DIST_DEBUG=1)
// compares each collective across the ranks first, for debugging; the Trainer and ZeroAdamW compare what decides their
// sizes once, as a stage starts (src/distributed/consistency.ts).
import { checkKeys, describe, rangeError, typeError } from '../errors';
import { addonFor, type Addon, type DistGroupInfo } from '../native';
import { Tensor, type Device } from '../tensor';
import { launchEnv } from './env';

export type Backend = 'mpi' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** torch.distributed's default NCCL timeout (10 minutes): how long any wait may last. */
export const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * The collective timeout when initProcessGroup is given none: VWLMM_COLLECTIVE_TIMEOUT (seconds, as torch's
 * init_process_group(timeout=)), else DEFAULT_TIMEOUT_MS.
 */
export function collectiveTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.VWLMM_COLLECTIVE_TIMEOUT;
  if (v === undefined || v.trim() === '') return DEFAULT_TIMEOUT_MS;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0) throw new RangeError(`VWLMM_COLLECTIVE_TIMEOUT must be a number of seconds > 0, got '${v}'`);
  return s * 1000;
}

/** VWLMM_DIST_DEBUG=1: every collective first checks that all ranks start the same one (ProcessGroupOptions.checkCollectives). */
function debugFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.VWLMM_DIST_DEBUG;
  return v !== undefined && v !== '' && v !== '0';
}

const KINDS = ['all_reduce', 'reduce_scatter', 'all_gather', 'broadcast'];
const OPS = ['sum', 'avg', 'max', 'min'];
const DTYPES = ['float32', 'bfloat16', 'int32'];

export interface ProcessGroupOptions {
  /** 'mpi' (CPU tensors; the default on the CPU) or 'nccl' (CUDA tensors; the default on CUDA). */
  backend?: Backend;
  /**
   * How long initialisation and each wait may take before the rank gives up with an error (default:
   * VWLMM_COLLECTIVE_TIMEOUT seconds, else 10 minutes).
   */
  timeoutMs?: number;
  /**
   * Before every collective, an all-reduce of what it is (kind, element count, dtype, reduction, root), so that one
   * that differs between ranks is refused on every rank with an error naming both, instead of reaching MPI / NCCL
   * (which do not check: different counts read and write past the buffers). One more small collective each, waited
   * for: for debugging (torch's TORCH_DISTRIBUTED_DEBUG=DETAIL). Default: VWLMM_DIST_DEBUG=1.
   */
  checkCollectives?: boolean;
  /** MPI: another libvwlmm_mpi.so than the one beside the CPU addon. */
  library?: string;
}

/** A started collective (torch's Work): wait() blocks until it finished (or throws what failed). */
export class Work {
  private done = false;
  constructor(private readonly group: ProcessGroup, private readonly handle: number, readonly what: string) {}

  /** True once finished (does not wait; a failure is thrown here too). */
  isCompleted(): boolean {
    if (this.done) return true;
    return this.group.addon.distTest(this.handle);
  }

  /** Waits at most the group's timeout; the tensors it uses may be read and freed again afterwards. */
  wait(): void {
    if (this.done) return;
    this.group.addon.distWait(this.handle, this.group.timeoutMs);
    this.done = true;
  }

  /**
   * wait() that lets the event loop run meanwhile (signal handlers, timers): for waits where a rank may stand for
   * seconds while another prepares. wait() blocks the JavaScript thread, so a Ctrl-C that ended the other rank would
   * not reach this one, which would wait until its launcher killed it (its lock of --out left behind).
   */
  async waitAsync(): Promise<void> {
    if (this.done) return;
    const start = Date.now(), timeout = this.group.timeoutMs;
    for (let pause = 1; Date.now() - start < timeout; pause = Math.min(2 * pause, 10)) {
      let finished: boolean;
      try {
        finished = this.isCompleted();
      } catch {
        break; // it failed: distWait below throws its error and frees its buffers (a throw of distTest frees nothing)
      }
      if (finished) break;
      await new Promise((r) => setTimeout(r, pause));
    }
    // finished or failed: at once; else the deadline has passed, and it ends the group as wait() would (the message
    // names the group's timeout: 1 ms here after timeout - 1 polled)
    this.group.addon.distWait(this.handle, 1, Math.max(0, timeout - 1));
    this.done = true;
  }
}

let current: ProcessGroup | null = null;

export class ProcessGroup {
  readonly backend: Backend;
  readonly rank: number;
  readonly worldSize: number;
  /** Rank and number of ranks on this machine (MPI_COMM_TYPE_SHARED; LOCAL_RANK under torchrun). */
  readonly localRank: number;
  readonly localWorldSize: number;
  /** The device of the tensors it reduces: 'cpu' for MPI, 'cuda' for NCCL. */
  readonly device: Device;
  /** The MPI or NCCL library and its version. */
  readonly library: string;
  readonly timeoutMs: number;
  /** ProcessGroupOptions.checkCollectives. */
  readonly checkCollectives: boolean;
  private destroyed = false;

  /** @internal use initProcessGroup */
  constructor(readonly addon: Addon, info: DistGroupInfo, timeoutMs: number, checkCollectives = false) {
    this.backend = info.backend as Backend;
    this.rank = info.rank;
    this.worldSize = info.worldSize;
    this.localRank = info.localRank;
    this.localWorldSize = info.localWorldSize;
    this.device = this.backend === 'nccl' ? 'cuda' : 'cpu';
    this.library = info.library;
    this.timeoutMs = timeoutMs;
    this.checkCollectives = checkCollectives;
  }

  /** In place: every rank's `t` becomes the reduction of all ranks' `t`. */
  allReduce(t: Tensor, opts: { op?: ReduceOp } = {}): void {
    this.allReduceAsync(t, opts).wait();
  }
  allReduceAsync(t: Tensor, opts: { op?: ReduceOp } = {}): Work {
    const where = 'ProcessGroup.allReduce';
    this.check(where, 'tensor', t);
    return this.start(where, 'all_reduce', t, t, t.size, opts.op ?? 'sum', 0);
  }

  /** output (n elements) = the reduction over ranks of chunk `rank` of input (worldSize * n elements). */
  reduceScatter(output: Tensor, input: Tensor, opts: { op?: ReduceOp } = {}): void {
    this.reduceScatterAsync(output, input, opts).wait();
  }
  reduceScatterAsync(output: Tensor, input: Tensor, opts: { op?: ReduceOp } = {}): Work {
    const where = 'ProcessGroup.reduceScatter';
    this.check(where, 'output', output);
    this.check(where, 'input', input, output.dtype);
    if (input.size !== output.size * this.worldSize) throw rangeError(where, `input has ${input.size} elements but ${this.worldSize} ranks x output's ${output.size} = ${output.size * this.worldSize} are needed`);
    if (input.buffer === output.buffer && output.size > 0 && this.worldSize > 1) throw rangeError(where, 'input and output must be different tensors');
    return this.start(where, 'reduce_scatter', input, output, output.size, opts.op ?? 'sum', 0);
  }

  /** output (worldSize * n elements) = every rank's input (n elements), in rank order. */
  allGather(output: Tensor, input: Tensor): void {
    this.allGatherAsync(output, input).wait();
  }
  allGatherAsync(output: Tensor, input: Tensor): Work {
    const where = 'ProcessGroup.allGather';
    this.check(where, 'output', output);
    this.check(where, 'input', input, output.dtype);
    if (output.size !== input.size * this.worldSize) throw rangeError(where, `output has ${output.size} elements but ${this.worldSize} ranks x input's ${input.size} = ${input.size * this.worldSize} are needed`);
    if (input.buffer === output.buffer && input.size > 0 && this.worldSize > 1) throw rangeError(where, 'input and output must be different tensors');
    return this.start(where, 'all_gather', input, output, input.size, 'sum', 0);
  }

  /** In place: every rank's `t` becomes rank `root`'s. */
  broadcast(t: Tensor, root = 0): void {
    this.broadcastAsync(t, root).wait();
  }
  broadcastAsync(t: Tensor, root = 0): Work {
    const where = 'ProcessGroup.broadcast';
    this.check(where, 'tensor', t);
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) throw typeError(where, 'root', `a rank in [0, ${this.worldSize})`, root);
    return this.start(where, 'broadcast', t, t, t.size, 'sum', root);
  }

  /**
   * Every rank's `value`, in rank order (torch.distributed.all_gather_object): a JSON value (JSON.stringify's rules:
   * undefined becomes null), sent as UTF-8 bytes in two all-gathers of int32 words, the lengths and then the bytes padded
   * to the longest (also for one rank: the same path on every group). For what is not a tensor: answers to evaluation
   * questions, a rank's error.
   */
  allGatherObject<T>(value: T): T[] {
    const where = 'ProcessGroup.allGatherObject';
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (e) {
      throw typeError(where, 'value', `a JSON value (${(e as Error).message})`, value);
    }
    const bytes = Buffer.from(json ?? 'null', 'utf8');
    const lens = allGatherInt32(this, Int32Array.of(bytes.length));
    const words = Math.ceil(Math.max(...lens) / 4), padded = new Int32Array(words);
    new Uint8Array(padded.buffer).set(bytes);
    const got = allGatherInt32(this, padded);
    return Array.from(lens, (n, r) => JSON.parse(Buffer.from(got.buffer, got.byteOffset + 4 * r * words, n).toString('utf8')) as T);
  }

  /** Returns once every rank has called it (an all-reduce of one element). */
  barrier(): void {
    const t = Tensor.zeros([1], { device: this.device, dtype: 'int32' });
    try {
      this.allReduce(t);
    } finally {
      t.dispose();
    }
  }

  /** barrier() with the event loop running while it waits (Work.waitAsync): the same collective, so ranks may mix them. */
  async barrierAsync(): Promise<void> {
    const t = Tensor.zeros([1], { device: this.device, dtype: 'int32' });
    try {
      await this.allReduceAsync(t).waitAsync();
    } finally {
      t.dispose();
    }
  }

  /**
   * Ends the group (MPI_Finalize / ncclCommDestroy) once every rank calls it; no collective may be left unwaited.
   * The process cannot start another group.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.addon.distDestroy(this.timeoutMs);
    this.destroyed = true;
    if (current === this) current = null;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  private check(where: string, name: string, t: Tensor, dtype?: string): void {
    if (this.destroyed) throw new TypeError(`${where}: the process group has been destroyed`);
    if (!(t instanceof Tensor)) throw typeError(where, name, 'a Tensor', t);
    if (t.device !== this.device) throw typeError(where, `${name}'s device`, `a ${this.device} tensor (the ${this.backend} group reduces ${this.device} tensors)`, t);
    if (dtype !== undefined && t.dtype !== dtype) throw typeError(where, `${name}'s dtype`, `${dtype} (as the output)`, t);
  }

  /**
   * checkCollectives: one all-reduce (max) of what this collective is, and of its negation (the minimum), waited for;
   * where they differ, some rank started another collective, and every rank refuses (each sees the same extremes).
   */
  private checkSame(kind: string, count: number, dtype: string, op: ReduceOp, root: number): void {
    const what = [KINDS.indexOf(kind), count % 2 ** 30, Math.floor(count / 2 ** 30), DTYPES.indexOf(dtype), kind === 'all_reduce' || kind === 'reduce_scatter' ? OPS.indexOf(op) : -1, kind === 'broadcast' ? root : -1];
    const t = Tensor.fromArray(Int32Array.from([...what, ...what.map((x) => -x)]), [2 * what.length], { device: this.device });
    let v: Int32Array;
    try {
      this.addon.distWait(this.addon.distStart('all_reduce', t.buffer, t.buffer, 'int32', t.size, 'max', 0), this.timeoutMs);
      v = t.toArray() as Int32Array;
    } finally {
      t.dispose();
    }
    const n = what.length, hi = Array.from(v.subarray(0, n)), lo = Array.from(v.subarray(n), (x) => -x);
    if (hi.every((x, i) => x === lo[i])) return;
    const show = (w: number[]) => `${KINDS[w[0]] ?? `collective ${w[0]}`} of ${w[1] + w[2] * 2 ** 30} x ${DTYPES[w[3]] ?? `dtype ${w[3]}`}${w[4] >= 0 ? ` (${OPS[w[4]]})` : ''}${w[5] >= 0 ? ` (root ${w[5]})` : ''}`;
    const other = hi.every((x, i) => x === what[i]) ? lo : hi;
    throw new RangeError(`[${kind}] rank ${this.rank} of ${this.worldSize}: the ranks started different collectives: this rank ${show(what)}, another ${show(other)} (checkCollectives / VWLMM_DIST_DEBUG: refused on every rank before it ran; every rank must start the same collectives, with the same sizes, in the same order)`);
  }

  private start(where: string, kind: string, input: Tensor, output: Tensor, count: number, op: ReduceOp, root: number): Work {
    if (op !== 'sum' && op !== 'avg' && op !== 'max' && op !== 'min') throw typeError(where, 'op', "'sum', 'avg', 'max' or 'min'", op);
    if (this.checkCollectives && this.worldSize > 1) this.checkSame(kind, count, input.dtype, op, root);
    const handle = this.addon.distStart(kind, input.buffer, output.buffer, input.dtype, count, op, root);
    return new Work(this, handle, `${kind} of ${describe(output)}`);
  }
}

/** Every rank's int32 `values` (the same length on every rank), in rank order: one all-gather through the group's device. */
export function allGatherInt32(group: ProcessGroup, values: Int32Array): Int32Array {
  const mine = Tensor.fromArray(values, [values.length], { device: group.device });
  const every = Tensor.empty([group.worldSize * values.length], { device: group.device, dtype: 'int32' });
  try {
    group.allGather(every, mine);
    return every.toArray() as Int32Array;
  } finally {
    mine.dispose();
    every.dispose();
  }
}

const PROCESS_GROUP_KEYS = { backend: true, timeoutMs: true, checkCollectives: true, library: true } satisfies Record<keyof ProcessGroupOptions, true>;

/**
 * Starts this process's group (torch.distributed.init_process_group). MPI: the ranks of `mpirun -np N` (one process
 * alone is a group of one). NCCL: the ranks torchrun-style variables describe (RANK, WORLD_SIZE, LOCAL_RANK,
 * MASTER_ADDR, MASTER_PORT; `vwlmm train --nproc-per-node N` sets them), rank 0 handing out NCCL's unique id over a
 * TCP rendezvous (src/distributed/rendezvous.ts). A rank that does not arrive within the timeout ends the others with an
 * error.
 */
export async function initProcessGroup(opts: ProcessGroupOptions = {}): Promise<ProcessGroup> {
  const where = 'initProcessGroup';
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', `an object { ${Object.keys(PROCESS_GROUP_KEYS).join(', ')} }`, opts);
  // torch's spelling (timeout) or a typo would otherwise leave the default in force without a word
  checkKeys(where, 'option', opts, PROCESS_GROUP_KEYS);
  const backend = opts.backend ?? 'mpi';
  if (backend !== 'mpi' && backend !== 'nccl') throw typeError(where, 'backend', "'mpi' or 'nccl'", backend);
  const timeoutMs = opts.timeoutMs ?? collectiveTimeoutMs();
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) throw typeError(where, 'timeoutMs', 'a finite number of milliseconds > 0', timeoutMs);
  if (opts.library !== undefined && typeof opts.library !== 'string') throw typeError(where, 'library', 'a path', opts.library);
  if (opts.checkCollectives !== undefined && typeof opts.checkCollectives !== 'boolean') throw typeError(where, 'checkCollectives', 'a boolean', opts.checkCollectives);
  if (current) throw new TypeError(`${where}: this process already has a process group (rank ${current.rank} of ${current.worldSize})`);
  const env = launchEnv();
  let info: DistGroupInfo;
  let addon: Addon;
  if (backend === 'mpi') {
    addon = addonFor('cpu', where);
    info = addon.distInit('mpi', { timeoutMs, ...(opts.library !== undefined ? { library: opts.library } : {}) });
    // mpirun's own numbering must agree with what MPI reports (a torchrun-style launch cannot start MPI ranks)
    if (env.launcher === 'torchrun' && env.worldSize !== info.worldSize) {
      throw new Error(`${where}: WORLD_SIZE is ${env.worldSize} but MPI started ${info.worldSize} rank(s): MPI ranks are started by mpirun (mpirun -np ${env.worldSize} ...), not by RANK / WORLD_SIZE variables`);
    }
  } else {
    const { ncclRendezvous } = await import('./rendezvous');
    addon = addonFor('cuda', where);
    info = await ncclRendezvous(addon, env, timeoutMs);
  }
  current = new ProcessGroup(addon, info, timeoutMs, opts.checkCollectives ?? debugFromEnv());
  return current;
}

/** The process's group, or null (torch.distributed.is_initialized). */
export function processGroup(): ProcessGroup | null {
  return current;
}
