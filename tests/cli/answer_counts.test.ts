// `vwlmm answer`'s summary adds up: answered + already in the file + skipped questions = the questions; the lines of
// the question file that are no question are counted apart (they were in "N skipped" beside "A of T questions" that
// did not count them: 6 of 7 questions, 2 skipped).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cli, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('answer-counts');

describe('answer summary', () => {
  it('6 good questions, a broken JSON line and a missing image: 6 of 7 questions, 1 skipped, 1 line apart', () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 2 });
    const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { image: string }[];
    const good = Array.from({ length: 6 }, (_, i) => JSON.stringify({ question_id: i, image: recs[i % recs.length].image, text: 'What shape is the red object?' }));
    const questions = path.join(dir, 'q.jsonl'), answers = path.join(dir, 'a.jsonl');
    fs.writeFileSync(questions, [...good.slice(0, 3), '{"question_id": 6, "text": ', JSON.stringify({ question_id: 7, image: 'missing.png', text: 'x' }), ...good.slice(3)].join('\n') + '\n');
    const r = cli('answer', '--checkpoint', fx.init, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', answers, '--max-new-tokens', '1');
    expect(r.status, r.stderr).toBe(0);
    const m = /^answered (\d+) of (\d+) questions \((\d+) already in .*, (\d+) skipped\) in [\d.]+ s; (\d+) line of .* not read as a question; (\d+) skipped: /.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const [answered, total, resumed, skippedQuestions, lines, skipped] = m!.slice(1).map(Number);
    expect([answered, total, resumed, skippedQuestions, lines, skipped]).toEqual([6, 7, 0, 1, 1, 2]);
    expect(answered + resumed + skippedQuestions).toBe(total);
    expect(skippedQuestions + lines).toBe(skipped);
    expect(r.stdout).toContain(`${questions}:4`); // the broken line, named
  });

  it('a run that can answer none of its questions fails and leaves no answers file behind', () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 1 });
    const questions = path.join(dir, 'q.jsonl'), answers = path.join(dir, 'a.jsonl');
    fs.writeFileSync(questions, [0, 1].map((i) => JSON.stringify({ question_id: i, image: `missing_${i}.png`, text: 'x' })).join('\n') + '\n');
    const r = cli('answer', '--checkpoint', fx.init, '--questions', questions, '--image-folder', fx.imageFolder, '--answers', answers, '--max-new-tokens', '1');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/no question of .*q.jsonl could be answered: 2 skipped/);
    expect(fs.existsSync(answers)).toBe(false);
  });
});
