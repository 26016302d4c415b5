// Hand-made tokenizer.json objects (WordLevel and LLaMA-style BPE) shared by the tokenizer and conversation tests, and
// the check of a converted tokenizer.model against transformers' tokenizer.json.
import * as fs from 'fs';
import { expect } from 'vitest';
import { tokenizerJsonFromSentencePiece } from '../../src/data/sentencepiece';
import { TextTokenizer } from '../../src/data/tokenizer';

export const SPECIALS = ['<unk>', '<s>', '</s>'];

export const addedTokens = (names = SPECIALS) =>
  names.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));

export const bosTemplate = (bos = '<s>', id = 1) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
  pair: [],
  special_tokens: { [bos]: { id: bos, ids: [id], tokens: [bos] } },
});

/** WordLevel: lower-casing, whitespace + punctuation split (\w+|[^\w\s]+), <unk>/<s>/</s>. */
export function wordLevelJson(words: string[]): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (const w of [...SPECIALS, ...words]) if (!(w in vocab)) vocab[w] = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: bosTemplate(),
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  };
}

/**
 * A LLaMA-style BPE: normalizer Prepend("▁") + Replace(" " -> "▁"), no pre-tokenizer, byte fallback; each
 * word gets a left-to-right merge chain. `first` merges are ranked before all others.
 */
export function llamaBpeJson(words: string[], first: [string, string][] = []): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (t: string) => {
    if (!(t in vocab)) vocab[t] = Object.keys(vocab).length;
  };
  SPECIALS.forEach(add);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const merges: [string, string][] = [];
  for (const [a, b] of first) {
    add(a);
    add(b);
    add(a + b);
    merges.push([a, b]);
  }
  for (const w of words) {
    const cs = Array.from(w);
    cs.forEach(add);
    let cur = cs[0];
    for (let i = 1; i < cs.length; i++) {
      if (!merges.some((m) => m[0] === cur && m[1] === cs[i])) merges.push([cur, cs[i]]);
      cur += cs[i];
      add(cur);
    }
  }
  return {
    version: '1.0',
    added_tokens: addedTokens(),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: bosTemplate(),
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges },
  };
}

/**
 * The tokenizer.json vwlmm converts from the tokenizer.model in `modelDir` (tokenizerJsonFromSentencePiece), checked
 * equal to the one transformers wrote (`theirs`: added tokens first, for a readable difference), and opened.
 */
export function convertedLikeTransformers(modelDir: string, theirs: string): TextTokenizer {
  const file = tokenizerJsonFromSentencePiece(modelDir);
  const ours = JSON.parse(fs.readFileSync(file, 'utf8')), want = JSON.parse(fs.readFileSync(theirs, 'utf8'));
  expect(ours.added_tokens).toEqual(want.added_tokens);
  expect(ours).toEqual(want);
  return new TextTokenizer(file);
}
