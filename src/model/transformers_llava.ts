// Interchange with Hugging Face transformers' LlavaForConditionalGeneration (plain LLaVA: no vm_head).
//
// Layout of a transformers LLaVA directory (checked against transformers 5.18, tests/fixtures/tiny_llava):
//   config.json   model_type "llava", text_config (LlamaConfig), vision_config (CLIPVisionConfig),
//                 image_token_index (a real vocabulary id), projector_hidden_act "gelu",
//                 vision_feature_layer (hidden_states index), vision_feature_select_strategy "default" (CLS
//                 dropped) | "full", multimodal_projector_bias, image_seq_length.
//   weights       save_pretrained (5.x) and the llava-hf hub checkpoints (4.x) use the "legacy" names:
//                   language_model.model.*  language_model.lm_head.weight  multi_modal_projector.linear_{1,2}.*
//                   vision_tower.vision_model.* (4.x, hub)  or  vision_tower.* (5.x save_pretrained)
//                 5.x in memory (and so in some saved files): model.language_model.*, lm_head.*,
//                 model.multi_modal_projector.*, model.vision_tower.* (without vision_model.).
// transformers places image features by overwriting the embeddings at the positions where input_ids equals
// image_token_index (one token per feature, already expanded by the processor), in row-major order; position
// ids stay 0..T-1. Our VwLmm does the same with imagePositions.
//
// One table maps the canonical transformers names to ours and back (longest matching prefix wins either way);
// on loading, the other spellings above are first rewritten to the canonical ones (ALIASES).
import { HostTensor } from '../io/safetensors';
import { ClipVisionConfig, clipConfigFromHF, clipConfigToHF } from '../nn/clip';
import { LlamaConfig, llamaConfigFromHF, llamaConfigToHF } from '../nn/llama';
import { CLIP_MEAN, CLIP_STD, numImageTokens, TemplateName, validateConfig, VwLmmConfig } from './config';

/** [transformers name prefix (as written by our save: the llava-hf hub layout), our name prefix]. */
export const LLAVA_TRANSFORMERS_NAMES: readonly (readonly [string, string])[] = [
  ['language_model.model.', 'model.'],
  ['language_model.lm_head.', 'lm_head.'],
  ['multi_modal_projector.linear_1.', 'model.mm_projector.0.'],
  ['multi_modal_projector.linear_2.', 'model.mm_projector.2.'],
  ['vision_tower.vision_model.', 'model.vision_tower.vision_tower.vision_model.'],
];

/** Other transformers spellings -> the canonical prefix of the table (applied on load only). */
const ALIASES: readonly (readonly [string, string])[] = [
  ['model.language_model.', 'language_model.model.'],
  ['lm_head.', 'language_model.lm_head.'],
  ['model.multi_modal_projector.', 'multi_modal_projector.'],
  ['model.vision_tower.vision_model.', 'vision_tower.vision_model.'],
  ['model.vision_tower.', 'vision_tower.vision_model.'],
  ['vision_tower.', 'vision_tower.vision_model.'],
];

function longestPrefix(name: string, pairs: readonly (readonly [string, string])[], from: 0 | 1): readonly [string, string] | null {
  let best: readonly [string, string] | null = null;
  for (const p of pairs) if (name.startsWith(p[from]) && (!best || p[from].length > best[from].length)) best = p;
  return best;
}

/** Our name for a transformers tensor name (any spelling), or null when it is not a LLaVA tensor. */
export function ourNameFromTransformers(name: string): string | null {
  let canonical = name;
  const identity = longestPrefix(name, LLAVA_TRANSFORMERS_NAMES, 0);
  const alias = longestPrefix(name, ALIASES, 0);
  if (alias && (!identity || alias[0].length > identity[0].length)) canonical = alias[1] + name.slice(alias[0].length);
  const rule = longestPrefix(canonical, LLAVA_TRANSFORMERS_NAMES, 0);
  return rule ? rule[1] + canonical.slice(rule[0].length) : null;
}

/** The transformers name of one of our parameters, or null when transformers' LLaVA has no place for it. */
export function transformersNameFromOurs(name: string): string | null {
  const rule = longestPrefix(name, LLAVA_TRANSFORMERS_NAMES, 1);
  return rule ? rule[0] + name.slice(rule[1].length) : null;
}

// transformers' defaults for keys a sub-config leaves out (LlamaConfig / CLIPVisionConfig, 5.18; the hub
// configs of llava-hf omit most of them).
const LLAMA_DEFAULTS: Record<string, unknown> = {
  vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
  hidden_act: 'silu', max_position_embeddings: 2048, initializer_range: 0.02, rms_norm_eps: 1e-6,
};
const CLIP_VISION_DEFAULTS: Record<string, unknown> = {
  hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3,
  image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5, initializer_range: 0.02,
  initializer_factor: 1,
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** True for a transformers-format LLaVA config.json (sub-configs text_config / vision_config). */
export function isTransformersLlavaConfig(j: Record<string, unknown>): boolean {
  return j.model_type === 'llava' && isObject(j.text_config);
}

function textConfig(j: Record<string, unknown>): LlamaConfig {
  const tc = j.text_config as Record<string, unknown>;
  const type = tc.model_type ?? 'llama';
  if (type !== 'llama') throw new RangeError(`config: text_config.model_type '${String(type)}' is not supported (only llama)`);
  return llamaConfigFromHF({ ...LLAMA_DEFAULTS, ...tc });
}

function visionConfig(j: Record<string, unknown>): ClipVisionConfig {
  const vc = isObject(j.vision_config) ? j.vision_config : {};
  const type = vc.model_type ?? 'clip_vision_model';
  if (type !== 'clip_vision_model') throw new RangeError(`config: vision_config.model_type '${String(type)}' is not supported (only clip_vision_model)`);
  for (const k of ['image_size', 'patch_size'])
    if (vc[k] !== undefined && typeof vc[k] !== 'number') throw new RangeError(`config: vision_config.${k} ${JSON.stringify(vc[k])} is not supported (square images only)`);
  return clipConfigFromHF({ ...CLIP_VISION_DEFAULTS, ...vc });
}

/**
 * Our config from a transformers LLaVA config.json (and its preprocessor_config.json when there is one).
 * The keys our own transformers-format save adds (conversation_template, image_aspect_ratio, image_mean,
 * image_std) take precedence; otherwise the template is vicuna_v1 and the image statistics come from the
 * preprocessor (CLIP's by default).
 */
export function configFromTransformers(j: Record<string, unknown>, preprocessor?: Record<string, unknown>): VwLmmConfig {
  if (!isTransformersLlavaConfig(j)) throw new RangeError(`config: not a transformers LLaVA config (model_type '${String(j.model_type)}', text_config ${j.text_config === undefined ? 'missing' : 'present'})`);
  const llm = textConfig(j), vision = visionConfig(j);
  const act = j.projector_hidden_act ?? 'gelu';
  if (act !== 'gelu') throw new RangeError(`config: projector_hidden_act '${String(act)}' is not supported (only gelu, i.e. mlp2x_gelu)`);
  const layer = j.vision_feature_layer ?? -2;
  if (typeof layer !== 'number') throw new RangeError(`config: vision_feature_layer ${JSON.stringify(layer)} is not supported (one layer only)`);
  const strategy = j.vision_feature_select_strategy ?? 'default';
  if (strategy !== 'default' && strategy !== 'full') throw new RangeError(`config: vision_feature_select_strategy '${String(strategy)}' is not supported (default | full)`);
  const token = j.image_token_index ?? j.image_token_id ?? 32000;
  if (typeof token !== 'number' || !Number.isInteger(token)) throw new RangeError(`config: image_token_index ${JSON.stringify(token)} is not an integer`);
  const pre = preprocessor ?? {};
  const arr3 = (...vs: unknown[]): [number, number, number] => {
    for (const v of vs) if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number')) return [...v] as [number, number, number];
    return [...(vs[vs.length - 1] as [number, number, number])];
  };
  const aspect = j.image_aspect_ratio ?? (pre.do_pad === true ? 'pad' : 'square');
  const maxLength = j.tokenizer_model_max_length;
  if (maxLength !== undefined && maxLength !== null && !(typeof maxLength === 'number' && Number.isSafeInteger(maxLength) && maxLength >= 1))
    throw new RangeError(`config: tokenizer_model_max_length ${JSON.stringify(maxLength)} is not an integer >= 1`);
  return validateConfig({
    llm,
    vision,
    visionTower: 'embedded',
    projectorType: 'mlp2x_gelu',
    selectLayer: layer,
    selectFeature: strategy === 'default' ? 'patch' : 'cls_patch',
    vmWeight: 0,
    pif: false,
    detachTarget: false,
    template: (j.conversation_template ?? 'vicuna_v1') as TemplateName,
    image: {
      size: vision.imageSize,
      mean: arr3(j.image_mean, pre.image_mean, CLIP_MEAN),
      std: arr3(j.image_std, pre.image_std, CLIP_STD),
      aspect: aspect === 'pad' ? 'pad' : 'square',
    },
    imageTokenIndex: token,
    ...(typeof maxLength === 'number' ? { modelMaxLength: maxLength } : {}),
    ...(j.llava_model_type === 'llava_mistral' ? { base: 'mistral' as const } : {}),
  });
}

/** A transformers LLaVA config.json for our config (throws for what transformers' LLaVA cannot express). */
export function configToTransformers(c: VwLmmConfig, imageTokenIndex = c.imageTokenIndex): Record<string, unknown> {
  if (c.vmWeight > 0 || c.pif) throw new RangeError('saveCheckpoint: the transformers format is for plain LLaVA models (vmWeight 0, no pif): LlavaForConditionalGeneration has no vm_head');
  if (c.projectorType !== 'mlp2x_gelu') throw new RangeError(`saveCheckpoint: transformers' LLaVA projector is mlp2x_gelu; this model has '${c.projectorType}'`);
  if (!Number.isInteger(imageTokenIndex) || imageTokenIndex < 0 || imageTokenIndex >= c.llm.vocabSize)
    throw new RangeError(`saveCheckpoint: transformers needs the image token as a vocabulary id in [0, ${c.llm.vocabSize}); the model's is ${imageTokenIndex} (pass imageTokenIndex)`);
  // its text_config is a LLaMA's, which has no sliding window (transformers' LLaMA ignores the key)
  if (c.llm.slidingWindow) throw new RangeError(`saveCheckpoint: the transformers format writes a LLaMA text_config, which has no sliding window; this model's Mistral base has sliding_window ${c.llm.slidingWindow} (save it in the LLaVA layout)`);
  const { rope_theta, ...text } = llamaConfigToHF(c.llm);
  return {
    architectures: ['LlavaForConditionalGeneration'],
    model_type: 'llava',
    dtype: 'float32',
    image_token_index: imageTokenIndex,
    image_seq_length: numImageTokens(c),
    projector_hidden_act: 'gelu',
    multimodal_projector_bias: true,
    vision_feature_layer: c.selectLayer,
    vision_feature_select_strategy: c.selectFeature === 'patch' ? 'default' : 'full',
    tie_word_embeddings: false,
    text_config: {
      model_type: 'llama',
      ...text,
      head_dim: c.llm.hiddenSize / c.llm.numHeads,
      rope_parameters: { rope_theta, rope_type: 'default' },
    },
    vision_config: clipConfigToHF(c.vision),
    // ours, kept by transformers as plain attributes (LLaVA's config names): what its LLaMA text_config cannot say
    conversation_template: c.template,
    image_aspect_ratio: c.image.aspect,
    image_mean: c.image.mean,
    image_std: c.image.std,
    ...(c.modelMaxLength !== undefined ? { tokenizer_model_max_length: c.modelMaxLength } : {}),
    // a Mistral base without a sliding window computes as a LLaMA; LLaVA's layout names it llava_mistral
    ...(c.base === 'mistral' ? { llava_model_type: 'llava_mistral' } : {}),
  };
}

/**
 * preprocessor_config.json and processor_config.json of a transformers-format save, as llava-hf's checkpoints have them:
 * without them AutoProcessor.from_pretrained fails on the folder. The image processor does what preprocessClip does:
 * the shortest edge resized (bicubic) to the tower's size, then a centre crop; for aspect 'pad' first LLaVA-1.5's
 * expand2square (LlavaImageProcessor's do_pad, the mean colour). LlavaProcessor expands each <image> of a prompt to
 * (size / patch)^2 + 1 tokens, less the CLS one for the 'default' strategy: numImageTokens.
 */
export function processorConfigsToTransformers(c: VwLmmConfig): { preprocessor: Record<string, unknown>; processor: Record<string, unknown> } {
  const size = c.image.size;
  return {
    preprocessor: {
      image_processor_type: c.image.aspect === 'pad' ? 'LlavaImageProcessor' : 'CLIPImageProcessor',
      processor_class: 'LlavaProcessor',
      do_convert_rgb: true,
      ...(c.image.aspect === 'pad' ? { do_pad: true } : {}),
      do_resize: true,
      size: { shortest_edge: size },
      resample: 3, // PIL's BICUBIC
      do_center_crop: true,
      crop_size: { height: size, width: size },
      do_rescale: true,
      rescale_factor: 1 / 255,
      do_normalize: true,
      image_mean: [...c.image.mean],
      image_std: [...c.image.std],
    },
    processor: {
      processor_class: 'LlavaProcessor',
      image_token: '<image>',
      patch_size: c.vision.patchSize,
      num_additional_image_tokens: 1,
      vision_feature_select_strategy: c.selectFeature === 'patch' ? 'default' : 'full',
    },
  };
}

// Fields transformers 5 declares as float in LlamaConfig / CLIPVisionConfig (and RoPE's rope_theta): its strict
// config classes reject an integer there ("initializer_factor expected float, got int (value: 1)"), and
// JSON.stringify writes 1.0 as 1, so these are written with a decimal point, as Python's json does.
const FLOAT_FIELDS = new Set(['initializer_range', 'initializer_factor', 'rms_norm_eps', 'layer_norm_eps', 'rope_theta']);

/** config.json text for a transformers config object (2-space indent; float fields keep a decimal point). */
export function stringifyTransformersConfig(value: unknown, indent = '', key = ''): string {
  if (typeof value === 'number' && FLOAT_FIELDS.has(key) && Number.isInteger(value) && Math.abs(value) < 1e16) return `${value}.0`;
  if (Array.isArray(value)) return `[${value.map((v) => stringifyTransformersConfig(v, indent)).join(', ')}]`;
  if (isObject(value)) {
    const inner = indent + '  ';
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return '{}';
    return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${stringifyTransformersConfig(v, inner, k)}`).join(',\n')}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/**
 * Our state dict from transformers tensors: names mapped through the table; projector biases are zeros when
 * the config has multimodal_projector_bias false; lm_head is embed_tokens when the embeddings are tied.
 */
export function weightsFromTransformers(weights: Map<string, HostTensor>, j: Record<string, unknown>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const unknown: string[] = [];
  for (const [name, t] of weights) {
    const ours = ourNameFromTransformers(name);
    if (ours === null) unknown.push(name);
    else if (out.has(ours)) throw new Error(`checkpoint: tensors ${name} and another one both map to ${ours}`);
    else out.set(ours, t);
  }
  if (unknown.length) throw new Error(`checkpoint: ${unknown.length} tensors are not part of transformers' LLaVA layout, e.g. ${unknown.slice(0, 5).join(', ')}`);
  if (j.multimodal_projector_bias === false) {
    for (const k of ['0', '2']) {
      const w = out.get(`model.mm_projector.${k}.weight`);
      if (w && !out.has(`model.mm_projector.${k}.bias`)) out.set(`model.mm_projector.${k}.bias`, { dtype: 'float32', shape: [w.shape[0]], data: new Float32Array(w.shape[0]) });
    }
  }
  const tied = j.tie_word_embeddings === true || (isObject(j.text_config) && j.text_config.tie_word_embeddings === true);
  const emb = out.get('model.embed_tokens.weight');
  if (tied && emb && !out.has('lm_head.weight')) out.set('lm_head.weight', emb);
  return out;
}

/** transformers tensors from our state dict (every parameter must have a transformers name). */
export function weightsToTransformers<T = HostTensor>(stateDict: Map<string, T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [name, t] of stateDict) {
    const hf = transformersNameFromOurs(name);
    if (hf === null) throw new RangeError(`saveCheckpoint: parameter ${name} has no place in transformers' LLaVA layout`);
    out.set(hf, t);
  }
  return out;
}
