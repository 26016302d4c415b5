// Training on a LLaVA-format file (what `vwlmm train` runs): records are tokenised once with the model's
// conversation template (mismatches counted and reported, never trained on), images decoded and
// preprocessed once (broken or missing ones skipped and counted), then the Trainer runs one stage.
import * as fs from 'fs';
import * as path from 'path';
import { collate, nextTokenTargets, visualWordRows } from '../data/collate';
import { tokenizeConversation, Turn } from '../data/conversation';
import { readLlavaRecords } from '../data/dataset';
import { loadImage, preprocessClip } from '../data/images';
import { TextTokenizer } from '../data/tokenizer';
import { VwLmm } from '../model/vwlmm';
import { Stage, Trainable, Trainer, TrainerState } from './trainer';
import { HostTensor } from '../io/safetensors';

export interface FileTrainOptions {
  data: string;
  imageFolder: string;
  outDir: string;
  steps?: number;
  epochs?: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  /** The vision tower's peak learning rate when it trains (LLaVA's mm_vision_tower_lr); absent = lr. */
  visionTowerLr?: number;
  warmupRatio: number;
  weightDecay: number;
  maxGradNorm: number;
  seed: number;
  saveEvery: number;
  trainable: Trainable;
  strict: boolean;
  resume?: { state: TrainerState; optimizer: Map<string, HostTensor> };
  onLog?: (r: Record<string, unknown>) => void;
  /** SIGINT / SIGTERM stop training cleanly (checkpoint, then TrainingInterrupted); see Trainer.runAsync. */
  handleSignals?: boolean;
  /** NaN / Inf loss or gradient norm: skip the step (default) or stop with a NonFiniteError. */
  nonFinite?: 'skip' | 'stop';
  /** Recompute every decoder and vision layer in the backward (less memory; see VwLmm.gradientCheckpointing). */
  gradientCheckpointing?: boolean;
}

export interface PreparedData {
  samples: { inputIds: number[]; labels: number[]; image: number | null }[];
  images: Float32Array[];
  /** Records not trained on: a broken line (JSONL line / JSON list index), an unreadable image. */
  skipped: { id?: string; line?: number; index?: number; reason: string }[];
  mismatches: number;
}

export async function prepareFile(model: VwLmm, tokenizer: TextTokenizer, file: string, imageFolder: string, strict: boolean): Promise<PreparedData> {
  const { records, skipped: bad } = readLlavaRecords(file, { strict });
  const skipped: PreparedData['skipped'] = bad.map((b) => ({ line: b.line, index: b.index, reason: b.reason }));
  const cfg = model.config;
  const images: Float32Array[] = [];
  const byPath = new Map<string, number>();
  const whyBroken = new Map<string, string>();
  const samples: PreparedData['samples'] = [];
  let mismatches = 0;
  for (const r of records) {
    let image: number | null = null;
    if (r.image !== undefined) {
      const p = path.resolve(imageFolder, r.image);
      if (!byPath.has(p)) {
        try {
          const img = await loadImage(p);
          images.push(await preprocessClip(img, { size: cfg.image.size, mean: cfg.image.mean, std: cfg.image.std, aspect: cfg.image.aspect === 'pad' ? 'pad' : 'resize_crop' }));
          byPath.set(p, images.length - 1);
        } catch (e) {
          if (strict) throw new Error(`record '${r.id}': ${(e as Error).message} (--strict)`);
          byPath.set(p, -1);
          whyBroken.set(p, (e as Error).message);
        }
      }
      image = byPath.get(p)!;
      if (image < 0) {
        skipped.push({ id: r.id, reason: `image ${p} could not be read: ${whyBroken.get(p)}` });
        continue;
      }
    }
    const t = tokenizeConversation(r.conversations as Turn[], tokenizer, cfg.template);
    if (t.mismatch) {
      mismatches++;
      if (strict) throw new Error(`tokenization mismatch in record ${r.id}: ${t.mismatchDetail}`);
      continue;
    }
    samples.push({ inputIds: t.inputIds, labels: t.labels, image });
  }
  return { samples, images, skipped, mismatches };
}

export async function trainOnFile(model: VwLmm, tokenizer: TextTokenizer, tokenizerJson: string, o: FileTrainOptions): Promise<{ data: PreparedData; state: TrainerState }> {
  const data = await prepareFile(model, tokenizer, o.data, o.imageFolder, o.strict);
  if (data.samples.length === 0) throw new Error(`no trainable samples in ${o.data} (${data.skipped.length} skipped, ${data.mismatches} tokenization mismatches)`);
  const stage: Stage = {
    name: 'train', size: data.samples.length, steps: o.steps, epochs: o.epochs, batchSize: o.batchSize, gradAccum: o.gradAccum,
    lr: o.lr, visionTowerLr: o.visionTowerLr, warmupRatio: o.warmupRatio, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, trainable: o.trainable,
    makeBatch: (idx) => {
      const b = collate(idx.map((i) => ({ inputIds: data.samples[i].inputIds, labels: data.samples[i].labels, image: data.samples[i].image === null ? null : data.images[data.samples[i].image!] })), { padId: tokenizer.padId, numPatches: model.numImageTokens });
      return { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
    },
  };
  fs.mkdirSync(o.outDir, { recursive: true });
  const trainer = new Trainer(model, [stage], { seed: o.seed, outDir: o.outDir, saveEvery: o.saveEvery, onLog: o.onLog, checkpointFiles: { tokenizer: tokenizerJson }, handleSignals: o.handleSignals, nonFinite: o.nonFinite, gradientCheckpointing: o.gradientCheckpointing });
  const state = await trainer.runAsync(o.resume);
  return { data, state };
}
