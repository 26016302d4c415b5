// Conversation templates, tokenisation with image placeholders, label masks and the mismatch check.
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import {
  buildGenerationPrompt, buildPrompt, buildSegments, getTemplate, IGNORE_INDEX, IMAGE_TOKEN_INDEX, MISTRAL,
  moveImageToFront, SHORT_ANSWER_PROMPT, tokenizeConversation, tokenizerImageToken, Turn, VICUNA_V1,
} from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';
import { llamaBpeJson, wordLevelJson } from '../support/tokenizer_json';

// --- fixtures ---------------------------------------------------------------------------------------
const SYSTEM_WORDS = (
  "a chat between curious user and an artificial intelligence assistant . the gives helpful , detailed polite answers to ' s questions"
).split(' ');
const WORDS = [...SYSTEM_WORDS, ':', 'what', 'is', 'this', '?', 'it', 'cat', 'color', 'black', '[', 'inst', ']', '[/', 'describe',
  'image', 'answer', 'question', 'using', 'single', 'word', 'or', 'phrase', 'yes'];

const wordLevel = () => new TextTokenizer(wordLevelJson(WORDS));
const llamaBpe = (words: string[], first: [string, string][] = []) => new TextTokenizer(llamaBpeJson(words, first));
const BPE_WORDS = ['▁USER', '▁ASSISTANT', '▁What', '▁is', '▁this', '▁It', '▁a', '▁cat', '▁color', '▁it', '▁Black', '▁A', '▁chat', '.'];

/** Token strings with supervised positions in brackets, e.g. "<s> user : [it] [</s>]". */
function render(tok: TextTokenizer, ids: number[], labels: number[]): string {
  return ids
    .map((id, i) => {
      const s = id === IMAGE_TOKEN_INDEX ? '<image>' : (tok.idToToken(id) as string);
      if (labels[i] === IGNORE_INDEX) return s;
      expect(labels[i]).toBe(id);
      return `[${s}]`;
    })
    .join(' ');
}

const SYSTEM =
  "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

const TWO_TURNS: Turn[] = [
  { from: 'human', value: 'What is this?\n<image>' },
  { from: 'gpt', value: 'It is a cat.' },
  { from: 'human', value: 'What color is it?' },
  { from: 'gpt', value: 'Black.' },
];

describe('templates: exact prompt strings', () => {
  it('vicuna_v1: system + " " + "USER: " + q + " " + "ASSISTANT: " + a + "</s>" per turn', () => {
    expect(VICUNA_V1.system).toBe(SYSTEM);
    expect([VICUNA_V1.roles, VICUNA_V1.sep, VICUNA_V1.sep2]).toEqual([['USER', 'ASSISTANT'], ' ', '</s>']);
    expect(buildPrompt(TWO_TURNS, 'vicuna_v1')).toBe(
      "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. " +
        'USER: <image>\nWhat is this? ASSISTANT: It is a cat.</s>USER: What color is it? ASSISTANT: Black.</s>',
    );
    expect(getTemplate('v1')).toBe(VICUNA_V1);
  });

  it('mistral (VW-LMM): "[INST] q [/INST]a</s>" per turn, no system prompt', () => {
    expect(buildPrompt(TWO_TURNS, 'mistral')).toBe('[INST] <image>\nWhat is this? [/INST]It is a cat.</s>[INST] What color is it? [/INST]Black.</s>');
    expect([MISTRAL.system, MISTRAL.sep, MISTRAL.sep2]).toEqual(['', '', '</s>']);
  });

  it("mistral_instruct (LLaVA's conv_mistral_instruct, LLAMA_2 style): \"[INST] q [/INST] a </s>\"", () => {
    expect(buildPrompt(TWO_TURNS, 'mistral_instruct')).toBe(
      '[INST] <image>\nWhat is this? [/INST] It is a cat. </s>[INST] What color is it? [/INST] Black. </s>',
    );
  });

  it('plain: "<image>" + caption + "\\n" (the human text is dropped)', () => {
    const conv: Turn[] = [{ from: 'human', value: 'Describe the image.\n<image>' }, { from: 'gpt', value: 'A black cat.' }];
    expect(buildPrompt(conv, 'plain')).toBe('<image>A black cat.\n');
    expect(buildSegments(conv, 'plain')).toEqual([{ text: '<image>', supervised: false }, { text: 'A black cat.\n', supervised: true }]);
  });

  it('segments: vicuna masks "... ASSISTANT:" and supervises " " + reply + "</s>"', () => {
    expect(buildSegments(TWO_TURNS, VICUNA_V1)).toEqual([
      { text: `${SYSTEM} USER: <image>\nWhat is this? ASSISTANT:`, supervised: false },
      { text: ' It is a cat.</s>', supervised: true },
      { text: 'USER: What color is it? ASSISTANT:', supervised: false },
      { text: ' Black.</s>', supervised: true },
    ]);
  });

  it('generation prompts end with the assistant cue', () => {
    const q: Turn[] = [{ from: 'human', value: '<image>\nWhat color is it?' + SHORT_ANSWER_PROMPT }];
    expect(SHORT_ANSWER_PROMPT).toBe('\nAnswer the question using a single word or phrase.');
    expect(buildGenerationPrompt(q, 'vicuna_v1').prompt).toBe(
      `${SYSTEM} USER: <image>\nWhat color is it?\nAnswer the question using a single word or phrase. ASSISTANT:`,
    );
    expect(buildGenerationPrompt(q, 'mistral').prompt).toBe('[INST] <image>\nWhat color is it?\nAnswer the question using a single word or phrase. [/INST]');
    expect(buildGenerationPrompt(TWO_TURNS.slice(0, 3), 'vicuna_v1').prompt).toBe(
      `${SYSTEM} USER: <image>\nWhat is this? ASSISTANT: It is a cat.</s>USER: What color is it? ASSISTANT:`,
    );
    expect(buildGenerationPrompt([{ from: 'human', value: 'Describe.\n<image>' }], 'plain').prompt).toBe('<image>');
    expect(() => buildGenerationPrompt(TWO_TURNS, 'vicuna_v1')).toThrow(/must end with a human turn/);
  });

  it('rejects unknown templates and malformed conversations', () => {
    expect(() => getTemplate('chatml')).toThrow(/unknown conversation template "chatml" \(known: plain, vicuna_v1/);
    expect(() => buildPrompt([{ from: 'robot', value: 'x' }], 'vicuna_v1')).toThrow(/turn 0: unknown role "robot"/);
    expect(() => buildPrompt([{ from: 'human', value: 'a' }, { from: 'human', value: 'b' }], 'vicuna_v1')).toThrow(/turn 1: roles must alternate/);
    expect(() => buildPrompt([{ from: 'human', value: 'no image' }, { from: 'gpt', value: 'x' }], 'plain')).toThrow(/must contain <image>/);
    expect(() => buildPrompt(TWO_TURNS, 'plain')).toThrow(/exactly 2 turns/);
  });

  it('drops a leading assistant turn (LLaVA) and accepts user/assistant role names', () => {
    const conv: Turn[] = [{ from: 'gpt', value: 'Hi.' }, { from: 'user', value: 'Q?' }, { from: 'assistant', value: 'A.' }];
    expect(buildPrompt(conv, 'mistral')).toBe('[INST] Q? [/INST]A.</s>');
  });
});

describe('<image> placement', () => {
  it('moves <image> to the front of its turn followed by "\\n" (LLaVA preprocess_multimodal)', () => {
    expect(moveImageToFront([{ from: 'human', value: 'What is this?\n<image>' }])[0].value).toBe('<image>\nWhat is this?');
    expect(moveImageToFront([{ from: 'human', value: 'What <image> is  this? ' }])[0].value).toBe('<image>\nWhat  is  this?');
    expect(moveImageToFront([{ from: 'human', value: '<image>' }])[0].value).toBe('<image>');
    expect(moveImageToFront([{ from: 'human', value: '<image>\nA<image>' }])[0].value).toBe('<image>\nA');
    const conv: Turn[] = [{ from: 'human', value: 'Q' }, { from: 'gpt', value: 'A' }];
    expect(moveImageToFront(conv)).toEqual(conv);
    expect(buildPrompt([{ from: 'human', value: 'Q <image>' }, { from: 'gpt', value: 'A' }], 'mistral', { moveImageToFront: false })).toBe(
      '[INST] Q <image> [/INST]A</s>',
    );
  });
});

describe('tokenizeConversation', () => {
  it('vicuna_v1, two turns: token-by-token label mask (assistant replies and their </s> only)', () => {
    const tok = wordLevel();
    const r = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1');
    expect(r.mismatch).toBe(false);
    expect(r.mismatchDetail).toBeNull();
    expect(r.numImages).toBe(1);
    expect(r.truncated).toBe(false);
    expect(r.fullLength).toBe(r.inputIds.length);
    expect(r.labels.length).toBe(r.inputIds.length);
    expect(render(tok, r.inputIds, r.labels)).toBe(
      "<s> a chat between a curious user and an artificial intelligence assistant . the assistant gives helpful , detailed , and polite answers to the user ' s questions . " +
        'user : <image> what is this ? assistant : [it] [is] [a] [cat] [.] [</s>] user : what color is it ? assistant : [black] [.] [</s>]',
    );
  });

  it('BOS once at the very front, -200 where <image> was, chunks encoded separately', () => {
    const tok = wordLevel();
    const r = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1');
    expect(r.inputIds[0]).toBe(tok.bosId);
    expect(r.inputIds.filter((id) => id === tok.bosId).length).toBe(1);
    const at = r.inputIds.indexOf(IMAGE_TOKEN_INDEX);
    expect(at).toBe(1 + tok.encode(`${SYSTEM} USER: `).length);
    expect(r.inputIds).toEqual(tokenizerImageToken(r.prompt, tok));
    const noBos = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { addBos: false });
    expect(noBos.inputIds).toEqual(r.inputIds.slice(1));
    expect(noBos.labels).toEqual(r.labels.slice(1));
    const custom = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { imageTokenIndex: -7 });
    expect(custom.inputIds[at]).toBe(-7);
    expect(custom.numImages).toBe(1);
  });

  it('a tokenizer without a BOS token gets none (LLaVA adds BOS only when the tokenizer does)', () => {
    const words = ['<unk>', '</s>', 'user', 'assistant', ':', 'what', '?', 'a', 'cat', '.'];
    const tok = new TextTokenizer({
      added_tokens: [0, 1].map((id) => ({ id, content: words[id], special: true, normalized: false })),
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'Whitespace' },
      model: { type: 'WordLevel', vocab: Object.fromEntries(words.map((w, i) => [w, i])), unk_token: '<unk>' },
    });
    expect(tok.bosId).toBeNull();
    const r = tokenizeConversation([{ from: 'human', value: '<image>\nWhat?' }, { from: 'gpt', value: 'A cat.' }], tok, 'mistral');
    expect(render(tok, r.inputIds, r.labels)).toBe('<unk> <unk> <unk> <image> what ? <unk> <unk> <unk> [a] [cat] [.] [</s>]');
    expect(() => tokenizeConversation([{ from: 'human', value: 'Q' }], tok, 'mistral', { addBos: true })).toThrow(/no BOS token/);
  });

  it('plain: BOS and image masked, caption (+ "\\n") supervised', () => {
    const conv: Turn[] = [{ from: 'human', value: '<image>\nDescribe the image.' }, { from: 'gpt', value: 'A black cat.' }];
    const wl = wordLevel();
    const r = tokenizeConversation(conv, wl, 'plain');
    expect(render(wl, r.inputIds, r.labels)).toBe('<s> <image> [a] [black] [cat] [.]');
    const bpe = llamaBpe(BPE_WORDS);
    const r2 = tokenizeConversation([conv[0], { from: 'gpt', value: 'A Black cat.' }], bpe, 'plain');
    expect(r2.mismatch).toBe(false);
    expect(render(bpe, r2.inputIds, r2.labels)).toBe('<s> <image> [▁A] [▁Black] [▁cat] [.] [<0x0A>]');
  });

  it('mistral: "[INST] ... [/INST]" masked, reply + </s> supervised', () => {
    const tok = wordLevel();
    const r = tokenizeConversation(TWO_TURNS, tok, 'mistral');
    expect(render(tok, r.inputIds, r.labels)).toBe(
      '<s> [ inst ] <image> what is this ? [/ inst ] [it] [is] [a] [cat] [.] [</s>] [ inst ] what color is it ? [/ inst ] [black] [.] [</s>]',
    );
  });

  it("mistral: an empty message is left out whole and an empty first one refused (VW-LMM's get_prompt, MISTRAL)", () => {
    const T = (...v: string[]): Turn[] => v.map((value, i) => ({ from: i % 2 === 0 ? 'human' : 'gpt', value }));
    expect(buildPrompt(T('<image>\nQ1', '', 'Q2', 'A2'), 'mistral')).toBe('[INST] <image>\nQ1 [/INST][INST] Q2 [/INST]A2</s>');
    expect(buildPrompt(T('<image>\nQ1', 'A1', '', 'A2'), 'mistral')).toBe('[INST] <image>\nQ1 [/INST]A1</s>A2</s>');
    expect(buildPrompt(T('<image>\nQ1', ''), 'mistral')).toBe('[INST] <image>\nQ1 [/INST]');
    expect(() => buildPrompt(T('', 'A1'), 'mistral')).toThrow(/mistral template: the first human turn is empty/);
    // the empty reply supervises nothing: no lone "</s>"
    const tok = wordLevel();
    const r = tokenizeConversation(T('<image>\nwhat is this ?', '', 'what color is it ?', 'black .'), tok, 'mistral');
    expect(r.prompt).toBe('[INST] <image>\nwhat is this ? [/INST][INST] what color is it ? [/INST]black .</s>');
    expect(r.inputIds.filter((_, i) => r.labels[i] !== IGNORE_INDEX).map((id) => tok.idToToken(id))).toEqual(['black', '.', '</s>']);
  });

  it('a SentencePiece-style BPE (prefix "▁" on every encoded piece) gives clean boundaries, no mismatch', () => {
    const tok = llamaBpe(BPE_WORDS);
    const r = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1');
    expect(r.mismatch).toBe(false);
    const sup = r.inputIds.filter((_, i) => r.labels[i] !== IGNORE_INDEX).map((id) => tok.idToToken(id));
    expect(sup).toEqual(['▁It', '▁is', '▁a', '▁cat', '.', '</s>', '▁Black', '.', '</s>']);
    // Encoding a reply on its own would add a second "▁" ("▁" + "▁It"): why boundaries are measured on prefixes.
    expect(tok.tokenize(' It is a cat.')).toEqual(['▁', '▁It', '▁is', '▁a', '▁cat', '.']);
  });

  it('tokenization mismatch: a merge across the "ASSISTANT:" | " reply" boundary masks every label and is reported', () => {
    const tok = llamaBpe(BPE_WORDS, [[':', '▁']]); // ":▁" is merged first, so ":" + " It" tokenises differently
    expect(tok.tokenize('ASSISTANT: It')).toEqual(['▁ASSISTANT', ':▁', 'I', 't']);
    expect(tok.tokenize('ASSISTANT:')).toEqual(['▁ASSISTANT', ':']);
    const r = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1');
    expect(r.mismatch).toBe(true);
    expect(r.mismatchDetail).toMatch(/does not tokenise to a prefix of the whole-prompt tokens/);
    expect(r.labels.every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(r.inputIds).toEqual(tokenizerImageToken(r.prompt, tok)); // the input ids are still the whole-prompt tokens
    expect(r.labels.length).toBe(r.inputIds.length);
    // The mistral template has no ": " boundary, so the same tokenizer is fine there.
    expect(tokenizeConversation(TWO_TURNS, tok, 'mistral').mismatch).toBe(false);
    // A merge that only bites in the second turn ("[/INST]" + "Black") is caught there, with either method.
    const late = llamaBpe(BPE_WORDS, [[']', 'B']]);
    for (const exactPrefixes of [false, true]) {
      const m = tokenizeConversation(TWO_TURNS, late, 'mistral', { exactPrefixes });
      expect(m.mismatch).toBe(true);
      expect(m.mismatchDetail).toMatch(/segment boundary 3 /);
      expect(m.labels.every((l) => l === IGNORE_INDEX)).toBe(true);
    }
    // Merges inside a segment are harmless.
    expect(tokenizeConversation(TWO_TURNS, llamaBpe(BPE_WORDS, [['?', '▁']]), 'vicuna_v1').mismatch).toBe(false);
  });

  it('measuring boundaries from the last "</s>" gives the same result as re-tokenising whole prefixes', () => {
    const convs: Turn[][] = [TWO_TURNS, [...TWO_TURNS, { from: 'human', value: 'What is it?' }, { from: 'gpt', value: 'A cat.' }]];
    for (const tok of [wordLevel(), llamaBpe(BPE_WORDS), llamaBpe(BPE_WORDS, [[':', '▁']]), llamaBpe(BPE_WORDS, [['.', '</s>']])]) {
      for (const name of ['vicuna_v1', 'mistral', 'mistral_instruct'] as const) {
        for (const conv of convs) {
          const fast = tokenizeConversation(conv, tok, name);
          const slow = tokenizeConversation(conv, tok, name, { exactPrefixes: true });
          expect({ ...fast, mismatchDetail: null }).toEqual({ ...slow, mismatchDetail: null });
        }
      }
    }
  });

  it('truncates input ids and labels to maxLength', () => {
    const tok = wordLevel();
    const full = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1');
    const r = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { maxLength: 40 });
    expect(r.truncated).toBe(true);
    expect(r.fullLength).toBe(full.inputIds.length);
    expect(r.inputIds).toEqual(full.inputIds.slice(0, 40));
    expect(r.labels).toEqual(full.labels.slice(0, 40));
    expect(r.numImages).toBe(1);
    const cut = tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { maxLength: 5 });
    expect(cut.inputIds.length).toBe(5);
    expect(cut.numImages).toBe(0);
    expect(tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { maxLength: full.inputIds.length }).truncated).toBe(false);
    expect(() => tokenizeConversation(TWO_TURNS, tok, 'vicuna_v1', { maxLength: 0 })).toThrow(/maxLength/);
  });

  it('text-only conversations have no placeholder', () => {
    const tok = wordLevel();
    const r = tokenizeConversation([{ from: 'human', value: 'What is this?' }, { from: 'gpt', value: 'A cat.' }], tok, 'vicuna_v1');
    expect(r.numImages).toBe(0);
    expect(r.inputIds.includes(IMAGE_TOKEN_INDEX)).toBe(false);
    expect(render(tok, r.inputIds, r.labels).endsWith('user : what is this ? assistant : [a] [cat] [.] [</s>]')).toBe(true);
  });

  it('generation prompt tokens: BOS, one -200, ending with "assistant :"', () => {
    const tok = wordLevel();
    const g = buildGenerationPrompt([{ from: 'human', value: 'What is this? <image>' + SHORT_ANSWER_PROMPT }], 'vicuna_v1', tok);
    const ids = g.inputIds as number[];
    expect(ids[0]).toBe(tok.bosId);
    expect(g.numImages).toBe(1);
    expect(ids.filter((i) => i === IMAGE_TOKEN_INDEX).length).toBe(1);
    expect(ids.slice(-2).map((i) => tok.idToToken(i))).toEqual(['assistant', ':']);
    expect(buildGenerationPrompt([{ from: 'human', value: 'Q' }], 'vicuna_v1').inputIds).toBeNull();
  });
});

describe("mistral_instruct: LLaVA's get_prompt (LLAMA_2) and preprocess_llama_2", () => {
  // LLaVA's prompts, mismatch flags and supervised text (conv_mistral_instruct.get_prompt and preprocess_llama_2 run on
  // these conversations with a Mistral-like transformers tokenizer)
  const T = (...v: string[]): Turn[] => v.map((value, i) => ({ from: i % 2 === 0 ? 'human' : 'gpt', value }));
  const CASES: [string, Turn[], string, boolean, string][] = [
    ['empty reply mid-way: left out', T('<image>\nQ1', '', 'Q2', 'A2'), '[INST] <image>\nQ1 [/INST][INST] Q2 [/INST] A2 </s>', false, 'A2 </s>'],
    ['empty human turn mid-way: left out', T('<image>\nQ1', 'A1', '', 'A2'), '[INST] <image>\nQ1 [/INST] A1 </s> A2 </s>', true, ''],
    ['ends with a human turn', T('<image>\nQ1', 'A1', 'Q2'), '[INST] <image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST]', true, ''],
    ['an empty last reply', T('<image>\nQ1', ''), '[INST] <image>\nQ1 [/INST]', true, ''],
    ['</s> in a human turn', T('<image>\nQ1 </s> x', 'A1'), '[INST] <image>\nQ1 </s> x [/INST] A1 </s>', true, ''],
    ['</s> in a reply', T('<image>\nQ1', 'A1 </s> x'), '[INST] <image>\nQ1 [/INST] A1 </s> x </s>', true, ''],
    ['"[/INST] " in a reply', T('<image>\nQ1', 'see [/INST] here', 'Q2', 'A2'), '[INST] <image>\nQ1 [/INST] see [/INST] here </s>[INST] Q2 [/INST] A2 </s>', true, ''],
    ['two rounds', T('<image>\nQ1', 'A1', 'Q2', 'A2'), '[INST] <image>\nQ1 [/INST] A1 </s>[INST] Q2 [/INST] A2 </s>', false, 'A1 </s> A2 </s>'],
  ];
  const tok = new TextTokenizer(path.join(__dirname, '..', 'fixtures', 'sentencepiece_mistral', 'base'));
  for (const [name, conv, prompt, mismatch, supervised] of CASES) {
    it(`${name}: ${JSON.stringify(prompt)}${mismatch ? ', masked whole' : ''}`, () => {
      const r = tokenizeConversation(conv, tok, 'mistral_instruct');
      expect(r.prompt).toBe(prompt);
      expect(r.mismatch).toBe(mismatch);
      if (mismatch) expect(r.mismatchDetail).toMatch(/LLaVA('s round split stops there and)? masks the sample/);
      expect(tok.decode(r.inputIds.filter((_, i) => r.labels[i] !== IGNORE_INDEX), { skipSpecial: false })).toBe(supervised);
    });
  }

  it('an empty first human turn is refused (LLaVA asserts a first message)', () => {
    expect(() => buildPrompt(T('', 'A1'), 'mistral_instruct')).toThrow(/mistral_instruct template: the first human turn is empty/);
  });
});
