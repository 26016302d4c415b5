// Batching for LLaVA-style training (LLaVA's DataCollatorForSupervisedDataset + the sequence layout of
// prepare_inputs_labels_for_multimodal): each -200 placeholder becomes numPatches image feature positions,
// then the samples are right-padded to the longest expanded sequence. All arrays are flat, row-major
// [B, T], ready for Tensor.fromArray.
//
// Per position (b, t) of the batch:
//   tokenIds       the token id; padId at image feature positions and at padding
//   labels         the label of the position itself (-100 at image, padding and masked positions); the
//                  shift for next-token prediction is done by the model (see nextTokenTargets)
//   attentionMask  1 for real tokens and image positions, 0 for padding
// imagePositions[k * numPatches + p] = b * T + t of patch p of image k (images in sample order);
// imageBatchIndex[k] = b; pixelValues = the images' [3, S, S] arrays concatenated (null when none).
//
// The pixels are the batch's largest array (2 MB for 32 images of 75 px; 77 MB for 16 of 336 px): an ImageWriter
// writes an image's values straight into it (no array per image), and options.pixelValues lets a caller that makes
// its batches one at a time fill the same array each time (a fresh one costs its first-touch page faults every step).
import { checkKeys, typeError } from '../errors';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX } from './conversation';

/** An image that collate asks to write its preprocessed [3, S, S] values into the batch (e.g. normalizeRgbWriter). */
export interface ImageWriter {
  /** How many values it writes: 3 * S * S. */
  readonly values: number;
  /** Writes the values into out[offset .. offset + values). */
  writeInto(out: Float32Array, offset: number): void;
}

export interface CollateSample {
  inputIds: ArrayLike<number>;
  labels: ArrayLike<number>;
  /** The preprocessed image, [3, S, S] row-major, or a writer of it; needed iff inputIds hold the placeholder. */
  image?: Float32Array | ImageWriter | null;
}

export interface CollateOptions {
  /** Id written at image and padding positions (the tokenizer's padId: unk, 0 for LLaMA). */
  padId: number;
  /** The image placeholder id in inputIds (default -200). */
  imageTokenIndex?: number;
  /** Image feature positions per image (576 for CLIP ViT-L/14 at 336 px). */
  numPatches: number;
  /**
   * Optional cap on the expanded length (LLaVA cuts the embedded sequence at tokenizer_model_max_length);
   * text beyond it is dropped, and a sample whose image would be cut throws.
   */
  maxLength?: number;
  /**
   * The array to write the images into (at least numImages * 3 * S * S values); the batch's pixelValues is then its
   * leading part. Without it, collate allocates one. A caller that reuses it must be done with the previous batch.
   */
  pixelValues?: Float32Array;
}
const COLLATE_KEYS = {
  padId: true, imageTokenIndex: true, numPatches: true, maxLength: true, pixelValues: true,
} satisfies Record<keyof CollateOptions, true>;

export interface Batch {
  B: number;
  T: number;
  tokenIds: Int32Array;
  labels: Int32Array;
  attentionMask: Int32Array;
  imagePositions: Int32Array;
  imageBatchIndex: Int32Array;
  pixelValues: Float32Array | null;
  numImages: number;
  numPatches: number;
  /** S of the [3, S, S] images (0 when the batch has none). */
  imageSize: number;
  /** Unpadded expanded length of each sample. */
  lengths: Int32Array;
}

function fail(i: number, msg: string): never {
  throw new Error(`collate: sample ${i}: ${msg}`);
}

/** Pads, expands image placeholders and stacks images (see the file comment). */
export function collate(samples: readonly CollateSample[], options: CollateOptions): Batch {
  if (!Array.isArray(samples) || samples.length === 0) throw new Error('collate: expected a non-empty array of samples');
  if (options === null || typeof options !== 'object') throw typeError('collate', 'options', 'an object { padId, numPatches, imageTokenIndex?, maxLength?, pixelValues? }', options);
  checkKeys('collate', 'option', options, COLLATE_KEYS);
  const { padId, numPatches } = options;
  const imageTokenIndex = options.imageTokenIndex ?? IMAGE_TOKEN_INDEX;
  if (!Number.isInteger(padId) || padId < 0) throw new RangeError(`collate: padId must be a non-negative integer, got ${padId}`);
  if (!Number.isInteger(numPatches) || numPatches < 1) throw new RangeError(`collate: numPatches must be a positive integer, got ${numPatches}`);
  if (options.maxLength !== undefined && (!Number.isInteger(options.maxLength) || options.maxLength < 1)) {
    throw new RangeError(`collate: maxLength must be a positive integer, got ${options.maxLength}`);
  }
  if (options.pixelValues !== undefined && !(options.pixelValues instanceof Float32Array)) {
    throw new TypeError('collate: options.pixelValues must be a Float32Array');
  }

  let imageLen = -1;
  const lengths = new Int32Array(samples.length);
  const placeholderAt: number[] = [];
  samples.forEach((s, i) => {
    if (!s || typeof s !== 'object' || !s.inputIds || !s.labels) fail(i, 'expected { inputIds, labels, image? }');
    const n = s.inputIds.length;
    if (s.labels.length !== n) fail(i, `inputIds has ${n} entries but labels has ${s.labels.length}`);
    if (n === 0) fail(i, 'empty sequence');
    let at = -1;
    for (let t = 0; t < n; t++) {
      const id = s.inputIds[t];
      const lab = s.labels[t];
      if (!Number.isInteger(id)) fail(i, `inputIds[${t}] = ${id} is not an integer`);
      if (!Number.isInteger(lab) || (lab < 0 && lab !== IGNORE_INDEX)) fail(i, `labels[${t}] = ${lab} is neither a token id nor ${IGNORE_INDEX}`);
      if (id === imageTokenIndex) {
        if (at >= 0) fail(i, `more than one image placeholder (${imageTokenIndex}) in inputIds (at ${at} and ${t}); one image per sample is supported`);
        at = t;
      } else if (id < 0) {
        fail(i, `inputIds[${t}] = ${id} is negative and not the image placeholder ${imageTokenIndex}`);
      }
    }
    const img = s.image ?? null;
    if (at >= 0 && img === null) fail(i, `has an image placeholder (${imageTokenIndex}) at position ${at} but no image`);
    if (at < 0 && img !== null) fail(i, `has an image but no image placeholder (${imageTokenIndex}) in inputIds`);
    if (img !== null) {
      const len = imageValues(img);
      if (len < 0) fail(i, 'image must be a Float32Array [3, S, S] or an ImageWriter { values, writeInto }');
      const S = Math.round(Math.sqrt(len / 3));
      if (len === 0 || 3 * S * S !== len) fail(i, `image has ${len} values, not 3 * S * S`);
      if (imageLen >= 0 && len !== imageLen) fail(i, `image has ${len} values but an earlier image has ${imageLen}`);
      imageLen = len;
    }
    placeholderAt.push(at);
    let len = at >= 0 ? n - 1 + numPatches : n;
    if (options.maxLength !== undefined && len > options.maxLength) {
      if (at >= 0 && at + numPatches > options.maxLength) {
        fail(i, `maxLength ${options.maxLength} would cut its image (placeholder at ${at}, ${numPatches} patches)`);
      }
      len = options.maxLength;
    }
    lengths[i] = len;
  });

  const B = samples.length;
  let T = 0;
  for (const l of lengths) if (l > T) T = l;
  const tokenIds = new Int32Array(B * T).fill(padId);
  const labels = new Int32Array(B * T).fill(IGNORE_INDEX);
  const attentionMask = new Int32Array(B * T);
  const numImages = placeholderAt.filter((a) => a >= 0).length;
  const imagePositions = new Int32Array(numImages * numPatches);
  const imageBatchIndex = new Int32Array(numImages);
  const pixelValues = numImages > 0 ? pixelArray(options.pixelValues, numImages * imageLen) : null;

  let k = 0;
  samples.forEach((s, b) => {
    const row = b * T;
    const len = lengths[b];
    let t = 0;
    for (let src = 0; src < s.inputIds.length && t < len; src++) {
      const id = s.inputIds[src];
      if (id === imageTokenIndex) {
        for (let p = 0; p < numPatches; p++, t++) {
          attentionMask[row + t] = 1;
          imagePositions[k * numPatches + p] = row + t;
        }
        imageBatchIndex[k] = b;
        const img = s.image as Float32Array | ImageWriter;
        if (img instanceof Float32Array) (pixelValues as Float32Array).set(img, k * imageLen);
        else img.writeInto(pixelValues as Float32Array, k * imageLen);
        k++;
      } else {
        tokenIds[row + t] = id;
        labels[row + t] = s.labels[src];
        attentionMask[row + t] = 1;
        t++;
      }
    }
  });

  return {
    B, T, tokenIds, labels, attentionMask, imagePositions, imageBatchIndex, pixelValues, numImages, numPatches,
    imageSize: numImages > 0 ? Math.round(Math.sqrt(imageLen / 3)) : 0, lengths,
  };
}

/** The number of values of a sample's image, -1 when it is neither a Float32Array nor an ImageWriter. */
function imageValues(img: unknown): number {
  if (img instanceof Float32Array) return img.length;
  if (typeof img !== 'object' || img === null) return -1;
  const w = img as Partial<ImageWriter>;
  return typeof w.writeInto === 'function' && Number.isInteger(w.values) && (w.values as number) >= 0 ? (w.values as number) : -1;
}

/** The batch's pixel array: the leading n values of the caller's array, or a new one. */
function pixelArray(given: Float32Array | undefined, n: number): Float32Array {
  if (given === undefined) return new Float32Array(n);
  if (given.length < n) throw new RangeError(`collate: options.pixelValues has ${given.length} values but the batch's images need ${n}`);
  return given.length === n ? given : given.subarray(0, n);
}

/** Targets of the cross-entropy at each position: row b*T+t holds labels[b*T+t+1] (-100 at t = T-1). */
export function nextTokenTargets(batch: Pick<Batch, 'B' | 'T' | 'labels'>): Int32Array {
  const { B, T, labels } = batch;
  const out = new Int32Array(B * T).fill(IGNORE_INDEX);
  for (let b = 0; b < B; b++) {
    const row = b * T;
    for (let t = 0; t + 1 < T; t++) out[row + t] = labels[row + t + 1];
  }
  return out;
}

/**
 * VW-LMM's visual-word KL rows (VISUAL_WORDS.md section 2): every flat position b*T+t whose next position
 * t+1 holds an image feature, i.e. the token just before the first patch and patches 1..P-1, paired with
 * the index (into imagePositions, = k * numPatches + p) of the feature at t+1, whose vm_head softmax is the
 * target. Rows are in increasing order. An image at t = 0 has no row for its first patch.
 */
export function visualWordRows(batch: Pick<Batch, 'T' | 'imagePositions'>): { rows: Int32Array; featureIndex: Int32Array } {
  const { T, imagePositions } = batch;
  const rows: number[] = [];
  const featureIndex: number[] = [];
  for (let f = 0; f < imagePositions.length; f++) {
    const pos = imagePositions[f];
    if (pos % T === 0) continue;
    rows.push(pos - 1);
    featureIndex.push(f);
  }
  return { rows: Int32Array.from(rows), featureIndex: Int32Array.from(featureIndex) };
}
