// Training on a LLaVA-format file (what `vwlmm train` runs): records are tokenised once with the model's
// conversation template, or a record's own (`conversation_template`: a file can mix templates, as the demo's
// stage 2 mixes vicuna_v1 questions with plain captions; LLaVA's train.py ignores the field), mismatches counted and
// reported, never trained on; images decoded and preprocessed once (broken or missing ones skipped and counted),
// then the Trainer runs one stage.
import type { ProcessGroup } from '../distributed/process_group';
import type { ComputeDtype } from '../amp';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { collate, nextTokenTargets, visualWordRows } from '../data/collate';
import { IGNORE_INDEX, TEMPLATES, Turn } from '../data/conversation';
import { fitRecords } from '../data/fit_record';
import { LlavaRecord, readLlavaRecords } from '../data/dataset';
import { loadImage, preprocessClip, probeImage } from '../data/images';
import { clipPreprocessOptions, VwLmmConfig } from '../model/config';
import { ClipImageWorkers } from '../data/clip_workers';
import { spareImageWorkers } from '../data/scene_writer';
import { TextTokenizer } from '../data/tokenizer';
import { applyLora, loraConfigOf } from '../model/lora';
import { ModelBatch, VwLmm } from '../model/vwlmm';
import { modalityLength } from './sampler';
import { checkDataSettings, Stage, Trainable, Trainer, TrainerState } from './trainer';
import { HostTensor } from '../io/safetensors';
import { cpu } from '../native';
import { checkKeys, typeError } from '../errors';

export interface FileTrainOptions {
  data: string;
  imageFolder: string;
  outDir: string;
  /**
   * The stage's name (default 'train'): in the logs and the checkpoint, and the key of its sample order (batchIndices),
   * so a stage of a longer run is run again with the order it had there.
   */
  stage?: string;
  steps?: number;
  epochs?: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  /** The vision tower's peak learning rate when it trains (LLaVA's mm_vision_tower_lr); absent = lr. */
  visionTowerLr?: number;
  /** The projector's own peak learning rate (LLaVA's mm_projector_lr). */
  projectorLr?: number;
  /** LoRA adapters to add before training (unless the model has them already, e.g. on a resume). */
  lora?: { r: number; alpha: number; dropout: number };
  warmupRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  saveEvery: number;
  trainable: Trainable;
  strict: boolean;
  /** The positions a sample is cut to, image features included (LLaVA's model_max_length); default: the config's, else 2048. */
  modelMaxLength?: number;
  /**
   * The conversation template of the run (LLaVA's --version: 'plain' for its pretraining, 'vicuna_v1' for its
   * fine-tuning), for records without their own; it becomes the model's (config.template), so its checkpoints record
   * it. Default: the model's.
   */
  template?: VwLmmConfig['template'];
  /**
   * How the run's images are made square (LLaVA's --image_aspect_ratio: 'square' in its pretraining, 'pad' in its
   * fine-tuning); it becomes the model's (config.image.aspect), so its checkpoints record it. Default: the model's.
   */
  imageAspect?: 'square' | 'pad';
  /** How the images are checked before training (prepareFile): 'decode' (default) or 'header'. */
  verifyImages?: VerifyImages;
  /** prepareFile's progress (records tokenised, images checked), before training starts. */
  onPrepareProgress?: PrepareOptions['onProgress'];
  /**
   * LLaVA's --group_by_modality_length (its finetune.sh sets it): batches of image records and of text-only records
   * kept apart, each of similar lengths (Stage.modalityLengths, src/train/sampler.ts). Default false: plain shuffles.
   */
  groupByModalityLength?: boolean;
  /** readTrainerState's: the position and optimizer state; the model must hold the checkpoint's weights (loadCheckpoint). */
  resume?: { state: TrainerState; optimizer: Map<string, HostTensor>; dir?: string };
  onLog?: (r: Record<string, unknown>) => void;
  /** SIGINT / SIGTERM stop training cleanly (checkpoint, then TrainingInterrupted); see Trainer.runAsync. */
  handleSignals?: boolean;
  /** NaN / Inf loss or gradient norm: skip the step (default) or stop with a NonFiniteError. */
  nonFinite?: 'skip' | 'stop';
  /** Recompute every decoder and vision layer in the backward (less memory; see VwLmm.gradientCheckpointing). */
  gradientCheckpointing?: boolean;
  /** The LLM's residual stream under bf16 compute (TrainerOptions.residualDtype). */
  residualDtype?: ComputeDtype;
  /** The compute dtype (TrainerOptions.dtype): default bf16 on CUDA, fp32 on the CPU. */
  dtype?: ComputeDtype;
  /** How frozen Linear weights are stored (TrainerOptions.frozenDtype): default the compute dtype. */
  frozenDtype?: ComputeDtype;
  /** Data-parallel over this group's ranks (TrainerOptions.processGroup). */
  processGroup?: ProcessGroup;
  /** Data-parallel: the dtype the updated weights are all-gathered in (TrainerOptions.gatherDtype). */
  gatherDtype?: 'float32' | 'bfloat16';
  /** TrainerOptions.replay (default true; `vwlmm train --no-replay`). */
  replay?: boolean;
  /** TrainerOptions.logEvery: a train record every N steps (transformers' logging_steps; default 1). */
  logEvery?: number;
  /** TrainerOptions.reportTo: ['tensorboard'] also writes TensorBoard event files (default []). */
  reportTo?: readonly 'tensorboard'[];
  /** TrainerOptions.loggingDir: where the event files go (default `<outDir>/runs`). */
  loggingDir?: string;
  /** Files written into every checkpoint beside the model (TrainerOptions.checkpointFiles.extraFiles; `vwlmm train`: train_args.json). */
  extraFiles?: Record<string, string | Buffer>;
}

const LORA_KEYS = { r: true, alpha: true, dropout: true } satisfies Record<keyof NonNullable<FileTrainOptions['lora']>, true>;

export interface PreparedData {
  /** image: an index into imagePaths, or null for a text-only record. */
  /**
   * modalityLength: LLaVA's modality_lengths entry (words, negative when the record has no image; sampler.ts). The ids
   * and labels are typed arrays: outside the JS heap, and a quarter of number arrays' bytes (LLaVA's 665K samples as
   * number arrays were ~8 GB of heap, twice Node's default limit).
   */
  samples: { inputIds: Int32Array; labels: Int32Array; image: number | null; modalityLength: number }[];
  /** The readable images the samples use (absolute paths): decoded per batch during training, not kept. */
  imagePaths: string[];
  /**
   * imagePaths' entries as the data file names them (each record's `image`, at its first use): what the samples' digest
   * hashes, so that a resume with the image folder given another way (relative, a symlink) or records with absolute
   * paths gives the same digest.
   */
  imageNames: string[];
  /** Records not trained on: a broken line (JSONL line / JSON list index), an unreadable image. */
  skipped: { id?: string; line?: number; index?: number; reason: string }[];
  mismatches: number;
  /**
   * The records whose tokenization with the run's template disagrees with itself (LLaVA's "tokenization mismatch":
   * it trains on them with every label ignored), each with where it stands and why. `kept`: trained so, for its
   * image's visual-word KL; a text-only one, which would train nothing, is left out.
   */
  mismatched: { id: string; line?: number; index?: number; reason: string; kept: boolean }[];
  /** Samples cut to the model max length (trained on what is left, as LLaVA does). */
  truncated: number;
  /** How the images were checked before training (prepareFile's verifyImages). */
  verifiedImages: VerifyImages;
}

/** LLaVA-1.5's model_max_length, where neither the options nor the config (tokenizer_model_max_length) set one. */
export const DEFAULT_MODEL_MAX_LENGTH = 2048;

/** How many images are decoded at once (sharp runs them on libuv's worker threads). */
const DECODE_CONCURRENCY = 4;
/** How many image headers are read at once (verifyImages 'header'). */
const PROBE_CONCURRENCY = 16;

/** Records from which prepareFile tokenises on threads (fewer: a thread's start costs more than it saves). */
const FIT_THREADS_FROM = 2000;
/** Tokenising threads at most (the run has not started: every core is free). */
const MAX_FIT_THREADS = 8;

/** How prepareFile checks the images before training: decoding each, or reading its header. */
export type VerifyImages = 'decode' | 'header';

/** The CLIP pixels [3, S, S] of an image file, as the model's config preprocesses them (on `images`' threads if given). */
async function pixelsOf(model: VwLmm, file: string, images?: ClipImageWorkers): Promise<Float32Array> {
  return images ? images.pixels(file) : preprocessClip(await loadImage(file), clipPreprocessOptions(model.config));
}

export interface PrepareOptions {
  /** The positions a sample is cut to, image features included; default: the config's, else DEFAULT_MODEL_MAX_LENGTH. */
  modelMaxLength?: number;
  /** How the images are checked: 'decode' (default) or 'header'. */
  verifyImages?: VerifyImages;
  /** Threads that tokenise the records (default: as many as the cores, up to 8, from 2000 records on; 0: this one). */
  fitThreads?: number;
  /**
   * Called as the preparation goes (LLaVA's 665K records take minutes): records tokenised so far, images checked so far,
   * each with its total.
   */
  onProgress?: (p: { records: number; recordsTotal: number; images: number; imagesTotal: number }) => void;
}

/**
 * Reads a LLaVA file: records tokenized, every image checked once to find the broken ones (skipped and
 * counted, or an error with --strict): decoded (verifyImages 'decode', the default), DECODE_CONCURRENCY at a time,
 * or its header read (verifyImages 'header': fast enough for LLaVA's 665K images; a file cut short after its header
 * then fails training when its batch comes, naming it). The pixels are not kept: training decodes each batch's
 * images again while the previous step runs (trainOnFile), so memory does not grow with the data set (558K LLaVA
 * images at 336 px would be 750 GB of float pixels).
 */
export async function prepareFile(model: VwLmm, tokenizer: TextTokenizer, file: string, imageFolder: string, strict: boolean, opts: PrepareOptions = {}): Promise<PreparedData> {
  const verify = opts.verifyImages ?? 'decode';
  if (verify !== 'decode' && verify !== 'header') throw new RangeError(`prepareFile: verifyImages must be 'decode' or 'header', got ${String(verify)}`);
  const maxLength = opts.modelMaxLength ?? model.config.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH;
  if (!(Number.isInteger(maxLength) && maxLength >= 1)) throw new RangeError(`prepareFile: modelMaxLength must be a positive integer, got ${maxLength}`);
  const { records, skipped: bad, positions } = readLlavaRecords(file, { strict });
  const skipped: PreparedData['skipped'] = bad.map((b) => ({ line: b.line, index: b.index, reason: b.reason }));
  // the records are tokenised on threads of their own while the images are checked (fit_record.ts)
  const threads = opts.fitThreads ?? (records.length >= FIT_THREADS_FROM ? Math.min(MAX_FIT_THREADS, os.availableParallelism()) : 0);
  const stopFitting = new AbortController();
  const progress = { records: 0, recordsTotal: records.length, images: 0, imagesTotal: 0 };
  const report = opts.onProgress ? () => opts.onProgress!({ ...progress }) : () => undefined;
  const fitting = fitRecords(records, tokenizer, { template: model.config.template, maxLength, patches: model.numImageTokens }, threads, stopFitting.signal, (done) => {
    progress.records = done;
    report();
  });
  fitting.catch(() => undefined); // awaited below; a failed image check (--strict) ends it first
  try {
    const whyBroken = await checkImages(records, imageFolder, verify, strict, (done, total) => {
      [progress.images, progress.imagesTotal] = [done, total];
      report();
    });
  const imagePaths: string[] = [], imageNames: string[] = [];
  const indexOf = new Map<string, number>();
  const samples: PreparedData['samples'] = [];
  let truncated = 0;
  const mismatched: PreparedData['mismatched'] = [];
  const outcomes = await fitting;
  progress.records = records.length;
  report();
  records.forEach((r, k) => {
    const fit = outcomes[k];
    if ('error' in fit) {
      if (strict) throw new Error(`${fit.error} (--strict)`);
      skipped.push({ id: r.id, ...positions[k], reason: fit.error });
      return;
    }
    let image: number | null = null;
    if (r.image !== undefined) {
      const p = path.resolve(imageFolder, r.image);
      const why = whyBroken.get(p);
      if (why !== undefined) {
        skipped.push({ id: r.id, ...positions[k], reason: `image ${p} could not be read: ${why}` });
        return;
      }
      if (!indexOf.has(p)) {
        indexOf.set(p, imagePaths.length);
        imagePaths.push(p);
        imageNames.push(r.image);
      }
      image = indexOf.get(p)!;
    }
    if ('skip' in fit) {
      if (strict) throw new Error(`record '${r.id}': ${fit.skip} (--strict)`);
      skipped.push({ id: r.id, ...positions[k], reason: fit.skip });
      return;
    }
    if (fit.mismatch !== null) {
      if (strict) throw new Error(`tokenization mismatch in record ${r.id}: ${fit.mismatch}`);
      // LLaVA trains it with every label ignored: with an image, VW-LMM's KL on its patches still trains (the official
      // code's image_position_labels do not read the labels); text only, it would train nothing
      mismatched.push({ id: r.id, ...positions[k], reason: fit.mismatch, kept: fit.image });
      if (!fit.image) return;
    }
    if (fit.truncated) truncated++;
    // the record's own words and image key, as LLaVA counts them (not the tokens, nor an image the cut dropped)
    samples.push({ inputIds: fit.inputIds, labels: fit.labels, image: fit.image ? image : null, modalityLength: modalityLength(r.conversations as Turn[], r.image !== undefined) });
  });
  return { samples, imagePaths, imageNames, skipped, mismatches: mismatched.length, mismatched, truncated, verifiedImages: verify };
  } finally {
    stopFitting.abort();
  }
}

/**
 * Every distinct image of the records, checked once (decoded, or its header read; `concurrency` at a time), in
 * first-use order: why each broken one is, by path (--strict: the first is an error naming its first record).
 */
async function checkImages(records: readonly LlavaRecord[], imageFolder: string, verify: VerifyImages, strict: boolean,
  onProgress: (done: number, total: number) => void): Promise<Map<string, string>> {
  const order: string[] = [];
  const firstRecord = new Map<string, string>();
  for (const r of records) {
    if (r.image === undefined) continue;
    const p = path.resolve(imageFolder, r.image);
    if (!firstRecord.has(p)) {
      firstRecord.set(p, r.id);
      order.push(p);
    }
  }
  const whyBroken = new Map<string, string>();
  const concurrency = verify === 'decode' ? DECODE_CONCURRENCY : PROBE_CONCURRENCY;
  for (let i = 0; i < order.length; i += concurrency) {
    const chunk = order.slice(i, i + concurrency);
    // decoding is the check: the CLIP resize (4x the decode's time in JavaScript) cannot fail on a decoded image
    const results = await Promise.allSettled(chunk.map((p) => (verify === 'decode' ? loadImage(p) : probeImage(p))));
    results.forEach((res, k) => {
      if (res.status === 'fulfilled') return;
      const msg = (res.reason as Error).message;
      if (strict) throw new Error(`record '${firstRecord.get(chunk[k])}': ${msg} (--strict)`);
      whyBroken.set(chunk[k], msg);
    });
    const done = Math.min(order.length, i + concurrency);
    if (done % 256 < concurrency || done === order.length) onProgress(done, order.length);
  }
  return whyBroken;
}

/** A batch of samples with their images decoded now (the distinct ones of the batch, at once). */
export async function loadFileBatch(model: VwLmm, tokenizer: TextTokenizer, data: PreparedData, idx: number[], images?: ClipImageWorkers): Promise<ModelBatch> {
  const wanted = [...new Set(idx.map((i) => data.samples[i].image).filter((x): x is number => x !== null))];
  const pixels = new Map<number, Float32Array>();
  const decoded = await Promise.all(wanted.map((k) => pixelsOf(model, data.imagePaths[k], images).catch((e: Error) => {
    throw new Error(`${data.imagePaths[k]} could not be read during training (${data.verifiedImages === 'header' ? "only its header was checked before training: verifyImages 'decode' (vwlmm train --verify-images decode) finds such files up front and skips them" : 'it could when the file was prepared: changed on disk?'}): ${e.message}`);
  })));
  wanted.forEach((k, j) => pixels.set(k, decoded[j]));
  const b = collate(idx.map((i) => ({ inputIds: data.samples[i].inputIds, labels: data.samples[i].labels, image: data.samples[i].image === null ? null : pixels.get(data.samples[i].image!)! })), { padId: tokenizer.padId, numPatches: model.numImageTokens });
  return { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
}

/**
 * Why nothing (or what) was skipped, counted by reason with the first example of each, e.g. "8 skipped: 8 image
 * not found (first: /data/images/x.png); 0 tokenization mismatches".
 */
export function describeSkipped(data: { skipped: readonly { reason: string; line?: number; index?: number; id?: unknown }[]; mismatches?: number }, file: string): string {
  const kinds = new Map<string, { count: number; first: string }>();
  for (const s of data.skipped) {
    // "image F could not be read: why" (training's records), "image F: why" (answering's questions)
    const img = /^image (.+?)(?: could not be read)?: (.*)$/s.exec(s.reason);
    // the kind: an image's last-level cause ("file not found", "not a supported image ..."), else the reason's head
    // (a record's own problem after its name, "record 'ID': missing 'conversations'": the problem is the kind)
    const kind = img ? `image ${img[2].split(': ').pop()!.replace(/\s*\(.*$/s, '')}` : s.reason.replace(/^record '[^']*': /s, '').split(/[:(]/)[0].trim();
    const where = img ? img[1] : s.line !== undefined ? `${file}:${s.line}` : s.index !== undefined ? `${file}[${s.index}]` : s.id !== undefined ? `record '${s.id}'` : '?';
    const k = kinds.get(kind);
    if (k) k.count++;
    else kinds.set(kind, { count: 1, first: where });
  }
  const parts = [...kinds].sort((a, b) => b[1].count - a[1].count).map(([kind, k]) => `${k.count} ${kind} (first: ${k.first})`);
  return `${data.skipped.length} skipped${parts.length ? `: ${parts.join('; ')}` : ''}${data.mismatches !== undefined ? `; ${data.mismatches} tokenization mismatches` : ''}`;
}

const FILE_TRAIN_KEYS = {
  data: true, imageFolder: true, outDir: true, stage: true, steps: true, epochs: true, batchSize: true, gradAccum: true, lr: true, visionTowerLr: true,
  projectorLr: true, lora: true, warmupRatio: true, weightDecay: true, maxGradNorm: true, seed: true, saveEvery: true, trainable: true, strict: true,
  modelMaxLength: true, template: true, imageAspect: true, verifyImages: true, onPrepareProgress: true, groupByModalityLength: true, resume: true,
  onLog: true, handleSignals: true, nonFinite: true, gradientCheckpointing: true, residualDtype: true, dtype: true, frozenDtype: true, processGroup: true,
  gatherDtype: true, replay: true, logEvery: true, reportTo: true, loggingDir: true, extraFiles: true,
} satisfies Record<keyof FileTrainOptions, true>;

export async function trainOnFile(model: VwLmm, tokenizer: TextTokenizer, tokenizerSource: string, o: FileTrainOptions): Promise<{ data: PreparedData; state: TrainerState }> {
  // before anything is prepared (minutes on a large file): a misspelt option would otherwise be dropped without a word
  if (o === null || typeof o !== 'object') throw typeError('trainOnFile', 'options', 'an object (FileTrainOptions)', o);
  checkKeys('trainOnFile', 'option', o, FILE_TRAIN_KEYS);
  if (o.lora !== undefined) {
    if (o.lora === null || typeof o.lora !== 'object') throw typeError('trainOnFile', 'lora', '{ r, alpha, dropout }', o.lora);
    checkKeys('trainOnFile', 'key of lora', o.lora, LORA_KEYS);
  }
  const had = loraConfigOf(model);
  // a resumed (or adapted) model keeps its adapters: other settings asked for now would be silently ignored
  if (o.lora && had && (had.r !== o.lora.r || had.alpha !== o.lora.alpha || had.dropout !== o.lora.dropout))
    throw new Error(`trainOnFile: the model has LoRA adapters already (r ${had.r}, alpha ${had.alpha}, dropout ${had.dropout}, from its checkpoint), and this run asks for r ${o.lora.r}, alpha ${o.lora.alpha}, dropout ${o.lora.dropout}: give the same LoRA settings (or none) to continue with its adapters`);
  // any of LLaVA's conversation templates (a config may record each: `vwlmm train --template` takes them all)
  if (o.template !== undefined && !(typeof o.template === 'string' && Object.prototype.hasOwnProperty.call(TEMPLATES, o.template)))
    throw new RangeError(`trainOnFile: template must be one of ${Object.keys(TEMPLATES).map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(o.template)}`);
  if (o.imageAspect !== undefined && o.imageAspect !== 'square' && o.imageAspect !== 'pad') throw new RangeError(`trainOnFile: imageAspect must be 'square' or 'pad', got ${JSON.stringify(o.imageAspect)}`);
  // a resume that would prepare its data otherwise than the checkpoint's run: refused before the model is changed and the
  // data prepared (minutes on a large file); the samples' digest is compared by the Trainer once they are
  if (o.resume) checkDataSettings(o.resume.state, o.stage ?? 'train', fileDataSettings(model, o), { dir: o.resume.dir, partial: true });
  if (o.lora && !had) applyLora(model, { ...o.lora, seed: o.seed });
  // model.config is frozen: the settings a run may change go through updateConfig
  if (o.template !== undefined) model.updateConfig({ template: o.template });
  if (o.imageAspect !== undefined) model.updateConfig({ image: { aspect: o.imageAspect } });
  // the length the run cuts its samples to, as LLaVA's train.py records it (tokenizer_model_max_length): the next
  // stage's default
  model.updateConfig({ modelMaxLength: o.modelMaxLength ?? model.config.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH });
  // threads the run can spare make the images (none on a CPU whose cores the engine uses; on a GPU, beside the one
  // that drives it)
  const images = new ClipImageWorkers(clipPreprocessOptions(model.config), { workers: spareImageWorkers(model.device === 'cpu' ? engineThreads() : 1) });
  try {
    return await trainPrepared(model, tokenizer, tokenizerSource, o, images);
  } finally {
    await images.close();
  }
}

/**
 * Stage.dataSettings of a file's run, as its checkpoints record them: the conversation template and image aspect ratio
 * the run gives the model, the model max length its samples are cut to, and (once prepared) the samples' digest.
 */
function fileDataSettings(model: VwLmm, o: FileTrainOptions, data?: PreparedData): Record<string, string | number> {
  return {
    template: o.template ?? model.config.template, imageAspectRatio: o.imageAspect ?? model.config.image.aspect,
    modelMaxLength: o.modelMaxLength ?? model.config.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH,
    ...(data ? { samples: samplesDigest(data) } : {}),
  };
}

/**
 * sha256 (hex) of the prepared samples in order: each one's token ids, labels, image (as the data file names it, so
 * that the image folder given another way, or moved, keeps it; absolute paths in the records too) and modality
 * length. Another file, the same records in another order, other answers, or another tokenisation of them give
 * another digest. Streaming: ~1 s for LLaVA's 665K samples.
 */
export function samplesDigest(data: Pick<PreparedData, 'samples' | 'imageNames'>): string {
  const h = createHash('sha256');
  const head = new Float64Array(4);
  const bytes = (a: Int32Array | Float64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (const x of data.samples) {
    head[0] = x.inputIds.length;
    head[1] = x.labels.length;
    head[2] = x.image ?? -1;
    head[3] = x.modalityLength;
    h.update(bytes(head));
    h.update(bytes(x.inputIds));
    h.update(bytes(x.labels));
  }
  for (const name of data.imageNames) h.update(`${name}\u0000`);
  return h.digest('hex');
}

/** The CPU engine's compute threads (its GEMM's, as backendInfo reports them). */
function engineThreads(): number {
  return (cpu().backendInfo() as { threads?: number }).threads ?? os.availableParallelism();
}

async function trainPrepared(model: VwLmm, tokenizer: TextTokenizer, tokenizerSource: string, o: FileTrainOptions, images: ClipImageWorkers): Promise<{ data: PreparedData; state: TrainerState }> {
  const data = await prepareFile(model, tokenizer, o.data, o.imageFolder, o.strict, { modelMaxLength: o.modelMaxLength, verifyImages: o.verifyImages, onProgress: o.onPrepareProgress });
  if (data.samples.length === 0) throw new Error(`no trainable samples in ${o.data}: ${describeSkipped(data, o.data)}`);
  // samples kept with every label ignored train only their image's KL: a model without one would train on nothing
  if (model.config.vmWeight === 0 && !data.samples.some((x) => x.labels.some((l) => l !== IGNORE_INDEX)))
    throw new Error(`no trainable samples in ${o.data}: none has a supervised token (${data.samples.length} kept with every label ignored: ${data.mismatches} tokenization mismatches, the others cut to the model max length) and the model has no visual-word KL (vm_weight 0)`);
  const stage: Stage = {
    name: o.stage ?? 'train', size: data.samples.length, steps: o.steps, epochs: o.epochs, batchSize: o.batchSize, gradAccum: o.gradAccum,
    modalityLengths: o.groupByModalityLength ? data.samples.map((x) => x.modalityLength) : undefined,
    lr: o.lr, visionTowerLr: o.visionTowerLr, projectorLr: o.projectorLr, warmupRatio: o.warmupRatio, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, trainable: o.trainable,
    loadBatch: (idx) => loadFileBatch(model, tokenizer, data, idx, images),
    dataSettings: fileDataSettings(model, o, data),
  };
  if ((o.processGroup?.rank ?? 0) === 0) fs.mkdirSync(o.outDir, { recursive: true }); // rank 0 writes the run
  let trainer: Trainer;
  try {
    trainer = new Trainer(model, [stage], { seed: o.seed, outDir: o.outDir, saveEvery: o.saveEvery, onLog: o.onLog, checkpointFiles: { tokenizer: tokenizerSource, extraFiles: o.extraFiles }, handleSignals: o.handleSignals, nonFinite: o.nonFinite, gradientCheckpointing: o.gradientCheckpointing, residualDtype: o.residualDtype, dtype: o.dtype, frozenDtype: o.frozenDtype, processGroup: o.processGroup, gatherDtype: o.gatherDtype, replay: o.replay, logEvery: o.logEvery, reportTo: o.reportTo, loggingDir: o.loggingDir });
  } catch (e) {
    // a stage too small for its batch because records were skipped: the error says which and why
    if (data.skipped.length === 0 || !(e instanceof RangeError)) throw e;
    throw new RangeError(`${e.message} (${data.samples.length} samples of ${o.data}: ${describeSkipped(data, o.data)})`, { cause: e });
  }
  const state = await trainer.runAsync(o.resume);
  return { data, state };
}
