// The training loop: stages as in LLaVA (each with its data, schedule and trainable parts), AdamW with a
// cosine schedule and warmup, gradient accumulation, global-norm clipping, periodic evaluation, crash-safe
// checkpoints (weights, optimizer state, data position) every N steps and an exact --resume, a progress
// line (step, CE and KL, tokens/s, ETA), a JSONL metrics log.
//
// Exactness of resume: the batch at (stage, step) is a pure function of (seed, stage name, epoch, position),
// the weights and AdamW moments are restored bit for bit and the schedule depends on the step only, so
// the resumed loss curve continues the uninterrupted one (the kernels are deterministic for a fixed
// thread count).
//
// Interruption (src/train/interrupt.ts): with a StopRequest (option `stop`, or `handleSignals` with
// runAsync()) the trainer checks it between optimizer steps,
// writes a checkpoint at the step it reached and throws TrainingInterrupted. A kill -9 at any moment leaves
// the last complete checkpoint loadable (saveCheckpoint; resolveCheckpointDir finds it).
//
// Non-finite steps: a NaN/Inf loss (or a kernel refusing a non-finite activation) or gradient norm skips
// the optimizer step (weights and AdamW moments unchanged), logs a 'nonfinite' record naming the stage,
// step and sample indices, and counts it (state.skippedSteps, the 'summary' record); `nonFinite: 'stop'`
// throws a NonFiniteError instead.
//
// A stage with its own objective (Stage.loss, HF Trainer's compute_loss) gets everything above from the
// same loop: its loss of a micro-batch's sample indices replaces makeBatch + VwLmm.loss, and the tensors it
// trains beside the model (Stage.extraParameters, e.g. a probe's read-out heads) join the stage's optimizer.
// They are not the model's, so they stay out of model.safetensors (which VwLmm.load and eval read as the
// model); the checkpoint keeps the current stage's in stage_parameters.safetensors beside the optimizer
// state, so a resume inside that stage is exact. The demo's stage 0 (src/demo/vision_pretrain.ts) is one.
// Without outDir a run writes nothing: records go to onLog only, and with no checkpoint a stop leaves
// nothing to resume.
import * as fs from 'fs';
import * as path from 'path';
import { autocast, ComputeDtype, defaultComputeDtype, parseComputeDtype } from '../amp';
import { f32ToBf16 } from '../bf16';
import { callOp } from '../call_op';
import { checkKeys, describe, rangeError, typeError } from '../errors';
import { AdamW, ParamGroup, sumSquares } from '../optim';
import { Generator } from '../random';
import { keep, scope, Tensor } from '../tensor';
import * as F from '../functional';
import { clearTape, noGrad, zeroGrad } from '../autograd';
import { writeFileAtomic } from '../io/atomic_file';
import { CHECKSUM_KEY, HostTensor, LazyHostTensor, readSafetensorsWithMetadata } from '../io/safetensors';
import { isPlainFileName, readCheckpointWeights, resolveCheckpointDir, saveCheckpoint, SaveOptions, TOKENIZER_FILE_NAMES, tokenizerFiles, withModelNames } from '../model/checkpoint';
import { loraConfigOf, loraParameters, loraTrainingRecord, resumeLoraTraining } from '../model/lora';
import { ModelBatch, VwLmm } from '../model/vwlmm';
import { LayerNorm, RMSNorm, storeFrozenWeights } from '../nn/layers';
import type { Module } from '../nn/module';
import type { ProcessGroup } from '../distributed/process_group';
import { DEFAULT_BUCKET_BYTES, ZeroAdamW } from '../distributed/zero';
import { checkRanksAgree, fnv1a, shapesSummary } from '../distributed/consistency';
import { modelBatchArrays, StageReplay } from './replay';
import { modalityLengthGroupedIndices } from './sampler';
import { cosineWithWarmup } from './schedule';
import { TensorBoardWriter, tensorboardScalars } from './tensorboard';
import { installStopHandlers, NonFiniteError, StopRequest, TrainingInterrupted } from './interrupt';
import type { StageSettings, TrainerState } from './state';

export type { TrainerState } from './state';

/** Which parts of the model a stage trains (the rest is frozen). */
export interface Trainable {
  visionTower?: boolean;
  projector?: boolean;
  llm?: boolean;
  vmHead?: boolean;
  /** The LoRA adapters (applyLora): trained while the LLM's own weights stay frozen (unless llm is set). */
  lora?: boolean;
}

/** The part names of `vwlmm train --trainable` and the Trainable field each sets (one table for both directions). */
export const TRAINABLE_PARTS: Readonly<Record<string, keyof Trainable>> = Object.freeze({ vision: 'visionTower', projector: 'projector', llm: 'llm', vm: 'vmHead', lora: 'lora' });

export interface Stage {
  name: string;
  /**
   * Number of samples, and a function turning sample indices into a batch (for VwLmm.loss; not with `loss`).
   * makeBatch is called at its micro-batch, and the trainer is done with the batch when that micro-batch's backward
   * has run (its arrays are copied to the device as the forward starts): the next call may reuse its arrays
   * (CollateOptions.pixelValues).
   */
  size: number;
  makeBatch?: (indices: number[]) => ModelBatch;
  /**
   * makeBatch's asynchronous form (for batches read from disk: image files decoded and resized per batch):
   * runAsync() starts loading the next optimizer step's micro-batches before it runs the current step, so the
   * loading (sharp decodes in libuv's worker threads) overlaps the computation. Only with runAsync().
   */
  loadBatch?: (indices: number[]) => Promise<ModelBatch>;
  /**
   * The stage's own objective in place of makeBatch + VwLmm.loss (HF Trainer's compute_loss): the scalar loss
   * of one micro-batch, given its sample indices. It runs inside the trainer's scope (its tensors are freed
   * after the backward); accumulation, clipping, the schedule, non-finite checks and logging are the trainer's.
   * Its train records carry loss, lr and gradNorm (no CE / KL / tokens: the trainer cannot know them).
   */
  loss?: (model: VwLmm, indices: number[], data?: ArrayBufferView[]) => Tensor;
  /**
   * With `loss`: the micro-batch's host data (typed arrays), made from its sample indices and passed to loss as
   * `data`; loss then uploads only those arrays (Tensor.fromArray on them, or on slices of them) and builds nothing
   * else from the indices, so that its calls are the same for every batch of the same sizes. The trainer then replays
   * its steps as op programs (TrainerOptions.replay). A model batch's arrays are modelBatchArrays (src/train/replay.ts).
   */
  prepare?: (indices: number[]) => ArrayBufferView[];
  /**
   * Tensors the stage trains beside the model's `trainable` parts (needs `loss`; each requiresGrad, none a
   * model parameter): in the same AdamW group as the model's parameters at `lr` (weight decay, clipping and
   * schedule included). The caller owns and frees them. Checkpoints written during the stage hold them in
   * stage_parameters.safetensors (not model.safetensors), and a resume inside the stage restores them.
   */
  extraParameters?: Tensor[];
  /**
   * Optimizer steps; when absent, round(epochs * ceil(size / (batchSize * gradAccum * ranks))). The samples are one
   * stream of seeded per-epoch permutations (batchIndices): every batch is full, so the last step of an epoch takes
   * what it lacks from the next epoch's order (each sample once per epoch of the stream; transformers would make
   * the last batch short instead).
   */
  steps?: number;
  epochs?: number;
  /**
   * LLaVA's group_by_modality_length (src/train/sampler.ts): per sample, its length (LLaVA's modality_lengths: words,
   * > 0 with an image, < 0 text only), and each epoch's order keeps image and text-only samples in separate batches of
   * similar lengths. Absent: each epoch a plain seeded permutation.
   */
  modalityLengths?: ArrayLike<number>;
  batchSize: number;
  gradAccum?: number;
  lr: number;
  /**
   * Peak learning rate of the vision tower when it trains (LLaVA's mm_vision_tower_lr): a second AdamW
   * parameter group on the same schedule; absent = lr.
   */
  visionTowerLr?: number;
  /** Peak learning rate of the projector (LLaVA's mm_projector_lr, 2e-5 in its LoRA recipe); absent = lr. */
  projectorLr?: number;
  warmupRatio?: number;
  weightDecay?: number;
  /** Global gradient-norm clip (default 1); 0 turns clipping off, as transformers' Trainer does with max_grad_norm 0. */
  maxGradNorm?: number;
  trainable: Trainable;
  /**
   * What the stage's data were made with, as far as the Trainer cannot see it (trainOnFile: the conversation template,
   * image aspect ratio, model max length, and a digest of the prepared samples' token ids, labels and images): strings,
   * numbers or booleans by name. Checkpoints record them (TrainerState.stageSettings), and a resume whose value of one
   * differs is refused, naming it: the same step would otherwise train on other data.
   */
  dataSettings?: Readonly<Record<string, string | number | boolean>>;
}

export interface TrainerOptions {
  seed: number;
  /**
   * Where metrics.jsonl and checkpoint/ go. Absent: the run writes nothing (records reach onLog only, no
   * checkpoint is saved, a stop throws TrainingInterrupted without one); saveEvery and autoResume need it. A run that does
   * not resume starts metrics.jsonl anew and replaces the checkpoint there at its first save, as transformers' Trainer
   * does (`vwlmm train` refuses such an --out unless --resume or --overwrite-output-dir).
   */
  outDir?: string;
  /** Save a checkpoint every N optimizer steps (0 = only at the end of each stage). */
  saveEvery?: number;
  /** Run `evaluate` every N steps (0 = only at the end of each stage). */
  evalEvery?: number;
  /** An evaluation, run without gradients (noGrad: nothing recorded, LoRA dropout off). */
  evaluate?: (model: VwLmm, where: { stage: string; step: number }) => Record<string, number>;
  /** Called with each log record (also written to metrics.jsonl). */
  onLog?: (record: Record<string, unknown>) => void;
  /**
   * Called as each stage begins at its step 0, with the model it starts from (before the stage's trainable parts
   * and frozen storage are set), on every data-parallel rank; a resume inside a stage does not call it again. The
   * demo saves the model its first LLaVA-file stage starts from here (the `--init` of its reproduce.sh).
   */
  onStageStart?: (model: VwLmm, stage: Stage) => void;
  /** Files saved with every checkpoint (e.g. the tokenizer). */
  checkpointFiles?: Pick<SaveOptions, 'tokenizer' | 'extraFiles'>;
  /**
   * Stop after this many optimizer steps in total (for tests of resume), as an interruption stops: a checkpoint at that
   * step (with outDir, unless saveEvery wrote it already), then run() returns its state instead of throwing
   * TrainingInterrupted. A stop at the run's last step is its end.
   */
  stopAfterSteps?: number;
  /** Write a train record every N steps (default 1). */
  logEvery?: number;
  /**
   * Also report the records' scalars to TensorBoard (transformers' report_to=["tensorboard"]; tags as its
   * TensorBoardCallback's: train/loss, train/learning_rate, train/grad_norm, eval/<metric>, plus train/ce, train/kl,
   * train/tokens_per_second and train/skipped_steps), at their global steps, in an event file of loggingDir. Rank 0
   * writes. Default [] (metrics.jsonl alone).
   */
  reportTo?: readonly 'tensorboard'[];
  /**
   * Where TensorBoard's event files go (transformers' logging_dir). Default `<outDir>/runs`: one folder for the run,
   * not one per start as transformers' default, so that a resume continues the curves. Each start adds an event file
   * whose first event (a SessionLog START, torch's purge_step) tells TensorBoard to drop the earlier files' points from
   * its first step on (those steps are trained again), as metrics.jsonl drops them: TensorBoard's Python loader
   * (`--load_fast=false`) drops them all; its default fast loader replaces a tag's points as the resumed run writes
   * that tag again, so an evaluation's stale point past the checkpoint shows until the run evaluates there.
   */
  loggingDir?: string;
  /**
   * Checked between optimizer steps: when requested, the trainer writes a checkpoint at the step it reached
   * and throws TrainingInterrupted.
   */
  stop?: StopRequest;
  /**
   * runAsync() only: SIGINT / SIGTERM request the stop while it runs (handlers removed at the end). A
   * synchronous run() cannot receive signals (Node runs handlers on the event loop), so it refuses this.
   */
  handleSignals?: boolean;
  /** A step whose loss or global gradient norm is NaN / Inf: 'skip' its update (default) or 'stop' (throw). */
  nonFinite?: 'skip' | 'stop';
  /**
   * Without an explicit resume: continue from `<outDir>/checkpoint` (weights loaded into the model,
   * optimizer state and data position) when there is one. Default false.
   */
  autoResume?: boolean;
  /**
   * Sets model.gradientCheckpointing for the run (every decoder and vision layer recomputed in the backward); the model's
   * own setting is back when run() / runAsync() return or throw.
   */
  gradientCheckpointing?: boolean;
  /**
   * Sets model.residualDtype when the Trainer is made (it stays after the run): the LLM's residual stream under bf16
   * compute, 'float32' (torch's autocast) or 'bfloat16' (a model loaded in bf16, as LLaVA's LoRA recipe: half the memory
   * of the gradient checkpoints).
   */
  residualDtype?: ComputeDtype;
  /**
   * The precision of the products (src/amp.ts): 'bfloat16' runs every forward and backward under
   * autocast('bfloat16') (bf16 GEMM operands, fp32 master weights, AdamW moments, norms, softmax and loss);
   * 'float32' computes everything in fp32. Default: bfloat16 on CUDA, float32 on the CPU (defaultComputeDtype).
   */
  dtype?: ComputeDtype;
  /**
   * How each stage stores the Linear weights it freezes (nn.storeFrozenWeights, at the stage's start; vm_head
   * excepted): 'bfloat16' halves their memory (LoRA's frozen base; a weight a later stage trains comes back as
   * float32, its values rounded to bf16 once), 'float32' keeps them. Trainable weights are always float32
   * masters. Default: the compute dtype (bf16 on CUDA, fp32 on the CPU).
   */
  frozenDtype?: ComputeDtype;
  /**
   * Data-parallel training over this group's ranks (src/distributed; every rank runs the same Trainer): each rank takes
   * its own batchSize samples of every micro-batch (the global batch is worldSize x batchSize x gradAccum),
   * gradients are averaged in buckets that start during the backward, and AdamW's state is sharded over the ranks
   * (ZeRO-1, src/distributed/zero.ts). The clipping norm and the non-finite checks are global; rank 0 alone logs and
   * writes checkpoints (in the single-process layout, so a run resumes on any number of ranks with the same
   * global batch); a stop requested on any rank stops every rank at the same step.
   */
  processGroup?: ProcessGroup;
  /** Data-parallel gradient bucket size (torch DDP's bucket_cap_mb; default 25 MiB). */
  bucketBytes?: number;
  /**
   * Data-parallel: the dtype the updated weights are all-gathered in (ZeroOptions.gatherDtype; default 'float32').
   * 'bfloat16': the float32 masters are sharded as well and every rank trains with bf16-valued weights (half the
   * bytes per step); checkpoints and the model after each stage hold the float32 masters.
   */
  gatherDtype?: 'float32' | 'bfloat16';
  /** Data-parallel: the weights' all-gather overlaps the next forward (ZeroOptions.overlapGather; default true). */
  overlapGather?: boolean;
  /**
   * Replay steps as op programs (src/program.ts, src/train/replay.ts; default true): a stage of model batches
   * (makeBatch / loadBatch: VwLmm.loss), or with its own loss and `prepare`, runs its first step in JavaScript, then
   * records the first two steps of each batch shape (the byte sizes of the step's data) as they run; when the two agree
   * call for call, that shape's later steps replay natively: the same kernels on the same buffers, so the same numbers
   * bit for bit, without JavaScript, autograd or N-API per op (on the CPU demo a stage-0 step 25 -> 18 ms). The
   * gradients then stay allocated through the stage (zeroed in place, torch's zero_grad(set_to_none=False)). Two
   * recordings that differ, a step that cannot be recorded (one that reads a value to the host) or a non-finite step
   * send the stage back to JavaScript; a 'replay' record says when replay starts and why it stops. While it is on,
   * the next step's batch is made before the step's one read, so on CUDA the host prepares it while the device runs
   * the step (makeBatch and prepare stages; loadBatch stages are read ahead by runAsync). Not with a processGroup or
   * gradient accumulation (a stage may reuse one micro-batch's arrays for the next).
   */
  replay?: boolean;
}

/**
 * What readTrainerState reads; stageParameters: the current stage's extraParameters, when it has any; dir: the checkpoint
 * it came from (named in errors). Not the weights: the model must hold the checkpoint's (TrainerState.weightsFingerprint).
 */
type ResumeFrom = { state: TrainerState; optimizer: Map<string, HostTensor>; stageParameters?: Map<string, HostTensor> | null; dir?: string };

const STAGE_PARAMETERS = 'stage_parameters.safetensors';

/** The files a Trainer's checkpoint holds besides its tokenizer's: checkpointFiles.extraFiles may name none of them. */
const CHECKPOINT_OWN_FILES = ['config.json', 'model.safetensors', 'trainer_state.json', 'optimizer.safetensors', STAGE_PARAMETERS];

/**
 * Where a step's stats sit (float32 on the device, read once at the step's end): per micro-batch m its loss, CE and
 * KL, then the squared gradient norm. Data-parallel adds four, all-reduced with the rest: the rank's tokens, a failed
 * micro-batch, a stop request (these three adjacent: one copy), a failed deferred data check (async mode: a kernel's
 * refusal the rank learns of only at its read).
 */
function stepStatsLayout(accum: number, dataParallel: boolean) {
  const norm = 3 * accum;
  return {
    loss: (m: number) => 3 * m, ce: (m: number) => 3 * m + 1, kl: (m: number) => 3 * m + 2, sumSquares: norm,
    tokens: norm + 1, failedMicro: norm + 2, stopRequest: norm + 3, failedCheck: norm + 4,
    size: norm + 1 + (dataParallel ? 4 : 0),
  };
}

/**
 * LLaVA's rule for a batch that does not reach a part the stage trains (a text-only batch, which LLaVA runs through the
 * projector on a zero dummy image; a loss no trainable parameter reaches at all): the part gets a zero gradient, not
 * none, so AdamW updates it (its step count and moments advance, weight decay applies). A replayed step does so by its
 * nature (its gradients are kept between steps and zeroed in place: src/train/replay.ts); a step in JavaScript gets
 * the zeros here, after its backward, so both paths, and a resume whose first step runs in JavaScript, train alike.
 */
function everyGradient(params: readonly Tensor[]): void {
  for (const p of params) if (!p.grad) p.grad = keep(Tensor.zeros(p.shape, { device: p.device, dtype: p.dtype }));
}

/** Errors by which the kernels refuse non-finite activations (the step's loss is then NaN / Inf). */
function isNonFiniteError(e: unknown): e is Error {
  return e instanceof RangeError && /contains a non-finite value|are not finite/.test(e.message);
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
  if (t.lora) {
    const adapters = loraParameters(model);
    if (adapters.size === 0) throw new RangeError('Trainer: trainable.lora is set but the model has no LoRA adapters (applyLora first; on the command line, --lora-r)');
    for (const p of adapters.values()) p.requiresGrad = true;
  }
}

/**
 * The run's precision, recorded per stage (StageSettings): compute dtype, frozen storage, residual stream (bf16 compute
 * only), the weights' all-gather (data parallel only).
 */
type Precision = Pick<StageSettings, 'dtype' | 'frozenDtype' | 'residualDtype' | 'gatherDtype'>;

/** What a checkpoint records of a stage for resume's check (TrainerState.stageSettings). */
function stageSettings(s: Stage, worldSize: number, precision: Precision): StageSettings {
  const opt = (v: number | undefined) => v ?? null;
  return {
    size: s.size, samplesPerStep: s.batchSize * (s.gradAccum ?? 1) * worldSize, batchSize: s.batchSize, groupByModalityLength: s.modalityLengths !== undefined, lr: s.lr, visionTowerLr: opt(s.visionTowerLr),
    projectorLr: opt(s.projectorLr), warmupRatio: opt(s.warmupRatio), weightDecay: opt(s.weightDecay), maxGradNorm: opt(s.maxGradNorm),
    ...precision, data: { ...s.dataSettings },
  };
}

/** The stage settings a resume may change, with a warning (checkResume says why). */
const PRECISION_KEYS: readonly string[] = ['dtype', 'frozenDtype', 'residualDtype', 'gatherDtype'];

/** How resume's refusals name a stage setting (the key itself where absent). */
const SETTING_LABELS: Record<string, string> = {
  samplesPerStep: 'samples per optimizer step (batch size x grad accumulation x ranks)', size: 'samples in its data', batchSize: 'samples per micro-batch on each rank (batch size)',
  groupByModalityLength: 'samples grouped by modality and length (--group-by-modality-length)',
  dtype: 'compute dtype (dtype, --dtype)', frozenDtype: 'frozen weights stored in (frozenDtype, --frozen-dtype)', residualDtype: 'residual stream in (residualDtype, --residual-dtype)',
  gatherDtype: 'updated weights all-gathered in (gatherDtype, --gather-dtype; unset on one rank)',
  // trainOnFile's dataSettings
  template: 'conversation template (--template)', imageAspectRatio: 'image aspect ratio (--image-aspect-ratio)', modelMaxLength: 'model max length (--model-max-length)',
  samples: "samples' digest (sha256 of the prepared samples' token ids, labels and image paths: the data file, or what it was prepared with, changed)",
};

/** How a resume names a stage setting that changed (its refusals and the precision warning begin so). */
function settingChange(stage: string, key: string, was: string, now: string, dir?: string): string {
  return `resume: stage '${stage}' had ${SETTING_LABELS[key] ?? key} ${was} in the checkpoint's run${dir ? ` (${dir})` : ''}, this run has ${now}`;
}

/**
 * The first data setting (Stage.dataSettings) of stage `name` whose value in the checkpoint's run (`st`) differs from
 * `now`'s, as resume's error; none when the checkpoint does not record them (written before they were recorded), nor
 * for a key it does not record. With `partial`, only the keys `now` gives are compared (a caller's early check, before
 * its data are prepared); otherwise a key the checkpoint records that `now` lacks differs too. The Trainer checks them
 * all as it resumes.
 */
export function checkDataSettings(st: TrainerState, name: string, now: Readonly<Record<string, string | number | boolean>>, opts: { dir?: string; partial?: boolean } = {}): void {
  const i = st.stages ? st.stages.indexOf(name) : -1;
  const was = i >= 0 ? st.stageSettings?.[i]?.data : undefined;
  if (was === undefined || was === null || typeof was !== 'object') return;
  // a key the checkpoint does not record (written before it was) is not checked
  const k = Object.keys(was).find((key) => (!opts.partial || key in now) && was[key] !== (now[key] ?? null));
  if (k === undefined) return;
  const show = (v: unknown) => (v === undefined || v === null ? 'unset' : typeof v === 'string' ? `'${v}'` : String(v));
  throw new Error(`${settingChange(name, k, show(was[k]), show(now[k]), opts.dir)} (the run would not continue exactly: resume with the same data and settings, or start a new run from the checkpoint's weights)`);
}

/**
 * What a resume needs of the run's plan: the checkpoint's seed, stage names and step counts (TrainerState), the same as
 * this run's, else an error naming the first difference. `dir` names the checkpoint; `hint` says how to resume
 * (default: the Trainer's). The Trainer checks this and more as it resumes; the demo, before it writes its data.
 */
export function checkResumePlan(st: TrainerState, seed: number, stages: readonly { name: string; steps: number }[], dir?: string, hint?: string): void {
  const names = stages.map((s) => s.name), steps = stages.map((s) => s.steps);
  const it = dir ? `the checkpoint ${dir}` : 'the checkpoint', then = hint ? `; ${hint}` : '';
  if (st.seed !== seed) throw new Error(`resume: ${it} was trained with seed ${st.seed}, not ${seed}${then}`);
  if (st.stages && st.stages.join('\u0000') !== names.join('\u0000'))
    throw new Error(`resume: ${it} was trained with stages [${st.stages.join(', ')}], this run has [${names.join(', ')}]${then}`);
  if (st.stageSteps) {
    const k = Math.max(0, st.stageSteps.findIndex((n, i) => n !== steps[i]));
    if (st.stageSteps.length !== steps.length || st.stageSteps[k] !== steps[k])
      throw new Error(`resume: stage '${names[k]}' had ${st.stageSteps[k]} steps in the checkpoint's run${dir ? ` (${dir})` : ''}, this run has ${steps[k]} (the schedule and data order would differ${hint ? `); ${hint}` : ': use the same steps / epochs / batch size)'}`);
  }
}

/** Optimizer steps of a stage; `worldSize` data-parallel ranks take worldSize x batchSize samples per micro-batch. */
export function stageSteps(s: Stage, worldSize = 1): number {
  if (s.steps !== undefined) return s.steps;
  const perEpoch = Math.ceil(s.size / (s.batchSize * (s.gradAccum ?? 1) * worldSize));
  return Math.max(1, Math.round((s.epochs ?? 1) * perEpoch));
}

/**
 * Sample indices of micro-batch `micro` of optimizer step `step` on data-parallel rank `rank` of `worldSize`:
 * epochs of seeded permutations (a function of seed, the stage's name and epoch only), each micro-batch the next
 * worldSize x batchSize positions and rank r the r-th batchSize of them. So the ranks' shards are disjoint and
 * cover the epoch, and one rank at batch worldSize x B sees exactly the samples of worldSize ranks at batch B.
 * Keyed by name, not by position in the run: a stage run on its own (`vwlmm train --stage NAME`) draws the
 * order it had inside a longer run.
 */
export function batchIndices(seed: number, s: Stage, step: number, micro: number, rank = 0, worldSize = 1): number[] {
  const where = 'batchIndices';
  if (!isSeed(seed)) throw typeError(where, 'seed', `an integer in [0, ${MAX_SEED}]`, seed);
  if (s === null || typeof s !== 'object' || typeof s.name !== 'string') throw typeError(where, 's', 'a Stage (its name, size, batchSize and gradAccum)', s);
  if (!(Number.isSafeInteger(s.size) && s.size > 0)) throw rangeError(where, `stage '${s.name}' has no samples to draw from (size ${s.size})`);
  if (!(Number.isSafeInteger(s.batchSize) && s.batchSize > 0)) throw typeError(where, 's.batchSize', 'a positive integer', s.batchSize);
  const accum = s.gradAccum ?? 1;
  const index = (name: string, v: unknown, below: number) => {
    if (!(Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) < below)) throw typeError(where, name, `an integer in [0, ${below})`, v);
  };
  if (!(Number.isSafeInteger(worldSize) && worldSize >= 1)) throw typeError(where, 'worldSize', 'a positive integer', worldSize);
  index('step', step, Number.MAX_SAFE_INTEGER);
  index('micro', micro, accum);
  index('rank', rank, worldSize);
  const perMicro = s.batchSize * worldSize;
  const start = step * perMicro * (s.gradAccum ?? 1) + micro * perMicro + rank * s.batchSize;
  const out: number[] = [];
  let cachedEpoch = -1, order: number[] = [];
  for (let k = 0; k < s.batchSize; k++) {
    const flat = start + k, epoch = Math.floor(flat / s.size), pos = flat % s.size;
    if (epoch !== cachedEpoch) {
      order = epochOrder(seed, s, epoch, worldSize);
      cachedEpoch = epoch;
    }
    out.push(order[pos]);
  }
  return out;
}

/** A rank's SIGTERM in the data-parallel stop slot (a SIGINT counts 1): ranks' sums stay exact in float32 below 2^8 ranks. */
const STOP_SIGTERM = 65536;

/** The sample order's name, saved in checkpoints (TrainerState.sampleOrder): seeded permutations keyed by the stage's name. */
const SAMPLE_ORDER = 'by-stage-name';
/** What the optimizer entries' indices count, saved in checkpoints (TrainerState.optimizerIndex): the stage's parameters. */
const OPTIMIZER_INDEX = 'parameters';

// Keyed by the lengths array's identity too: a stage object built again for the same data draws its order again.
const orderCache = new Map<string, { lengths: ArrayLike<number> | undefined; order: number[] }>();
function epochOrder(seed: number, s: Stage, epoch: number, worldSize: number): number[] {
  const n = s.size, lengths = s.modalityLengths, chunks = worldSize * (s.gradAccum ?? 1);
  const key = JSON.stringify([seed, s.name, epoch, n, lengths ? [s.batchSize, chunks] : null]);
  const hit = orderCache.get(key);
  if (hit && hit.lengths === lengths) return hit.order;
  const g = new Generator(seed).fork(`stage ${s.name}`).fork(`epoch${epoch}`);
  const randperm = (k: number) => g.shuffle(Array.from({ length: k }, (_, i) => i));
  const order = lengths ? modalityLengthGroupedIndices(lengths, s.batchSize, chunks, randperm) : randperm(n);
  if (orderCache.size > 8) orderCache.clear();
  orderCache.set(key, { lengths, order });
  return order;
}

/** A stage's loss and extra parameters, checked before any stage runs (not hours into the run). */
const STAGE_KEYS = {
  name: true, size: true, makeBatch: true, loadBatch: true, loss: true, prepare: true, extraParameters: true, steps: true, epochs: true,
  modalityLengths: true, batchSize: true, gradAccum: true, lr: true, visionTowerLr: true, projectorLr: true, warmupRatio: true, weightDecay: true, maxGradNorm: true,
  trainable: true, dataSettings: true,
} satisfies Record<keyof Stage, true>;
const TRAINABLE_KEYS = { visionTower: true, projector: true, llm: true, vmHead: true, lora: true } satisfies Record<keyof Trainable, true>;
const TRAINER_OPTION_KEYS = {
  seed: true, outDir: true, saveEvery: true, evalEvery: true, evaluate: true, onLog: true, onStageStart: true, checkpointFiles: true,
  stopAfterSteps: true, logEvery: true, reportTo: true, loggingDir: true, stop: true, handleSignals: true, nonFinite: true, autoResume: true, gradientCheckpointing: true,
  residualDtype: true, dtype: true, frozenDtype: true, processGroup: true, bucketBytes: true, gatherDtype: true, overlapGather: true, replay: true,
} satisfies Record<keyof TrainerOptions, true>;

const CHECKPOINT_FILES_KEYS = { tokenizer: true, extraFiles: true } satisfies Record<keyof NonNullable<TrainerOptions['checkpointFiles']>, true>;

/** Seeds are 32-bit: 2^32 would repeat seed 0's run (the generators take the seed modulo 2^32). */
const MAX_SEED = 2 ** 32 - 1;
const isSeed = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= MAX_SEED;

/** TrainerOptions' values, each named with what it takes (a negative saveEvery would save every step, a seed of 0.5 fail at resume). */
function checkOptions(opts: TrainerOptions): void {
  const o = opts as unknown as Record<string, unknown>;
  // the data order and LoRA dropout derive from the seed, and checkpoints record it as an integer
  if (!isSeed(o.seed)) throw typeError('Trainer', 'seed', `an integer in [0, ${MAX_SEED}] (2^32 would repeat seed 0's run)`, o.seed);
  const integer = (key: string, min: number, what: string) => {
    const v = o[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= min)) throw typeError('Trainer', key, `an integer >= ${min} (${what})`, v);
  };
  integer('saveEvery', 0, '0: only at the end of each stage');
  integer('evalEvery', 0, '0: only at the end of each stage');
  integer('logEvery', 1, 'a train record every N steps');
  integer('stopAfterSteps', 0, 'optimizer steps in total');
  const oneOf = (key: string, values: readonly string[]) => {
    if (o[key] !== undefined && !values.includes(o[key] as string)) throw typeError('Trainer', key, values.map((v) => `'${v}'`).join(' or '), o[key]);
  };
  oneOf('nonFinite', ['skip', 'stop']);
  oneOf('gatherDtype', ['float32', 'bfloat16']);
  for (const key of ['handleSignals', 'autoResume', 'gradientCheckpointing', 'overlapGather', 'replay'])
    if (o[key] !== undefined && typeof o[key] !== 'boolean') throw typeError('Trainer', key, 'a boolean', o[key]);
  for (const key of ['evaluate', 'onLog', 'onStageStart'])
    if (o[key] !== undefined && typeof o[key] !== 'function') throw typeError('Trainer', key, 'a function', o[key]);
  if (o.outDir !== undefined && !(typeof o.outDir === 'string' && o.outDir !== '')) throw typeError('Trainer', 'outDir', 'a directory path (a non-empty string)', o.outDir);
  if (o.loggingDir !== undefined && !(typeof o.loggingDir === 'string' && o.loggingDir !== '')) throw typeError('Trainer', 'loggingDir', 'a directory path (a non-empty string)', o.loggingDir);
  if (o.reportTo !== undefined) {
    if (!Array.isArray(o.reportTo)) throw typeError('Trainer', 'reportTo', "an array of integrations (['tensorboard'] or [])", o.reportTo);
    // wandb, mlflow, comet...: services of their own, which this project does not talk to; their users read metrics.jsonl
    for (const r of o.reportTo) if (r !== 'tensorboard') throw typeError('Trainer', 'an entry of reportTo', "'tensorboard' (the one integration there is; metrics.jsonl is always written)", r);
    if (o.reportTo.includes('tensorboard') && o.outDir === undefined && o.loggingDir === undefined) throw typeError('Trainer', 'loggingDir', "a directory for reportTo ['tensorboard'] (or an outDir: its runs/ folder)", o.loggingDir);
  }
  if (o.stop !== undefined && typeof (o.stop as StopRequest | null)?.requested !== 'function') throw typeError('Trainer', 'stop', 'a StopRequest', o.stop);
  if (o.bucketBytes !== undefined && !(typeof o.bucketBytes === 'number' && Number.isFinite(o.bucketBytes) && o.bucketBytes > 0)) throw typeError('Trainer', 'bucketBytes', 'a number of bytes > 0', o.bucketBytes);
  if (o.checkpointFiles !== undefined) {
    if (o.checkpointFiles === null || typeof o.checkpointFiles !== 'object') throw typeError('Trainer', 'checkpointFiles', '{ tokenizer?, extraFiles? }', o.checkpointFiles);
    checkKeys('Trainer', 'key of checkpointFiles', o.checkpointFiles, CHECKPOINT_FILES_KEYS);
    const { extraFiles: extra, tokenizer } = o.checkpointFiles as { extraFiles?: unknown; tokenizer?: unknown };
    if (extra !== undefined && (extra === null || typeof extra !== 'object' || Array.isArray(extra))) throw typeError('Trainer', 'checkpointFiles.extraFiles', 'an object of file contents by file name', extra);
    // now, not at the first save, steps later (saveCheckpoint refuses them too); with a tokenizer, its files are the
    // checkpoint's too (an extra tokenizer_config.json replaced the tokenizer's in every checkpoint)
    const own = [...CHECKPOINT_OWN_FILES, ...(tokenizer !== undefined ? TOKENIZER_FILE_NAMES : [])];
    for (const name of Object.keys(extra ?? {})) {
      if (own.includes(name) || !isPlainFileName(name))
        throw typeError('Trainer', 'a name in checkpointFiles.extraFiles', `a plain file name other than the checkpoint's own (${own.join(', ')})`, name);
    }
  }
}

function checkStage(model: VwLmm, s: Stage): void {
  if (s === null || typeof s !== 'object') throw typeError('Trainer', 'a stage', 'a Stage object', s);
  // the name keys the stage's sample order (batchIndices) and names it in logs and checkpoints
  if (typeof s.name !== 'string' || s.name === '') throw typeError('Trainer', 'a stage\'s name', 'a non-empty string (it keys the stage\'s sample order)', s.name);
  const where = `Trainer: stage '${s.name}'`;
  checkKeys(where, 'key', s, STAGE_KEYS);
  if (s.trainable === null || typeof s.trainable !== 'object') throw typeError(where, 'trainable', '{ visionTower?, projector?, llm?, vmHead?, lora? }', s.trainable);
  checkKeys(where, 'part of trainable', s.trainable, TRAINABLE_KEYS);
  if (!Object.values(s.trainable).some(Boolean) && !s.extraParameters?.length)
    throw rangeError(where, 'trains nothing: trainable sets no part (visionTower, projector, llm, vmHead, lora) and there are no extraParameters');
  const integer = (key: string, v: unknown, min: number) => {
    if (!(Number.isInteger(v) && (v as number) >= min)) throw rangeError(where, `${key} must be an integer >= ${min}, got ${v}`);
  };
  // finite in float32 too: the optimizer's kernels take these as float32
  const number = (key: string, v: unknown, ok: (x: number) => boolean, what: string) => {
    if (!(typeof v === 'number' && Number.isFinite(Math.fround(v)) && ok(v))) throw rangeError(where, `${key} must be ${what} (in float32: at most 3.4e38), got ${v}`);
  };
  integer('size', s.size, 0);
  integer('batchSize', s.batchSize, 1);
  // a stage of no samples runs no step (epochs make none of it); steps of one would draw indices from nothing
  if (s.size === 0 && s.steps !== undefined && s.steps > 0) throw rangeError(where, `has no samples (size 0) but ${s.steps} steps to draw batches for`);
  if (s.modalityLengths !== undefined) {
    const l = s.modalityLengths;
    if (l === null || typeof l !== 'object' || typeof l.length !== 'number') throw typeError(where, 'modalityLengths', 'an array of numbers (one per sample)', l);
    if (l.length !== s.size) throw rangeError(where, `modalityLengths holds ${l.length} lengths for ${s.size} samples (size)`);
    for (let i = 0; i < l.length; i++)
      if (!(typeof l[i] === 'number' && Number.isFinite(l[i]) && l[i] !== 0)) throw rangeError(where, `modalityLengths[${i}] must be a finite non-zero number (> 0: with an image, < 0: text only), got ${l[i]}`);
  }
  if (s.gradAccum !== undefined) integer('gradAccum', s.gradAccum, 1);
  if (s.steps !== undefined) integer('steps', s.steps, 0);
  else if (s.epochs !== undefined) number('epochs', s.epochs, (x) => x > 0, 'a number > 0 (or give steps)');
  number('lr', s.lr, (x) => x >= 0, 'a number >= 0');
  if (s.warmupRatio !== undefined) number('warmupRatio', s.warmupRatio, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  if (s.weightDecay !== undefined) number('weightDecay', s.weightDecay, (x) => x >= 0, 'a number >= 0');
  if (s.maxGradNorm !== undefined) number('maxGradNorm', s.maxGradNorm, (x) => x >= 0, 'a number >= 0 (0: no clipping)');
  if (s.loss !== undefined) {
    if (typeof s.loss !== 'function') throw typeError(where, 'loss', 'a function (model, indices) => Tensor', s.loss);
    if (s.makeBatch !== undefined || s.loadBatch !== undefined) throw rangeError(where, `has both ${s.makeBatch !== undefined ? 'makeBatch' : 'loadBatch'} and loss: a stage with its own loss builds its inputs from the sample indices, so it would never run`);
  } else if (s.loadBatch !== undefined) {
    if (typeof s.loadBatch !== 'function') throw typeError(where, 'loadBatch', 'an async function (indices) => Promise<ModelBatch>', s.loadBatch);
    if (s.makeBatch !== undefined) throw rangeError(where, 'has both makeBatch and loadBatch: give one of them');
  } else if (typeof s.makeBatch !== 'function') {
    throw typeError(where, 'makeBatch', 'a function (indices) => ModelBatch (or loadBatch, or a loss of its own)', s.makeBatch);
  }
  if (s.prepare !== undefined) {
    if (typeof s.prepare !== 'function') throw typeError(where, 'prepare', 'a function (indices) => typed arrays', s.prepare);
    if (s.loss === undefined) throw rangeError(where, 'prepare needs a loss of its own (its data goes to that loss)');
  }
  if (s.dataSettings !== undefined) {
    const d = s.dataSettings as unknown;
    if (d === null || typeof d !== 'object' || Array.isArray(d)) throw typeError(where, 'dataSettings', 'an object of strings, numbers or booleans by name', d);
    for (const [k, v] of Object.entries(d))
      if (!(typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) throw typeError(where, `dataSettings.${k}`, 'a string, a finite number or a boolean (checkpoints record it as JSON)', v);
  }
  if (s.extraParameters === undefined) return;
  if (!Array.isArray(s.extraParameters)) throw typeError(where, 'extraParameters', 'an array of tensors', s.extraParameters);
  if (s.extraParameters.length && s.loss === undefined) throw rangeError(where, 'extraParameters need a loss of its own: VwLmm.loss never reads them, so they would get no gradient');
  const own = new Set(model.parameters());
  s.extraParameters.forEach((p, k) => {
    if (!(p instanceof Tensor)) throw typeError(where, `extraParameters[${k}]`, 'a Tensor', p);
    if (!p.requiresGrad) throw rangeError(where, `extraParameters[${k}] (${describe(p)}) does not require grad: set requiresGrad = true (the backward gives gradients only to tensors that do)`);
    if (own.has(p)) throw rangeError(where, `extraParameters[${k}] (${describe(p)}) is a parameter of the model: make it trainable through the stage's \`trainable\` instead`);
  });
}

/** The key of one micro-batch's loaded batch: stage, optimizer step, micro-batch. */
function batchKey(stage: number, step: number, m: number): string {
  return `${stage}/${step}/${m}`;
}

/** Stage.prepare's data for a micro-batch, checked: an array of typed arrays. */
function preparedData(s: Stage, idx: number[]): ArrayBufferView[] {
  const data = s.prepare!(idx) as unknown;
  if (!Array.isArray(data) || !data.every((a) => ArrayBuffer.isView(a) && !(a instanceof DataView)))
    throw typeError(`Trainer: stage '${s.name}'`, 'the value of prepare(indices)', 'an array of typed arrays (the data its loss uploads)', data);
  return data;
}

/** The stage's loss of one micro-batch: its own (a one-element tensor), else VwLmm.loss of its batch. */
function stageLoss(model: VwLmm, s: Stage, idx: number[], batch: ModelBatch | null, data: ArrayBufferView[] | undefined): { loss: Tensor; ceLoss?: Tensor; klLoss?: Tensor | null } {
  if (batch) return model.loss(batch);
  const loss = s.loss!(model, idx, data);
  if (!(loss instanceof Tensor) || loss.size !== 1) throw typeError(`Trainer: stage '${s.name}'`, 'the value of loss(model, indices)', 'a one-element Tensor (the scalar loss)', loss);
  return { loss };
}

export class Trainer {
  private readonly metricsFile: string | null;
  /** Where rank 0 writes TensorBoard's event files (reportTo), else null; the writer of the run under way. */
  private readonly tensorboardDir: string | null;
  private tensorboard: TensorBoardWriter | null = null;
  /** Micro-batches loaded ahead by runAsync (stages with loadBatch), by position: see batchKey. */
  private readonly loaded = new Map<string, Promise<ModelBatch>>();
  private readonly ready = new Map<string, ModelBatch>();
  /** The current stage's trainable parameters, in the order checkpoints index their optimizer entries. */
  private stageParams: Tensor[] = [];
  /** The compute dtype of every forward and backward (TrainerOptions.dtype). */
  readonly dtype: ComputeDtype;
  /** How frozen Linear weights are stored (TrainerOptions.frozenDtype). */
  readonly frozenDtype: ComputeDtype;
  /** What each checkpoint holds besides the model and the trainer's state: checkpointFiles, a tokenizer path read in. */
  private readonly checkpointFiles: TrainerOptions['checkpointFiles'];

  constructor(readonly model: VwLmm, readonly stages: Stage[], readonly opts: TrainerOptions) {
    if (!(model instanceof VwLmm)) throw typeError('Trainer', 'model', 'a VwLmm', model);
    if (opts === null || typeof opts !== 'object') throw typeError('Trainer', 'options', 'an object with seed', opts);
    checkKeys('Trainer', 'option', opts, TRAINER_OPTION_KEYS);
    checkOptions(opts);
    if (!Array.isArray(stages)) throw typeError('Trainer', 'stages', 'an array of stages', stages);
    if (opts.outDir === undefined) {
      for (const k of ['saveEvery', 'autoResume'] as const) {
        if (opts[k]) throw typeError('Trainer', 'outDir', `a directory (${k} writes / reads checkpoints there)`, opts.outDir);
      }
    }
    for (const s of stages) checkStage(model, s);
    // a tokenizer path is read now: it may be in a checkpoint folder this run's saves replace (tokenizerFiles says when)
    const files = opts.checkpointFiles;
    if (files && typeof files.tokenizer === 'string') {
      let tokenizer: Record<string, Buffer>;
      try {
        tokenizer = tokenizerFiles(files.tokenizer);
      } catch (e) {
        throw new Error(`Trainer: checkpointFiles.tokenizer ${files.tokenizer} cannot be read (${(e as Error).message})`, { cause: e });
      }
      this.checkpointFiles = { extraFiles: { ...tokenizer, ...files.extraFiles } };
    } else this.checkpointFiles = files;
    // two stages of one name would draw the same sample order and be told apart by nothing in logs or checkpoints
    stages.forEach((s, i) => {
      const j = stages.findIndex((x) => x.name === s.name);
      if (j !== i) throw rangeError('Trainer', `stages ${j} and ${i} are both named '${s.name}': stage names must differ (a name keys its stage's sample order, logs and checkpoints)`);
    });
    if (opts.processGroup !== undefined) {
      const g = opts.processGroup as unknown;
      if (g === null || typeof g !== 'object' || typeof (g as ProcessGroup).reduceScatterAsync !== 'function') throw typeError('Trainer', 'processGroup', 'a ProcessGroup (initProcessGroup)', g);
      if (opts.processGroup.device !== model.device) throw typeError('Trainer', 'processGroup', `a group over the model's device (${model.device}; mpi: cpu, nccl: cuda)`, `a ${opts.processGroup.backend} group of ${opts.processGroup.device} tensors`);
      if (opts.processGroup.isDestroyed) throw new TypeError('Trainer: the process group has been destroyed');
    }
    // a step's samples come from the stream of epochs (batchIndices): one that needs more than the stage holds would
    // draw a sample several times into the same step (transformers would make one short batch of them)
    for (const s of stages) {
      const world = opts.processGroup?.worldSize ?? 1, per = s.batchSize * (s.gradAccum ?? 1) * world;
      if (s.size > 0 && per > s.size)
        throw rangeError(`Trainer: stage '${s.name}'`, `one optimizer step takes ${per} samples (batchSize ${s.batchSize} x gradAccum ${s.gradAccum ?? 1}${world > 1 ? ` x ${world} ranks` : ''}) but the stage has ${s.size}: some would appear twice in one step (lower the batch size)`);
    }
    this.dtype = opts.dtype === undefined ? defaultComputeDtype(model.device) : parseComputeDtype('Trainer', opts.dtype);
    if (opts.residualDtype !== undefined) {
      const residual = parseComputeDtype('Trainer residualDtype', opts.residualDtype);
      // in float32 compute the stream is float32 whatever is asked: say so rather than train otherwise than asked
      if (residual === 'bfloat16' && this.dtype !== 'bfloat16') throw typeError('Trainer', 'residualDtype', "'float32' with float32 compute (a bf16 stream needs dtype 'bfloat16')", residual);
      model.residualDtype = residual;
    }
    this.frozenDtype = opts.frozenDtype === undefined ? this.dtype : parseComputeDtype('Trainer frozenDtype', opts.frozenDtype);
    this.group = opts.processGroup ?? null;
    this.world = this.group?.worldSize ?? 1;
    this.rank = this.group?.rank ?? 0;
    // rank 0 alone writes: the metrics log and the checkpoints
    if (opts.outDir !== undefined && this.rank === 0) fs.mkdirSync(opts.outDir, { recursive: true });
    this.metricsFile = opts.outDir === undefined || this.rank !== 0 ? null : path.join(opts.outDir, 'metrics.jsonl');
    this.tensorboardDir = opts.reportTo?.includes('tensorboard') && this.rank === 0 ? opts.loggingDir ?? path.join(opts.outDir!, 'runs') : null;
  }

  /** The data-parallel group (TrainerOptions.processGroup), its size and this process's rank (1 and 0 without). */
  readonly group: ProcessGroup | null;
  readonly world: number;
  readonly rank: number;

  private log(record: Record<string, unknown>): void {
    if (this.rank !== 0) return;
    if (this.metricsFile) {
      const line = JSON.stringify(record) + '\n';
      try {
        fs.appendFileSync(this.metricsFile, line);
        if (this.metricsBytes !== null) this.metricsBytes += Buffer.byteLength(line);
      } catch (e) {
        // what part of the line was written is cut off again: the log keeps ending with whole records
        if (this.metricsBytes !== null) {
          try {
            fs.truncateSync(this.metricsFile, this.metricsBytes);
          } catch {
            /* the error below says what failed; a resume drops a cut last line */
          }
        }
        throw this.writeError(`appending the ${String(record.type)} record${record.globalStep !== undefined ? ` of global step ${String(record.globalStep)}` : ''} to`, this.metricsFile, e);
      }
    }
    if (this.tensorboard) {
      try {
        for (const x of tensorboardScalars(record)) this.tensorboard.addScalar(x.tag, x.value, x.step);
      } catch (e) {
        throw this.writeError(`writing the ${String(record.type)} record${record.globalStep !== undefined ? ` of global step ${String(record.globalStep)}` : ''} to`, this.tensorboard.file, e);
      }
    }
    this.opts.onLog?.(record);
  }

  /** The run's end (returned or thrown): its event file is complete. */
  private closeTensorBoard(): void {
    const tb = this.tensorboard;
    this.tensorboard = null;
    tb?.close();
  }

  /**
   * A resumed run's metrics log, kept up to the checkpoint's global step (what came after it is written again; summary
   * records go) and checked first: a last line a kill cut (no newline, not a record) is dropped; a line before it that is
   * not a JSON record is refused, naming it; so is a log that lacks a train (or nonfinite) record of a step up to the
   * checkpoint that the run logs (every logEvery-th, and each stage's last): shortened, or not this run's. Moving the log
   * away is the way to continue without it: a missing log starts anew (with a warning on stderr when the checkpoint is
   * this outDir's own: the run's log was deleted), with a log_start record at its step, also written when this run logs
   * at another logEvery than the checkpoint's: a later resume expects records from the latest log_start on, at its
   * logEvery. Replaced atomically, so a kill during the rewrite loses nothing.
   * Returns the log's bytes.
   */
  private resumeMetrics(file: string, state: TrainerState, checkpoint: string | undefined): number {
    const upTo = `the checkpoint's global step ${state.globalStep}`;
    const away = `move it away to start a new log at ${upTo}`;
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw this.writeError('reading', file, e);
      const own = checkpoint !== undefined && this.opts.outDir !== undefined && path.resolve(path.dirname(checkpoint)) === path.resolve(this.opts.outDir);
      if (own && state.globalStep > 0) process.stderr.write(`vwlmm: warning: ${file} does not exist: the resumed run starts a new log at ${upTo} (the records before it are not in it)\n`);
      // the log starts here: later resumes expect records from this step on (a log_start record says so)
      const start = state.globalStep > 0 ? this.logStart(state.globalStep) : '';
      try {
        fs.writeFileSync(file, start);
      } catch (e2) {
        throw this.writeError('starting', file, e2);
      }
      return Buffer.byteLength(start);
    }
    const lines = text.split('\n');
    const last = lines.pop()!; // '' when the log ends with a newline, as the trainer writes it
    const parse = (l: string): Record<string, unknown> | null => {
      try {
        const r = JSON.parse(l) as unknown;
        return r !== null && typeof r === 'object' && !Array.isArray(r) ? (r as Record<string, unknown>) : null;
      } catch {
        return null;
      }
    };
    const keep: string[] = [];
    const logged = new Set<string>();
    // the records expected: from the log's latest start (a log_start record: begun anew, or another logEvery from there
    // on) up to the checkpoint, at the steps its logEvery logs (the checkpoint's, else this run's)
    let startAt = 0, every = state.logEvery ?? this.opts.logEvery ?? 1;
    const take = (l: string, r: Record<string, unknown>) => {
      if (r.type === 'summary' || !((r.globalStep as number) <= state.globalStep)) return;
      keep.push(l);
      if (r.type === 'train' || r.type === 'nonfinite') logged.add(`${String(r.stage)}\u0000${String(r.step)}`);
      if (r.type === 'log_start' && (r.globalStep as number) >= startAt) {
        startAt = r.globalStep as number;
        if (typeof r.logEvery === 'number' && r.logEvery >= 1) every = r.logEvery;
      }
    };
    lines.forEach((l, i) => {
      if (l.trim() === '') return;
      const r = parse(l);
      if (!r) throw new Error(`resume: ${file}:${i + 1}: expected a JSON record on every line but the last (a kill cuts only the last), received '${l.length > 80 ? `${l.slice(0, 80)}...` : l}': the log is damaged; repair or remove that line, or ${away}`);
      take(l, r);
    });
    // a last line without its newline: a record a kill cut short is dropped, a whole one kept
    const r = last.trim() === '' ? null : parse(last);
    if (r) take(last, r);
    let missing: { stage: string; step: number } | null = null, count = 0, expected = 0, offset = 0;
    for (let i = 0; i <= state.stage && i < this.stages.length; offset += stageSteps(this.stages[i], this.world), i++) {
      const s = this.stages[i], total = stageSteps(s, this.world), done = i < state.stage ? total : Math.min(state.step, total);
      for (let k = 1; k <= done; k++) {
        if (offset + k <= startAt || (k % every !== 0 && k !== total)) continue;
        expected++;
        if (logged.has(`${s.name}\u0000${k}`)) continue;
        count++;
        missing ??= { stage: s.name, step: k };
      }
    }
    if (missing)
      throw new Error(`resume: ${file}: expected the train record of every step up to ${upTo}${every > 1 ? ` that the run logs (every ${every} steps and each stage's last)` : ''}, ${expected} records, but it lacks ${count}, the first of stage '${missing.stage}' step ${missing.step}: the log was shortened, or is another run's; restore it, or ${away}`);
    // this run logs at another interval from here: said in the log, for the next resume's check
    if ((this.opts.logEvery ?? 1) !== every) keep.push(this.logStart(state.globalStep).trimEnd());
    const out = keep.map((l) => l + '\n').join('');
    try {
      writeFileAtomic(file, out);
    } catch (e) {
      throw this.writeError('rewriting', file, e);
    }
    return Buffer.byteLength(out);
  }

  /** metrics.jsonl's log_start record: the train records from globalStep on are this run's, every logEvery steps. */
  private logStart(globalStep: number): string {
    return JSON.stringify({ type: 'log_start', globalStep, logEvery: this.opts.logEvery ?? 1, time: new Date().toISOString() }) + '\n';
  }

  /** The bytes of metrics.jsonl as this run wrote them (whole records), once it started the log; null before. */
  private metricsBytes: number | null = null;
  /** The global step whose checkpoint is on disk (-1: none yet), and where (a resume's may be elsewhere), for resume advice in errors. */
  private savedAt = -1;
  private savedDir: string | null = null;

  /**
   * A failure to write `file` during training as an error naming it, what was being done, the system's reason (its code
   * kept), and where the run can be resumed from: the last checkpoint on disk, or none.
   */
  private writeError(what: string, file: string, e: unknown): Error {
    // the system's own error (ENOSPC, EFBIG, EISDIR, ...) where a wrapper (fileError, SafetensorsError) carries it: the
    // file is named here
    let sys = e as NodeJS.ErrnoException | undefined;
    while (sys && !sys.syscall && sys.cause) sys = sys.cause as NodeJS.ErrnoException;
    const why = sys?.syscall ? (sys.code === 'EISDIR' ? 'EISDIR: it is a directory, not a file' : sys.message) : (e as Error)?.message ?? String(e);
    const resume = this.savedAt > 0
      ? `the last checkpoint, ${this.savedDir ?? this.checkpointDir}, holds global step ${this.savedAt}: once the cause is fixed (a full disk? a file-size limit?), resume from it (vwlmm train with --resume; the API: autoResume, or run(readTrainerState(dir)))`
      : 'no checkpoint of this run has been written yet: once the cause is fixed, start the run again';
    const out = new Error(`Trainer: ${what} ${file} failed: ${why}; ${resume}`, { cause: e });
    if (sys?.code !== undefined) (out as NodeJS.ErrnoException).code = sys.code;
    return out;
  }

  /**
   * TrainerOptions.gradientCheckpointing while a run lasts: returns the function that puts the model's own setting back
   * (a model trained with gradient checkpointing is not left recomputing its evaluations' layers).
   */
  private applyModelSettings(): () => void {
    const was = this.model.gradientCheckpointing;
    if (this.opts.gradientCheckpointing !== undefined) this.model.gradientCheckpointing = this.opts.gradientCheckpointing;
    return () => {
      this.model.gradientCheckpointing = was;
    };
  }

  /**
   * Runs every stage from `resume` (or from the start) to the end; returns the state the last checkpoint records (the
   * position of the last optimizer step: stage index and the steps done in that stage, so at the end the last stage
   * and its step count). `resume` is readTrainerState's: the position and optimizer state, not the weights, so the
   * model must hold the checkpoint's (loadCheckpoint(dir).model; a model with other weights is refused) or use
   * autoResume. Prefer runAsync() for long runs: native buffers' finalizers run on event-loop turns, which a
   * synchronous run never gives, so without replay (gradient accumulation, a processGroup) its memory grows step by step.
   */
  run(resume?: ResumeFrom): TrainerState {
    if (this.opts.handleSignals) throw new TypeError('Trainer: handleSignals needs runAsync(): a synchronous run() never lets Node deliver a signal (pass `stop` and request it from elsewhere instead)');
    this.group?.barrier(); // runAsync's, so that ranks may mix the two
    const restore = this.applyModelSettings();
    try {
      const it = this.loop(resume, this.opts.stop ?? null);
      for (;;) {
        const r = it.next();
        if (r.done) return r.value;
      }
    } finally {
      restore();
      this.closeTensorBoard();
    }
  }

  /**
   * run(), yielding to the event loop after every optimizer step, so signal handlers and timers run during
   * training; with `handleSignals`, SIGINT / SIGTERM stop it cleanly (checkpoint, then TrainingInterrupted).
   */
  async runAsync(resume?: ResumeFrom): Promise<TrainerState> {
    // Every rank at the start of training before the stop handlers go in, waited with the event loop running: a Ctrl-C
    // to the ranks while some still prepare ends each at once (the launcher's signal reaches all). Without it a rank
    // that prepared first stood in the stage's first collective, deaf to the signal, until its launcher killed it.
    await this.group?.barrierAsync();
    const stop = this.opts.stop ?? (this.opts.handleSignals ? new StopRequest() : null);
    const remove = this.opts.handleSignals && stop ? installStopHandlers(stop) : null;
    const restore = this.applyModelSettings();
    try {
      const it = this.loop(resume, stop);
      for (;;) {
        const r = it.next();
        if (r.done) return r.value;
        // r.value: the step the loop runs next. Its batches must be loaded; the one after it starts loading now,
        // so that it overlaps that step's computation.
        if (r.value) {
          await this.awaitBatches(r.value);
          const after = this.following(r.value);
          if (after) this.startLoading(after);
        }
        await new Promise<void>((res) => setImmediate(res));
      }
    } finally {
      restore();
      remove?.();
      this.closeTensorBoard();
      this.loaded.clear();
      this.ready.clear();
    }
  }

  /** The optimizer step after `pos` (the next stage's first when pos is a stage's last), or null at the end. */
  private following(pos: { stage: number; step: number }): { stage: number; step: number } | null {
    if (pos.step + 1 < stageSteps(this.stages[pos.stage], this.world)) return { stage: pos.stage, step: pos.step + 1 };
    return pos.stage + 1 < this.stages.length ? { stage: pos.stage + 1, step: 0 } : null;
  }

  private startLoading(pos: { stage: number; step: number }): void {
    const s = this.stages[pos.stage];
    if (!s.loadBatch) return;
    for (let m = 0; m < (s.gradAccum ?? 1); m++) {
      const key = batchKey(pos.stage, pos.step, m);
      if (this.loaded.has(key) || this.ready.has(key)) continue;
      const p = s.loadBatch(batchIndices(this.opts.seed, s, pos.step, m, this.rank, this.world));
      p.catch(() => undefined); // awaited in awaitBatches; this keeps an unawaited failure from being unhandled
      this.loaded.set(key, p);
    }
  }

  private async awaitBatches(pos: { stage: number; step: number }): Promise<void> {
    this.startLoading(pos);
    const s = this.stages[pos.stage];
    for (let m = 0; m < (s.gradAccum ?? 1); m++) {
      const key = batchKey(pos.stage, pos.step, m);
      const p = this.loaded.get(key);
      if (!p) continue;
      this.loaded.delete(key);
      this.ready.set(key, await p);
    }
  }

  /** The batch of one micro-batch: loaded ahead by runAsync (loadBatch), or made now (makeBatch). */
  private batchOf(s: Stage, stage: number, step: number, m: number, idx: number[]): ModelBatch {
    const key = batchKey(stage, step, m);
    const b = this.ready.get(key);
    if (b) {
      this.ready.delete(key);
      this.model.checkBatch(`Trainer: stage '${s.name}': the batch of loadBatch`, b, true);
      return b;
    }
    if (s.makeBatch) {
      const made = s.makeBatch(idx);
      // checked here, naming the stage: a step's first use of it (its arrays for a replay) would fail on a bare field
      this.model.checkBatch(`Trainer: stage '${s.name}': the batch of makeBatch`, made, true);
      return made;
    }
    throw new TypeError(`Trainer: stage '${s.name}' loads its batches asynchronously (loadBatch): train it with runAsync(), not run()`);
  }

  /**
   * The next step's batch, made while the current step's replay runs on the device (replay on, makeBatch or prepare
   * stages): the host's batch preparation then overlaps the GPU's step instead of following it. By position.
   */
  private ahead: { stage: number; step: number; micro: { idx: number[]; batch: ModelBatch | null; data: ArrayBufferView[] | undefined } } | null = null;

  /** The checkpoint directory this trainer writes (null without outDir: it writes none). */
  get checkpointDir(): string | null {
    return this.opts.outDir === undefined ? null : path.join(this.opts.outDir, 'checkpoint');
  }

  /** Whether a non-finite step has had the model's weights checked (once a run). */
  private weightsChecked = false;
  /** Updates the run has applied (a resumed run's before it too): weights found non-finite after one may be its doing. */
  private updatesApplied = 0;

  /** The names of the model's parameters that hold a NaN or an infinity (one reduction and read each). */
  private nonFiniteWeights(): string[] {
    const out: string[] = [];
    noGrad(() => {
      for (const [name, p] of this.model.namedParameters())
        if (p.size > 0 && !Number.isFinite(scope(() => sumSquares([p], p.device).item()))) out.push(name);
    });
    return out;
  }

  /** TrainerState.everyParameterStepped of the current stage, as its checkpoints record it. */
  private everyParameterStepped = true;

  /** The names of `params` (the model's; a stage's extraParameters as `extraParameters[k]`), for errors. */
  private parameterNames(params: readonly Tensor[]): string[] {
    const names = new Map([...this.model.namedParameters()].map(([n, p]) => [p, n]));
    const extra = this.stageParams.filter((p) => !names.has(p));
    return params.map((p) => names.get(p) ?? `extraParameters[${extra.indexOf(p)}]`);
  }

  /** What the checkpoints record of the run's precision (StageSettings): the residual stream only under bf16 compute. */
  private precision(): Precision {
    return {
      dtype: this.dtype, frozenDtype: this.frozenDtype, residualDtype: this.dtype === 'bfloat16' ? this.model.residualDtype : null,
      gatherDtype: this.world > 1 ? (this.opts.gatherDtype ?? 'float32') : null,
    };
  }

  /** autoResume: the newest complete checkpoint in outDir, loaded into the model; null when there is none. */
  private loadLatest(): ResumeFrom | null {
    const dir = resolveCheckpointDir(this.checkpointDir!);
    if (dir === null || !fs.existsSync(path.join(dir, 'trainer_state.json'))) return null;
    const from = readTrainerState(dir);
    // by the model's names, as loadCheckpoint reads them (a linear projector's earlier name)
    const weights = withModelNames(readCheckpointWeights(dir), this.model);
    const { missing } = this.model.loadStateDict(weights, { strict: false });
    if (missing.length) throw new Error(`resume: ${dir} lacks ${missing.length} of the model's tensors, e.g. ${missing.slice(0, 5).join(', ')} (a checkpoint of another model?)`);
    return from;
  }

  /**
   * Data-parallel, as each stage starts (before its optimizer and any collective of its steps): what every rank must
   * share, compared with rank 0's by one all-gather (src/distributed/consistency.ts). Ranks with other models, trainable
   * sets, bucket sizes or gather dtypes would start collectives of different sizes (MPI overruns the buffers); other
   * data sizes, step counts, batch sizes or seeds hang or train otherwise. On a difference every rank throws, naming it.
   */
  private checkRanksAgree(s: Stage, state: TrainerState, params: Tensor[]): void {
    const o = this.opts;
    const label: Record<string, string> = { size: "size (samples in the stage's data)", samplesPerStep: 'samplesPerStep (batchSize x gradAccum x ranks)' };
    const { data, ...rest } = stageSettings(s, this.world, {});
    // the data settings in one field (a stage may have any number: one field each outran the check's 48 slots)
    const entries = Object.entries(data ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const settings = [...Object.entries(rest).map(([k, v]) => [label[k] ?? k, String(v)] as const),
      ...(entries.length ? [['dataSettings', entries.map(([k, v]) => `${k} ${JSON.stringify(v)}`).join(', ')] as const] : [])];
    // what the shapes do not tell: the model's settings, its adapters' scale and dropout, and its weights themselves
    // (ranks started from other checkpoints trained a mix: each rank's ZeRO shard from its own start; torch DDP
    // broadcasts rank 0's instead, which would hide the mistake); the settings a run is likeliest to differ in first
    const c = this.model.config;
    const modelSettings = `pif ${c.pif}, vmWeight ${c.vmWeight}, detachTarget ${c.detachTarget}, template ${c.template}, aspect ${c.image.aspect}, ` +
      `select ${c.selectLayer} ${c.selectFeature}, ${JSON.stringify({ ...c, visionTower: undefined })}`;
    const lora = loraConfigOf(this.model);
    // (float32 ones: sampled on the device; a bf16-stored frozen base would be read whole to the host, 13 GB at 7B)
    const weights = weightsFingerprint([...this.model.namedParameters()].filter(([, p]) => p.dtype === 'float32'));
    checkRanksAgree(this.group!, `Trainer: stage '${s.name}'`, [
      ['stages', this.stages.map((x) => x.name).join(', ')],
      ['position', `stage ${state.stage} step ${state.step}, global step ${state.globalStep}`],
      ['model parameters', shapesSummary(this.model.parameters().map((p) => p.shape))],
      ['model settings', modelSettings],
      ['LoRA adapters', lora ? `r ${lora.r}, alpha ${lora.alpha}, dropout ${lora.dropout}, on ${lora.targetModules.join(', ')}` : 'none'],
      ['weights', `checksum #${fnv1a(JSON.stringify(weights)).toString(16).padStart(8, '0')} of up to ${FINGERPRINT_SAMPLES} elements of each of ${Object.keys(weights).length} float32 tensors`],
      ['trainable parameters', shapesSummary(params.map((p) => p.shape))],
      ['seed', String(o.seed)], ['steps', String(stageSteps(s, this.world))], ['gradAccum', String(s.gradAccum ?? 1)], ...settings,
      ['dtype', this.dtype], ['frozenDtype', this.frozenDtype], ['gatherDtype', o.gatherDtype ?? 'float32'],
      ['bucketBytes', String(o.bucketBytes ?? DEFAULT_BUCKET_BYTES)], ['overlapGather', String(o.overlapGather ?? true)], ['nonFinite', o.nonFinite ?? 'skip'],
      ['checkpoints', o.outDir === undefined ? 'none (no outDir)' : `at the stage's end${o.saveEvery ? ` and every ${o.saveEvery} steps` : ''}`], ['stopAfterSteps', String(o.stopAfterSteps ?? 'none')],
    ]);
  }

  /**
   * A resume's weights (before the stage's optimizer exists): the model's parameters named in the checkpoint's
   * weightsFingerprint must hold the checkpoint's values. The trainer state carries position and optimizer only, so a
   * model built afresh would otherwise continue the step count and AdamW moments on other weights.
   */
  private checkWeights(resume: ResumeFrom): void {
    const saved = resume.state.weightsFingerprint as unknown;
    if (saved === undefined) return; // written before fingerprints were recorded
    const it = resume.dir ? `the checkpoint ${resume.dir}` : 'the checkpoint';
    if (saved === null || typeof saved !== 'object') throw typeError(`resume: ${it}`, 'weightsFingerprint', 'an object of checksums by parameter name', saved);
    const names = Object.keys(saved), own = new Map(this.model.namedParameters());
    const how = `load the model from the checkpoint (loadCheckpoint(${resume.dir ? `'${resume.dir}'` : 'dir'}).model), or use autoResume: true, which loads <outDir>/checkpoint's weights`;
    const missing = names.find((n) => !own.has(n));
    if (missing !== undefined) throw new Error(`resume: ${it} trained parameter '${missing}', which this model lacks: ${how}`);
    const now = weightsFingerprint(names.map((n) => [n, own.get(n)!]));
    const differ = names.filter((n) => now[n] !== (saved as Record<string, unknown>)[n]);
    if (differ.length)
      throw new Error(`resume: the model's weights are not those of ${it}: '${differ[0]}' differs${differ.length > 1 ? ` (and ${differ.length - 1} more of the ${names.length} parameters it trained)` : ''}. The trainer state holds the position and the optimizer state, not the weights: ${how}`);
  }

  private checkResume(st: TrainerState, dir?: string): void {
    checkResumePlan(st, this.opts.seed, this.stages.map((s) => ({ name: s.name, steps: stageSteps(s, this.world) })), dir);
    if (st.sampleOrder !== SAMPLE_ORDER)
      throw new Error(`resume: the checkpoint's samples were drawn in ${st.sampleOrder ? `the order '${st.sampleOrder}'` : "an older order (keyed by the stage's position)"}, this version draws them '${SAMPLE_ORDER}': the run would not continue exactly (start it again, or resume with the version that wrote it)`);
    const names = this.stages.map((s) => s.name), steps = this.stages.map((s) => stageSteps(s, this.world));
    if (st.stageSettings) {
      const now = this.stages.map((s) => stageSettings(s, this.world, this.precision()));
      for (let i = 0; i < now.length; i++) {
        // a checkpoint from before modality-length grouping existed ordered its samples without it
        const recorded = st.stageSettings[i] as unknown as Record<string, unknown> | undefined;
        const was: Record<string, unknown> | undefined = recorded && { groupByModalityLength: false, ...recorded }, is = now[i] as unknown as Record<string, unknown>;
        // a setting the checkpoint does not record (written before it was recorded) is not checked; the data settings below
        // (a float32 all-gather moves the weights exactly: one process, which gathers nothing, rounds as it does)
        const norm = (key: string, v: unknown) => (key === 'gatherDtype' ? v ?? 'float32' : v ?? null);
        const differs = (key: string) => key !== 'data' && was !== undefined && key in was && norm(key, was[key]) !== norm(key, is[key]);
        // another precision is allowed with a warning: the checkpoint holds fp32 masters and AdamW state, so a bf16 GPU
        // run can go on in fp32 on the CPU (or the other way round); only the rounding of the steps from here differs
        // the residual stream is recorded under bf16 compute only: a compute dtype change says it all
        // (rank 0 alone says it: every rank resumes the same way)
        for (const key of PRECISION_KEYS.filter((key) => differs(key) && !(key === 'residualDtype' && differs('dtype')) && (this.group?.rank ?? 0) === 0))
          process.stderr.write(`vwlmm: ${settingChange(names[i], key, String(was![key] ?? 'unset'), String(is[key] ?? 'unset'))}: continuing from the fp32 master weights and AdamW state, with the steps from here rounded as this run's precision rounds them (not bit for bit the run it would have been)\n`);
        const k = Object.keys(is).find((key) => !PRECISION_KEYS.includes(key) && differs(key));
        if (k) {
          // each micro-batch's loss is a mean over its own samples' target tokens: another micro-batch size changes the
          // objective, while the same micro-batches over other ranks x accumulation give the same one
          // (the product in numbers: `vwlmm demo` splits its batches over --nproc-per-node and has no --grad-accum)
          const product = Number(was!.samplesPerStep) / Number(was!.batchSize);
          const how = k === 'batchSize' ? `: keep batch size ${was![k]} and give ranks x grad accumulation ${Number.isInteger(product) ? `${product}, ` : ''}the product the checkpoint's run had (this run: ${this.world} rank${this.world === 1 ? '' : 's'} x ${this.stages[i].gradAccum ?? 1})` : '';
          throw new Error(`${settingChange(names[i], k, String(was![k] ?? 'unset'), String(is[k] ?? 'unset'))} (the run would not continue exactly${how}: resume with the same settings, or start a new run from the checkpoint's weights)`);
        }
        checkDataSettings(st, names[i], now[i].data!);
      }
    }
    if (!(st.stage >= 0 && st.stage < this.stages.length) || !(st.step >= 0 && st.step <= steps[st.stage]))
      throw new Error(`resume: ${dir ? `${path.join(dir, 'trainer_state.json')} puts the run at` : 'position'} stage ${st.stage} step ${st.step}, which is outside this run's stages (${this.stages.map((x, i) => `'${x.name}': ${steps[i]} steps`).join(', ')})`);
  }

  private *loop(resume: ResumeFrom | undefined, stop: StopRequest | null): Iterator<{ stage: number; step: number } | void, TrainerState, undefined> {
    this.ahead = null; // a batch made ahead by an earlier run of this trainer (interrupted) is not trusted
    if (!resume && this.opts.autoResume) resume = this.loadLatest() ?? undefined;
    const state: TrainerState = resume ? { ...resume.state } : { stage: 0, step: 0, globalStep: 0, seed: this.opts.seed };
    state.skippedSteps ??= 0;
    this.updatesApplied = state.globalStep - state.skippedSteps;
    delete state.stages;
    delete state.stageSteps;
    delete state.sampleOrder;
    delete state.stageSettings;
    delete state.optimizerIndex;
    delete state.weightsFingerprint;
    delete state.optimizerEntries;
    delete state.everyParameterStepped;
    if (resume) this.checkResume(resume.state, resume.dir);
    // once the resume's checks passed (a refused resume leaves the log as it was)
    let metricsStarted = false;
    const resumeDir = resume?.dir;
    const startMetrics = () => {
      if (metricsStarted) return;
      metricsStarted = true;
      if (this.metricsFile) {
        if (resume) {
          this.metricsBytes = this.resumeMetrics(this.metricsFile, state, resumeDir);
        } else {
          try {
            fs.writeFileSync(this.metricsFile, '');
          } catch (e) {
            throw this.writeError('starting', this.metricsFile, e);
          }
          this.metricsBytes = 0;
        }
      }
      // TensorBoard, once the log is accepted (a refused resume leaves the folder as it was): a new event file whose first
      // step is the next one this run trains (what earlier files hold from there on is dropped, as from metrics.jsonl)
      if (this.tensorboardDir) {
        this.closeTensorBoard();
        try {
          this.tensorboard = new TensorBoardWriter(this.tensorboardDir, { firstStep: state.globalStep + 1 });
        } catch (e) {
          throw this.writeError('starting a TensorBoard event file in', this.tensorboardDir, e);
        }
      }
    };
    // the global step whose checkpoint is on disk (so an interrupt there need not write it again)
    this.savedAt = resume ? state.globalStep : -1;
    this.savedDir = resume?.dir ?? null;
    this.metricsBytes = null; // until this run starts (or resumes) its log
    // what the loop returns: the position of the last optimizer step (stage, steps done in it), as its checkpoint records
    // it, where `state` has already moved on to the next stage's step 0
    let last = { stage: state.stage, step: state.step };
    const reached = (): TrainerState => ({ ...state, ...last });
    let replay: StageReplay | null = null;
    for (; state.stage < this.stages.length; state.stage++, state.step = 0) {
      const s = this.stages[state.stage];
      if (state.step === 0) this.opts.onStageStart?.(this.model, s);
      applyTrainable(this.model, s.trainable);
      // vm_head stays float32: the visual-word ops (fused.visualWords) take it directly
      storeFrozenWeights(this.model, this.frozenDtype, { exclude: ['vm_head'] });
      const params = [...this.model.trainableParameters(), ...(s.extraParameters ?? [])];
      // e.g. trainable: { vmHead: true } on a model without a vm_head
      if (params.length === 0) throw rangeError(`Trainer: stage '${s.name}'`, `has no parameters to train: trainable ${JSON.stringify(s.trainable)} selects none of this model's and there are no extraParameters`);
      this.stageParams = params;
      if (this.group) this.checkRanksAgree(s, state, params);
      // before the optimizer exists (with gatherDtype 'bfloat16' it rounds the weights it shards)
      if (resume) {
        // the checkpoint's trainable parameters and LoRA adapters must be this run's (named if not); the adapters'
        // dropout masks continue where the checkpoint's run left them (src/model/lora.ts)
        if (state.step > 0) resumeLoraTraining(this.model, state, `resume: stage '${s.name}'`);
        this.checkWeights(resume);
        // the stage's own tensors first, so a misfit is named (not an optimizer entry that does not fit)
        if (state.step > 0 && s.extraParameters?.length) loadStageParameters(s, resume.stageParameters ?? null);
      }
      // the checkpoint's optimizer entries, checked before anything is written; their indices: into params (or, written
      // before OPTIMIZER_INDEX, into the optimizer's lr groups)
      const savedOrder = resume && state.step > 0 ? (resume.state.optimizerIndex === OPTIMIZER_INDEX ? params : lrGroups(this.model, params, s).flatMap((g) => g.params)) : null;
      const entries = resume && savedOrder ? optimizerEntries(resume, this.parameterNames(savedOrder), s.name) : null;
      // whether every trained parameter has stepped at every step of the stage that was not skipped (TrainerState.everyParameterStepped)
      this.everyParameterStepped = state.step === 0 || resume?.state.everyParameterStepped === true;
      startMetrics();
      const adamw = { lr: s.lr, weightDecay: s.weightDecay ?? 0 };
      const opt = this.group
        ? new ZeroAdamW(this.group, paramGroups(this.model, params, s), { ...adamw, bucketBytes: this.opts.bucketBytes, gatherDtype: this.opts.gatherDtype, overlapGather: this.opts.overlapGather })
        : new AdamW(paramGroups(this.model, params, s), adamw);
      try {
        if (entries) opt.loadState(entries.map((e) => ({ ...e, index: opt.params.indexOf(savedOrder![e.index]) })));
        resume = undefined;
        // op programs (not data-parallel: its collectives run between the ops)
        // nor with gradient accumulation: a stage may reuse one micro-batch's arrays for the next (Stage.makeBatch)
        replay = this.opts.replay !== false && !this.group && (s.gradAccum ?? 1) === 1 && (s.prepare || !s.loss) ? new StageReplay(this.model.device, stepStatsLayout(1, false).size) : null;
        const total = stageSteps(s, this.world);
        const t0 = Date.now();
        let tokens = 0;
        while (state.step < total) {
          // data-parallel: the stop every rank agreed on at the end of the last step (agreedStop), so all stop together
          const signal = this.group ? this.agreedStop : stop?.requested();
          if (signal) {
            let checkpoint: string | null = null;
            if (state.globalStep > 0 && this.opts.outDir !== undefined) {
              if (this.savedAt !== state.globalStep) this.save(state, opt);
              checkpoint = this.checkpointDir;
            }
            const where = `at stage '${s.name}' step ${state.step}/${total} (global step ${state.globalStep})`;
            this.log({ type: 'interrupted', signal, stage: s.name, step: state.step, globalStep: state.globalStep, checkpoint });
            throw new TrainingInterrupted(signal, checkpoint, { ...state }, where);
          }
          // a run resumed at or past stopAfterSteps (or stopAfterSteps 0): nothing to do, its checkpoint is the one on disk
          if (this.opts.stopAfterSteps !== undefined && state.globalStep >= this.opts.stopAfterSteps) {
            if (opt instanceof ZeroAdamW) opt.finish();
            return reached();
          }
          if (s.loadBatch) yield { stage: state.stage, step: state.step }; // runAsync: load this step's batches first
          this.step(s, state, total, opt, params, t0, (n) => (tokens += n), () => tokens, stop, replay);
          last = { stage: state.stage, step: state.step };
          const atEnd = state.step === total;
          if (this.opts.evaluate && this.evaluatesAfter(state.step, total)) {
            const where = { stage: s.name, step: state.step };
            this.log({ type: 'eval', stage: s.name, step: state.step, globalStep: state.globalStep, ...noGrad(() => this.opts.evaluate!(this.model, where)) });
          }
          if (this.opts.outDir !== undefined && ((this.opts.saveEvery && state.globalStep % this.opts.saveEvery === 0) || atEnd)) {
            this.save(state, opt); // (save records this.savedAt)
          }
          // stopAfterSteps stops as an interruption does (a checkpoint at this step), here rather than before the next step
          // so that a stop at a stage's end is not taken at the next stage's start; at the run's last step it is the end
          const runEnd = atEnd && !this.stages.slice(state.stage + 1).some((x) => stageSteps(x, this.world) > 0);
          if (this.opts.stopAfterSteps !== undefined && state.globalStep >= this.opts.stopAfterSteps && !runEnd) {
            if (this.opts.outDir !== undefined && this.savedAt !== state.globalStep) {
              this.save(state, opt);
            }
            if (opt instanceof ZeroAdamW) opt.finish();
            return reached();
          }
          yield;
        }
        if (opt instanceof ZeroAdamW) opt.finish(); // gatherDtype bfloat16: the stage's model is the float32 masters
        // how the stage's steps ran: replayed, recorded (they ran in JavaScript as they were recorded), JavaScript alone
        // (none for a stage this run had no step of: a resume at its end)
        if (replay && replay.counts.javascript + replay.counts.recorded + replay.counts.replayed > 0) this.log({ type: 'replay', stage: s.name, step: state.step, globalStep: state.globalStep, summary: true, ...replay.summary() });
      } finally {
        if (replay) {
          replay.dispose();
          replay = null;
          zeroGrad(params); // the gradients the programs kept
        }
        opt.dispose();
      }
    }
    startMetrics(); // a run with no stage left
    this.log({ type: 'summary', globalStep: state.globalStep, skippedSteps: state.skippedSteps });
    return reached();
  }

  /** Whether the loop evaluates after step `step` of a stage of `total` (evalEvery, and each stage's end). */
  private evaluatesAfter(step: number, total: number): boolean {
    return !!this.opts.evaluate && ((!!this.opts.evalEvery && step % this.opts.evalEvery === 0) || step === total);
  }

  /** Data-parallel: the stop signal some rank had at the end of the last step (null: none). */
  private agreedStop: ReturnType<StopRequest['requested']> = null;

  /** One optimizer step (all micro-batches); a non-finite loss or gradient norm skips the update. */
  private step(s: Stage, state: TrainerState, total: number, opt: AdamW | ZeroAdamW, params: ReturnType<VwLmm['trainableParameters']>, t0: number,
    addTokens: (n: number) => void, tokens: () => number, stop: StopRequest | null, replay: StageReplay | null): void {
    const lr = cosineWithWarmup(state.step, total, s.warmupRatio ?? 0.03, s.lr);
    opt.lr = lr;
    let ce = 0, kl = 0, loss = 0;
    const accum = s.gradAccum ?? 1;
    const samples: number[][] = [];
    let bad: { what: 'loss' | 'gradient norm'; micro: number | null; detail: string } | null = null;
    let gradNorm = NaN;
    // What the step logs and decides on stays on the device until one read at its end (one host
    // synchronisation per step on CUDA): per micro-batch loss, CE and KL, then the squared gradient norm.
    const device = this.model.device;
    const dp = opt instanceof ZeroAdamW ? opt : null;
    const at = stepStatsLayout(accum, dp !== null);
    const stats = replay ? replay.stats : keep(Tensor.zeros([at.size], { device }));
    // the stage's stats tensor is kept between replayed steps: a slot this step does not write (a text-only batch has no
    // KL) must read 0, not the last step's value
    if (replay) callOp('fill', device, [], [stats], [stats.size], [0]);
    const put = (t: Tensor | null | undefined, slot: number) => {
      if (t) callOp('copy_2d', device, [t], [stats], [1, 1, 1, 1, 0, slot, 0]);
    };
    let stepTokens = 0, ran = 0;
    let v: Float32Array | null = null; // the step's stats, read once
    // The step's one host synchronisation. In async mode (a GPU's default) a kernel's refusal of a non-finite
    // activation is raised there: the step is non-finite, and (the raise cleared the flags) the values are read again,
    // which data-parallel needs (the other ranks' slots).
    const readStats = (read: () => Float32Array): Float32Array => {
      try {
        return read();
      } catch (e) {
        if (!isNonFiniteError(e)) throw e;
        bad ??= { what: 'loss', micro: null, detail: e.message };
        return read();
      }
    };
    const micro: { idx: number[]; batch: ModelBatch | null; data: ArrayBufferView[] | undefined }[] = [];
    try {
      // Replayable (one micro-batch): its batch and data first, as the op program covers the whole step. Otherwise
      // each micro-batch's batch is made as it comes (a stage may reuse its arrays: Stage.makeBatch).
      const upFront = replay !== null && replay.phase !== 'off';
      const make = (step: number, m: number) => {
        const idx = batchIndices(state.seed, s, step, m, this.rank, this.world);
        const batch = s.loss ? null : this.batchOf(s, state.stage, step, m, idx);
        return { idx, batch, data: s.prepare ? preparedData(s, idx) : batch ? modelBatchArrays(batch) : undefined };
      };
      const ahead = this.ahead;
      this.ahead = null;
      const microBatch = (m: number) => {
        if (!micro[m]) micro[m] = m === 0 && ahead?.stage === state.stage && ahead.step === state.step ? ahead.micro : make(state.step, m);
        return micro[m];
      };
      if (upFront) for (let m = 0; m < accum; m++) microBatch(m);
      // One autocast region for all micro-batches: each weight is cast to bf16 once per step (not per use);
      // the region ends before the clipping and the fp32 update.
      const runStep = () => autocast(this.dtype, () => {
        for (let m = 0; m < accum && !bad; m++) {
          const { idx, batch, data } = microBatch(m);
          samples.push(idx);
          try {
            scope(() => {
              const out = stageLoss(this.model, s, idx, batch, data);
              put(out.loss, at.loss(m));
              put(out.ceLoss, at.ce(m));
              put(out.klLoss, at.kl(m));
              // micro-batches average: each backward carries 1/accum of the gradient. A non-finite loss
              // back-propagates too (its gradients are dropped with the step once the read shows it).
              const scaled = accum === 1 ? out.loss : F.scale(out.loss, 1 / accum);
              if (dp && m === accum - 1) dp.armForBackward(); // the last micro-batch's gradients are final: reduce as they come
              // a loss no trainable parameter reaches (a text-only batch while only the projector trains) has no
              // backward; the parameters it did not reach get zero gradients after the step's micro-batches (everyGradient)
              if (scaled.requiresGrad) scaled.backward();
            });
            if (batch) stepTokens += batch.attentionMask.reduce((a, b) => a + b, 0);
            ran = m + 1;
          } catch (e) {
            if (!isNonFiniteError(e)) throw e;
            bad = { what: 'loss', micro: m, detail: e.message };
          }
        }
      });
      if (replay && upFront) {
        let record: Record<string, unknown> | undefined;
        try {
          const b = micro[0].batch;
          record = replay.run(micro[0].data!, runStep, b ? `${b.B}x${b.T}` : '');
        } catch (e) {
          // a replayed kernel that refused a non-finite value: which micro-batch is not known
          if (!isNonFiniteError(e)) throw e;
          bad = { what: 'loss', micro: null, detail: e.message };
        }
        if (samples.length === 0) {
          // replayed: what the JavaScript loop records, from the batches
          for (const x of micro) {
            samples.push(x.idx);
            if (x.batch) stepTokens += x.batch.attentionMask.reduce((a, b) => a + b, 0);
          }
          if (!bad) ran = accum;
        }
        if (record) this.log({ type: 'replay', stage: s.name, step: state.step + 1, globalStep: state.globalStep + 1, ...record });
        // The next step's batch now, before this step's one read: on CUDA the replay has only been enqueued, so this
        // overlaps the device's work. Its arrays may be the ones this step used (Stage.makeBatch may reuse them): its
        // uploads are done. Not before an evaluation (it may make batches of its own), nor for loadBatch stages
        // (loaded ahead by runAsync already).
        const next = state.step + 1;
        if (replay.phase === 'on' && !bad && next < total && !this.evaluatesAfter(next, total) && !s.loadBatch) this.ahead = { stage: state.stage, step: next, micro: make(next, 0) };
      } else {
        runStep();
      }
      // micro-batches loaded ahead but not used (a non-finite input ended the step early) are dropped with it
      for (let m = 0; m < accum; m++) this.ready.delete(batchKey(state.stage, state.step, m));
      // a part the step's batches did not reach gets a zero gradient (LLaVA's rule); data-parallel, the reduction counts
      // it as one (its flat buffer holds zeros there), so no zero tensor is made for a gradient already reduced and freed
      if (!dp) everyGradient(params);
      if (dp) {
        // every rank reduces, whatever happened here: the ranks must start the same collectives
        dp.reduceGradients({ everyParameter: true });
        scope(() => put(dp.ownedSumSquares(), at.sumSquares));
        // a stop request as SIGINT 1 or SIGTERM 2^16 (the sum tells both counts apart), so every rank stops with the same
        // signal, the one of the rank that got it (a SIGINT to one rank is a Ctrl-C: exit 130 everywhere)
        const asked = stop?.requested(), stopCode = asked === 'SIGINT' ? 1 : asked ? STOP_SIGTERM : 0;
        const extra = Tensor.fromArray(Float32Array.of(stepTokens, bad ? 1 : 0, stopCode), [3], { device });
        callOp('copy_2d', device, [extra], [stats], [1, 3, 3, 3, 0, at.tokens, 0]); // tokens, failedMicro, stopRequest
        extra.dispose();
        callOp('checks_failed', device, [], [stats], [at.failedCheck]); // no wait: the all-reduce carries it to every rank
        this.group!.allReduce(stats); // losses summed (divided below), the norm's squares, tokens, failures, stops, checks
        // with ZeroAdamW's has-gradient flags in the same read; a refusal raised here makes the other ranks skip the
        // step too (they see this rank's failedCheck slot)
        v = readStats(() => dp.readWithFlags(stats));
        for (let k = 0; k < at.sumSquares; k++) v[k] /= this.world; // the losses: their mean over the ranks
        stepTokens = v[at.tokens];
        if (!bad && v[at.failedMicro] > 0) bad = { what: 'loss', micro: null, detail: `a non-finite loss on another rank (${v[at.failedMicro]} of ${this.world})` };
        if (!bad && v[at.failedCheck] > 0) bad = { what: 'loss', micro: null, detail: `a deferred data check failed on another rank (${v[at.failedCheck]} of ${this.world}; raised there at the step's read)` };
        if (v[at.stopRequest] > 0) this.agreedStop = v[at.stopRequest] % STOP_SIGTERM > 0 ? 'SIGINT' : 'SIGTERM';
        if (!bad) ran = accum;
      }
      if (!bad) {
        if (!dp) {
          const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
          scope(() => put(sumSquares(grads, device), at.sumSquares));
        }
        v ??= readStats(() => stats.toArray() as Float32Array);
        for (let m = 0; m < ran && !bad; m++) {
          const [l, c, k] = [v[at.loss(m)], v[at.ce(m)], v[at.kl(m)]];
          if (!Number.isFinite(l)) bad = { what: 'loss', micro: m, detail: s.loss ? `loss ${l}` : `loss ${l} (CE ${c}, KL ${k})` };
          loss += l / accum;
          ce += c / accum;
          kl += k / accum;
        }
        const norm = bad ? NaN : Math.sqrt(v[at.sumSquares]);
        if (!bad && !Number.isFinite(norm)) bad = { what: 'gradient norm', micro: null, detail: `global gradient norm ${norm}` };
        gradNorm = norm;
      }
    } finally {
      if (!replay) stats.dispose();
    }
    if (bad) {
      clearTape();
      const stopped = replay?.stop('a non-finite step');
      if (stopped) this.log({ type: 'replay', stage: s.name, step: state.step + 1, globalStep: state.globalStep + 1, ...stopped });
      zeroGrad(params);
      dp?.discard();
      const b = bad as { what: string; micro: number | null; detail: string };
      // data parallel: the step's samples are every rank's (each drew its own share: batchIndices tells them all, and a
      // micro-batch's loss in the stats is the ranks' together), not this rank's alone
      const ofMicro = (m: number) => (this.world > 1 ? Array.from({ length: this.world }, (_, r) => batchIndices(state.seed, s, state.step, m, r, this.world)).flat() : samples[m]);
      const stepSamples = this.world > 1 ? Array.from({ length: accum }, (_, m) => ofMicro(m)).flat() : samples.flat();
      // a non-finite pixel, where VwLmm.loss did not say it (a replayed step runs no loss(); a refusal raised at the
      // step's read). Only arrays that are still the step's: a stage may reuse its arrays (Stage.makeBatch), and the
      // next step's batch has been made by now (this.ahead), as has each later micro-batch's
      if (b.what === 'loss' && !b.detail.includes('pixelValues')) {
        const next = this.ahead?.micro.batch?.pixelValues;
        const mine = (m: number) => {
          const px = micro[m]?.batch?.pixelValues;
          return px && px !== next && micro.every((x, k) => k <= m || x.batch?.pixelValues !== px) ? this.model.nonFinitePixel(micro[m].batch!) : null;
        };
        const pixel = (b.micro !== null ? [b.micro] : micro.map((_, m) => m)).map((m) => ({ m, at: mine(m) })).find((x) => x.at !== null);
        if (pixel) b.detail += `; ${accum > 1 ? `micro-batch ${pixel.m}'s ` : "the batch's "}pixelValues hold a non-finite value (${pixel.at!.value}) at index ${pixel.at!.index} (image ${pixel.at!.image}): the image, not the model`;
      }
      // the first time: weights that came in non-finite (a checkpoint's NaN) make every step non-finite; named, the
      // cause is found at once rather than guessed from an op's flat index
      if (!this.weightsChecked) {
        this.weightsChecked = true;
        const held = this.nonFiniteWeights();
        const why = this.updatesApplied === 0 ? 'check the checkpoint the run started from'
          : `they came in so, or one of this run's ${this.updatesApplied} update${this.updatesApplied > 1 ? 's' : ''} made them so (a learning rate too large?): check the checkpoint the run started from, then the learning rate`;
        if (held.length > 0) b.detail += `; the model's weights hold non-finite values (${held.slice(0, 3).join(', ')}${held.length > 3 ? `, and ${held.length - 3} more` : ''}): no step can train them away (${why})`;
      }
      const record = {
        type: 'nonfinite', stage: s.name, step: state.step + 1, steps: total, globalStep: state.globalStep + 1, what: b.what, detail: b.detail,
        microBatch: b.micro, samples: b.micro === null ? stepSamples : ofMicro(b.micro), stepSamples,
        action: this.opts.nonFinite === 'stop' ? 'stop' : 'skipped', skippedSteps: state.skippedSteps! + 1,
      };
      const where = `stage '${s.name}' step ${state.step + 1}/${total} (global step ${state.globalStep + 1})${b.micro === null ? '' : `, micro-batch ${b.micro}`}, sample indices [${record.samples.join(', ')}]`;
      if (this.opts.nonFinite === 'stop') {
        this.log({ ...record, skippedSteps: state.skippedSteps });
        throw new NonFiniteError(`non-finite ${b.what} at ${where}: ${b.detail} (nonFinite: 'stop'; the weights are those before this step)`, record);
      }
      // the batch is consumed (the data position moves on) but the weights and AdamW moments stay as they were
      state.skippedSteps!++;
      state.step++;
      state.globalStep++;
      this.log(record);
      return;
    }
    // clipping as torch.nn.utils.clip_grad_norm_ (factor maxNorm / (norm + 1e-6) when below 1), applied
    // inside the update; maxGradNorm 0: none (transformers' Trainer clips only when max_grad_norm > 0)
    const maxNorm = s.maxGradNorm ?? 1.0;
    const factor = maxNorm > 0 ? maxNorm / (gradNorm + 1e-6) : 1;
    opt.step({ gradScale: factor < 1 ? factor : 1 });
    this.updatesApplied++;
    addTokens(stepTokens);
    if (!replay || replay.afterStep(params)) zeroGrad(params);
    state.step++;
    state.globalStep++;
    const elapsed = (Date.now() - t0) / 1000, eta = (elapsed / state.step) * (total - state.step);
    const rec = s.loss
      ? { type: 'train', stage: s.name, step: state.step, steps: total, globalStep: state.globalStep, loss, lr, gradNorm, elapsed, eta }
      : { type: 'train', stage: s.name, step: state.step, steps: total, globalStep: state.globalStep, loss, ce, kl, lr, gradNorm, tokensPerSec: tokens() / Math.max(elapsed, 1e-9), elapsed, eta };
    // data-parallel: how many gradient buckets started during the backward (overlapped), of how many; the bytes of the
    // weights' all-gather, and how many of its buckets are still arriving (overlapGather: completed by the next forward)
    const overlap = dp ? { buckets: dp.lastStep.buckets, bucketsInBackward: dp.lastStep.startedInBackward, gatherBytes: dp.lastGatherBytes, bucketsArriving: dp.arrivingBuckets } : {};
    if (state.step % (this.opts.logEvery ?? 1) === 0 || state.step === total) this.log({ ...rec, ...overlap });
  }

  /**
   * Crash-safe checkpoint with the trainer state (position, optimizer, the stage's extraParameters) for an
   * exact resume. Data-parallel: every rank calls it (the sharded optimizer state is gathered), rank 0 writes.
   */
  save(state: TrainerState, opt: AdamW | ZeroAdamW): void {
    if (this.opts.outDir === undefined) throw typeError('Trainer.save', 'outDir', 'a directory to write the checkpoint in', this.opts.outDir);
    const entries = opt instanceof ZeroAdamW
      ? opt.gatherState().map((e) => ({ index: e.index, step: e.step, shape: opt.params[e.index].shape, m: () => e.m, v: () => e.v }))
      // (read as the file is written: one moment on the host at a time, not the whole state, 2 x the model's size)
      : opt.stateEntries().map((e) => ({ index: e.index, step: e.step, shape: e.m.shape, m: () => e.m.toArray() as Float32Array, v: () => e.v.toArray() as Float32Array }));
    // indexed by the stage's parameters (the optimizer orders them by group, which its settings decide)
    const at = new Map(this.stageParams.map((p, i) => [p, i]));
    for (const e of entries) e.index = at.get(opt.params[e.index])!;
    const outDir = this.opts.outDir;
    if (opt instanceof ZeroAdamW) opt.withMasterWeights(() => this.write(outDir, state, entries));
    else this.write(outDir, state, entries);
    this.savedAt = state.globalStep;
    this.savedDir = this.checkpointDir;
  }

  /**
   * TrainerState.weightsFingerprint of the stage's trainable model parameters as they are now (save: the float32 masters
   * under ZeroAdamW.withMasterWeights); extraParameters are not the model's and travel in stage_parameters.safetensors.
   */
  private trainedFingerprint(): Record<string, string> {
    const names = new Map([...this.model.namedParameters()].map(([n, p]) => [p, n]));
    return weightsFingerprint(this.stageParams.filter((p) => names.has(p)).map((p) => [names.get(p)!, p]));
  }

  /** Rank 0 writes the checkpoint (the model's weights as they are now, and the optimizer entries). */
  private write(outDir: string, state: TrainerState, entries: { index: number; step: number; shape: readonly number[]; m: () => Float32Array; v: () => Float32Array }[]): void {
    if (this.rank !== 0) return;
    const tensors = new Map<string, HostTensor | LazyHostTensor>();
    for (const e of entries) {
      tensors.set(`${e.index}.m`, { dtype: 'float32', shape: [...e.shape], read: e.m });
      tensors.set(`${e.index}.v`, { dtype: 'float32', shape: [...e.shape], read: e.v });
      tensors.set(`${e.index}.step`, { dtype: 'int32', shape: [1], data: Int32Array.of(e.step) });
    }
    const extra = this.stages[state.stage]?.extraParameters ?? [];
    const stageTensors = new Map<string, HostTensor>(extra.map((p, k) => [String(k), { dtype: 'float32', shape: [...p.shape], data: p.toArray() as Float32Array }]));
    const dir = path.join(outDir, 'checkpoint');
    const trainerState = {
      ...state, sampleOrder: SAMPLE_ORDER, optimizerIndex: OPTIMIZER_INDEX, stages: this.stages.map((s) => s.name), stageSteps: this.stages.map((s) => stageSteps(s, this.world)),
      stageSettings: this.stages.map((s) => stageSettings(s, this.world, this.precision())), ...(this.group ? { worldSize: this.world } : {}), ...loraTrainingRecord(this.model),
      weightsFingerprint: this.trainedFingerprint(), optimizerEntries: entries.length, everyParameterStepped: this.everyParameterStepped, logEvery: this.opts.logEvery ?? 1,
    };
    try {
      saveCheckpoint(dir, this.model, {
        ...this.checkpointFiles,
        extraFiles: { ...this.checkpointFiles?.extraFiles, 'trainer_state.json': JSON.stringify(trainerState, null, 2) },
        extraTensors: { 'optimizer.safetensors': tensors, ...(extra.length ? { [STAGE_PARAMETERS]: stageTensors } : {}) },
      });
    } catch (e) {
      // a failed save leaves the last complete checkpoint in place (saveCheckpoint)
      throw this.writeError(`saving the checkpoint of global step ${state.globalStep} in`, dir, e);
    }
  }
}

/** Elements of each parameter weightsFingerprint reads (evenly spaced). */
const FINGERPRINT_SAMPLES = 64;

/**
 * A cheap check that two models hold the same weights: per parameter (by name), FNV-1a over its size and the float32
 * bits of up to FINGERPRINT_SAMPLES evenly spaced elements, as 8 hex digits. The samples of all float32 parameters on
 * a device are gathered on it and read in one transfer (a bf16-stored one is read whole: not a trained master).
 */
function weightsFingerprint(named: readonly (readonly [string, Tensor])[]): Record<string, string> {
  const picks = named.map(([, p]) => {
    const k = Math.min(FINGERPRINT_SAMPLES, p.size);
    return { k, stride: k > 0 ? Math.floor(p.size / k) : 1 };
  });
  const values = new Map<number, Float32Array>();
  const byDevice = new Map<string, number[]>();
  named.forEach(([, p], i) => {
    if (p.dtype === 'float32' && picks[i].k > 0) byDevice.set(p.device, [...(byDevice.get(p.device) ?? []), i]);
  });
  for (const [device, ids] of byDevice) {
    const host = scope(() => {
      const out = Tensor.empty([ids.reduce((a, i) => a + picks[i].k, 0)], { device: device as 'cpu' | 'cuda' });
      let at = 0;
      for (const i of ids) {
        // rows of one element, srcStride apart: element j * stride of the parameter lands at out[at + j]
        callOp('copy_2d', device as 'cpu' | 'cuda', [named[i][1]], [out], [picks[i].k, 1, picks[i].stride, 1, 0, at, 0]);
        at += picks[i].k;
      }
      return out.toArray() as Float32Array;
    });
    let at = 0;
    for (const i of ids) {
      values.set(i, host.subarray(at, at + picks[i].k));
      at += picks[i].k;
    }
  }
  const out: Record<string, string> = {};
  named.forEach(([name, p], i) => {
    const { k, stride } = picks[i];
    let v = values.get(i);
    if (!v) {
      const all = p.toArray() as Float32Array;
      v = Float32Array.from({ length: k }, (_, j) => all[j * stride]);
    }
    let h = 0x811c9dc5;
    const mix = (word: number) => {
      for (let b = 0; b < 32; b += 8) h = Math.imul(h ^ ((word >>> b) & 0xff), 0x01000193);
    };
    mix(p.size);
    for (const w of new Uint32Array(v.buffer, v.byteOffset, v.length)) mix(w);
    out[name] = (h >>> 0).toString(16).padStart(8, '0');
  });
  return out;
}

/**
 * A checkpoint's AdamW entries (optimizer.safetensors: `<i>.m`, `<i>.v`, `<i>.step` per parameter i of the stage, in
 * `names`' order), checked against its trainer_state.json, so that a damaged or mixed checkpoint is refused rather than
 * continued with fresh moments: no entry of a parameter the stage lacks, none half there, as many as the state records
 * (optimizerEntries; not recorded before it was), and step counts the position allows: none above the stage's step and,
 * where every parameter stepped at every step (everyParameterStepped), all equal and at most the skipped steps below it.
 */
function optimizerEntries(resume: ResumeFrom, names: readonly string[], stage: string): { index: number; step: number; m: Float32Array; v: Float32Array }[] {
  const st = resume.state, file = resume.dir ? path.join(resume.dir, 'optimizer.safetensors') : 'optimizer.safetensors';
  const where = `resume: stage '${stage}': ${file}`;
  const damaged = 'the checkpoint is damaged or its files are not of one checkpoint: resume from an intact checkpoint';
  const parts = new Map<number, { m?: HostTensor; v?: HostTensor; step?: HostTensor }>();
  for (const [key, t] of resume.optimizer) {
    const k = /^(0|[1-9]\d*)\.(m|v|step)$/.exec(key);
    if (!k || Number(k[1]) >= names.length)
      throw new Error(`${where}: expected entries '<i>.m', '<i>.v', '<i>.step' of the stage's ${names.length} trained parameters (i < ${names.length}), received '${key}' (${damaged})`);
    const e = parts.get(Number(k[1])) ?? {};
    e[k[2] as 'm' | 'v' | 'step'] = t;
    parts.set(Number(k[1]), e);
  }
  const out: { index: number; step: number; m: Float32Array; v: Float32Array }[] = [];
  for (let i = 0; i < names.length; i++) {
    const e = parts.get(i);
    if (!e) continue;
    const lacks = (['m', 'v', 'step'] as const).filter((x) => !e[x]);
    if (lacks.length) throw new Error(`${where}: parameter ${i} ('${names[i]}') has ${(['m', 'v', 'step'] as const).filter((x) => e[x]).map((x) => `'${i}.${x}'`).join(' and ')} but no ${lacks.map((x) => `'${i}.${x}'`).join(' nor ')} (${damaged})`);
    const step = e.step!.data[0];
    if (e.step!.dtype !== 'int32' || e.step!.data.length !== 1 || !(step >= 1))
      throw new Error(`${where}: expected '${i}.step' (parameter '${names[i]}') to be one int32 AdamW step count >= 1, received ${e.step!.dtype} [${e.step!.shape.join(', ')}]${e.step!.data.length === 1 ? ` holding ${step}` : ''} (${damaged})`);
    if (e.m!.dtype !== 'float32' || e.v!.dtype !== 'float32') throw new Error(`${where}: expected float32 moments of parameter ${i} ('${names[i]}'), received '${i}.m' ${e.m!.dtype} and '${i}.v' ${e.v!.dtype} (${damaged})`);
    out.push({ index: i, step, m: e.m!.data as Float32Array, v: e.v!.data as Float32Array });
  }
  if (st.optimizerEntries !== undefined && out.length !== st.optimizerEntries) {
    const first = names.findIndex((_, i) => !parts.has(i));
    throw new Error(`${where}: expected AdamW state of ${st.optimizerEntries} parameters (trainer_state.json's optimizerEntries), received ${out.length}${out.length < st.optimizerEntries && first >= 0 ? `; the first without any is parameter ${first} ('${names[first]}')` : ''}: training would go on with fresh moments (${damaged})`);
  }
  // an AdamW step count counts the stage's steps that were not skipped: never more than the stage's step
  const position = `trainer_state.json puts the run at stage '${stage}' step ${st.step} (global step ${st.globalStep}, ${st.skippedSteps ?? 0} skipped)`;
  const most = out.reduce((a, e) => (e.step > a.step ? e : a), { step: 0, index: -1 });
  if (most.step > st.step) throw new Error(`${where}: parameter ${most.index} ('${names[most.index]}') has AdamW step count ${most.step}, but ${position}: the position and the optimizer state disagree (${damaged})`);
  if (st.everyParameterStepped === true && out.length > 0) {
    const low = Math.max(0, st.step - (st.skippedSteps ?? 0));
    const odd = out.find((e) => e.step !== out[0].step) ?? (out[0].step < low ? out[0] : undefined);
    if (odd) throw new Error(`${where}: parameter ${odd.index} ('${names[odd.index]}') has AdamW step count ${odd.step}, but ${position}, so every trained parameter has the same count, between ${low} and ${st.step}${odd !== out[0] ? ` (parameter ${out[0].index} has ${out[0].step})` : ''}: the position and the optimizer state disagree (${damaged})`);
  }
  return out;
}

/** Writes a checkpoint's stage_parameters into the stage's extraParameters, refusing any that do not fit. */
function loadStageParameters(s: Stage, saved: Map<string, HostTensor> | null): void {
  const where = `resume: stage '${s.name}'`, extra = s.extraParameters!;
  if (!saved) throw rangeError(where, `has ${extra.length} extraParameters but the checkpoint has no ${STAGE_PARAMETERS} (written by a run whose stage had none?)`);
  if (saved.size !== extra.length) throw rangeError(where, `has ${extra.length} extraParameters but the checkpoint's ${STAGE_PARAMETERS} holds ${saved.size}`);
  extra.forEach((p, k) => {
    const t = saved.get(String(k));
    if (!t || t.dtype !== 'float32' || t.shape.length !== p.rank || t.shape.some((n, i) => n !== p.shape[i]))
      throw rangeError(where, `expected a float32 [${p.shape.join(', ')}] tensor '${k}' in the checkpoint's ${STAGE_PARAMETERS} for extraParameters[${k}] but found ${t ? `${t.dtype} [${t.shape.join(', ')}]` : 'none'}`);
  });
  // saved as float32 host copies (toArray), so a bfloat16 tensor gets its own values back
  extra.forEach((p, k) => {
    const data = saved.get(String(k))!.data as Float32Array;
    p.buffer.write(p.dtype === 'bfloat16' ? f32ToBf16(data) : data);
  });
}

/**
 * Reads the trainer state, optimizer tensors and (when the stage had any) extraParameters saved in a
 * checkpoint directory (or, when a save was killed between its renames, in the `.old-*` one
 * resolveCheckpointDir falls back to).
 */
export function readTrainerState(checkpointDir: string): { state: TrainerState; optimizer: Map<string, HostTensor>; stageParameters: Map<string, HostTensor> | null; dir: string } {
  const dir = resolveCheckpointDir(checkpointDir) ?? checkpointDir;
  const f = path.join(dir, 'trainer_state.json');
  if (!fs.existsSync(f)) throw new Error(`resume: ${f} does not exist (not a training checkpoint)`);
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(f, 'utf8')) as TrainerState;
  } catch (e) {
    throw new Error(`resume: ${f} is not valid JSON (${(e as Error).message})`);
  }
  for (const k of ['stage', 'step', 'globalStep', 'seed'] as const) {
    // any integer seeds a run (TrainerOptions.seed); the position counts from 0
    if (!Number.isInteger(state?.[k]) || state[k] < 0 && k !== 'seed') throw new Error(`resume: ${f}: '${k}' must be ${k === 'seed' ? 'an integer' : 'a non-negative integer'}, got ${JSON.stringify(state?.[k])}`);
  }
  const stageFile = path.join(dir, STAGE_PARAMETERS);
  return { state, optimizer: readChecked(path.join(dir, 'optimizer.safetensors')), stageParameters: fs.existsSync(stageFile) ? readChecked(stageFile) : null, dir };
}

/**
 * A checkpoint's tensor file the Trainer wrote, its checksum verified (CHECKSUM_KEY): every optimizer.safetensors and
 * stage_parameters.safetensors vwlmm has written carries one (since before checkpoints recorded their sample order,
 * without which a resume is refused anyway), so one without is not ours, or was rewritten, and is refused rather than
 * loaded unchecked.
 */
function readChecked(file: string): Map<string, HostTensor> {
  const { tensors, metadata } = readSafetensorsWithMetadata(file);
  if (typeof metadata[CHECKSUM_KEY] !== 'string')
    throw new Error(`resume: ${file}: expected the ${CHECKSUM_KEY} checksum in its metadata (every one vwlmm writes has it), received a file without (written or rewritten by something else?): its tensors cannot be verified; resume from a checkpoint as vwlmm wrote it`);
  return tensors;
}

/**
 * The stage's AdamW groups: everything at lr, then (visionTowerLr) the tower's parameters and (projectorLr, LLaVA's
 * mm_projector_lr) the projector's in groups of their own, on the same schedule at their own peak rates. With weight
 * decay, each group splits as transformers' Trainer splits it: biases and norm layers in a group without decay.
 */
function paramGroups(model: VwLmm, params: Tensor[], s: Stage): ParamGroup[] {
  const groups = lrGroups(model, params, s);
  if (!((s.weightDecay ?? 0) > 0)) return groups;
  const skip = noDecayParameters(model);
  return groups.flatMap((g) => [{ ...g, params: g.params.filter((p) => !skip.has(p)) }, { ...g, params: g.params.filter((p) => skip.has(p)), weightDecay: 0 }])
    .filter((g) => g.params.length > 0);
}

/** paramGroups by learning rate alone (the groups, and so the optimizer's order, before weight decay split them). */
function lrGroups(model: VwLmm, params: Tensor[], s: Stage): ParamGroup[] {
  const special = ([['visionTowerLr', s.visionTowerLr, model.visionTower.parameters()], ['projectorLr', s.projectorLr, model.model.mm_projector.parameters()]] as const)
    .filter(([, lr]) => lr !== undefined);
  if (special.length === 0) return [{ params }];
  for (const [key, lr] of special) {
    if (!(Number.isFinite(Math.fround(lr!)) && lr! >= 0)) throw new RangeError(`stage '${s.name}': ${key} must be a finite number >= 0 (in float32: at most 3.4e38), got ${lr}`);
    if (!(s.lr > 0)) throw new RangeError(`stage '${s.name}': ${key} needs lr > 0 (its rate is set relative to it), got lr ${s.lr}`);
  }
  const sets = special.map(([, , ps]) => new Set<Tensor>(ps));
  return [
    { params: params.filter((p) => !sets.some((set) => set.has(p))) },
    ...special.map(([, lr], k) => ({ params: params.filter((p) => sets[k].has(p)), lrScale: lr! / s.lr })),
  ];
}

/**
 * The parameters transformers' Trainer does not decay (get_decay_parameter_names, which LLaVA's trainer uses too):
 * every parameter of a norm layer (LayerNorm, RMSNorm) and every one whose name has 'bias' in it.
 */
export function noDecayParameters(model: Module): Set<Tensor> {
  const out = new Set<Tensor>();
  for (const m of model.namedModules().values()) if (m instanceof LayerNorm || m instanceof RMSNorm) for (const p of m.parameters()) out.add(p);
  for (const [name, p] of model.namedParameters()) if (name.includes('bias')) out.add(p);
  return out;
}
