// Training prompts against LLaVA's own preprocess_multimodal + preprocess (llava/train/train.py, run as is by
// scripts/make_train_prompt_fixtures.py): for every template of LLaVA-1.5's training (v1, llava_v1, v1_mmtag, plain) and
// both Llama fixture tokenizers (legacy, non-legacy), tokenizeConversation's input ids and labels equal LLaVA's, id for
// id: empty replies (mid-way: the bare "ASSISTANT:"), a leading reply dropped, text-only, unicode, v1_mmtag's
// "<Image><image></Image>", and the samples LLaVA's round split masks whole as a "tokenization mismatch" (a last empty
// reply or human turn, " ASSISTANT: " or "</s>" written in a reply).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { IGNORE_INDEX, tokenizeConversation, type TemplateName, type Turn } from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';

const fixtures = path.join(__dirname, '..', 'fixtures');
interface Variant { input_ids: number[]; labels: number[]; mismatch: boolean }
const expected = JSON.parse(fs.readFileSync(path.join(fixtures, 'train_prompts', 'expected.json'), 'utf8')) as {
  cases: { version: TemplateName; conversations: Turn[]; variants: Record<string, Variant> }[];
};
const toks = Object.fromEntries(['legacy', 'non_legacy'].map((v) => [v, new TextTokenizer(path.join(fixtures, 'sentencepiece', v, 'tokenizer.json'))]));

describe("training prompts: LLaVA's preprocess", () => {
  it('the fixture covers every case it names', () => {
    expect(new Set(expected.cases.map((c) => c.version))).toEqual(new Set(['v1', 'llava_v1', 'v1_mmtag', 'plain']));
    expect(expected.cases.some((c) => Object.values(c.variants).some((v) => v.mismatch))).toBe(true);
  });
  expected.cases.forEach((c, i) => {
    for (const [variant, want] of Object.entries(c.variants)) {
      it(`case ${i} (${c.version}, ${variant}): ${JSON.stringify(c.conversations.map((t) => t.value)).slice(0, 80)}`, () => {
        const got = tokenizeConversation(c.conversations, toks[variant], c.version);
        expect(got.inputIds).toEqual(want.input_ids);
        expect(got.mismatch).toBe(want.mismatch);
        expect(got.labels).toEqual(want.labels.map((l) => (l === -200 ? IGNORE_INDEX : l))); // the image is never a label here
      });
    }
  });
});
