// A SentencePiece tokenizer.model (LLaMA / Vicuna / Mistral; liuhaotian/llava-v1.5-7b ships only this) turned into the
// tokenizer.json transformers' LlamaTokenizer builds from it (transformers 5.18): BPE over the pieces in id order with
// byte fallback, merges generated from the vocabulary as transformers' generate_merges does, a Metaspace
// pre-tokenizer ("first" prepend without `legacy`, "always" with it), the control / user-defined pieces as added
// tokens, BOS / EOS added as tokenizer_config.json says. Checked token for token and field for field against
// transformers (tests/data/sentencepiece.test.ts, fixture by scripts/make_sentencepiece_fixture.py).
import { createHash } from 'crypto';
import * as fs from 'fs';
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
    buf = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`sentencepiece: cannot read ${file}: ${(e as Error).message}`);
  }
  const model: SentencePieceModel = { pieces: [], modelType: 1, byteFallback: false };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  for (const [field, wire, value] of fields(buf, file)) {
    if (field === 1 && wire === 2) {
      const sp: SentencePiece = { piece: '', score: 0, type: 1 };
      for (const [f, w, v] of fields(value as Uint8Array, file)) {
        if (f === 1 && w === 2) sp.piece = utf8.decode(v as Uint8Array);
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

export interface LlamaTokenizerOptions {
  /** tokenizer_config.json's `legacy` (transformers' default: false). */
  legacy?: boolean;
  addPrefixSpace?: boolean;
  addBosToken?: boolean;
  addEosToken?: boolean;
  unkToken?: string;
  bosToken?: string;
  eosToken?: string;
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
  const idOf = (t: string) => {
    const id = vocab.get(t);
    if (id === undefined) throw new Error(`sentencepiece: ${file} has no piece '${t}' (tokenizer_config.json names it)`);
    return id;
  };
  const added = new Map<number, { content: string; special: boolean }>();
  model.pieces.forEach((p, i) => {
    if (p.type === 3 || p.type === 4) added.set(i, { content: p.piece, special: p.type === 3 });
  });
  for (const t of [unk, bos, eos]) added.set(idOf(t), { content: t, special: true });
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
  if (addBos) specials[bos] = { id: bos, ids: [idOf(bos)], tokens: [bos] };
  if (addEos) specials[eos] = { id: eos, ids: [idOf(eos)], tokens: [eos] };
  const decoders: unknown[] = [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }];
  if (addPrefixSpace) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [...added].sort((a, b) => a[0] - b[0]).map(([id, t]) => ({ id, content: t.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: t.special })),
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

/**
 * The tokenizer.json of a directory that has only a SentencePiece tokenizer.model (and maybe tokenizer_config.json):
 * converted once and kept in the OS temp folder (keyed by the files' hash: the checkpoint directory is not written).
 */
export function tokenizerJsonFromSentencePiece(dir: string): string {
  const modelFile = path.join(dir, 'tokenizer.model'), cfgFile = path.join(dir, 'tokenizer_config.json');
  const cfgText = fs.existsSync(cfgFile) ? fs.readFileSync(cfgFile, 'utf8') : '{}';
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(cfgText) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`sentencepiece: ${cfgFile} is not valid JSON (${(e as Error).message})`);
  }
  const tokenName = (v: unknown, d: string) => (typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : d);
  const bool = (k: string): boolean | undefined => (typeof cfg[k] === 'boolean' ? (cfg[k] as boolean) : undefined);
  const key = createHash('sha256').update(fs.readFileSync(modelFile)).update(cfgText).digest('hex').slice(0, 16);
  const out = path.join(os.tmpdir(), 'vwlmm-tokenizers', `${key}.json`);
  if (!fs.existsSync(out)) {
    const json = llamaTokenizerJson(readSentencePieceModel(modelFile), {
      legacy: bool('legacy'), addPrefixSpace: bool('add_prefix_space'), addBosToken: bool('add_bos_token'), addEosToken: bool('add_eos_token'),
      unkToken: tokenName(cfg.unk_token, '<unk>'), bosToken: tokenName(cfg.bos_token, '<s>'), eosToken: tokenName(cfg.eos_token, '</s>'),
    }, modelFile);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(json));
    fs.renameSync(tmp, out);
  }
  return out;
}
