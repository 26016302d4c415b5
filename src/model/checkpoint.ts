// Checkpoint directories (self-contained): config.json (LLaVA layout, see config.ts), model.safetensors
// (LLaVA tensor names; the vision tower embedded under model.vision_tower.vision_tower.vision_model.*),
// tokenizer.json, and optionally the trainer's state. Written atomically: everything goes to a sibling
// temp directory that is renamed over the target at the end, so a crash never leaves a half checkpoint.
// Loading also accepts original LLaVA checkpoints: sharded weights, and a vision tower that is not in the
// checkpoint but in the directory named by mm_vision_tower (HF CLIPVisionModel layout, names with or
// without the "vision_model." prefix); and transformers' LlavaForConditionalGeneration directories
// (config.json with text_config / vision_config), which saveCheckpoint(..., { format: 'transformers' })
// also writes (see transformers_llava.ts for that layout and the name table).
import * as fs from 'fs';
import * as path from 'path';
import { HostTensor, readCheckpointWeights, writeSafetensors } from '../io/safetensors';
import { configFromJson, configToJson, VwLmmConfig } from './config';
import { configFromTransformers, configToTransformers, isTransformersLlavaConfig, stringifyTransformersConfig, transformersNameFromOurs, weightsFromTransformers, weightsToTransformers } from './transformers_llava';
import { VwLmm } from './vwlmm';

const TOWER_PREFIX = 'model.vision_tower.vision_tower.';

export interface SaveOptions {
  /**
   * 'vwlmm' (default): our LLaVA layout (config.json with mm_* keys, LLaVA tensor names, vm_head).
   * 'transformers': what transformers' LlavaForConditionalGeneration.from_pretrained loads (plain LLaVA
   * only: vmWeight 0, mlp2x_gelu, an image token id inside the vocabulary).
   */
  format?: 'vwlmm' | 'transformers';
  /** transformers format: the image token id to write (default: the model config's imageTokenIndex). */
  imageTokenIndex?: number;
  /** tokenizer.json to copy in (a path) or to write (an object). */
  tokenizer?: string | Record<string, unknown>;
  /** Extra files written into the checkpoint (name -> contents). */
  extraFiles?: Record<string, string | Buffer>;
  /** Extra tensor files (name -> tensors), e.g. optimizer state. */
  extraTensors?: Record<string, Map<string, HostTensor>>;
}

export function saveCheckpoint(dir: string, model: VwLmm, opts: SaveOptions = {}): void {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const transformers = opts.format === 'transformers';
  if (opts.format !== undefined && opts.format !== 'vwlmm' && !transformers) throw new RangeError(`saveCheckpoint: unknown format '${String(opts.format)}' (vwlmm | transformers)`);
  // everything that can throw on the model is done before the temp directory exists
  const configJson = transformers ? configToTransformers(model.config, opts.imageTokenIndex ?? model.config.imageTokenIndex) : { ...configToJson(model.config), mm_vision_tower: 'embedded' };
  const tensors = transformers ? weightsToTransformers(model.stateDict()) : model.stateDict();
  const tmp = `${path.resolve(dir)}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp);
  try {
    fs.writeFileSync(path.join(tmp, 'config.json'), (transformers ? stringifyTransformersConfig(configJson) : JSON.stringify(configJson, null, 2)) + '\n');
    writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { format: 'pt' });
    if (typeof opts.tokenizer === 'string') fs.copyFileSync(opts.tokenizer, path.join(tmp, 'tokenizer.json'));
    else if (opts.tokenizer) fs.writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(opts.tokenizer));
    for (const [name, data] of Object.entries(opts.extraFiles ?? {})) fs.writeFileSync(path.join(tmp, name), data);
    for (const [name, tensors] of Object.entries(opts.extraTensors ?? {})) writeSafetensors(path.join(tmp, name), tensors);
    const old = `${path.resolve(dir)}.old-${process.pid}-${Date.now()}`;
    if (fs.existsSync(dir)) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    if (fs.existsSync(old)) fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function readJson(file: string): Record<string, unknown> {
  if (!fs.existsSync(file)) throw new Error(`checkpoint: ${file} does not exist`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`checkpoint: ${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** Loads a VW-LMM / LLaVA checkpoint directory. */
export function loadCheckpoint(dir: string, opts: { seed?: number } = {}): { model: VwLmm; config: VwLmmConfig; tokenizerPath: string | null } {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`checkpoint: ${dir} is not a directory`);
  const json = readJson(path.join(dir, 'config.json'));
  if (isTransformersLlavaConfig(json)) return loadTransformersCheckpoint(dir, json, opts.seed ?? 0);
  const weights = readCheckpointWeights(dir);
  let towerWeights: Map<string, HostTensor> | null = null;
  let visionConfig: Record<string, unknown> | undefined;
  const embedded = [...weights.keys()].some((k) => k.startsWith(TOWER_PREFIX));
  if (!embedded) {
    const tower = String(json.mm_vision_tower ?? '');
    const towerDir = path.isAbsolute(tower) ? tower : path.join(dir, tower);
    if (!tower || !fs.existsSync(path.join(towerDir, 'config.json')))
      throw new Error(`checkpoint: the vision tower is not in ${dir} and mm_vision_tower '${tower}' is not a local CLIP directory (models are never downloaded)`);
    visionConfig = readJson(path.join(towerDir, 'config.json'));
    towerWeights = readCheckpointWeights(towerDir, { filter: (n: string) => !n.startsWith('text_model.') });
  }
  const config = configFromJson(json, visionConfig);
  const model = VwLmm.create(config, opts.seed ?? 0);
  try {
    if (towerWeights) {
      for (const [k, t] of towerWeights) weights.set(TOWER_PREFIX + (k.startsWith('vision_model.') ? k : `vision_model.${k}`), t);
    }
    // Every parameter must be present; extra tensors (e.g. a CLIP text tower) are ignored.
    const { missing } = model.loadStateDict(weights, { strict: false });
    if (missing.length) throw new Error(`checkpoint: ${dir} lacks ${missing.length} tensors, e.g. ${missing.slice(0, 5).join(', ')}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const tok = path.join(dir, 'tokenizer.json');
  return { model, config, tokenizerPath: fs.existsSync(tok) ? tok : null };
}

/** A transformers LlavaForConditionalGeneration directory (config.json with text_config / vision_config). */
function loadTransformersCheckpoint(dir: string, json: Record<string, unknown>, seed: number): { model: VwLmm; config: VwLmmConfig; tokenizerPath: string | null } {
  const pre = path.join(dir, 'preprocessor_config.json');
  const config = configFromTransformers(json, fs.existsSync(pre) ? readJson(pre) : undefined);
  const weights = weightsFromTransformers(readCheckpointWeights(dir), json);
  const model = VwLmm.create(config, seed);
  try {
    const { missing } = model.loadStateDict(weights, { strict: false });
    if (missing.length) throw new Error(`checkpoint: ${dir} lacks ${missing.length} tensors, e.g. ${missing.slice(0, 5).map((n) => transformersNameFromOurs(n) ?? n).join(', ')}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  const tok = path.join(dir, 'tokenizer.json');
  return { model, config, tokenizerPath: fs.existsSync(tok) ? tok : null };
}
