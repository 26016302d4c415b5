// A word-level tokenizer in the Hugging Face tokenizer.json format, for small closed vocabularies such as the
// Sort-of-CLEVR demo's: the pre-tokenisation (BertPreTokenizer's), the tokenizer.json object and its writer. The
// files it writes load in TextTokenizer (./tokenizer.ts) and in transformers' PreTrainedTokenizerFast.
import * as fs from 'fs';
import * as path from 'path';

// The punctuation class of the Hugging Face BertPreTokenizer (as in @huggingface/tokenizers): Unicode
// punctuation plus every ASCII symbol ! " # $ % & ' ( ) * + , - . / : ; < = > ? @ [ \ ] ^ _ ` { | } ~.
const PUNCT = '\\p{P}\\u0021-\\u002F\\u003A-\\u0040\\u005B-\\u0060\\u007B-\\u007E';
const PRE_TOKEN_RE = new RegExp(`[^\\s${PUNCT}]+|[${PUNCT}]`, 'gu');

/**
 * The word-level pre-tokenisation of the tokenizer written by writeWordLevelTokenizer: lower-case, split on
 * whitespace, and isolate EVERY punctuation character as its own token (BertPreTokenizer):
 *   "the user's questions." -> the user ' s questions .
 *   "objects?"              -> objects ?
 *   "[/INST]"               -> [ / inst ]
 * ("<image>" would become < image >: split prompts on "<image>" before tokenising, as LLaVA does.)
 */
export function wordLevelPreTokenize(text: string): string[] {
  return text.toLowerCase().match(PRE_TOKEN_RE) ?? [];
}

/** Normal form of a text under the word-level tokenizer: its pre-tokens joined by single spaces. */
export function wordLevelNormalize(text: string): string {
  return wordLevelPreTokenize(text).join(' ');
}

export const WORD_LEVEL_SPECIAL_TOKENS = ['<unk>', '<s>', '</s>'] as const;

/**
 * The tokenizer_config.json contents that @huggingface/tokenizers needs next to the tokenizer.json:
 * its WordLevel model takes the unknown token from this config (without it unknown words encode to
 * `undefined`), and its decode() cleans up spaces before punctuation unless clean_up_tokenization_spaces
 * is false.
 */
export const WORD_LEVEL_TOKENIZER_CONFIG = {
  tokenizer_class: 'PreTrainedTokenizerFast',
  unk_token: '<unk>',
  bos_token: '<s>',
  eos_token: '</s>',
  pad_token: '<unk>',
  add_bos_token: false,
  add_eos_token: false,
  clean_up_tokenization_spaces: false,
  model_max_length: 2048,
} as const;

export interface WordLevelTokenizerOptions {
  /** Add a TemplateProcessing post-processor that prepends <s> (as the LLaMA tokenizer does). Default false. */
  addBos?: boolean;
  /** Also write tokenizer_config.json (WORD_LEVEL_TOKENIZER_CONFIG) in the same folder. Default true. */
  writeConfig?: boolean;
}

/** The tokenizer.json object (Hugging Face format version 1.0) for a word list. */
export function wordLevelTokenizerJson(words: Iterable<string>, opts: { addBos?: boolean } = {}): Record<string, unknown> {
  const specials = new Set<string>(WORD_LEVEL_SPECIAL_TOKENS);
  const uniq = new Set<string>();
  for (const raw of words) {
    if (typeof raw !== 'string') throw new TypeError(`wordLevelTokenizerJson: words must be strings, got ${typeof raw}`);
    const w = raw.toLowerCase();
    if (specials.has(w)) continue;
    const pieces = wordLevelPreTokenize(w);
    if (pieces.length !== 1 || pieces[0] !== w) {
      throw new RangeError(`wordLevelTokenizerJson: '${raw}' is not a single pre-token (it splits into [${pieces.map((p) => `'${p}'`).join(', ')}]); it could never be produced`);
    }
    uniq.add(w);
  }
  const vocab: Record<string, number> = {};
  WORD_LEVEL_SPECIAL_TOKENS.forEach((t, i) => { vocab[t] = i; });
  let id = WORD_LEVEL_SPECIAL_TOKENS.length;
  for (const w of [...uniq].sort()) vocab[w] = id++;
  const added_tokens = WORD_LEVEL_SPECIAL_TOKENS.map((content, i) => ({
    id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const post_processor = opts.addBos
    ? {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    }
    : null;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens,
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  };
}

/**
 * Write a Hugging Face tokenizer.json with a WordLevel model: <unk> = 0, <s> = 1, </s> = 2, then the
 * sorted (lower-cased, unique) words. Normalizer Lowercase; pre-tokenizer BertPreTokenizer (whitespace
 * split, every punctuation character isolated, see wordLevelPreTokenize); decoder WordPiece with
 * cleanup off (tokens joined by single spaces). Also writes tokenizer_config.json beside it unless
 * writeConfig is false. Returns the vocabulary size.
 */
export function writeWordLevelTokenizer(file: string, words: Iterable<string>, opts: WordLevelTokenizerOptions = {}): number {
  const json = wordLevelTokenizerJson(words, opts);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
  if (opts.writeConfig ?? true) {
    const cfg = { ...WORD_LEVEL_TOKENIZER_CONFIG, add_bos_token: !!opts.addBos };
    fs.writeFileSync(path.join(path.dirname(file), 'tokenizer_config.json'), JSON.stringify(cfg, null, 2) + '\n');
  }
  return Object.keys((json.model as { vocab: Record<string, number> }).vocab).length;
}
