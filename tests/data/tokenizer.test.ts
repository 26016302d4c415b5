// TextTokenizer over hand-made tokenizer.json fixtures (WordLevel, LLaMA-style BPE, Unigram).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TextTokenizer } from '../../src/data/tokenizer';
import { addedTokens, llamaBpeJson, wordLevelJson } from '../support/tokenizer_json';
import { rngFor } from '../support/random';

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-tok-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function writeDir(name: string, files: Record<string, unknown>): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  for (const [f, c] of Object.entries(files)) fs.writeFileSync(path.join(d, f), typeof c === 'string' ? c : JSON.stringify(c));
  return d;
}

const WORDS = ['a', 'cat', 'is', 'on', 'the', 'mat', '.', '?', 'what', ',', 'hello', 'world'];

describe('TextTokenizer (WordLevel)', () => {
  it('loads from a file path and from its directory, and encodes lower-cased words and punctuation', () => {
    const d = writeDir('wl', { 'tokenizer.json': wordLevelJson(WORDS) });
    for (const src of [path.join(d, 'tokenizer.json'), d]) {
      const tok = TextTokenizer.fromFile(src);
      expect(tok.source).toBe(path.join(d, 'tokenizer.json'));
      expect(tok.encode('A cat is on the MAT.')).toEqual([3, 4, 5, 6, 7, 8, 9]);
      expect(tok.tokenize('What, a cat?')).toEqual(['what', ',', 'a', 'cat', '?']);
    }
  });

  it('adds BOS only when asked, maps unknown words to <unk>, and reads </s> in text as the EOS token', () => {
    const tok = new TextTokenizer(wordLevelJson(WORDS));
    expect(tok.encode('a cat')).toEqual([3, 4]);
    expect(tok.encode('a cat', { addBos: true })).toEqual([1, 3, 4]);
    expect(tok.encode('', { addBos: true })).toEqual([1]);
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('a zebra')).toEqual([3, 0]);
    expect(tok.encode('a cat.</s>hello')).toEqual([3, 4, 9, 2, 13]);
  });

  it('reports the special ids (pad = unk as in LLaVA), vocabSize and the id <-> token maps', () => {
    const tok = new TextTokenizer(wordLevelJson(WORDS));
    expect([tok.unkId, tok.bosId, tok.eosId, tok.padId]).toEqual([0, 1, 2, 0]);
    expect([tok.unkToken, tok.bosToken, tok.eosToken]).toEqual(['<unk>', '<s>', '</s>']);
    expect(tok.vocabSize).toBe(3 + WORDS.length);
    expect(tok.idToToken(4)).toBe('cat');
    expect(tok.idToToken(999)).toBeNull();
    expect(tok.tokenToId('mat')).toBe(8);
    expect(tok.tokenToId('zebra')).toBeNull();
  });

  it('decodes, skipping special tokens and negative ids by default', () => {
    const tok = new TextTokenizer(wordLevelJson(WORDS));
    expect(tok.decode([1, 3, 4, 5, 6, 7, 8, 9, 2])).toBe('a cat is on the mat.');
    expect(tok.decode([1, -200, 3, 4, 2], { skipSpecial: false })).toBe('<s> a cat </s>');
    expect(tok.decode([1, 2])).toBe('');
    expect(tok.decode([])).toBe('');
  });

  it('takes BOS/EOS from tokenizer_config.json beside the file (string or AddedToken form)', () => {
    const json = wordLevelJson(WORDS);
    json.added_tokens = addedTokens(['<unk>', '<s>', '</s>', '<bos>', '<eos>']);
    const d = writeDir('wl-config', {
      'tokenizer.json': json,
      'tokenizer_config.json': { bos_token: { content: '<bos>', __type: 'AddedToken' }, eos_token: '<eos>', pad_token: null },
    });
    const tok = TextTokenizer.fromFile(d);
    expect([tok.bosId, tok.eosId, tok.unkId, tok.padId]).toEqual([3, 4, 0, 0]);
    expect(tok.encode('a', { addBos: true })).toEqual([3, tok.tokenToId('a')]);
  });

  it('takes BOS/EOS from the post_processor template, else "<s>"/"</s>" defaults, else none', () => {
    const json = wordLevelJson(WORDS);
    json.added_tokens = addedTokens(['[UNK]', '[BOS]', '[EOS]']);
    (json.model as { vocab: Record<string, number>; unk_token: string }).vocab = Object.fromEntries(
      ['[UNK]', '[BOS]', '[EOS]', ...WORDS].map((w, i) => [w, i]),
    );
    (json.model as { unk_token: string }).unk_token = '[UNK]';
    json.post_processor = {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[BOS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[EOS]', type_id: 0 } }],
      pair: [],
      special_tokens: {},
    };
    const tok = new TextTokenizer(json);
    expect([tok.bosToken, tok.eosToken, tok.unkToken]).toEqual(['[BOS]', '[EOS]', '[UNK]']);
    expect([tok.bosId, tok.eosId, tok.unkId, tok.padId]).toEqual([1, 2, 0, 0]);

    const plain = wordLevelJson(WORDS);
    plain.post_processor = null;
    const t2 = new TextTokenizer(plain);
    expect([t2.bosId, t2.eosId]).toEqual([1, 2]);

    json.post_processor = null;
    const t3 = new TextTokenizer(json);
    expect([t3.bosId, t3.eosId, t3.unkId]).toEqual([null, null, 0]);
    expect(() => t3.encode('a', { addBos: true })).toThrow(/no BOS token/);
  });

  it('accepts explicit special-token overrides and rejects tokens that are not in the vocabulary', () => {
    const tok = new TextTokenizer(wordLevelJson(WORDS), { bosToken: '</s>', padToken: '<s>' });
    expect([tok.bosId, tok.padId]).toEqual([2, 1]);
    expect(() => new TextTokenizer(wordLevelJson(WORDS), { eosToken: '<nope>' })).toThrow(/eos_token "<nope>" is not in the vocabulary/);
  });
});

describe('TextTokenizer.encode remembers short texts', () => {
  it('gives the ids of a fresh tokenisation, every time, in arrays the caller owns (WordLevel and BPE)', () => {
    const rng = rngFor('tokenizer-memo');
    for (const json of [wordLevelJson(WORDS), llamaBpeJson(WORDS.map((w) => `▁${w}`))]) {
      const tok = new TextTokenizer(json);
      // tokens() and tokenToId() go to tokenizers directly: the reference, never from the memo
      const fresh = (t: string) => tok.tokenize(t).map((x) => tok.tokenToId(x) ?? tok.unkId);
      const texts = Array.from({ length: 40 }, (_, k) => {
        const n = k < 30 ? 1 + rng.int(8) : 80 + rng.int(40); // short ones repeat below; long ones are not kept
        return Array.from({ length: n }, () => WORDS[rng.int(WORDS.length)]).join(rng.next() < 0.5 ? ' ' : '');
      });
      for (let k = 0; k < 400; k++) {
        const t = texts[rng.int(texts.length)];
        const ids = tok.encode(t, { addBos: k % 3 === 0 });
        expect(ids).toEqual([...(k % 3 === 0 ? [tok.bosId] : []), ...fresh(t)]);
        ids.push(-7); // the caller's array: the next call is not affected
      }
    }
  });
});

describe('TextTokenizer errors name the source', () => {
  it('missing file', () => {
    const f = path.join(dir, 'nowhere', 'tokenizer.json');
    expect(() => TextTokenizer.fromFile(f)).toThrow(`not found: ${f}`);
  });

  it('invalid JSON in tokenizer.json and in tokenizer_config.json', () => {
    const d = writeDir('bad-json', { 'tokenizer.json': '{"model": ' });
    expect(() => TextTokenizer.fromFile(d)).toThrow(`${path.join(d, 'tokenizer.json')} is not valid JSON`);
    const d2 = writeDir('bad-config', { 'tokenizer.json': wordLevelJson(WORDS), 'tokenizer_config.json': 'nope' });
    expect(() => TextTokenizer.fromFile(d2)).toThrow(`${path.join(d2, 'tokenizer_config.json')} is not valid JSON`);
  });

  it('unsupported or missing model', () => {
    const json = wordLevelJson(WORDS);
    (json.model as { type: string }).type = 'Mystery';
    const d = writeDir('bad-model', { 'tokenizer.json': json });
    const f = path.join(d, 'tokenizer.json');
    expect(() => TextTokenizer.fromFile(f)).toThrow(`${f}: unsupported tokenizer model type "Mystery"`);
    expect(() => new TextTokenizer({ version: '1.0' })).toThrow(/tokenizer.json object: tokenizer.json has no "model"/);
    expect(() => new TextTokenizer([] as unknown as object)).toThrow(/must be a JSON object/);
  });

  it("a model or added tokens not in tokenizers' layout: the field named (not tokenizers.js's 'number 1 is not iterable')", () => {
    const cases: [(j: Record<string, unknown>) => void, string][] = [
      [(j) => ((j.model as Record<string, unknown>).vocab = [1, 2]), 'model.vocab of a WordLevel model must be an object of token -> id, got an array'],
      [(j) => ((j.model as Record<string, unknown>).type = 'Unigram'), 'model.vocab of a Unigram model must be an array of [piece, score] pairs'],
      [(j) => (j.added_tokens = [{ id: 'x' }]), 'added_tokens[0] must be an object with an integer id >= 0 and a string content, got {"id":"x"}'],
    ];
    for (const [edit, message] of cases) {
      const json = wordLevelJson(WORDS) as Record<string, unknown>;
      edit(json);
      expect(() => new TextTokenizer(json), message).toThrow(`TextTokenizer: tokenizer.json object: ${message}`);
    }
  });

  it('components tokenizers.js cannot build', () => {
    const json = wordLevelJson(WORDS);
    json.pre_tokenizer = { type: 'NoSuchPreTokenizer' };
    expect(() => new TextTokenizer(json, { source: 'my.json' })).toThrow(/my.json: cannot build the tokenizer/);
  });
});

describe('TextTokenizer (LLaMA-style BPE and Unigram)', () => {
  it('BPE: prefix space, merges, byte fallback for "\\n", and a lossless decode', () => {
    const tok = new TextTokenizer(llamaBpeJson(['▁Hello', '▁world', '▁cat']));
    expect(tok.tokenize('Hello world')).toEqual(['▁Hello', '▁world']);
    expect(tok.tokenize('\nHello')).toEqual(['▁', '<0x0A>', 'H', 'e', 'l', 'l', 'o']);
    const ids = tok.encode('Hello world\ncat', { addBos: true });
    expect(ids[0]).toBe(1);
    expect(tok.decode(ids)).toBe('Hello world\ncat');
    expect([tok.bosId, tok.eosId, tok.unkId, tok.padId]).toEqual([1, 2, 0, 0]);
  });

  it('Unigram: unk from unk_id, Metaspace', () => {
    const json = {
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      post_processor: null,
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      model: {
        type: 'Unigram',
        unk_id: 0,
        vocab: [['<unk>', 0], ['<s>', 0], ['</s>', 0], ['▁', -2], ['▁hello', -4], ['▁w', -4], ['orld', -4], ['h', -5], ['e', -5], ['l', -5], ['o', -5]],
      },
    };
    const tok = new TextTokenizer(json);
    expect([tok.unkId, tok.bosId, tok.eosId]).toEqual([0, 1, 2]);
    expect(tok.tokenize('hello world zz')).toEqual(['▁hello', '▁w', 'orld', '▁', 'zz']);
    expect(tok.encode('hello world zz')).toEqual([4, 5, 6, 3, 0]);
    expect(tok.decode([4, 5, 6])).toBe('hello world');
  });
});
