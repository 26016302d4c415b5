// LLaMA-family decoder (HF LlamaModel / LlamaForCausalLM names and math): token embedding, layers of
// pre-RMSNorm grouped-query attention with rotary embeddings and a SwiGLU MLP, final RMSNorm.
import { computeDtype, ComputeDtype, parseComputeDtype } from '../amp';
import { gradientCheckpoint } from '../autograd';
import * as F from '../functional';
import type { Generator } from '../random';
import { Device, keep, scope, Tensor } from '../tensor';
import { checkedOptions, typeError } from '../errors';
import { checkNumbers, checkSection, POSITIVE, POSITIVE_INT, STD } from './config_check';
import { Embedding, Linear, RMSNorm } from './layers';
import { InitOptions, Module, ModuleList } from './module';

export interface LlamaConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  /** Std of the normal initialisation (HF initializer_range). */
  initializerRange: number;
  /**
   * Mistral's sliding_window (absent: full causal attention; llamaConfigFromHF reads MistralConfig's default 4096 for
   * a Mistral config without the key, and none for LLaMA's). Only sequences up to this many positions
   * run (where the window changes nothing); a longer one is refused, as sliding-window attention is not
   * implemented.
   */
  slidingWindow?: number | null;
}

const LLAMA_CONFIG_KEYS = {
  vocabSize: true, hiddenSize: true, intermediateSize: true, numLayers: true, numHeads: true, numKvHeads: true, rmsNormEps: true, ropeTheta: true,
  maxPositionEmbeddings: true, initializerRange: true, slidingWindow: true,
} satisfies Record<keyof LlamaConfig, true>;
const LLAMA_RULES = {
  vocabSize: POSITIVE_INT, hiddenSize: POSITIVE_INT, intermediateSize: POSITIVE_INT, numLayers: POSITIVE_INT, numHeads: POSITIVE_INT,
  numKvHeads: POSITIVE_INT, maxPositionEmbeddings: POSITIVE_INT, rmsNormEps: POSITIVE, ropeTheta: POSITIVE, initializerRange: STD,
} satisfies Record<Exclude<keyof LlamaConfig, 'slidingWindow'>, unknown>;

/**
 * Checks a LlamaConfig object: no unknown key, positive integer sizes, positive eps and theta, heads that group
 * (grouped-query attention) and split the hidden size into even head sizes (RoPE rotates pairs), a positive window.
 * Messages read `${where}: ${prefix}<key> ...` (validateConfig passes 'config', 'llm.').
 */
export function checkLlamaConfig(c: unknown, where: string, prefix = ''): LlamaConfig {
  const o = checkSection(where, prefix, c, LLAMA_CONFIG_KEYS, LLAMA_RULES);
  const { hiddenSize: D, numHeads: H, numKvHeads: KV } = o as unknown as LlamaConfig;
  if (H % KV !== 0) throw new RangeError(`${where}: ${prefix}numHeads ${H} must be a multiple of ${prefix}numKvHeads ${KV} (grouped-query attention)`);
  if (D % H !== 0 || (D / H) % 2 !== 0) throw new RangeError(`${where}: ${prefix}hiddenSize ${D} must split into ${H} heads of an even size (RoPE rotates pairs)`);
  if (o.slidingWindow !== undefined && o.slidingWindow !== null) checkNumbers(where, prefix, o, { slidingWindow: POSITIVE_INT });
  return o as unknown as LlamaConfig;
}

/**
 * Our config from an HF LlamaConfig or MistralConfig (config.json) object, with that class's defaults for the keys it
 * leaves out (transformers 5.18). They differ where it matters: a Mistral config without num_key_value_heads has 8 KV
 * heads, without sliding_window a window of 4096, and Mistral ignores use_sliding_window (Qwen2's key); LLaMA has
 * no window at all (a sliding_window key does nothing there).
 */
export function llamaConfigFromHF(c: Record<string, unknown>, base: 'llama' | 'mistral' = 'llama'): LlamaConfig {
  const mistral = base === 'mistral';
  const numOf = (k: string, v: unknown): number => {
    if (v === undefined) throw new TypeError(`LLaMA config: ${k} is missing (a number is required)`);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`LLaMA config: ${k} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (k: string, d?: number): number => numOf(k, c[k] ?? d);
  // sizes and counts: positive integers (a 16.5 or -3 would only fail later, far from the config)
  const size = (k: string, d?: number): number => {
    const v = num(k, d);
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`LLaMA config: ${k} must be a positive integer, got ${v}`);
    return v;
  };
  if (c.hidden_act !== undefined && c.hidden_act !== 'silu') throw new RangeError(`LLaMA config: hidden_act '${c.hidden_act}' is not supported (only silu)`);
  if (c.attention_bias || c.mlp_bias) throw new RangeError('LLaMA config: attention_bias / mlp_bias are not supported');
  // transformers 5 writes rope_parameters {rope_theta, rope_type} (which wins over a top-level rope_theta, as in
  // transformers 5); 4.x a top-level rope_theta (+ rope_scaling)
  const rp = (typeof c.rope_parameters === 'object' && c.rope_parameters !== null ? c.rope_parameters : {}) as Record<string, unknown>;
  const rs = (typeof c.rope_scaling === 'object' && c.rope_scaling !== null ? c.rope_scaling : {}) as Record<string, unknown>;
  for (const t of [rp.rope_type, rs.rope_type ?? rs.type])
    if (t !== undefined && t !== 'default') throw new RangeError(`LLaMA config: rope type '${String(t)}' is not supported (only default)`);
  const heads = size('num_attention_heads');
  if (c.head_dim !== undefined && c.head_dim !== null && c.head_dim !== num('hidden_size') / heads)
    throw new RangeError(`LLaMA config: head_dim ${String(c.head_dim)} is not hidden_size / num_attention_heads (not supported)`);
  return {
    vocabSize: size('vocab_size'), hiddenSize: size('hidden_size'), intermediateSize: size('intermediate_size'),
    numLayers: size('num_hidden_layers'), numHeads: heads, numKvHeads: size('num_key_value_heads', mistral ? 8 : heads),
    rmsNormEps: num('rms_norm_eps', 1e-6), ropeTheta: rp.rope_theta !== undefined ? numOf('rope_parameters.rope_theta', rp.rope_theta) : num('rope_theta', 10000),
    maxPositionEmbeddings: num('max_position_embeddings', mistral ? 4096 * 32 : 2048), initializerRange: num('initializer_range', 0.02),
    ...(mistral ? slidingWindowOf(c) : {}),
  };
}

/** MistralConfig's sliding_window: absent 4096 (its default), null none. */
function slidingWindowOf(c: Record<string, unknown>): { slidingWindow?: number } {
  const w = c.sliding_window === undefined ? 4096 : c.sliding_window;
  if (w === null) return {};
  if (typeof w !== 'number' || !Number.isInteger(w) || w < 1) throw new TypeError(`Mistral config: sliding_window must be a positive integer or null, got ${JSON.stringify(w)}`);
  return { slidingWindow: w };
}

/** The HF config keys of ours; for a Mistral base with sliding_window (null when none: absent means 4096 there). */
export function llamaConfigToHF(c: LlamaConfig, base: 'llama' | 'mistral' = 'llama'): Record<string, unknown> {
  return {
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers, num_attention_heads: c.numHeads, num_key_value_heads: c.numKvHeads,
    rms_norm_eps: c.rmsNormEps, rope_theta: c.ropeTheta, max_position_embeddings: c.maxPositionEmbeddings,
    initializer_range: c.initializerRange, hidden_act: 'silu', attention_bias: false, mlp_bias: false,
    tie_word_embeddings: false, ...(base === 'mistral' ? { sliding_window: c.slidingWindow ?? null } : {}),
  };
}

/** Keys and values of past positions, per layer, for incremental decoding. */
export class KVCache {
  readonly k: (Tensor | null)[];
  readonly v: (Tensor | null)[];
  length = 0;
  /**
   * Single-token steps with room reserved (generation's decode): `pads` set (each row's left padding), a step writes
   * its key and value into buffers with up to `reserve` free positions at their end (zeros, grown by `reserve` when
   * full) and attends over the whole buffer with a key mask, built here from `pads` and `length`, that hides the
   * padding and the free tail; the caller's key mask is not used then. Without `pads` every step concatenates: it
   * copies the whole cache (at 260 cached positions ~15% of a CPU decode step).
   */
  pads: readonly number[] | null = null;
  reserve = 64;
  private mask: { length: number; cap: number; t: Tensor } | null = null;
  constructor(numLayers: number) {
    this.k = new Array(numLayers).fill(null);
    this.v = new Array(numLayers).fill(null);
  }
  /** The key mask [B, cap] of the next position (length + 1 keys in use), shared by the layers of a step. */
  stepMask(cap: number, device: Device): Tensor {
    const pads = this.pads!;
    if (this.mask && this.mask.length === this.length && this.mask.cap === cap) return this.mask.t;
    this.mask?.t.dispose();
    const B = pads.length, m = new Int32Array(B * cap);
    pads.forEach((p, b) => m.fill(1, b * cap + p, b * cap + this.length + 1));
    this.mask = { length: this.length, cap, t: keep(Tensor.fromArray(m, [B, cap], { device })) };
    return this.mask.t;
  }
  dispose(): void {
    for (const t of [...this.k, ...this.v]) t?.dispose();
    this.k.fill(null);
    this.v.fill(null);
    this.mask?.t.dispose();
    this.mask = null;
    this.length = 0;
  }
}

export class LlamaAttention extends Module {
  readonly q_proj: Linear;
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly o_proj: Linear;
  readonly headDim: number;
  constructor(readonly config: LlamaConfig, init: InitOptions) {
    super();
    const c = config, std = c.initializerRange;
    this.headDim = c.hiddenSize / c.numHeads;
    if (!Number.isInteger(this.headDim)) throw new RangeError(`LLaMA: hidden_size ${c.hiddenSize} is not divisible by num_attention_heads ${c.numHeads}`);
    this.q_proj = this.child('q_proj', new Linear(c.hiddenSize, c.numHeads * this.headDim, { bias: false, std, init }));
    this.k_proj = this.child('k_proj', new Linear(c.hiddenSize, c.numKvHeads * this.headDim, { bias: false, std, init }));
    this.v_proj = this.child('v_proj', new Linear(c.hiddenSize, c.numKvHeads * this.headDim, { bias: false, std, init }));
    this.o_proj = this.child('o_proj', new Linear(c.numHeads * this.headDim, c.hiddenSize, { bias: false, std, init }));
  }

  /** x [B, T, D]; with a cache, positions continue after cache.length and K/V are appended. */
  forward(x: Tensor, keyMask: Tensor | null, cache: KVCache | null, layer: number): Tensor {
    const [B, T] = x.shape, c = this.config, Dh = this.headDim;
    const pos = cache ? cache.length : 0;
    // q, k, v, the attention and its output stay bf16 under autocast (o_proj takes that as its operand), as torch's
    // autocast keeps them; not with a KV cache (generation keeps its cache in float32)
    const [yq, yk, yv] = Linear.forwardMany(x, [this.q_proj, this.k_proj, this.v_proj], { bf16Output: !cache });
    const q = F.rope(F.reshape(yq, [B, T, c.numHeads, Dh]), c.ropeTheta, pos);
    let k = F.rope(F.reshape(yk, [B, T, c.numKvHeads, Dh]), c.ropeTheta, pos);
    let v = F.reshape(yv, [B, T, c.numKvHeads, Dh]);
    if (cache) {
      const pk = cache.k[layer], pv = cache.v[layer];
      if (cache.pads && T === 1 && pk && pv) return this.step(q, k, v, cache, layer);
      if (pk && pv) {
        k = F.concat([pk, k], 1);
        v = F.concat([pv, v], 1);
        pk.dispose();
        pv.dispose();
      } else {
        // the cache owns its own copies (the views above die with the caller's scope)
        k = F.concat([k], 1);
        v = F.concat([v], 1);
      }
      // the cache owns these: they outlive the step's scope
      cache.k[layer] = keep(k);
      cache.v[layer] = keep(v);
    }
    const w = c.slidingWindow;
    if (w && k.shape[1] > w) throw new RangeError(`Mistral: ${k.shape[1]} positions exceed the config's sliding_window of ${w}: sliding-window attention is not implemented (sequences up to ${w} positions are exact)`);
    const o = F.attention(q, k, v, { causal: true, keyMask });
    // into a bf16 residual stream in bf16 (LlamaDecoder.residualDtype), else float32
    return this.o_proj.forward(F.reshape(o, [B, T, c.numHeads * Dh]), { bf16Output: x.dtype === 'bfloat16' });
  }

  // One position per row into a cache with room reserved (KVCache.pads): write, then attend over the whole buffer.
  private step(q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: number): Tensor {
    const [B] = q.shape, c = this.config, Dh = this.headDim, pos = cache.length;
    let bk = cache.k[layer]!, bv = cache.v[layer]!;
    if (pos >= bk.shape[1]) {
      // full (or the prefill's exact-size keys): grow by `reserve` zeros (a masked key must still be finite)
      const room = Tensor.zeros([B, Math.max(1, cache.reserve), c.numKvHeads, Dh], { device: bk.device, dtype: bk.dtype });
      const [nk, nv] = [keep(F.concat([bk, room], 1)), keep(F.concat([bv, room], 1))];
      bk.dispose();
      bv.dispose();
      [bk, bv] = [(cache.k[layer] = nk), (cache.v[layer] = nv)];
    }
    F.writeAt(bk, k, 1, pos);
    F.writeAt(bv, v, 1, pos);
    const w = c.slidingWindow;
    if (w && pos + 1 > w) throw new RangeError(`Mistral: ${pos + 1} positions exceed the config's sliding_window of ${w}: sliding-window attention is not implemented (sequences up to ${w} positions are exact)`);
    const o = F.attention(q, bk, bv, { causal: true, keyMask: cache.stepMask(bk.shape[1], bk.device) });
    return this.o_proj.forward(F.reshape(o, [B, 1, c.numHeads * Dh]));
  }
}

export class LlamaMLP extends Module {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  constructor(c: LlamaConfig, init: InitOptions) {
    super();
    const std = c.initializerRange;
    this.gate_proj = this.child('gate_proj', new Linear(c.hiddenSize, c.intermediateSize, { bias: false, std, init }));
    this.up_proj = this.child('up_proj', new Linear(c.hiddenSize, c.intermediateSize, { bias: false, std, init }));
    this.down_proj = this.child('down_proj', new Linear(c.intermediateSize, c.hiddenSize, { bias: false, std, init }));
  }
  forward(x: Tensor): Tensor {
    // gate, up and their SwiGLU stay bf16 under autocast (down_proj takes that as its operand): half the memory
    const [gate, up] = Linear.forwardMany(x, [this.gate_proj, this.up_proj], { bf16Output: true });
    return this.down_proj.forward(F.swiglu(gate, up), { bf16Output: x.dtype === 'bfloat16' });
  }
}

export class LlamaDecoderLayer extends Module {
  readonly input_layernorm: RMSNorm;
  readonly self_attn: LlamaAttention;
  readonly post_attention_layernorm: RMSNorm;
  readonly mlp: LlamaMLP;
  constructor(c: LlamaConfig, init: InitOptions) {
    super();
    this.self_attn = this.child('self_attn', new LlamaAttention(c, init));
    this.mlp = this.child('mlp', new LlamaMLP(c, init));
    this.input_layernorm = this.child('input_layernorm', new RMSNorm(c.hiddenSize, c.rmsNormEps, init));
    this.post_attention_layernorm = this.child('post_attention_layernorm', new RMSNorm(c.hiddenSize, c.rmsNormEps, init));
  }
  // Each half in a scope: what no backward reads (norm outputs once cast, LoRA's dropout copies) is freed as the half
  // ends, not with the layer: a checkpointed LoRA layer's transient memory at 7B shapes is about half
  // (benchmarks/lora_memory_cpu.ts measures it).
  forward(x: Tensor, keyMask: Tensor | null, cache: KVCache | null, layer: number): Tensor {
    const h = scope(() => F.add(x, this.self_attn.forward(this.input_layernorm.forward(x), keyMask, cache, layer)));
    return scope(() => F.add(h, this.mlp.forward(this.post_attention_layernorm.forward(h))));
  }
}

export interface DecoderOutput {
  /** Final hidden states (after the final norm) [B, T, D]. */
  last: Tensor;
  /** With outputHiddenStates: the embedding output, then each layer's output; the last one normed (HF). */
  hiddenStates: Tensor[] | null;
}

/**
 * The random streams a layer draws from while training: its LoRA adapters' dropout generators. A checkpointed layer
 * runs twice (forward, then recomputed in the backward); replaying these makes the recomputation draw the forward's
 * dropout masks, so the gradients are those of the forward that ran.
 */
function dropoutGenerators(l: LlamaDecoderLayer): Generator[] {
  return [l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj, l.self_attn.o_proj, l.mlp.gate_proj, l.mlp.up_proj, l.mlp.down_proj]
    .flatMap((lin) => (lin.lora && lin.lora.dropout > 0 ? [lin.lora.dropoutGenerator] : []));
}

/** HF LlamaModel: names embed_tokens, layers.N, norm (prefix "model." inside LlamaForCausalLM). */
export class LlamaDecoder extends Module {
  readonly embed_tokens: Embedding;
  readonly layers: ModuleList<LlamaDecoderLayer>;
  readonly norm: RMSNorm;
  /**
   * Recompute each layer in the backward instead of keeping its intermediates (HF's
   * gradient_checkpointing_enable()): training only (no KV cache), same gradients, less memory.
   */
  gradientCheckpointing = false;
  private residual: ComputeDtype = 'float32';
  /**
   * The dtype of the residual stream (the hidden states between and inside the layers, so also what gradient
   * checkpointing keeps of each layer, and the final hidden states) in a forward under autocast('bfloat16') without a
   * KV cache: 'float32' (default) as torch's autocast keeps it; 'bfloat16' as a model loaded in bf16 holds it (HF's
   * torch_dtype=bfloat16, what LLaVA's LoRA recipe trains): half the memory of the checkpoints, each residual add and
   * norm output rounded to bf16 (the norms' statistics stay float32); the final norm's output is float32. That holds
   * for every such forward, training or scoring without gradients; with float32 compute, and in generation (KV cache),
   * the stream is float32 either way.
   */
  get residualDtype(): ComputeDtype {
    return this.residual;
  }
  set residualDtype(d: ComputeDtype) {
    this.residual = parseComputeDtype('LlamaDecoder.residualDtype', d);
  }
  constructor(readonly config: LlamaConfig, init: InitOptions) {
    super();
    checkLlamaConfig(config, 'LlamaDecoder');
    this.embed_tokens = this.child('embed_tokens', new Embedding(config.vocabSize, config.hiddenSize, { std: config.initializerRange, init }));
    const layers: LlamaDecoderLayer[] = [];
    for (let i = 0; i < config.numLayers; i++) layers.push(new LlamaDecoderLayer(config, init));
    this.layers = this.child('layers', new ModuleList(layers));
    this.norm = this.child('norm', new RMSNorm(config.hiddenSize, config.rmsNormEps, init));
  }

  /**
   * inputsEmbeds [B, T, D] (from embed_tokens, or text and image features spliced together);
   * keyMask int32 [B, Tk] (1 = real token; Tk includes cached positions); cache for generation.
   */
  forward(inputsEmbeds: Tensor, opts: DecoderForwardOptions = {}): DecoderOutput {
    opts = checkedOptions('LlamaDecoder.forward', opts, DECODER_FORWARD_KEYS);
    const D = this.config.hiddenSize;
    if (!(inputsEmbeds instanceof Tensor) || inputsEmbeds.rank !== 3 || inputsEmbeds.shape[2] !== D || inputsEmbeds.dtype === 'int32')
      throw typeError('LlamaDecoder.forward', 'inputsEmbeds', `a float tensor [B, T, ${D}] (token embeddings)`, inputsEmbeds);
    const keyMask = opts.keyMask ?? null, cache = opts.cache ?? null;
    const bf16 = this.residual === 'bfloat16' && computeDtype() === 'bfloat16' && !cache;
    let h = bf16 && inputsEmbeds.dtype !== 'bfloat16' ? F.cast(inputsEmbeds, 'bfloat16') : inputsEmbeds;
    const states: Tensor[] | null = opts.outputHiddenStates ? [h] : null;
    // Each layer frees its intermediates as it ends, except what a backward reads (GradNode.reads): without
    // autograd (generation, evaluation) the live memory is one layer's, not the whole decoder's (which overflowed the
    // host cache when answering); in training, what stays is what torch's saved tensors would keep.
    this.layers.items.forEach((layer, i) => {
      h = this.gradientCheckpointing && !cache
        // the key mask as an input: the recomputation reads it, so it must outlive the forward's scopes
        ? gradientCheckpoint((x, mask) => layer.forward(x, mask ?? null, null, i), keyMask ? [h, keyMask] : [h], layer.parameters(), dropoutGenerators(layer))
        : scope(() => layer.forward(h, keyMask, cache, i));
      if (states) states.push(h);
    });
    if (cache) cache.length += inputsEmbeds.shape[1];
    // the final norm reads a bf16 stream widened: the final hidden states (what the losses, the logits and the rows
    // gathered for the KL take) are float32 either way, [N, D] against the [N, V] logits HF makes from them
    const last = this.norm.forward(bf16 ? F.cast(h, 'float32') : h);
    if (states) states[states.length - 1] = last;
    return { last, hiddenStates: states };
  }
}

/** LlamaDecoder.forward's options. */
export interface DecoderForwardOptions {
  /** int32 [B, Tk], 1 = a real token (torch's attention_mask); Tk includes cached positions. */
  keyMask?: Tensor | null;
  cache?: KVCache | null;
  outputHiddenStates?: boolean;
}
const DECODER_FORWARD_KEYS = { keyMask: true, cache: true, outputHiddenStates: true } satisfies Record<keyof DecoderForwardOptions, true>;

/** HF LlamaForCausalLM: model (LlamaDecoder) + lm_head. */
export class LlamaForCausalLM extends Module {
  readonly model: LlamaDecoder;
  readonly lm_head: Linear;
  constructor(readonly config: LlamaConfig, init: InitOptions) {
    super();
    this.model = this.child('model', new LlamaDecoder(config, init));
    this.lm_head = this.child('lm_head', new Linear(config.hiddenSize, config.vocabSize, { bias: false, std: config.initializerRange, init }));
  }
  forward(ids: Tensor, opts: DecoderForwardOptions = {}): DecoderOutput & { logits: Tensor } {
    opts = checkedOptions('LlamaForCausalLM.forward', opts, DECODER_FORWARD_KEYS);
    if (!(ids instanceof Tensor) || ids.rank !== 2 || ids.dtype !== 'int32') throw typeError('LlamaForCausalLM.forward', 'ids', 'an int32 tensor [B, T] (token ids)', ids);
    const out = this.model.forward(this.model.embed_tokens.forward(ids), opts);
    return { ...out, logits: this.lm_head.forward(out.last) };
  }
}
