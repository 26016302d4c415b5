// `vwlmm score gqa` and `vwlmm score mme` against the official code, run as is by scripts/make_gqa_mme_fixtures.py
// on the answers in tests/fixtures/eval/{gqa,mme}: GQA's eval.py (after LLaVA's convert_gqa_for_eval.py) and MME's
// convert_answer_to_mme.py + calculation.py, printed output and written files byte for byte; and the errors for
// answers they cannot score.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { convertAnswersToMME, gqaSubmission, MME_SUBTASKS, scoreGQA, scoreMME } from '../../src';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const fx = path.join(root, 'tests', 'fixtures', 'eval');
const tmp = tempDirs('gqa_mme');
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
const read = (...p: string[]) => fs.readFileSync(path.join(fx, ...p), 'utf8');

const gqa = path.join(fx, 'gqa');
const gqaAnswers = path.join(gqa, 'answers.jsonl'), gqaQuestions = path.join(gqa, 'testdev_balanced_questions.json');
/** answers.jsonl without the lines of the questions `drop` selects, as the fixture script derived its other runs. */
function gqaAnswersWithout(drop: (id: string) => boolean): string {
  const file = path.join(tmp(), 'answers.jsonl');
  fs.writeFileSync(file, read('gqa', 'answers.jsonl').split('\n').filter((l) => l === '' || !drop(JSON.parse(l).question_id)).join('\n'));
  return file;
}

describe("GQA's eval.py (testdev_balanced, as LLaVA-1.5 runs it)", () => {
  it('scoreGQA prints what eval.py prints; with --consistency too', () => {
    const r = scoreGQA(gqaAnswers, gqaQuestions);
    expect(r.report).toBe(read('gqa', 'expected.txt'));
    expect(r.questions).toBe(48);
    expect(r.consistency).toBeNull();
    // the printed numbers are these, rounded
    expect(r.report).toContain(`Accuracy: ${r.accuracy.toFixed(2)}%`);
    expect(Object.keys(r.byStructuralType)).toEqual(['choose', 'compare', 'logic', 'query', 'verify']);
    expect(Object.values(r.byStructuralType).reduce((n, g) => n + g.questions, 0)).toBe(48);
    const c = scoreGQA(gqaAnswers, gqaQuestions, { consistency: true });
    expect(c.report).toBe(read('gqa', 'expected_consistency.txt'));
    expect(c.consistency).toBeGreaterThan(0);
  });

  it('unbalanced questions need no answer; a balanced one does (an error naming it, where eval.py raises)', () => {
    const questions = JSON.parse(read('gqa', 'testdev_balanced_questions.json')) as Record<string, { isBalanced: boolean }>;
    expect(scoreGQA(gqaAnswersWithout((id) => !questions[id].isBalanced), gqaQuestions).report).toBe(read('gqa', 'expected_balanced.txt'));
    const missing = /no prediction for question (\S+)\. /.exec(read('gqa', 'expected_missing.txt'))![1];
    expect(() => scoreGQA(gqaAnswersWithout((id) => id === missing), gqaQuestions)).toThrow(new RegExp(`no answer for question ${missing} of .*testdev_balanced_questions.json`));
    // --consistency needs the unbalanced ones as well
    expect(() => scoreGQA(gqaAnswersWithout((id) => !questions[id].isBalanced), gqaQuestions, { consistency: true })).toThrow(/every question with --consistency/);
  });

  it('vwlmm score gqa prints the same, --json the numbers, --submission writes the predictions file', () => {
    const c = cli('score', 'gqa', '--answers', gqaAnswers, '--questions', gqaQuestions);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(read('gqa', 'expected.txt'));
    const out = path.join(tmp(), 'sub', 'testdev_balanced_predictions.json');
    const j = cli('score', 'gqa', '--answers', gqaAnswers, '--questions', gqaQuestions, '--consistency', '--json', '--submission', out);
    expect(j.status, j.stderr).toBe(0);
    const { report, ...numbers } = scoreGQA(gqaAnswers, gqaQuestions, { consistency: true });
    expect(report).not.toBe('');
    expect(JSON.parse(j.stdout)).toEqual(numbers);
    expect(fs.readFileSync(out, 'utf8')).toBe(gqaSubmission(gqaAnswers).file);
    const none = cli('score', 'gqa', '--answers', gqaAnswers);
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/give --questions to score the answers, --submission/);
  });

  it('a broken answer line or question gives an error naming the file, line or question', () => {
    const dir = tmp();
    const ans = path.join(dir, 'a.jsonl');
    fs.writeFileSync(ans, read('gqa', 'answers.jsonl').split('\n').slice(0, 3).join('\n') + '\n{"question_id": "1"}\n');
    expect(() => scoreGQA(ans, gqaQuestions)).toThrow(/answers .*a\.jsonl line 4: text must be a string/);
    const questions = JSON.parse(read('gqa', 'testdev_balanced_questions.json')) as Record<string, Record<string, unknown>>;
    const first = Object.keys(questions).find((id) => questions[id].isBalanced)!; // eval.py reads only these' types
    delete questions[first].types;
    const q = path.join(dir, 'q.json');
    fs.writeFileSync(q, JSON.stringify(questions));
    expect(() => scoreGQA(gqaAnswers, q)).toThrow(new RegExp(`questions .*q\\.json: question ${first}: no "types"`));
    fs.writeFileSync(q, '[]');
    expect(() => scoreGQA(gqaAnswers, q)).toThrow(/expected GQA's \{questionId: question\} object/);
  });
});

const mme = path.join(fx, 'mme');
const mmeAnswers = path.join(mme, 'answers.jsonl'), bench = path.join(mme, 'benchmark'), mmeQuestions = path.join(mme, 'llava_mme.jsonl');

describe("MME's convert_answer_to_mme.py + calculation.py", () => {
  it('writes the files convert_answer_to_mme.py writes and prints what calculation.py prints', () => {
    const files = convertAnswersToMME(mmeAnswers, bench);
    expect([...files.keys()].sort()).toEqual(fs.readdirSync(path.join(mme, 'expected')).map((f) => f.slice(0, -4)).sort());
    for (const [category, text] of files) expect(text, category).toBe(read('mme', 'expected', `${category}.txt`));
    const r = scoreMME(mmeAnswers, bench, mmeQuestions);
    expect(r.report).toBe(read('mme', 'expected.txt'));
    expect(Object.keys(r.perception.subtasks)).toEqual([...MME_SUBTASKS.Perception]);
    expect(Object.keys(r.cognition.subtasks)).toEqual([...MME_SUBTASKS.Cognition]);
    for (const s of [...Object.values(r.perception.subtasks), ...Object.values(r.cognition.subtasks)]) expect(s.score).toBeCloseTo((s.acc + s.accPlus) * 100, 10);
    expect(Object.values(r.perception.subtasks).some((s) => s.other > 0)).toBe(true); // answers that read as neither
  });

  it('vwlmm score mme prints the same, writes the files with --out, --json the numbers', () => {
    const out = path.join(tmp(), 'exp');
    const c = cli('score', 'mme', '--answers', mmeAnswers, '--benchmark', bench, '--questions', mmeQuestions, '--out', out);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toBe(read('mme', 'expected.txt'));
    for (const f of fs.readdirSync(path.join(mme, 'expected'))) expect(fs.readFileSync(path.join(out, f), 'utf8'), f).toBe(read('mme', 'expected', f));
    const j = cli('score', 'mme', '--answers', mmeAnswers, '--benchmark', bench, '--json');
    expect(j.status, j.stderr).toBe(0);
    const r = scoreMME(mmeAnswers, bench);
    expect(JSON.parse(j.stdout)).toEqual({ perception: r.perception, cognition: r.cognition });
  });

  it('a missing or broken answer gives an error naming it, where calculation.py would pair the wrong lines or crash', () => {
    const lines = read('mme', 'answers.jsonl').split('\n').filter((l) => l !== '');
    const dir = tmp();
    const write = (ls: string[]) => {
      const f = path.join(dir, `a${Math.random().toString(36).slice(2)}.jsonl`);
      fs.writeFileSync(f, ls.join('\n') + '\n');
      return f;
    };
    const dropped = JSON.parse(lines[5]) as { question_id: string; prompt: string };
    const missing = write(lines.filter((_, i) => i !== 5));
    expect(() => scoreMME(missing, bench, mmeQuestions)).toThrow(new RegExp(`no answer to question "${dropped.question_id}" .*llava_mme\\.jsonl line 6`));
    // without the questions file: the odd count or the mismatched pair
    expect(() => scoreMME(missing, bench)).toThrow(/an odd number|are for images .* as one image's two questions/);
    // an image's second answer moved after the next image's of its category
    const category = (l: string) => (JSON.parse(l) as { question_id: string }).question_id.split('/')[0];
    const second = lines.findIndex((l, i) => i % 2 === 1 && lines.filter((m) => category(m) === category(l)).length >= 4);
    const next = lines.map((_, i) => i).filter((i) => i > second && category(lines[i]) === category(lines[second])); // the next image's two
    const moved = lines.flatMap((l, i) => (i === second ? [] : i === next[1] ? [l, lines[second]] : [l]));
    expect(() => scoreMME(write(moved), bench)).toThrow(/are for images .*; calculation.py would score them as one image's two questions/);
    const multiline = [...lines];
    multiline[3] = JSON.stringify({ ...JSON.parse(lines[3]), text: 'Yes.\nThe image shows it.' });
    expect(() => scoreMME(write(multiline), bench)).toThrow(/line 4: the answer has a tab or a line break/);
    const unknown = [...lines];
    unknown[0] = JSON.stringify({ ...JSON.parse(lines[0]), prompt: 'Is this a question MME never asked?' });
    expect(() => convertAnswersToMME(write(unknown), bench)).toThrow(/line 1: the MME benchmark .* has no question "Is this a question MME never asked\?  Please answer yes or no\." in /); // the two-space form, tried last
    expect(() => scoreMME(write(['{"question_id": 3, "prompt": "x", "text": "Yes"}']), bench)).toThrow(/line 1: expected a string question_id/);
    expect(() => scoreMME(write(lines.filter((l) => !l.includes('"OCR/'))), bench)).toThrow(/no answers for MME subtask OCR/);
    expect(() => scoreMME(mmeAnswers, path.join(dir, 'nope'))).toThrow(/MME benchmark .*nope is not a directory/);
  });
});
