// TextTokenizer: a Hugging Face tokenizer.json (BPE, Unigram, WordPiece or WordLevel) run by the pure-JS
// @huggingface/tokenizers, with the special-token ids the LLaVA pipeline needs (BOS, EOS, UNK, PAD).
//
// encode() never adds special tokens except an optional BOS at the front: templates put "</s>" into the
// prompt text themselves (it is matched as an added token), and LLaVA's tokenizer_image_token adds BOS once.
//
// Special tokens are resolved in this order (the first that names a token wins):
//   BOS: options.bosToken, tokenizer_config.json / special_tokens_map.json `bos_token`, the post_processor
//        template (a SpecialToken before $A), "<s>" when it is in the vocabulary; otherwise null.
//   EOS: options.eosToken, config `eos_token`, the post_processor template (a SpecialToken after $A),
//        "</s>" when it is in the vocabulary; otherwise null.
//   UNK: options.unkToken, config `unk_token`, the model's own unk_token / unk_id, "<unk>"; otherwise null.
//   PAD: options.padToken; else UNK (LLaVA sets pad = unk: id 0 for LLaMA); else config `pad_token`; else
//        EOS; else 0.
import * as fs from 'fs';
import { readRegularFileSync } from '../io/safetensors';
import * as path from 'path';
import { BPE, ByteFallbackDecoder, type Decoder, SequenceDecoder, Tokenizer } from '@huggingface/tokenizers';
import { RustBpe } from './bpe';
import { checkedOptions, describe } from '../errors';

/** TextTokenizer.encode's memo: how many texts it keeps, and the longest it keeps. */
const MEMO_ENTRIES = 1 << 15;
const MEMO_MAX_CHARS = 256;

/** tokenizer_config.json content (only the keys used here are typed). */
export interface TokenizerConfigObject {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  unk_token?: string | { content: string } | null;
  pad_token?: string | { content: string } | null;
  additional_special_tokens?: Array<string | { content: string }>;
  [key: string]: unknown;
}

export interface TextTokenizerOptions {
  /** tokenizer_config.json content; when loading from a path, the file beside tokenizer.json is used. */
  config?: TokenizerConfigObject | null;
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  /** Name used in error messages (defaults to the file path, or "tokenizer.json object"). */
  source?: string;
}

export interface EncodeOptions {
  /** Put the BOS id in front (default false). Throws when the tokenizer has no BOS token. */
  addBos?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS, EOS, UNK, PAD and added tokens marked special). Default true. */
  skipSpecial?: boolean;
}

const TOKENIZER_KEYS = { config: true, bosToken: true, eosToken: true, unkToken: true, padToken: true, source: true } satisfies Record<keyof TextTokenizerOptions, true>;
const ENCODE_KEYS = { addBos: true } satisfies Record<keyof EncodeOptions, true>;
const DECODE_KEYS = { skipSpecial: true } satisfies Record<keyof DecodeOptions, true>;

const SUPPORTED_MODELS = ['BPE', 'Unigram', 'WordPiece', 'WordLevel'];

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function tokenContent(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

function readJson(file: string, what: string): unknown {
  let text: string;
  try {
    text = readRegularFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`TextTokenizer: ${what} not found: ${file}`);
    throw new Error(`TextTokenizer: cannot read ${what} ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`TextTokenizer: ${file} is not valid JSON (${(e as Error).message})`);
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// a byte token as tokenizers' Rust ByteFallback reads one: "<0x" + u8::from_str_radix of two characters + ">"
const BYTE_TOKEN = /^<0x(\+[0-9A-Fa-f]|[0-9A-Fa-f]{2})>$/;

/**
 * The ByteFallback decoder as tokenizers' Rust library (and so transformers) runs it: a run of byte tokens is its
 * text when its bytes are valid UTF-8 as a whole, else one U+FFFD per byte token. The JavaScript library decodes the
 * run with a default TextDecoder, which drops a U+FEFF at the start of the run (it reads it as a BOM) and writes one
 * U+FFFD per invalid sequence, not per byte.
 */
function byteFallbackChain(tokens: string[]): string[] {
  const out: string[] = [];
  let bytes: number[] = [];
  const flush = () => {
    if (bytes.length === 0) return;
    try {
      out.push(UTF8.decode(Uint8Array.from(bytes)));
    } catch {
      out.push('\ufffd'.repeat(bytes.length));
    }
    bytes = [];
  };
  for (const t of tokens) {
    const m = BYTE_TOKEN.exec(t);
    if (m) bytes.push(parseInt(m[1], 16));
    else {
      flush();
      out.push(t);
    }
  }
  flush();
  return out;
}

/** Puts byteFallbackChain in place of the JavaScript ByteFallback decoder, wherever it is in the decoder. */
function useExactByteFallback(d: Decoder | null): void {
  if (d instanceof ByteFallbackDecoder) d.decode_chain = byteFallbackChain;
  else if (d instanceof SequenceDecoder) d.decoders.forEach(useExactByteFallback);
}

/** The special tokens the post_processor's single-sequence template puts before and after $A. */
function templateSpecials(pp: unknown): { before: string[]; after: string[] } {
  const out = { before: [] as string[], after: [] as string[] };
  if (!isObject(pp)) return out;
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    for (const p of pp.processors) {
      const r = templateSpecials(p);
      if (r.before.length > 0 || r.after.length > 0) return r;
    }
    return out;
  }
  if (pp.type !== 'TemplateProcessing' || !Array.isArray(pp.single)) return out;
  let seenA = false;
  for (const item of pp.single) {
    if (!isObject(item)) continue;
    if (isObject(item.Sequence)) {
      seenA = true;
    } else if (isObject(item.SpecialToken) && typeof item.SpecialToken.id === 'string') {
      (seenA ? out.after : out.before).push(item.SpecialToken.id);
    }
  }
  return out;
}

export class TextTokenizer {
  /** Where the tokenizer came from (file path or "tokenizer.json object"); used in error messages. */
  readonly source: string;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly padId: number;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly unkToken: string | null;
  /**
   * Whether transformers' tokenizer(text) puts BOS in front: the post_processor's template starts with the BOS token
   * (transformers writes add_bos_token there). LLaVA's tokenizer_image_token keeps that BOS and adds none of its own,
   * so the conversation functions follow this. A tokenizer.json without a post_processor (vwlmm's word-level ones):
   * true when there is a BOS token.
   */
  readonly addsBos: boolean;
  /** Largest token id + 1 (model vocabulary plus added tokens; LLaMA: 32000). */
  readonly vocabSize: number;
  /** Ids dropped by decode({ skipSpecial: true }). */
  readonly specialIds: ReadonlySet<number>;
  private readonly tok: Tokenizer;
  private readonly made: { source: string | object; options: TextTokenizerOptions };

  /**
   * From a tokenizer.json path (or a directory holding tokenizer.json; a tokenizer_config.json and a
   * special_tokens_map.json beside it are read when present) or from the parsed tokenizer.json object.
   */
  constructor(source: string | object, options: TextTokenizerOptions = {}) {
    // a misspelt option (modelMaxLenght, a transformers key) is refused, not ignored
    options = checkedOptions('TextTokenizer', options, TOKENIZER_KEYS);
    this.made = { source, options: { ...options } };
    let json: unknown;
    let config: TokenizerConfigObject = {};
    let where: string;
    if (typeof source === 'string') {
      let file = source;
      try {
        if (fs.statSync(file).isDirectory()) file = path.join(file, 'tokenizer.json');
      } catch {
        // reported by readJson below
      }
      where = options.source ?? file;
      json = readJson(file, 'tokenizer file');
      if (options.config === undefined) {
        const dir = path.dirname(file);
        for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
          const f = path.join(dir, name);
          if (!fs.existsSync(f)) continue;
          const c = readJson(f, name);
          if (!isObject(c)) throw new Error(`TextTokenizer: ${f} must hold a JSON object`);
          config = { ...config, ...c }; // tokenizer_config.json wins over special_tokens_map.json
        }
      }
    } else {
      where = options.source ?? 'tokenizer.json object';
      json = source;
    }
    if (options.config) config = { ...options.config };
    this.source = where;

    if (!isObject(json)) throw new Error(`TextTokenizer: ${where}: a tokenizer.json must be a JSON object`);
    const model = json.model;
    if (!isObject(model)) throw new Error(`TextTokenizer: ${where}: tokenizer.json has no "model" object`);
    const type = model.type;
    if (typeof type !== 'string' || !SUPPORTED_MODELS.includes(type)) {
      throw new Error(
        `TextTokenizer: ${where}: unsupported tokenizer model type ${JSON.stringify(type)} (supported: ${SUPPORTED_MODELS.join(', ')})`,
      );
    }
    if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
      throw new Error(`TextTokenizer: ${where}: "added_tokens" must be an array`);
    }
    // the layout tokenizers.js reads, checked here: its own errors ("number 1 is not iterable") name no field
    const vocab = model.vocab;
    if (type === 'Unigram' ? !(Array.isArray(vocab) && vocab.every((e) => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number')) : !isObject(vocab))
      throw new Error(`TextTokenizer: ${where}: model.vocab of a ${type} model must be ${type === 'Unigram' ? 'an array of [piece, score] pairs' : 'an object of token -> id'}, got ${Array.isArray(vocab) ? 'an array' : JSON.stringify(vocab)?.slice(0, 40) ?? String(vocab)}`);
    if (type === 'BPE' && model.merges !== undefined && !Array.isArray(model.merges)) throw new Error(`TextTokenizer: ${where}: model.merges of a BPE model must be an array`);
    ((json.added_tokens ?? []) as unknown[]).forEach((a, i) => {
      const t = a as JsonObject;
      if (!isObject(t) || !Number.isInteger(t.id) || (t.id as number) < 0 || typeof t.content !== 'string')
        throw new Error(`TextTokenizer: ${where}: added_tokens[${i}] must be an object with an integer id >= 0 and a string content, got ${JSON.stringify(a)?.slice(0, 60)}`);
    });

    const addedTokens = (json.added_tokens ?? []) as JsonObject[];
    const vocabHas = (t: string): boolean => {
      if (addedTokens.some((a) => a.content === t)) return true;
      const v = model.vocab;
      if (Array.isArray(v)) return v.some((e) => Array.isArray(e) && e[0] === t);
      return isObject(v) && Object.prototype.hasOwnProperty.call(v, t);
    };
    const specials = templateSpecials(json.post_processor);
    const pick = (...candidates: Array<string | null | undefined>): string | null => {
      for (const c of candidates) if (typeof c === 'string' && c.length > 0) return c;
      return null;
    };
    let modelUnk: string | null = tokenContent(model.unk_token);
    if (modelUnk === null && type === 'Unigram' && typeof model.unk_id === 'number' && Array.isArray(model.vocab)) {
      const e = model.vocab[model.unk_id];
      if (Array.isArray(e) && typeof e[0] === 'string') modelUnk = e[0];
    }
    const bosToken = pick(options.bosToken, tokenContent(config.bos_token), specials.before[0], vocabHas('<s>') ? '<s>' : null);
    const eosToken = pick(options.eosToken, tokenContent(config.eos_token), specials.after[0], vocabHas('</s>') ? '</s>' : null);
    const unkToken = pick(options.unkToken, tokenContent(config.unk_token), modelUnk, vocabHas('<unk>') ? '<unk>' : null);
    const padToken = pick(options.padToken, unkToken, tokenContent(config.pad_token));

    // tokenizers.js wants every component key present (null when absent) and an added_tokens array; its
    // config supplies the special tokens (WordLevel models run as its vocabulary-only "Legacy" model).
    const tjson: JsonObject = {
      normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json, added_tokens: addedTokens,
    };
    const tconfig: JsonObject = { ...config };
    for (const [k, v] of [['bos_token', bosToken], ['eos_token', eosToken], ['unk_token', unkToken], ['pad_token', padToken]] as const) {
      if (v !== null) tconfig[k] = v;
      else delete tconfig[k];
    }
    if (Array.isArray(config.additional_special_tokens)) {
      tconfig.additional_special_tokens = config.additional_special_tokens.map(tokenContent).filter((t): t is string => t !== null);
    }
    try {
      this.tok = new Tokenizer(tjson, tconfig);
    } catch (e) {
      throw new Error(`TextTokenizer: ${where}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    useExactByteFallback(this.tok.decoder);
    if (this.tok.model instanceof BPE) {
      // the model step as Rust's BPE runs it (src/data/bpe.ts says where the JavaScript one differs)
      let bpe: RustBpe;
      try {
        bpe = new RustBpe(model);
      } catch (e) {
        throw new Error(`TextTokenizer: ${where}: ${(e as Error).message}`);
      }
      (this.tok.model as unknown as { _call: (words: string[]) => string[] })._call = (words) => bpe.tokenize(words);
    }

    const idOf = (name: string, token: string | null): number | null => {
      if (token === null) return null;
      const id = this.tok.token_to_id(token);
      if (id === undefined) throw new Error(`TextTokenizer: ${where}: ${name} ${JSON.stringify(token)} is not in the vocabulary`);
      return id;
    };
    this.bosToken = bosToken;
    this.eosToken = eosToken;
    this.unkToken = unkToken;
    this.bosId = idOf('bos_token', bosToken);
    this.eosId = idOf('eos_token', eosToken);
    this.unkId = idOf('unk_token', unkToken);
    this.addsBos = bosToken !== null && (json.post_processor === null || json.post_processor === undefined || specials.before[0] === bosToken);
    this.padId = padToken !== null ? (idOf('pad_token', padToken) as number) : (this.eosId ?? 0);

    let maxId = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const special = new Set<number>();
    for (const id of [this.bosId, this.eosId, this.unkId, this.padId]) if (id !== null) special.add(id);
    for (const a of addedTokens) if (a.special === true && typeof a.id === 'number') special.add(a.id);
    for (const t of (tconfig.additional_special_tokens as string[] | undefined) ?? []) {
      const id = this.tok.token_to_id(t);
      if (id !== undefined) special.add(id);
    }
    this.specialIds = special;
  }

  /** Loads tokenizer.json from a file (or a directory holding one). */
  static fromFile(file: string, options: TextTokenizerOptions = {}): TextTokenizer {
    return new TextTokenizer(file, options);
  }

  /**
   * What the tokenizer was made from (its constructor's arguments: a path is read again), for the same tokenizer on
   * another thread: new TextTokenizer(spec.source, spec.options).
   */
  spec(): { source: string | object; options: TextTokenizerOptions } {
    return { source: this.made.source, options: { ...this.made.options } };
  }

  /** Ids of `text` (no special tokens added, except BOS in front with { addBos: true }). */
  encode(text: string, options?: EncodeOptions): number[] {
    if (typeof text !== 'string') throw new TypeError(`TextTokenizer.encode: expected a string but received ${typeof text}`);
    // called per record: the options are checked only when some are given
    if (options !== undefined) checkedOptions('TextTokenizer.encode', options, ENCODE_KEYS);
    const ids: number[] = [];
    if (options?.addBos) {
      if (this.bosId === null) throw new Error(`TextTokenizer.encode: ${this.source} has no BOS token (addBos: true)`);
      ids.push(this.bosId);
    }
    if (text.length === 0) return ids;
    const memo = text.length <= MEMO_MAX_CHARS;
    let known = memo ? this.memo.get(text) : undefined;
    if (known === undefined) {
      known = this.encodeText(text);
      if (memo) {
        if (this.memo.size >= MEMO_ENTRIES) this.memo.delete(this.memo.keys().next().value as string); // the oldest
        this.memo.set(text, known);
      }
    }
    for (let i = 0; i < known.length; i++) ids.push(known[i]);
    return ids;
  }

  /**
   * The encodings of short texts, oldest first. A conversation's tokenisation encodes the same turns again and again
   * (tokenizeConversation measures each turn's boundary, and a dataset repeats its questions and prompts);
   * tokenizers' JavaScript encode took 10 s of the demo's start on the 2-core VM (benchmarks/RESULTS.md). A text's ids
   * depend on the text alone, so a hit gives the same ids. Long texts (a whole prompt) are rarely repeated: not kept.
   */
  private readonly memo = new Map<string, Int32Array>();

  private encodeText(text: string): Int32Array {
    const enc = this.tok.encode(text, { add_special_tokens: false });
    const out = new Int32Array(enc.ids.length);
    for (let i = 0; i < enc.ids.length; i++) {
      const id = enc.ids[i];
      if (id === undefined || id === null || !Number.isInteger(id)) {
        throw new Error(`TextTokenizer.encode: ${this.source}: token ${JSON.stringify(enc.tokens[i])} is not in the vocabulary and there is no unk token`);
      }
      out[i] = id;
    }
    return out;
  }

  /**
   * Text of `ids`. Negative ids (the image placeholder -200, the ignore index -100) are skipped, and so are ids the
   * vocabulary does not hold (a model's vocabulary may be padded past the tokenizer's), as transformers' fast
   * tokenizers skip them.
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    options = checkedOptions('TextTokenizer.decode', options, DECODE_KEYS);
    const skipSpecial = options.skipSpecial ?? true;
    const keep: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id)) {
        // a string id ('3', from a split line) is named as a string, not shown as if it were the number 3
        if (typeof id !== 'number') throw new TypeError(`TextTokenizer.decode: ids[${i}] is ${typeof id === 'string' ? `a string (${describe(id).replace(/ \(string\)$/, '')})` : describe(id)}, expected an integer token id`);
        throw new TypeError(`TextTokenizer.decode: ids[${i}] = ${id} is not an integer`);
      }
      if (id < 0 || id >= this.vocabSize || this.tok.id_to_token(id) == null) continue;
      if (skipSpecial && this.specialIds.has(id)) continue;
      keep.push(id);
    }
    if (keep.length === 0) return '';
    return this.tok.decode(keep, { skip_special_tokens: skipSpecial });
  }

  /** The token string of `id`, or null when the id is not in the vocabulary. */
  idToToken(id: number): string | null {
    return this.tok.id_to_token(id) ?? null;
  }

  /** The id of token string `token`, or null when it is not in the vocabulary. */
  tokenToId(token: string): number | null {
    return this.tok.token_to_id(token) ?? null;
  }

  /** The token strings of `text` (no special tokens added); for inspection and tests. */
  tokenize(text: string): string[] {
    if (text.length === 0) return [];
    return this.tok.encode(text, { add_special_tokens: false }).tokens;
  }
}
