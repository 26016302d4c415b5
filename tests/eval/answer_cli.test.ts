// `vwlmm answer`: LLaVA's question JSONL in, its answers JSONL out (question_id, prompt = the question, text, answer_id,
// model_id, metadata); LLaVA's chunking; resumable (questions already answered are skipped; a line cut short by a kill is
// dropped and redone); broken lines and missing images counted by reason with the first example, --strict stops.
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { answerQuestions, chunkOf, modelIdOf } from '../../src/eval/answer';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { TextTokenizer } from '../../src/data/tokenizer';
import { cli, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('answer');

describe('vwlmm answer', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  let dir: string, questions: string;
  let ids: number[];
  beforeAll(() => {
    dir = tmp();
    fx = writeCliFixture(dir, { images: 3 });
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image: string; conversations: { from: string; value: string }[] }[];
    const lines = recs.slice(0, 7).map((r, i) => JSON.stringify({ question_id: 100 + i, image: r.image, text: r.conversations[0].value.replace('<image>\n', '').replace('\n<image>', ''), category: 'x' }));
    ids = recs.slice(0, 7).map((_, i) => 100 + i);
    questions = path.join(dir, 'questions.jsonl');
    fs.writeFileSync(questions, lines.join('\n') + '\n');
  });

  it("LLaVA's chunks: ceil(n / k) each, in order, covering every question once", () => {
    const xs = [...Array(10).keys()];
    expect([0, 1, 2].map((k) => chunkOf(xs, 3, k))).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(chunkOf(xs, 4, 3)).toEqual([9]);
    expect(chunkOf([], 2, 1)).toEqual([]);
    expect(() => chunkOf(xs, 2, 2)).toThrow(/chunkIdx must be in \[0, 2\)/);
  });

  it('writes one LLaVA answer line per question, in chunks, and a rerun adds nothing', () => {
    const out = path.join(dir, 'answers.jsonl');
    for (const k of [0, 1]) {
      const r = cli('answer', '--checkpoint', fx.init, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', out, '--num-chunks', '2', '--chunk-idx', String(k), '--max-new-tokens', '3', '--batch-size', '3');
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/answers\/s, [\d.]+ tokens\/s, ETA/);
    }
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.question_id)).toEqual(ids);
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['question_id', 'prompt', 'text', 'answer_id', 'model_id', 'metadata']);
      expect(l.model_id).toBe('init');
      expect(l.answer_id).toMatch(/^[2-9A-HJ-NP-Za-km-z]{22}$/);
      expect(typeof l.text).toBe('string');
      expect(l.text).toBe(l.text.trim());
    }
    const q0 = JSON.parse(fs.readFileSync(questions, 'utf8').split('\n')[0]);
    expect(lines[0].prompt).toBe(q0.text); // LLaVA writes the question, not the templated prompt
    const again = cli('answer', '--checkpoint', fx.init, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', out, '--max-new-tokens', '3');
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/answered 0 of 7 questions \(7 already in/);
    expect(again.stdout).not.toMatch(/answers? no question/);
    expect(fs.readFileSync(out, 'utf8').trim().split('\n').length).toBe(7);
    // a question edited since: answered anew, and its old line, kept, is counted
    const edited = path.join(dir, 'edited.jsonl'), copy = path.join(dir, 'edited_answers.jsonl');
    const qs = fs.readFileSync(questions, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    qs[2].text = `${qs[2].text} (edited)`;
    fs.writeFileSync(edited, qs.map((q) => JSON.stringify(q)).join('\n') + '\n');
    fs.copyFileSync(out, copy);
    const changed = cli('answer', '--checkpoint', fx.init, '--questions', edited, '--image-folder', fx.imageFolder, '--answers', copy, '--max-new-tokens', '3');
    expect(changed.status, changed.stderr).toBe(0);
    expect(changed.stdout).toContain(`answered 1 of 7 questions (6 already in ${copy})`);
    expect(changed.stdout).toContain(`; 1 line of ${copy} answers no question of ${edited} (another question file's, or questions changed since`);
    // another checkpoint (a run's checkpoint folder: model_id "<run>_checkpoint", as LLaVA names checkpoint folders)
    // does not resume this model's answers as its own
    const run = path.join(dir, 'run2'), ck = path.join(run, 'checkpoint');
    fs.mkdirSync(run, { recursive: true });
    fs.cpSync(fx.init, ck, { recursive: true });
    const other = cli('answer', '--checkpoint', ck, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', out, '--max-new-tokens', '3');
    expect(other.status).toBe(2);
    expect(other.stderr).toContain(`answers ${out} line 1 is an answer of model_id "init", not of "run2_checkpoint": a rerun resumes only its own model's answers`);
    expect(fs.readFileSync(out, 'utf8').trim().split('\n').length).toBe(7);
    // a LoRA adapter's answers are its folder's model (LLaVA's LoRA evaluation: --model-path the adapter folder)
    expect(modelIdOf(ck)).toBe('run2_checkpoint');
    expect(modelIdOf(ck, path.join(dir, 'lora-r8'))).toBe('lora-r8');
    expect(modelIdOf(fx.init, path.join(dir, 'lora', 'checkpoint-500'))).toBe('lora_checkpoint-500');
  });

  it("ScienceQA's loader (model_vqa_science): the first turn without <image>, and its prompt as eval_science_qa reads it", async () => {
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image: string }[];
    const file = path.join(dir, 'sqa_questions.json');
    fs.writeFileSync(file, JSON.stringify([
      { id: 'p1', image: recs[0].image, conversations: [{ from: 'human', value: '<image>\n  Which shape is red?\nA. circle\nB. square  ' }, { from: 'gpt', value: 'A' }] },
      { id: 'p2', conversations: [{ from: 'human', value: 'Which is a colour?\nA. red\nB. left' }, { from: 'gpt', value: 'A' }] },
      { id: 'p3', conversations: [] },
      5, null,
    ]));
    const ck = loadCheckpoint(fx.init);
    const out = path.join(dir, 'sqa_answers.jsonl');
    const r = await answerQuestions(ck.model, new TextTokenizer(ck.tokenizerPath!), { questions: file, format: 'science', singlePredPrompt: true, imageFolder: fx.imageFolder, answers: out, modelId: 'm', maxNewTokens: 2 });
    expect(r.answered).toBe(2);
    expect(r.skipped.map((s) => [s.line, s.questionId])).toEqual([[3, 'p3'], [4, undefined], [5, undefined]]);
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const suffix = "\nAnswer with the option's letter from the given choices directly.";
    expect(lines.map((l) => [l.question_id, l.prompt])).toEqual([
      ['p1', `<image>\nWhich shape is red?\nA. circle\nB. square${suffix}`],
      ['p2', `Which is a colour?\nA. red\nB. left${suffix}`],
    ]);
    ck.model.dispose();
  });

  it("resumes per question, not per id (MME's two questions of an image share one), in question order, as LLaVA writes lines", async () => {
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image: string }[];
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(ck.tokenizerPath!);
    // an image's two questions under one id, as llava_mme.jsonl has them; the last pair a repeated question
    const qs = [
      { question_id: 'existence/a.png', image: recs[0].image, text: 'is there a circle?' },
      { question_id: 'existence/a.png', image: recs[0].image, text: 'is there a square?' },
      { question_id: 'existence/b.png', image: 'later.png', text: 'is it red? café' },
      { question_id: 'existence/b.png', image: 'later.png', text: 'is it blue?' },
      { question_id: 'existence/c.png', image: recs[2].image, text: 'is it big?' },
      { question_id: 'existence/c.png', image: recs[2].image, text: 'is it big?' },
    ];
    const qfile = path.join(dir, 'pairs.jsonl');
    fs.writeFileSync(qfile, qs.map((q) => JSON.stringify(q)).join('\n') + '\n');
    const ask = (answers: string) => answerQuestions(ck.model, tok, { questions: qfile, imageFolder: fx.imageFolder, answers, modelId: 'm', maxNewTokens: 2, batchSize: 3 });
    const pairs = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => { const r = JSON.parse(l); return [r.question_id, r.prompt]; });
    // a run stopped between an image's two questions
    fs.copyFileSync(path.join(fx.imageFolder, recs[1].image), path.join(fx.imageFolder, 'later.png'));
    const full = path.join(dir, 'pairs_full.jsonl'), part = path.join(dir, 'pairs_part.jsonl');
    expect((await ask(full)).answered).toBe(6);
    fs.writeFileSync(part, fs.readFileSync(full, 'utf8').split('\n').slice(0, 3).join('\n') + '\n');
    const r = await ask(part);
    expect([r.answered, r.resumed]).toEqual([3, 3]);
    expect(pairs(part)).toEqual(qs.map((q) => [q.question_id, q.text]));
    // the repeated question is answered twice, and a rerun adds nothing
    fs.writeFileSync(part, fs.readFileSync(full, 'utf8').split('\n').slice(0, 5).join('\n') + '\n');
    expect((await ask(part)).answered).toBe(1);
    expect((await ask(part)).answered).toBe(0);
    expect(pairs(part)).toEqual(qs.map((q) => [q.question_id, q.text]));
    // questions skipped for their image, answered by a rerun, are put back in question order
    fs.rmSync(path.join(fx.imageFolder, 'later.png'));
    const later = path.join(dir, 'pairs_later.jsonl');
    expect((await ask(later)).skipped.map((s) => s.line)).toEqual([3, 4]);
    fs.copyFileSync(path.join(fx.imageFolder, recs[1].image), path.join(fx.imageFolder, 'later.png'));
    expect((await ask(later)).answered).toBe(2);
    expect(pairs(later)).toEqual(qs.map((q) => [q.question_id, q.text]));
    // the same through a symbolic link: the reordering replaces the file the link points to, and the link stays
    fs.rmSync(path.join(fx.imageFolder, 'later.png'));
    const target = path.join(dir, 'pairs_target.jsonl'), link = path.join(dir, 'pairs_link.jsonl');
    fs.symlinkSync(target, link);
    await ask(link);
    fs.copyFileSync(path.join(fx.imageFolder, recs[1].image), path.join(fx.imageFolder, 'later.png'));
    expect((await ask(link)).answered).toBe(2);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(pairs(target)).toEqual(qs.map((q) => [q.question_id, q.text]));
    fs.rmSync(path.join(fx.imageFolder, 'later.png'));
    // json.dumps's separators and ASCII escapes, byte for byte
    const line = fs.readFileSync(later, 'utf8').split('\n')[2];
    const rec = JSON.parse(line);
    expect(line).toBe(`{"question_id": "existence/b.png", "prompt": "is it red? caf\\u00e9", "text": ${JSON.stringify(rec.text).replace(/[^ -~]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}, "answer_id": "${rec.answer_id}", "model_id": "m", "metadata": {}}`);
    ck.model.dispose();
  });

  it('a line cut short by a kill is redone; broken lines and missing images are counted, --strict stops', async () => {
    const out = path.join(dir, 'cut.jsonl');
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(ck.tokenizerPath!);
    await answerQuestions(ck.model, tok, { questions, imageFolder: fx.imageFolder, answers: out, modelId: 'm', maxNewTokens: 2, numChunks: 7, chunkIdx: 0 });
    const first = fs.readFileSync(out, 'utf8');
    fs.writeFileSync(out, first + first.slice(0, 20)); // half a line: what a kill during a write leaves
    const r = await answerQuestions(ck.model, tok, { questions, imageFolder: fx.imageFolder, answers: out, modelId: 'm', maxNewTokens: 2, batchSize: 4 });
    expect(r.resumed).toBe(1);
    expect(r.answered).toBe(6);
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l).question_id);
    expect(lines).toEqual(ids);
    // a whole last record whose newline a kill left unwritten is kept (and gets its newline), not answered again
    const whole = fs.readFileSync(out, 'utf8');
    fs.writeFileSync(out, whole.slice(0, -1));
    expect((await answerQuestions(ck.model, tok, { questions, imageFolder: fx.imageFolder, answers: out, modelId: 'm', maxNewTokens: 2 })).answered).toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toBe(whole);
    // a file that is not this command's loses no byte: a user's notes, another model's answers, a question file
    const ask = (answers: string) => answerQuestions(ck.model, tok, { questions, imageFolder: fx.imageFolder, answers, modelId: 'm', maxNewTokens: 2 });
    const notes = path.join(dir, 'notes.txt'), theirs = path.join(dir, 'theirs.jsonl'), qcopy = path.join(dir, 'qcopy.jsonl');
    fs.writeFileSync(notes, 'my notes, no newline');
    fs.writeFileSync(theirs, whole.replace(/"model_id": "m"/g, '"model_id": "other"').slice(0, -1));
    fs.writeFileSync(qcopy, fs.readFileSync(questions, 'utf8').slice(0, -1));
    const kept = [notes, theirs, qcopy].map((f) => fs.readFileSync(f, 'utf8'));
    await expect(ask(notes)).rejects.toThrow(`answers ${notes} line 1 is not JSON (`);
    await expect(ask(theirs)).rejects.toThrow(`answers ${theirs} line 1 is an answer of model_id "other", not of "m"`);
    await expect(ask(qcopy)).rejects.toThrow(`answers ${qcopy} line 1 is an answer of model_id undefined, not of "m"`);
    expect([notes, theirs, qcopy].map((f) => fs.readFileSync(f, 'utf8'))).toEqual(kept);
    // a first record cut inside its first bytes is still this command's (a kill during the first write)
    const early = path.join(dir, 'early.jsonl');
    fs.writeFileSync(early, '{"questi');
    expect((await ask(early)).answered).toBe(7);
    expect(fs.readFileSync(early, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).question_id)).toEqual(ids);
    fs.writeFileSync(notes, '[1, 2]\n');
    await expect(ask(notes)).rejects.toThrow(`answers ${notes} line 1 is not an answer record (an object with a question_id): not a file this command wrote`);
    // a folder that cannot be made names --answers and why
    await expect(ask(path.join(notes, 'a.jsonl'))).rejects.toThrow(`answers ${path.join(notes, 'a.jsonl')}: cannot make its folder ${notes}: a file stands where a folder of that path must be`);
    // broken input
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, [JSON.stringify({ question_id: 1, image: 'missing.png', text: 'what?' }), '{oops', JSON.stringify({ question_id: 3, text: 5 }), JSON.stringify({ question_id: 4, text: 'text only?' })].join('\n'));
    const r2 = await answerQuestions(ck.model, tok, { questions: bad, imageFolder: fx.imageFolder, answers: path.join(dir, 'bad_out.jsonl'), modelId: 'm', maxNewTokens: 2 });
    expect(r2.answered).toBe(1);
    expect(r2.skipped.map((s) => s.line)).toEqual([2, 3, 1]);
    expect(r2.skipped[0].reason).toMatch(/^not JSON \(/);
    expect(r2.skipped[1]).toMatchObject({ questionId: 3, reason: 'text must be a string' });
    expect(r2.skipped[2]).toMatchObject({ questionId: 1 });
    expect(r2.skipped[2].reason).toMatch(/^image missing.png: /);
    const c = cli('answer', '--checkpoint', fx.init, '--questions', bad, '--image-folder', fx.imageFolder, '--answers', path.join(dir, 'bad2.jsonl'), '--max-new-tokens', '2');
    expect(c.status, c.stderr).toBe(0);
    // counted by reason, the first of each named (the summary train and eval print too)
    expect(c.stdout).toMatch(/; 3 skipped: 1 not JSON \(first: .*bad.jsonl:2\); 1 text must be a string \(first: .*bad.jsonl:3\); 1 image .*\(first: missing.png\)/);
    const s = cli('answer', '--checkpoint', fx.init, '--questions', bad, '--image-folder', fx.imageFolder, '--answers', path.join(dir, 'bad3.jsonl'), '--strict');
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(/vwlmm: questions .*bad.jsonl line 2: not JSON/);
    expect(s.stderr).not.toMatch(/\n\s+at /);
    ck.model.dispose();
  });
});
