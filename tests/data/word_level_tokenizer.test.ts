import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/random';
import {
  COLOURS, QUESTION_TEMPLATES, SHORT_ANSWER_PROMPT, VICUNA_SYSTEM_PROMPT, captionFor, generateScene, questionText, questionsFor,
  sortOfClevrVocabulary, QuestionKind,
} from '../../src/data/sort_of_clevr';
import {
  WORD_LEVEL_TOKENIZER_CONFIG, wordLevelNormalize, wordLevelPreTokenize, wordLevelTokenizerJson, writeWordLevelTokenizer,
} from '../../src/data/word_level_tokenizer';

let tmp: string;
let tok: Tokenizer;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-tok-'));
  writeWordLevelTokenizer(path.join(tmp, 'tokenizer.json'), sortOfClevrVocabulary());
  tok = new Tokenizer(
    JSON.parse(fs.readFileSync(path.join(tmp, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(tmp, 'tokenizer_config.json'), 'utf8')),
  );
});
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** Encode and check: no <unk>, tokens = our pre-tokenisation, decode = the normal form. */
function roundTrip(text: string): number[] {
  const enc = tok.encode(text);
  for (const id of enc.ids) {
    if (typeof id !== 'number' || id === 0) throw new Error(`<unk> in ${JSON.stringify(text)}: tokens ${enc.tokens.join('|')}`);
  }
  expect(enc.tokens).toEqual(wordLevelPreTokenize(text));
  expect(tok.decode(enc.ids)).toBe(wordLevelNormalize(text));
  return enc.ids;
}

describe('word-level tokenizer', () => {
  it('writes a version 1.0 WordLevel tokenizer.json with <unk>=0, <s>=1, </s>=2 then sorted words', () => {
    const json = JSON.parse(fs.readFileSync(path.join(tmp, 'tokenizer.json'), 'utf8'));
    expect(json.version).toBe('1.0');
    expect(json.model.type).toBe('WordLevel');
    expect(json.model.unk_token).toBe('<unk>');
    expect(json.normalizer).toEqual({ type: 'Lowercase' });
    const vocab = json.model.vocab as Record<string, number>;
    expect([vocab['<unk>'], vocab['<s>'], vocab['</s>']]).toEqual([0, 1, 2]);
    const words = sortOfClevrVocabulary();
    expect(Object.keys(vocab).length).toBe(words.length + 3);
    words.forEach((w, i) => expect(vocab[w]).toBe(i + 3));
    expect([...words].sort()).toEqual(words);
    expect(json.added_tokens.map((t: { content: string; id: number; special: boolean }) => [t.content, t.id, t.special]))
      .toEqual([['<unk>', 0, true], ['<s>', 1, true], ['</s>', 2, true]]);
    for (const w of ['?', ',', '.', "'", '[', ']', '/', ':', 'inst', 'user', 'assistant', 's', 'phrase', '1', '6', 'gray', 'bottom']) {
      expect(words).toContain(w);
    }
    expect(tok.token_to_id('<unk>')).toBe(0);
    expect(tok.token_to_id('</s>')).toBe(2);
  });

  it('pre-tokenises by whitespace and isolates every punctuation character', () => {
    expect(tok.tokenize("the user's questions.")).toEqual(['the', 'user', "'", 's', 'questions', '.']);
    expect(tok.tokenize('How many objects?')).toEqual(['how', 'many', 'objects', '?']);
    expect(tok.tokenize('[INST] Q [/INST]A')).toEqual(['[', 'inst', ']', 'q', '[', '/', 'inst', ']', 'a']);
    expect(wordLevelPreTokenize("user's objects? [/INST]")).toEqual(['user', "'", 's', 'objects', '?', '[', '/', 'inst', ']']);
  });

  it('encodes every question, answer, caption and template without <unk>, and decodes to the normal form', () => {
    for (const kind of Object.keys(QUESTION_TEMPLATES) as QuestionKind[]) {
      for (const c of COLOURS) roundTrip(questionText(kind, c));
    }
    for (const a of ['square', 'circle', 'yes', 'no', '1', '2', '3', '4', '5', '6']) roundTrip(a);
    const gen = new Generator(5);
    for (let n = 0; n < 50; n++) {
      const scene = generateScene(gen);
      const cap = captionFor(scene);
      roundTrip(cap);
      expect(tok.decode(tok.encode(cap).ids)).toBe(cap); // captions are already in normal form
      for (const q of questionsFor(scene, gen)) { roundTrip(q.question); roundTrip(q.answer); }
    }
    roundTrip(VICUNA_SYSTEM_PROMPT);
    roundTrip(`${VICUNA_SYSTEM_PROMPT} USER: What shape is the red object?\n${SHORT_ANSWER_PROMPT} ASSISTANT: circle`);
    roundTrip('[INST] Is the gray object on the top? [/INST]no');
  });

  it('keeps </s> as one special token inside text, maps unknown words to <unk>', () => {
    const e = tok.encode('ASSISTANT: circle</s>USER:');
    expect(e.tokens).toEqual(['assistant', ':', 'circle', '</s>', 'user', ':']);
    expect(e.ids[3]).toBe(2);
    expect(tok.encode('zebra objects').ids).toEqual([0, tok.token_to_id('objects')]);
    expect(tok.decode(tok.encode('circle</s>').ids, { skip_special_tokens: true })).toBe('circle');
  });

  it('optionally prepends <s> like the LLaMA tokenizer', () => {
    const t = new Tokenizer(wordLevelTokenizerJson(['red', 'object'], { addBos: true }), WORD_LEVEL_TOKENIZER_CONFIG);
    expect(t.encode('red object').ids).toEqual([1, 4, 3]);
  });

  it('rejects words the pre-tokeniser could never produce', () => {
    expect(() => wordLevelTokenizerJson(["user's"])).toThrow(/not a single pre-token/);
    expect(() => wordLevelTokenizerJson(['two words'])).toThrow(/not a single pre-token/);
    expect(() => wordLevelTokenizerJson(['?!'])).toThrow(/not a single pre-token/);
    expect(Object.keys((wordLevelTokenizerJson(['B', 'a', 'b', '<unk>']).model as { vocab: object }).vocab)).toEqual(['<unk>', '<s>', '</s>', 'a', 'b']);
  });
});
