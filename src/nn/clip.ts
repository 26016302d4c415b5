// CLIP vision tower (HF CLIPVisionModel names and math): patch embedding (stride-p conv, no bias) + class
// token + learned positions, pre-layernorm, pre-LN encoder layers (bidirectional attention with biases,
// quick_gelu MLP), post-layernorm on the class token. hidden_states[0] is the pre-layernormed embedding
// output; LLaVA takes hidden_states[select_layer] (default -2) without its CLS token.
import { gradientCheckpoint } from '../autograd';
import * as F from '../functional';
import { checkedOptions } from '../errors';
import { scope, Tensor } from '../tensor';
import { checkSection, POSITIVE, POSITIVE_INT, STD } from './config_check';
import { LayerNorm, Linear } from './layers';
import { InitOptions, Module, ModuleList, normalParam } from './module';

export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  initializerRange: number;
  initializerFactor: number;
}

const CLIP_CONFIG_KEYS = {
  hiddenSize: true, intermediateSize: true, numLayers: true, numHeads: true, imageSize: true, patchSize: true, numChannels: true, layerNormEps: true,
  hiddenAct: true, initializerRange: true, initializerFactor: true,
} satisfies Record<keyof ClipVisionConfig, true>;
const CLIP_RULES = {
  hiddenSize: POSITIVE_INT, intermediateSize: POSITIVE_INT, numLayers: POSITIVE_INT, numHeads: POSITIVE_INT, imageSize: POSITIVE_INT,
  patchSize: POSITIVE_INT, numChannels: POSITIVE_INT, layerNormEps: POSITIVE, initializerRange: STD, initializerFactor: STD,
} satisfies Record<Exclude<keyof ClipVisionConfig, 'hiddenAct'>, unknown>;

/**
 * Checks a ClipVisionConfig object: no unknown key, positive integer sizes, heads that split the hidden size, an
 * image size the patches tile, a supported activation. Messages read `${where}: ${prefix}<key> ...`.
 */
export function checkClipConfig(c: unknown, where: string, prefix = ''): ClipVisionConfig {
  const v = checkSection(where, prefix, c, CLIP_CONFIG_KEYS, CLIP_RULES) as unknown as ClipVisionConfig;
  if (v.hiddenSize % v.numHeads !== 0) throw new RangeError(`${where}: ${prefix}hiddenSize ${v.hiddenSize} must be a multiple of ${prefix}numHeads ${v.numHeads}`);
  if (v.imageSize % v.patchSize !== 0) throw new RangeError(`${where}: ${prefix}imageSize ${v.imageSize} must be a multiple of ${prefix}patchSize ${v.patchSize} (the patch grid)`);
  if (v.hiddenAct !== 'quick_gelu' && v.hiddenAct !== 'gelu') throw new RangeError(`${where}: ${prefix}hiddenAct ${JSON.stringify(v.hiddenAct)} is not supported (quick_gelu | gelu)`);
  return v;
}

export function clipConfigFromHF(c: Record<string, unknown>): ClipVisionConfig {
  const src = (c.vision_config as Record<string, unknown> | undefined) ?? c;
  const num = (k: string, d?: number): number => {
    const v = src[k] ?? d;
    if (v === undefined) throw new TypeError(`CLIP vision config: ${k} is missing (a number is required)`);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`CLIP vision config: ${k} must be a number, got ${JSON.stringify(src[k])}`);
    return v;
  };
  const size = (k: string, d?: number): number => {
    const v = num(k, d);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`CLIP vision config: ${k} must be a positive integer, got ${v}`);
    return v;
  };
  const act = (src.hidden_act ?? 'quick_gelu') as string;
  if (act !== 'quick_gelu' && act !== 'gelu') throw new RangeError(`CLIP vision config: hidden_act ${JSON.stringify(act)} is not supported (quick_gelu | gelu)`);
  return {
    hiddenSize: size('hidden_size'), intermediateSize: size('intermediate_size'), numLayers: size('num_hidden_layers'),
    numHeads: size('num_attention_heads'), imageSize: size('image_size'), patchSize: size('patch_size'),
    numChannels: size('num_channels', 3), layerNormEps: num('layer_norm_eps', 1e-5), hiddenAct: act,
    initializerRange: num('initializer_range', 0.02), initializerFactor: num('initializer_factor', 1),
  };
}

export function clipConfigToHF(c: ClipVisionConfig): Record<string, unknown> {
  return {
    model_type: 'clip_vision_model', hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, image_size: c.imageSize, patch_size: c.patchSize,
    num_channels: c.numChannels, layer_norm_eps: c.layerNormEps, hidden_act: c.hiddenAct,
    initializer_range: c.initializerRange, initializer_factor: c.initializerFactor,
  };
}

class ClipAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly out_proj: Linear;
  constructor(readonly config: ClipVisionConfig, init: InitOptions) {
    super();
    const D = config.hiddenSize, f = config.initializerFactor;
    // HF CLIPPreTrainedModel._init_weights
    const inStd = D ** -0.5 * (2 * config.numLayers) ** -0.5 * f, outStd = D ** -0.5 * f;
    this.k_proj = this.child('k_proj', new Linear(D, D, { bias: true, std: inStd, init }));
    this.v_proj = this.child('v_proj', new Linear(D, D, { bias: true, std: inStd, init }));
    this.q_proj = this.child('q_proj', new Linear(D, D, { bias: true, std: inStd, init }));
    this.out_proj = this.child('out_proj', new Linear(D, D, { bias: true, std: outStd, init }));
  }
  forward(x: Tensor): Tensor {
    const [B, T, D] = x.shape, H = this.config.numHeads, Dh = D / H;
    const split = (t: Tensor) => F.reshape(t, [B, T, H, Dh]);
    const [q, k, v] = Linear.forwardMany(x, [this.q_proj, this.k_proj, this.v_proj], { bf16Output: true }); // as LLaMA's
    const o = F.attention(split(q), split(k), split(v), { causal: false });
    return this.out_proj.forward(F.reshape(o, [B, T, D]));
  }
}

class ClipMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(readonly config: ClipVisionConfig, init: InitOptions) {
    super();
    const D = config.hiddenSize, f = config.initializerFactor;
    const inStd = D ** -0.5 * (2 * config.numLayers) ** -0.5 * f, fcStd = (2 * D) ** -0.5 * f;
    this.fc1 = this.child('fc1', new Linear(D, config.intermediateSize, { bias: true, std: fcStd, init }));
    this.fc2 = this.child('fc2', new Linear(config.intermediateSize, D, { bias: true, std: inStd, init }));
  }
  forward(x: Tensor): Tensor {
    const h = this.fc1.forward(x, { bf16Output: true }); // bf16 under autocast, as is the activation fc2 takes
    return this.fc2.forward(this.config.hiddenAct === 'quick_gelu' ? F.quickGelu(h) : F.gelu(h));
  }
}

class ClipEncoderLayer extends Module {
  readonly self_attn: ClipAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: ClipMLP;
  readonly layer_norm2: LayerNorm;
  constructor(c: ClipVisionConfig, init: InitOptions) {
    super();
    this.self_attn = this.child('self_attn', new ClipAttention(c, init));
    this.layer_norm1 = this.child('layer_norm1', new LayerNorm(c.hiddenSize, c.layerNormEps, init));
    this.mlp = this.child('mlp', new ClipMLP(c, init));
    this.layer_norm2 = this.child('layer_norm2', new LayerNorm(c.hiddenSize, c.layerNormEps, init));
  }
  forward(x: Tensor): Tensor {
    const h = F.add(x, this.self_attn.forward(this.layer_norm1.forward(x)));
    return F.add(h, this.mlp.forward(this.layer_norm2.forward(h)));
  }
}

class ClipEmbeddings extends Module {
  readonly class_embedding: Tensor;
  readonly patch_embedding: Module & { weight: Tensor };
  readonly position_embedding: Module & { weight: Tensor };
  readonly numPositions: number;
  constructor(readonly config: ClipVisionConfig, init: InitOptions) {
    super();
    const c = config, D = c.hiddenSize, f = c.initializerFactor;
    if (c.imageSize % c.patchSize !== 0) throw new RangeError(`CLIP: image_size ${c.imageSize} is not a multiple of patch_size ${c.patchSize}`);
    this.numPositions = (c.imageSize / c.patchSize) ** 2 + 1;
    this.class_embedding = this.param('class_embedding', normalParam([D], D ** -0.5 * f, init));
    this.patch_embedding = this.child('patch_embedding', new WeightOnly(normalParam([D, c.numChannels, c.patchSize, c.patchSize], c.initializerRange * f, init)));
    this.position_embedding = this.child('position_embedding', new WeightOnly(normalParam([this.numPositions, D], c.initializerRange * f, init)));
  }
  forward(pixels: Tensor): Tensor {
    const [B, C, H, W] = pixels.shape, c = this.config;
    if (C !== c.numChannels || H !== c.imageSize || W !== c.imageSize)
      throw new RangeError(`CLIP: expected pixels [B, ${c.numChannels}, ${c.imageSize}, ${c.imageSize}], got [${pixels.shape.join(', ')}]`);
    const patches = F.patchEmbed(pixels, this.patch_embedding.weight); // [B, P, D]
    const D = c.hiddenSize;
    const cls = F.reshape(F.addBroadcast(Tensor.zeros([B, D], { device: pixels.device }), this.class_embedding), [B, 1, D]);
    return F.addBroadcast(F.concat([cls, patches], 1), this.position_embedding.weight);
  }
}

class WeightOnly extends Module {
  readonly weight: Tensor;
  constructor(w: Tensor) {
    super();
    this.weight = this.param('weight', w);
  }
}

export interface VisionOutput {
  /** hidden_states[0..L]: [B, P + 1, D] each (index 0: after pre_layrnorm). */
  hiddenStates: Tensor[];
  lastHiddenState: Tensor;
}

/** HF CLIPVisionTransformer (prefix "vision_model." inside CLIPVisionModel). */
export class ClipVisionTransformer extends Module {
  readonly embeddings: ClipEmbeddings;
  readonly pre_layrnorm: LayerNorm;
  readonly encoder: Module & { layers: ModuleList<ClipEncoderLayer> };
  readonly post_layernorm: LayerNorm;
  /** Recompute each encoder layer in the backward (see LlamaDecoder.gradientCheckpointing). */
  gradientCheckpointing = false;
  constructor(readonly config: ClipVisionConfig, init: InitOptions) {
    super();
    checkClipConfig(config, 'ClipVisionTransformer');
    this.embeddings = this.child('embeddings', new ClipEmbeddings(config, init));
    this.pre_layrnorm = this.child('pre_layrnorm', new LayerNorm(config.hiddenSize, config.layerNormEps, init));
    const layers: ClipEncoderLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) layers.push(new ClipEncoderLayer(config, init));
    this.encoder = this.child('encoder', new ClipEncoder(new ModuleList(layers)));
    this.post_layernorm = this.child('post_layernorm', new LayerNorm(config.hiddenSize, config.layerNormEps, init));
  }

  /**
   * pixels [B, C, S, S] -> hidden states. upToLayer (HF index into hidden_states, negative from the end)
   * stops the encoder early: LLaVA's select_layer -2 never runs the last layer.
   */
  forward(pixels: Tensor, opts: { upToLayer?: number } = {}): VisionOutput {
    opts = checkedOptions('ClipVisionTransformer.forward', opts, { upToLayer: true });
    const L = this.config.numLayers;
    const stop = opts.upToLayer === undefined ? L : opts.upToLayer < 0 ? L + 1 + opts.upToLayer : opts.upToLayer;
    if (!Number.isInteger(stop) || stop < 0 || stop > L) throw new RangeError(`CLIP: layer ${opts.upToLayer} is out of range for ${L} layers`);
    let h = this.pre_layrnorm.forward(this.embeddings.forward(pixels));
    const states = [h];
    for (let i = 0; i < stop; i++) {
      const layer = this.encoder.layers.items[i];
      h = this.gradientCheckpointing ? gradientCheckpoint((x) => layer.forward(x), [h], layer.parameters()) : scope(() => layer.forward(h)); // frees what no backward reads (LlamaDecoder.forward)
      states.push(h);
    }
    return { hiddenStates: states, lastHiddenState: h };
  }

  /** pooler_output: post_layernorm of the class token of the last layer. */
  pooled(lastHiddenState: Tensor): Tensor {
    const [B, , D] = lastHiddenState.shape;
    return this.post_layernorm.forward(F.reshape(F.slice(lastHiddenState, 1, 0, 1), [B, D]));
  }
}

class ClipEncoder extends Module {
  constructor(readonly layers: ModuleList<ClipEncoderLayer>) {
    super();
    this.child('layers', layers);
  }
}

/** HF CLIPVisionModel: vision_model (ClipVisionTransformer). */
export class ClipVisionModel extends Module {
  readonly vision_model: ClipVisionTransformer;
  constructor(config: ClipVisionConfig, init: InitOptions) {
    super();
    this.vision_model = this.child('vision_model', new ClipVisionTransformer(config, init));
  }
}
