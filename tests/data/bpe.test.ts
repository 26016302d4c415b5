// src/data/bpe.ts (RustBpe, TextTokenizer's BPE step) against the Rust tokenizers library's ids on the fixtures of
// scripts/make_bpe_fixture.py: hand-made models aimed at one rule each, and a trained one with unseen characters.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { RustBpe } from '../../src/data/bpe';
import { TextTokenizer } from '../../src/data/tokenizer';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'bpe');
const expected = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as Record<string, { text: string; ids: number[] }[]>;
const fixtureFile = (name: string) => (name === 'trained' ? path.join(FIXTURES, 'trained.json') : path.join(FIXTURES, 'handmade', `${name}.json`));
const fixtureModel = (name: string) => JSON.parse(fs.readFileSync(fixtureFile(name), 'utf8')).model as Record<string, unknown>;

describe('BPE as Rust tokenizers runs it', () => {
  it.each(Object.keys(expected))('%s: the ids of every probe equal the Rust library\'s', (name) => {
    const tok = TextTokenizer.fromFile(fixtureFile(name));
    for (const { text, ids } of expected[name]) expect([text, tok.encode(text)]).toEqual([text, ids]);
  });

  it('is the step TextTokenizer runs for a BPE model, with a memo that gives the same tokens again', () => {
    const bpe = new RustBpe(fixtureModel('unk_fused'));
    const first = bpe.tokenize(['xyabcd', 'abxcd']);
    expect(first).toEqual(['<unk>', 'ab', 'cd', 'ab', '<unk>', 'cd']);
    expect(bpe.tokenize(['xyabcd', 'abxcd'])).toEqual(first);
    expect(bpe.tokenize([])).toEqual([]);
    expect(bpe.tokenize([''])).toEqual([]);
    // words past the memo's length are tokenised the same
    const long = 'abcd'.repeat(100);
    expect(bpe.tokenize([long])).toEqual(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 'ab' : 'cd')));
  });

  it('refuses a model it cannot run as Rust would, naming the problem', () => {
    const base = fixtureModel('unk');
    expect(() => new RustBpe({ ...base, dropout: 0.1 })).toThrow(/"dropout" 0.1 is not supported/);
    expect(() => new RustBpe({ ...base, merges: [['a', 'zz']] })).toThrow(/merge 0 \("a", "zz"\) names "zz", which is not in the vocabulary/);
    expect(() => new RustBpe({ ...base, merges: [['a', 'c']] })).toThrow(/names "ac"/);
    expect(() => new RustBpe({ ...base, merges: ['a'] })).toThrow(/merge 0 is "a", expected "a b"/);
    expect(() => new RustBpe({ ...base, vocab: ['a'] })).toThrow(/"vocab" is not an object/);
    expect(() => new RustBpe({ ...base, vocab: { a: -1 } })).toThrow(/vocab entry "a" has id -1/);
    // an unk token missing from the vocabulary is an error where Rust raises it: at the first unknown character
    const noUnk = new RustBpe({ ...base, unk_token: '<nope>' });
    expect(noUnk.tokenize(['abcd'])).toEqual(['ab', 'cd']);
    expect(() => noUnk.tokenize(['abx'])).toThrow(/unk_token "<nope>" is not in the vocabulary/);
    // through TextTokenizer, the file is named
    const json = JSON.parse(fs.readFileSync(fixtureFile('unk'), 'utf8'));
    json.model.dropout = 0.5;
    expect(() => new TextTokenizer(json)).toThrow(/TextTokenizer: .*"dropout" 0.5 is not supported/);
  });
});
