// LoRA on a LLaMA decoder (a VwLmm's LLM or a plain LlamaForCausalLM), as LLaVA-1.5's LoRA recipe applies it with
// PEFT: adapters on every Linear of the decoder layers (q/k/v/o, gate/up/down), never on lm_head, vm_head, the
// projector or the vision tower. Adapters are read and written in PEFT's format (adapter_config.json +
// adapter_model.safetensors with "base_model.model."-prefixed names), merged into the weights, or removed.
import * as fs from 'fs';
import * as path from 'path';
import { HostTensor, readSafetensors, writeSafetensors } from '../io/safetensors';
import { readTorchBin } from '../io/torch_bin';
import { writeParameter } from '../nn/module';
import { Linear } from '../nn/layers';
import { LlamaDecoder } from '../nn/llama';
import { LLM_LORA_TARGETS, LoraOptions } from '../nn/lora';
import { Generator } from '../random';
import { Tensor } from '../tensor';
import { ourNameFromTransformers } from './transformers_llava';

/** A model with a LLaMA decoder under `.model` (VwLmm, nn.LlamaForCausalLM). */
export interface WithDecoder {
  readonly model: LlamaDecoder;
  namedParameters(prefix?: string): Map<string, Tensor>;
}

export interface LoraConfig extends LoraOptions {
  /** Linear names inside the decoder layers (default: all seven, LLaVA-1.5's choice). */
  targetModules?: readonly string[];
  /** Seed of the A initialisation and the dropout masks. */
  seed?: number;
}

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
  const targets = cfg.targetModules ?? LLM_LORA_TARGETS;
  const gen = new Generator(cfg.seed ?? 0).fork('lora');
  const list = targetLinears(model, targets);
  if (list.some(([, l]) => l.lora)) throw new Error('LoRA: the model already has adapters (merge or remove them first)');
  for (const [name, lin] of list) lin.addLora(cfg, gen.fork(name));
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

const PEFT_PREFIX = 'base_model.model.';

/**
 * Writes the adapters as PEFT does (adapter_config.json, adapter_model.safetensors), so that
 * PeftModel.from_pretrained(base, dir) loads them onto the transformers model of the same weights;
 * `nonLoraTrainables` (module names, e.g. ['model.mm_projector', 'vm_head']) adds LLaVA's non_lora_trainables file.
 */
export function saveLoraAdapter(dir: string, model: WithDecoder, opts: { baseModelNameOrPath?: string; nonLoraTrainables?: string[] } = {}): void {
  const cfg = loraConfigOf(model);
  if (!cfg) throw new Error('saveLoraAdapter: the model has no LoRA adapters');
  fs.mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, HostTensor>();
  for (const [n, t] of loraParameters(model)) tensors.set(PEFT_PREFIX + n, { dtype: 'float32', shape: [...t.shape], data: t.toArray() as Float32Array });
  const config = {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: opts.baseModelNameOrPath ?? null,
    r: cfg.r, lora_alpha: cfg.alpha, lora_dropout: cfg.dropout, target_modules: cfg.targetModules, bias: 'none',
    fan_in_fan_out: false, inference_mode: true, use_rslora: false, use_dora: false, modules_to_save: null,
    init_lora_weights: true, rank_pattern: {}, alpha_pattern: {}, layers_to_transform: null,
  };
  const tmp = `${dir}/.adapter-${process.pid}`;
  writeSafetensors(`${tmp}.safetensors`, tensors, { format: 'pt' });
  fs.writeFileSync(`${tmp}.json`, JSON.stringify(config, null, 2) + '\n');
  if (opts.nonLoraTrainables?.length) {
    // as LLaVA's LoRA training saves them (names prefixed "base_model.model."), as safetensors
    const all = model.namedParameters(), extra = new Map<string, HostTensor>();
    for (const prefix of opts.nonLoraTrainables) {
      const hits = [...all].filter(([n]) => n === prefix || n.startsWith(`${prefix}.`));
      if (!hits.length) throw new RangeError(`saveLoraAdapter: nonLoraTrainables '${prefix}' names no parameter of the model`);
      for (const [n, t] of hits) extra.set(PEFT_PREFIX + n, { dtype: 'float32', shape: [...t.shape], data: t.toArray() as Float32Array });
    }
    writeSafetensors(`${tmp}.extra.safetensors`, extra, { format: 'pt' });
    fs.renameSync(`${tmp}.extra.safetensors`, path.join(dir, 'non_lora_trainables.safetensors'));
  }
  fs.renameSync(`${tmp}.safetensors`, path.join(dir, 'adapter_model.safetensors'));
  fs.renameSync(`${tmp}.json`, path.join(dir, 'adapter_config.json'));
}

/**
 * Loads a PEFT LoRA adapter directory onto the model (adds the adapters, then sets their weights; adapter_model
 * .safetensors or PyTorch's .bin). A non_lora_trainables file beside it (LLaVA's LoRA checkpoints: the projector,
 * and vm_head for VW-LMM) is loaded into the model's own parameters, named as LLaVA names them. Refuses what it
 * cannot apply exactly, naming it: another peft_type, DoRA, a bias, per-layer rank / alpha patterns, fan_in_fan_out,
 * target modules outside the decoder's Linear layers, missing or misshaped tensors. rsLoRA scales by alpha / sqrt(r).
 */
export function loadLoraAdapter(dir: string, model: WithDecoder): { adapters: number; nonLoraTrainables: number } {
  const where = `loadLoraAdapter: ${dir}`;
  const file = path.join(dir, 'adapter_config.json');
  if (!fs.existsSync(file)) throw new Error(`${where}: no adapter_config.json (a PEFT adapter directory has it and adapter_model.safetensors)`);
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${where}: adapter_config.json is not valid JSON (${(e as Error).message})`);
  }
  const bad = (k: string, why: string): never => {
    throw new RangeError(`${where}: adapter_config.json ${k} ${why}`);
  };
  if (c.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(c.peft_type)}, only LORA is supported`);
  if (c.use_dora) bad('use_dora', 'is set: DoRA is not supported');
  if (c.bias !== undefined && c.bias !== 'none') bad('bias', `is ${JSON.stringify(c.bias)}: only 'none' is supported`);
  if (c.fan_in_fan_out) bad('fan_in_fan_out', 'is set (a Conv1D / GPT-2 layout), not a LLaMA Linear');
  if (c.lora_bias) bad('lora_bias', 'is set: adapters with a bias are not supported');
  for (const k of ['rank_pattern', 'alpha_pattern']) if (c[k] && Object.keys(c[k] as object).length) bad(k, 'is not empty: per-layer ranks are not supported');
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) bad('layers_to_transform', 'is set: adapters on some layers only are not supported');
  const r = c.r, alpha = c.lora_alpha ?? 8; // PEFT's LoraConfig default
  if (typeof r !== 'number' || !Number.isInteger(r) || r < 1) bad('r', `must be a positive integer, got ${JSON.stringify(r)}`);
  if (typeof alpha !== 'number' || !(alpha > 0)) bad('lora_alpha', `must be a positive number, got ${JSON.stringify(alpha)}`);
  const tm = c.target_modules;
  const targets = Array.isArray(tm) ? (tm as unknown[]).map(String) : typeof tm === 'string' ? bad('target_modules', `is a regular expression (${tm}): give the module names as a list`) : bad('target_modules', 'is missing');
  // rsLoRA: alpha / sqrt(r) = (alpha * sqrt(r)) / r, so the adapter's alpha / r scaling gives it
  const effAlpha = c.use_rslora ? (alpha as number) * Math.sqrt(r as number) : (alpha as number);
  const weights = readAdapterFile(dir, 'adapter_model', where);
  const count = applyLora(model, { r: r as number, alpha: effAlpha, dropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0, targetModules: targets as string[] });
  const params = loraParameters(model);
  const seen = new Set<string>();
  let nonLora = 0;
  try {
    for (const [key, t] of weights) {
      if (!key.startsWith(PEFT_PREFIX)) throw new RangeError(`${where}: tensor '${key}' is not under '${PEFT_PREFIX}' (not a PEFT adapter file)`);
      let name = key.slice(PEFT_PREFIX.length).replace(/\.lora_([AB])\.default\.weight$/, '.lora_$1.weight');
      if (!params.has(name)) {
        // a transformers-layout base (LlavaForConditionalGeneration): its names mapped to ours
        const m = /^(.*)\.lora_([AB])\.weight$/.exec(name);
        const ours = m ? ourNameFromTransformers(`${m[1]}.weight`) : null;
        if (m && ours) name = ours.replace(/\.weight$/, `.lora_${m[2]}.weight`);
      }
      const p = params.get(name);
      if (!p) throw new RangeError(`${where}: tensor '${key}' has no place in this model (no LoRA adapter '${name}')`);
      writeParameter(where, key, p, t);
      seen.add(name);
    }
    const missing = [...params.keys()].filter((n) => !seen.has(n));
    if (missing.length) throw new RangeError(`${where}: the adapter file lacks ${missing.length} adapter tensors, e.g. ${missing.slice(0, 3).join(', ')}`);
    // LLaVA's LoRA checkpoints keep the fully trained parts (the projector; vm_head for VW-LMM) beside the adapter
    const extra = fs.existsSync(path.join(dir, 'non_lora_trainables.safetensors')) || fs.existsSync(path.join(dir, 'non_lora_trainables.bin'))
      ? readAdapterFile(dir, 'non_lora_trainables', where) : new Map<string, HostTensor>();
    const all = model.namedParameters();
    // LLaVA's own normalisation (its model builder): drop "base_model.", then, when any name starts "model.model.",
    // one "model." from every name that starts with it
    let names = [...extra.keys()].map((k) => (k.startsWith('base_model.') ? k.slice('base_model.'.length) : k));
    if (names.some((n) => n.startsWith('model.model.'))) names = names.map((n) => (n.startsWith('model.') ? n.slice('model.'.length) : n));
    [...extra.values()].forEach((t, k) => {
      const p = all.get(names[k]);
      if (!p) throw new RangeError(`${where}: non_lora_trainables tensor '${[...extra.keys()][k]}' has no place in this model`);
      writeParameter(where, names[k], p, t);
      nonLora++;
    });
  } catch (e) {
    // the adapters go; a non-LoRA tensor already written stays written (the caller discards a model that failed)
    removeLora(model);
    throw e;
  }
  return { adapters: count, nonLoraTrainables: nonLora };
}

/** <dir>/<stem>.safetensors, else PyTorch's <dir>/<stem>.bin (LLaVA's own LoRA checkpoints). */
function readAdapterFile(dir: string, stem: string, where: string): Map<string, HostTensor> {
  const st = path.join(dir, `${stem}.safetensors`), bin = path.join(dir, `${stem}.bin`);
  if (fs.existsSync(st)) return readSafetensors(st);
  if (fs.existsSync(bin)) return readTorchBin(bin);
  throw new Error(`${where}: no ${stem}.safetensors or ${stem}.bin`);
}
