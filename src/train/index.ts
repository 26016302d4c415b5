/// <reference types="node" preserve="true" />
// Public API of training: the Trainer (stages, options, state, exact resume), training on a LLaVA file,
// interruption (StopRequest, signal handlers, TrainingInterrupted), the learning-rate schedule, the CLI's
// progress line, TensorBoard event files, and the loss-curve plot of a metrics.jsonl. Re-exported by the root and by 'vwlmm/train'.
export { Trainer, readTrainerState, applyTrainable, stageSteps, batchIndices, noDecayParameters, checkResumePlan, checkDataSettings, TRAINABLE_PARTS } from './trainer';
export type { Stage, Trainable, TrainerOptions, TrainerState } from './trainer';
export type { StageSettings } from './state';
/** What Trainer.run / runAsync resume from (trainer.ts keeps the type to itself: named here from the signature). */
export type ResumeFrom = NonNullable<Parameters<import('./trainer').Trainer['run']>[0]>;
export { trainOnFile, prepareFile, loadFileBatch, describeSkipped, samplesDigest, DEFAULT_MODEL_MAX_LENGTH } from './from_file';
export type { FileTrainOptions, PreparedData, PrepareOptions, VerifyImages } from './from_file';
export { StopRequest, installStopHandlers, TrainingInterrupted, NonFiniteError, exitCodeFor, STOP_SIGNALS } from './interrupt';
export type { StopSignal } from './interrupt';
export { cosineWithWarmup } from './schedule';
export { modalityLength, modalityLengthGroupedIndices, lengthGroupedIndices, splitToEvenChunks } from './sampler';
export { modelBatchArrays } from './replay';
export { Progress } from './progress';
export { TensorBoardWriter, tensorboardScalars } from './tensorboard';
export type { TensorBoardWriterOptions } from './tensorboard';
export { plotMetrics, plotLines } from '../viz/plot';
export type { Series } from '../viz/plot';
