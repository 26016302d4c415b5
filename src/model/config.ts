// VW-LMM configuration and its LLaVA-layout config.json (VISUAL_WORDS.md section 1): model_type "llava",
// the mm_* keys, the LLaMA keys at the top level, plus the vision tower's own config (vision_config) when
// the tower is embedded, the VW-LMM keys (vm_*), the conversation template and image preprocessing.
import { checkClipConfig, ClipVisionConfig, clipConfigFromHF, clipConfigToHF } from '../nn/clip';
import { checkNumbers, checkObject, NumberRule, numberFault, POSITIVE, POSITIVE_INT, showValue } from '../nn/config_check';
import { checkLlamaConfig, LlamaConfig, llamaConfigFromHF, llamaConfigToHF } from '../nn/llama';
import { parseProjectorType } from '../nn/projector';
import { CLIP_MEAN, CLIP_STD } from '../data/images';
import type { ClipPreprocessOptions } from '../data/images';
import { checkKeys } from '../errors';
import { TEMPLATES as CONVERSATION_TEMPLATES, type TemplateName } from '../data/conversation';

// the conversation templates a config may record: every one the prompts can be built with (LLaVA's --version)
export type { TemplateName };

// The values of the enumerated fields: one list each for the object check (validateConfig) and config.json's reader
const TEMPLATES = Object.keys(CONVERSATION_TEMPLATES) as readonly TemplateName[];
const ASPECTS = ['pad', 'square'] as const;
const SELECT_FEATURES = ['patch', 'cls_patch'] as const;
const BASES = ['llama', 'mistral'] as const;

export interface ImageConfig {
  size: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
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
  /**
   * Stop the KL gradient at the target (vm_head and projector). Without PIF, vm_head then has no gradient at all and
   * keeps its initial values (the KL pulls the LLM towards a fixed projection). Official: false.
   */
  detachTarget: boolean;
  template: TemplateName;
  /**
   * The language model's family, as LLaVA and the official VW-LMM code tell them apart (model_type llava_mistral, a
   * *Mistral* architecture): it picks the class written to config.json's architectures, the default template, and
   * whether "pif" in a released model's name means PIF (LLaMA bases only). Absent: 'llama'.
   */
  base?: 'llama' | 'mistral';
  image: ImageConfig;
  /**
   * Token id of the image placeholder in tokenized prompts (LLaVA: -200; a model loaded from transformers' layout keeps
   * its vocabulary id, e.g. 32000).
   */
  imageTokenIndex: number;
  /**
   * tokenizer_model_max_length: the positions a training sample is cut to, image features included (LLaVA's
   * model_max_length, which its train.py saves so); absent: 2048, LLaVA-1.5's.
   */
  modelMaxLength?: number;
}

// Every key a config object may hold: another one (vm_weight, llm.num_layers) is refused, not ignored
const CONFIG_KEYS = {
  llm: true, vision: true, visionTower: true, projectorType: true, selectLayer: true, selectFeature: true, vmWeight: true, pif: true,
  detachTarget: true, template: true, base: true, image: true, imageTokenIndex: true, modelMaxLength: true,
} satisfies Record<keyof VwLmmConfig, true>;
const IMAGE_KEYS = { size: true, mean: true, std: true, aspect: true } satisfies Record<keyof ImageConfig, true>;

// One pair of CLIP statistics in the library: data/images.ts's (preprocessClip's defaults), frozen here, so that an edit
// of them cannot change the defaults of every later config and image.
export { CLIP_MEAN, CLIP_STD };
Object.freeze(CLIP_MEAN);
Object.freeze(CLIP_STD);

/** How the config preprocesses an image (LLaVA's image_aspect_ratio 'pad', or 'square': resize and centre crop). */
export function clipPreprocessOptions(c: VwLmmConfig): ClipPreprocessOptions {
  return { size: c.image.size, mean: c.image.mean, std: c.image.std, aspect: c.image.aspect };
}

export function hasVmHead(c: VwLmmConfig): boolean {
  return c.vmWeight > 0 || c.pif;
}

/** Number of image feature tokens one image contributes. */
export function numImageTokens(c: VwLmmConfig): number {
  const grid = c.vision.imageSize / c.vision.patchSize;
  return grid * grid + (c.selectFeature === 'cls_patch' ? 1 : 0);
}

const show = showValue;

/** Whether mm_vision_select_layer `layer` names a hidden state of an L-layer tower (0 and -(L + 1): the embedding output). */
export function selectLayerFits(layer: number, L: number): boolean {
  return Number.isInteger(layer) && layer >= -(L + 1) && layer <= L;
}

/**
 * Checks a config object field by field and returns a copy of it (later edits of `c` do not reach the copy). Whatever
 * passes is what config.json can hold and configFromJson reads back as the same config (finite numbers, the listed
 * values, three-number statistics), so a model created from it saves a loadable checkpoint; an unknown key is refused.
 * An error names the field, what it must be and what it holds.
 */
export function validateConfig(c: VwLmmConfig): VwLmmConfig {
  // The shape of the object first (a config written in TypeScript has had no JSON reader look at it): sizes are
  // positive integers that divide as the layers need, so a bad one fails here and not in the first forward.
  const obj = (v: unknown, name: string, known: Record<string, true>) => {
    const o = checkObject('config', name, v);
    checkKeys('config', `${name === 'the config' ? 'config' : name} key`, o, known);
    return o;
  };
  const num = (o: Record<string, unknown>, name: string, k: string, r: NumberRule): void => checkNumbers('config', name, o, { [k]: r });
  const oneOf = (v: unknown, name: string, allowed: readonly unknown[]) => {
    if (!allowed.includes(v)) throw new (typeof v === 'string' ? RangeError : TypeError)(`config: ${name} must be ${allowed.map((a) => `'${a}'`).join(' | ')}, got ${show(v)}`);
  };
  const bool = (v: unknown, name: string) => {
    if (typeof v !== 'boolean') throw new TypeError(`config: ${name} must be true or false, got ${show(v)}`);
  };
  const triple = (v: unknown, name: string, r: NumberRule) => {
    if (!Array.isArray(v) || v.length !== 3 || v.some((x) => numberFault(x, r) !== null))
      throw new (Array.isArray(v) ? RangeError : TypeError)(`config: ${name} must be a list of 3 numbers${r.above !== undefined ? ` > ${r.above}` : ''} (R, G, B), got ${show(v)}`);
  };
  const top = obj(c, 'the config', CONFIG_KEYS);
  // the sections the modules check themselves (their constructors run the same checks)
  const llm = checkLlamaConfig(top.llm, 'config', 'llm.') as unknown as Record<string, unknown>;
  const vision = checkClipConfig(top.vision, 'config', 'vision.') as unknown as Record<string, unknown>;
  const image = obj(top.image, 'image', IMAGE_KEYS);
  // the images are preprocessed to RGB (CLIP's), whatever the tower could take
  if (c.vision.numChannels !== 3) throw new RangeError(`config: vision.numChannels ${c.vision.numChannels} is not supported: images are preprocessed to 3 channels (RGB), as CLIP's`);
  // LLaMA has no window (transformers' LLaMA ignores the key, and config.json does not carry it for one)
  if (llm.slidingWindow !== undefined && llm.slidingWindow !== null && top.base !== 'mistral')
    throw new RangeError(`config: llm.slidingWindow ${String(llm.slidingWindow)} is for a Mistral base (base: 'mistral'); a LLaMA base has no sliding window`);
  num(image, 'image.', 'size', POSITIVE_INT);
  if (image.size !== c.vision.imageSize)
    throw new RangeError(`config: image_size ${JSON.stringify(image.size)} (the preprocessing) differs from vision_config.image_size ${c.vision.imageSize} (the tower's position embeddings): they must be equal`);
  triple(image.mean, 'image.mean', {});
  triple(image.std, 'image.std', POSITIVE); // the normalisation divides by it
  oneOf(image.aspect, 'image.aspect', ASPECTS);
  if (typeof c.visionTower !== 'string') throw new TypeError(`config: visionTower must be a string (a name, a directory or 'embedded'), got ${show(c.visionTower)}`);
  if (typeof c.projectorType !== 'string') throw new TypeError(`config: projectorType must be a string ('linear' | 'mlp{N}x_gelu'), got ${show(c.projectorType)}`);
  try {
    parseProjectorType(c.projectorType);
  } catch (e) {
    throw new RangeError(`config: projectorType: ${(e as Error).message}`);
  }
  if (!selectLayerFits(c.selectLayer, c.vision.numLayers))
    throw new RangeError(`config: mm_vision_select_layer ${c.selectLayer} is out of range for a ${c.vision.numLayers}-layer tower`);
  oneOf(c.selectFeature, 'selectFeature (mm_vision_select_feature)', SELECT_FEATURES);
  num(top, '', 'vmWeight', { min: 0 });
  bool(c.pif, 'pif');
  bool(c.detachTarget, 'detachTarget');
  if (!(TEMPLATES as readonly unknown[]).includes(c.template)) throw new RangeError(`config: unknown conversation template '${c.template}' (template must be ${TEMPLATES.join(' | ')})`);
  if (c.base !== undefined) oneOf(c.base, 'base', BASES);
  num(top, '', 'imageTokenIndex', { integer: true });
  if (c.modelMaxLength !== undefined) num(top, '', 'modelMaxLength', POSITIVE_INT);
  // a copy of the checked values: only numbers, strings, booleans, null and the statistics' arrays are left
  const copy = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v]));
  return { ...copy(top), llm: copy(llm), vision: copy(vision), image: copy(image) } as unknown as VwLmmConfig;
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
    ...llamaConfigToHF(c.llm, c.base ?? 'llama'),
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
    num(k: string, d: number, check: NumberRule = {}): number {
      const v = get(k);
      if (v === undefined) return d;
      const fault = numberFault(v, check);
      if (fault === 'type') throw new TypeError(`config: ${k} must be a number, got ${show(v)}`);
      if (fault === 'integer') throw new TypeError(`config: ${k} must be an integer, got ${show(v)}`);
      if (fault === 'range') throw new RangeError(`config: ${k} must be ${check.min !== undefined ? `>= ${check.min}` : `> ${check.above}`}, got ${show(v)}`);
      return v as number;
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
    arr3(k: string, d: readonly [number, number, number]): [number, number, number] {
      const v = get(k);
      if (v === undefined) return [...d];
      if (!Array.isArray(v) || v.length !== 3 || v.some((x) => numberFault(x, {}) !== null))
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
  // the projector's input width: LLaVA sizes mm_projector from it, so another than the tower's is another model
  if (j.mm_hidden_size !== undefined && j.mm_hidden_size !== null && j.mm_hidden_size !== vision.hiddenSize)
    throw new RangeError(`config: mm_hidden_size ${JSON.stringify(j.mm_hidden_size)} differs from the vision tower's hidden_size ${vision.hiddenSize} (the projector reads the tower's features)`);
  // LLaVA v0's image start / end tokens around the features would change every prompt: refused, not ignored
  if (k.bool('mm_use_im_start_end', false)) throw new RangeError('config: mm_use_im_start_end true (image start and end tokens around the features, as LLaVA v0 used them) is not supported');
  const archs = Array.isArray(j.architectures) ? j.architectures.filter((a): a is string => typeof a === 'string') : [];
  const base = j.model_type === 'llava_mistral' || archs.some((a) => a.includes('Mistral')) ? 'mistral' : 'llama';
  const modelMaxLength = j.tokenizer_model_max_length === undefined || j.tokenizer_model_max_length === null ? undefined : k.num('tokenizer_model_max_length', 0, { integer: true, min: 1 });
  return validateConfig({
    llm: llamaConfigFromHF(j, base),
    vision,
    visionTower: k.str('mm_vision_tower', 'embedded'),
    projectorType: k.str('mm_projector_type', 'linear'),
    selectLayer: k.num('mm_vision_select_layer', -2, { integer: true }),
    selectFeature: k.str('mm_vision_select_feature', 'patch', SELECT_FEATURES),
    vmWeight: k.num('vm_weight', 0, { min: 0 }),
    pif: k.bool('vm_pif', false),
    detachTarget: k.bool('vm_detach_target', false),
    // absent (LLaVA's and the official configs): the template the official inference uses for the base
    template: k.str<TemplateName>('conversation_template', base === 'mistral' ? 'mistral' : 'vicuna_v1', TEMPLATES),
    ...(base === 'mistral' ? { base } : {}), // absent means LLaMA: configs made in code compare equal to loaded ones
    image: {
      size: k.num('image_size', vision.imageSize, { integer: true, min: 1 }),
      mean: k.arr3('image_mean', CLIP_MEAN),
      std: k.arr3('image_std', CLIP_STD),
      // LLaVA writes 'pad' (1.5) or 'square'; 'anyres' (LLaVA-NeXT) and others are not supported
      aspect: k.str('image_aspect_ratio', 'square', ASPECTS),
    },
    imageTokenIndex: k.num('image_token_index', -200, { integer: true }),
    ...(modelMaxLength !== undefined ? { modelMaxLength } : {}),
  });
}
