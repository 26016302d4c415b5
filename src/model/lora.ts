// LoRA on a LLaMA decoder (a VwLmm's LLM or a plain LlamaForCausalLM), as LLaVA-1.5's LoRA recipe applies it with
// PEFT: adapters on every Linear of the decoder layers (q/k/v/o, gate/up/down), never on lm_head, vm_head, the
// projector or the vision tower. Adapters are read and written in PEFT's format (adapter_config.json +
// adapter_model.safetensors with "base_model.model."-prefixed names), merged into the weights, or removed.
//
// Layouts. PEFT names an adapter's tensors and matches target_modules by the module names of the model it was put on:
//   'llava'         our names = LLaVA's repository (LlavaLlamaForCausalLM) = a plain LlamaForCausalLM:
//                   model.layers.N.self_attn.q_proj
//   'transformers'  transformers' LlavaForConditionalGeneration (5.x in memory, which PEFT sees):
//                   model.language_model.layers.N.self_attn.q_proj, model.multi_modal_projector.linear_1, lm_head,
//                   model.vision_tower.encoder.layers.N.self_attn.q_proj (CLIP has q/k/v_proj too)
// A list target_modules matches module-name suffixes, so on a whole LLaVA ['q_proj', ...] wraps CLIP's q/k/v as well;
// a string is re.fullmatch'ed against the full module name. Our saves of a VW-LMM therefore write a regular expression
// that only the LLM's Linear layers match.
//
// Training checkpoints: loraTrainingRecord (written into trainer_state.json) and resumeLoraTraining (on resume) keep
// the adapters' dropout streams (src/nn/lora.ts LoraDropoutStream) where the run left them, and refuse a resume whose
// adapters or trainable parameters are not the checkpoint's, naming what differs.
import { createHash, randomUUID } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { HostTensor, readRegularFileSync, readSafetensorsWithMetadata, writeSafetensors } from '../io/safetensors';
import { readTorchBin } from '../io/torch_bin';
import { writeParameter } from '../nn/module';
import { Linear } from '../nn/layers';
import { LlamaDecoder } from '../nn/llama';
import { LLM_LORA_TARGETS, loraDropoutSeed, LoraOptions } from '../nn/lora';
import { checkKeys, typeError } from '../errors';
import { checkSeed, Generator } from '../random';
import { Tensor } from '../tensor';
import { isTransformersLlavaConfig, ourNameFromTransformers, transformersNameFromOurs } from './transformers_llava';
import { writeFileAtomic } from '../io/atomic_file';

/** A model with a LLaMA decoder under `.model` (VwLmm, nn.LlamaForCausalLM). */
export interface WithDecoder {
  readonly model: LlamaDecoder;
  namedParameters(prefix?: string): Map<string, Tensor>;
}

export interface LoraConfig extends Omit<LoraOptions, 'dropoutSeed'> {
  /** Linear names inside the decoder layers (default: all seven, LLaVA-1.5's choice). */
  targetModules?: readonly string[];
  /** Seed of the A initialisation and the dropout masks (each adapter's: loraDropoutSeed(seed, its module's name)). */
  seed?: number;
}

const LORA_CONFIG_KEYS = { r: true, alpha: true, dropout: true, targetModules: true, seed: true } satisfies Record<keyof LoraConfig, true>;

/** The Linear layers of the decoder that `targets` names, with their dotted names (as the model names them). */
function targetLinears(model: WithDecoder, targets: readonly string[]): [string, Linear][] {
  const unknown = targets.filter((t) => !(LLM_LORA_TARGETS as readonly string[]).includes(t));
  if (unknown.length) throw new RangeError(`LoRA: target module(s) ${unknown.join(', ')} are not Linear layers of the decoder (${LLM_LORA_TARGETS.join(', ')})`);
  const out: [string, Linear][] = [];
  model.model.layers.items.forEach((layer, i) => {
    const byName: Record<string, Linear> = {
      q_proj: layer.self_attn.q_proj, k_proj: layer.self_attn.k_proj, v_proj: layer.self_attn.v_proj, o_proj: layer.self_attn.o_proj,
      gate_proj: layer.mlp.gate_proj, up_proj: layer.mlp.up_proj, down_proj: layer.mlp.down_proj,
    };
    for (const t of targets) out.push([`model.layers.${i}.${t === 'q_proj' || t === 'k_proj' || t === 'v_proj' || t === 'o_proj' ? 'self_attn' : 'mlp'}.${t}`, byName[t]]);
  });
  return out;
}

/**
 * Adds LoRA adapters (B = 0: the model's outputs are unchanged until they train). Returns how many. Unlike PEFT's
 * get_peft_model, the base's parameters keep their requiresGrad: a Trainer stage's `trainable` (lora: true, the rest
 * as LLaVA's recipe) decides what trains; a hand-written loop freezes the base itself (model.setTrainable(false),
 * then requiresGrad on loraParameters).
 */
export function applyLora(model: WithDecoder, cfg: LoraConfig): number {
  const where = 'applyLora';
  if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) throw typeError(where, 'config', `an object { ${Object.keys(LORA_CONFIG_KEYS).join(', ')} }`, cfg);
  // a misspelt key (targetModule) would otherwise put adapters on every Linear without a word
  checkKeys(where, 'option', cfg, LORA_CONFIG_KEYS);
  const targets = cfg.targetModules ?? LLM_LORA_TARGETS;
  if (!Array.isArray(targets) || !targets.every((t) => typeof t === 'string')) throw typeError(where, 'targetModules', `an array of module names (${LLM_LORA_TARGETS.join(', ')})`, targets);
  const seed = checkSeed(where, 'seed', cfg.seed ?? 0);
  const gen = new Generator(seed).fork('lora');
  const list = targetLinears(model, targets);
  if (list.some(([, l]) => l.lora)) throw new Error('LoRA: the model already has adapters (merge or remove them first)');
  for (const [name, lin] of list) {
    const a = lin.addLora({ r: cfg.r, alpha: cfg.alpha, dropout: cfg.dropout, dropoutSeed: loraDropoutSeed(seed, name) }, gen.fork(name));
    a.loraSeed = seed;
  }
  return list.length;
}

/** The adapters' settings (null without adapters). */
export function loraConfigOf(model: WithDecoder): (LoraOptions & { targetModules: string[] }) | null {
  const found = new Set<string>();
  let opts: LoraOptions | null = null;
  for (const [name, lin] of targetLinears(model, LLM_LORA_TARGETS)) {
    if (!lin.lora) continue;
    found.add(name.split('.').pop()!);
    opts ??= lin.lora.opts;
  }
  return opts ? { r: opts.r, alpha: opts.alpha, dropout: opts.dropout ?? 0, targetModules: LLM_LORA_TARGETS.filter((t) => found.has(t)) } : null;
}

/** The adapters' parameters (lora_A / lora_B weights) with their names. */
export function loraParameters(model: WithDecoder): Map<string, Tensor> {
  return new Map([...model.namedParameters()].filter(([n]) => /\.lora_[AB]\.weight$/.test(n)));
}

/** Merges every adapter into its Linear's weight (W += alpha / r B A) and removes it. */
export function mergeLora(model: WithDecoder): void {
  for (const [, lin] of targetLinears(model, LLM_LORA_TARGETS)) lin.removeLora(true);
}

/** Removes every adapter without merging it. */
export function removeLora(model: WithDecoder): void {
  for (const [, lin] of targetLinears(model, LLM_LORA_TARGETS)) lin.removeLora(false);
}

// ---------------------------------------------------------------------------------------------- training checkpoints

/** What a training checkpoint records of the model (trainer_state.json keys `trainableParameters` and `lora`). */
export interface LoraTrainingRecord {
  /** The parameters the checkpoint's stage trained: how many per part (the --trainable words), and a digest of names and shapes. */
  trainableParameters: { count: number; parts: Record<string, number>; digest: string };
  /**
   * The adapters (null: none): their settings, and where their dropout streams stand: `seed` (applyLora's) and `calls`
   * when every adapter shares them, else `streams`, [dropout seed, calls] per adapter in the model's order.
   */
  lora: { r: number; alpha: number; dropout: number; targetModules: string[]; seed?: number; calls?: number; streams?: [number, number][] } | null;
}

/** The part of the model a parameter belongs to, in `vwlmm train --trainable`'s words. */
function partOf(name: string): string {
  if (/\.lora_[AB]\.weight$/.test(name)) return 'lora';
  if (name.startsWith('model.vision_tower.')) return 'vision';
  if (name.startsWith('model.mm_projector.')) return 'projector';
  if (name.startsWith('vm_head.')) return 'vm';
  return 'llm';
}

function trainableSummary(model: WithDecoder): LoraTrainingRecord['trainableParameters'] {
  const hash = createHash('sha256'), parts: Record<string, number> = {};
  let count = 0;
  for (const [n, p] of model.namedParameters()) {
    if (!p.requiresGrad) continue;
    count++;
    parts[partOf(n)] = (parts[partOf(n)] ?? 0) + 1;
    hash.update(`${n}[${p.shape.join(',')}];`);
  }
  return { count, parts, digest: hash.digest('hex').slice(0, 16) };
}

/**
 * What a training checkpoint keeps of the model besides its weights (the Trainer writes it into trainer_state.json):
 * which parameters the stage trains (requiresGrad now), and the adapters' settings and dropout streams.
 */
export function loraTrainingRecord(model: WithDecoder): LoraTrainingRecord {
  const cfg = loraConfigOf(model);
  if (!cfg) return { trainableParameters: trainableSummary(model), lora: null };
  const adapters = targetLinears(model, LLM_LORA_TARGETS).filter(([, l]) => l.lora).map(([n, l]) => [n, l.lora!] as const);
  const base = adapters[0][1].loraSeed, calls = adapters[0][1].dropoutGenerator.calls;
  const uniform = base !== null && adapters.every(([n, a]) => a.loraSeed === base && a.dropoutGenerator.seed === loraDropoutSeed(base, n) && a.dropoutGenerator.calls === calls);
  const lora = { r: cfg.r, alpha: cfg.alpha, dropout: cfg.dropout ?? 0, targetModules: cfg.targetModules };
  return {
    trainableParameters: trainableSummary(model),
    lora: uniform ? { ...lora, seed: base!, calls } : { ...lora, streams: adapters.map(([, a]) => [a.dropoutGenerator.seed, a.dropoutGenerator.calls]) },
  };
}

const describeParts = (parts: Record<string, number>): string => {
  const order = ['vision', 'projector', 'llm', 'vm', 'lora'];
  const keys = Object.keys(parts).sort((a, b) => order.indexOf(a) - order.indexOf(b));
  return keys.length ? keys.map((k) => `${k} (${parts[k]} tensors)`).join(', ') : 'nothing';
};
const describeLora = (l: { r: number; alpha: number; dropout: number; targetModules: string[] }): string =>
  `r ${l.r}, alpha ${l.alpha}, dropout ${l.dropout} on ${l.targetModules.join(', ')}`;

/**
 * On resume, before the optimizer state is loaded: takes the record loraTrainingRecord wrote out of `state` (the
 * trainer state as read from the checkpoint; its keys `trainableParameters` and `lora` are removed), refuses a model
 * whose adapters or trainable parameters (requiresGrad, as this run's stage set them) are not the checkpoint's, naming
 * what differs (`where` first), and puts the adapters' dropout streams where the checkpoint's run left them. A
 * checkpoint without the record (written before it) is not checked and its streams start anew.
 */
export function resumeLoraTraining(model: WithDecoder, state: object, where: string): void {
  const st = state as { trainableParameters?: LoraTrainingRecord['trainableParameters']; lora?: LoraTrainingRecord['lora'] };
  const saved = { trainable: st.trainableParameters, lora: st.lora };
  delete st.trainableParameters;
  delete st.lora;
  const how = 'the run would not continue exactly: resume with the settings of the checkpoint\'s run, or start a new run from its weights';
  const cfg = loraConfigOf(model);
  if (saved.lora !== undefined) {
    const now = cfg && { r: cfg.r, alpha: cfg.alpha, dropout: cfg.dropout ?? 0, targetModules: cfg.targetModules };
    const was = saved.lora && { r: saved.lora.r, alpha: saved.lora.alpha, dropout: saved.lora.dropout, targetModules: saved.lora.targetModules };
    if (JSON.stringify(now) !== JSON.stringify(was))
      throw new Error(`${where}: the checkpoint's run had ${was ? `LoRA adapters of ${describeLora(was)}` : 'no LoRA adapters'}, this model has ${now ? `adapters of ${describeLora(now)}` : 'none'} (${how})`);
  }
  if (saved.trainable) {
    const now = trainableSummary(model);
    if (now.digest !== saved.trainable.digest) {
      const sameParts = JSON.stringify(Object.entries(now.parts).sort()) === JSON.stringify(Object.entries(saved.trainable.parts).sort());
      throw new Error(`${where}: the checkpoint's run trained ${describeParts(saved.trainable.parts)}, this run trains ${describeParts(now.parts)}${sameParts ? ' of other names or shapes' : ''} (--trainable / Stage.trainable, --lora-r: ${how})`);
    }
  }
  if (saved.lora) {
    const adapters = targetLinears(model, LLM_LORA_TARGETS).filter(([, l]) => l.lora).map(([n, l]) => [n, l.lora!] as const);
    const { seed, calls, streams } = saved.lora;
    if (streams) {
      if (streams.length !== adapters.length) throw new Error(`${where}: the checkpoint records ${streams.length} LoRA dropout streams, the model has ${adapters.length} adapters`);
      adapters.forEach(([, a], k) => {
        a.dropoutGenerator.seed = streams[k][0];
        a.dropoutGenerator.calls = streams[k][1];
      });
    } else if (typeof seed === 'number' && typeof calls === 'number') {
      // the adapters were made by applyLora (here, e.g. by loadCheckpoint, maybe with another seed): the run's streams
      for (const [n, a] of adapters) {
        a.loraSeed = seed;
        a.dropoutGenerator.seed = loraDropoutSeed(seed, n);
        a.dropoutGenerator.calls = calls;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- PEFT adapter files

const PEFT_PREFIX = 'base_model.model.';

/** How PEFT names an adapter's modules: on our (LLaVA's) model, or on transformers' LlavaForConditionalGeneration. */
export type AdapterLayout = 'llava' | 'transformers';

/** transformers' on-disk (legacy) LLaVA prefixes -> the module names of 5.x in memory, which PEFT sees. */
const TRANSFORMERS_IN_MEMORY: readonly (readonly [string, string])[] = [
  ['language_model.model.', 'model.language_model.'],
  ['language_model.lm_head.', 'lm_head.'],
  ['multi_modal_projector.', 'model.multi_modal_projector.'],
  ['vision_tower.vision_model.', 'model.vision_tower.'],
];

/**
 * The name PEFT sees on transformers' LLaVA (5.x) for one of our parameters, or for a module that keeps its name's
 * tail there (a decoder layer's Linear, lm_head; not model.mm_projector, whose children are renamed), or null (vm_head).
 */
function transformersModuleName(ours: string): string | null {
  const legacy = transformersNameFromOurs(`${ours}.`);
  if (legacy === null) return null;
  const rule = TRANSFORMERS_IN_MEMORY.find(([from]) => legacy.startsWith(from));
  return (rule ? rule[1] + legacy.slice(rule[0].length) : legacy).replace(/\.$/, '');
}

/** The decoder Linears' names in a layout ('legacy': transformers' on-disk spelling, language_model.model.*). */
function layoutName(ours: string, layout: AdapterLayout | 'legacy'): string {
  if (layout === 'llava') return ours;
  const n = layout === 'legacy' ? transformersNameFromOurs(`${ours}.`)?.replace(/\.$/, '') : transformersModuleName(ours);
  if (!n) throw new Error(`LoRA: ${ours} has no name in transformers' LLaVA`);
  return n;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The target_modules regular expression that matches exactly these decoder Linears (all layers) in `layout`, e.g.
 * model\.language_model\.layers\.\d+\.(?:self_attn\.(?:q_proj|v_proj)|mlp\.(?:down_proj)).
 */
function targetRegex(targets: readonly string[], layout: AdapterLayout): string {
  const prefix = layoutName('model.layers', layout);
  const attn = targets.filter((t) => /^[qkvo]_proj$/.test(t)), mlp = targets.filter((t) => !/^[qkvo]_proj$/.test(t));
  const alts = [...(attn.length ? [`self_attn\\.(?:${attn.join('|')})`] : []), ...(mlp.length ? [`mlp\\.(?:${mlp.join('|')})`] : [])];
  return `${escapeRegExp(prefix)}\\.\\d+\\.(?:${alts.join('|')})`;
}

/** The layout of a base model directory: transformers' when its config.json is a LlavaForConditionalGeneration's. */
function layoutOfBase(base: string | undefined): AdapterLayout {
  if (!base) return 'llava';
  const cfg = path.join(base, 'config.json');
  if (!fs.existsSync(cfg)) return 'llava';
  try {
    return isTransformersLlavaConfig(JSON.parse(fs.readFileSync(cfg, 'utf8')) as Record<string, unknown>) ? 'transformers' : 'llava';
  } catch {
    return 'llava';
  }
}

/** The metadata key of our adapter files that ties adapter_model.safetensors and non_lora_trainables.safetensors to one save. */
const SAVE_KEY = 'vwlmm_lora_save';

export interface SaveLoraAdapterOptions {
  baseModelNameOrPath?: string;
  nonLoraTrainables?: string[];
  layout?: AdapterLayout;
}
const SAVE_ADAPTER_KEYS = { baseModelNameOrPath: true, nonLoraTrainables: true, layout: true } satisfies Record<keyof SaveLoraAdapterOptions, true>;

/**
 * Writes the adapters as PEFT does (adapter_config.json, adapter_model.safetensors), so that
 * PeftModel.from_pretrained(base, dir) loads them onto the model of the same weights, in the base's layout: `layout`
 * 'transformers' for transformers' LlavaForConditionalGeneration (the default when baseModelNameOrPath is such a
 * directory), else 'llava' (ours, LLaVA's, a plain LlamaForCausalLM's). On a VW-LMM / LLaVA, target_modules is a
 * regular expression that only the LLM's Linear layers match (a list would make PEFT wrap CLIP's q/k/v_proj too).
 * `nonLoraTrainables` (module names, e.g. ['model.mm_projector', 'vm_head']): the fully trained parts, as LLaVA's
 * non_lora_trainables.safetensors in the 'llava' layout, or as PEFT's modules_to_save (in adapter_model.safetensors,
 * which PEFT loads) in the 'transformers' layout. A non_lora_trainables file of an earlier save into `dir` is removed,
 * and loadLoraAdapter reads one only when it belongs to the adapter beside it.
 */
export function saveLoraAdapter(dir: string, model: WithDecoder, opts: SaveLoraAdapterOptions = {}): void {
  const where = `saveLoraAdapter: ${dir}`;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', `an object { ${Object.keys(SAVE_ADAPTER_KEYS).join(', ')} }`, opts);
  checkKeys(where, 'option', opts, SAVE_ADAPTER_KEYS);
  if (opts.baseModelNameOrPath !== undefined && typeof opts.baseModelNameOrPath !== 'string') throw typeError(where, 'baseModelNameOrPath', 'a string', opts.baseModelNameOrPath);
  if (opts.nonLoraTrainables !== undefined && !(Array.isArray(opts.nonLoraTrainables) && opts.nonLoraTrainables.every((n) => typeof n === 'string')))
    throw typeError(where, 'nonLoraTrainables', 'an array of module names', opts.nonLoraTrainables);
  const cfg = loraConfigOf(model);
  if (!cfg) throw new Error(`${where}: the model has no LoRA adapters`);
  const layout = opts.layout ?? layoutOfBase(opts.baseModelNameOrPath);
  if (layout !== 'llava' && layout !== 'transformers') throw new RangeError(`${where}: layout must be 'llava' or 'transformers', got ${JSON.stringify(layout)}`);
  const multimodal = 'vision_tower' in model.model;
  if (layout === 'transformers' && !multimodal) throw new RangeError(`${where}: layout 'transformers' is LlavaForConditionalGeneration's; this model is a plain LLaMA (layout 'llava')`);
  const name = (ours: string) => (layout === 'llava' ? ours : transformersModuleName(ours)!);
  const tensors = new Map<string, HostTensor>();
  for (const [n, t] of loraParameters(model)) tensors.set(PEFT_PREFIX + name(n), { dtype: 'float32', shape: [...t.shape], data: t.toArray() as Float32Array });
  // the fully trained parts
  const all = model.namedParameters(), extra = new Map<string, HostTensor>(), modulesToSave: string[] = [];
  for (const prefix of opts.nonLoraTrainables ?? []) {
    const hits = [...all].filter(([n]) => (n === prefix || n.startsWith(`${prefix}.`)) && !/\.lora_[AB]\.weight$/.test(n));
    if (!hits.length) throw new RangeError(`${where}: nonLoraTrainables '${prefix}' names no parameter of the model`);
    if (layout === 'transformers') {
      const mapped = hits.map(([n]) => transformersModuleName(n));
      if (mapped.some((n) => n === null))
        throw new RangeError(`${where}: nonLoraTrainables '${prefix}' has no place in transformers' LlavaForConditionalGeneration (layout 'transformers')`);
      // the module: what its parameters' modules share (model.mm_projector.{0,2} -> model.multi_modal_projector.linear_{1,2})
      const owners = mapped.map((n) => n!.split('.').slice(0, -1));
      let k = 0;
      while (k < owners[0].length && owners.every((o) => o[k] === owners[0][k])) k++;
      if (k === 0) throw new RangeError(`${where}: nonLoraTrainables '${prefix}' is no single module of transformers' LlavaForConditionalGeneration`);
      modulesToSave.push(owners[0].slice(0, k).join('.'));
      for (const [n, t] of hits) tensors.set(PEFT_PREFIX + transformersModuleName(n)!, { dtype: 'float32', shape: [...t.shape], data: t.toArray() as Float32Array });
    } else {
      // as LLaVA's LoRA training saves them (names prefixed "base_model.model.")
      for (const [n, t] of hits) extra.set(PEFT_PREFIX + n, { dtype: 'float32', shape: [...t.shape], data: t.toArray() as Float32Array });
    }
  }
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    r: cfg.r, lora_alpha: cfg.alpha, lora_dropout: cfg.dropout,
    target_modules: multimodal ? targetRegex(cfg.targetModules, layout) : cfg.targetModules, bias: 'none',
    fan_in_fan_out: false, inference_mode: true, use_rslora: false, use_dora: false, modules_to_save: modulesToSave.length ? modulesToSave : null,
    init_lora_weights: true, rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null,
  };
  fs.mkdirSync(dir, { recursive: true });
  // Each file is written whole and renamed in (writeSafetensors; the config below), in an order that a crash at any
  // point leaves loadable: a non_lora_trainables file carries the save's id and is read only beside the
  // adapter_model.safetensors of the same id, so a stale one, or a new one beside an old adapter, is never applied.
  const id = randomUUID();
  if (extra.size) writeSafetensors(path.join(dir, 'non_lora_trainables.safetensors'), extra, { format: 'pt', [SAVE_KEY]: id });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt', [SAVE_KEY]: id });
  writeFileAtomic(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  // LLaVA's own loader reads non_lora_trainables.bin (or .safetensors) whatever the adapter: a stale one goes
  if (!extra.size) for (const f of ['non_lora_trainables.safetensors', 'non_lora_trainables.bin']) fs.rmSync(path.join(dir, f), { force: true });
}

/** PEFT target_modules given as a string: a JS RegExp with Python's re.fullmatch semantics; Python-only syntax refused. */
function peftTargetRegExp(src: string, where: string): RegExp {
  const bad = (why: string): never => {
    throw new RangeError(`${where}: adapter_config.json target_modules ${JSON.stringify(src)}: ${why}`);
  };
  // Python-only escapes (JavaScript reads \A, \Z as letters)
  for (const m of src.matchAll(/\\(.)/g)) {
    if ('AZ'.includes(m[1])) bad(`\\${m[1]} is Python's anchor; JavaScript has no such escape (the whole name is matched anyway: drop it)`);
    if (m[1] === 'N' || m[1] === 'U') bad(`\\${m[1]} is a Python-only escape`);
  }
  // the syntax outside escapes and character classes
  const bare = src.replace(/\\./g, '__').replace(/\[\^?\]?(?:[^\]\\]|\\.)*\]/g, '_');
  const pythonOnly: [RegExp, string][] = [
    [/\(\?P[<=>]/, "Python's named groups (?P<name>...) / (?P=name)"],
    [/\(\?[aiLmsux]+(?:-[imsx]+)?[:)]|\(\?-[imsx]+[:)]/, 'inline flags such as (?i)'],
    [/\(\?#/, 'a (?#...) comment'],
    [/\(\?>/, 'an atomic group (?>...)'],
    [/\(\?\(/, 'a conditional group (?(1)...)'],
    [/[*+?}]\+/, 'a possessive quantifier (*+, ++, ?+, }+)'],
  ];
  for (const [re, what] of pythonOnly) if (re.test(bare)) bad(`${what} is Python-only syntax, which JavaScript's RegExp does not read the same way`);
  try {
    return new RegExp(`^(?:${src})$`);
  } catch (e) {
    return bad(`not a regular expression JavaScript reads (${(e as Error).message})`);
  }
}

/**
 * Loads a PEFT LoRA adapter directory onto the model (adds the adapters, then sets their weights; adapter_model
 * .safetensors or PyTorch's .bin), whichever layout PEFT saw (ours / LLaVA's, or transformers' LlavaForConditional
 * Generation). target_modules may be a list (module-name suffixes) or a regular expression (PEFT's re.fullmatch on the
 * full module name, here a JS RegExp: Python-only syntax refused); it must select the same Linear layers in every
 * decoder layer. modules_to_save (e.g. transformers' 'multi_modal_projector'): the saved modules' tensors are written
 * into the model's own parameters. A non_lora_trainables file beside it (LLaVA's LoRA checkpoints: the projector, and
 * vm_head for VW-LMM) is loaded into the model's parameters too, named as LLaVA names them; beside an adapter of ours,
 * only the one that save wrote. Refuses what it cannot apply exactly, naming it and the directory: another peft_type,
 * DoRA, a bias, per-layer rank / alpha patterns or layers, fan_in_fan_out, adapters outside the decoder's Linear
 * layers (the vision tower's, the projector's: PEFT's 'all-linear'), missing or misshaped tensors; then nothing is
 * changed. rsLoRA scales by alpha / sqrt(r).
 */
export function loadLoraAdapter(dir: string, model: WithDecoder): { adapters: number; /** non-LoRA tensors written: non_lora_trainables and modules_to_save */ nonLoraTrainables: number } {
  const where = `loadLoraAdapter: ${dir}`;
  const file = path.join(dir, 'adapter_config.json');
  if (!fs.existsSync(file)) throw new Error(`${where}: no adapter_config.json (a PEFT adapter directory has it and adapter_model.safetensors)`);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(readRegularFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${where}: adapter_config.json is not valid JSON (${(e as Error).message})`);
  }
  const bad = (k: string, why: string): never => {
    throw new RangeError(`${where}: adapter_config.json ${k} ${why}`);
  };
  const set = (v: unknown) => v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0) && !(typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0);
  if (c.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(c.peft_type)}, only LORA is supported`);
  if (c.use_dora) bad('use_dora', 'is set: DoRA is not supported');
  if (c.bias !== undefined && c.bias !== 'none') bad('bias', `is ${JSON.stringify(c.bias)}: only 'none' is supported`);
  if (c.fan_in_fan_out) bad('fan_in_fan_out', 'is set (a Conv1D / GPT-2 layout), not a LLaMA Linear');
  if (c.lora_bias) bad('lora_bias', 'is set: adapters with a bias are not supported');
  for (const k of ['rank_pattern', 'alpha_pattern']) if (c[k] && Object.keys(c[k] as object).length) bad(k, 'is not empty: per-layer ranks are not supported');
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) bad('layers_to_transform', 'is set: adapters on some layers only are not supported');
  for (const k of ['exclude_modules', 'target_parameters', 'trainable_token_indices', 'layer_replication', 'alora_invocation_tokens']) if (set(c[k])) bad(k, `is set (${JSON.stringify(c[k])}): not supported`);
  const r = c.r, alpha = c.lora_alpha ?? 8; // PEFT's LoraConfig default
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) bad('r', `must be a positive integer, got ${JSON.stringify(r)}`);
  if (typeof alpha !== 'number' || !(alpha > 0)) bad('lora_alpha', `must be a positive number, got ${JSON.stringify(alpha)}`);
  const mts = c.modules_to_save ?? null;
  if (mts !== null && (!Array.isArray(mts) || !mts.every((m) => typeof m === 'string'))) bad('modules_to_save', `must be a list of module names, got ${JSON.stringify(mts)}`);
  const modulesToSave = (mts ?? []) as string[];
  const { tensors: weights, metadata } = readAdapterFile(dir, 'adapter_model', where);

  // the adapter's tensors: LoRA ones by module (as the adapter names it), the others (modules_to_save)
  const loraTensors = new Map<string, { module: string; ab: 'A' | 'B'; t: HostTensor }>(), others = new Map<string, HostTensor>();
  for (const [key, t] of weights) {
    if (!key.startsWith(PEFT_PREFIX)) throw new RangeError(`${where}: tensor '${key}' is not under '${PEFT_PREFIX}' (not a PEFT adapter file)`);
    const name = key.slice(PEFT_PREFIX.length);
    const m = /^(.*)\.lora_([AB])(?:\.default)?\.weight$/.exec(name);
    if (m) loraTensors.set(key, { module: m[1], ab: m[2] as 'A' | 'B', t });
    else others.set(key, t);
  }
  // which layout PEFT saw: our decoder's module names in it
  const ourLinears = targetLinears(model, LLM_LORA_TARGETS).map(([n]) => n);
  const modules = [...loraTensors.values()].map((x) => x.module);
  const layout: AdapterLayout | 'legacy' = modules.some((n) => n.startsWith('model.language_model.')) ? 'transformers' : modules.some((n) => n.startsWith('language_model.')) ? 'legacy' : 'llava';
  const adapterName = new Map(ourLinears.map((n) => [layoutName(n, layout), n]));
  const ourModule = (n: string): string | undefined => adapterName.get(n) ?? (ourLinears.includes(n) ? n : undefined);

  // target_modules -> the decoder's Linear names (every layer alike)
  const tm = c.target_modules;
  let targets: string[];
  if (Array.isArray(tm)) {
    targets = (tm as unknown[]).map(String);
    const unknown = targets.filter((t) => !(LLM_LORA_TARGETS as readonly string[]).includes(t));
    if (unknown.length)
      bad('target_modules', `names ${unknown.join(', ')}, not Linear layers of the LLM's decoder (${LLM_LORA_TARGETS.join(', ')}): adapters elsewhere (the vision tower, the projector; PEFT's 'all-linear') are not supported`);
  } else if (typeof tm === 'string') {
    if (tm === 'all-linear') bad('target_modules', "is 'all-linear' (every Linear layer, the vision tower's and the projector's too): only the LLM's decoder Linear layers are supported");
    const re = peftTargetRegExp(tm, where);
    const hits = new Map<string, number>();
    for (const n of ourLinears) if (re.test(layoutName(n, layout))) hits.set(n.split('.').pop()!, (hits.get(n.split('.').pop()!) ?? 0) + 1);
    const layers = model.model.layers.items.length;
    const partial = [...hits].filter(([, k]) => k !== layers);
    if (partial.length) bad('target_modules', `${JSON.stringify(tm)} matches ${partial.map(([t, k]) => `${t} in ${k} of ${layers} layers`).join(', ')}: adapters on some layers only are not supported`);
    targets = LLM_LORA_TARGETS.filter((t) => hits.has(t));
    if (!targets.length) bad('target_modules', `${JSON.stringify(tm)} matches none of the LLM's Linear layers (named like ${layoutName(ourLinears[0], layout)})`);
  } else {
    targets = bad('target_modules', 'is missing');
  }

  // every tensor placed before anything is written
  const writes: [string, Tensor | string, HostTensor][] = []; // [name in errors, parameter (or our LoRA name, set once the adapters exist), tensor]
  for (const [key, { module, ab, t }] of loraTensors) {
    const ours = ourModule(module);
    if (ours === undefined) {
      const onTower = /vision_tower|vision_model/.test(module), onProjector = /mm_projector|multi_modal_projector/.test(module);
      throw new RangeError(`${where}: tensor '${key}' has no place in this model: it is an adapter on ${module}${onTower ? ' (the vision tower)' : onProjector ? ' (the projector)' : ''}, and only the Linear layers of the LLM's decoder take adapters here`);
    }
    if (!targets.includes(ours.split('.').pop()!)) throw new RangeError(`${where}: tensor '${key}' is an adapter on ${module}, which target_modules does not select`);
    writes.push([key, `${ours}.lora_${ab}.weight`, t]);
  }
  const all = model.namedParameters();
  const ourParam = (n: string): string | null => (all.has(n) ? n : ourNameFromTransformers(n));
  const savedModules = new Set<string>();
  for (const [key, t] of others) {
    // PEFT saves a modules_to_save module's copy under the module's own name (older versions: ".modules_to_save.<adapter>")
    const name = key.slice(PEFT_PREFIX.length).replace(/\.modules_to_save(?:\.default)?\./, '.');
    const parts = name.split('.');
    const m = modulesToSave.find((s) => parts.some((_, k) => k > 0 && parts.slice(0, k).join('.').endsWith(s)));
    if (m === undefined)
      throw new RangeError(`${where}: tensor '${key}' is not a LoRA tensor${modulesToSave.length ? ` and is not under modules_to_save (${modulesToSave.join(', ')})` : ' (and adapter_config.json has no modules_to_save)'}`);
    const ours = ourParam(name);
    const p = ours === null ? undefined : all.get(ours);
    if (!p) throw new RangeError(`${where}: tensor '${key}' (modules_to_save '${m}') has no place in this model`);
    writes.push([key, p, t]);
    savedModules.add(m);
  }
  const empty = modulesToSave.filter((m) => !savedModules.has(m));
  if (empty.length) bad('modules_to_save', `names ${empty.join(', ')} but adapter_model holds no tensor of ${empty.length > 1 ? 'them' : 'it'}`);

  // LLaVA's LoRA checkpoints keep the fully trained parts (the projector; vm_head for VW-LMM) beside the adapter; ours
  // mark the one they wrote (a stale file of an earlier save is not read)
  const ownSave = metadata[SAVE_KEY];
  const extra = nonLoraTrainables(dir, where, ownSave);
  // LLaVA's own normalisation (its model builder): drop "base_model.", then, when any name starts "model.model.",
  // one "model." from every name that starts with it
  let names = [...extra.keys()].map((k) => (k.startsWith('base_model.') ? k.slice('base_model.'.length) : k));
  if (names.some((n) => n.startsWith('model.model.'))) names = names.map((n) => (n.startsWith('model.') ? n.slice('model.'.length) : n));
  [...extra].forEach(([key, t], k) => {
    const p = all.get(names[k]);
    if (!p) throw new RangeError(`${where}: non_lora_trainables tensor '${key}' has no place in this model`);
    writes.push([`non_lora_trainables ${names[k]}`, p, t]);
  });
  const fits = (p: { shape: readonly number[] }, t: HostTensor) => t.dtype === 'float32' && t.shape.length === p.shape.length && t.shape.every((s, i) => s === p.shape[i]);
  for (const [n, p, t] of writes) if (typeof p !== 'string' && !fits(p, t)) writeParameter(where, n, p, t); // throws, naming it

  // rsLoRA: alpha / sqrt(r) = (alpha * sqrt(r)) / r, so the adapter's alpha / r scaling gives it
  const effAlpha = c.use_rslora ? (alpha as number) * Math.sqrt(r as number) : (alpha as number);
  let count: number;
  try {
    count = applyLora(model, { r: r as number, alpha: effAlpha, dropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0, targetModules: targets });
  } catch (e) {
    throw new (e instanceof RangeError ? RangeError : Error)(`${where}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const params = loraParameters(model);
    const seen = new Set<string>();
    for (const [key, p, t] of writes) {
      if (typeof p !== 'string') continue;
      const lp = params.get(p)!;
      if (!fits(lp, t)) writeParameter(where, key, lp, t); // throws, naming it
      seen.add(p);
    }
    const missing = [...params.keys()].filter((n) => !seen.has(n));
    if (missing.length) throw new RangeError(`${where}: the adapter file lacks ${missing.length} adapter tensors, e.g. ${missing.slice(0, 3).join(', ')}`);
  } catch (e) {
    removeLora(model);
    throw e;
  }
  // everything fits: now written
  const params = loraParameters(model);
  for (const [key, p, t] of writes) writeParameter(where, key, typeof p === 'string' ? params.get(p)! : p, t);
  return { adapters: count, nonLoraTrainables: extra.size + others.size };
}

/** The non_lora_trainables tensors to apply: none beside an adapter of ours that did not write them. */
function nonLoraTrainables(dir: string, where: string, ownSave: string | undefined): Map<string, HostTensor> {
  const st = path.join(dir, 'non_lora_trainables.safetensors'), bin = path.join(dir, 'non_lora_trainables.bin');
  if (ownSave !== undefined) {
    if (!fs.existsSync(st)) return new Map();
    const { tensors, metadata } = readAdapterFile(dir, 'non_lora_trainables', where);
    return metadata[SAVE_KEY] === ownSave ? tensors : new Map();
  }
  return fs.existsSync(st) || fs.existsSync(bin) ? readAdapterFile(dir, 'non_lora_trainables', where).tensors : new Map();
}

/** <dir>/<stem>.safetensors (with its metadata), else PyTorch's <dir>/<stem>.bin (LLaVA's own LoRA checkpoints). */
function readAdapterFile(dir: string, stem: string, where: string): { tensors: Map<string, HostTensor>; metadata: Record<string, string> } {
  const st = path.join(dir, `${stem}.safetensors`), bin = path.join(dir, `${stem}.bin`);
  try {
    if (fs.existsSync(st)) return readSafetensorsWithMetadata(st);
    if (fs.existsSync(bin)) return { tensors: readTorchBin(bin), metadata: {} };
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
  throw new Error(`${where}: no ${stem}.safetensors or ${stem}.bin`);
}
