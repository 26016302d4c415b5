// Checkpoint directories (self-contained): config.json (LLaVA layout, see config.ts), model.safetensors
// (LLaVA tensor names; the vision tower embedded under model.vision_tower.vision_tower.vision_model.*),
// tokenizer.json, and optionally the trainer's state. Written crash-safely: everything goes to a sibling
// temp directory (every file fsync'ed, then the directory); the previous checkpoint is renamed to
// `<dir>.old-<stamp>`, the temp directory renamed to `<dir>`, the parent directory fsync'ed, and only then
// the old one is removed (renamed to `<dir>.trash-*` first, so an `.old-*` directory is always complete).
// A kill -9 at any instant therefore leaves `<dir>` or, between the two renames, `<dir>.old-*` complete:
// resolveCheckpointDir finds whichever is newest, and loadCheckpoint falls back to it.
// Loading also accepts original LLaVA checkpoints: sharded weights, and a vision tower that is not in the
// checkpoint but in the directory named by mm_vision_tower (HF CLIPVisionModel layout, names with or
// without the "vision_model." prefix); and transformers' LlavaForConditionalGeneration directories
// (config.json with text_config / vision_config), which saveCheckpoint(..., { format: 'transformers' })
// also writes (see transformers_llava.ts for that layout and the name table).
// Loading reads only the tensors the model takes (each shape checked before its data is read) and refuses a tensor
// the model has no place for, as transformers reports unexpected keys, except buffers that hold nothing
// (harmlessTensor) and a CLIP directory's text side.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { jinjaChatTemplate } from '../data/conversation';
import { tokenizerJsonFromSentencePiece } from '../data/sentencepiece';
import { TextTokenizer } from '../data/tokenizer';
import { DeviceSpec } from '../device';
import { checkKeys, typeError } from '../errors';
import { writeParameter } from '../nn/module';
import { parseProjectorType } from '../nn/projector';
import { forEachTorchTensor, readTorchBin, torchBinTensorNames } from '../io/torch_bin';
import { Generator } from '../random';
import { writeFileDurable } from '../io/atomic_file';
import { CHECKSUM_KEY, describeFsError, forEachSafetensor, HostTensor, isPlainObject, LazyHostTensor, openRegularFile, readRegularFile, readRegularFileSync, readSafetensors, readSafetensorsHeader, ReadOptions, SafetensorsError, writeSafetensors } from '../io/safetensors';
import { configFromJson, configToJson, selectLayerFits, VwLmmConfig, type TemplateName } from './config';
import { configFromTransformers, configToTransformers, isTransformersLlavaConfig, ourNameFromTransformers, processorConfigsToTransformers, stringifyTransformersConfig, transformersNameFromOurs, weightsToTransformers } from './transformers_llava';
import { applyLora, loraConfigOf, type LoraConfig } from './lora';
import { VwLmm } from './vwlmm';

const TOWER_PREFIX = 'model.vision_tower.vision_tower.';

/** True when a directory entry exists at `p`, even a symbolic link whose target does not (fs.existsSync says false). */
function entryExists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Where a checkpoint directory keeps its weights: one file, or shards listed by an index (name -> shard). */
interface WeightFiles {
  kind: 'safetensors' | 'torch';
  /** The single file, or null for shards. */
  single: string | null;
  index: string | null;
  /** Shard file -> the tensor names the index puts there. */
  shards: Map<string, string[]>;
}

function weightFiles(dir: string): WeightFiles {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    throw new SafetensorsError(dir, `checkpoint directory: ${describeFsError(e)}`, { cause: e });
  }
  if (!st.isDirectory()) throw new SafetensorsError(dir, 'checkpoint path is not a directory');
  const none = { index: null, shards: new Map<string, string[]>() };
  // entries, not targets: a dangling or looping symbolic link named model.safetensors is that file, refused by the
  // reader with what is wrong with it (not "no model.safetensors")
  if (entryExists(path.join(dir, 'model.safetensors'))) return { kind: 'safetensors', single: path.join(dir, 'model.safetensors'), ...none };
  let kind: WeightFiles['kind'] = 'safetensors';
  let index = path.join(dir, 'model.safetensors.index.json');
  if (!entryExists(index)) {
    // PyTorch's own format (released LLaVA / VW-LMM checkpoints): pytorch_model.bin, or shards and an index
    if (entryExists(path.join(dir, 'pytorch_model.bin'))) return { kind: 'torch', single: path.join(dir, 'pytorch_model.bin'), ...none };
    kind = 'torch';
    index = path.join(dir, 'pytorch_model.bin.index.json');
  }
  if (!entryExists(index)) {
    const files = fs.readdirSync(dir);
    const torchFiles = files.filter((f) => /\.(pt|pth|ckpt|bin)$/.test(f));
    const others = files.filter((f) => f.endsWith('.safetensors'));
    let hint = '';
    if (torchFiles.length) hint = `; found ${torchFiles.join(', ')}: PyTorch weights load from pytorch_model.bin or pytorch_model.bin.index.json (rename, or read them with readTorchBin)`;
    else if (others.length) hint = `; other .safetensors files there: ${others.join(', ')}`;
    throw new SafetensorsError(dir, `no model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json in the checkpoint directory${hint}`);
  }
  let indexJson: unknown;
  try {
    indexJson = JSON.parse(readRegularFile(index, (problem, cause) => new SafetensorsError(index, `cannot read the shard index: ${problem}`, { cause })).toString('utf8'));
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(index, `cannot read the shard index: ${(e as Error).message}`, { cause: e });
  }
  if (!isPlainObject(indexJson) || !isPlainObject(indexJson.weight_map)) {
    throw new SafetensorsError(index, 'shard index has no "weight_map" object');
  }
  const shards = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(indexJson.weight_map)) {
    if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) ||
      shard.split(/[\\/]/).includes('..')) {
      throw new SafetensorsError(index, `weight_map entry for '${name}' is not a relative shard file name: ${JSON.stringify(shard)}`);
    }
    let list = shards.get(shard);
    if (!list) shards.set(shard, (list = []));
    list.push(name);
  }
  const missing = [...shards.keys()].filter((f) => !entryExists(path.join(dir, f))).sort();
  if (missing.length) {
    throw new SafetensorsError(index, `missing shard file${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (of ${shards.size}) in ${dir}`);
  }
  return { kind, single: null, index, shards };
}

const isLegacyBuffer = (name: string) => name.endsWith('rotary_emb.inv_freq');

/**
 * Streams the weights of a checkpoint directory in HF layout (`model.safetensors`, or
 * `model.safetensors.index.json` and its shards; PyTorch's `pytorch_model.bin` or its shards with
 * `pytorch_model.bin.index.json`): `fn` gets one tensor at a time, shard after shard, so a loader that copies each
 * into the model holds one tensor on the host, not the checkpoint. Legacy buffers (rotary_emb.inv_freq) are skipped.
 * `options.filter` is the caller's wanted set: only those tensors are read (a .bin's views materialised), each after
 * its shape is checked against `options.expectShape` (loadCheckpoint: the parameter it goes into).
 * It throws on a broken file, possibly after `fn` has seen some tensors (then they must be treated as void).
 */
export function forEachCheckpointTensor(dir: string, options: ReadOptions, fn: (name: string, t: HostTensor) => void): void {
  const w = weightFiles(dir);
  const each = (file: string, f: (name: string, t: HostTensor) => void) =>
    w.kind === 'torch' ? forEachTorchTensor(file, options, (n, t) => !isLegacyBuffer(n) && f(n, t)) : forEachSafetensor(file, options, f);
  if (w.single) return each(w.single, fn);
  const origin = new Map<string, string>();
  for (const [shard, names] of w.shards) {
    const shardPath = path.join(dir, shard);
    const got = new Set<string>();
    each(shardPath, (name, t) => {
      const prev = origin.get(name);
      if (prev !== undefined) throw new SafetensorsError(shardPath, `tensor '${name}' is also in shard ${prev}`);
      origin.set(name, shard);
      got.add(name);
      fn(name, t);
    });
    for (const name of names) {
      if (!got.has(name) && (!options.filter || options.filter(name)) && !isLegacyBuffer(name)) {
        throw new SafetensorsError(shardPath, `tensor '${name}' is listed for this shard in ${path.basename(w.index!)} but is not in it`);
      }
    }
  }
}

/**
 * The tensor names of a checkpoint directory, without reading any tensor data; a tensor the shard index places in a
 * shard that does not hold it is an error (as in forEachCheckpointTensor, which can check only what it reads).
 */
export function checkpointTensorNames(dir: string): string[] {
  const w = weightFiles(dir);
  const namesOf = (file: string) => (w.kind === 'torch' ? torchBinTensorNames(file) : readSafetensorsHeader(file).entries.map((e) => e.name));
  if (w.single) return namesOf(w.single).filter((n) => !isLegacyBuffer(n));
  const names: string[] = [];
  for (const [shard, listed] of w.shards) {
    const shardPath = path.join(dir, shard);
    const has = new Set(namesOf(shardPath));
    const absent = listed.find((n) => !has.has(n) && !isLegacyBuffer(n));
    if (absent !== undefined) throw new SafetensorsError(shardPath, `tensor '${absent}' is listed for this shard in ${path.basename(w.index!)} but is not in it`);
    names.push(...has);
  }
  return names.filter((n) => !isLegacyBuffer(n));
}

/** The weights of a checkpoint directory (see forEachCheckpointTensor), all at once. */
export function readCheckpointWeights(dir: string, options: ReadOptions = {}): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  forEachCheckpointTensor(dir, options, (name, t) => out.set(name, t));
  return out;
}

export interface SaveOptions {
  /**
   * 'vwlmm' (default): our LLaVA layout (config.json with mm_* keys, LLaVA tensor names, vm_head).
   * 'transformers': what transformers' LlavaForConditionalGeneration.from_pretrained loads (plain LLaVA
   * only: vmWeight 0, mlp2x_gelu, an image token id inside the vocabulary).
   */
  format?: 'vwlmm' | 'transformers';
  /** transformers format: the image token id to write (default: the model config's imageTokenIndex). */
  imageTokenIndex?: number;
  /**
   * The tokenizer to copy in: a tokenizer.json (with the files beside it that say how it is used: TOKENIZER_SIDE_FILES,
   * generation_config.json, tokenizer.model), or a checkpoint / model folder holding one or only a SentencePiece
   * tokenizer.model (with those files); or a tokenizer.json object to write.
   */
  tokenizer?: string | Record<string, unknown>;
  /**
   * The dtype the weights are written in: 'float32' (default: the fp32 masters, a training checkpoint's) or 'bfloat16'
   * (rounded as torch's .to(torch.bfloat16): half the bytes, as released checkpoints; config.json says so, as
   * torch_dtype / dtype). Loading gives float32 parameters either way.
   */
  dtype?: 'float32' | 'bfloat16';
  /** Extra files written into the checkpoint (name -> contents). */
  extraFiles?: Record<string, string | Buffer>;
  /** Extra tensor files (name -> tensors), e.g. optimizer state. */
  extraTensors?: Record<string, Map<string, HostTensor | LazyHostTensor>>;
}

// Every option saveCheckpoint reads: another key ({ tokenizr: ... }) is refused, not ignored (a save without the tokenizer)
const SAVE_KEYS = { format: true, imageTokenIndex: true, tokenizer: true, dtype: true, extraFiles: true, extraTensors: true } satisfies Record<keyof SaveOptions, true>;

/** The files beside a tokenizer.json that TextTokenizer reads (its special tokens, BOS, added tokens), saved with it. */
const TOKENIZER_SIDE_FILES = ['tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'] as const;

/** A name that is one file in a checkpoint folder: not empty, '.' or '..', no separator (a path out of the folder). */
export function isPlainFileName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}

/** Every file a tokenizer brings into a checkpoint (tokenizerFiles; a transformers-format save adds the processor's). */
export const TOKENIZER_FILE_NAMES: readonly string[] = ['tokenizer.json', ...TOKENIZER_SIDE_FILES, 'generation_config.json', 'tokenizer.model'];

/**
 * A tokenizer's files by checkpoint file name: its tokenizer.json and, from beside it, the TOKENIZER_SIDE_FILES (without
 * them a reloaded tokenizer falls back to defaults: eos </s> where the config names another, no pad),
 * generation_config.json and a SentencePiece tokenizer.model (LLaVA's Python code loads the slow tokenizer from it).
 * `source` is a tokenizer.json, or a folder: its tokenizer.json, else the one converted from its tokenizer.model
 * (tokenizerPathOf), the other files the folder's (not the conversion cache's: liuhaotian/llava-v1.5-7b's
 * generation_config.json has max_length 4096), stating the BOS template and special tokens vwlmm infers where they
 * say nothing (withSpecialsStated). What saveCheckpoint copies for a tokenizer path; the Trainer reads them
 * once, when it starts: its run's tokenizer may sit in a checkpoint folder that the run's own saves replace (a resume from
 * <out>/checkpoint.old-*, left by a kill mid-save).
 */
export function tokenizerFiles(source: string): Record<string, Buffer> {
  return tokenizerFilesWith(source, null);
}

/** tokenizerFiles, with `source`'s TextTokenizer where the caller has built it already (saveCheckpoint's). */
function tokenizerFilesWith(source: string, built: TextTokenizer | null): Record<string, Buffer> {
  const folder = fs.statSync(source).isDirectory() ? source : null;
  const file = folder ? tokenizerPathOf(folder) : source;
  if (file === null) throw new Error(`${source} holds no tokenizer.json or tokenizer.model`);
  const out: Record<string, Buffer> = { 'tokenizer.json': readRegularFileSync(file) };
  for (const name of TOKENIZER_FILE_NAMES.filter((n) => n !== 'tokenizer.json')) {
    const side = path.join(folder ?? path.dirname(file), name);
    if (fs.existsSync(side) && fs.statSync(side).isFile()) out[name] = fs.readFileSync(side);
  }
  // the base's generation_config.json as it is; else one of the tokenizer's ids
  const tokenizer = built ?? new TextTokenizer(file);
  if (!out['generation_config.json']) {
    const generation = generationConfigOf(tokenizer);
    if (generation) out['generation_config.json'] = generation;
  }
  return withSpecialsStated(out, tokenizer);
}

/** An added special token as transformers writes one into tokenizer.json (and tokenizer_config.json's decoder). */
const ADDED_SPECIAL = { single_word: false, lstrip: false, rstrip: false, normalized: false, special: true } as const;

/** A tokenizer's JSON side file (tokenizer_config.json, special_tokens_map.json) as an object, null where there is none. */
function jsonFile(files: Record<string, Buffer>, name: string): Record<string, unknown> | null {
  return files[name] ? (JSON.parse(files[name].toString('utf8')) as Record<string, unknown>) : null;
}

/**
 * A checkpoint's tokenizer files stating what vwlmm infers and transformers would not (vwlmm's word-level tokenizers,
 * a bare tokenizer.json), so that transformers, and LLaVA's code, which loads a checkpoint's tokenizer with
 * AutoTokenizer, read the tokenizer vwlmm trained with; vwlmm reads either form as the same tokenizer:
 * - a BOS template (TemplateProcessing, as LLaMA's) where vwlmm puts BOS in front of every text
 *   (TextTokenizer.addsBos) and tokenizer.json has no post-processor to say so: transformers would add none
 *   (scripts/check_llava_processor.py compares the ids); add_bos_token false in the config, from which transformers 5
 *   may rebuild the template, becomes true;
 * - bos, eos and unk in tokenizer_config.json where neither it nor special_tokens_map.json names them (vwlmm takes
 *   <s>, </s>, <unk> from the vocabulary): without bos_token, LLaVA's tokenizer_image_token kept the BOS every chunk
 *   after an image starts with (its offset is for a known bos_token_id), and eos_token was None. Not the pad, which
 *   changes no prompt's ids (LLaVA sets it), and which vwlmm may take from the vocabulary's first word: transformers
 *   would make that word special, and split and drop it in every text.
 * The files as they are where nothing is missing.
 */
function withSpecialsStated(files: Record<string, Buffer>, tokenizer: TextTokenizer): Record<string, Buffer> {
  if (!files['tokenizer.json']) return files;
  const out: Record<string, Buffer> = { ...files };
  const bos = tokenizer.bosToken;
  const json = JSON.parse(files['tokenizer.json'].toString('utf8')) as { post_processor?: unknown };
  const addBos = tokenizer.addsBos && bos !== null && tokenizer.bosId !== null && (json.post_processor === undefined || json.post_processor === null);
  if (addBos) {
    json.post_processor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [bos]: { id: bos, ids: [tokenizer.bosId], tokens: [bos] } },
    };
    out['tokenizer.json'] = Buffer.from(JSON.stringify(json));
  }
  const config = jsonFile(files, 'tokenizer_config.json'), map = jsonFile(files, 'special_tokens_map.json');
  const named = (k: string) => [config, map].some((c) => c !== null && c[k] !== undefined && c[k] !== null);
  const stated = Object.entries({ bos_token: bos, eos_token: tokenizer.eosToken, unk_token: tokenizer.unkToken }).filter(([k, v]) => v !== null && !named(k));
  return withConfigEdits(out, { ...Object.fromEntries(stated), ...(addBos && config?.add_bos_token === false ? { add_bos_token: true } : {}) });
}

/**
 * The files with `edits` in tokenizer_config.json (as they are without edits). A new config names the fast tokenizer,
 * which tokenizer.json is; beside a tokenizer.model, transformers picks.
 */
function withConfigEdits(files: Record<string, Buffer>, edits: Record<string, unknown>): Record<string, Buffer> {
  if (Object.keys(edits).length === 0) return files;
  const base = jsonFile(files, 'tokenizer_config.json') ?? (files['tokenizer.model'] ? {} : { tokenizer_class: 'PreTrainedTokenizerFast' });
  return { ...files, 'tokenizer_config.json': Buffer.from(JSON.stringify({ ...base, ...edits }, null, 2) + '\n') };
}

/**
 * A transformers-format save's tokenizer config as llava-hf's, for batched generation: transformers' processor pads a
 * batch only with a pad_token (else "Asking to pad but the tokenizer does not have a padding token"), and LLaVA
 * generates from left-padded prompts (transformers' convert_llava_weights_to_hf makes its tokenizer so). pad_token where
 * neither file names one (LLaVA's configs say null: its train.py sets unk at run time) and vwlmm pads with unk or eos
 * (never a plain word: withSpecialsStated says why); padding_side 'left' (LLaVA's configs say 'right', for training).
 */
function withBatchPadding(files: Record<string, Buffer>, tokenizer: TextTokenizer): Record<string, Buffer> {
  const config = jsonFile(files, 'tokenizer_config.json'), map = jsonFile(files, 'special_tokens_map.json');
  const pad = tokenizer.padId !== null && (tokenizer.padId === tokenizer.unkId || tokenizer.padId === tokenizer.eosId) ? tokenizer.idToToken(tokenizer.padId) : null;
  const named = (c: Record<string, unknown> | null) => c !== null && c.pad_token !== undefined && c.pad_token !== null;
  return withConfigEdits(files, {
    ...(pad !== null && !named(config) && !named(map) ? { pad_token: pad } : {}),
    ...(config?.padding_side !== 'left' ? { padding_side: 'left' } : {}),
  });
}

/**
 * A transformers-format save's tokenizer files with <image> as token `id`, as llava-hf's tokenizers have it:
 * LlavaProcessor writes <image> once per image feature, and the model finds the features' places by its id. A tokenizer
 * without it gets it as an added special token (in tokenizer.json, tokenizer_config.json's decoder where it lists them,
 * added_tokens.json beside a tokenizer.model for the slow tokenizer); transformers' tokenizers give an added token the
 * next free id whatever id the file says (tokenizers 0.23), so `id` must be that one, else the processor's tokens would
 * miss the model's.
 */
function withImageToken(files: Record<string, Buffer>, tokenizer: TextTokenizer, id: number, vocabSize: number): Record<string, Buffer> {
  const where = 'saveCheckpoint';
  const has = tokenizer.tokenToId('<image>');
  if (has !== null && has !== id)
    throw new RangeError(`${where}: imageTokenIndex ${id}, but the tokenizer's <image> is token ${has}: transformers' LlavaProcessor would write ${has} where the model looks for ${id} (pass imageTokenIndex ${has})`);
  if (has === null && id !== tokenizer.vocabSize)
    throw new RangeError(`${where}: imageTokenIndex ${id}: the tokenizer has no <image> token, and transformers' tokenizers give an added one the next free id, ${tokenizer.vocabSize}, not ${id} (${tokenizer.vocabSize < vocabSize
      ? `pass imageTokenIndex ${tokenizer.vocabSize}`
      : `and the vocabulary has no row past the tokenizer's ${tokenizer.vocabSize} words for it: llava-hf pads it, vocab_size 32064 for 32000 words`})`);
  if (has !== null) return files;
  const json = JSON.parse(files['tokenizer.json'].toString('utf8')) as { added_tokens?: unknown[] };
  json.added_tokens = [...(json.added_tokens ?? []), { id, content: '<image>', ...ADDED_SPECIAL }];
  const out: Record<string, Buffer> = { ...files, 'tokenizer.json': Buffer.from(JSON.stringify(json)) };
  if (files['tokenizer.model']) {
    const added = files['added_tokens.json'] ? (JSON.parse(files['added_tokens.json'].toString('utf8')) as Record<string, unknown>) : {};
    out['added_tokens.json'] = Buffer.from(JSON.stringify({ ...added, '<image>': id }, null, 2) + '\n');
  }
  const config = jsonFile(files, 'tokenizer_config.json');
  if (config && isPlainObject(config.added_tokens_decoder))
    out['tokenizer_config.json'] = Buffer.from(JSON.stringify({ ...config, added_tokens_decoder: { ...config.added_tokens_decoder, [String(id)]: { content: '<image>', ...ADDED_SPECIAL } } }, null, 2) + '\n');
  return out;
}

/**
 * generation_config.json from a tokenizer's special ids, as LLaMA / Vicuna / LLaVA checkpoints have one (without it,
 * transformers' generate ran past </s>); null for a tokenizer without an eos.
 */
function generationConfigOf(tokenizer: TextTokenizer): Buffer | null {
  const ids = { bos_token_id: tokenizer.bosId, eos_token_id: tokenizer.eosId, pad_token_id: tokenizer.padId };
  const known = Object.fromEntries(Object.entries(ids).filter(([, v]) => v !== null && v >= 0));
  return known.eos_token_id === undefined ? null : Buffer.from(stringifyTransformersConfig({ _from_model_config: true, ...known }) + '\n');
}

/**
 * Writes a checkpoint folder atomically: a new folder replaces `dir` whole once complete. `dir` may be absent, empty,
 * or an earlier checkpoint (it holds config.json), which is replaced with everything in it; anything else at `dir`
 * (a file, or a folder of other files) is refused rather than deleted.
 */
export function saveCheckpoint(dir: string, model: VwLmm, opts: SaveOptions = {}): void {
  const where = 'saveCheckpoint';
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', `an object with keys among ${Object.keys(SAVE_KEYS).join(', ')}`, opts);
  checkKeys(where, 'option', opts, SAVE_KEYS);
  if (typeof dir !== 'string' || dir === '') throw typeError(where, 'dir', 'a folder path', dir);
  if (model === null || typeof model !== 'object' || typeof model.stateDict !== 'function' || typeof model.config !== 'object') throw typeError(where, 'model', 'a VwLmm', model);
  const tok = opts.tokenizer;
  if (tok !== undefined && typeof tok !== 'string' && (tok === null || typeof tok !== 'object' || Array.isArray(tok)))
    throw typeError(where, 'options.tokenizer', 'a tokenizer.json path or its JSON object', tok);
  // before anything is written: a missing file would otherwise be a bare ENOENT from the middle of the save
  const tokFolder = typeof tok === 'string' && fs.existsSync(tok) && fs.statSync(tok).isDirectory();
  // the tokenizer.json a path names (a folder's, converted from its tokenizer.model where it has only that)
  const tokFile = typeof tok === 'string' ? (tokFolder ? tokenizerPathOf(tok) : tok) : null;
  if (typeof tok === 'string' && !(tokFolder ? tokFile !== null : fs.existsSync(tok) && fs.statSync(tok).isFile()))
    throw new Error(`${where}: options.tokenizer ${tok} ${tokFolder ? 'holds no tokenizer.json or tokenizer.model' : fs.existsSync(tok) ? 'is not a file' : 'does not exist'} (expected a tokenizer.json, or a folder holding one, to copy into the checkpoint)`);
  const problem = checkpointTargetProblem(dir);
  if (problem) throw new Error(`saveCheckpoint: ${problem}`);
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const transformers = opts.format === 'transformers';
  if (opts.format !== undefined && opts.format !== 'vwlmm' && !transformers) throw new RangeError(`saveCheckpoint: unknown format '${String(opts.format)}' (vwlmm | transformers)`);
  if (opts.dtype !== undefined && opts.dtype !== 'float32' && opts.dtype !== 'bfloat16') throw typeError(where, 'options.dtype', "'float32' or 'bfloat16'", opts.dtype);
  const dtype = opts.dtype ?? 'float32';
  // everything that can throw on the model is done before the temp directory exists
  const lora = loraConfigOf(model);
  if (lora && transformers) throw new RangeError('saveCheckpoint: the transformers layout has no place for LoRA adapters: merge them (mergeLora) first, or save them with saveLoraAdapter');
  // the tokenizer, once: its special ids go to generation_config.json, its BOS rule and special tokens into its
  // files (withSpecialsStated), and a transformers image token must be its <image>
  const tokenizer = tok !== undefined && (typeof tok === 'object' || transformers) ? new TextTokenizer(tokFile ?? tok) : null;
  const imageTokenIndex = opts.imageTokenIndex ?? model.config.imageTokenIndex;
  if (transformers && tokenizer && imageTokenIndex >= 0) {
    const word = tokenizer.idToToken(imageTokenIndex);
    if (word !== null && word !== '<image>')
      throw new RangeError(`${where}: imageTokenIndex ${imageTokenIndex} is the tokenizer's token ${JSON.stringify(word)}, not <image>: transformers' LLaVA would read every ${JSON.stringify(word)} of a prompt as an image`);
  }
  // a model with LoRA adapters keeps them (lora_A / lora_B tensors) and says so in config.json, so that a resume or
  // loadCheckpoint re-creates them before loading the weights
  const configJson = transformers ? { ...configToTransformers(model.config, imageTokenIndex), dtype }
    : { ...configToJson(model.config), mm_vision_tower: 'embedded', ...(dtype === 'bfloat16' ? { torch_dtype: dtype } : {}), ...(lora ? { lora: { r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout, target_modules: lora.targetModules } } : {}) };
  // the tokenizer's files (a path: with those beside it), read before the temp folder exists; in the transformers
  // layout with <image> as the image token, and the processor's files that expand it (AutoProcessor loads the folder)
  // (an object: its generation_config.json from its special ids, which transformers' generate stops on; a path brings
  // the one beside it, tokenizerFiles)
  const generation = tokenizer && typeof tok === 'object' ? generationConfigOf(tokenizer) : null;
  let tokenizerOut: Record<string, Buffer> = typeof tok === 'string' ? tokenizerFilesWith(tok, tokenizer)
    : tok ? { 'tokenizer.json': Buffer.from(JSON.stringify(tok)), ...(generation ? { 'generation_config.json': generation } : {}) } : {};
  if (tokenizer && typeof tok === 'object') tokenizerOut = withSpecialsStated(tokenizerOut, tokenizer); // (tokenizerFiles does it for a path)
  if (tokenizer && transformers) tokenizerOut = withBatchPadding(withImageToken(tokenizerOut, tokenizer, imageTokenIndex, model.config.llm.vocabSize), tokenizer);
  if (transformers) {
    const { preprocessor, processor } = processorConfigsToTransformers(model.config);
    tokenizerOut['preprocessor_config.json'] = Buffer.from(stringifyTransformersConfig(preprocessor) + '\n');
    tokenizerOut['processor_config.json'] = Buffer.from(stringifyTransformersConfig(processor) + '\n');
    // apply_chat_template then writes the prompts the model was trained with
    tokenizerOut['chat_template.jinja'] = Buffer.from(jinjaChatTemplate(model.config.template));
  }
  // an extra file is one plain name beside the model's, never one of them (a train_args.json named config.json
  // replaced the model's config), nor a path out of the folder
  const own = new Set(['config.json', 'model.safetensors', ...Object.keys(tokenizerOut)]);
  for (const [key, names] of [['extraFiles', Object.keys(opts.extraFiles ?? {})], ['extraTensors', Object.keys(opts.extraTensors ?? {})]] as const) {
    for (const name of names) {
      if (!isPlainFileName(name)) throw typeError(where, `options.${key} name`, 'a plain file name (no folder)', name);
      if (own.has(name)) throw new RangeError(`${where}: options.${key} names ${name}, which the save writes itself${tokenizerOut[name] ? ' (a tokenizer file)' : ''}`);
      own.add(name);
    }
  }
  // each parameter read as it is written: a save holds one of them on the host, not a copy of the model (28 GB at 7B)
  const params = new Map<string, LazyHostTensor>([...model.namedParameters()].map(([name, p]) => [name, { dtype: 'float32', shape: [...p.shape], read: () => p.toArray() as Float32Array }]));
  const tensors = transformers ? weightsToTransformers(params) : params;
  const target = path.resolve(dir);
  const tmp = `${target}.tmp-${process.pid}-${Date.now()}-${saveCounter++}`;
  fs.mkdirSync(tmp);
  try {
    // float fields keep their decimal point in both layouts: transformers' strict config classes refuse an int
    // (initializer_factor 1) where they declare a float, and LLaVA's layout is read by them too (model_type llava)
    writeFileDurable(path.join(tmp, 'config.json'), stringifyTransformersConfig(configJson) + '\n');
    writeSafetensors(path.join(tmp, 'model.safetensors'), tensors, { format: 'pt' }, { checksum: true, floatDtype: dtype });
    for (const [name, data] of Object.entries(tokenizerOut)) writeFileDurable(path.join(tmp, name), data);
    for (const [name, data] of Object.entries(opts.extraFiles ?? {})) writeFileDurable(path.join(tmp, name), data);
    for (const [name, tensors] of Object.entries(opts.extraTensors ?? {})) writeSafetensors(path.join(tmp, name), tensors, undefined, { checksum: true });
    fsyncPath(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  // From here on some complete checkpoint is always findable: the target, or (between the renames) the
  // .old- one; a failure leaves the tmp directory for the next save to clean up.
  let old: string | null = null;
  if (fs.existsSync(target)) {
    old = `${target}.old-${stamp()}`;
    fs.renameSync(target, old);
  }
  fs.renameSync(tmp, target);
  fsyncPath(parent);
  removeStale(target, old);
}

/** The files of a checkpoint folder: its config, weights, optimizer state, tokenizer files and run records. */
const CHECKPOINT_FILE = /^(.+\.json|.+\.safetensors|tokenizer\.model|chat_template\.jinja)$/;

/**
 * Why saveCheckpoint would refuse to write `dir`, which a save replaces whole (null: it would not). Allowed: no such
 * path, an empty folder, or a checkpoint a save wrote (config.json and a model.safetensors carrying the save's
 * checksum, or a Trainer's trainer_state.json) holding nothing but a checkpoint's files. Refused: a file, and a folder of anything else (a project's
 * config.json, a user's notes beside the weights, a downloaded model), which would be deleted.
 */
export function checkpointTargetProblem(dir: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    return null; // no such path (a dangling link or an unreadable parent fails the save itself, naming it)
  }
  if (!st.isDirectory()) return `${dir} exists and is not a directory (a checkpoint is a folder: give another path)`;
  const entries = fs.readdirSync(dir).sort();
  if (entries.length === 0) return null;
  const advice = 'a save replaces its folder whole, so give an empty folder, a new path, or a checkpoint vwlmm saved';
  const foreign = entries.filter((n) => !CHECKPOINT_FILE.test(n) || !fs.statSync(path.join(dir, n), { throwIfNoEntry: false })?.isFile());
  if (foreign.length > 0) return `${dir} holds files that are not a checkpoint's (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', ...' : ''}): ${advice}`;
  let saved = false;
  try {
    // a save's checksum, or a training run's state (the Trainer's checkpoints from before saves were checksummed)
    saved = entries.includes('config.json') && (entries.includes('trainer_state.json') || CHECKSUM_KEY in (readSafetensorsHeader(path.join(dir, 'model.safetensors')).metadata ?? {}));
  } catch {
    /* no model.safetensors, or not one */
  }
  return saved ? null : `${dir} is not a checkpoint vwlmm saved (no config.json with a model.safetensors carrying a save's checksum, or a trainer_state.json): ${advice}`;
}

let saveCounter = 0;
const OLD_NAME = /^old-\d{15}-\d+-\d+$/;
const STALE_NAME = /^(old|trash)-\d{15}-\d+-\d+$/;
/** A name part that sorts by time (then process and a counter), for .old- directories. */
function stamp(): string {
  return `${String(Date.now()).padStart(15, '0')}-${process.pid}-${saveCounter++}`;
}

/** fsync of a directory (its entries) or file; best effort where the platform cannot. */
function fsyncPath(p: string): void {
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    /* e.g. directories on some platforms */
  } finally {
    fs.closeSync(fd);
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * After a successful save: removes `old` (this save's previous checkpoint), .old- directories of earlier
 * interrupted saves, .trash- leftovers, and .tmp- directories of processes that no longer run (a crashed save).
 */
function removeStale(target: string, old: string | null): void {
  const base = path.basename(target);
  const victims = siblings(target).filter(({ rest }) => {
    if (STALE_NAME.test(rest)) return true;
    const m = /^tmp-(\d+)-/.exec(rest);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  }).map(({ file }) => file);
  if (old && !victims.includes(old)) victims.push(old);
  for (const v of victims) {
    try {
      // an .old- directory is renamed away first, so a kill during the removal never leaves a partial one
      const trash = /^trash-/.test(path.basename(v).slice(base.length + 1)) ? v : `${target}.trash-${stamp()}`;
      if (trash !== v) fs.renameSync(v, trash);
      fs.rmSync(trash, { recursive: true, force: true });
    } catch {
      /* another process's cleanup, or permissions: left for the next save */
    }
  }
}

/**
 * The directory holding the newest complete checkpoint saved at `dir`: `dir` itself when it holds a
 * config.json, else the newest `<dir>.old-*` left by a save that was killed between its two renames; null
 * when there is none.
 */
export function resolveCheckpointDir(dir: string): string | null {
  const target = path.resolve(dir);
  const complete = (d: string) => {
    try {
      return fs.statSync(d).isDirectory() && fs.existsSync(path.join(d, 'config.json'));
    } catch {
      return false;
    }
  };
  if (complete(target)) return dir;
  const olds = siblings(target).filter(({ rest }) => OLD_NAME.test(rest)).map(({ file }) => file).sort().reverse();
  return olds.find(complete) ?? null;
}

/** The entries `<target>.<rest>` beside target (its temp, .old- and .trash- directories); none if unreadable. */
/** The folders saves of `dir` make beside it (its .tmp-, .old- and .trash- siblings): what starting over removes. */
export function saveLeftovers(dir: string): string[] {
  return siblings(path.resolve(dir)).filter(({ rest }) => STALE_NAME.test(rest) || /^tmp-\d+-\d+-\d+$/.test(rest)).map(({ file }) => file);
}

function siblings(target: string): { file: string; rest: string }[] {
  const parent = path.dirname(target), base = path.basename(target);
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(`${base}.`)).map((n) => ({ file: path.join(parent, n), rest: n.slice(base.length + 1) }));
}

/** A JSON object from a file (config.json and the like): a missing, non-regular or non-JSON file, or JSON that is not an object, is an error naming it. */
function readJson(file: string): Record<string, unknown> {
  if (!entryExists(file)) throw new Error(`checkpoint: ${file} does not exist`);
  const text = readRegularFile(file, (problem, cause) => new Error(`checkpoint: ${file}: ${problem}`, { cause })).toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`checkpoint: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(v)) throw new TypeError(`checkpoint: ${file} must hold a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : JSON.stringify(v).slice(0, 40)}`);
  return v;
}

/** loadCheckpoint's options. */
export interface LoadOptions {
  /** Seed of what the checkpoint does not hold (nothing, for a complete one). */
  seed?: number;
  device?: DeviceSpec;
  /** The PIF variant or not, overriding what the checkpoint's architecture or name says (official checkpoints). */
  pif?: boolean;
  weightDtype?: 'float32' | 'bfloat16';
}
// Every option loadCheckpoint reads: another key ({ weight_dtype: ... }) is refused, not ignored
const LOAD_KEYS = { seed: true, device: true, pif: true, weightDtype: true } satisfies Record<keyof LoadOptions, true>;

/** What a checkpoint folder is before its weights are read: its layout, config.json, and the config its model has. */
type CheckpointPlan =
  | { layout: 'transformers'; dir: string; json: Record<string, unknown>; config: VwLmmConfig }
  | { layout: 'llava'; dir: string; json: Record<string, unknown>; config: VwLmmConfig; names: Set<string>; towerDir: string | null };

/**
 * The folder's checkpoint found (a save's leftover <dir>.old-*, a run's folder named), its config.json read, and the
 * model it holds told from the config and the tensors' names (headers, the index, the pickle: no tensor data).
 */
function openCheckpoint(where: string, dir: string, pif: boolean | undefined): CheckpointPlan {
  if (pif !== undefined && typeof pif !== 'boolean') throw typeError(where, 'pif', 'a boolean', pif);
  if (typeof dir !== 'string' || dir === '') throw typeError(where, 'dir', 'a checkpoint folder path', dir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    // a save killed between its two renames leaves the previous checkpoint as <dir>.old-*
    const fallback = resolveCheckpointDir(dir);
    if (fallback === null) throw new Error(`checkpoint: ${dir} is not a directory`);
    dir = fallback;
  }
  // a run's folder for its checkpoint (train's --out, the demo's --out or its vw/, llava/): the error says where that is
  if (!entryExists(path.join(dir, 'config.json'))) {
    const inRun = ['checkpoint', 'vw/checkpoint', 'llava/checkpoint'].map((c) => path.join(dir, c)).filter((c) => resolveCheckpointDir(c) !== null);
    if (inRun.length) throw new Error(`checkpoint: ${path.join(dir, 'config.json')} does not exist: ${dir} is a training run's folder, its checkpoint${inRun.length > 1 ? 's are' : ' is'} ${inRun.join(' and ')}`);
  }
  const json = readJson(path.join(dir, 'config.json'));
  if (isTransformersLlavaConfig(json)) {
    // transformers' LLaVA has no vm_head, which PIF runs through
    if (pif) throw new RangeError(`checkpoint: ${dir} is in transformers' LlavaForConditionalGeneration layout, which has no vm_head: it cannot be the PIF variant (pif: true)`);
    const pre = path.join(dir, 'preprocessor_config.json');
    return { layout: 'transformers', dir, json, config: withConfigFile(dir, () => configFromTransformers(json, fs.existsSync(pre) ? readJson(pre) : undefined)) };
  }
  // LLaVA's own layout is model_type 'llava' too, with the LLM's sizes at the top; transformers' has vision_config instead
  if (json.model_type === 'llava' && (json.text_config !== undefined || (isPlainObject(json.vision_config) && json.hidden_size === undefined)))
    throw new TypeError(`checkpoint: ${path.join(dir, 'config.json')} is model_type 'llava' (transformers' LlavaForConditionalGeneration) but its text_config is ${json.text_config === undefined ? 'missing' : `not an object (${JSON.stringify(json.text_config)})`}`);
  // Names first, to know what the model is; loadCheckpoint then streams the weights into it one tensor at a time, so
  // the host never holds the checkpoint (a 7B model is 28 GB in fp32).
  const names = new Set(checkpointTensorNames(dir));
  // (else the first thing found missing would be the vision tower, and the error would send the user looking for it)
  if (names.size === 0) throw new Error(`checkpoint: the weights in ${dir} hold no tensors (${fs.readdirSync(dir).filter((n) => /\.(safetensors|bin)$|\.index\.json$/.test(n)).join(', ') || 'no weights file'})`);
  let towerDir: string | null = null;
  let visionConfig: Record<string, unknown> | undefined;
  if (![...names].some((k) => k.startsWith(TOWER_PREFIX))) {
    const tower = String(json.mm_vision_tower ?? '');
    towerDir = path.isAbsolute(tower) ? tower : path.join(dir, tower);
    // a hub id (LLaVA's configs name openai/clip-vit-large-patch14-336): the copy transformers cached, if any
    if (tower && !fs.existsSync(path.join(towerDir, 'config.json'))) towerDir = hubCacheFolder(tower) ?? towerDir;
    if (!tower || !fs.existsSync(path.join(towerDir, 'config.json')))
      throw new Error(`checkpoint: the vision tower is not in ${dir} and mm_vision_tower '${tower}' is neither a local CLIP directory nor in the Hugging Face cache (${hubCacheRoot()}; models are never downloaded)`);
    visionConfig = readJson(path.join(towerDir, 'config.json'));
  }
  const config = withConfigFile(dir, () => modelKind(dir, json, configFromJson(json, visionConfig), names, pif));
  const loraKey = [...names].find((k) => /\.lora_[AB]\.weight$/.test(k));
  if (loraKey && loraEntryOf(dir, json) === null)
    throw new Error(`checkpoint: ${dir} holds LoRA tensors (${loraKey}, ...) but its config.json has no lora entry saying how to apply them`);
  return { layout: 'llava', dir, json, config, names, towerDir };
}

/** A checkpoint's config.json `lora` entry (loadCheckpoint applies it before the weights stream in). */
function loraEntryOf(dir: string, json: Record<string, unknown>): LoraConfig | null {
  if (json.lora === undefined || json.lora === null) return null;
  const l = json.lora as Record<string, unknown>;
  if (typeof l !== 'object' || !Array.isArray(l.target_modules)) throw new TypeError(`checkpoint: ${dir}/config.json: lora must be an object with r, lora_alpha, lora_dropout, target_modules`);
  return { r: l.r as number, alpha: l.lora_alpha as number, dropout: (l.lora_dropout as number) ?? 0, targetModules: l.target_modules as string[] };
}

/**
 * What loadCheckpoint would load, without reading a weight (as transformers' AutoConfig.from_pretrained): the model's
 * config (a VW-LMM, the PIF variant, or plain LLaVA, told as loadCheckpoint tells it) and the LoRA adapters its
 * config.json states. For a check before a load that may take minutes (a 7B model), and for tools that only need
 * the shapes. `dir` and `tokenizerPath` are loadCheckpoint's.
 */
export function checkpointConfig(dir: string, opts: { pif?: boolean } = {}): { config: VwLmmConfig; lora: LoraConfig | null; tokenizerPath: string | null; dir: string } {
  const where = 'checkpointConfig';
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', 'an object with key pif', opts);
  checkKeys(where, 'option', opts, { pif: true });
  const plan = openCheckpoint(where, dir, opts.pif);
  return { config: plan.config, lora: plan.layout === 'llava' ? loraEntryOf(plan.dir, plan.json) : null, tokenizerPath: tokenizerPathOf(plan.dir), dir: plan.dir };
}

/**
 * Loads a VW-LMM / LLaVA checkpoint directory onto `opts.device` ('cpu' by default). Weights are stored as
 * float32 whatever device and dtype saved them, so a checkpoint of a GPU run loads on the CPU and the other way round;
 * `weightDtype` 'bfloat16' keeps the LLM's and the vision tower's Linear weights in bf16 instead (half the memory,
 * rounded once: for inference, where autocast('bfloat16') would round them anyway, or for LoRA's frozen base).
 */
export function loadCheckpoint(dir: string, opts: LoadOptions = {}): { model: VwLmm; config: VwLmmConfig; tokenizerPath: string | null; dir: string } {
  const where = 'loadCheckpoint';
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw typeError(where, 'options', `an object with keys among ${Object.keys(LOAD_KEYS).join(', ')}`, opts);
  checkKeys(where, 'option', opts, LOAD_KEYS);
  if (opts.weightDtype !== undefined && opts.weightDtype !== 'float32' && opts.weightDtype !== 'bfloat16') throw typeError(where, 'weightDtype', "'float32' or 'bfloat16'", opts.weightDtype);
  const plan = openCheckpoint(where, dir, opts.pif);
  if (plan.layout === 'transformers') return { ...loadTransformersCheckpoint(plan, opts.seed ?? 0, opts.device, opts.weightDtype), dir: plan.dir };
  const { json, names, towerDir, config } = plan;
  dir = plan.dir;
  // every parameter is loaded below (a missing one is an error), so none is drawn at random first
  // weightDtype 'bfloat16': the LLM's and the tower's Linear weights stored in bf16 from the start (VwLmm.create's
  // linearDtype), each tensor converted as it streams in, so the model never exists in float32
  const model = withConfigFile(dir, () => VwLmm.create(config, opts.seed ?? 0, { device: opts.device, uninitialized: true, linearDtype: opts.weightDtype }));
  try {
    const lora = loraEntryOf(dir, json);
    if (lora) withConfigFile(dir, () => applyLora(model, lora));
    // Every parameter must be present, and every tensor must have a place in the model (as transformers reports
    // unexpected keys), except the buffers real checkpoints carry that hold nothing (harmlessTensor) and a separate
    // CLIP directory's text side. Only the tensors that go into the model are read, each shape checked first.
    const sink = parameterSink(model);
    if (names.has('model.image_newline'))
      throw new RangeError(`checkpoint: ${dir} holds model.image_newline, the separator of LLaVA-NeXT's image tiles: LLaVA-NeXT (anyres) is not supported`);
    const { plan, unexpected } = planTensors(dir, names, sink.params, (n) => llavaLayoutName(n, sink.params));
    if (unexpected.length) {
      const proj = [...sink.params.keys()].filter((k) => k.startsWith('model.mm_projector.'));
      const hint = unexpected.some((n) => n.startsWith('model.mm_projector.'))
        ? `; the config's mm_projector_type is '${config.projectorType}'${json.mm_projector_type === undefined || json.mm_projector_type === null ? " (LLaVA's default: config.json names none)" : ''}, whose parameters are ${proj.join(', ')}` : '';
      throw new RangeError(`checkpoint: ${dir} holds ${unexpected.length} tensor${unexpected.length > 1 ? 's' : ''} this model has no place for (unexpected keys): ${listSome(unexpected)}${hint}`);
    }
    // a separate CLIP directory: its own names (with or without vision_model.), the parts a tower does not use left out
    const tower = towerDir ? planTensors(towerDir, checkpointTensorNames(towerDir), sink.params,
      (k) => (CLIP_UNUSED.test(k) ? null : TOWER_PREFIX + (k.startsWith('vision_model.') ? k : `vision_model.${k}`))) : null;
    if (tower?.unexpected.length)
      throw new RangeError(`checkpoint: the vision tower ${towerDir} holds ${tower.unexpected.length} tensor${tower.unexpected.length > 1 ? 's' : ''} a CLIP vision tower of its config does not have: ${listSome(tower.unexpected)}`);
    const tied = json.tie_word_embeddings === true && ![...plan.values()].includes('lm_head.weight');
    forEachCheckpointTensor(dir, { filter: (n) => plan.has(n), expectShape: (n) => sink.params.get(plan.get(n)!)!.shape, verify: true }, (n, t) => {
      const o = plan.get(n)!;
      sink.put(o, t, `${dir}: tensor ${n}`);
      // tie_word_embeddings: lm_head is the embedding, as transformers ties it (and its LLaVA layout below)
      if (tied && o === 'model.embed_tokens.weight') sink.put('lm_head.weight', t);
    });
    if (towerDir && tower) forEachCheckpointTensor(towerDir, { filter: (n) => tower.plan.has(n), expectShape: (n) => sink.params.get(tower.plan.get(n)!)!.shape, verify: true }, (k, t) => sink.put(tower.plan.get(k)!, t, `${towerDir}: tensor ${k}`));
    const missing = sink.missing();
    if (missing.length) throw new Error(`checkpoint: ${dir} lacks ${missing.length} tensors, e.g. ${missing.slice(0, 5).join(', ')}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  // the model's own frozen copy, so that the config returned is the one the model runs by
  return { model, config: model.config, tokenizerPath: tokenizerPathOf(dir), dir };
}

/** What assembleLlava builds a LLaVA / VW-LMM from (LLaVA's train.py arguments in brackets). */
export interface AssembleOptions {
  /** A LlamaForCausalLM / MistralForCausalLM directory: config.json, its weights, its tokenizer [model_name_or_path]. */
  llm: string;
  /** A CLIPVisionModel or CLIPModel directory (openai/clip-vit-large-patch14-336) [vision_tower]. */
  visionTower: string;
  /** A trained projector: LLaVA's mm_projector.bin (model.mm_projector.* tensors), or a .safetensors of them [pretrain_mm_mlp_adapter]. */
  projector?: string;
  /** 'linear' or 'mlp2x_gelu' (default, LLaVA-1.5) [mm_projector_type]. */
  projectorType?: string;
  /** The tower layer whose patch features are projected (default -2) [mm_vision_select_layer]. */
  selectLayer?: number;
  /** 'square' (default, LLaVA's pretraining) or 'pad' (its fine-tuning) [image_aspect_ratio]. */
  imageAspect?: 'square' | 'pad';
  /** The conversation template the model is trained with (default 'vicuna_v1' for LLaMA, 'mistral' for Mistral) [version]. */
  template?: TemplateName;
  /** > 0: a VW-LMM, with a vm_head and the visual-word KL at this weight (the paper: 1); 0 (default): plain LLaVA. */
  vmWeight?: number;
  /** Seed of the parts drawn anew: the projector (unless given) and the vm_head. */
  seed?: number;
  device?: DeviceSpec;
  weightDtype?: 'float32' | 'bfloat16';
}

const ASSEMBLE_KEYS = {
  llm: true, visionTower: true, projector: true, projectorType: true, selectLayer: true, imageAspect: true, template: true, vmWeight: true, seed: true,
  device: true, weightDtype: true,
} satisfies Record<keyof AssembleOptions, true>;

/**
 * A LLaVA (or, with vmWeight, a VW-LMM) made of its parts, as LLaVA's train.py builds one before its first stage: the
 * LLM's weights from its directory (every one of them), the CLIP tower's from its own, the projector from
 * pretrain_mm_mlp_adapter or drawn as torch's nn.Linear draws it (U(-1/sqrt(in), 1/sqrt(in)), build_vision_projector
 * runs after from_pretrained), and the vm_head drawn as transformers draws a weight the base lacks (N(0, 0.02^2)).
 * The tower is embedded in the model: a checkpoint saved from it needs neither directory. The tokenizer is the LLM's.
 */
export function assembleLlava(o: AssembleOptions): { model: VwLmm; config: VwLmmConfig; tokenizerPath: string | null } {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError('assembleLlava', 'options', 'an object with llm and visionTower', o);
  checkKeys('assembleLlava', 'option', o, ASSEMBLE_KEYS);
  if (o.weightDtype !== undefined && o.weightDtype !== 'float32' && o.weightDtype !== 'bfloat16') throw typeError('assembleLlava', 'weightDtype', "'float32' or 'bfloat16'", o.weightDtype);
  const llmJson = readJson(path.join(o.llm, 'config.json'));
  const base = String(llmJson.model_type ?? '');
  if (base !== 'llama' && base !== 'mistral')
    throw new RangeError(`assembleLlava: ${o.llm}/config.json is model_type '${base}', not a LLaMA or Mistral language model (LlamaForCausalLM, MistralForCausalLM)`);
  const towerJson = readJson(path.join(o.visionTower, 'config.json'));
  if (towerJson.model_type !== 'clip_vision_model' && towerJson.model_type !== 'clip')
    throw new RangeError(`assembleLlava: ${o.visionTower}/config.json is model_type '${String(towerJson.model_type)}', not a CLIP model (CLIPVisionModel, CLIPModel)`);
  const vision = (towerJson.model_type === 'clip' ? towerJson.vision_config : towerJson) as Record<string, unknown>;
  if (!isPlainObject(vision)) throw new TypeError(`assembleLlava: ${o.visionTower}/config.json has no vision_config object`);
  // the caller's own settings named as theirs (checked again in the config, where an error would name the LLM's file)
  const L = vision.num_hidden_layers;
  if (o.selectLayer !== undefined && typeof L === 'number' && !selectLayerFits(o.selectLayer, L))
    throw new RangeError(`assembleLlava: selectLayer (mm_vision_select_layer) ${o.selectLayer} is out of range for the ${L}-layer tower of ${o.visionTower} (${-(L + 1)} to ${L})`);
  if (o.projectorType !== undefined) {
    try {
      parseProjectorType(o.projectorType);
    } catch (e) {
      throw new RangeError(`assembleLlava: projectorType (mm_projector_type): ${(e as Error).message}`);
    }
  }
  const vmWeight = o.vmWeight ?? 0;
  const json: Record<string, unknown> = {
    ...llmJson, model_type: base === 'mistral' ? 'llava_mistral' : 'llava_llama',
    mm_vision_tower: path.resolve(o.visionTower), mm_projector_type: o.projectorType ?? 'mlp2x_gelu', mm_vision_select_layer: o.selectLayer ?? -2,
    mm_vision_select_feature: 'patch', mm_hidden_size: vision.hidden_size, image_aspect_ratio: o.imageAspect ?? 'square',
    conversation_template: o.template ?? (base === 'mistral' ? 'mistral' : 'vicuna_v1'), vm_weight: vmWeight,
  };
  const config = withConfigFile(o.llm, () => configFromJson(json, vision));
  const model = withConfigFile(o.llm, () => VwLmm.create(config, o.seed ?? 0, { device: o.device, linearDtype: o.weightDtype }));
  try {
    const sink = parameterSink(model);
    const load = (where: string, names: Iterable<string>, ours: (n: string) => string | null, what: string, each: (fn: (n: string, t: HostTensor) => void, plan: Map<string, string>) => void, hint = '') => {
      const { plan, unexpected } = planTensors(where, names, sink.params, ours);
      if (unexpected.length) throw new RangeError(`assembleLlava: ${where} holds ${unexpected.length} tensor${unexpected.length > 1 ? 's' : ''} ${what} has no place for: ${listSome(unexpected)}${hint}`);
      each((n, t) => sink.put(plan.get(n)!, t, `${where}: tensor ${n}`), plan);
    };
    // the LLM: its HF names are the LLaVA layout's for the language model; a tower's, projector's or vm_head's name in
    // it is mapped to no parameter (a name no model has), so planTensors reports it as unexpected
    const llmOnly = (n: string) => (n.startsWith('model.mm_projector.') || n.startsWith('model.vision_tower.') || n.startsWith('vm_head.') ? `(not an LLM tensor) ${n}` : llavaLayoutName(n, sink.params));
    const llmNames = checkpointTensorNames(o.llm);
    // tie_word_embeddings without lm_head.weight: lm_head is the embedding, as transformers ties it (loadCheckpoint too)
    const tied = llmJson.tie_word_embeddings === true && !llmNames.includes('lm_head.weight');
    load(o.llm, llmNames, llmOnly, 'a language model', (put, plan) =>
      forEachCheckpointTensor(o.llm, { filter: (n) => plan.has(n), expectShape: (n) => sink.params.get(plan.get(n)!)!.shape, verify: true }, (n, t) => {
        put(n, t);
        if (tied && plan.get(n) === 'model.embed_tokens.weight') sink.put('lm_head.weight', t);
      }));
    load(o.visionTower, checkpointTensorNames(o.visionTower), (k) => (CLIP_UNUSED.test(k) ? null : TOWER_PREFIX + (k.startsWith('vision_model.') ? k : `vision_model.${k}`)), 'a CLIP vision tower of its config', (put, plan) =>
      forEachCheckpointTensor(o.visionTower, { filter: (n) => plan.has(n), expectShape: (n) => sink.params.get(plan.get(n)!)!.shape, verify: true }, put));
    const projector = [...sink.params.keys()].filter((n) => n.startsWith('model.mm_projector.'));
    if (o.projector !== undefined) {
      const file = o.projector;
      const tensors = file.endsWith('.safetensors') ? readSafetensors(file) : readTorchBin(file);
      load(file, tensors.keys(), (n) => (n.startsWith('model.mm_projector.') ? llavaLayoutName(n, sink.params) : `(not a projector tensor) ${n}`), `the ${config.projectorType} projector`, (put, plan) => {
        for (const [n, t] of tensors) if (plan.has(n)) put(n, t);
      }, ` (its parameters are ${projector.join(', ')}: is the file another mm_projector_type's?)`);
    } else {
      // torch's nn.Linear default: kaiming_uniform(a = sqrt(5)) for the weight and U(-1/sqrt(in), 1/sqrt(in)) for the bias
      const g = new Generator(o.seed ?? 0).fork('mm_projector');
      for (const n of projector) {
        const p = sink.params.get(n)!, fanIn = n.endsWith('.bias') ? sink.params.get(n.replace(/\.bias$/, '.weight'))!.shape[1] : p.shape[1];
        const bound = 1 / Math.sqrt(fanIn);
        sink.put(n, { dtype: 'float32', shape: [...p.shape], data: Float32Array.from({ length: p.size }, () => (2 * g.uniform() - 1) * bound) });
      }
    }
    // the vm_head keeps VwLmm.create's draw: transformers' normal(0, initializer_range) for a weight the base lacks
    const missing = sink.missing().filter((n) => !(n.startsWith('vm_head.')));
    if (missing.length) throw new Error(`assembleLlava: ${missing.some((n) => n.startsWith(TOWER_PREFIX)) ? o.visionTower : o.llm} lacks ${missing.length} tensors, e.g. ${missing.slice(0, 5).join(', ')}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, config: model.config, tokenizerPath: tokenizerPathOf(o.llm) };
}

// The architectures a LLaVA-layout config.json may name: ours and LLaVA's, and the official VW-LMM classes.
const VW_ARCHITECTURES = ['vwLlamaForCausalLM', 'vwMistralForCausalLM', 'vwPifLlamaForCausalLM'];
const KNOWN_ARCHITECTURES = [...VW_ARCHITECTURES, 'LlavaLlamaForCausalLM', 'LlavaMistralForCausalLM'];

/**
 * The official loader's model name (VW-LMM's mm_utils.get_model_name_from_path): the path's last part, or
 * "<parent>_checkpoint-N" for a checkpoint-N folder, taken from the path as given.
 */
function officialModelName(dir: string): string {
  const parts = dir.replace(/^\/+|\/+$/g, '').split('/');
  const last = parts[parts.length - 1];
  return last.startsWith('checkpoint-') && parts.length > 1 ? `${parts[parts.length - 2]}_${last}` : last;
}

/**
 * What kind of model the checkpoint holds, where its config does not say. The official VW-LMM configs carry no vm_*
 * keys (the official loader picks its class from the model's name): a vm_head.weight among the weights, or a vw*
 * architecture, makes it a VW-LMM (the official loss weight 1). It is the PIF variant when the architecture says so
 * or, as the official builder decides it, when the base is LLaMA and the model's name (officialModelName of the
 * directory as given; case-sensitive) contains "pif"; `pif` overrides that. Explicit vm_weight / vm_pif keys (our
 * checkpoints) win.
 */
function modelKind(dir: string, json: Record<string, unknown>, config: VwLmmConfig, names: Set<string>, pif: boolean | undefined): VwLmmConfig {
  const arch = json.architectures;
  if (arch !== undefined && arch !== null) {
    if (!Array.isArray(arch) || !arch.every((a) => typeof a === 'string')) throw new TypeError(`architectures must be a list of class names, got ${JSON.stringify(arch)}`);
    const unknown = (arch as string[]).filter((a) => !KNOWN_ARCHITECTURES.includes(a));
    if (unknown.length) throw new RangeError(`architectures ${unknown.join(', ')} not supported (known: ${KNOWN_ARCHITECTURES.join(', ')}, and transformers' LlavaForConditionalGeneration layout)`);
  }
  const archs = (arch ?? []) as string[];
  const vw = names.has('vm_head.weight') || archs.some((a) => VW_ARCHITECTURES.includes(a));
  if (pif !== undefined && typeof pif !== 'boolean') throw new TypeError(`loadCheckpoint: pif must be a boolean, got ${JSON.stringify(pif)}`);
  const name = officialModelName(dir);
  const out = { ...config };
  if (json.vm_weight === undefined && vw) out.vmWeight = 1;
  if (pif !== undefined) out.pif = pif;
  else if (json.vm_pif === undefined && vw) out.pif = archs.includes('vwPifLlamaForCausalLM') || (config.base !== 'mistral' && name.includes('pif'));
  if (out.pif && !names.has('vm_head.weight')) throw new RangeError(`the model is the PIF variant${pif ? ' (pif: true)' : archs.includes('vwPifLlamaForCausalLM') ? ' (architectures vwPifLlamaForCausalLM)' : ` ("pif" in its name '${name}')`} but has no vm_head.weight, which PIF needs (pass pif: false to load it as plain LLaVA)`);
  return out;
}

/**
 * The Hugging Face hub cache transformers reads and fills, as huggingface_hub finds it: HF_HUB_CACHE, else the legacy
 * HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME (or ~/.cache)/huggingface/hub; a leading ~ expanded.
 */
export function hubCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const home = (p: string) => (p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p);
  if (env.HF_HUB_CACHE) return home(env.HF_HUB_CACHE);
  if (env.HUGGINGFACE_HUB_CACHE) return home(env.HUGGINGFACE_HUB_CACHE);
  if (env.HF_HOME) return path.join(home(env.HF_HOME), 'hub');
  return path.join(env.XDG_CACHE_HOME ? home(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache'), 'huggingface', 'hub');
}

/**
 * The local folder of a hub model id (`openai/clip-vit-large-patch14-336`) in the hub cache (hubCacheRoot), read as
 * transformers reads it offline (HF_HUB_OFFLINE=1): the snapshot refs/main names (a commit hash), else the only snapshot
 * there is; null when the cache has none with a config.json, or `id` is not a hub id. Nothing is downloaded.
 */
export function hubCacheFolder(id: string, env: NodeJS.ProcessEnv = process.env): string | null {
  // the hub's rule for names (no "--" or "..", no leading or trailing "-" or "."): models--org--name is then one id's
  const name = /^[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?$/;
  const parts = id.split('/');
  if (parts.length > 2 || !parts.every((p) => name.test(p) && !p.includes('--') && !p.includes('..'))) return null;
  const repo = path.join(hubCacheRoot(env), `models--${parts.join('--')}`);
  let snapshot: string | null = null;
  try {
    const ref = fs.readFileSync(path.join(repo, 'refs', 'main'), 'utf8').trim();
    if (/^[0-9a-f]{40}$/.test(ref)) snapshot = path.join(repo, 'snapshots', ref);
  } catch {
    /* no refs/main: a snapshot copied in by hand */
  }
  if (snapshot === null) {
    try {
      const all = fs.readdirSync(path.join(repo, 'snapshots'));
      if (all.length === 1) snapshot = path.join(repo, 'snapshots', all[0]);
    } catch {
      return null;
    }
  }
  return snapshot && fs.existsSync(path.join(snapshot, 'config.json')) ? snapshot : null;
}

/** Config errors (a missing or wrong-typed key) prefixed with the config file, keeping their class. */
function withConfigFile<T>(dir: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError) {
      const Ctor = e instanceof TypeError ? TypeError : RangeError;
      throw new Ctor(`checkpoint: ${path.join(dir, 'config.json')}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

/** A transformers LlavaForConditionalGeneration directory (config.json with text_config / vision_config). */
function loadTransformersCheckpoint({ dir, json, config }: CheckpointPlan, seed: number, device: DeviceSpec | undefined, linearDtype: 'float32' | 'bfloat16' | undefined): { model: VwLmm; config: VwLmmConfig; tokenizerPath: string | null } {
  // the names mapped up front (weightsFromTransformers' rules), then the weights streamed in as in loadCheckpoint
  const ours = new Map<string, string>();
  const taken = new Map<string, string>(); // our name -> the file's
  const unknown: string[] = [];
  for (const n of checkpointTensorNames(dir)) {
    const o = ourNameFromTransformers(n);
    const first = o === null ? undefined : taken.get(o);
    if (o === null) unknown.push(n);
    else if (first !== undefined)
      throw new Error(`checkpoint: ${dir} holds ${first === n ? `tensor ${n} twice (in two of its files)` : `tensors ${first} and ${n}, two names of one weight`} (${o}): which one is the model's cannot be told`);
    else {
      ours.set(n, o);
      taken.set(o, n);
    }
  }
  if (unknown.length) throw new Error(`checkpoint: ${unknown.length} tensors are not part of transformers' LLaVA layout, e.g. ${unknown.slice(0, 5).join(', ')}`);
  const tc = json.text_config as Record<string, unknown> | undefined;
  const tiedHead = (json.tie_word_embeddings === true || (typeof tc === 'object' && tc !== null && tc.tie_word_embeddings === true)) && !taken.has('lm_head.weight');
  const model = withConfigFile(dir, () => VwLmm.create(config, seed, { device, uninitialized: true, linearDtype }));
  try {
    const sink = parameterSink(model);
    // a name of the layout that this model has no parameter for (a layer past num_hidden_layers, a bias) is refused too
    const { plan, unexpected: extra } = planTensors(dir, ours.keys(), sink.params, (n) => ours.get(n)!);
    if (extra.length) throw new RangeError(`checkpoint: ${dir} holds ${extra.length} tensor${extra.length > 1 ? 's' : ''} this model has no place for (unexpected keys): ${listSome(extra)}`);
    forEachCheckpointTensor(dir, { filter: (n) => plan.has(n), expectShape: (n) => sink.params.get(plan.get(n)!)!.shape, verify: true }, (n, t) => {
      const o = plan.get(n)!;
      sink.put(o, t, `${dir}: tensor ${n}`);
      if (tiedHead && o === 'model.embed_tokens.weight') sink.put('lm_head.weight', t);
    });
    if (json.multimodal_projector_bias === false) {
      // a bias-free projector: our projector has biases, kept at zero
      for (const k of ['0', '2']) {
        const b = `model.mm_projector.${k}.bias`;
        const p = sink.params.get(b);
        if (p && !sink.has(b)) sink.put(b, { dtype: 'float32', shape: [...p.shape], data: new Float32Array(p.size) });
      }
    }
    const missing = sink.missing();
    if (missing.length) throw new Error(`checkpoint: ${dir} lacks ${missing.length} tensors, e.g. ${missing.slice(0, 5).map((n) => transformersNameFromOurs(n) ?? n).join(', ')}`);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, config: model.config, tokenizerPath: tokenizerPathOf(dir) };
}

/**
 * Buffers real checkpoints carry beside the weights that hold nothing to load: LLaMA's rotary_emb.inv_freq (older
 * LLaVA .bin shards; recomputed from rope_theta) and CLIP's embeddings.position_ids (an arange; openai's CLIP
 * files, towers saved by transformers < 4.31). Our names.
 */
const harmlessTensor = (name: string) => name.endsWith('.rotary_emb.inv_freq') || (name.startsWith(TOWER_PREFIX) && name.endsWith('.embeddings.position_ids'));
/** The parts of a CLIP directory (CLIPModel) a vision tower does not use. */
const CLIP_UNUSED = /^(text_model\.|text_projection\.|visual_projection\.|logit_scale$)/;

/**
 * Our parameter name for a LLaVA-layout tensor: the same, except the linear projector's as vwlmm wrote it before it
 * used LLaVA's names (model.mm_projector.0.* for LLaVA's nn.Linear model.mm_projector.*).
 */
/**
 * A checkpoint's tensors by the names of `model`'s parameters (llavaLayoutName: a linear projector written as
 * model.mm_projector.0.*, vwlmm's name before it took LLaVA's, is model.mm_projector.*). In place; returns `weights`.
 */
export function withModelNames(weights: Map<string, HostTensor>, model: VwLmm): Map<string, HostTensor> {
  const params = model.namedParameters();
  for (const n of [...weights.keys()]) {
    const o = llavaLayoutName(n, params);
    if (o !== n && !weights.has(o)) {
      weights.set(o, weights.get(n)!);
      weights.delete(n);
    }
  }
  return weights;
}

function llavaLayoutName(name: string, params: Map<string, unknown>): string {
  const m = /^model\.mm_projector\.0\.(weight|bias)$/.exec(name);
  return m && !params.has(name) && params.has(`model.mm_projector.${m[1]}`) ? `model.mm_projector.${m[1]}` : name;
}

/**
 * Which checkpoint tensor goes into which parameter (`ours`: its name, or null for a part the caller knows is unused),
 * decided from the names alone, before any data is read; `unexpected`: the tensors with no place in the model (the
 * harmless buffers aside). Two tensors for one parameter are an error.
 */
function planTensors(where: string, names: Iterable<string>, params: Map<string, unknown>, ours: (name: string) => string | null): { plan: Map<string, string>; unexpected: string[] } {
  const plan = new Map<string, string>(), from = new Map<string, string>(), unexpected: string[] = [];
  for (const n of names) {
    const o = ours(n);
    if (o === null) continue;
    if (!params.has(o)) {
      if (!harmlessTensor(o)) unexpected.push(n);
      continue;
    }
    const prev = from.get(o);
    if (prev !== undefined) throw new Error(`checkpoint: ${where}: tensors ${prev} and ${n} both go into ${o}`);
    from.set(o, n);
    plan.set(n, o);
  }
  return { plan, unexpected };
}

/** A few names of a list, for an error message. */
function listSome(names: string[], n = 5): string {
  // quoted where a name would vanish or run into the list (an empty name, one with a comma)
  const show = (x: string) => (x === '' || /[\s,]/.test(x) ? JSON.stringify(x) : x);
  return names.slice(0, n).map(show).join(', ') + (names.length > n ? `, ... (${names.length - n} more)` : '');
}

/** Writes host tensors into a model's parameters by name, remembering which it set; a name it lacks is an error. */
function parameterSink(model: VwLmm) {
  const params = model.namedParameters();
  const seen = new Set<string>();
  return {
    params,
    /** `from`: where the tensor comes from (`<dir>: tensor <its name>`), for a wrong dtype's or shape's message. */
    put: (name: string, t: HostTensor, from?: string): void => {
      const p = params.get(name);
      if (!p) throw new Error(`loadCheckpoint: the model has no parameter ${name}`);
      writeParameter('loadCheckpoint', from ? `${from} (the model's ${name})` : name, p, t);
      seen.add(name);
    },
    has: (name: string): boolean => seen.has(name),
    missing: (): string[] => [...params.keys()].filter((n) => !seen.has(n)),
  };
}

/**
 * The checkpoint's tokenizer.json; else one converted from its SentencePiece tokenizer.model (liuhaotian's LLaVA
 * checkpoints ship only that), as transformers' LlamaTokenizer would build it; else null.
 */
function tokenizerPathOf(dir: string): string | null {
  const tok = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(tok)) return tok;
  return fs.existsSync(path.join(dir, 'tokenizer.model')) ? tokenizerJsonFromSentencePiece(dir) : null;
}

/**
 * A tokenizer that does not belong to the model is an error naming both sizes: more token ids than the
 * model's vocab_size (ids out of range), or fewer, unless the embedding was padded as transformers does
 * (vocab_size = the tokenizer's size rounded up to a multiple of 8 ... 128, e.g. llava-hf: 32002 -> 32064).
 */
export function checkTokenizerVocab(tokenizerVocab: number, modelVocab: number, tokenizerPath: string): void {
  if (tokenizerVocab === modelVocab) return;
  const padded = [8, 16, 32, 64, 128].some((m) => Math.ceil(tokenizerVocab / m) * m === modelVocab);
  if (tokenizerVocab < modelVocab && padded) return;
  throw new RangeError(`tokenizer ${tokenizerPath} has a vocabulary of ${tokenizerVocab} tokens but the checkpoint's vocab_size is ${modelVocab}: ` +
    (tokenizerVocab > modelVocab ? 'its ids would run past the embedding' : 'not a padding of the tokenizer\'s size') + ' (the tokenizer does not belong to this checkpoint)');
}
