// Where a training run stands: saved with every checkpoint (trainer_state.json) and carried by
// TrainingInterrupted. Its own module so that interrupt.ts and trainer.ts both use it without importing each other.
import type { ComputeDtype } from '../amp';

/** What a resumed stage must keep (TrainerState.stageSettings); null where the stage leaves a setting unset. */
export interface StageSettings {
  size: number;
  samplesPerStep: number;
  /**
   * Samples per micro-batch on each rank: each micro-batch's loss is a mean over its own samples' target tokens, so
   * another micro-batch size changes the objective (the same micro-batches over other ranks x accumulation do not).
   * Absent in checkpoints written before it was recorded.
   */
  batchSize?: number;
  /** Whether the stage's order groups samples by modality and length (Stage.modalityLengths); absent in older checkpoints: false. */
  groupByModalityLength?: boolean;
  lr: number;
  visionTowerLr: number | null;
  projectorLr: number | null;
  warmupRatio: number | null;
  weightDecay: number | null;
  maxGradNorm: number | null;
  /** The compute dtype (TrainerOptions.dtype). Absent in checkpoints written before it was recorded (not checked). */
  dtype?: ComputeDtype;
  /** How frozen Linear weights are stored (TrainerOptions.frozenDtype). Absent in older checkpoints. */
  frozenDtype?: ComputeDtype;
  /** The LLM's residual stream under bf16 compute (VwLmm.residualDtype); null with float32 compute. Absent in older checkpoints. */
  residualDtype?: ComputeDtype | null;
  /**
   * Data-parallel: the dtype ZeRO-1 all-gathers the updated weights in (TrainerOptions.gatherDtype); null on one rank.
   * Absent in older checkpoints.
   */
  gatherDtype?: ComputeDtype | null;
  /**
   * What the caller made the stage's data with (Stage.dataSettings; trainOnFile: the template, image aspect ratio, model
   * max length and a digest of the prepared samples). Absent in older checkpoints.
   */
  data?: Record<string, string | number | boolean>;
}

export interface TrainerState {
  stage: number;
  step: number;
  globalStep: number;
  seed: number;
  /** Optimizer steps skipped for a non-finite loss or gradient norm (so far, over all stages). */
  skippedSteps?: number;
  /** Saved with checkpoints: the stage names and their step counts, checked on resume. */
  stages?: string[];
  stageSteps?: number[];
  /**
   * Saved with checkpoints: per stage, what else decides the run from the checkpoint on (its data size, samples per
   * optimizer step over every rank, samples per micro-batch, its optimizer settings, the run's precision, and what its
   * data were made with: Stage.dataSettings), checked on resume so that a
   * changed one is refused rather than silently continuing another run. Absent in older checkpoints, and so is a
   * setting recorded after them: not checked.
   */
  stageSettings?: StageSettings[];
  /**
   * Saved with checkpoints: how batchIndices orders a stage's samples (SAMPLE_ORDER); a checkpoint whose order differs
   * (or, absent, one from before the order was keyed by the stage's name) cannot be resumed exactly and is refused.
   */
  sampleOrder?: string;
  /**
   * Saved with checkpoints: 'parameters' when the optimizer entries are indexed by the stage's trainable parameters
   * (the model's order, then its extraParameters); absent in older ones, indexed by the optimizer's learning-rate groups.
   */
  optimizerIndex?: string;
  /**
   * Saved with checkpoints: per trainable model parameter of the stage it was written in (by name), a checksum of up to
   * 64 evenly spaced elements (trainer.ts weightsFingerprint). The state carries the position and the optimizer, not the
   * weights: a resume compares this with the model's and refuses a model that does not hold the checkpoint's weights.
   * Absent in older checkpoints: not checked.
   */
  weightsFingerprint?: Record<string, string>;
  /**
   * Saved with checkpoints: how many of the stage's parameters have AdamW state in optimizer.safetensors; a resume whose
   * file holds fewer (or more) is refused, naming the first without. Absent in older checkpoints: not checked.
   */
  optimizerEntries?: number;
  /**
   * Saved with checkpoints: true when every trained parameter had an AdamW update at every step of the current stage that
   * was not skipped (a zero gradient where a batch did not reach it: LLaVA's rule, which older versions did not follow),
   * so that all AdamW step counts are equal and at most skippedSteps below the stage's step; a resume checks this.
   * Absent in older checkpoints (and in those of a stage resumed from one): only "no count above the step" is checked.
   */
  everyParameterStepped?: boolean;
  /**
   * The run's TrainerOptions.logEvery when the checkpoint was written (absent: written before it was recorded): which
   * steps a resume expects train records of in metrics.jsonl.
   */
  logEvery?: number;
}
