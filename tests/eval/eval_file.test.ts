// evaluateFile through LLaVA's two steps (src/eval/llava_eval.ts): the records as model_vqa_loader questions, answered
// by answerQuestions into an answers file, then scored by scoreLlavaAnswers. The answers must be the ones the former
// one-step path generated (its code is kept here as `oneStepAnswers`: the conversation without its last turn as the
// prompt, one generate call), and the numbers the ones its exact match / VQA soft accuracy gave on them.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { collate } from '../../src/data/collate';
import { buildGenerationPrompt, Turn } from '../../src/data/conversation';
import { loadImage, preprocessClip } from '../../src/data/images';
import { TextTokenizer } from '../../src/data/tokenizer';
import { saveCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { answerQuestions, evaluateFile, exactMatch, scoreLlavaAnswers, vqaSoftAccuracy } from '../../src/eval';
import { cli, tinyConfig, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('evalfile');

interface Rec { id: string; image?: string; conversations: Turn[]; category?: string; group?: string; answers?: string[] }

/** The former evaluateFile's generation, as it was: every record's prompt in one generate call of batches of 32. */
async function oneStepAnswers(model: VwLmm, tok: TextTokenizer, recs: Rec[], imageFolder: string, maxNewTokens: number): Promise<string[]> {
  const cfg = model.config;
  const prompts = [];
  for (const r of recs) {
    const img = await loadImage(path.resolve(imageFolder, r.image!));
    const pixels = await preprocessClip(img, { size: cfg.image.size, mean: cfg.image.mean, std: cfg.image.std, aspect: cfg.image.aspect === 'pad' ? 'pad' : 'resize_crop' });
    const p = buildGenerationPrompt(r.conversations.slice(0, -1), cfg.template, tok);
    const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tok.padId, numPatches: model.numImageTokens });
    prompts.push({ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues });
  }
  return model.generate(prompts, { maxNewTokens, eosId: tok.eosId ?? undefined, batchSize: 32 }).map((ids) => tok.decode(ids));
}

const lines = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question_id: string; prompt: string; text: string; model_id: string });

describe('evaluateFile: answers file, then score', () => {
  let dir: string, fx: ReturnType<typeof writeCliFixture>, model: VwLmm, tok: TextTokenizer, checkpoint: string;
  let recs: Rec[], old: string[], data: string;
  beforeAll(async () => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 3 }); // 60 Sort-of-CLEVR questions
    tok = new TextTokenizer(fx.tokenizer);
    // an untrained tiny model with weights wide enough that its answers depend on the question and image (13 different
    // answers here; with the fixture's 0.1 it gives one answer to all)
    const c = tinyConfig(tok.vocabSize);
    model = VwLmm.create({ ...c, llm: { ...c.llm, initializerRange: 0.5 }, vision: { ...c.vision, initializerRange: 0.5 } }, 5);
    checkpoint = path.join(dir, 'wide');
    saveCheckpoint(checkpoint, model, { tokenizer: fx.tokenizer });
    recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as Rec[];
    old = await oneStepAnswers(model, tok, recs, fx.imageFolder, 4);
    // expected answers the untrained model gets right on every third record (in another case and with punctuation,
    // which normalizeAnswer folds), and one record with 10 human answers, 4 of them its answer (VQA soft accuracy)
    const scored = recs.map((r, i) => {
      const c = r.conversations.map((t) => ({ ...t }));
      if (i % 3 === 0) c[1].value = `${old[i].toUpperCase()}!`;
      return i === 4 ? { ...r, conversations: c, answers: [...Array(4).fill(old[i]), ...Array(6).fill('zzz')] } : { ...r, conversations: c };
    });
    data = path.join(dir, 'scored.json');
    fs.writeFileSync(data, JSON.stringify(scored));
    recs = scored;
  }, 120_000);

  /** The former path's numbers on the same answers: exact match, or the soft accuracy for 10 answers; per category and group. */
  function oneStepScore(preds: string[]) {
    const per = recs.map((r, i) => (r.answers?.length === 10 ? vqaSoftAccuracy(preds[i], r.answers) : exactMatch(preds[i], r.conversations[1].value)));
    const agg = (key: (r: Rec) => string) => {
      const m: Record<string, { sum: number; count: number }> = {};
      recs.forEach((r, i) => {
        const k = key(r);
        m[k] ??= { sum: 0, count: 0 };
        m[k].sum += per[i];
        m[k].count++;
      });
      return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { accuracy: v.sum / v.count, count: v.count }]));
    };
    return { accuracy: per.reduce((a, b) => a + b, 0) / per.length, count: per.length, categories: agg((r) => r.category ?? 'all'), groups: agg((r) => r.group!) };
  }

  it('writes the answers the one-step path generated, LLaVA lines keyed by record id, and scores them as it did', async () => {
    const answers = path.join(dir, 'answers', 'test.jsonl');
    const r = await evaluateFile(model, tok, data, fx.imageFolder, { maxNewTokens: 4, answers, modelId: 'tiny' });
    const got = lines(answers);
    expect(got.map((l) => l.question_id)).toEqual(recs.map((x) => x.id));
    expect(got.map((l) => l.text)).toEqual(old.map((t) => t.trim()));
    expect(new Set(old).size).toBeGreaterThan(5); // the model's answers differ between questions: a real comparison
    // the prompt line is the question without "<image>" (what model_vqa_loader writes); model_id as given
    expect(got[0].prompt).toBe(recs[0].conversations[0].value.replace('<image>\n', ''));
    expect(got.every((l) => l.model_id === 'tiny')).toBe(true);
    const want = oneStepScore(old);
    expect(want.accuracy).toBeGreaterThan(0.3); // every third record right, and a 0.9 soft score
    expect({ accuracy: r.accuracy, count: r.count, categories: r.categories, groups: r.groups }).toEqual(want);
    expect(Object.keys(r.groups).sort()).toEqual(['non-relational', 'relational']); // the records' `group`
    expect(r.skipped).toEqual([]);
    expect([r.answers, r.resumed]).toEqual([answers, 0]);
    // the same numbers from the answers file alone, and nothing answered again on a rerun
    const s = scoreLlavaAnswers(answers, data);
    expect({ ...s, answers: null }).toEqual({ ...r, answers: null });
    const again = await evaluateFile(model, tok, data, fx.imageFolder, { maxNewTokens: 4, answers, modelId: 'tiny' });
    expect(again.resumed).toBe(recs.length);
    // another model's rerun does not take these answers as its own
    await expect(evaluateFile(model, tok, data, fx.imageFolder, { maxNewTokens: 4, answers })).rejects.toThrow(`answers ${answers} line 1 is an answer of model_id "tiny", not of "vwlmm"`);
    expect(lines(answers).length).toBe(recs.length);
    expect(again.accuracy).toBe(r.accuracy);
    // other batches (5 prompts, within answerQuestions' flush window) give the same answers: the demo's 4,000 questions
    // are flushed in windows of 1,024, batched otherwise than in one generate call
    const small = path.join(dir, 'batch5.jsonl');
    await evaluateFile(model, tok, data, fx.imageFolder, { maxNewTokens: 4, answers: small, batchSize: 5 });
    expect(lines(small).map((l) => l.text)).toEqual(got.map((l) => l.text));
    const q = path.join(dir, 'one.jsonl');
    fs.writeFileSync(q, JSON.stringify({ question_id: 1, image: recs[0].image, text: 'x' }) + '\n');
    await expect(answerQuestions(model, tok, { questions: q, imageFolder: fx.imageFolder, answers: path.join(dir, 'one_answers.jsonl'), modelId: 'm', flushEvery: 0 })).rejects.toThrow('answer: flushEvery must be an integer >= 1, got 0');
  });

  it('the default budget (16 tokens) and a temporary answers file', async () => {
    const first = recs.slice(0, 12);
    const want = await oneStepAnswers(model, tok, first, fx.imageFolder, 16);
    const r = await evaluateFile(model, tok, data, fx.imageFolder, { limit: 12 });
    expect(r.answers).toBeNull();
    expect(r.count).toBe(12);
    const per = first.map((x, i) => (x.answers?.length === 10 ? vqaSoftAccuracy(want[i], x.answers) : exactMatch(want[i], x.conversations[1].value)));
    expect(r.accuracy).toBeCloseTo(per.reduce((a, b) => a + b, 0) / 12, 12);
    // and the very answers, through a kept file
    const kept = path.join(dir, 'limit12.jsonl');
    await evaluateFile(model, tok, data, fx.imageFolder, { limit: 12, answers: kept });
    expect(lines(kept).map((l) => l.text)).toEqual(want.map((t) => t.trim()));
  });

  it('skips what it cannot ask, with the reason; --strict names the data file and record', async () => {
    const base = recs[2];
    const bad: Rec[] = [
      recs[0],
      { ...base, id: 'multi', conversations: [base.conversations[0], base.conversations[1], { from: 'human', value: 'and?' }, { from: 'gpt', value: 'no' }] },
      { ...base, id: 'noimg', image: 'images/none.png' },
      { ...recs[0] }, // the same id again
      { ...base, id: 'open', conversations: [base.conversations[0]] },
    ];
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify(bad));
    const r = await evaluateFile(model, tok, file, fx.imageFolder, { maxNewTokens: 2 });
    expect(r.count).toBe(1);
    const reasons = Object.fromEntries(r.skipped.map((s) => [s.id, s.reason]));
    expect(reasons.multi).toMatch(/not one human question and its answer \(4 turns\)/);
    expect(reasons.noimg).toMatch(/image images\/none\.png: .*(not found|no such file|ENOENT)/i);
    expect(reasons[recs[0].id]).toBe('a second record with this id');
    expect(reasons.open).toBe('the last turn is not an assistant answer');
    await expect(evaluateFile(model, tok, file, fx.imageFolder, { maxNewTokens: 2, strict: true })).rejects.toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} record "noimg": image images/none\\.png`));
  });

  it('nothing scored (an empty answers file) is an accuracy of NaN over 0 records, not 0%', () => {
    const f = path.join(dir, 'empty.jsonl');
    fs.writeFileSync(f, '');
    const r = scoreLlavaAnswers(f, data);
    expect(r.count).toBe(0);
    expect(r.accuracy).toBeNaN();
  });

  it('a broken, foreign or repeated answer line is an error naming the file and line', () => {
    const f = path.join(dir, 'broken.jsonl');
    const ok = (id: string) => JSON.stringify({ question_id: id, prompt: 'q', text: 'square', answer_id: 'x', model_id: 'm', metadata: {} });
    fs.writeFileSync(f, `${ok(recs[0].id)}\n{"question_id": \n`);
    expect(() => scoreLlavaAnswers(f, data)).toThrow(`answers ${f} line 2: not JSON`);
    fs.writeFileSync(f, `${ok(recs[0].id)}\n${ok('nope')}\n`);
    expect(() => scoreLlavaAnswers(f, data)).toThrow(`answers ${f} line 2: question_id "nope" is not the id of a record of ${data}`);
    // a question file given as the data: it holds no record, which the error says
    const qfile = path.join(dir, 'as_questions.jsonl');
    fs.writeFileSync(qfile, `${JSON.stringify({ question_id: recs[0].id, image: 'a.png', text: 'q' })}\n`);
    expect(() => scoreLlavaAnswers(f, qfile)).toThrow(`answers ${f} line 1: question_id "${recs[0].id}" is not the id of a record of ${qfile} (no LLaVA record of it could be read:`);
    fs.writeFileSync(f, `${ok(recs[1].id)}\n${ok(recs[0].id)}\n${ok(recs[1].id)}\n`);
    expect(() => scoreLlavaAnswers(f, data)).toThrow(`answers ${f} line 3: a second answer to question_id "${recs[1].id}" (the first: answers ${f} line 1)`);
    fs.writeFileSync(f, `${ok(recs[0].id)}\n${JSON.stringify({ question_id: recs[1].id })}\n`);
    expect(() => scoreLlavaAnswers(f, data)).toThrow(`answers ${f} line 2: text must be a string`);
    // a partial file: the records without an answer are listed, not counted
    fs.writeFileSync(f, `${ok(recs[1].id)}\n`);
    const r = scoreLlavaAnswers(f, data);
    expect(r.count).toBe(1);
    expect(r.skipped.length).toBe(recs.length - 1);
    expect(r.skipped[0]).toEqual({ id: recs[0].id, reason: `no answer in ${f}` });
  });

  it('vwlmm eval --answers keeps the answers, and vwlmm score sort-of-clevr scores them alone', () => {
    const answers = path.join(dir, 'cli', 'answers.jsonl');
    const e = cli('eval', '--checkpoint', checkpoint, '--data', data, '--image-folder', fx.imageFolder, '--max-new-tokens', '4', '--answers', answers);
    expect(e.status, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/^accuracy \d+\.\d\d% over 60 records\n/);
    expect(e.stdout).toContain(`answers ${answers}\n`);
    expect(lines(answers).map((l) => l.text)).toEqual(old.map((t) => t.trim()));
    expect(lines(answers)[0].model_id).toBe('wide');
    const want = oneStepScore(old);
    const s = cli('score', 'sort-of-clevr', '--answers', answers, '--data', data, '--json');
    expect(s.status, s.stderr).toBe(0);
    const j = JSON.parse(s.stdout) as { accuracy: number; count: number; categories: unknown; groups: unknown; skipped: number };
    expect(j.accuracy).toBeCloseTo(want.accuracy, 12);
    expect([j.count, j.skipped, j.categories, j.groups]).toEqual([60, 0, want.categories, want.groups]);
    // the text summary is eval's
    const t = cli('score', 'sort-of-clevr', '--answers', answers, '--data', data);
    expect(t.stdout).toBe(e.stdout);
    // a rerun of eval resumes the file
    const again = cli('eval', '--checkpoint', checkpoint, '--data', data, '--image-folder', fx.imageFolder, '--max-new-tokens', '4', '--answers', answers);
    expect(again.stdout).toContain(`answers ${answers} (60 of them there already)`);
    fs.writeFileSync(answers, fs.readFileSync(answers, 'utf8').replace(/\n/, '\n{oops\n'));
    const broken = cli('score', 'sort-of-clevr', '--answers', answers, '--data', data);
    expect(broken.status).toBe(2);
    expect(broken.stderr).toContain(`answers ${answers} line 2: not JSON`);
  });
});
