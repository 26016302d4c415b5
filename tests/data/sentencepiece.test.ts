// A SentencePiece tokenizer.model converted to tokenizer.json (src/data/sentencepiece.ts) against what transformers'
// LlamaTokenizer makes of it (scripts/make_sentencepiece_fixture.py, transformers 5.18): the same JSON field for field
// (vocabulary, merges in order, pre-tokenizer, post-processor, decoder, added tokens), and the same ids token for token
// on Vicuna-template prompts with the <image> placeholder, digits, accents, CJK, emoji, whitespace and inline
// specials, in both legacy modes; broken model files are refused with a message. A Mistral-like model (control pieces
// [INST] / [/INST], a user-defined <image>; tests/fixtures/sentencepiece_mistral) with configs that name other tokens:
// the tokenizer the pipeline opens from the converted file has the config's tokens, as transformers' has.
import * as fs from 'fs';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { llamaTokenizerJson, readSentencePieceModel, tokenizerJsonFromSentencePiece } from '../../src/data/sentencepiece';
import { TextTokenizer } from '../../src/data/tokenizer';
import { tokenizeConversation, tokenizerImageToken } from '../../src/data/conversation';
import { tempDirs } from '../support/tmp';
import { convertedLikeTransformers } from '../support/tokenizer_json';

const dir = path.join(__dirname, '..', 'fixtures', 'sentencepiece');
const tmp = tempDirs('spm');
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<string, { text: string; ids: number[] }[]>;
const mdir = path.join(__dirname, '..', 'fixtures', 'sentencepiece_mistral');
interface MistralExpected {
  len: number; bos_id: number; eos_id: number; unk_id: number; adds_bos: boolean;
  probes: { text: string; ids: number[]; decode: string; decode_skip: string }[];
  byte_runs: { ids: number[]; decode: string }[];
}
const mexpected = JSON.parse(fs.readFileSync(path.join(mdir, 'expected.json'), 'utf8')) as Record<string, MistralExpected>;

// every conversion of this file goes to a cache of its own
const savedCache = process.env.XDG_CACHE_HOME;
beforeAll(() => {
  process.env.XDG_CACHE_HOME = tmp();
});
afterAll(() => {
  if (savedCache === undefined) delete process.env.XDG_CACHE_HOME;
  else process.env.XDG_CACHE_HOME = savedCache;
});

/** A checkpoint-like directory: the Mistral-like tokenizer.model and the variant's tokenizer_config.json. */
function mistralDir(variant: string): string {
  const d = tmp();
  fs.copyFileSync(path.join(mdir, 'tokenizer.model'), path.join(d, 'tokenizer.model'));
  fs.copyFileSync(path.join(mdir, variant, 'tokenizer_config.json'), path.join(d, 'tokenizer_config.json'));
  return d;
}

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
    // a piece that is not UTF-8: the file and the piece's index
    const piece = (bytes: number[]) => Buffer.from([0x0a, bytes.length + 2, 0x0a, bytes.length, ...bytes]);
    const badUtf8 = path.join(d, 'bad-utf8.model');
    fs.writeFileSync(badUtf8, Buffer.concat([piece([0x61]), piece([0x62]), piece([0xff, 0xfe])]));
    expect(() => readSentencePieceModel(badUtf8)).toThrow(/^sentencepiece: .*bad-utf8\.model: piece 2 is not valid UTF-8 \(bytes fffe/);
    const unigram = { ...readSentencePieceModel(path.join(dir, 'tokenizer.model')), modelType: 1 };
    expect(() => llamaTokenizerJson(unigram)).toThrow(/is a unigram model; LLaMA tokenizers are BPE/);
    // a special token that is not a piece: where its name came from
    const noUnk = { ...readSentencePieceModel(path.join(dir, 'tokenizer.model')), pieces: [{ piece: 'a', score: 0, type: 1 }] };
    expect(() => llamaTokenizerJson(noUnk)).toThrow(/has no piece '<unk>' \(LlamaTokenizer's default unk_token; no tokenizer_config\.json names one\)/);
    const m = path.join(d, 'named');
    fs.mkdirSync(m);
    fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(m, 'tokenizer.model'));
    fs.writeFileSync(path.join(m, 'tokenizer_config.json'), '{"eos_token": "<nope>"}');
    expect(() => tokenizerJsonFromSentencePiece(m)).toThrow(/has no piece '<nope>' \(the eos_token tokenizer_config\.json names\)/);
  });
});

describe('SentencePiece tokenizer.model with a tokenizer_config.json', () => {
  for (const variant of Object.keys(mexpected)) {
    it(`${variant}: the tokenizer opened from the converted file has the config's tokens`, () => {
      const want = mexpected[variant];
      const tok = new TextTokenizer(tokenizerJsonFromSentencePiece(mistralDir(variant)));
      // eos_inst: the config's eos_token is [/INST] (generation stops there), not the built-in </s>
      expect([tok.bosId, tok.eosId, tok.unkId]).toEqual([want.bos_id, want.eos_id, want.unk_id]);
      expect(tok.vocabSize).toBe(want.len);
    });
  }

  for (const variant of Object.keys(mexpected)) {
    it(`${variant}: transformers' tokenizer.json (added tokens: the config's extra ones, else the control / user-defined pieces), ids and decodes`, () => {
      const want = mexpected[variant];
      const tok = convertedLikeTransformers(mistralDir(variant), path.join(mdir, variant, 'tokenizer.json'));
      for (const p of want.probes) {
        expect(tok.encode(p.text, { addBos: tok.addsBos }), JSON.stringify(p.text)).toEqual(p.ids);
        expect(tok.decode(p.ids, { skipSpecial: false }), JSON.stringify(p.text)).toBe(p.decode);
        expect(tok.decode(p.ids), JSON.stringify(p.text)).toBe(p.decode_skip);
      }
    });
  }

  it("byte tokens decode as transformers' ByteFallback: U+FEFF kept anywhere, one U+FFFD per byte of a run that is not UTF-8", () => {
    const tok = new TextTokenizer(path.join(mdir, 'base'));
    for (const { ids, decode } of mexpected.base.byte_runs) expect(tok.decode(ids), JSON.stringify(ids)).toBe(decode);
    for (const text of ['x\ufeffy', '\ufeff\ufeff', '\ufeffa']) expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it("ids past the vocabulary are skipped in decode, as transformers' fast tokenizers skip them (this one threw inside its decoder)", () => {
    const tok = new TextTokenizer(path.join(mdir, 'base'));
    const ids = tok.encode('hello world');
    for (const extra of [tok.vocabSize, tok.vocabSize + 63, 1e9]) {
      const mixed = [...ids.slice(0, 1), extra, ...ids.slice(1)];
      expect(tok.decode(mixed), String(extra)).toBe(tok.decode(ids));
    }
    expect(tok.decode([tok.vocabSize])).toBe('');
  });

  it("the converted folder holds the config's copy, and a changed config is another conversion", () => {
    const d = mistralDir('eos_inst');
    const file = tokenizerJsonFromSentencePiece(d);
    expect(fs.readFileSync(path.join(path.dirname(file), 'tokenizer_config.json'), 'utf8')).toBe(fs.readFileSync(path.join(d, 'tokenizer_config.json'), 'utf8'));
    expect(tokenizerJsonFromSentencePiece(d)).toBe(file);
    fs.copyFileSync(path.join(mdir, 'base', 'tokenizer_config.json'), path.join(d, 'tokenizer_config.json'));
    const other = tokenizerJsonFromSentencePiece(d);
    expect(other).not.toBe(file);
    expect(new TextTokenizer(other).eosId).toBe(2);
    // a cache entry that lost its config copy is converted again
    fs.rmSync(path.join(path.dirname(file), 'tokenizer_config.json'));
    fs.copyFileSync(path.join(mdir, 'eos_inst', 'tokenizer_config.json'), path.join(d, 'tokenizer_config.json'));
    expect(tokenizerJsonFromSentencePiece(d)).toBe(file);
    expect(new TextTokenizer(file).eosToken).toBe('[/INST]');
  });

  it('add_bos_token false: no BOS in front (tokenizer.model, and the tokenizer.json transformers saved), as LLaVA then has none', () => {
    for (const variant of ['base', 'no_bos']) {
      const want = mexpected[variant];
      const hi = want.probes.find((p) => p.text === 'hi')!.ids;
      for (const tok of [new TextTokenizer(tokenizerJsonFromSentencePiece(mistralDir(variant))), new TextTokenizer(path.join(mdir, variant))]) {
        expect(tok.addsBos, variant).toBe(want.adds_bos);
        expect(tokenizerImageToken('hi', tok), variant).toEqual(hi);
        const { inputIds, labels } = tokenizeConversation([{ from: 'human', value: '<image>\nhi' }, { from: 'gpt', value: 'hi' }], tok, 'mistral_instruct');
        expect(inputIds[0] === want.bos_id, variant).toBe(want.adds_bos);
        expect(labels.slice(-3), variant).toEqual(inputIds.slice(-3)); // the reply still labelled where it is
      }
    }
  });
});
