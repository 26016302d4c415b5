// VW-LMM configuration and its LLaVA-layout config.json (VISUAL_WORDS.md section 1): model_type "llava",
// the mm_* keys, the LLaMA keys at the top level, plus the vision tower's own config (vision_config) when
// the tower is embedded, the VW-LMM keys (vm_*), the conversation template and image preprocessing.
import { ClipVisionConfig, clipConfigFromHF, clipConfigToHF } from '../nn/clip';
import { LlamaConfig, llamaConfigFromHF, llamaConfigToHF } from '../nn/llama';
import { parseProjectorType } from '../nn/projector';
import type { ClipPreprocessOptions } from '../data/images';

export type TemplateName = 'plain' | 'vicuna_v1' | 'mistral';

export interface ImageConfig {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
  /** LLaVA image_aspect_ratio: 'pad' (expand to a square of the mean colour) or 'square' (resize + crop). */
  aspect: 'pad' | 'square';
}

export interface VwLmmConfig {
  llm: LlamaConfig;
  vision: ClipVisionConfig;
  /** mm_vision_tower: a name or a directory; "embedded" when the weights are in this checkpoint. */
  visionTower: string;
  projectorType: string;
  /** mm_vision_select_layer: HF hidden_states index (negative from the end). */
  selectLayer: number;
  selectFeature: 'patch' | 'cls_patch';
  /** Weight of the visual-word KL (0 = plain LLaVA: no vm_head). */
  vmWeight: number;
  /** Pseudo image features: patches enter the LLM as softmax(vm_head(x)) . E. */
  pif: boolean;
  /** Stop the KL gradient at the target (vm_head and projector). Official: false. */
  detachTarget: boolean;
  template: TemplateName;
  /**
   * The language model's family, as LLaVA and the official VW-LMM code tell them apart (model_type llava_mistral, a
   * *Mistral* architecture): it picks the class written to config.json's architectures, the default template, and
   * whether "pif" in a released model's name means PIF (LLaMA bases only). Absent: 'llama'.
   */
  base?: 'llama' | 'mistral';
  image: ImageConfig;
  /** Token id of the image placeholder in tokenized prompts (LLaVA: -200). */
  imageTokenIndex: number;
  /**
   * tokenizer_model_max_length: the positions a training sample is cut to, image features included (LLaVA's
   * model_max_length, which its train.py saves so); absent: 2048, LLaVA-1.5's.
   */
  modelMaxLength?: number;
}

export const CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** How the config preprocesses an image (LLaVA's image_aspect_ratio 'pad', or 'square': resize and centre crop). */
export function clipPreprocessOptions(c: VwLmmConfig): ClipPreprocessOptions {
  return { size: c.image.size, mean: c.image.mean, std: c.image.std, aspect: c.image.aspect === 'pad' ? 'pad' : 'resize_crop' };
}

export function hasVmHead(c: VwLmmConfig): boolean {
  return c.vmWeight > 0 || c.pif;
}

/** Number of image feature tokens one image contributes. */
export function numImageTokens(c: VwLmmConfig): number {
  const grid = c.vision.imageSize / c.vision.patchSize;
  return grid * grid + (c.selectFeature === 'cls_patch' ? 1 : 0);
}

export function validateConfig(c: VwLmmConfig): VwLmmConfig {
  // The shape of the object first (a config written in TypeScript has had no JSON reader look at it): sizes are
  // positive integers that divide as the layers need, so a bad one fails here and not in the first forward.
  const obj = (v: unknown, name: string) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`config: ${name} must be an object, got ${JSON.stringify(v)}`);
    return v as Record<string, unknown>;
  };
  const sizes = (o: Record<string, unknown>, name: string, keys: string[]) => {
    for (const k of keys)
      if (!(Number.isInteger(o[k]) && (o[k] as number) >= 1)) throw new RangeError(`config: ${name}.${k} must be a positive integer, got ${JSON.stringify(o[k])}`);
  };
  const positive = (o: Record<string, unknown>, name: string, keys: string[]) => {
    for (const k of keys)
      if (!(typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) > 0)) throw new RangeError(`config: ${name}.${k} must be a number > 0, got ${JSON.stringify(o[k])}`);
  };
  obj(c, 'the config');
  const llm = obj(c.llm, 'llm'), vision = obj(c.vision, 'vision'), image = obj(c.image, 'image');
  sizes(llm, 'llm', ['vocabSize', 'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'maxPositionEmbeddings']);
  positive(llm, 'llm', ['rmsNormEps', 'ropeTheta']);
  const { hiddenSize: D, numHeads: H, numKvHeads: KV } = c.llm;
  if (H % KV !== 0) throw new RangeError(`config: llm.numHeads ${H} must be a multiple of llm.numKvHeads ${KV} (grouped-query attention)`);
  if (D % H !== 0 || (D / H) % 2 !== 0) throw new RangeError(`config: llm.hiddenSize ${D} must split into ${H} heads of an even size (RoPE rotates pairs)`);
  sizes(vision, 'vision', ['hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'imageSize', 'patchSize', 'numChannels']);
  positive(vision, 'vision', ['layerNormEps']);
  if (c.vision.hiddenSize % c.vision.numHeads !== 0) throw new RangeError(`config: vision.hiddenSize ${c.vision.hiddenSize} must be a multiple of vision.numHeads ${c.vision.numHeads}`);
  if (c.vision.hiddenAct !== 'quick_gelu' && c.vision.hiddenAct !== 'gelu') throw new RangeError(`config: vision.hiddenAct ${JSON.stringify(c.vision.hiddenAct)} is not supported (quick_gelu | gelu)`);
  if (image.size !== c.vision.imageSize)
    throw new RangeError(`config: image_size ${JSON.stringify(image.size)} (the preprocessing) differs from vision_config.image_size ${c.vision.imageSize} (the tower's position embeddings): they must be equal`);
  if (!Number.isInteger(c.imageTokenIndex)) throw new RangeError(`config: image_token_index must be an integer, got ${JSON.stringify(c.imageTokenIndex)}`);
  parseProjectorType(c.projectorType);
  const L = c.vision.numLayers;
  if (!Number.isInteger(c.selectLayer) || c.selectLayer < -(L + 1) || c.selectLayer > L)
    throw new RangeError(`config: mm_vision_select_layer ${c.selectLayer} is out of range for a ${L}-layer tower`);
  if (c.selectLayer === 0 || c.selectLayer === -(L + 1)) {
    // allowed: the embedding output
  }
  if (!(c.vmWeight >= 0)) throw new RangeError(`config: vm_weight must be >= 0, got ${c.vmWeight}`);
  if (!['plain', 'vicuna_v1', 'mistral'].includes(c.template)) throw new RangeError(`config: unknown conversation template '${c.template}'`);
  if (c.selectFeature !== 'patch' && c.selectFeature !== 'cls_patch') throw new RangeError(`config: mm_vision_select_feature '${c.selectFeature}' is not supported`);
  if (c.modelMaxLength !== undefined && !(Number.isInteger(c.modelMaxLength) && c.modelMaxLength >= 1))
    throw new RangeError(`config: tokenizer_model_max_length must be a positive integer, got ${JSON.stringify(c.modelMaxLength)}`);
  return c;
}

/**
 * The class config.json names, as the official VW-LMM code and LLaVA name theirs: vwPifLlamaForCausalLM,
 * vwMistralForCausalLM or vwLlamaForCausalLM for a model with a vm_head (PIF on a Mistral base has no official class:
 * vwMistralForCausalLM, with vm_pif saying the rest), LlavaMistralForCausalLM or LlavaLlamaForCausalLM for plain LLaVA.
 */
export function architectureOf(c: VwLmmConfig): string {
  const mistral = c.base === 'mistral';
  if (hasVmHead(c)) return mistral ? 'vwMistralForCausalLM' : c.pif ? 'vwPifLlamaForCausalLM' : 'vwLlamaForCausalLM';
  return mistral ? 'LlavaMistralForCausalLM' : 'LlavaLlamaForCausalLM';
}

export function configToJson(c: VwLmmConfig): Record<string, unknown> {
  return {
    architectures: [architectureOf(c)],
    // LLaVA's LlavaMistralConfig is "llava_mistral"; the official VW-LMM classes (Mistral too) are "llava"
    model_type: c.base === 'mistral' && !hasVmHead(c) ? 'llava_mistral' : 'llava',
    ...llamaConfigToHF(c.llm),
    mm_vision_tower: c.visionTower,
    mm_hidden_size: c.vision.hiddenSize,
    mm_projector_type: c.projectorType,
    mm_vision_select_layer: c.selectLayer,
    mm_vision_select_feature: c.selectFeature,
    image_aspect_ratio: c.image.aspect,
    mm_use_im_start_end: false,
    mm_use_im_patch_token: false,
    tie_word_embeddings: false,
    vision_config: clipConfigToHF(c.vision),
    vm_weight: c.vmWeight,
    vm_pif: c.pif,
    vm_detach_target: c.detachTarget,
    conversation_template: c.template,
    image_size: c.image.size,
    image_mean: c.image.mean,
    image_std: c.image.std,
    image_token_index: c.imageTokenIndex,
    ...(c.modelMaxLength !== undefined ? { tokenizer_model_max_length: c.modelMaxLength } : {}),
  };
}

/**
 * Typed reads of config.json keys: a wrong type or value is an error naming the key and what it holds
 * (never a silent coercion: "false" is not a boolean, "75" is not a number, a bad image_mean is not
 * replaced by CLIP's).
 */
function keyReader(j: Record<string, unknown>) {
  const show = (v: unknown) => JSON.stringify(v) ?? String(v);
  const get = (k: string) => (j[k] === null ? undefined : j[k]);
  return {
    num(k: string, d: number, check?: { integer?: boolean; min?: number }): number {
      const v = get(k);
      if (v === undefined) return d;
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError(`config: ${k} must be a number, got ${show(v)}`);
      if (check?.integer && !Number.isInteger(v)) throw new TypeError(`config: ${k} must be an integer, got ${show(v)}`);
      if (check?.min !== undefined && v < check.min) throw new RangeError(`config: ${k} must be >= ${check.min}, got ${show(v)}`);
      return v;
    },
    bool(k: string, d: boolean): boolean {
      const v = get(k);
      if (v === undefined) return d;
      if (typeof v !== 'boolean') throw new TypeError(`config: ${k} must be true or false, got ${show(v)}`);
      return v;
    },
    str<T extends string>(k: string, d: T, allowed?: readonly T[]): T {
      const v = get(k);
      if (v === undefined) return d;
      if (typeof v !== 'string') throw new TypeError(`config: ${k} must be a string, got ${show(v)}`);
      if (allowed && !allowed.includes(v as T)) throw new RangeError(`config: ${k} '${v}' is not supported (${allowed.join(' | ')})`);
      return v as T;
    },
    arr3(k: string, d: [number, number, number]): [number, number, number] {
      const v = get(k);
      if (v === undefined) return [...d];
      if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)))
        throw new TypeError(`config: ${k} must be a list of 3 numbers, got ${show(v)}`);
      return [...v] as [number, number, number];
    },
  };
}

export function configFromJson(j: Record<string, unknown>, visionConfig?: Record<string, unknown>): VwLmmConfig {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new TypeError('config: config.json must hold a JSON object');
  // LLaVA's own model types: llava_llama (LlavaConfig) and llava_mistral (LlavaMistralConfig, a Mistral base); its
  // llava_mpt is an MPT base, which vwlmm does not build
  if (j.model_type === 'llava_mpt')
    throw new RangeError("config: model_type 'llava_mpt' (LLaVA's LlavaMptForCausalLM, an MPT base) is not supported: vwlmm builds LLaMA and Mistral bases only");
  if (j.model_type !== undefined && j.model_type !== 'llava' && j.model_type !== 'llava_llama' && j.model_type !== 'llava_mistral')
    throw new RangeError(`config: model_type '${j.model_type}' is not a LLaVA model`);
  if (j.vision_config !== undefined && j.vision_config !== null && (typeof j.vision_config !== 'object' || Array.isArray(j.vision_config)))
    throw new TypeError(`config: vision_config must be an object, got ${JSON.stringify(j.vision_config)}`);
  const vc = (j.vision_config as Record<string, unknown> | undefined | null) ?? visionConfig;
  if (!vc) throw new RangeError(`config: no vision_config; mm_vision_tower '${j.mm_vision_tower}' must be loaded separately (pass its config)`);
  const vision = clipConfigFromHF(vc);
  const k = keyReader(j);
  // LLaVA v0's image start / end tokens around the features would change every prompt: refused, not ignored
  if (k.bool('mm_use_im_start_end', false)) throw new RangeError('config: mm_use_im_start_end true (image start and end tokens around the features, as LLaVA v0 used them) is not supported');
  const archs = Array.isArray(j.architectures) ? j.architectures.filter((a): a is string => typeof a === 'string') : [];
  const base = j.model_type === 'llava_mistral' || archs.some((a) => a.includes('Mistral')) ? 'mistral' : 'llama';
  const modelMaxLength = j.tokenizer_model_max_length === undefined || j.tokenizer_model_max_length === null ? undefined : k.num('tokenizer_model_max_length', 0, { integer: true, min: 1 });
  return validateConfig({
    llm: llamaConfigFromHF(j),
    vision,
    visionTower: k.str('mm_vision_tower', 'embedded'),
    projectorType: k.str('mm_projector_type', 'linear'),
    selectLayer: k.num('mm_vision_select_layer', -2, { integer: true }),
    selectFeature: k.str('mm_vision_select_feature', 'patch', ['patch', 'cls_patch'] as const),
    vmWeight: k.num('vm_weight', 0, { min: 0 }),
    pif: k.bool('vm_pif', false),
    detachTarget: k.bool('vm_detach_target', false),
    // absent (LLaVA's and the official configs): the template the official inference uses for the base
    template: k.str<TemplateName>('conversation_template', base === 'mistral' ? 'mistral' : 'vicuna_v1', ['plain', 'vicuna_v1', 'mistral']),
    ...(base === 'mistral' ? { base } : {}), // absent means LLaMA: configs made in code compare equal to loaded ones
    image: {
      size: k.num('image_size', vision.imageSize, { integer: true, min: 1 }),
      mean: k.arr3('image_mean', CLIP_MEAN),
      std: k.arr3('image_std', CLIP_STD),
      // LLaVA writes 'pad' (1.5) or 'square'; 'anyres' (LLaVA-NeXT) and others are not supported
      aspect: k.str('image_aspect_ratio', 'square', ['pad', 'square'] as const),
    },
    imageTokenIndex: k.num('image_token_index', -200, { integer: true }),
    ...(modelMaxLength !== undefined ? { modelMaxLength } : {}),
  });
}
