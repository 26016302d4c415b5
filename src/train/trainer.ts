// The training loop: stages as in LLaVA (each with its data, schedule and trainable parts), AdamW with a
// cosine schedule and warmup, gradient accumulation, global-norm clipping, periodic evaluation, atomic
// checkpoints (weights, optimizer state, data position) every N steps and an exact --resume, a progress
// line (step, CE and KL, tokens/s, ETA), a JSONL metrics log.
//
// Exactness of resume: the batch at (stage, step) is a pure function of (seed, stage, epoch, position),
// the weights and AdamW moments are restored bit for bit and the schedule depends on the step only, so
// the resumed loss curve continues the uninterrupted one (the kernels are deterministic for a fixed
// thread count).
import * as fs from 'fs';
import * as path from 'path';
import { clipGradNorm, AdamW } from '../optim';
import { Generator } from '../random';
import { scope } from '../tensor';
import * as ops from '../ops';
import { zeroGrad } from '../autograd';
import { HostTensor, readSafetensors } from '../io/safetensors';
import { saveCheckpoint, SaveOptions } from '../model/checkpoint';
import { ModelBatch, VwLmm } from '../model/vwlmm';
import { cosineWithWarmup } from './schedule';

/** Which parts of the model a stage trains (the rest is frozen). */
export interface Trainable {
  visionTower?: boolean;
  projector?: boolean;
  llm?: boolean;
  vmHead?: boolean;
}

export interface Stage {
  name: string;
  /** Number of samples, and a function turning sample indices into a batch. */
  size: number;
  makeBatch: (indices: number[]) => ModelBatch;
  /** Optimizer steps; when absent, epochs * ceil(size / (batchSize * gradAccum)). */
  steps?: number;
  epochs?: number;
  batchSize: number;
  gradAccum?: number;
  lr: number;
  warmupRatio?: number;
  weightDecay?: number;
  maxGradNorm?: number;
  trainable: Trainable;
}

export interface TrainerOptions {
  seed: number;
  outDir: string;
  /** Save a checkpoint every N optimizer steps (0 = only at the end of each stage). */
  saveEvery?: number;
  /** Run `evaluate` every N steps (0 = only at the end of each stage). */
  evalEvery?: number;
  evaluate?: (model: VwLmm, where: { stage: string; step: number }) => Record<string, number>;
  /** Called with each log record (also written to metrics.jsonl). */
  onLog?: (record: Record<string, unknown>) => void;
  /** Files saved with every checkpoint (e.g. the tokenizer). */
  checkpointFiles?: Pick<SaveOptions, 'tokenizer' | 'extraFiles'>;
  /** Stop after this many optimizer steps in total (for tests of resume), as if interrupted. */
  stopAfterSteps?: number;
  /** Write a train record every N steps (default 1). */
  logEvery?: number;
}

export interface TrainerState {
  stage: number;
  step: number;
  globalStep: number;
  seed: number;
}

export function applyTrainable(model: VwLmm, t: Trainable): void {
  model.setTrainable(false);
  if (t.visionTower) model.visionTower.setTrainable(true);
  if (t.projector) model.model.mm_projector.setTrainable(true);
  if (t.llm) {
    model.model.embed_tokens.setTrainable(true);
    model.model.layers.setTrainable(true);
    model.model.norm.setTrainable(true);
    model.lm_head.setTrainable(true);
  }
  if (t.vmHead && model.vm_head) model.vm_head.setTrainable(true);
}

export function stageSteps(s: Stage): number {
  if (s.steps !== undefined) return s.steps;
  const perEpoch = Math.ceil(s.size / (s.batchSize * (s.gradAccum ?? 1)));
  return Math.max(1, Math.round((s.epochs ?? 1) * perEpoch));
}

/** Sample indices of micro-batch `micro` of optimizer step `step`: epochs of seeded permutations. */
export function batchIndices(seed: number, stageIndex: number, s: Stage, step: number, micro: number): number[] {
  const perStep = s.batchSize * (s.gradAccum ?? 1);
  const start = step * perStep + micro * s.batchSize;
  const out: number[] = [];
  let cachedEpoch = -1, order: number[] = [];
  for (let k = 0; k < s.batchSize; k++) {
    const flat = start + k, epoch = Math.floor(flat / s.size), pos = flat % s.size;
    if (epoch !== cachedEpoch) {
      order = epochOrder(seed, stageIndex, epoch, s.size);
      cachedEpoch = epoch;
    }
    out.push(order[pos]);
  }
  return out;
}

const orderCache = new Map<string, number[]>();
function epochOrder(seed: number, stage: number, epoch: number, n: number): number[] {
  const key = `${seed}:${stage}:${epoch}:${n}`;
  let o = orderCache.get(key);
  if (!o) {
    o = new Generator(seed).fork(`stage${stage}`).fork(`epoch${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
    if (orderCache.size > 8) orderCache.clear();
    orderCache.set(key, o);
  }
  return o;
}

export class Trainer {
  private readonly metricsFile: string;
  constructor(readonly model: VwLmm, readonly stages: Stage[], readonly opts: TrainerOptions) {
    fs.mkdirSync(opts.outDir, { recursive: true });
    this.metricsFile = path.join(opts.outDir, 'metrics.jsonl');
  }

  private log(record: Record<string, unknown>): void {
    fs.appendFileSync(this.metricsFile, JSON.stringify(record) + '\n');
    this.opts.onLog?.(record);
  }

  /** Runs every stage from `resume` (or from the start) to the end; returns the final state. */
  run(resume?: { state: TrainerState; optimizer: Map<string, HostTensor> }): TrainerState {
    const state: TrainerState = resume ? { ...resume.state } : { stage: 0, step: 0, globalStep: 0, seed: this.opts.seed };
    if (state.seed !== this.opts.seed) throw new Error(`resume: the checkpoint was trained with seed ${state.seed}, not ${this.opts.seed}`);
    if (resume) truncateMetrics(this.metricsFile, state.globalStep);
    else fs.writeFileSync(this.metricsFile, '');
    for (; state.stage < this.stages.length; state.stage++, state.step = 0) {
      const s = this.stages[state.stage];
      applyTrainable(this.model, s.trainable);
      const params = this.model.trainableParameters();
      const opt = new AdamW(params, { lr: s.lr, weightDecay: s.weightDecay ?? 0 });
      try {
        if (resume && state.step > 0) opt.loadState(optimizerEntries(resume.optimizer, params.length));
        resume = undefined;
        const total = stageSteps(s);
        const t0 = Date.now();
        let tokens = 0;
        while (state.step < total) {
          if (this.opts.stopAfterSteps !== undefined && state.globalStep >= this.opts.stopAfterSteps) return state;
          const lr = cosineWithWarmup(state.step, total, s.warmupRatio ?? 0.03, s.lr);
          opt.lr = lr;
          let ce = 0, kl = 0, loss = 0;
          const accum = s.gradAccum ?? 1;
          for (let m = 0; m < accum; m++) {
            const batch = s.makeBatch(batchIndices(state.seed, state.stage, s, state.step, m));
            scope(() => {
              const out = this.model.loss(batch);
              // micro-batches average: each backward carries 1/accum of the gradient
              const scaled = accum === 1 ? out.loss : ops.scale(out.loss, 1 / accum);
              scaled.backward();
              ce += out.ce / accum;
              kl += out.kl / accum;
              loss += out.loss.item() / accum;
              tokens += batch.attentionMask.reduce((a, b) => a + b, 0);
            });
          }
          const gradNorm = clipGradNorm(params, s.maxGradNorm ?? 1.0);
          opt.step();
          zeroGrad(params);
          state.step++;
          state.globalStep++;
          const elapsed = (Date.now() - t0) / 1000;
          const rec = { type: 'train', stage: s.name, step: state.step, steps: total, globalStep: state.globalStep, loss, ce, kl, lr, gradNorm, tokensPerSec: tokens / Math.max(elapsed, 1e-9), elapsed, eta: (elapsed / state.step) * (total - state.step) };
          if (state.step % (this.opts.logEvery ?? 1) === 0 || state.step === total) this.log(rec);
          const atEnd = state.step === total;
          if (this.opts.evaluate && ((this.opts.evalEvery && state.step % this.opts.evalEvery === 0) || atEnd)) {
            this.log({ type: 'eval', stage: s.name, step: state.step, globalStep: state.globalStep, ...this.opts.evaluate(this.model, { stage: s.name, step: state.step }) });
          }
          if ((this.opts.saveEvery && state.globalStep % this.opts.saveEvery === 0) || atEnd) this.save(state, opt);
        }
      } finally {
        opt.dispose();
      }
    }
    return state;
  }

  /** Atomic checkpoint with the trainer state (position and optimizer) for an exact resume. */
  save(state: TrainerState, opt: AdamW): void {
    const tensors = new Map<string, HostTensor>();
    for (const e of opt.stateEntries()) {
      tensors.set(`${e.index}.m`, { dtype: 'float32', shape: [...e.m.shape], data: e.m.toArray() as Float32Array });
      tensors.set(`${e.index}.v`, { dtype: 'float32', shape: [...e.v.shape], data: e.v.toArray() as Float32Array });
      tensors.set(`${e.index}.step`, { dtype: 'int32', shape: [1], data: Int32Array.of(e.step) });
    }
    saveCheckpoint(path.join(this.opts.outDir, 'checkpoint'), this.model, {
      ...this.opts.checkpointFiles,
      extraFiles: { ...this.opts.checkpointFiles?.extraFiles, 'trainer_state.json': JSON.stringify({ ...state, stages: this.stages.map((s) => s.name) }, null, 2) },
      extraTensors: { 'optimizer.safetensors': tensors },
    });
  }
}

function optimizerEntries(tensors: Map<string, HostTensor>, nParams: number): { index: number; step: number; m: Float32Array; v: Float32Array }[] {
  const out = [];
  for (let i = 0; i < nParams; i++) {
    const m = tensors.get(`${i}.m`), v = tensors.get(`${i}.v`), st = tensors.get(`${i}.step`);
    if (!m || !v || !st) continue;
    out.push({ index: i, step: (st.data as Int32Array)[0], m: m.data as Float32Array, v: v.data as Float32Array });
  }
  return out;
}

/** Reads the trainer state and optimizer tensors saved in a checkpoint directory. */
export function readTrainerState(checkpointDir: string): { state: TrainerState; optimizer: Map<string, HostTensor> } {
  const f = path.join(checkpointDir, 'trainer_state.json');
  if (!fs.existsSync(f)) throw new Error(`resume: ${f} does not exist (not a training checkpoint)`);
  const state = JSON.parse(fs.readFileSync(f, 'utf8')) as TrainerState;
  return { state, optimizer: readSafetensors(path.join(checkpointDir, 'optimizer.safetensors')) };
}

/** Keeps the metrics log up to `globalStep` (a resumed run rewrites what came after its checkpoint). */
function truncateMetrics(file: string, globalStep: number): void {
  if (!fs.existsSync(file)) return;
  const keep = fs.readFileSync(file, 'utf8').split('\n').filter((l) => {
    if (!l.trim()) return false;
    try {
      return (JSON.parse(l) as { globalStep?: number }).globalStep! <= globalStep;
    } catch {
      return false;
    }
  });
  fs.writeFileSync(file, keep.map((l) => l + '\n').join(''));
}
