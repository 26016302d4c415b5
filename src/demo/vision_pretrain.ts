// Stage 0 of the demo: pretraining the vision tower, standing in for the pretrained CLIP ViT that LLaVA
// starts from (the demo trains everything from scratch, offline). The tower reads each training image; one
// learned query per colour attends over its output tokens (single-head attention, the lookup the LLM later
// does with the colour word) and linear heads predict that object's attributes: shape, left, top, the
// shapes of its closest and furthest objects, and how many objects share its shape. The queries and heads
// are discarded afterwards, as CLIP's text tower is.
// Why: through the LLM alone the tower never learned shapes within the budget (caption shape words at
// 49-58% after 2,000 steps, benchmarks/RESULTS.md), while direct supervision teaches them in ~1,500 steps.
//
// It runs on the Trainer (src/train/trainer.ts) as one stage with its own loss (Stage.loss: the read-out's
// cross-entropies, from the batch's arrays made by Stage.prepare, so the Trainer replays its steps as op programs)
// and the queries and heads as the stage's extraParameters, so schedule, clipping,
// non-finite steps and stop requests are the Trainer's. The Trainer gets no outDir: stage 0 writes neither
// metrics.jsonl nor a checkpoint (the demo's run directory holds stages 1 and 2; a stop here leaves nothing
// to resume, and a resumed demo skips stage 0), and its records reach onLog as { stage: 'vision', step, loss, elapsed }.
import type { ProcessGroup } from '../distributed/process_group';
import type { ComputeDtype } from '../amp';
import { noGrad } from '../autograd';
import { answerFor, COLOURS, QuestionKind } from '../data/sort_of_clevr';
import { normalizeRgbInto } from '../data/images';
import { VwLmm } from '../model/vwlmm';
import * as F from '../functional';
import { Generator } from '../random';
import { scope, Tensor } from '../tensor';
import { StopRequest } from '../train/interrupt';
import { Stage, Trainer } from '../train/trainer';
import { objectPatchWeights, SplitData } from './task';

/** The attributes predicted per object, with their classes (answers as the question templates give them). */
export const PRETRAIN_ATTRIBUTES: { kind: QuestionKind; classes: string[] }[] = [
  { kind: 'shape', classes: ['square', 'circle'] },
  { kind: 'left', classes: ['yes', 'no'] },
  { kind: 'top', classes: ['yes', 'no'] },
  { kind: 'closest', classes: ['square', 'circle'] },
  { kind: 'furthest', classes: ['square', 'circle'] },
  { kind: 'count', classes: ['1', '2', '3', '4', '5', '6'] },
];

export interface VisionPretrainOptions {
  steps: number;
  batchSize: number;
  lr: number;
  seed: number;
  mean: readonly number[];
  std: readonly number[];
  /**
   * Checked by the Trainer before every step: once requested, stage 0 stops with TrainingInterrupted (its
   * `checkpoint` null: stage 0 writes none).
   */
  stop?: StopRequest;
  /** Called every logEvery steps (and after the last) with { stage: 'vision', step, loss, elapsed } (elapsed: seconds since stage 0 started). */
  onLog?: (rec: Record<string, unknown>) => void;
  logEvery?: number;
  /** The compute dtype (TrainerOptions.dtype; default: the device's). */
  dtype?: ComputeDtype;
  /** Data-parallel over this group (TrainerOptions.processGroup): batchSize is the global batch, split over the ranks. */
  processGroup?: ProcessGroup;
  /** TrainerOptions.replay (default true): the steps replayed as op programs, the same numbers without JavaScript per op. */
  replay?: boolean;
  /**
   * How an object's attributes are read from the tower (default 'attention'):
   * - 'attention': one learned query per (attribute, colour) attends over all patches. The read-out can then do part
   *   of a relation itself (the closest query picks the patch nearest the colour), so the relation is not where the LLM
   *   reads the object: linear probes of the object's own patches found closest / furthest at 66% while this read-out
   *   scored 89% / 94% (benchmarks/tower_probe.ts).
   * - 'object': every attribute from the object's own patches (their mean, weighted by the object's pixels in each:
   *   objectPatchWeights), so the tower must put the relations at the object, where the colour word's lookup finds it.
   *   Alone it never asks the tower to make colours stand apart for a lookup: the LLM then failed to bind the colour
   *   word to its object (non-relational 56-62% after 5,000 question steps).
   * - 'both': the two read-outs' losses summed (heads of their own), from one forward of the tower.
   */
  readout?: 'attention' | 'object' | 'both';
}

export interface VisionPretrainResult {
  seconds: number;
  /** Per-attribute accuracy on `evalSplit` (when given). */
  accuracy: Record<string, number>;
}

/** One rank's share of a global batch (the whole batch without a group); a batch the ranks cannot split evenly is refused. */
export function rankShare(where: string, batch: number, group: ProcessGroup | undefined): number {
  const world = group?.worldSize ?? 1;
  if (batch % world !== 0) throw new RangeError(`${where}: the batch of ${batch} does not split over ${world} data-parallel ranks`);
  return batch / world;
}

/** Targets [B * 6] per attribute, objects in colour order. */
function targets(split: SplitData, idx: number[]): Int32Array[] {
  return PRETRAIN_ATTRIBUTES.map(({ kind, classes }) => {
    const t = new Int32Array(idx.length * COLOURS.length);
    idx.forEach((img, b) => {
      const sc = split.scenes[img];
      COLOURS.forEach((c, j) => {
        const k = sc.objects.findIndex((o) => o.colour === c);
        t[b * COLOURS.length + j] = k < 0 ? -100 : classes.indexOf(answerFor(sc, kind, k));
      });
    });
    return t;
  });
}

/** Stage 0 (async: the Trainer yields to the event loop after every step, so signal handlers run). */
export async function pretrainVisionTower(model: VwLmm, train: SplitData, opts: VisionPretrainOptions, evalSplit?: SplitData): Promise<VisionPretrainResult> {
  const t0 = Date.now();
  const cfg = model.config, D = cfg.vision.hiddenSize, S = cfg.vision.imageSize, nC = COLOURS.length;
  const gen = new Generator(opts.seed).fork('vision-pretrain');
  const param = (n: number, shape: number[], std: number) => {
    const t = Tensor.fromArray(Float32Array.from(gen.normals(n), (v) => v * std), shape, { device: model.device });
    t.requiresGrad = true;
    return t;
  };
  // one query per (attribute, colour): a shared query per colour learned the attributes far slower together
  // (shape 66% after 1,500 steps) than one attribute alone (shape 97% after 1,000)
  const K = PRETRAIN_ATTRIBUTES.length;
  const queries = param(K * nC * D, [1, K * nC, 1, D], 0.1);
  const kinds = opts.readout === 'both' ? ['attention', 'object'] as const : [opts.readout ?? 'attention'];
  // per read-out kind, one linear head per attribute
  const heads = kinds.map(() => PRETRAIN_ATTRIBUTES.map((a) => param(a.classes.length * D, [a.classes.length, D], 0.05)));
  // A batch's host data, in one list (Stage.prepare): its pixels [B, 3, S, S], with the object read-out its pooling
  // matrix (objectPoolMatrix), then the targets per attribute. The step uploads nothing else, so the Trainer replays
  // it as an op program (src/program.ts).
  // one pixel array for every batch: the tower's input tensor copies it at once, and a new 2 MB array a step cost
  // ~1 ms in zeroing and page faults, half of the batch's preparation
  let pixels = new Float32Array(0);
  const withPool = kinds.includes('object');
  const prepare = (split: SplitData, idx: number[]): ArrayBufferView[] => {
    if (pixels.length !== idx.length * 3 * S * S) pixels = new Float32Array(idx.length * 3 * S * S);
    pixelsOf(split, idx, S, opts, pixels);
    return [pixels, ...(withPool ? [objectPoolMatrix(model, split, idx)] : []), ...targets(split, idx)];
  };
  // per read-out kind, per attribute, [B * 6, D]: one forward of the tower feeds every read-out
  const readout = (m: VwLmm, data: ArrayBufferView[]): Tensor[][] => {
    const B = data[0].byteLength / (4 * 3 * S * S);
    const feats = towerPatches(m, data[0] as Float32Array, B);
    return kinds.map((k) => k === 'object' ? new Array(K).fill(objectReadout(m, data[1] as Float32Array, feats)) : readoutOf(m, queries, feats));
  };
  const stage: Stage = {
    name: 'vision', size: train.scenes.length, steps: opts.steps, batchSize: rankShare('stage 0', opts.batchSize, opts.processGroup), lr: opts.lr,
    warmupRatio: 0.03, weightDecay: 0, maxGradNorm: 1.0,
    // only the tower trains here (and the read-out's own queries and heads); the LLM side is left untouched
    trainable: { visionTower: true },
    extraParameters: [...(kinds.includes('attention') ? [queries] : []), ...heads.flat()],
    prepare: (idx) => prepare(train, idx),
    loss: (m, idx, data = prepare(train, idx)) => {
      const tg = (data.slice(withPool ? 2 : 1) as Int32Array[]).map((t) => Tensor.fromArray(t, [t.length], { device: m.device }));
      const h = readout(m, data);
      return heads.flatMap((hs, r) => hs.map((w, a) => F.linearCrossEntropy(h[r][a], w, tg[a]))).reduce((x, y) => F.add(x, y));
    },
  };
  try {
    await new Trainer(model, [stage], {
      // the data order's own seed: with opts.seed it would replay the order of the demo's first caption stage
      seed: gen.int(2 ** 31),
      stop: opts.stop, logEvery: opts.logEvery ?? 100, dtype: opts.dtype, processGroup: opts.processGroup, replay: opts.replay,
      // train records in stage 0's own shape, skipped (NaN / Inf) steps and replay records; not its 'summary': the demo's
      // log has one, the main run's (estimate.ts times that run by it)
      onLog: (r) => {
        if (r.type === 'train') opts.onLog?.({ stage: 'vision', step: r.step, loss: r.loss, elapsed: r.elapsed });
        else if (r.type === 'nonfinite' || r.type === 'replay') opts.onLog?.(r);
      },
    }).runAsync();
    // per attribute; with 'both' the object read-out's as object_<attribute>
    const accuracy = evalSplit ? Object.assign({}, ...evaluateReadout((sp, idx) => {
      const data = prepare(sp, idx);
      return { h: readout(model, data), targets: data.slice(withPool ? 2 : 1) as Int32Array[] };
    }, heads, evalSplit).map((acc, r) =>
      Object.fromEntries(Object.entries(acc).map(([a, v]) => [r > 0 ? `${kinds[r]}_${a}` : a, v])))) as Record<string, number> : {};
    return { seconds: (Date.now() - t0) / 1000, accuracy };
  } finally {
    [queries, ...heads.flat()].forEach((t) => t.dispose());
    model.setTrainable(false); // the Trainer leaves the stage's parts trainable; the tower stays frozen from here
  }
}

/** The batch's images, normalised into `pixels` ([B, 3, S, S]). */
function pixelsOf(split: SplitData, idx: number[], S: number, opts: { mean: readonly number[]; std: readonly number[] }, pixels: Float32Array): Float32Array {
  idx.forEach((i, b) => normalizeRgbInto(pixels, b * 3 * S * S, split.rgb[i], S, opts.mean, opts.std));
  return pixels;
}

/** [B, P, D]: the tower's selected features (what the projector gets). */
function towerPatches(model: VwLmm, pixels: Float32Array, B: number): Tensor {
  const cfg = model.config, S = cfg.vision.imageSize;
  const out = model.visionTower.vision_model.forward(Tensor.fromArray(pixels, [B, 3, S, S], { device: model.device }), { upToLayer: cfg.selectLayer }).lastHiddenState;
  return cfg.selectFeature === 'patch' ? F.slice(out, 1, 1, out.shape[1] - 1) : out;
}

/** Per attribute, [B * 6, D]: each (attribute, colour) query's attention read-out of the tower's selected features [B, P, D]. */
function readoutOf(model: VwLmm, queries: Tensor, feats: Tensor): Tensor[] {
  const D = model.config.vision.hiddenSize, nC = COLOURS.length, K = PRETRAIN_ATTRIBUTES.length;
  const [B, P] = feats.shape;
  const kv = F.reshape(feats, [B, P, 1, D]);
  const q = F.concat(Array.from({ length: B }, () => queries), 0); // [B, K * 6, 1, D]
  const o = F.reshape(F.attention(q, kv, kv), [B, K, nC, D]);
  return PRETRAIN_ATTRIBUTES.map((_, a) => F.reshape(F.slice(o, 1, a, 1), [B * nC, D]));
}

/**
 * [B * 6, D]: each object's own patches of the tower's selected features, averaged with objectPatchWeights (objects in
 * colour order; a colour the scene lacks gets a zero row, its targets -100).
 */
export function objectReadoutOf(model: VwLmm, split: SplitData, idx: number[], feats: Tensor): Tensor {
  return objectReadout(model, objectPoolMatrix(model, split, idx), feats);
}

/** [B * 6, B * P]: row (b, colour) holds objectPatchWeights of that object of image b at its patches (a missing colour: zeros). */
function objectPoolMatrix(model: VwLmm, split: SplitData, idx: number[]): Float32Array {
  const cfg = model.config, S = cfg.vision.imageSize, p = cfg.vision.patchSize, nC = COLOURS.length, B = idx.length;
  if (cfg.selectFeature !== 'patch') throw new RangeError(`stage 0: readout 'object' needs selectFeature 'patch', not '${cfg.selectFeature}'`);
  const grid = Math.floor(S / p), P = grid * grid;
  const pool = new Float32Array(B * nC * B * P);
  idx.forEach((img, b) => {
    const sc = split.scenes[img], cells = objectPatchWeights(sc, p, grid);
    COLOURS.forEach((c, j) => {
      const k = sc.objects.findIndex((o) => o.colour === c);
      if (k >= 0) for (const cell of cells[k]) pool[(b * nC + j) * B * P + b * P + cell.patch] = cell.weight;
    });
  });
  return pool;
}

/** The object read-out of features [B, P, D] with the pooling matrix of objectPoolMatrix. */
function objectReadout(model: VwLmm, pool: Float32Array, feats: Tensor): Tensor {
  const D = model.config.vision.hiddenSize, [B, P] = feats.shape;
  return F.matmul(Tensor.fromArray(pool, [B * COLOURS.length, B * P], { device: model.device }), F.reshape(feats, [B * P, D]));
}

/** Per read-out kind, per attribute, the accuracy on `split` (every kind from one forward of the tower per batch). */
function evaluateReadout(readout: (split: SplitData, idx: number[]) => { h: Tensor[][]; targets: Int32Array[] }, heads: Tensor[][], split: SplitData): Record<string, number>[] {
  const nC = COLOURS.length;
  const right = heads.map((hs) => new Array(hs.length).fill(0));
  let count = 0;
  for (let s = 0; s < split.scenes.length; s += 50) {
    const idx = Array.from({ length: Math.min(50, split.scenes.length - s) }, (_, j) => s + j);
    noGrad(() => scope(() => {
      const { h, targets: tg } = readout(split, idx);
      heads.forEach((hs, k) => hs.forEach((w, a) => {
        const logits = F.matmul(h[k][a], w, { transB: true }).toArray() as Float32Array;
        const C = w.shape[0];
        for (let r = 0; r < idx.length * nC; r++) {
          let best = 0;
          for (let c = 1; c < C; c++) if (logits[r * C + c] > logits[r * C + best]) best = c;
          if (best === tg[a][r]) right[k][a]++;
        }
      }));
    }));
    count += idx.length * nC;
  }
  return right.map((rk) => Object.fromEntries(PRETRAIN_ATTRIBUTES.map((a, i) => [a.kind, rk[i] / count])));
}
