// A checkpoint's SentencePiece tokenizer.model with the files transformers reads beside it (src/data/sentencepiece.ts):
// added_tokens.json (LLaVA v0-style <im_start> / <im_end> / <im_patch>), tokenizer_config.json's added_tokens_decoder
// and named special tokens that are not pieces, against transformers' LlamaTokenizer (scripts/make_sentencepiece_added_fixture.py,
// transformers 5.18): the same tokenizer.json field for field, the same ids. And the conversion's cache: this user's
// (XDG_CACHE_HOME or ~/.cache, else a private folder in the temp folder), 0700, and a cache file someone else could
// have written is not used.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenizerJsonFromSentencePiece } from '../../src/data/sentencepiece';
import { TextTokenizer } from '../../src/data/tokenizer';
import { tempDirs } from '../support/tmp';
import { convertedLikeTransformers } from '../support/tokenizer_json';

const fx = path.join(__dirname, '..', 'fixtures');
const dir = path.join(fx, 'sentencepiece_added');
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<string, { len: number; probes: { text: string; ids: number[] }[] }>;
const tmp = tempDirs('spadded');

// every conversion of this file goes to a cache of its own
const saved = { XDG_CACHE_HOME: process.env.XDG_CACHE_HOME, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR };
beforeAll(() => {
  process.env.XDG_CACHE_HOME = tmp();
});
afterAll(() => {
  for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
});

/** A checkpoint-like directory: the fixture's tokenizer.model and the variant's config files. */
function tokenizerDir(variant: string): string {
  const d = tmp();
  fs.copyFileSync(path.join(fx, 'sentencepiece', 'tokenizer.model'), path.join(d, 'tokenizer.model'));
  for (const f of ['tokenizer_config.json', 'added_tokens.json']) if (fs.existsSync(path.join(dir, variant, f))) fs.copyFileSync(path.join(dir, variant, f), path.join(d, f));
  return d;
}

describe('added tokens beside tokenizer.model', () => {
  for (const variant of Object.keys(expected)) {
    it(`${variant}: transformers' tokenizer.json and ids`, () => {
      const tok = convertedLikeTransformers(tokenizerDir(variant), path.join(dir, variant, 'tokenizer.json'));
      expect(tok.vocabSize).toBe(expected[variant].len);
      for (const { text, ids } of expected[variant].probes) expect(tok.encode(text, { addBos: true }), JSON.stringify(text)).toEqual(ids);
    });
  }

  it('a malformed added_tokens.json is an error naming it', () => {
    const d = tokenizerDir('llava_v0');
    fs.writeFileSync(path.join(d, 'added_tokens.json'), '{"<a>": "x"}');
    expect(() => tokenizerJsonFromSentencePiece(d)).toThrow(/added_tokens\.json: the index of '<a>' must be a non-negative integer, got "x"/);
    fs.writeFileSync(path.join(d, 'added_tokens.json'), 'null');
    expect(() => tokenizerJsonFromSentencePiece(d)).toThrow(/added_tokens\.json must hold a JSON object/);
  });
});

describe('the conversion cache', () => {
  it("is this user's: under XDG_CACHE_HOME (else ~/.cache), 0700, files 0600; used again, keyed by every input", () => {
    const xdg = tmp();
    process.env.XDG_CACHE_HOME = xdg;
    const d = tokenizerDir('llava_v0');
    const file = tokenizerJsonFromSentencePiece(d);
    expect(path.dirname(path.dirname(file))).toBe(path.join(xdg, 'vwlmm', 'tokenizers')); // one folder per conversion
    if (process.platform !== 'win32') {
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
      expect(fs.statSync(file).mode & 0o077).toBe(0);
    }
    const mtime = fs.statSync(file).mtimeMs;
    expect(tokenizerJsonFromSentencePiece(d)).toBe(file);
    expect(fs.statSync(file).mtimeMs).toBe(mtime);
    // another added_tokens.json is another tokenizer
    fs.writeFileSync(path.join(d, 'added_tokens.json'), '{"<im_patch>": 420}');
    const other = tokenizerJsonFromSentencePiece(d);
    expect(other).not.toBe(file);
    expect(new TextTokenizer(other).vocabSize).toBe(421);
    // without XDG_CACHE_HOME: ~/.cache
    const home = tmp();
    delete process.env.XDG_CACHE_HOME;
    process.env.HOME = home;
    expect(path.dirname(path.dirname(tokenizerJsonFromSentencePiece(d)))).toBe(path.join(home, '.cache', 'vwlmm', 'tokenizers'));
    process.env.XDG_CACHE_HOME = xdg;
  });

  it('a cache file others could have written is not used: it is converted again', () => {
    process.env.XDG_CACHE_HOME = tmp();
    const d = tokenizerDir('llava_v0');
    const file = tokenizerJsonFromSentencePiece(d);
    const good = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, '{"planted": true}');
    fs.chmodSync(file, 0o666);
    expect(tokenizerJsonFromSentencePiece(d)).toBe(file);
    expect(fs.readFileSync(file, 'utf8')).toBe(good);
    if (process.getuid?.() === 0) {
      // owned by another user (only root can make one here)
      fs.writeFileSync(file, '{"planted": true}');
      fs.chownSync(file, 12345, 12345);
      fs.chmodSync(file, 0o644);
      tokenizerJsonFromSentencePiece(d);
      expect(fs.readFileSync(file, 'utf8')).toBe(good);
      expect(fs.statSync(file).uid).toBe(0);
    }
  });

  it("falls back to <temp>/vwlmm-tokenizers-<uid>, made private, and never to another user's folder of that name", () => {
    if (process.platform === 'win32') return;
    const temp = tmp();
    process.env.TMPDIR = temp;
    const blocker = path.join(tmp(), 'a-file');
    fs.writeFileSync(blocker, '');
    process.env.XDG_CACHE_HOME = path.join(blocker, 'cache'); // cannot be made
    const mine = path.join(temp, `vwlmm-tokenizers-${process.getuid!()}`);
    fs.mkdirSync(mine, { mode: 0o777 });
    fs.chmodSync(mine, 0o777);
    const file = tokenizerJsonFromSentencePiece(tokenizerDir('llava_v0'));
    expect(path.dirname(path.dirname(file))).toBe(mine);
    expect(fs.statSync(mine).mode & 0o777).toBe(0o700);
    if (process.getuid!() === 0) {
      fs.rmSync(mine, { recursive: true });
      fs.mkdirSync(mine, { mode: 0o777 });
      fs.chownSync(mine, 12345, 12345);
      const f = tokenizerJsonFromSentencePiece(tokenizerDir('llava_v0'));
      expect(f.startsWith(mine)).toBe(false);
      expect(new TextTokenizer(f).vocabSize).toBe(423);
    }
    process.env.TMPDIR = saved.TMPDIR ?? os.tmpdir();
    if (saved.TMPDIR === undefined) delete process.env.TMPDIR;
  });
});
