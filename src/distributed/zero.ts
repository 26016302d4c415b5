// Data-parallel training with ZeRO-1 (DeepSpeed's stage 1, as llm.c does it): gradients are reduce-scattered
// in buckets, each rank updates with AdamW only the parameters it owns (their moments live on that rank alone),
// and the updated parameters are all-gathered back, so every rank holds the same weights after each step.
//
// Ownership: each parameter, largest first, goes to the least loaded rank (the same deterministic choice on every
// rank, fixed for the optimizer's life, so AdamW's state never moves). Buckets: the parameters cut at `bucketBytes`,
// first in reverse registration order (torch DDP's first buckets), after the first backward in the order it
// finished the gradients. A bucket's flat buffer holds its members owned by rank 0, padding, rank 1's, ..., in
// chunks of equal size, so one reduce-scatter leaves each rank the averaged gradients of its own parameters and one
// all-gather of the same layout brings the weights back.
// During the backward of a step's last micro-batch a bucket starts its reduce-scatter as soon as its last
// gradient is final (autograd's onGradReady) and every earlier bucket has started: every rank starts the same
// collectives in the same order while the backward goes on. A bucket whose gradients never came (a parameter
// this micro-batch did not use, or a step cut short by a non-finite loss) starts at the end, with zeros.
//
// gatherDtype 'float32' (the default): the weights stay float32 on every rank (the fp32 masters; autocast makes the
// bf16 copies per step); what is sharded is AdamW's state, two of the three copies a float32 AdamW keeps.
// gatherDtype 'bfloat16' (llm.c's choice): the float32 masters are sharded too. A rank keeps the master of each
// parameter it owns apart from the model; after its update the masters are rounded to bf16 and all-gathered as
// 16-bit words (half the bytes), so every rank computes with the same bf16-valued weights (held in the float32
// parameters: the rounding autocast applies to GEMM operands anyway, here applied to every trainable weight). At a
// checkpoint and at the end (finish) the parameters get the float32 masters back, so a checkpoint resumes exactly
// and the trained model is the masters.
// Checkpoints hold the whole state (in the single-process layout), gathered at each save, so a run resumes on any
// number of ranks.
// Every collective's size follows from the parameters' sizes, bucketBytes and gatherDtype: the constructor compares
// them across the ranks (src/distributed/consistency.ts) and refuses on every rank where they differ, before any
// bucket is reduced (MPI does not check sizes: it would overrun the buffers).
// overlapGather (default true): step() starts the weights' all-gathers, in the order the forward uses the buckets
// (the reverse of the backward's), and returns; each bucket's values are copied into its parameters when the next
// forward (or anything else) first touches one of them (tensor.ts onFirstAccess), so the gathers of the later layers
// travel while the first layers compute, as DeepSpeed's overlap_comm does. Anything that needs the buckets' buffers
// or every weight (the next reduce-scatter, a checkpoint, finish) completes the rest first.
import { onGradReady } from '../autograd';
import { callOp } from '../call_op';
import { rangeError } from '../errors';
import { AdamW, AdamWOptions, ParamGroup, sumSquares } from '../optim';
import { castTensor } from '../amp';
import { cancelFirstAccess, keep, onFirstAccess, Tensor } from '../tensor';
import type { ProcessGroup, Work } from './process_group';
import { checkRanksAgree, shapesSummary } from './consistency';

/** torch DDP's default bucket_cap_mb (25 MiB). */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

interface Member {
  param: Tensor;
  /** Index in ZeroAdamW.params (the optimizer checkpoint's index). */
  index: number;
  owner: number;
  /** Element offset inside its owner's chunk. */
  offset: number;
}

interface Bucket {
  members: Member[];
  /** Elements of one rank's chunk (the largest owner's share). */
  chunk: number;
  /** [worldSize * chunk]: the gradients going in, the gathered weights (or moments) coming back. */
  flat: Tensor;
  /** [chunk]: this rank's reduced gradients, then its updated weights. */
  shard: Tensor;
  /** gatherDtype 'bfloat16': flat and shard's bf16 twins, what the weights' all-gather moves. */
  flat16: Tensor | null;
  shard16: Tensor | null;
  ready: number;
  work: Work | null;
  /** An all-gather of weights in flight that overlapGather left to complete at the first access (see the header). */
  arriving: { target: (m: Member) => Tensor; bf16: boolean } | null;
}

export interface ZeroOptions extends AdamWOptions {
  bucketBytes?: number;
  /**
   * The dtype the updated weights are all-gathered in (default 'float32'). 'bfloat16': sharded float32 masters, bf16
   * weights on every rank, half the bytes moved (see the file's header).
   */
  gatherDtype?: 'float32' | 'bfloat16';
  /** Overlap the weights' all-gather with the next forward (see the file's header); default true. */
  overlapGather?: boolean;
}

export class ZeroAdamW {
  /** Every trainable parameter, groups concatenated (the indices of optimizer checkpoints, as AdamW's). */
  readonly params: Tensor[];
  private readonly buckets: Bucket[] = [];
  private readonly bucketOf = new Map<Tensor, Bucket>();
  /** AdamW over the parameters this rank owns, in their groups (lrScale kept). */
  private readonly inner: AdamW;
  private readonly localIndex = new Map<number, number>();
  /** The model parameter behind each of the inner AdamW's (itself, or the one whose master it updates). */
  private readonly innerParams: Tensor[];
  private launched = 0;
  private removeHook: (() => void) | null = null;
  private early = 0;
  /** The last step's buckets, and how many of them started during the backward (the rest at its end). */
  lastStep = { buckets: 0, startedInBackward: 0 };
  /** Bytes one rank received in the last all-gather of the weights (the other ranks' chunks). */
  lastGatherBytes = 0;
  readonly gatherDtype: 'float32' | 'bfloat16';
  readonly overlapGather: boolean;
  /** Buckets whose weights are still arriving, in the order their all-gathers started. */
  private pending: Bucket[] = [];
  /** gatherDtype 'bfloat16': the float32 master of each parameter this rank owns (the inner AdamW's parameters). */
  private readonly masters = new Map<Tensor, Tensor>();

  constructor(readonly group: ProcessGroup, groups: readonly ParamGroup[], opts: ZeroOptions) {
    this.bucketBytes = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    if (!Number.isFinite(this.bucketBytes) || this.bucketBytes <= 0) throw rangeError('ZeroAdamW', `bucketBytes must be > 0, got ${this.bucketBytes}`);
    this.gatherDtype = opts.gatherDtype ?? 'float32';
    if (this.gatherDtype !== 'float32' && this.gatherDtype !== 'bfloat16') throw rangeError('ZeroAdamW', `gatherDtype must be 'float32' or 'bfloat16', got ${String(this.gatherDtype)}`);
    this.overlapGather = opts.overlapGather ?? true;
    if (typeof this.overlapGather !== 'boolean') throw rangeError('ZeroAdamW', `overlapGather must be a boolean, got ${String(this.overlapGather)}`);
    this.params = groups.flatMap((g) => [...g.params]);
    for (const p of this.params) {
      if (p.device !== group.device) throw rangeError('ZeroAdamW', `a parameter is on ${p.device} but the ${group.backend} group reduces ${group.device} tensors`);
      if (p.dtype !== 'float32') throw rangeError('ZeroAdamW', `parameters must be float32 masters, got a ${p.dtype} one`);
    }
    // every collective's size follows from these: ranks that differ would reduce buffers of different sizes, which MPI
    // does not check (it overruns them); refused on every rank before any (one all-gather of a few KiB)
    checkRanksAgree(group, 'ZeroAdamW', [
      ['parameters', shapesSummary(this.params.map((p) => p.shape))],
      ['bucketBytes', String(this.bucketBytes)], ['gatherDtype', this.gatherDtype], ['overlapGather', String(this.overlapGather)],
    ]);
    // each parameter (largest first) to the least loaded rank: deterministic, so every rank agrees
    const load = new Array<number>(group.worldSize).fill(0);
    this.params.map((p, index) => ({ p, index })).sort((x, y) => y.p.size - x.p.size || x.index - y.index).forEach(({ p }) => {
      let r = 0;
      for (let k = 1; k < load.length; k++) if (load[k] < load[r]) r = k;
      load[r] += p.size;
      this.owners.set(p, r);
    });
    // first buckets: reverse registration order (rebuilt after the first backward in the order it finished them)
    this.buildBuckets(this.params.map((_, i) => i).reverse());
    const bf16 = this.gatherDtype === 'bfloat16';
    const ownedGroups = groups.map((g) => ({ params: [...g.params].filter((p) => this.owners.get(p) === group.rank), lrScale: g.lrScale, weightDecay: g.weightDecay }));
    this.innerParams = ownedGroups.flatMap((g) => g.params);
    const { lr, betas, eps, weightDecay } = opts; // AdamW's own options (the rest are ZeRO's)
    this.inner = new AdamW(ownedGroups.map((g) => ({ ...g, params: g.params.map((p) => (bf16 ? this.masterOf(p) : p)) })), { lr, betas, eps, weightDecay });
    this.innerParams.forEach((p, k) => this.localIndex.set(this.params.indexOf(p), k));
    if (bf16) this.roundWeights();
  }

  /** A float32 copy of p, kept as its master (gatherDtype 'bfloat16'). */
  private masterOf(p: Tensor): Tensor {
    const m = keep(Tensor.empty(p.shape, { device: p.device }));
    callOp('copy_2d', p.device, [p], [m], [1, p.size, p.size, p.size, 0, 0, 0]);
    this.masters.set(p, m);
    return m;
  }

  /** Where p's reduced gradient goes and AdamW reads it: its master, or p itself. */
  private holder(p: Tensor): Tensor {
    return this.masters.get(p) ?? p;
  }

  /** Every parameter rounded to bf16 in place (the same values on every rank: they all hold the same weights). */
  private roundWeights(): void {
    for (const p of this.params) {
      const b = castTensor(p, 'bfloat16');
      try {
        callOp('cast', p.device, [b], [p], [p.size]);
      } finally {
        b.dispose();
      }
    }
  }

  private readonly bucketBytes: number;
  private readonly owners = new Map<Tensor, number>();
  /** Parameter indices in the order the first armed backward finished them (torch DDP rebuilds its buckets so). */
  private readyOrder: number[] | null = [];

  /** Buckets of `order` (parameter indices), cut at bucketBytes; each rank's members packed into its chunk. */
  private buildBuckets(order: number[]): void {
    this.completeAll();
    for (const b of this.buckets) {
      b.flat.dispose();
      b.shard.dispose();
      b.flat16?.dispose();
      b.shard16?.dispose();
    }
    this.buckets.length = 0;
    this.bucketOf.clear();
    const world = this.group.worldSize;
    let cur: number[] = [], bytes = 0;
    const cut = () => {
      if (!cur.length) return;
      const byRank = new Array<number>(world).fill(0);
      const members: Member[] = cur.map((index) => {
        const param = this.params[index], owner = this.owners.get(param)!;
        const m = { param, index, owner, offset: byRank[owner] };
        byRank[owner] += param.size;
        return m;
      });
      const chunk = Math.max(1, ...byRank);
      const dev = this.group.device, bf16 = this.gatherDtype === 'bfloat16';
      const b: Bucket = {
        members, chunk, ready: 0, work: null, arriving: null,
        flat: keep(Tensor.zeros([world * chunk], { device: dev })),
        shard: keep(Tensor.zeros([chunk], { device: dev })),
        flat16: bf16 ? keep(Tensor.zeros([world * chunk], { device: dev, dtype: 'bfloat16' })) : null,
        shard16: bf16 ? keep(Tensor.zeros([chunk], { device: dev, dtype: 'bfloat16' })) : null,
      };
      this.buckets.push(b);
      for (const m of members) this.bucketOf.set(m.param, b);
      cur = [];
      bytes = 0;
    };
    for (const i of order) {
      const n = 4 * this.params[i].size;
      if (bytes > 0 && bytes + n > this.bucketBytes) cut();
      cur.push(i);
      bytes += n;
    }
    cut();
  }

  /**
   * After the first armed backward: the buckets again, in the order it finished the gradients (then what it never
   * reached, in reverse registration order), rank 0's order for everyone (a rank whose graph differed would
   * otherwise cut other buckets: the collectives would not match).
   */
  private rebuildBuckets(): void {
    const seen = new Set(this.readyOrder!);
    const order = [...this.readyOrder!, ...this.params.map((_, i) => i).reverse().filter((i) => !seen.has(i))];
    this.readyOrder = null;
    // float32 (indices below 2^24 are exact), so that readWithFlags takes it in the step's one read: a read of its
    // own would be a second wait, and in async mode would raise a kernel's deferred refusal outside that read
    const t = keep(Tensor.fromArray(Float32Array.from(order), [order.length], { device: this.group.device }));
    this.group.broadcast(t, 0);
    this.order = t;
  }

  /** Rank 0's order, broadcast by rebuildBuckets, until the buckets are rebuilt from it. */
  private order: Tensor | null = null;

  /** The rebuild rebuildBuckets started, from `host` (its values, read by readWithFlags) or a read of its own. */
  private finishRebuild(host?: Float32Array): void {
    const t = this.order;
    if (!t) return;
    this.order = null;
    try {
      this.buildBuckets(Array.from(host ?? t.toArray()));
    } finally {
      t.dispose();
    }
  }

  get lr(): number {
    return this.inner.lr;
  }
  set lr(v: number) {
    this.inner.lr = v;
  }

  /**
   * Before the backward of a step's last micro-batch: buckets start their reduce-scatter as their gradients
   * become final. Earlier micro-batches accumulate locally (torch DDP's no_sync).
   */
  armForBackward(): void {
    this.finishRebuild();
    this.removeHook?.();
    for (const b of this.buckets) b.ready = 0;
    const index = new Map(this.params.map((p, i) => [p, i]));
    this.removeHook = onGradReady((leaf) => {
      const b = this.bucketOf.get(leaf);
      if (!b) return;
      this.readyOrder?.push(index.get(leaf)!);
      b.ready++;
      const before = this.launched;
      this.launchReady();
      this.early += this.launched - before;
    });
  }

  /**
   * After all micro-batches (also after one that failed): starts every bucket not yet started, waits for them,
   * and leaves on each owned parameter the gradient averaged over the ranks (the others' local gradients are
   * freed). Every rank must call it once per step. `everyParameter`: every parameter counts as having a gradient this
   * step (zeros where none: launch fills the flat buffer first), the Trainer's rule for a part a batch did not reach;
   * giving those parameters zero tensors instead would allocate a gradient for each one whose bucket was already
   * reduced and freed during the backward.
   */
  reduceGradients(opts: { everyParameter?: boolean } = {}): void {
    if (opts.everyParameter) for (const p of this.params) this.hadGrad.add(p);
    this.removeHook?.();
    this.removeHook = null;
    this.lastStep = { buckets: this.buckets.length, startedInBackward: this.early };
    this.early = 0;
    while (this.launched < this.buckets.length) this.launch(this.buckets[this.launched]);
    this.anyGrad?.dispose();
    this.anyGradHost = null;
    this.anyGrad = keep(Tensor.fromArray(Float32Array.from(this.params, (p) => (this.hadGrad.has(p) ? 1 : 0)), [this.params.length], { device: this.group.device }));
    const flags = this.group.allReduceAsync(this.anyGrad, { op: 'max' });
    const rank = this.group.rank;
    for (const b of this.buckets) {
      b.work!.wait();
      b.work = null;
      for (const m of b.members) {
        if (m.owner !== rank) continue;
        const h = this.holder(m.param);
        const g = h.grad ?? keep(Tensor.empty(m.param.shape, { device: m.param.device }));
        callOp('copy_2d', g.device, [b.shard], [g], [1, m.param.size, m.param.size, m.param.size, m.offset, 0, 0]);
        h.grad = g;
      }
    }
    flags.wait();
    this.launched = 0;
    // Every rank rebuilds after its first reduction, also one whose micro-batches all failed before the backward was
    // armed (its order is empty): the rebuild is a broadcast, so deciding it per rank would unmatch the collectives.
    if (this.readyOrder !== null) this.rebuildBuckets();
  }

  /** Parameters that had a gradient on this rank this step (see anyGrad). */
  private readonly hadGrad = new Set<Tensor>();
  /**
   * Per parameter, 1 where some rank had a gradient (the max of hadGrad over the ranks): step() updates those only, as
   * AdamW skips a parameter without one. Under the Trainer every trained parameter has one on every rank (a zero
   * gradient where its micro-batches did not reach it, LLaVA's rule: reduceGradients' everyParameter), so all are set.
   */
  private anyGrad: Tensor | null = null;
  /** anyGrad's values once readWithFlags has read them (step() then needs no read of its own). */
  private anyGradHost: Float32Array | null = null;

  /**
   * The values of `stats` (a float32 tensor the caller has reduced, e.g. the step's losses and norm) and the
   * reduced has-gradient flags, in one host read: both are copied side by side into one buffer and read together,
   * and step() uses the flags read here. On CUDA each read is a wait for the stream: this keeps a data-parallel
   * step at one. The collectives are the ones the two separate reads saw, so the results are the same bit for bit.
   * The first step's read also takes the bucket order rank 0 broadcast, and the buckets are rebuilt from it.
   * After reduceGradients, before step.
   */
  readWithFlags(stats: Tensor): Float32Array {
    if (!this.anyGrad) throw new TypeError('ZeroAdamW.readWithFlags: reduceGradients() first');
    if (stats.dtype !== 'float32' || stats.device !== this.group.device) throw new TypeError(`ZeroAdamW.readWithFlags: stats must be a float32 ${this.group.device} tensor, got a ${stats.dtype} ${stats.device} one`);
    return this.readHost(stats);
  }

  /** `stats` (if any), the has-gradient flags and the bucket order still to take, in one read (one wait on CUDA). */
  private readHost(stats: Tensor | null): Float32Array {
    const anyGrad = this.anyGrad!;
    const n = stats?.size ?? 0, k = anyGrad.size, o = this.order?.size ?? 0, dev = this.group.device;
    const both = Tensor.empty([n + k + o], { device: dev });
    try {
      if (stats) callOp('copy_2d', dev, [stats], [both], [1, n, n, n, 0, 0, 0]);
      if (k) callOp('copy_2d', dev, [anyGrad], [both], [1, k, k, k, 0, n, 0]);
      if (this.order) callOp('copy_2d', dev, [this.order], [both], [1, o, o, o, 0, n + k, 0]);
      const host = both.toArray() as Float32Array;
      this.anyGradHost = host.subarray(n, n + k);
      this.finishRebuild(host.subarray(n + k));
      return host.subarray(0, n);
    } finally {
      both.dispose();
    }
  }

  /** The sum of squares of the owned parameters' reduced gradients ([1] tensor); summed over ranks: the global norm squared. */
  ownedSumSquares(): Tensor {
    const grads = this.inner.params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
    return sumSquares(grads, this.group.device);
  }

  /**
   * The sharded update (AdamW on the owned parameters that had a gradient on some rank) and the all-gather of
   * the updated weights. Every rank must call it, after reduceGradients.
   */
  step(opts: { gradScale?: number } = {}): void {
    if (!this.anyGrad) throw new TypeError('ZeroAdamW.step: reduceGradients() first');
    if (!this.anyGradHost) this.readHost(null); // not read with the caller's stats: the flags and the order in one read
    const any = this.anyGradHost!;
    this.params.forEach((p, i) => {
      const h = this.holder(p);
      if (!(any[i] > 0) && h.grad) {
        h.grad.dispose();
        h.grad = null;
      }
    });
    this.inner.step({ gradScale: opts.gradScale });
    this.lastGatherBytes = this.gather((m) => this.holder(m.param), (m) => m.param, undefined, this.gatherDtype === 'bfloat16', this.overlapGather);
    // the weights are written in place, as AdamW.step's: a graph recorded before the step cannot be back-propagated
    for (const p of this.params) p.markWritten();
    this.dropGrads();
  }

  /** Buckets whose weights are still arriving (overlapGather: all of them right after step()). */
  get arrivingBuckets(): number {
    return this.pending.length;
  }

  /** Brings in every weight still arriving from an overlapped all-gather (waits for it). */
  private completeAll(): void {
    while (this.pending.length) this.complete(this.pending[0]);
  }

  /** Waits for b's all-gather and copies its values into its members (once; the first access to one calls it). */
  private complete(b: Bucket): void {
    const a = b.arriving;
    if (!a) return;
    b.arriving = null;
    this.pending = this.pending.filter((x) => x !== b);
    for (const m of b.members) cancelFirstAccess(a.target(m));
    this.receive(b, a.target, undefined, a.bf16);
  }

  /**
   * gatherDtype 'bfloat16': the parameters get the float32 masters back (an all-gather in float32), as at the end
   * of training. Collective: every rank calls it (the Trainer does at a stage's end). A no-op with float32.
   */
  finish(): void {
    this.completeAll();
    if (this.gatherDtype === 'bfloat16') this.gather((m) => this.holder(m.param), (m) => m.param);
  }

  /**
   * Runs fn with the float32 masters in the parameters (a checkpoint's weights), then rounds them to bf16 again.
   * Collective (every rank calls it; fn may differ by rank). With gatherDtype 'float32' it only runs fn.
   */
  withMasterWeights<T>(fn: () => T): T {
    if (this.gatherDtype !== 'bfloat16') return fn();
    this.finish();
    try {
      return fn();
    } finally {
      this.roundWeights();
    }
  }

  /** A skipped step: the reduced gradients are dropped, weights and moments stay. */
  discard(): void {
    this.finishRebuild();
    this.dropGrads();
  }

  /**
   * The whole AdamW state in the single-process layout (index, step, moments) on every rank: collective, every
   * rank must call it (Trainer.save does, then rank 0 writes it).
   */
  gatherState(): { index: number; step: number; m: Float32Array; v: Float32Array }[] {
    const own = new Map(this.inner.stateEntries().map((e) => [this.innerParams[e.index], e]));
    const steps = Tensor.fromArray(Float32Array.from(this.params, (p) => own.get(p)?.step ?? 0), [this.params.length], { device: this.group.device });
    const moments = new Map<Tensor, { m: Float32Array; v: Float32Array }>();
    try {
      this.group.allReduce(steps, { op: 'max' });
      for (const which of ['m', 'v'] as const) {
        this.gather((m) => own.get(m.param)?.[which] ?? null, null, (m, values) => {
          const e = moments.get(m.param) ?? { m: new Float32Array(0), v: new Float32Array(0) };
          e[which] = values;
          moments.set(m.param, e);
        });
      }
      const st = steps.toArray();
      return this.params.flatMap((p, index) => (st[index] > 0 ? [{ index, step: st[index], ...moments.get(p)! }] : []));
    } finally {
      steps.dispose();
    }
  }

  /** Restores a single-process layout state (AdamW.stateEntries of any world size): each rank keeps its own. */
  loadState(entries: { index: number; step: number; m: Float32Array; v: Float32Array }[]): void {
    for (const e of entries) if (!this.params[e.index] || e.m.length !== this.params[e.index].size) throw new RangeError(`ZeroAdamW.loadState: entry ${e.index} does not fit the parameters`);
    this.inner.loadState(entries.filter((e) => this.localIndex.has(e.index)).map((e) => ({ ...e, index: this.localIndex.get(e.index)! })));
  }

  dispose(): void {
    this.removeHook?.();
    this.removeHook = null;
    this.order?.dispose();
    this.order = null;
    this.completeAll();
    for (const b of this.buckets) {
      b.work?.wait();
      b.flat.dispose();
      b.shard.dispose();
      b.flat16?.dispose();
      b.shard16?.dispose();
    }
    this.buckets.length = 0;
    this.anyGrad?.dispose();
    this.anyGrad = null;
    this.inner.dispose();
    for (const m of this.masters.values()) {
      m.grad?.dispose();
      m.grad = null;
      m.dispose();
    }
    this.masters.clear();
  }

  /** Starts, in order, every bucket whose gradients are all final. */
  private launchReady(): void {
    while (this.launched < this.buckets.length && this.buckets[this.launched].ready === this.buckets[this.launched].members.length) this.launch(this.buckets[this.launched]);
  }

  /** Copies the bucket's gradients into its flat buffer (zeros where none), frees them, starts the reduce-scatter. */
  private launch(b: Bucket): void {
    this.completeAll(); // the bucket's buffers carry the weights of an overlapped all-gather until it completes
    const dev = this.group.device;
    callOp('fill', dev, [], [b.flat], [b.flat.size], [0]);
    for (const m of b.members) {
      const g = m.param.grad;
      if (!g) continue;
      this.hadGrad.add(m.param);
      callOp('copy_2d', dev, [g], [b.flat], [1, g.size, g.size, g.size, 0, m.owner * b.chunk + m.offset, 0]);
      g.dispose();
      m.param.grad = null;
    }
    b.work = this.group.reduceScatterAsync(b.shard, b.flat, { op: 'avg' });
    this.launched++;
  }

  /**
   * Each rank's chunk from `source` (owned members; null: zeros), all-gathered (in bf16 with `bf16`: rounded once,
   * 16-bit words moved); then each member's values go to `target` (a tensor) or `take` (host copies). Returns the
   * bytes this rank received. With `overlap`, the values come in at the first access to each bucket's members (see
   * the file's header).
   */
  private gather(source: (m: Member) => Tensor | null, target: ((m: Member) => Tensor) | null, take?: (m: Member, values: Float32Array) => void, bf16 = false, overlap = false): number {
    this.completeAll();
    const dev = this.group.device, rank = this.group.rank;
    let bytes = 0;
    // overlapped: in the order the forward uses the buckets (they are cut in the backward's order)
    const order = overlap ? [...this.buckets].reverse() : this.buckets;
    for (const b of order) {
      callOp('fill', dev, [], [b.shard], [b.chunk], [0]);
      for (const m of b.members) {
        const t = m.owner === rank ? source(m) : null;
        if (t) callOp('copy_2d', dev, [t], [b.shard], [1, t.size, t.size, t.size, 0, m.offset, 0]);
      }
      if (bf16) callOp('cast', dev, [b.shard], [b.shard16!], [b.chunk]);
      const [into, from] = bf16 ? [b.flat16!, b.shard16!] : [b.flat, b.shard];
      b.work = this.group.allGatherAsync(into, from);
      bytes += (this.group.worldSize - 1) * from.size * (from.dtype === 'bfloat16' ? 2 : 4); // the other ranks' chunks
    }
    if (overlap && target) {
      for (const b of order) {
        b.arriving = { target, bf16 };
        this.pending.push(b);
        for (const m of b.members) onFirstAccess(target(m), () => this.complete(b));
      }
      return bytes;
    }
    for (const b of order) this.receive(b, target, take, bf16);
    return bytes;
  }

  /** Waits for b's all-gather, then each member's values go to `target` (a tensor) or `take` (host copies). */
  private receive(b: Bucket, target: ((m: Member) => Tensor) | null, take: ((m: Member, values: Float32Array) => void) | undefined, bf16: boolean): void {
    const dev = this.group.device;
    b.work!.wait();
    b.work = null;
    if (bf16) callOp('cast', dev, [b.flat16!], [b.flat], [b.flat.size]);
    const host = take ? (b.flat.toArray() as Float32Array) : null;
    for (const m of b.members) {
      const at = m.owner * b.chunk + m.offset;
      if (host) take!(m, host.slice(at, at + m.param.size));
      else {
        const t = target!(m);
        if (!t.disposed) callOp('copy_2d', dev, [b.flat], [t], [1, t.size, t.size, t.size, at, 0, 0]);
      }
    }
  }

  private dropGrads(): void {
    for (const p of [...this.params, ...this.masters.values()]) {
      p.grad?.dispose();
      p.grad = null;
    }
    this.hadGrad.clear();
    this.anyGrad?.dispose();
    this.anyGrad = null;
    this.anyGradHost = null;
  }
}
