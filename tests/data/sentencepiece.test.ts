// A SentencePiece tokenizer.model converted to tokenizer.json (src/data/sentencepiece.ts) against what transformers'
// LlamaTokenizer makes of it (scripts/make_sentencepiece_fixture.py, transformers 5.18): the same JSON field for field
// (vocabulary, merges in order, pre-tokenizer, post-processor, decoder, added tokens), and the same ids token for token
// on Vicuna-template prompts with the <image> placeholder, digits, accents, CJK, emoji, whitespace and inline
// specials, in both legacy modes; broken model files are refused with a message.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { llamaTokenizerJson, readSentencePieceModel, tokenizerJsonFromSentencePiece } from '../../src/data/sentencepiece';
import { TextTokenizer } from '../../src/data/tokenizer';
import { tempDirs } from '../support/tmp';

const dir = path.join(__dirname, '..', 'fixtures', 'sentencepiece');
const tmp = tempDirs('spm');
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<string, { text: string; ids: number[] }[]>;

describe('SentencePiece tokenizer.model', () => {
  for (const variant of ['legacy', 'non_legacy']) {
    it(`${variant}: transformers' tokenizer.json, and its ids token for token`, () => {
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, variant, 'tokenizer_config.json'), 'utf8'));
      const ours = llamaTokenizerJson(readSentencePieceModel(path.join(dir, 'tokenizer.model')), { legacy: cfg.legacy, addBosToken: cfg.add_bos_token, addEosToken: cfg.add_eos_token });
      const theirs = JSON.parse(fs.readFileSync(path.join(dir, variant, 'tokenizer.json'), 'utf8'));
      expect(JSON.parse(JSON.stringify(ours))).toEqual(theirs);
      // through the directory path (tokenizer.model + tokenizer_config.json) and the tokenizer the pipeline uses
      const d = tmp();
      fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(d, 'tokenizer.model'));
      fs.copyFileSync(path.join(dir, variant, 'tokenizer_config.json'), path.join(d, 'tokenizer_config.json'));
      const tok = new TextTokenizer(tokenizerJsonFromSentencePiece(d));
      for (const { text, ids } of expected[variant]) expect(tok.encode(text, { addBos: true }), JSON.stringify(text)).toEqual(ids);
    });
  }

  it('broken or foreign model files are refused with a message', () => {
    const d = tmp();
    const good = fs.readFileSync(path.join(dir, 'tokenizer.model'));
    const cut = path.join(d, 'cut.model');
    fs.writeFileSync(cut, good.subarray(0, Math.floor(good.length / 2)));
    expect(() => readSentencePieceModel(cut)).toThrow(/sentencepiece: .*cut.model: (truncated|a protobuf field runs past|malformed)/);
    const text = path.join(d, 'text.model');
    fs.writeFileSync(text, 'not a model\n');
    expect(() => readSentencePieceModel(text)).toThrow(/sentencepiece: .*text.model/);
    expect(() => readSentencePieceModel(path.join(d, 'none.model'))).toThrow(/cannot read .*none.model/);
    const unigram = { ...readSentencePieceModel(path.join(dir, 'tokenizer.model')), modelType: 1 };
    expect(() => llamaTokenizerJson(unigram)).toThrow(/is a unigram model; LLaMA tokenizers are BPE/);
  });
});
