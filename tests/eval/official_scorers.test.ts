// The official scorers against LLaVA-1.5's own code (llava/eval/m4c_evaluator.py, eval_textvqa.py, eval_pope.py),
// run as is by scripts/make_eval_fixtures.py on the fixture answers in tests/fixtures/eval: EvalAI's answer
// processing string for string, the per-question VQA accuracy value for value, Python's float printing digit for
// digit, and `vwlmm score textvqa|pope` printing byte for byte what the official scripts print.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { evalAIAnswer, gqaSubmission, mmvetSubmission, pyFixed, pyRepr, scienceQAAnswerOf, scoreGQA, scorePope, scoreScienceQA, scoreSeed, scoreTextVQA, vizwizSubmission, vqaSoftAccuracy, vqav2Submission } from '../../src';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const fx = path.join(root, 'tests', 'fixtures', 'eval');
const tmp = tempDirs('scorers');
const cases = JSON.parse(fs.readFileSync(path.join(fx, 'evalai.json'), 'utf8')) as {
  processed: [string, string][];
  scores: { pred: string; gt: string[]; score: number }[];
  repr: [number, string][];
  fixed: [number, number, string][];
};
/** A temporary file of JSON lines (an array) or one JSON value. */
const writeTemp = (name: string, v: unknown) => {
  const f = path.join(tmp(), name);
  fs.writeFileSync(f, Array.isArray(v) ? v.map((x) => JSON.stringify(x)).join('\n') + '\n' : JSON.stringify(v));
  return f;
};
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });

describe("LLaVA-1.5's official scoring", () => {
  it("EvalAI's answer processing: every fixture answer as m4c_evaluator processes it", () => {
    expect(cases.processed.length).toBeGreaterThan(200);
    const wrong = cases.processed.filter(([a, want]) => evalAIAnswer(a) !== want).map(([a, want]) => ({ a, want, got: evalAIAnswer(a) }));
    expect(wrong).toEqual([]);
    // the examples of the issue: "2." against "two" scores 1
    expect(vqaSoftAccuracy('2.', Array(10).fill('two'))).toBe(1);
    expect(evalAIAnswer("The dog's bone, isnt it?")).toBe("dog 's bone isn't it");
  });

  it('the VQA accuracy of each prediction equals TextVQAAccuracyEvaluator', () => {
    for (const c of cases.scores) expect(vqaSoftAccuracy(c.pred, c.gt), `${c.pred} vs ${c.gt.join('|')}`).toBe(c.score);
    expect(new Set(cases.scores.map((c) => c.score)).size).toBeGreaterThan(4); // fractions, not only 0 and 1
  });

  it("Python's repr and '%.Nf' of floats (exact ties to even)", () => {
    for (const [x, want] of cases.repr) expect(pyRepr(x), String(x)).toBe(want);
    for (const [x, n, want] of cases.fixed) expect(pyFixed(x, n), `${x} %.${n}f`).toBe(want);
  });

  it('scoreTextVQA prints what eval_textvqa.py prints; vwlmm score textvqa too, and --json', () => {
    const want = fs.readFileSync(path.join(fx, 'textvqa', 'expected.txt'), 'utf8');
    const r = scoreTextVQA(path.join(fx, 'textvqa', 'answers.jsonl'), path.join(fx, 'textvqa', 'annotations.json'));
    expect(r.report).toBe(want);
    expect(r.samples).toBe(60);
    const c = cli('score', 'textvqa', '--answers', path.join(fx, 'textvqa', 'answers.jsonl'), '--annotations', path.join(fx, 'textvqa', 'annotations.json'));
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(want);
    const j = cli('score', 'textvqa', '--answers', path.join(fx, 'textvqa', 'answers.jsonl'), '--annotations', path.join(fx, 'textvqa', 'annotations.json'), '--json');
    expect(JSON.parse(j.stdout)).toEqual({ experiment: 'answers', samples: 60, accuracy: r.accuracy });
    // the experiment's name is os.path.splitext(os.path.basename(f))[0]: leading dots are no extension
    const named = tmp();
    for (const [file, name] of [['.jsonl', '.jsonl'], ['..jsonl', '..jsonl'], ['a.b.jsonl', 'a.b'], ['answers', 'answers'], ['.x.jsonl', '.x']]) {
      fs.copyFileSync(path.join(fx, 'textvqa', 'answers.jsonl'), path.join(named, file));
      expect(scoreTextVQA(path.join(named, file), path.join(fx, 'textvqa', 'annotations.json')).experiment, file).toBe(name);
    }
  });

  it('scorePope prints what eval_pope.py prints; vwlmm score pope too', () => {
    const want = fs.readFileSync(path.join(fx, 'pope', 'expected.txt'), 'utf8');
    const args = [path.join(fx, 'pope', 'answers.jsonl'), path.join(fx, 'pope', 'questions.jsonl'), path.join(fx, 'pope', 'annotations')] as const;
    const r = scorePope(...args);
    expect(r.report).toBe(want);
    expect(r.categories.map((c) => c.category)).toEqual(['adversarial', 'popular', 'random']);
    const c = cli('score', 'pope', '--answers', args[0], '--questions', args[1], '--annotations', args[2]);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(want);
  });

  it('scorePope refuses answers that eval_pope.py would pair with the wrong labels, and a folder without labels', () => {
    const q = path.join(fx, 'pope', 'questions.jsonl'), ann = path.join(fx, 'pope', 'annotations');
    const lines = fs.readFileSync(path.join(fx, 'pope', 'answers.jsonl'), 'utf8').trim().split('\n');
    // one answer missing: the official script zips the rest with the labels shifted by one and prints numbers
    const missing = writeTemp('pope_missing.jsonl', lines.filter((_, i) => i !== 1).map((l) => JSON.parse(l)));
    expect(() => scorePope(missing, q, ann)).toThrow(/pope_missing.jsonl: 29 answers for category adversarial, but coco_pope_adversarial.json labels 30 questions: eval_pope.py pairs them by position/);
    // two answers swapped, where the labels name their images (POPE's do): the pairs' images differ
    const dir = tmp();
    for (const f of fs.readdirSync(ann)) {
      const imageOf = new Map(fs.readFileSync(q, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((r) => [r.question_id, r.image]));
      const labelled = fs.readFileSync(path.join(ann, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((r) => ({ ...r, image: imageOf.get(r.question_id) }));
      fs.writeFileSync(path.join(dir, f), labelled.map((r) => JSON.stringify(r)).join('\n') + '\n');
    }
    expect(scorePope(path.join(fx, 'pope', 'answers.jsonl'), q, dir).report).toBe(fs.readFileSync(path.join(fx, 'pope', 'expected.txt'), 'utf8'));
    const swapped = writeTemp('pope_swapped.jsonl', [lines[1], lines[0], ...lines.slice(2)].map((l) => JSON.parse(l)));
    expect(() => scorePope(swapped, q, dir)).toThrow(/pope_swapped.jsonl line 1: question_id 1 \(image "COCO_1.jpg"\) is answer 1 of category adversarial, but label 1 of coco_pope_adversarial.json is for image "COCO_0.jpg"/);
    expect(() => scorePope(path.join(fx, 'pope', 'answers.jsonl'), q, tmp())).toThrow(/^annotations .* holds no coco_pope_<category>.json file$/);
  });

  it('scoreScienceQA prints and writes what eval_science_qa.py prints and writes; vwlmm score sqa too', () => {
    const dir = path.join(fx, 'sqa');
    const r = scoreScienceQA(dir, path.join(dir, 'answers.jsonl'));
    expect(r.report).toBe(fs.readFileSync(path.join(dir, 'expected.txt'), 'utf8'));
    expect(r.outputFile).toBe(fs.readFileSync(path.join(dir, 'expected_output.json'), 'utf8'));
    expect(r.outputResult).toBe(fs.readFileSync(path.join(dir, 'expected_result.json'), 'utf8'));
    expect(scienceQAAnswerOf('The answer is C')).toBe('FAILED'); // Python's '.' needs a character after the letter
    expect(scienceQAAnswerOf('The answer is C.\r')).toBe('C');
    const out = tmp();
    const c = cli('score', 'sqa', '--base-dir', dir, '--answers', path.join(dir, 'answers.jsonl'), '--output-file', path.join(out, 'o.json'), '--output-result', path.join(out, 'r.json'));
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(r.report);
    expect(fs.readFileSync(path.join(out, 'r.json'), 'utf8')).toBe(r.outputResult);
    // numeric ids in a split that does not list them ascending: the result file keeps the split's order, as the
    // official script's dicts do (eval_science_qa.py's file for these inputs, verbatim)
    const order = tmp();
    fs.writeFileSync(path.join(order, 'pid_splits.json'), '{"test": ["2", "1"]}');
    fs.writeFileSync(path.join(order, 'problems.json'), '{"2": {"question": "q", "choices": ["x", "x"], "answer": 0}, "1": {"question": "q", "choices": ["x", "x"], "answer": 0}}');
    fs.writeFileSync(path.join(order, 'answers.jsonl'), '{"question_id": "2", "prompt": "<image>", "text": "A"}\n{"question_id": "1", "prompt": "<image>", "text": "B"}\n');
    expect(scoreScienceQA(order, path.join(order, 'answers.jsonl')).outputResult)
      .toBe('{\n  "acc": 50.0,\n  "correct": 1,\n  "count": 2,\n  "results": {\n    "2": 0,\n    "1": 1\n  },\n  "outputs": {\n    "2": "A",\n    "1": "B"\n  }\n}');
  });

  it("the submission converters write and print what LLaVA's convert_*.py scripts do; SEED's accuracies too", () => {
    const d = path.join(fx, 'submission');
    const read = (f: string) => fs.readFileSync(path.join(d, f), 'utf8');
    const v = vqav2Submission(path.join(d, 'answers.jsonl'), path.join(d, 'vqav2_test.jsonl'));
    expect(v.report).toBe(read('vqav2_expected.txt'));
    expect(v.file).toBe(read('vqav2_expected.json'));
    const z = vizwizSubmission(path.join(d, 'answers.jsonl'), path.join(d, 'vizwiz_test.jsonl'));
    expect(z.report).toBe(read('vizwiz_expected.txt'));
    expect(z.file).toBe(read('vizwiz_expected.json'));
    expect(gqaSubmission(path.join(d, 'answers_clean.jsonl')).file).toBe(read('gqa_expected.json'));
    expect(mmvetSubmission(path.join(d, 'answers_clean.jsonl')).file).toBe(read('mmvet_expected.json'));
    const sd = scoreSeed(path.join(d, 'seed_answers.jsonl'), path.join(d, 'seed.json'));
    expect(sd.report).toBe(read('seed_expected.txt'));
    expect(sd.file).toBe(read('seed_expected.jsonl'));
    // the CLI writes the same file
    const out = path.join(tmp(), 'up.json');
    const c = cli('score', 'vqav2', '--answers', path.join(d, 'answers.jsonl'), '--questions', path.join(d, 'vqav2_test.jsonl'), '--submission', out);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(read('vqav2_expected.txt'));
    expect(fs.readFileSync(out, 'utf8')).toBe(read('vqav2_expected.json'));
    // a chunk folder, as --help says and as LLaVA's vqav2.sh merges it (cat of 2_0, 2_1): the same upload files
    const chunks = tmp(), lines = read('answers.jsonl').split(/(?<=\n)/);
    const half = Math.ceil(lines.length / 2);
    fs.writeFileSync(path.join(chunks, '2_0.jsonl'), lines.slice(0, half).join(''));
    fs.writeFileSync(path.join(chunks, '2_1.jsonl'), lines.slice(half).join(''));
    expect(vqav2Submission(chunks, path.join(d, 'vqav2_test.jsonl'))).toEqual(v);
    expect(vizwizSubmission(chunks, path.join(d, 'vizwiz_test.jsonl'))).toEqual(z);
    // VizWiz needs every question answered (the script asserts it): an error naming the question
    expect(() => vizwizSubmission(path.join(d, 'answers.jsonl'), path.join(d, 'vqav2_test.jsonl'))).toThrow(/question_id 40 of .*vqav2_test.jsonl has no answer/);
  });

  it("values LLaVA's lines never hold, as the converters take them: null / bool / float / list ids, a null or non-string text, SEED type ids as strings", () => {
    const d = path.join(fx, 'submission');
    const read = (f: string) => fs.readFileSync(path.join(d, f), 'utf8');
    // MM-Vet: str() of the id, the text copied (null stays null)
    expect(mmvetSubmission(path.join(d, 'answers_odd.jsonl')).file).toBe(read('mmvet_odd_expected.json'));
    expect(gqaSubmission(path.join(d, 'answers_odd_gqa.jsonl')).file).toBe(read('gqa_odd_expected.json'));
    // a float id is written as Python writes a float
    const v = vqav2Submission(writeTemp('v.jsonl', [{ question_id: 1.5, text: 'Two' }, { question_id: 2, text: 'no' }]), path.join(d, 'vqav2_odd_test.jsonl'));
    expect(v.file).toBe(read('vqav2_odd_expected.json'));
    // SEED: "10" sorts between "1" and "2", as sorted() orders strings; a null text is wrong and written as null
    const sd = scoreSeed(path.join(d, 'seed_odd_answers.jsonl'), path.join(d, 'seed_odd.json'));
    expect(sd.report).toBe(read('seed_odd_expected.txt'));
    expect(sd.file).toBe(read('seed_odd_expected.jsonl'));
    // true and 1 are one dict key and equal in Python: an answer id true answers question 1 (convert_vqav2's upload
    // for these inputs: [{"question_id": 1, "answer": "2"}]); a SEED text true is right for answer 1
    const split = writeTemp('split.jsonl', [{ question_id: 1 }]);
    expect(vqav2Submission(writeTemp('b.jsonl', [{ question_id: true, text: 'Two' }]), split).file).toBe('[{"question_id": 1, "answer": "2"}]');
    const seedAnn = writeTemp('seed_bool.json', { questions: [{ question_id: '1', question_type_id: 1, data_type: 'image', answer: 1 }, { question_id: '2', question_type_id: 1, data_type: 'video', answer: 'A' }], question_type: { t: 1 } });
    const sb = scoreSeed(writeTemp('seed_bool.jsonl', [{ question_id: 1, text: true }, { question_id: 2, text: 'A' }]), seedAnn);
    expect(sb.file).toBe('{"question_id": "1", "prediction": true}\n{"question_id": "2", "prediction": "A"}\n');
    expect(sb.report).toMatch(/^t: 100\.00%/m);
  });

  it("answer lines without the fields a converter reads are refused where its script fails (KeyError, None.rstrip), naming the line", () => {
    const d = path.join(fx, 'submission');
    const noText = writeTemp('no_text.jsonl', [{ question_id: '201', text: 'Yes.' }, { question_id: '202' }]);
    const noId = writeTemp('no_id.jsonl', [{ question_id: '201', text: 'Yes.' }, { text: 'no' }]);
    const nullText = writeTemp('null_text.jsonl', [{ question_id: '203', text: null }]);
    expect(() => gqaSubmission(noText)).toThrow(/answers .*no_text.jsonl line 2: no text \(convert_gqa_for_eval.py fails on it with a KeyError\)/);
    expect(() => gqaSubmission(noId)).toThrow(/answers .*no_id.jsonl line 2: no question_id \(convert_gqa_for_eval.py/);
    expect(() => gqaSubmission(nullText)).toThrow(/answers .*null_text.jsonl line 1: text must be a string, got null \(convert_gqa_for_eval.py fails on it\)/);
    expect(() => mmvetSubmission(noText)).toThrow(/no_text.jsonl line 2: no text \(convert_mmvet_for_eval.py/);
    expect(() => mmvetSubmission(noId)).toThrow(/no_id.jsonl line 2: no question_id \(convert_mmvet_for_eval.py/);
    expect(() => vqav2Submission(noId, path.join(d, 'vqav2_test.jsonl'))).toThrow(/no_id.jsonl line 2: no question_id \(convert_vqav2_for_submission.py/);
    expect(() => vizwizSubmission(nullText, path.join(d, 'vizwiz_test.jsonl'))).toThrow(/null_text.jsonl line 1: text must be a string, got null \(convert_vizwiz_for_submission.py/);
    // SEED: a row looked up without a text (not "every question answered and none correctly"), a row without an id
    const seed = path.join(d, 'seed_odd.json');
    const rows = (fs.readFileSync(path.join(d, 'seed_odd_answers.jsonl'), 'utf8').trim().split('\n')).map((l) => JSON.parse(l));
    expect(() => scoreSeed(writeTemp('s1.jsonl', rows.map((r, i) => (i === 3 ? { question_id: 3 } : r))), seed)).toThrow(/s1.jsonl line 4: no text \(convert_seed_for_submission.py fails on it with a KeyError\)/);
    expect(() => scoreSeed(writeTemp('s2.jsonl', [...rows, { text: 'A' }]), seed)).toThrow(/s2.jsonl line 10: no question_id \(convert_seed_for_submission.py/);
    // type ids sorted() cannot order
    const ann = JSON.parse(fs.readFileSync(seed, 'utf8'));
    ann.questions[0].question_type_id = 1;
    ann.question_type.one = 1;
    const mixed = writeTemp('mixed.json', ann);
    expect(() => scoreSeed(path.join(d, 'seed_odd_answers.jsonl'), mixed)).toThrow(/annotations .*mixed.json: question_type_id 1 and "2" cannot be ordered \(a string and a number, or null\); Python's sorted\(\) fails/);
  });

  it('a directory where a file is expected, and GQA answers with numbers for ids, are named as such', () => {
    const dir = tmp();
    expect(() => scoreTextVQA(path.join(fx, 'textvqa', 'answers.jsonl'), dir)).toThrow(new RegExp(`^annotations ${dir} is a directory; expected a file$`));
    expect(() => scorePope(path.join(fx, 'pope', 'answers.jsonl'), dir, path.join(fx, 'pope', 'annotations'))).toThrow(new RegExp(`^questions ${dir} is a directory; expected a file$`));
    const q = path.join(fx, 'gqa', 'testdev_balanced_questions.json');
    const first = Object.keys(JSON.parse(fs.readFileSync(q, 'utf8')))[0];
    const ans = writeTemp('gqa_int.jsonl', [{ question_id: Number(first), text: 'yes' }]);
    expect(() => scoreGQA(ans, q)).toThrow(new RegExp(`gqa_int.jsonl line 1 has question_id ${Number(first)}, a number: GQA's question ids are strings`));
  });

  it('answers it cannot score give an error naming the file, line and question', () => {
    const dir = tmp();
    const ans = path.join(dir, 'a.jsonl');
    fs.writeFileSync(ans, JSON.stringify({ question_id: 'nope', prompt: 'What?\nAnswer the question using a single word or phrase.', text: 'x' }) + '\n{broken\n');
    expect(() => scoreTextVQA(ans, path.join(fx, 'textvqa', 'annotations.json'))).toThrow(/line 2: not JSON/);
    fs.writeFileSync(ans, JSON.stringify({ question_id: 'nope', prompt: 'What?\nAnswer the question using a single word or phrase.', text: 'x' }) + '\n');
    expect(() => scoreTextVQA(ans, path.join(fx, 'textvqa', 'annotations.json'))).toThrow(/line 1: no annotation with image_id "nope" and question "what\?"/);
    expect(() => scoreTextVQA(path.join(dir, 'missing.jsonl'), path.join(fx, 'textvqa', 'annotations.json'))).toThrow(/answers .*missing.jsonl does not exist/);
    fs.writeFileSync(ans, 'null\n');
    expect(() => gqaSubmission(ans)).toThrow(/answers .*a.jsonl line 1: expected a JSON object/);
    const badAnn = path.join(dir, 'ann.json');
    fs.writeFileSync(badAnn, JSON.stringify({ data: [null] }));
    expect(() => scoreTextVQA(path.join(fx, 'textvqa', 'answers.jsonl'), badAnn)).toThrow(/an entry of "data" without an answers list/);
    // an annotation of 9 answers: m4c_evaluator.py asserts 10, and the soft accuracy's 1/10 steps assume them
    const tv = JSON.parse(fs.readFileSync(path.join(fx, 'textvqa', 'annotations.json'), 'utf8'));
    tv.data[0].answers.pop();
    fs.writeFileSync(badAnn, JSON.stringify(tv));
    expect(() => scoreTextVQA(path.join(fx, 'textvqa', 'answers.jsonl'), badAnn)).toThrow(new RegExp(`the annotation of image_id ${JSON.stringify(tv.data[0].image_id)} .* holds 9 answers, not TextVQA's 10`));
    // a ScienceQA answer index past its problem's choices (the official script: an IndexError past E, else no answer)
    const sqa = tmp();
    for (const f of ['pid_splits.json', 'problems.json', 'answers.jsonl']) fs.copyFileSync(path.join(fx, 'sqa', f), path.join(sqa, f));
    const problems = JSON.parse(fs.readFileSync(path.join(sqa, 'problems.json'), 'utf8'));
    const pid = Object.keys(problems)[0];
    problems[pid].answer = 7;
    fs.writeFileSync(path.join(sqa, 'problems.json'), JSON.stringify(problems));
    expect(() => scoreScienceQA(sqa, path.join(sqa, 'answers.jsonl'))).toThrow(new RegExp(`ScienceQA problems.json problem ${pid}: answer 7 is not the index of one of its \\d+ choices`));
    fs.writeFileSync(ans, JSON.stringify({ question_id: 'nope', prompt: 'What?\nAnswer the question using a single word or phrase.', text: 'x' }) + '\n');
    const r = cli('score', 'pope', '--answers', ans, '--questions', path.join(fx, 'pope', 'questions.jsonl'), '--annotations', path.join(fx, 'pope', 'annotations'));
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/vwlmm: answers .*a.jsonl line 1: question_id "nope" is not in .*questions.jsonl/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
