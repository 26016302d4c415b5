// The trainer's op programs (src/program.ts) for a stage whose steps make the same calls for every batch of the same
// sizes: a stage with `prepare` (its own loss), or one of VwLmm.loss on model batches (modelBatchArrays). The stage's
// first step in a run runs in JavaScript and leaves its gradients allocated. After it, a step is keyed by the byte
// sizes of its data (and a model batch's B x T); the first two steps of a key are recorded as they run, one program per optimizer step (the
// autocast region, its forward and backward, the gradients zeroed in place first); when the two agree
// call for call, the key's later steps replay the second. The programs of a stage share one memory pool, within bounds
// (REPLAY_MAX_SHAPES, REPLAY_MAX_POOL_GROWTH) past which the stage goes on in JavaScript. A replay runs
// the recorded kernels on the recorded buffers, so the stage trains to the same numbers, bit for bit, as without it
// (tests/train/replay.test.ts, tests/demo/vision_pretrain.test.ts).
import { callOp } from '../call_op';
import { OpProgram } from '../program';
import { Device, keep, Tensor } from '../tensor';
import type { ModelBatch } from '../model/vwlmm';
import { klRowsOf, spliceIndexOf } from '../model/vwlmm';

export type ReplayPhase = 'first' | 'on' | 'off';

/** What VwLmm.loss uploads from a model batch, in a fixed order (absent ones empty): a program's inputs. */
export function modelBatchArrays(batch: ModelBatch): ArrayBufferView[] {
  const kl = klRowsOf(batch);
  return [batch.tokenIds, batch.attentionMask, spliceIndexOf(batch), batch.pixelValues ?? new Float32Array(0), batch.targets ?? new Int32Array(0), kl.rows, kl.featureIndex];
}

interface Entry {
  recordings: OpProgram[];
  program: OpProgram | null;
}

/**
 * Bounds on what a stage's programs may hold: its batch shapes (keys), and the pool's bytes against the largest step's
 * temporaries (a program's stepBytes). Past either, the stage goes on in JavaScript and the programs are freed: a
 * stage whose batch lengths all differ (LLaVA's data), or grow step after step, would keep a recording per length and
 * new blocks for each (torch.compile likewise falls back to eager past its cache_size_limit of recompilations).
 */
export const REPLAY_MAX_SHAPES = 64;
export const REPLAY_MAX_POOL_GROWTH = 4;

export class StageReplay {
  phase: ReplayPhase = 'first';
  /** The step's stats tensor, kept through the stage: the programs write the losses there. */
  readonly stats: Tensor;
  private grads: Tensor[] = [];
  private readonly entries = new Map<string, Entry>();
  /** Why the stage went on in JavaScript ('off'), once it has. */
  why: string | null = null;
  /** Steps replayed, recorded, and run in JavaScript alone. */
  readonly counts = { replayed: 0, recorded: 0, javascript: 0 };
  /** The largest recorded step's temporaries (stepBytes). */
  private stepBytes = 0;

  constructor(readonly device: Device, statsSize: number, readonly limits = { maxShapes: REPLAY_MAX_SHAPES, maxPoolGrowth: REPLAY_MAX_POOL_GROWTH }) {
    this.stats = keep(Tensor.zeros([statsSize], { device }));
  }

  /** A live program of the stage (the pool a new recording shares), or undefined. */
  private anchor(): OpProgram | undefined {
    for (const e of this.entries.values()) {
      const p = e.program ?? e.recordings[0];
      if (p) return p;
    }
    return undefined;
  }

  /**
   * One optimizer step (of one micro-batch: with gradient accumulation the trainer does not replay, since a stage may
   * reuse a batch's arrays for the next micro-batch): `step` runs its forward and backward in JavaScript, `data` is
   * what they upload, `shape` what else fixes its calls (a model batch's B x T: text-only batches of 2 x 30 and 3 x 20
   * tokens have arrays of the same sizes). Replayed, recorded, or run as it is. Returns a record to log when replay
   * starts or stops.
   */
  run(data: ArrayBufferView[], step: () => void, shape = ''): Record<string, unknown> | undefined {
    if (this.phase !== 'on') {
      this.counts.javascript++;
      step();
      return undefined;
    }
    const key = `${shape}|${data.map((a) => a.byteLength).join(',')}`;
    if (!this.entries.has(key) && this.entries.size >= this.limits.maxShapes) {
      // the gradients the last step left, zeroed in place as a recording zeroes them; then the step in JavaScript
      for (const g of this.grads) callOp('fill', this.device, [], [g], [g.size], [0]);
      const record = this.stop(`the stage's batches came in more than ${this.limits.maxShapes} shapes (sizes of B x T and data): a program for each would hold its memory for the stage`);
      this.counts.javascript++;
      step();
      return record;
    }
    const e = this.entries.get(key) ?? { recordings: [], program: null };
    this.entries.set(key, e);
    if (e.program) {
      this.counts.replayed++;
      e.program.replay(data);
      return undefined;
    }
    this.counts.recorded++;
    const anchor = this.anchor();
    const r = OpProgram.tryRecord(this.device, data, () => {
      // the gradients kept from the last step, zeroed in place (set_to_none=False): 0 + g is g, so the numbers
      // are those of gradients made anew
      for (const g of this.grads) callOp('fill', this.device, [], [g], [g.size], [0]);
      step();
    }, { poolOf: anchor });
    if ('why' in r) return this.stop(`a step could not be recorded: ${r.why}`);
    e.recordings.push(r.program);
    const { poolBytes, stepBytes } = r.program.info();
    this.stepBytes = Math.max(this.stepBytes, stepBytes);
    if (poolBytes > this.limits.maxPoolGrowth * this.stepBytes)
      return this.stop(`the programs' pool grew to ${poolBytes} bytes, more than ${this.limits.maxPoolGrowth} x its largest step's ${this.stepBytes}: the batches' shapes vary too much to keep a program for each`);
    if (e.recordings.length < 2) return undefined;
    const diff = e.recordings[0].differenceFrom(e.recordings[1]);
    if (diff !== null) return this.stop(`two recorded steps of the same sizes differ: ${diff}`);
    e.program = e.recordings[1];
    e.recordings[0].dispose();
    e.recordings = [];
    const programs = [...this.entries.values()].filter((x) => x.program).length;
    if (programs > 1) return undefined;
    const info = e.program.info();
    return { used: true, ops: info.ops, poolBytes: info.poolBytes };
  }

  /**
   * Steps replayed, recorded and run in JavaScript alone; the programs kept and their pool's bytes; on CUDA, how many
   * of them run as graphs, their launches, and why one does not (the first reason).
   */
  summary(): Record<string, unknown> {
    const programs = [...this.entries.values()].map((e) => e.program).filter((p): p is OpProgram => p !== null);
    const infos = programs.map((p) => p.info());
    const graphs = infos.map((i) => i.graph).filter((g) => g !== null);
    const graphWhy = graphs.find((g) => g.reason !== null)?.reason;
    return {
      ...this.counts, programs: programs.length, poolBytes: infos.length ? infos[0].poolBytes : 0,
      ...(graphs.length ? { graphs: graphs.filter((g) => g.captured).length, graphLaunches: graphs.reduce((a, g) => a + g.launches, 0), ...(graphWhy ? { graphWhy } : {}) } : {}),
      ...(this.why ? { why: this.why } : {}),
    };
  }

  /**
   * After the optimizer step: whether the caller frees the gradients now (true) or they stay for the next step's
   * programs.
   */
  afterStep(params: Tensor[]): boolean {
    if (this.phase === 'first') {
      this.grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
      this.phase = 'on';
    }
    return this.phase === 'off';
  }

  /** Back to JavaScript for the rest of the stage (a step that cannot be replayed, or a non-finite one). */
  stop(why: string): Record<string, unknown> | undefined {
    if (this.phase === 'off') return undefined;
    const wasOn = this.phase === 'on';
    this.phase = 'off';
    this.why = why;
    this.disposePrograms();
    return wasOn ? { used: false, why } : undefined;
  }

  private disposePrograms(): void {
    for (const e of this.entries.values()) for (const p of [...e.recordings, ...(e.program ? [e.program] : [])]) p.dispose();
    this.entries.clear();
    this.grads = [];
  }

  dispose(): void {
    this.disposePrograms();
    this.stats.dispose();
  }
}
