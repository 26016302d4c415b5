// Answers from a folder of chunk files, as LLaVA-1.5's multi-GPU eval scripts leave them (gqa.sh, vqav2.sh, seed.sh:
// one `<chunks>_<index>.jsonl` per --chunk-idx, then `cat` in index order into merge.jsonl): read as that merge,
// every scorer and converter gives what it gives on the merged file, errors name the chunk file and line, and a
// folder the merge would get wrong (a missing chunk, two runs' chunk counts, an index past the last) is refused.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { gqaSubmission, readAnswers, scoreGQA, scoreTextVQA } from '../../src';
import { answerFiles } from '../../src/eval/answer_source';
import { tempDirs } from '../support/tmp';

const fx = path.join(__dirname, '..', 'fixtures', 'eval');
const tmp = tempDirs('answer-source');

/** The lines of `file` split into `n` chunk files (sizes as LLaVA's split_list makes them) in a fresh folder. */
function chunked(file: string, n: number, extra: Record<string, string> = {}): string {
  const dir = tmp();
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '');
  const size = Math.ceil(lines.length / n);
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, `${n}_${i}.jsonl`), lines.slice(i * size, (i + 1) * size).map((l) => `${l}\n`).join(''));
  for (const [name, text] of Object.entries(extra)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

describe('answers from a folder of chunk files', () => {
  it('reads the chunks in index order (12_2 before 12_10), leaving merge.jsonl and other files alone', () => {
    const file = path.join(fx, 'gqa', 'answers.jsonl');
    const dir = chunked(file, 12, { 'merge.jsonl': 'not read\n', 'notes.txt': 'x' });
    expect(answerFiles(dir).map((f) => path.basename(f))).toEqual(Array.from({ length: 12 }, (_, i) => `12_${i}.jsonl`));
    const merged = readAnswers(file), fromDir = readAnswers(dir);
    expect(fromDir.map((a) => a.rec)).toEqual(merged.map((a) => a.rec));
    const size = Math.ceil(merged.length / 12);
    expect(fromDir[size + 1].at).toBe(`answers ${path.join(dir, '12_1.jsonl')} line 2`);
    expect(answerFiles(file)).toEqual([file]);
  });

  it('scorers and converters give the same output on the folder as on the merged file', () => {
    const gqa = path.join(fx, 'gqa'), questions = path.join(gqa, 'testdev_balanced_questions.json');
    const dir = chunked(path.join(gqa, 'answers.jsonl'), 3);
    expect(scoreGQA(dir, questions)).toEqual(scoreGQA(path.join(gqa, 'answers.jsonl'), questions));
    expect(gqaSubmission(dir)).toEqual(gqaSubmission(path.join(gqa, 'answers.jsonl')));
    const tv = path.join(fx, 'textvqa');
    const fromDir = scoreTextVQA(chunked(path.join(tv, 'answers.jsonl'), 4), path.join(tv, 'annotations.json'));
    const merged = scoreTextVQA(path.join(tv, 'answers.jsonl'), path.join(tv, 'annotations.json'));
    // eval_textvqa.py names the experiment after the file it reads: merge.jsonl, for a chunk folder
    expect(fromDir).toEqual({ ...merged, experiment: 'merge', report: merged.report.replace(/^answers\n/, 'merge\n') });
  });

  it('an error names the chunk file and its line', () => {
    const dir = chunked(path.join(fx, 'gqa', 'answers.jsonl'), 2);
    fs.appendFileSync(path.join(dir, '2_1.jsonl'), '{"question_id": 7}\n');
    const n = fs.readFileSync(path.join(dir, '2_1.jsonl'), 'utf8').split('\n').filter((l) => l).length;
    expect(() => readAnswers(dir)).toThrow(`answers ${path.join(dir, '2_1.jsonl')} line ${n}: text must be a string`);
  });

  it('refuses a folder the merge would get wrong', () => {
    const file = path.join(fx, 'gqa', 'answers.jsonl');
    const missing = chunked(file, 4);
    fs.rmSync(path.join(missing, '4_2.jsonl'));
    expect(() => answerFiles(missing)).toThrow(/chunk 4_2\.jsonl of 4 missing/);
    const twoRuns = chunked(file, 2, { '3_0.jsonl': '' });
    expect(() => answerFiles(twoRuns)).toThrow(/chunk files of 2 and 3 chunks in one folder/);
    const past = chunked(file, 2, { '2_2.jsonl': '' });
    expect(() => answerFiles(past)).toThrow(/2_2\.jsonl is past the last chunk of 2/);
    const dirChunk = chunked(file, 2);
    fs.rmSync(path.join(dirChunk, '2_1.jsonl'));
    fs.mkdirSync(path.join(dirChunk, '2_1.jsonl'));
    expect(() => answerFiles(dirChunk)).toThrow(/2_1\.jsonl is not a file/);
    const none = tmp();
    fs.writeFileSync(path.join(none, 'merge.jsonl'), '');
    expect(() => answerFiles(none)).toThrow(/a folder without chunk files/);
    expect(() => answerFiles(path.join(none, 'absent'))).toThrow(/absent does not exist/);
  });
});
