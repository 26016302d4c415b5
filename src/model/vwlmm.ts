// VW-LMM (VISUAL_WORDS.md sections 1-3): CLIP vision tower -> projector -> LLaMA decoder with lm_head and,
// new in VW-LMM, vm_head. Loss = CE(text) + vmWeight * KL(visual word of the next patch || prediction),
// both through the fused kernels; `pif` feeds patches as softmax(vm_head(x)) . E. With vmWeight 0 and
// pif off it is plain LLaVA (no vm_head).
//
// Parameter names follow the original LLaVA checkpoints: model.embed_tokens, model.layers.N,
// model.norm, model.mm_projector.{0,2}, model.vision_tower.vision_tower.vision_model.* (when the tower
// is embedded), lm_head, vm_head.
import { autocast, ComputeDtype, defaultComputeDtype, parseComputeDtype } from '../amp';
import { noGrad } from '../autograd';
import * as F from '../functional';
import { DeviceSpec, useDevice } from '../device';
import { checkKeys, rangeError, typeError } from '../errors';
import { checkSeed, Generator } from '../random';
import { scope, Tensor } from '../tensor';
import { cuda } from '../native';
import * as os from 'os';
import { ClipVisionModel } from '../nn/clip';
import { Linear } from '../nn/layers';
import { KVCache, LlamaDecoder } from '../nn/llama';
import { InitOptions, Module } from '../nn/module';
import { parseProjectorType, Projector } from '../nn/projector';
import { argmax, LogitsSampler } from './sampling';
import { visualWordRows } from '../data/collate';
import { hasVmHead, numImageTokens, TemplateName, validateConfig, VwLmmConfig } from './config';

/** A collated batch as the model consumes it (see src/data/collate.ts for how it is made). */
export interface ModelBatch {
  B: number;
  T: number;
  /** [B*T] token ids; image and padding positions hold any valid id (ignored). */
  tokenIds: Int32Array;
  /** [B*T] 1 = real token or image position, 0 = padding. */
  attentionMask: Int32Array;
  /** [nImages * P] flat positions b*T + t of the image features, image by image, patch by patch. */
  imagePositions: Int32Array;
  /** [nImages * 3 * S * S] preprocessed pixels (CHW), or null for text-only batches. */
  pixelValues: Float32Array | null;
  /** [B*T] next-token targets for the CE at each position (-100 = none). */
  targets?: Int32Array;
  /**
   * KL rows: positions t whose t+1 is an image feature, and that feature's index. Absent: all of them, as the method
   * has it (visualWordRows); given: a subset of those pairs, each at most once (anything else is refused).
   */
  klRows?: { rows: Int32Array; featureIndex: Int32Array };
}

export interface LossOutput {
  loss: Tensor;
  /** The text cross-entropy and the image-token KL ([1] float32 on the model's device; klLoss null without KL rows). */
  ceLoss: Tensor;
  klLoss: Tensor | null;
  /** Their values: each read from the device when first asked for (a host synchronisation on CUDA). */
  readonly ce: number;
  readonly kl: number;
  /** Supervised text tokens and KL rows in the batch. */
  textTokens: number;
  klRows: number;
}

/**
 * What `make` derives from a batch's sizes and image positions, made once per batch object (again if they have changed
 * since: compared by value, as a caller may refill the same arrays; a few thousand integers, once a step), so that it
 * is one of the batch's arrays: what an op program of the step takes as an input (src/train/replay.ts).
 */
function perBatch<T>(memo: WeakMap<object, { positions: Int32Array; B: number; T: number; value: T }>, batch: Pick<ModelBatch, 'B' | 'T' | 'imagePositions'>, make: () => T): T {
  const { B, T, imagePositions } = batch;
  const known = memo.get(batch);
  if (known && known.B === B && known.T === T && known.positions.length === imagePositions.length && known.positions.every((p, k) => p === imagePositions[k])) return known.value;
  const value = make();
  memo.set(batch, { positions: imagePositions.slice(), B, T, value });
  return value;
}

const spliceIndexes = new WeakMap<object, { positions: Int32Array; B: number; T: number; value: Int32Array }>();

/**
 * [B*T] the row of concat([token embeddings, image features]) each position of the batch takes: its own token, or
 * image feature k at imagePositions[k] (perBatch: one array per batch object).
 */
export function spliceIndexOf(batch: Pick<ModelBatch, 'B' | 'T' | 'imagePositions'>): Int32Array {
  return perBatch(spliceIndexes, batch, () => {
    const { B, T, imagePositions } = batch;
    const idx = new Int32Array(B * T);
    for (let i = 0; i < idx.length; i++) idx[i] = i;
    imagePositions.forEach((pos, k) => {
      if (!Number.isInteger(pos) || pos < 0 || pos >= B * T) throw new RangeError(`VwLmm: image position ${pos} is outside the batch (${B} x ${T})`);
      idx[pos] = B * T + k;
    });
    return idx;
  });
}

const derivedKlRows = new WeakMap<object, { positions: Int32Array; B: number; T: number; value: { rows: Int32Array; featureIndex: Int32Array } }>();

/** The batch's visual-word KL rows: batch.klRows as given, else the method's (visualWordRows, perBatch). */
export function klRowsOf(batch: Pick<ModelBatch, 'B' | 'T' | 'imagePositions' | 'klRows'>): { rows: Int32Array; featureIndex: Int32Array } {
  return batch.klRows ?? perBatch(derivedKlRows, batch, () => visualWordRows(batch));
}

/**
 * A lower bound of a model's weight bytes (its matrices; norms and biases left out), `bytes` a value: what creating it
 * would allocate at the least, computed without allocating (in doubles: a config's sizes may be absurd).
 */
function weightBytesAtLeast(c: VwLmmConfig, bytes: number): number {
  const { hiddenSize: D, intermediateSize: I, numLayers: L, vocabSize: V, numHeads: H, numKvHeads: KV } = c.llm;
  const kv = (D / H) * KV;
  const llm = L * (2 * D * D + 2 * D * kv + 3 * D * I) + (hasVmHead(c) ? 3 : 2) * V * D;
  const v = c.vision, grid = (v.imageSize / v.patchSize) ** 2;
  const tower = v.numLayers * (4 * v.hiddenSize * v.hiddenSize + 2 * v.hiddenSize * v.intermediateSize) + (grid + 1) * v.hiddenSize + v.numChannels * v.patchSize * v.patchSize * v.hiddenSize;
  const projector = v.hiddenSize * D + (parseProjectorType(c.projectorType) - 1) * D * D;
  return (llm + tower + projector) * bytes;
}

/** Configs made by frozenConfig: they are deep-frozen copies already. */
const frozenConfigs = new WeakSet<object>();

/**
 * A checked (validateConfig), deep-frozen copy of `c`: what a model keeps, so that no edit of the caller's object or
 * of `model.config` changes a built model behind its weights (its loss, or the config.json it saves). One that is
 * such a copy already is returned as it is.
 */
function frozenConfig(c: VwLmmConfig): VwLmmConfig {
  if (typeof c === 'object' && c !== null && frozenConfigs.has(c)) return c;
  const out = validateConfig(c);
  const freeze = (o: object) => {
    for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) freeze(v);
    Object.freeze(o);
  };
  freeze(out);
  frozenConfigs.add(out);
  return out;
}

/** LLaVA's LlavaLlamaModel: the LLaMA decoder plus mm_projector and vision_tower (VwLmm.model); built by VwLmm only. */
class LlavaModel extends LlamaDecoder {
  readonly mm_projector: Projector;
  readonly vision_tower: VisionTowerWrapper;
  constructor(config: VwLmmConfig, init: InitOptions) {
    super(config.llm, init);
    // float32 always (init.linearDtype is for the LLM and the tower): every VW-LMM / LLaVA stage trains the projector
    this.mm_projector = this.child('mm_projector', new Projector(config.projectorType, config.vision.hiddenSize, config.llm.hiddenSize, { std: config.llm.initializerRange, init: { ...init, linearDtype: undefined } }));
    this.vision_tower = this.child('vision_tower', new VisionTowerWrapper(new ClipVisionModel(config.vision, init)));
  }
}

// the type of VwLmm.model, for users to name; the class itself is built by VwLmm only
export type { LlavaModel };

/** LLaVA's CLIPVisionTower keeps the HF model as `.vision_tower`. */
class VisionTowerWrapper extends Module {
  constructor(readonly vision_tower: ClipVisionModel) {
    super();
    this.child('vision_tower', vision_tower);
  }
}

/** What VwLmm.updateConfig may change on a built model (LLaVA's train.py sets these on model.config). */
export interface ConfigUpdate {
  /** The conversation template (LLaVA's --version). */
  template?: TemplateName;
  /** image.aspect: LLaVA's --image_aspect_ratio. */
  image?: { aspect?: 'pad' | 'square' };
  /** tokenizer_model_max_length (LLaVA's --model_max_length). */
  modelMaxLength?: number;
}
const UPDATE_KEYS = { template: true, image: true, modelMaxLength: true } satisfies Record<keyof ConfigUpdate, true>;

/** VwLmm.create's options. */
export interface CreateOptions {
  device?: DeviceSpec;
  uninitialized?: boolean;
  linearDtype?: 'float32' | 'bfloat16';
}
const CREATE_KEYS = { device: true, uninitialized: true, linearDtype: true } satisfies Record<keyof CreateOptions, true>;

export class VwLmm extends Module {
  readonly model: LlavaModel;
  readonly lm_head: Linear;
  readonly vm_head: Linear | null;
  private frozen: VwLmmConfig;

  constructor(config: VwLmmConfig, init: InitOptions) {
    super();
    // the model's own deep-frozen copy: an edit of the caller's object cannot change the model behind its weights
    this.frozen = frozenConfig(config);
    config = this.frozen;
    this.model = this.child('model', new LlavaModel(config, init));
    const c = config.llm;
    this.lm_head = this.child('lm_head', new Linear(c.hiddenSize, c.vocabSize, { bias: false, std: c.initializerRange, init }));
    // float32 always: trained in every stage, and the visual-word ops (fused.visualWords) take it directly
    this.vm_head = hasVmHead(config) ? this.child('vm_head', new Linear(c.hiddenSize, c.vocabSize, { bias: false, std: c.initializerRange, init: { ...init, linearDtype: undefined } })) : null;
  }

  /**
   * The model's configuration: a checked, deep-frozen copy of the one it was created with (an assignment to it throws
   * in strict mode), so that what it computes and the config.json it saves always describe its weights. The settings a
   * training run may change go through updateConfig.
   */
  get config(): VwLmmConfig {
    return this.frozen;
  }

  /**
   * Changes the settings a training run may set on an existing model, as LLaVA's train.py sets them on model.config:
   * the conversation template, image.aspect and modelMaxLength (saved with the checkpoint). The rest shaped the weights
   * or the objective and stays as created. Returns the new config (model.config from now on).
   */
  updateConfig(changes: ConfigUpdate): VwLmmConfig {
    const where = 'VwLmm.updateConfig';
    if (changes === null || typeof changes !== 'object' || Array.isArray(changes)) throw typeError(where, 'changes', 'an object with template, image.aspect or modelMaxLength', changes);
    checkKeys(where, 'setting (the others shaped the weights: create a new model)', changes, UPDATE_KEYS);
    if (changes.image !== undefined) {
      if (changes.image === null || typeof changes.image !== 'object' || Array.isArray(changes.image)) throw typeError(where, 'changes.image', 'an object with aspect', changes.image);
      checkKeys(where, 'image setting (only aspect changes on a built model)', changes.image, { aspect: true });
    }
    const c = this.frozen;
    const next: VwLmmConfig = {
      ...c, image: { ...c.image, ...(changes.image?.aspect !== undefined ? { aspect: changes.image.aspect } : {}) },
      ...(changes.template !== undefined ? { template: changes.template } : {}),
      ...(changes.modelMaxLength !== undefined ? { modelMaxLength: changes.modelMaxLength } : {}),
    };
    this.frozen = frozenConfig(next);
    return this.frozen;
  }

  /**
   * A model with weights drawn from `seed` (the same weights on every device), created on `opts.device`
   * ('cpu' by default; 'cuda' or 'cuda:N' need a usable GPU and say why when there is none); `uninitialized`
   * leaves the weights unset, for a caller that loads every one of them next. `linearDtype` 'bfloat16' stores the
   * Linear weights of the LLM (decoder layers, lm_head) and of the vision tower in bf16 (half the memory; for
   * running, or for training that keeps them frozen: LoRA's base); the projector and vm_head stay float32.
   * The model keeps a checked, deep-frozen copy of `config` (model.config).
   */
  static create(config: VwLmmConfig, seed: number, opts: CreateOptions = {}): VwLmm {
    const where = 'VwLmm.create';
    checkSeed(where, 'seed', seed);
    const frozen = frozenConfig(config);
    if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', 'an object with device, uninitialized or linearDtype', opts);
    checkKeys(where, 'option', opts, CREATE_KEYS);
    const device = useDevice(where, opts.device);
    const linearDtype = opts.linearDtype;
    if (linearDtype !== undefined && linearDtype !== 'float32' && linearDtype !== 'bfloat16')
      throw typeError(where, 'linearDtype', "'float32' or 'bfloat16'", linearDtype);
    if (opts.uninitialized !== undefined && typeof opts.uninitialized !== 'boolean') throw typeError(where, 'uninitialized', 'a boolean', opts.uninitialized);
    // before the first tensor: a config of 1e9 layers once allocated small tensors for minutes until memory ran out
    const bytes = weightBytesAtLeast(frozen, linearDtype === 'bfloat16' ? 2 : 4);
    const memory = device === 'cpu' ? os.totalmem() : Number((cuda(where).backendInfo() as { totalMemory?: number }).totalMemory ?? Infinity);
    if (bytes > memory) {
      const { llm, vision } = frozen;
      const gib = (b: number) => `${b / 2 ** 30 < 1e5 ? (b / 2 ** 30).toFixed(1) : (b / 2 ** 30).toExponential(2)} GiB`;
      throw new RangeError(`${where}: the config describes a model whose weights alone take at least ${gib(bytes)}, more than the ${device === 'cpu' ? "machine's" : "GPU's"} ${gib(memory)}: hidden_size ${llm.hiddenSize}, intermediate_size ${llm.intermediateSize}, num_hidden_layers ${llm.numLayers}, vocab_size ${llm.vocabSize}; vision hidden_size ${vision.hiddenSize}, intermediate_size ${vision.intermediateSize}, num_hidden_layers ${vision.numLayers}, image_size ${vision.imageSize}, patch_size ${vision.patchSize}; mm_projector_type ${frozen.projectorType}`);
    }
    return new VwLmm(frozen, { generator: new Generator(seed), device, uninitialized: opts.uninitialized, linearDtype });
  }

  get visionTower(): ClipVisionModel {
    return this.model.vision_tower.vision_tower;
  }

  /**
   * Gradient checkpointing of every decoder and vision layer (LLaVA's --gradient_checkpointing): each layer's
   * intermediates are recomputed in the backward instead of kept; same gradients, less memory, one more
   * forward of the layers. Inference (noGrad, generation) is unaffected.
   */
  get gradientCheckpointing(): boolean {
    return this.model.gradientCheckpointing;
  }
  set gradientCheckpointing(on: boolean) {
    if (typeof on !== 'boolean') throw new TypeError(`VwLmm.gradientCheckpointing must be a boolean, got ${typeof on}`);
    this.model.gradientCheckpointing = on;
    this.visionTower.vision_model.gradientCheckpointing = on;
  }

  /**
   * The dtype of the LLM's residual stream under autocast('bfloat16') (LlamaDecoder.residualDtype): 'float32'
   * (default, torch's autocast) or 'bfloat16' (a model loaded in bf16, as LLaVA's LoRA recipe trains: half the
   * memory of the gradient checkpoints).
   */
  get residualDtype(): ComputeDtype {
    return this.model.residualDtype;
  }
  set residualDtype(d: ComputeDtype) {
    this.model.residualDtype = d;
  }

  get numImageTokens(): number {
    return numImageTokens(this.config);
  }

  /** Projected image features x [nImages * P, D] (before PIF): what the KL target is computed from. */
  imageFeatures(pixels: Float32Array, nImages: number): Tensor {
    const v = this.config.vision, S = v.imageSize;
    const tower = this.visionTower.vision_model;
    const towerTrainable = tower.parameters().some((p) => p.requiresGrad);
    const run = () => {
      const h = tower.forward(Tensor.fromArray(pixels, [nImages, v.numChannels, S, S], { device: this.device }), { upToLayer: this.config.selectLayer }).lastHiddenState;
      const T1 = h.shape[1];
      return this.config.selectFeature === 'patch' ? F.slice(h, 1, 1, T1 - 1) : h;
    };
    // frozen: in a scope, so each layer's output is freed as the next one is made, not with the step (there is no
    // graph to keep them; at 7B, 16 images of 577 tokens and 23 layers, ~0.85 GiB held through the whole step)
    const feats = towerTrainable ? run() : noGrad(() => scope(run));
    const P = feats.shape[1];
    return F.reshape(this.model.mm_projector.forward(feats), [nImages * P, this.config.llm.hiddenSize]);
  }

  /** Input embeddings [B, T, D]: token embeddings with the image features spliced in at their positions. */
  inputEmbeddings(batch: Pick<ModelBatch, 'B' | 'T' | 'tokenIds' | 'imagePositions'>, features: Tensor | null): Tensor {
    const { B, T } = batch, D = this.config.llm.hiddenSize;
    // image positions without images would keep their placeholder ids' embeddings: the images silently dropped
    if (!features && batch.imagePositions.length > 0)
      throw new RangeError(`VwLmm: the batch has ${batch.imagePositions.length} image positions but no images (pixelValues)`);
    const text = this.model.embed_tokens.forward(Tensor.fromArray(batch.tokenIds, [B * T], { device: this.device }));
    if (!features || batch.imagePositions.length === 0) return F.reshape(text, [B, T, D]);
    if (features.shape[0] !== batch.imagePositions.length)
      throw new RangeError(`VwLmm: ${features.shape[0]} image features for ${batch.imagePositions.length} image positions`);
    let feats = features;
    if (this.config.pif) feats = F.pseudoImageFeatures(features, this.vm_head!.weight, this.model.embed_tokens.weight);
    const spliced = F.gatherRows(F.concat([text, feats], 0), Tensor.fromArray(spliceIndexOf(batch), [B * T], { device: this.device }));
    return F.reshape(spliced, [B, T, D]);
  }

  /** Final hidden states [B*T, D] for a batch. */
  hidden(batch: ModelBatch): { h: Tensor; features: Tensor | null } {
    this.checkBatch('VwLmm.hidden', batch, false);
    return this.hiddenOf(batch);
  }

  private hiddenOf(batch: ModelBatch): { h: Tensor; features: Tensor | null } {
    const nImages = batch.pixelValues ? batch.imagePositions.length / this.numImageTokens : 0;
    const features = batch.pixelValues && nImages > 0 ? this.imageFeatures(batch.pixelValues, nImages) : null;
    // in a scope: the token embeddings and the concatenation the splice gathers from are freed at once (no backward
    // reads them; at 7B and 16 x 2048 tokens, 1 GiB), not with the step
    const emb = scope(() => this.inputEmbeddings(batch, features));
    const out = this.model.forward(emb, { keyMask: Tensor.fromArray(batch.attentionMask, [batch.B, batch.T], { device: this.device }) });
    return { h: F.reshape(out.last, [batch.B * batch.T, this.config.llm.hiddenSize]), features };
  }

  /**
   * A batch checked on the host before anything is uploaded (a JavaScript caller's batch has had no compiler look at
   * it): each field's type and length against B x T, token ids and targets within the vocabulary, image positions
   * inside the batch and a whole number of images whose pixels are there. An error names the field, what it must be
   * and what it holds, not a Tensor.fromArray size or a property of undefined. O(B x T), no pixel is read. `where`
   * names the caller in the errors (the Trainer checks a stage's batches as they come, naming the stage).
   */
  checkBatch(where: string, b: ModelBatch, needTargets: boolean): void {
    const FIELDS = 'B, T, tokenIds, attentionMask, imagePositions, pixelValues';
    if (b === null || typeof b !== 'object') throw typeError(where, 'batch', `a ModelBatch (${FIELDS}${needTargets ? ', targets' : ''})`, b);
    const { B, T } = b;
    if (!Number.isSafeInteger(B) || B < 1) throw typeError(where, 'batch.B', 'a positive integer (the number of rows)', B);
    if (!Number.isSafeInteger(T) || T < 1) throw typeError(where, 'batch.T', 'a positive integer (the positions of a row)', T);
    const N = B * T, V = this.config.llm.vocabSize;
    const ints = (name: string, a: unknown, length: number | null, of = `B x T = ${B} x ${T} = ${length}`): Int32Array => {
      const size = length === null ? '' : ` of ${of} values`;
      if (!(a instanceof Int32Array)) throw typeError(where, `batch.${name}`, `an Int32Array${size}`, a);
      if (length !== null && a.length !== length) throw rangeError(where, `expected an Int32Array${size} for batch.${name} but received Int32Array(${a.length})`);
      return a;
    };
    const inRange = (name: string, a: Int32Array, ok: (x: number) => boolean, expected: string) => {
      for (let i = 0; i < a.length; i++) if (!ok(a[i])) throw rangeError(where, `expected ${expected} in batch.${name} but received ${a[i]} at index ${i}`);
    };
    inRange('tokenIds', ints('tokenIds', b.tokenIds, N), (x) => x >= 0 && x < V, `token ids in [0, ${V})`);
    inRange('attentionMask', ints('attentionMask', b.attentionMask, N), (x) => x === 0 || x === 1, '0 (padding) or 1');
    const positions = ints('imagePositions', b.imagePositions, null);
    const P = this.numImageTokens, n = positions.length;
    if (n % P !== 0) throw rangeError(where, `expected a whole number of images of ${P} positions each in batch.imagePositions but received ${n} positions`);
    const seen = new Uint8Array(N);
    for (let k = 0; k < n; k++) {
      const pos = positions[k];
      if (pos < 0 || pos >= N) throw rangeError(where, `expected positions b * T + t in [0, ${N}) (B x T = ${B} x ${T}) in batch.imagePositions but received ${pos} at index ${k}`);
      if (seen[pos]) throw rangeError(where, `batch.imagePositions names position ${pos} twice (at index ${k}): one image feature per position`);
      seen[pos] = 1;
    }
    const v = this.config.vision, perImage = v.numChannels * v.imageSize * v.imageSize, images = n / P;
    const px = b.pixelValues;
    if (px !== null && !(px instanceof Float32Array)) throw typeError(where, 'batch.pixelValues', `a Float32Array of ${images} image(s) x ${perImage} values, or null (no images)`, px);
    // image positions without images would keep their placeholder ids' embeddings: the images silently dropped
    if (px === null && n > 0) throw new RangeError(`VwLmm: the batch has ${n} image positions but no images (pixelValues)`);
    if (px !== null && px.length !== images * perImage)
      throw rangeError(where, `expected ${images} image(s) (batch.imagePositions: ${n} positions, ${P} per image) of ${v.numChannels} x ${v.imageSize} x ${v.imageSize} = ${images * perImage} values in batch.pixelValues but received Float32Array(${px.length})`);
    if (b.targets !== undefined || needTargets) {
      if (b.targets === undefined) throw typeError(where, 'batch.targets', `an Int32Array of B x T = ${N} next-token targets (-100: none)`, b.targets);
      inRange('targets', ints('targets', b.targets, N), (x) => x === -100 || (x >= 0 && x < V), `-100 or token ids in [0, ${V})`);
    }
    if (b.klRows !== undefined) {
      const kl = b.klRows as unknown;
      if (kl === null || typeof kl !== 'object') throw typeError(where, 'batch.klRows', 'an object { rows, featureIndex } of Int32Arrays', kl);
      const rows = ints('klRows.rows', b.klRows.rows, null), idx = ints('klRows.featureIndex', b.klRows.featureIndex, rows.length, `${rows.length} (one per klRows.rows entry)`);
      inRange('klRows.rows', rows, (x) => x >= 0 && x < N, `positions in [0, ${N})`);
      inRange('klRows.featureIndex', idx, (x) => x >= 0 && x < n, `image feature indexes in [0, ${n})`);
      // the method's pairs only (the position just before a feature, in its row): another pairing, an unshifted one
      // say, would train a different objective without a word
      const paired = new Uint8Array(n);
      for (let k = 0; k < rows.length; k++) {
        const f = idx[k], pos = positions[f];
        if (pos % T === 0 || rows[k] !== pos - 1)
          throw rangeError(where, `batch.klRows pairs position ${rows[k]} with image feature ${f} at position ${pos} (index ${k}): a KL row is the position just before its feature in the same batch row (${pos % T === 0 ? 'none for a feature at t = 0' : pos - 1}); visualWordRows(batch) gives the method's rows`);
        if (paired[f]) throw rangeError(where, `batch.klRows names image feature ${f} twice (at index ${k}): one KL row per feature`);
        paired[f] = 1;
      }
    }
  }

  /**
   * The first non-finite value of a batch's pixels (its index, value and image), or null: checkBatch reads no pixel
   * (a pass over every image each step), so this is asked only once something refused a non-finite activation.
   */
  nonFinitePixel(batch: Pick<ModelBatch, 'pixelValues'>): { index: number; value: number; image: number } | null {
    const px = batch.pixelValues;
    if (!(px instanceof Float32Array)) return null;
    const v = this.config.vision, perImage = v.numChannels * v.imageSize * v.imageSize;
    for (let i = 0; i < px.length; i++) if (!Number.isFinite(px[i])) return { index: i, value: px[i], image: Math.floor(i / perImage) };
    return null;
  }

  /**
   * fn(), where a kernel's refusal of a non-finite activation that a non-finite pixel caused is said as such: the
   * kernel names its own input ("[linear_cross_entropy] h"), which every activation after the tower is then.
   */
  private namingPixels<T>(batch: ModelBatch, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const bad = e instanceof RangeError && /contains a non-finite value|are not finite/.test(e.message) ? this.nonFinitePixel(batch) : null;
      if (!bad) throw e;
      // (the words the Trainer knows a non-finite step by are kept)
      throw new RangeError(`VwLmm.loss: batch.pixelValues contains a non-finite value (${bad.value}) at index ${bad.index} (image ${bad.image} of the batch): every activation after the vision tower is then non-finite (${(e as Error).message})`, { cause: e });
    }
  }

  /** The VW-LMM objective on a batch (needs targets; the KL rows are the method's unless batch.klRows says otherwise). */
  loss(batch: ModelBatch): LossOutput {
    this.checkBatch('VwLmm.loss', batch, true);
    const targets = batch.targets!;
    const textTokens = targets.reduce((a, t) => a + (t !== -100 ? 1 : 0), 0);
    // The whole forward in a scope: what no backward reads (the final hidden states, the rows gathered for the KL,
    // casts) is freed before the backward runs, not with the step (~1.3 GiB at 7B). It once put V8 into a
    // mark-compact every few CPU demo steps; that came with a new 2 MB pixel array per batch and went with them
    // (benchmarks/RESULTS.md, "The forward's scope back").
    const { loss, ceLoss, klLoss, klRows } = this.namingPixels(batch, () => scope(() => {
      const { h, features } = this.hiddenOf(batch);
      const ce = F.linearCrossEntropy(h, this.lm_head.weight, Tensor.fromArray(targets, [batch.B * batch.T], { device: this.device }));
      const kr = this.config.vmWeight > 0 ? klRowsOf(batch) : null;
      const klRows = kr ? kr.rows.length : 0;
      if (klRows === 0 || !features) return { loss: ce, ceLoss: ce, klLoss: null, klRows: 0 };
      const hRows = F.gatherRows(h, Tensor.fromArray(kr!.rows, [klRows], { device: this.device }));
      const xRows = F.gatherRows(features, Tensor.fromArray(kr!.featureIndex, [klRows], { device: this.device }));
      const kl = F.visualWordKL(hRows, this.lm_head.weight, xRows, this.vm_head!.weight, { detachTarget: this.config.detachTarget });
      return { loss: F.add(ce, F.scale(kl, this.config.vmWeight)), ceLoss: ce, klLoss: kl, klRows };
    }));
    // no host read here: a training step reads what it logs once (Trainer), not per loss term
    let ce: number | null = null, kl: number | null = null;
    return {
      loss, ceLoss, klLoss, textTokens, klRows,
      get ce() {
        return (ce ??= ceLoss.item());
      },
      get kl() {
        return (kl ??= klLoss ? klLoss.item() : 0);
      },
    };
  }

  /**
   * Generation for a batch of prompts (token ids with the image placeholder already expanded to image
   * positions, as collate produces for one sample each): greedy when temperature is 0, else sampling as transformers'
   * generate with do_sample (its warpers in its order: temperature, top-k, top-p; GenerateOptions). Results come back
   * in the prompts' order.
   *
   * Each prompt is checked on its own (transformers' "Image features and image tokens do not match"): pixels iff image
   * positions, exactly numImageTokens positions per image its pixels hold, no position twice, every pixel finite; an
   * error names the prompt.
   *
   * Batching, as transformers' generate: the prompts, sorted by length (ties in the caller's order), are cut into
   * batches of `batchSize` (default 32) that run together with a KV cache, each prompt left-padded to its batch's
   * longest. The key mask hides the padding from every query (prefill and decode); padded positions get zero
   * embeddings and see no key (the attention op writes zeros for such a row), so they stay exactly zero. RoPE
   * then places a row's tokens at pad..pad+L-1 rather than 0..L-1: the scores depend only on relative positions,
   * so the logits equal the unpadded ones up to float rounding (tests/model/vwlmm.test.ts checks 1e-5 relative).
   * Sampling draws one uniform per row from one Generator(seed): batch by batch in that sorted order, then step by
   * step, then row by row (a finished row draws too, its token ignored), so a prompt's draws depend on the other
   * prompts of the call.
   */
  generate(prompts: GeneratePrompt[], opts: GenerateOptions): number[][] {
    if (opts === null || typeof opts !== 'object') throw typeError('VwLmm.generate', 'options', 'an object with maxNewTokens', opts);
    checkKeys('VwLmm.generate', 'option', opts, GENERATE_KEYS);
    const dtype = opts.dtype === undefined ? defaultComputeDtype(this.device) : parseComputeDtype('VwLmm.generate', opts.dtype);
    return autocast(dtype, () => this.generateIn(prompts, opts));
  }

  private generateIn(prompts: GeneratePrompt[], opts: GenerateOptions): number[][] {
    const batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`VwLmm.generate: batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) throw new RangeError(`VwLmm.generate: maxNewTokens must be an integer >= 0, got ${opts.maxNewTokens}`);
    if (opts.temperature !== undefined && !(Number.isFinite(opts.temperature) && opts.temperature >= 0)) throw new RangeError(`VwLmm.generate: temperature must be a number >= 0 (0: greedy), got ${opts.temperature}`);
    if (opts.topP !== undefined && !(opts.topP > 0 && opts.topP <= 1)) throw new RangeError(`VwLmm.generate: topP must be in (0, 1], got ${opts.topP}`);
    if (opts.topK !== undefined && !(Number.isInteger(opts.topK) && opts.topK >= 0)) throw new RangeError(`VwLmm.generate: topK must be an integer >= 0 (0: off), got ${opts.topK}`);
    if (opts.cacheReserve !== undefined && (!Number.isInteger(opts.cacheReserve) || opts.cacheReserve < 0))
      throw new RangeError(`VwLmm.generate: cacheReserve must be a non-negative integer, got ${opts.cacheReserve}`);
    if (opts.eosId !== undefined && opts.eosId !== null && !Number.isSafeInteger(opts.eosId)) throw typeError('VwLmm.generate', 'eosId', 'an integer token id, or null (none)', opts.eosId);
    const v = this.config.vision, perImage = v.numChannels * v.imageSize * v.imageSize, P = this.numImageTokens;
    if (!Array.isArray(prompts)) throw typeError('VwLmm.generate', 'prompts', 'an array of prompts { tokenIds, imagePositions, pixelValues }', prompts);
    const V = this.config.llm.vocabSize;
    prompts.forEach((p, i) => {
      if (p === null || typeof p !== 'object') throw typeError('VwLmm.generate', `prompts[${i}]`, 'a prompt { tokenIds, imagePositions, pixelValues }', p);
      if (!(p.tokenIds instanceof Int32Array)) throw typeError('VwLmm.generate', `prompts[${i}].tokenIds`, 'an Int32Array of token ids', p.tokenIds);
      if (!(p.imagePositions instanceof Int32Array)) throw typeError('VwLmm.generate', `prompts[${i}].imagePositions`, 'an Int32Array of positions in the prompt', p.imagePositions);
      if (p.pixelValues !== null && !(p.pixelValues instanceof Float32Array)) throw typeError('VwLmm.generate', `prompts[${i}].pixelValues`, 'a Float32Array of preprocessed pixels, or null (no image)', p.pixelValues);
      if (p.tokenIds.length === 0) throw new RangeError(`VwLmm.generate: prompt ${i} is empty`);
      const bad = p.imagePositions.find((pos) => pos < 0 || pos >= p.tokenIds.length);
      if (bad !== undefined) throw new RangeError(`VwLmm.generate: prompt ${i} has an image position ${bad} outside its ${p.tokenIds.length} tokens`);
      // per prompt, not per batch: totals that match can still hand one prompt's image to another, or drop one
      const n = p.imagePositions.length;
      const images = p.pixelValues ? p.pixelValues.length / perImage : 0;
      if (p.pixelValues && !(Number.isInteger(images) && images >= 1))
        throw new RangeError(`VwLmm.generate: prompt ${i} has ${p.pixelValues.length} pixel values, not a whole number of images of ${perImage} (${v.numChannels} x ${v.imageSize} x ${v.imageSize})`);
      if (n !== images * P)
        throw new RangeError(`VwLmm.generate: prompt ${i}: image features and image tokens do not match: ${images} image(s) (pixelValues${p.pixelValues ? '' : ' null'}) need ${images * P} image positions (${P} per image), got ${n}`);
      if (n > 1 && new Set(p.imagePositions).size !== n) throw new RangeError(`VwLmm.generate: prompt ${i} names an image position twice`);
      // every id, image positions' too, goes through the embedding (collate writes the pad id there)
      const badId = p.tokenIds.findIndex((t) => t < 0 || t >= V);
      if (badId >= 0) throw new RangeError(`VwLmm.generate: prompt ${i}: expected token ids in [0, ${V}) but received ${p.tokenIds[badId]} at index ${badId} (an image placeholder is expanded to image positions first: collate)`);
      // once on the host, before the upload: a NaN image would otherwise come out as '' without a word
      if (p.pixelValues) {
        const px = p.pixelValues;
        for (let j = 0; j < px.length; j++) {
          if (!Number.isFinite(px[j])) throw new RangeError(`VwLmm.generate: prompt ${i}'s pixelValues hold a non-finite value (${px[j]}) at index ${j}`);
        }
      }
    });
    // a Mistral window refuses positions past it (src/nn/llama.ts): before any work, not with the tokens made so far lost
    const w = this.config.llm.slidingWindow;
    if (w && prompts.length > 0) {
      const longest = prompts.reduce((m, p, i) => (p.tokenIds.length > prompts[m].tokenIds.length ? i : m), 0), n = prompts[longest].tokenIds.length;
      // the prompt, then every new token but the last goes in (a batch is padded to its longest prompt: this one's)
      const positions = n + Math.max(0, opts.maxNewTokens - 1);
      if (positions > w)
        throw new RangeError(`VwLmm.generate: prompt ${longest} (${n} tokens) and maxNewTokens ${opts.maxNewTokens} reach ${positions} positions, past the Mistral base's sliding_window of ${w}: sliding-window attention is not implemented (up to ${w} positions are exact); ${n <= w ? `maxNewTokens ${w - n + 1} fits` : 'the prompt alone is longer'}`);
    }
    // sorted by length, so a batch pads little; stable, so the order (and the Generator's draws) is deterministic
    const order = prompts.map((_, i) => i).sort((a, b) => prompts[a].tokenIds.length - prompts[b].tokenIds.length || a - b);
    const results: number[][] = new Array(prompts.length);
    const gen = new Generator(checkSeed('VwLmm.generate', 'seed', opts.seed ?? 0));
    for (let start = 0; start < order.length; start += batchSize) {
      const group = order.slice(start, start + batchSize);
      const outs = noGrad(() => this.generateGroup(group.map((i) => prompts[i]), group, opts, gen));
      group.forEach((i, k) => (results[i] = outs[k]));
    }
    return results;
  }

  /** One batch: prompts left-padded to the longest (T); `rows` are their indices in the caller's list (onLogits). */
  private generateGroup(prompts: GeneratePrompt[], rows: readonly number[], opts: GenerateOptions, gen: Generator): number[][] {
    const B = prompts.length, D = this.config.llm.hiddenSize, V = this.config.llm.vocabSize;
    const T = prompts.reduce((m, p) => Math.max(m, p.tokenIds.length), 0);
    const pads = prompts.map((p) => T - p.tokenIds.length);
    const padded = pads.some((n) => n > 0);
    // key mask int32 [B, Tk] over cache + new positions (null without padding: every key visible)
    const keyMask = (Tk: number): Tensor | null => {
      if (!padded) return null;
      const m = new Int32Array(B * Tk).fill(1);
      pads.forEach((n, b) => m.fill(0, b * Tk, b * Tk + n));
      return Tensor.fromArray(m, [B, Tk], { device: this.device });
    };
    const sampler = opts.temperature ? new LogitsSampler(V, { temperature: opts.temperature, topK: opts.topK, topP: opts.topP }) : null;
    const logitsOf = (h: Tensor): number[] => {
      const logits = this.lm_head.forward(h).toArray() as Float32Array;
      opts.onLogits?.(logits, rows);
      const next: number[] = [];
      for (let b = 0; b < B; b++) {
        const row = logits.subarray(b * V, (b + 1) * V);
        if (!sampler) next.push(argmax(row));
        else if (!sampler.prepare(row)) throw new RangeError(`VwLmm.generate: prompt ${rows[b]}'s logits are not finite (a NaN or an infinity): nothing to sample from`);
        else next.push(sampler.draw(gen));
      }
      return next;
    };
    const cache = new KVCache(this.config.llm.numLayers);
    // decode steps write into room reserved in the cache (KVCache.pads: the cache builds their key masks)
    const reserve = opts.cacheReserve ?? 64;
    if (reserve > 0) [cache.pads, cache.reserve] = [pads, Math.min(reserve, opts.maxNewTokens)];
    const out: number[][] = prompts.map(() => []);
    const done = new Array(B).fill(false);
    try {
      let next = scope(() => {
        const tokenIds = new Int32Array(B * T), imagePositions: number[] = [];
        const pixels: Float32Array[] = [];
        prompts.forEach((p, b) => {
          const o = b * T + pads[b];
          tokenIds.set(p.tokenIds, o);
          p.imagePositions.forEach((pos) => imagePositions.push(o + pos));
          if (p.pixelValues) pixels.push(p.pixelValues);
        });
        const batch = { B, T, tokenIds, imagePositions: Int32Array.from(imagePositions) };
        // images, not prompts with pixels: a prompt may hold several (each P positions, checked in generate)
        const nImages = imagePositions.length / this.numImageTokens;
        const feats = nImages > 0 ? this.imageFeatures(concatF32(pixels), nImages) : null;
        let emb = this.inputEmbeddings(batch, feats);
        if (padded) {
          // zeros at the padding: with no visible key their attention output is 0 and RMSNorm(0) = 0, so they stay 0
          // in every layer; never a non-finite K/V there (a masked key's 0 weight times NaN would still be NaN)
          const idx = new Int32Array(B * T);
          for (let i = 0; i < idx.length; i++) idx[i] = i % T < pads[Math.floor(i / T)] ? B * T : i;
          const zero = Tensor.zeros([1, D], { device: this.device, dtype: emb.dtype });
          emb = F.reshape(F.gatherRows(F.concat([F.reshape(emb, [B * T, D]), zero], 0), Tensor.fromArray(idx, [B * T], { device: this.device })), [B, T, D]);
        }
        const hs = this.model.forward(emb, { keyMask: keyMask(T), cache }).last; // [B, T, D]
        // left padding: every row's last real token is at T - 1
        return logitsOf(F.reshape(F.slice(hs, 1, T - 1, 1), [B, D]));
      });
      for (let step = 0; step < opts.maxNewTokens; step++) {
        next.forEach((t, b) => {
          if (done[b]) return;
          if (opts.eosId != null && t === opts.eosId) done[b] = true;
          else out[b].push(t);
        });
        if (done.every(Boolean) || step === opts.maxNewTokens - 1) break;
        next = scope(() => {
          const emb = this.model.embed_tokens.forward(Tensor.fromArray(Int32Array.from(next), [B, 1], { device: this.device }));
          const hs = this.model.forward(emb, { keyMask: reserve > 0 ? null : keyMask(cache.length + 1), cache }).last;
          return logitsOf(F.reshape(hs, [B, D]));
        });
      }
    } finally {
      cache.dispose();
    }
    return out;
  }
}

/** A prompt: token ids [L] with its image positions (0..L-1) and that image's pixels, or none (text only). */
export interface GeneratePrompt {
  tokenIds: Int32Array;
  imagePositions: Int32Array;
  pixelValues: Float32Array | null;
}

export interface GenerateOptions {
  /**
   * New tokens at most per prompt (an integer >= 0); a prompt's output ends before its eosId, which is not included.
   * Not capped at llm.maxPositionEmbeddings, as transformers' generate does not cap it: RoPE computes the rotation of any
   * position from the position itself (no table of maxPositionEmbeddings rows), so later positions are exact.
   */
  maxNewTokens: number;
  /** The end-of-sequence token; null or absent: none (TextTokenizer.eosId is null for a tokenizer without one). */
  eosId?: number | null;
  /**
   * 0 (default) = greedy; > 0 samples from softmax(logits / temperature) (transformers' do_sample=True with its
   * TemperatureLogitsWarper). A tiny temperature is the greedy limit (ties at the max share the draw), not an overflow.
   */
  temperature?: number;
  /**
   * Sampling: keep only the topK largest logits (transformers' TopKLogitsWarper: every logit equal to the k-th largest
   * is kept too), applied after the temperature and before topP. 0 (default) = off. Note that transformers' generate
   * defaults top_k to 50 when sampling (GenerationConfig), and LLaVA's run_llava.py passes none, so its samples come
   * from the top 50: pass topK 50 to sample as it does.
   */
  topK?: number;
  /**
   * Sampling: nucleus mass in (0, 1] (default 1 = off), transformers' TopPLogitsWarper: the probabilities sorted
   * ascending, a token is removed when the cumulative probability up to and including it is <= 1 - topP; the most
   * likely token is always kept (min_tokens_to_keep = 1). Among tied probabilities the lower token id ranks higher.
   */
  topP?: number;
  seed?: number;
  /** Prompts per batch (default 32); batches mix lengths (left padding). */
  batchSize?: number;
  /**
   * Decode steps write each new key and value into room reserved in the KV cache, this many positions at a time
   * (default 64, at most maxNewTokens); 0: every step concatenates the whole cache (the same results to float
   * rounding: the attention then sums over the same keys).
   */
  cacheReserve?: number;
  /**
   * The precision of the products (src/amp.ts autocast): 'bfloat16' or 'float32'; default the device's (bf16 on CUDA,
   * fp32 on the CPU). One autocast region covers the whole call, so each weight is cast once.
   */
  dtype?: ComputeDtype;
  /**
   * @internal Inspection (tests): each step's logits [B * V] of a batch, and the caller's prompt index of each row
   * (the prefill's call first, then one per decode step).
   */
  onLogits?: (logits: Float32Array, rows: readonly number[]) => void;
}

// Every option generate reads: another key ({ do_sample: true }, { top_k: 50 }) is refused, not ignored
const GENERATE_KEYS = {
  maxNewTokens: true, eosId: true, temperature: true, topK: true, topP: true, seed: true, batchSize: true, cacheReserve: true, dtype: true, onLogits: true,
} satisfies Record<keyof GenerateOptions, true>;

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

