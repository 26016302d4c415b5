// The prompts of `vwlmm answer` (formats vqa_loader and science) against LLaVA's own eval scripts, run unchanged on the
// fixture question files (scripts/make_prompt_fixtures.py: model_vqa_loader.py, model_vqa.py and model_vqa_science.py
// as `python -m llava.eval.<name>` runs them, with a stub model):
// - per run (--conv-mode vicuna_v1 / v1 / llava_v1 / v1_mmtag / mistral_instruct / plain, --single-pred-prompt, chunks): the questions of the
//   chunk with LLaVA's question_id and written prompt, whether an image goes with each, and the full prompts string
//   for string;
// - the input ids LLaVA's generate() got (tokenizer_image_token; legacy and non-legacy Llama fixture tokenizers), id
//   for id, for every prompt of every run;
// - model_vqa.py (MM-Vet, LLaVA-Bench: no suffix) builds its prompt with the same lines as model_vqa_loader.py (the
//   loader only moves them into a Dataset), so `answer` has one format for both: their prompts here are the same;
// - `answer` end to end (tiny model): LLaVA's lines, and a question whose text holds "<image>" skipped with its reason
//   (LLaVA's prompt then has two placeholders for one image, which its model cannot run).
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { answerPrompt, answerQuestions, AnswerResult, loaderQuestions, scienceQuestions } from '../../src/eval/answer';
import { chunkOf } from '../../src/eval/chunk';
import { TextTokenizer } from '../../src/data/tokenizer';
import type { TemplateName } from '../../src/data/conversation';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const dir = path.join(__dirname, '..', 'fixtures', 'eval', 'prompts');
const spm = path.join(__dirname, '..', 'fixtures', 'sentencepiece');
const tmp = tempDirs('llava-prompts');

interface Line { question_id: unknown; prompt: string; model_id: string; metadata: object }
interface Run {
  name: string; script: string; questions: string; conv_mode: TemplateName; single_pred_prompt: boolean; num_chunks: number; chunk_idx: number;
  lines: Line[]; prompts: string[]; image_sizes: ([number, number] | null)[];
}
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as { runs: Run[]; ids: Record<string, Record<string, number[]>> };
const science = (r: Run) => r.script === 'llava/eval/model_vqa_science.py';
const run = (name: string) => expected.runs.find((r) => r.name === name)!;

/** The run's chunk of questions, read as `answer` reads them. */
function questionsOf(r: Run) {
  const skipped: AnswerResult['skipped'] = [];
  const file = path.join(dir, r.questions);
  const all = science(r) ? scienceQuestions(file, r.single_pred_prompt, true, skipped) : loaderQuestions(file, true, skipped);
  return chunkOf(all, r.num_chunks, r.chunk_idx);
}

describe("LLaVA's eval loaders: prompts", () => {
  for (const r of expected.runs) {
    it(`${r.name}: ${r.script} --conv-mode ${r.conv_mode}${r.single_pred_prompt ? ' --single-pred-prompt' : ''}, chunk ${r.chunk_idx}/${r.num_chunks}`, () => {
      const qs = questionsOf(r);
      expect(qs.map((q) => [q.id, q.prompt])).toEqual(r.lines.map((l) => [l.question_id, l.prompt]));
      expect(qs.map((q) => q.image !== null)).toEqual(r.image_sizes.map((s) => s !== null));
      expect(qs.map((q) => answerPrompt(q.text, q.image !== null, r.conv_mode).prompt)).toEqual(r.prompts);
    });
  }

  it("the prompts' token ids equal those LLaVA's generate() got, with the legacy and non-legacy Llama fixture tokenizers", () => {
    const toks = Object.fromEntries(['legacy', 'non_legacy'].map((v) => [v, new TextTokenizer(path.join(spm, v, 'tokenizer.json'))]));
    const seen = new Set<string>();
    for (const r of expected.runs) {
      for (const q of questionsOf(r)) {
        for (const [variant, tok] of Object.entries(toks)) {
          const p = answerPrompt(q.text, q.image !== null, r.conv_mode, tok);
          expect(p.inputIds, `${r.name} ${variant}: ${JSON.stringify(p.prompt)}`).toEqual(expected.ids[p.prompt]?.[variant]);
        }
        seen.add(answerPrompt(q.text, q.image !== null, r.conv_mode).prompt);
      }
    }
    expect([...seen].sort()).toEqual(Object.keys(expected.ids).sort());
  });

  it('a numeric question_id past 2^53 is refused, not rounded (Python keeps it exact; written back rounded, no scorer finds it)', () => {
    const file = path.join(tmp(), 'big.jsonl');
    fs.writeFileSync(file, ['{"question_id": 9007199254740993, "text": "a?"}', '{"question_id": 9007199254740991, "text": "b?"}', '{"question_id": "9007199254740993", "text": "c?"}', '{"question_id": 1e17, "text": "d?"}'].join('\n'));
    const skipped: AnswerResult['skipped'] = [];
    // (a float, 1e17, is one in Python too)
    expect(loaderQuestions(file, false, skipped).map((q) => q.id)).toEqual([9007199254740991, '9007199254740993', 1e17]);
    expect(skipped).toEqual([{ line: 1, questionId: undefined, reason: 'question_id 9007199254740993 is an integer past 2^53, which a JavaScript number cannot hold exactly: write it as a string' }]);
    expect(() => loaderQuestions(file, true, [])).toThrow(`questions ${file} line 1: question_id 9007199254740993 is an integer past 2^53`);
  });

  it('model_vqa.py (MM-Vet) and model_vqa_loader.py give the same lines and prompts', () => {
    const [vqa, loader] = [run('vqa_vicuna_v1'), run('loader_vicuna_v1')];
    expect(vqa.lines).toEqual(loader.lines);
    expect(vqa.prompts).toEqual(loader.prompts);
  });
});

describe("LLaVA's eval loaders: `answer` writes LLaVA's lines", () => {
  let fx: ReturnType<typeof writeCliFixture>;
  beforeAll(() => {
    fx = writeCliFixture(tmp(), { images: 1 });
  });

  for (const name of ['loader_vicuna_v1', 'science_vicuna_v1_single']) {
    it(name, async () => {
      const r = run(name);
      const ck = loadCheckpoint(fx.init);
      const out = path.join(tmp(), 'answers.jsonl');
      const opts = {
        questions: path.join(dir, r.questions), format: science(r) ? 'science' as const : 'vqa_loader' as const, singlePredPrompt: r.single_pred_prompt,
        imageFolder: path.join(dir, 'images'), answers: out, modelId: 'llava-fixture', template: r.conv_mode, maxNewTokens: 1,
      };
      const tok = new TextTokenizer(ck.tokenizerPath!);
      const res = await answerQuestions(ck.model, tok, opts);
      // the questions whose text holds "<image>" (the loader's ids 6 and 7; science removes the tag)
      const twice = r.prompts.flatMap((p, i) => (p.split('<image>').length > 2 ? [r.lines[i].question_id] : []));
      expect(twice).toEqual(science(r) ? [] : [6, 7]);
      const lineOf = (id: unknown) => questionsOf(r).find((q) => q.id === id)!.line;
      const reason = 'the question\'s text holds "<image>" (the prompt would hold 2 image placeholders for one image)';
      expect(res.skipped).toEqual(twice.map((id) => ({ line: lineOf(id), questionId: id, reason })));
      if (twice.length) {
        const strict = answerQuestions(ck.model, tok, { ...opts, answers: path.join(tmp(), 'strict.jsonl'), strict: true });
        await expect(strict).rejects.toThrow(`questions ${opts.questions} line ${lineOf(6)} (question_id 6): ${reason}`);
      }
      ck.model.dispose();
      const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      for (const l of lines) {
        delete l.answer_id; // random
        delete l.text; // the model's answer
      }
      expect(lines).toEqual(r.lines.filter((l) => !twice.includes(l.question_id)));
    });
  }
});
