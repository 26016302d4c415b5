// A SentencePiece tokenizer.model (LLaMA / Vicuna / Mistral; liuhaotian/llava-v1.5-7b ships only this) turned into the
// tokenizer.json transformers' LlamaTokenizer builds from it (transformers 5.18): BPE over the pieces in id order with
// byte fallback, merges generated from the vocabulary as transformers' generate_merges does, a Metaspace
// pre-tokenizer ("first" prepend without `legacy`, "always" with it), BOS / EOS added as tokenizer_config.json says;
// as added tokens, in transformers' order: the tokens of added_tokens.json (or tokenizer_config.json's
// added_tokens_decoder), the named special tokens (unk, bos, eos, pad_token, ...), then the config's
// additional_special_tokens, or where it lists none the control / user-defined pieces. Checked token for token and field for field against
// transformers (tests/data/sentencepiece.test.ts, fixture by scripts/make_sentencepiece_fixture.py; added tokens:
// tests/model/sentencepiece_added.test.ts, scripts/make_sentencepiece_added_fixture.py).
// The conversion is cached per user (XDG_CACHE_HOME or ~/.cache: vwlmm/tokenizers, else the OS temp folder's
// vwlmm-tokenizers-<uid>), in a folder only its owner can enter, one folder per conversion holding tokenizer.json and
// copies of the config files beside tokenizer.model; a cache entry is used only when this user owns it.
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import { readRegularFileSync } from '../io/safetensors';
import * as os from 'os';
import * as path from 'path';

export interface SentencePiece {
  piece: string;
  score: number;
  /** 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. */
  type: number;
}

export interface SentencePieceModel {
  pieces: SentencePiece[];
  /** 1 unigram, 2 BPE. */
  modelType: number;
  byteFallback: boolean;
}

/** Protobuf fields of one message: (field number, wire type, value: a number or the bytes of a length-delimited field). */
function* fields(buf: Uint8Array, file: string): Generator<[number, number, number | Uint8Array]> {
  let p = 0;
  const varint = (): number => {
    let v = 0, mul = 1;
    for (let k = 0; k < 10; k++) {
      if (p >= buf.length) throw new Error(`sentencepiece: ${file}: truncated protobuf varint`);
      const b = buf[p++];
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
    throw new Error(`sentencepiece: ${file}: malformed protobuf varint`);
  };
  while (p < buf.length) {
    const key = varint(), field = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 1) { p += 8; if (p > buf.length) throw new Error(`sentencepiece: ${file}: truncated protobuf`); yield [field, wire, 0]; }
    else if (wire === 5) {
      if (p + 4 > buf.length) throw new Error(`sentencepiece: ${file}: truncated protobuf`);
      const v = new DataView(buf.buffer, buf.byteOffset + p, 4).getFloat32(0, true);
      p += 4;
      yield [field, wire, v];
    } else if (wire === 2) {
      const n = varint();
      if (p + n > buf.length) throw new Error(`sentencepiece: ${file}: a protobuf field runs past the end (truncated file?)`);
      yield [field, wire, buf.subarray(p, p + n)];
      p += n;
    } else throw new Error(`sentencepiece: ${file}: unsupported protobuf wire type ${wire} (not a SentencePiece model?)`);
  }
}

/** Reads the pieces and the trainer settings of a SentencePiece model file. */
export function readSentencePieceModel(file: string): SentencePieceModel {
  let buf: Buffer;
  try {
    buf = readRegularFileSync(file);
  } catch (e) {
    throw new Error(`sentencepiece: cannot read ${file}: ${(e as Error).message}`);
  }
  const model: SentencePieceModel = { pieces: [], modelType: 1, byteFallback: false };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (const [field, wire, value] of fields(buf, file)) {
    if (field === 1 && wire === 2) {
      const sp: SentencePiece = { piece: '', score: 0, type: 1 };
      for (const [f, w, v] of fields(value as Uint8Array, file)) {
        if (f === 1 && w === 2) {
          try {
            sp.piece = utf8.decode(v as Uint8Array);
          } catch {
            throw new Error(`sentencepiece: ${file}: piece ${model.pieces.length} is not valid UTF-8 (bytes ${Buffer.from((v as Uint8Array).subarray(0, 16)).toString('hex')}; a corrupt or foreign model file?)`);
          }
        }
        else if (f === 2 && w === 5) sp.score = v as number;
        else if (f === 3 && w === 0) sp.type = v as number;
      }
      model.pieces.push(sp);
    } else if (field === 2 && wire === 2) {
      for (const [f, w, v] of fields(value as Uint8Array, file)) {
        if (f === 3 && w === 0) model.modelType = v as number;
        else if (f === 35 && w === 0) model.byteFallback = v !== 0;
      }
    }
  }
  if (model.pieces.length === 0) throw new Error(`sentencepiece: ${file} holds no pieces (not a SentencePiece model)`);
  return model;
}

/** A token transformers adds to the pieces (tokenizers' AddedToken). */
export interface AddedTokenSpec {
  content: string;
  singleWord?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  /** Default: !special. */
  normalized?: boolean;
  special?: boolean;
}

export interface LlamaTokenizerOptions {
  /** tokenizer_config.json's `legacy` (transformers' default: false). */
  legacy?: boolean;
  addPrefixSpace?: boolean;
  addBosToken?: boolean;
  addEosToken?: boolean;
  unkToken?: string;
  bosToken?: string;
  eosToken?: string;
  /**
   * Tokens added before the special ones, in this order (tokenizer_config.json's added_tokens_decoder, else
   * added_tokens.json, by their index): a content that is a piece keeps the piece's id, a new one takes the next id
   * (the index written beside it is not used, as transformers does not use it); a content added earlier wins.
   */
  addedTokens?: AddedTokenSpec[];
  /** The named special tokens besides unk / bos / eos (sep, pad, cls, mask, then model-specific ones: image_token ...). */
  specialTokens?: AddedTokenSpec[];
  /**
   * tokenizer_config.json's additional_special_tokens (extra_special_tokens), added after the named ones. Given (even
   * empty), it replaces the control and user-defined pieces, which transformers adds only when the config lists none.
   */
  extraSpecialTokens?: AddedTokenSpec[];
}

/** transformers' generate_merges(vocab): every split of a piece into two pieces, ordered by the piece's id, then length. */
function generateMerges(vocab: Map<string, number>): [string, string][] {
  const merges: { l: string; r: string; id: number; k: number }[] = [];
  let order = 0;
  for (const [merge, id] of vocab) {
    const chars = Array.from(merge); // Python slices by code point
    const local: { l: string; r: string; id: number }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join(''), r = chars.slice(i).join('');
      if (vocab.has(l) && vocab.has(r)) local.push({ l, r, id });
    }
    local.sort((a, b) => vocab.get(a.l)! - vocab.get(b.l)! || vocab.get(a.r)! - vocab.get(b.r)!);
    for (const m of local) merges.push({ ...m, k: order++ });
  }
  const len = (s: string) => Array.from(s).length;
  merges.sort((a, b) => a.id - b.id || len(a.l) - len(b.l) || len(a.r) - len(b.r) || a.k - b.k);
  return merges.map((m) => [m.l, m.r]);
}

/** The tokenizer.json (as an object) transformers' LlamaTokenizer makes of a SentencePiece BPE model. */
export function llamaTokenizerJson(model: SentencePieceModel, opts: LlamaTokenizerOptions = {}, file = 'tokenizer.model'): Record<string, unknown> {
  if (model.modelType !== 2) throw new Error(`sentencepiece: ${file} is a ${model.modelType === 1 ? 'unigram' : `type-${model.modelType}`} model; LLaMA tokenizers are BPE (model_type 2)`);
  const addPrefixSpace = opts.addPrefixSpace ?? true, legacy = opts.legacy ?? false;
  const unk = opts.unkToken ?? '<unk>', bos = opts.bosToken ?? '<s>', eos = opts.eosToken ?? '</s>';
  const addBos = opts.addBosToken ?? true, addEos = opts.addEosToken ?? false;
  const vocab = new Map<string, number>();
  model.pieces.forEach((p, i) => {
    if (!vocab.has(p.piece)) vocab.set(p.piece, i);
  });
  const given = { unk_token: opts.unkToken, bos_token: opts.bosToken, eos_token: opts.eosToken };
  const idOf = (t: string, key: keyof typeof given) => {
    const id = vocab.get(t);
    if (id === undefined) {
      throw new Error(`sentencepiece: ${file} has no piece '${t}' (${given[key] !== undefined ? `the ${key} tokenizer_config.json names` : `LlamaTokenizer's default ${key}; no tokenizer_config.json names one`})`);
    }
    return id;
  };
  idOf(unk, 'unk_token');
  idOf(bos, 'bos_token');
  idOf(eos, 'eos_token');
  // the control (special) and user-defined pieces: SentencePieceExtractor's additional_special_tokens, which the
  // config's own list replaces
  const extras = opts.extraSpecialTokens ?? model.pieces.flatMap((p) => (p.type === 3 || p.type === 4 ? [{ content: p.piece, normalized: false, special: p.type === 3 }] : []));
  // transformers' order (TokenizersBackend.__init__, tokenizers' add_tokens): the added tokens by index, the named
  // special tokens, then the extra ones; a content already added keeps its first entry; a piece keeps its id,
  // anything else takes the id after the last one
  const added = new Map<number, Required<AddedTokenSpec>>(), addedContent = new Set<string>();
  const named = new Set([unk, bos, eos, ...(opts.specialTokens ?? []).map((t) => t.content)]);
  let next = vocab.size;
  const add = (t: AddedTokenSpec, special: boolean) => {
    if (t.content === '' || addedContent.has(t.content)) return;
    const id = vocab.get(t.content) ?? next;
    if (id === next) next++;
    added.set(id, { content: t.content, singleWord: t.singleWord ?? false, lstrip: t.lstrip ?? false, rstrip: t.rstrip ?? false, normalized: t.normalized ?? !special, special });
    addedContent.add(t.content);
  };
  for (const t of opts.addedTokens ?? []) add(t, (t.special ?? false) || named.has(t.content));
  for (const t of [bos, eos, unk]) add({ content: t, normalized: false }, true);
  for (const t of opts.specialTokens ?? []) add(t, true);
  for (const t of extras) add(t, t.special ?? false);
  const single: unknown[] = [], pair: unknown[] = [], specials: Record<string, unknown> = {};
  const special = (t: string, typeId: number) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  if (addBos) single.push(special(bos, 0));
  single.push(seq('A', 0));
  if (addEos) single.push(special(eos, 0));
  pair.push(...single);
  if (addBos) pair.push(special(bos, 1));
  pair.push(seq('B', 1));
  if (addEos) pair.push(special(eos, 1));
  if (addBos) specials[bos] = { id: bos, ids: [idOf(bos, 'bos_token')], tokens: [bos] };
  if (addEos) specials[eos] = { id: eos, ids: [idOf(eos, 'eos_token')], tokens: [eos] };
  const decoders: unknown[] = [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }];
  if (addPrefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [...added].sort((a, b) => a[0] - b[0]).map(([id, t]) => ({ id, content: t.content, single_word: t.singleWord, lstrip: t.lstrip, rstrip: t.rstrip, normalized: t.normalized, special: t.special })),
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: addPrefixSpace ? (legacy ? 'always' : 'first') : 'never', split: false },
    post_processor: { type: 'TemplateProcessing', single, pair, special_tokens: specials },
    decoder: { type: 'Sequence', decoders },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false,
      vocab: Object.fromEntries(vocab), merges: generateMerges(vocab),
    },
  };
}

// The named special tokens of a tokenizer_config.json after unk / bos / eos (transformers' SPECIAL_TOKENS_ATTRIBUTES).
const OTHER_SPECIAL_KEYS = ['sep_token', 'pad_token', 'cls_token', 'mask_token'];
const NAMED_KEYS = ['bos_token', 'eos_token', 'unk_token', ...OTHER_SPECIAL_KEYS];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
// Bumped when the conversion changes, so that no cache file of an older one is used.
const CONVERTER_VERSION = 'llama-tokenizer-4';

/** A JSON object from a small file of the tokenizer's directory, or undefined when there is no such file. */
function readJsonObject(file: string): { text: string; value: Record<string, unknown> } | undefined {
  if (!fs.existsSync(file)) return undefined;
  let text: string;
  try {
    if (!fs.statSync(file).isFile()) throw new Error('not a regular file');
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`sentencepiece: cannot read ${file}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`sentencepiece: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`sentencepiece: ${file} must hold a JSON object`);
  return { text, value: value as Record<string, unknown> };
}

/** An AddedToken of a tokenizer_config.json: a string, or an object with content and flags ({"__type": "AddedToken", ...}). */
function addedTokenOf(v: unknown, where: string, special: boolean): AddedTokenSpec {
  if (typeof v === 'string') return { content: v, special };
  const o = v as Record<string, unknown>;
  if (typeof v !== 'object' || v === null || typeof o.content !== 'string') throw new Error(`sentencepiece: ${where} must be a token string or an object with a "content" string, got ${JSON.stringify(v)}`);
  const flag = (k: string) => (typeof o[k] === 'boolean' ? (o[k] as boolean) : undefined);
  return { content: o.content, singleWord: flag('single_word'), lstrip: flag('lstrip'), rstrip: flag('rstrip'), normalized: flag('normalized'), special: special || flag('special') };
}

/**
 * The added and special tokens transformers' from_pretrained gives a LlamaTokenizer from tokenizer_config.json and
 * added_tokens.json (tokenization_utils_base: added_tokens.json is read only when the config has no
 * added_tokens_decoder; a token of it is special, and not normalized, when the config names it as a special token).
 */
function addedTokensOf(cfg: Record<string, unknown>, cfgFile: string, added: Record<string, unknown> | undefined, addedFile: string): Pick<LlamaTokenizerOptions, 'addedTokens' | 'specialTokens' | 'extraSpecialTokens'> {
  const specialTokens: AddedTokenSpec[] = [];
  for (const k of OTHER_SPECIAL_KEYS) if (cfg[k] !== undefined && cfg[k] !== null) specialTokens.push(addedTokenOf(cfg[k], `${cfgFile}: ${k}`, true));
  // model-specific named tokens: any other "<name>_token" key holding a token (image_token), in the config's order
  const isToken = (v: unknown) => typeof v === 'string' || (isObject(v) && v.__type === 'AddedToken');
  for (const [k, v] of Object.entries(cfg)) {
    if (k.endsWith('_token') && !NAMED_KEYS.includes(k) && isToken(v)) specialTokens.push(addedTokenOf(v, `${cfgFile}: ${k}`, true));
  }
  // transformers 5.18 (from_pretrained) reads additional_special_tokens as extra_special_tokens unless that is set
  // and non-empty; a dict of them is more named tokens; a list (even empty, or null) replaces the control /
  // user-defined pieces that the tokenizer.model would add
  const empty = (v: unknown) => v === undefined || v === null || v === false || v === '' || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);
  const extraKey = empty(cfg.extra_special_tokens) && 'additional_special_tokens' in cfg ? 'additional_special_tokens' : 'extra_special_tokens';
  const extra = cfg[extraKey];
  let extraSpecialTokens: AddedTokenSpec[] | undefined;
  if (isObject(extra)) {
    for (const [k, t] of Object.entries(extra)) specialTokens.push(addedTokenOf(t, `${cfgFile}: ${extraKey}.${k}`, true));
  } else if (extraKey in cfg) {
    if (extra !== null && !Array.isArray(extra)) throw new Error(`sentencepiece: ${cfgFile}: ${extraKey} must be a list of tokens, got ${JSON.stringify(extra)}`);
    extraSpecialTokens = (extra ?? []).map((t, i) => addedTokenOf(t, `${cfgFile}: ${extraKey}[${i}]`, true));
  }
  const decoder = cfg.added_tokens_decoder;
  if (decoder !== undefined && decoder !== null) {
    if (typeof decoder !== 'object' || Array.isArray(decoder)) throw new Error(`sentencepiece: ${cfgFile}: added_tokens_decoder must be an object of id -> token`);
    const entries = Object.entries(decoder as Record<string, unknown>).map(([id, t]) => {
      if (!/^\d+$/.test(id)) throw new Error(`sentencepiece: ${cfgFile}: added_tokens_decoder key '${id}' is not a token id`);
      return [Number(id), addedTokenOf(t, `${cfgFile}: added_tokens_decoder[${id}]`, false)] as const;
    });
    return { addedTokens: entries.sort((a, b) => a[0] - b[0]).map(([, t]) => t), specialTokens, extraSpecialTokens };
  }
  if (!added) return { addedTokens: [], specialTokens, extraSpecialTokens };
  // the named and extra tokens the config itself gives (no defaults), as transformers' special_tokens set for
  // added_tokens.json
  const configured = new Set<string>();
  for (const k of NAMED_KEYS) if (cfg[k]) configured.add(addedTokenOf(cfg[k], `${cfgFile}: ${k}`, true).content);
  for (const t of extraSpecialTokens ?? []) configured.add(t.content);
  const entries = Object.entries(added).map(([content, index]) => {
    if (!Number.isSafeInteger(index) || (index as number) < 0) throw new Error(`sentencepiece: ${addedFile}: the index of '${content}' must be a non-negative integer, got ${JSON.stringify(index)}`);
    return [index as number, content] as const;
  });
  const addedTokens = entries.sort((a, b) => a[0] - b[0]).map(([, content]) => ({ content, normalized: !configured.has(content), special: configured.has(content) }));
  return { addedTokens, specialTokens, extraSpecialTokens };
}

/** The uid of this process, or null where the platform has none (Windows). */
const uid = (): number | null => (typeof process.getuid === 'function' ? process.getuid() : null);

/** True for a directory (not a link to one) that this user owns and no one else may write into or, with `private`, enter. */
function ownedDir(dir: string, privateDir: boolean): boolean {
  try {
    const st = fs.lstatSync(dir);
    const u = uid();
    if (!st.isDirectory() || (u !== null && st.uid !== u)) return false;
    return u === null || (st.mode & (privateDir ? 0o077 : 0o022)) === 0;
  } catch {
    return false;
  }
}

/**
 * This user's cache folder of converted tokenizers, created 0700: $XDG_CACHE_HOME/vwlmm/tokenizers or
 * ~/.cache/vwlmm/tokenizers; where neither can be made, <os temp>/vwlmm-tokenizers-<uid>, which must be this
 * user's own and private (the temp folder is shared: another user may have made that name first). Null when there is
 * none that passes.
 */
function tokenizerCacheDir(): string | null {
  const xdg = process.env.XDG_CACHE_HOME;
  const candidates: [string, boolean][] = [];
  let home = '';
  try {
    home = os.homedir();
  } catch {
    /* no home directory */
  }
  if (xdg && path.isAbsolute(xdg)) candidates.push([path.join(xdg, 'vwlmm', 'tokenizers'), false]);
  else if (home) candidates.push([path.join(home, '.cache', 'vwlmm', 'tokenizers'), false]);
  candidates.push([path.join(os.tmpdir(), `vwlmm-tokenizers-${uid() ?? os.userInfo().username}`), true]);
  for (const [dir, shared] of candidates) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch {
      continue;
    }
    // a folder of ours with other bits (an older vwlmm, a umask) is made private; anyone else's is not used
    const st = fs.lstatSync(dir);
    const u = uid();
    if (st.isDirectory() && (u === null || st.uid === u) && (st.mode & 0o077) !== 0) {
      try {
        fs.chmodSync(dir, 0o700);
      } catch {
        continue;
      }
    }
    if (ownedDir(dir, shared)) return dir;
  }
  return null;
}

/** A cache file this user may trust: a regular file (not a link) it owns, that no one else can write. */
function trustedCacheFile(file: string): boolean {
  try {
    const st = fs.lstatSync(file);
    const u = uid();
    return st.isFile() && (u === null || (st.uid === u && (st.mode & 0o022) === 0));
  } catch {
    return false;
  }
}

/** A cache entry this user may trust: a folder (not a link) it owns that no one else can write, holding `files` as trusted files. */
function trustedCacheEntry(dir: string, files: string[]): boolean {
  return ownedDir(dir, false) && files.every((f) => trustedCacheFile(path.join(dir, f)));
}

/**
 * The tokenizer.json of a directory that has only a SentencePiece tokenizer.model (with maybe tokenizer_config.json,
 * special_tokens_map.json and added_tokens.json): converted once and cached for this user (tokenizerCacheDir; the
 * checkpoint directory is not written), keyed by the sha256 of the converter's version and every file it reads. The
 * cache entry is a folder that also holds copies of the directory's tokenizer_config.json and special_tokens_map.json:
 * TextTokenizer reads the special tokens (eos_token, pad_token, additional_special_tokens) from beside the
 * tokenizer.json it opens, and would otherwise fall back to its defaults.
 */
export function tokenizerJsonFromSentencePiece(dir: string): string {
  const modelFile = path.join(dir, 'tokenizer.model'), cfgFile = path.join(dir, 'tokenizer_config.json'), addedFile = path.join(dir, 'added_tokens.json');
  const cfgJson = readJsonObject(cfgFile), addedJson = readJsonObject(addedFile), mapJson = readJsonObject(path.join(dir, 'special_tokens_map.json'));
  const cfg = cfgJson?.value ?? {};
  // a token the config names, else undefined (LlamaTokenizer's default)
  const tokenName = (v: unknown) => (typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined);
  const bool = (k: string): boolean | undefined => (typeof cfg[k] === 'boolean' ? (cfg[k] as boolean) : undefined);
  let modelBytes: Buffer;
  try {
    if (!fs.statSync(modelFile).isFile()) throw new Error('not a regular file');
    modelBytes = fs.readFileSync(modelFile);
  } catch (e) {
    throw new Error(`sentencepiece: cannot read ${modelFile}: ${(e as Error).message}`);
  }
  const key = createHash('sha256').update(CONVERTER_VERSION).update('\0').update(modelBytes).update('\0').update(cfgJson?.text ?? '')
    .update('\0').update(addedJson?.text ?? '').update('\0').update(mapJson?.text ?? '').digest('hex').slice(0, 32);
  const copies: [string, string][] = [];
  if (cfgJson) copies.push(['tokenizer_config.json', cfgJson.text]);
  if (mapJson) copies.push(['special_tokens_map.json', mapJson.text]);
  const names = ['tokenizer.json', ...copies.map(([n]) => n)];
  const cache = tokenizerCacheDir();
  const entry = cache ? path.join(cache, key) : null;
  if (entry && trustedCacheEntry(entry, names)) return path.join(entry, 'tokenizer.json');
  const json = llamaTokenizerJson(readSentencePieceModel(modelFile), {
    legacy: bool('legacy'), addPrefixSpace: bool('add_prefix_space'), addBosToken: bool('add_bos_token'), addEosToken: bool('add_eos_token'),
    unkToken: tokenName(cfg.unk_token), bosToken: tokenName(cfg.bos_token), eosToken: tokenName(cfg.eos_token),
    ...addedTokensOf(cfg, cfgFile, addedJson?.value, addedFile),
  }, modelFile);
  // written whole into a private folder of its own, then renamed into place (replacing an entry this user did not trust)
  const tmp = fs.mkdtempSync(cache ? path.join(cache, `${key}.tmp-`) : path.join(os.tmpdir(), 'vwlmm-tokenizer-'));
  fs.writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(json), { mode: 0o600, flag: 'wx' });
  for (const [name, text] of copies) fs.writeFileSync(path.join(tmp, name), text, { mode: 0o600, flag: 'wx' });
  if (!entry) return path.join(tmp, 'tokenizer.json');
  try {
    fs.renameSync(tmp, entry);
  } catch {
    // another process put the same entry there first, or an untrusted one is in the way
    if (trustedCacheEntry(entry, names)) fs.rmSync(tmp, { recursive: true, force: true });
    else {
      fs.rmSync(entry, { recursive: true, force: true });
      fs.renameSync(tmp, entry);
    }
  }
  return path.join(entry, 'tokenizer.json');
}
