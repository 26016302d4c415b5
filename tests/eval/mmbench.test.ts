// MMBench as LLaVA-1.5 runs it, against LLaVA's own code run on fixture TSVs (scripts/make_mmbench_fixtures.py:
// model_vqa_mmbench.py's eval_model with a stub model, convert_mmbench_for_submission.py as a script):
// - the questions of every run (English / Chinese, --single-pred-prompt, --all-rounds, chunks): question_id, round_id,
//   prompt, options and option_char as LLaVA wrote them, the full prompts string for string (vicuna_v1, v1,
//   mistral_instruct), and their token ids with the Llama fixture tokenizer (legacy and non-legacy) id for id;
// - `answer --format mmbench` (API and CLI): LLaVA's lines with their key order, the base64 images decoded at LLaVA's
//   sizes, resumed per (question_id, round_id), broken rows counted by column and --strict;
// - the upload file: `score mmbench|mmbench_cn` writes an .xlsx whose cells equal the official one's (as openpyxl reads
//   it, and as our reader reads both files), number text included ("%.16g").
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { answerPrompt, answerQuestions } from '../../src/eval/answer';
import { mmbenchQuestions, mmbenchSubmission, readTable } from '../../src/eval/mmbench';
import { formatG, readXlsx, writeXlsx, XlsxValue } from '../../src/io/xlsx';
import { readZipEntries, readZipEntry, writeZip } from '../../src/io/zip';
import { decodeImage } from '../../src/data/images';
import { TextTokenizer } from '../../src/data/tokenizer';
import type { TemplateName } from '../../src/data/conversation';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { cli, writeCliFixture } from '../train/support/tiny';
import { tempDirs } from '../support/tmp';

const dir = path.join(__dirname, '..', 'fixtures', 'eval', 'mmbench');
const spm = path.join(__dirname, '..', 'fixtures', 'sentencepiece');
const tmp = tempDirs('mmbench');

interface Line { question_id: number; round_id: number; prompt: string; text: string; options: string[]; option_char: string[]; model_id: string; metadata: object }
interface Run { name: string; tsv: string; conv_mode: TemplateName; lang: 'en' | 'cn'; single_pred_prompt: boolean; all_rounds: boolean; num_chunks: number; chunk_idx: number; lines: Line[]; prompts: string[]; image_sizes: [number, number][] }
const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as { runs: Run[]; ids: Record<string, Record<string, number[]>>; g16: [number, string][] };
const runOptions = (r: Run) => ({ lang: r.lang, singlePredPrompt: r.single_pred_prompt, allRounds: r.all_rounds, numChunks: r.num_chunks, chunkIdx: r.chunk_idx });
const llavaFields = (l: Pick<Line, 'question_id' | 'round_id' | 'prompt' | 'options' | 'option_char'>) => [l.question_id, l.round_id, l.prompt, l.options, l.option_char];

/** openpyxl's [data_type, value] cells as our reader's values (formulas without "=", no value: null). */
const openpyxlCells = (file: string): XlsxValue[][] => (JSON.parse(fs.readFileSync(file, 'utf8')) as [string, unknown][][]).map((row) => row.map(([t, v]) =>
  (v === null ? null : t === 'f' ? { formula: (v as string).slice(1) } : (v as XlsxValue))));

/** cn.tsv as lines (header first; its fields hold no tab or line end), for broken variants of it. */
const cnLines = (): string[] => {
  const t = readTable(path.join(dir, 'cn.tsv'));
  return [t.columns.join('\t'), ...t.rows.map((r) => r.fields.join('\t'))];
};

/** The text of every <v> (number, boolean) of a workbook's sheet, by cell reference. */
function valueTexts(file: string): Record<string, string> {
  const fd = fs.openSync(file, 'r');
  try {
    const entries = readZipEntries(fd, file, { deflate: true });
    const xml = Buffer.from(readZipEntry(fd, file, entries.get('xl/worksheets/sheet1.xml')!)).toString('utf8');
    return Object.fromEntries([...xml.matchAll(/<c r="([A-Z]+[0-9]+)"[^>]*?t="[nb]"[^>]*><v>([^<]*)<\/v>/g)].map((m) => [m[1], m[2]]));
  } finally {
    fs.closeSync(fd);
  }
}

describe('MMBench questions (model_vqa_mmbench.py)', () => {
  for (const run of expected.runs) {
    it(`${run.name}: ${run.tsv}, --lang ${run.lang}${run.single_pred_prompt ? ' --single-pred-prompt' : ''}${run.all_rounds ? ' --all-rounds' : ''}, chunk ${run.chunk_idx}/${run.num_chunks}, ${run.conv_mode}: LLaVA's lines and prompts`, () => {
      const { questions, skipped } = mmbenchQuestions(path.join(dir, run.tsv), runOptions(run));
      expect(skipped).toEqual([]);
      expect(questions.map((q) => llavaFields({ question_id: q.questionId as number, round_id: q.roundId, prompt: q.prompt, options: q.options, option_char: q.optionChar }))).toEqual(run.lines.map(llavaFields));
      expect(questions.map((q) => answerPrompt(q.text, true, run.conv_mode).prompt)).toEqual(run.prompts);
    });
  }

  it("the prompts' token ids equal tokenizer_image_token's with the Llama fixture tokenizer (legacy and non-legacy)", () => {
    const toks = Object.fromEntries(['legacy', 'non_legacy'].map((v) => [v, new TextTokenizer(path.join(spm, v, 'tokenizer.json'))]));
    const prompts = Object.keys(expected.ids);
    expect(prompts.length).toBeGreaterThanOrEqual(12);
    let checked = 0;
    for (const run of expected.runs) {
      for (const q of mmbenchQuestions(path.join(dir, run.tsv), runOptions(run)).questions) {
        const p = answerPrompt(q.text, true, run.conv_mode);
        if (!(p.prompt in expected.ids)) continue;
        for (const [variant, tok] of Object.entries(toks)) {
          expect(answerPrompt(q.text, true, run.conv_mode, tok).inputIds, `${variant}: ${JSON.stringify(p.prompt)}`).toEqual(expected.ids[p.prompt][variant]);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(2 * prompts.length);
  });

  it('the base64 images decode at the sizes PIL reads', async () => {
    const run = expected.runs.find((r) => r.name === 'en_rounds')!;
    const { questions } = mmbenchQuestions(path.join(dir, run.tsv), runOptions(run));
    const sizes = await Promise.all(questions.map(async (q) => {
      const img = await decodeImage(Buffer.from(q.imageBase64, 'base64'));
      return [img.width, img.height];
    }));
    expect(sizes).toEqual(run.image_sizes);
  });

  it('reads the TSV as pandas: quoted fields, CRLF, blank lines and lines of spaces, a BOM, short rows, repeated names', () => {
    const d = tmp();
    const f = path.join(d, 't.tsv');
    fs.writeFileSync(f, '\ufeffa\tb\ta\t\n1\t"x\ty\n""z"""\tq"r\t\r\n   \n\n2\t"p" s\r3\t \t \t\n4');
    const t = readTable(f);
    expect(t.columns).toEqual(['a', 'b', 'a.1', 'Unnamed: 3']);
    expect(t.rows).toEqual([
      { line: 2, fields: ['1', 'x\ty\n"z"', 'q"r', ''] },
      { line: 6, fields: ['2', 'p s'] },
      { line: 7, fields: ['3', ' ', ' ', ''] },
      { line: 8, fields: ['4'] },
    ]);
    fs.writeFileSync(f, 'a\tb\n1\t"open\n');
    expect(() => readTable(f)).toThrow(/t\.tsv line 2: the file ends inside a quoted field/);
    // a folder given for the TSV (score mmbench --annotations DIR): named, not a bare EISDIR
    expect(() => readTable(d)).toThrow(new RegExp(`^${d} is a directory; expected an MMBench TSV file$`));
  });

  it('broken rows are counted by column with their line, --strict stops on the first; missing columns name them', () => {
    const d = tmp();
    const src = cnLines();
    const header = src[0].split('\t');
    const col = (name: string) => header.indexOf(name);
    const row = (k: number, edit: (f: string[]) => void) => {
      const f = src[k].split('\t');
      edit(f);
      return f.join('\t');
    };
    const file = path.join(d, 'broken.tsv');
    fs.writeFileSync(file, [
      src[0],
      row(1, (f) => (f[col('image')] = f[col('image')].slice(0, -1))), // cut short
      row(2, (f) => (f[col('image')] = 'not*base64')),
      row(3, (f) => (f[col('question')] = '')),
      row(4, (f) => f.push('extra')),
      src[1],
    ].join('\n') + '\n');
    const { questions, skipped } = mmbenchQuestions(file);
    expect(questions.map((q) => q.questionId)).toEqual([0]);
    expect(skipped).toEqual([
      { line: 2, questionId: 0, reason: expect.stringMatching(/^column image: not base64 \(\d+ characters, not a multiple of 4: cut short\?\)$/) },
      { line: 3, questionId: 1, reason: 'column image: not base64 (character "*" at 3)' },
      { line: 4, questionId: 2, reason: 'column question: missing value' },
      { line: 5, questionId: 3, reason: `too many fields: ${header.length + 1}, the header has ${header.length}` },
    ]);
    expect(() => mmbenchQuestions(file, { strict: true })).toThrow(/broken\.tsv line 2 \(row 1, index 0\): column image: not base64/);
    fs.writeFileSync(file, src[0].replace('\thint\t', '\tHint\t').replace('\tD\t', '\tE\t') + '\n');
    expect(() => mmbenchQuestions(file)).toThrow(/no column 'hint', 'D' \(model_vqa_mmbench.py reads index, question, hint, image, A, B, C, D; the header has index, question, Hint/);
    expect(() => mmbenchQuestions(path.join(dir, 'cn.tsv'), { lang: 'fr' as 'en' })).toThrow(/lang must be 'en' or 'cn'/);
  });
});

describe('vwlmm answer --format mmbench', () => {
  let fx: ReturnType<typeof writeCliFixture>;
  beforeAll(() => {
    fx = writeCliFixture(tmp(), { images: 1 });
  });

  it("writes LLaVA's answer lines for every round, resumes per (question_id, round_id), and skips undecodable images", async () => {
    const run = expected.runs.find((r) => r.name === 'en_rounds')!;
    const ck = loadCheckpoint(fx.init);
    const tok = new TextTokenizer(ck.tokenizerPath!);
    const out = path.join(tmp(), 'answers.jsonl');
    const opts = { questions: path.join(dir, run.tsv), format: 'mmbench' as const, ...runOptions(run), imageFolder: '.', answers: out, modelId: 'm', maxNewTokens: 1, batchSize: 8 };
    const first = await answerQuestions(ck.model, tok, { ...opts, numChunks: 2, chunkIdx: 0 });
    expect(first.answered).toBe(run.lines.filter((l) => [1000, 1001, 1005, 1007].includes(l.question_id)).length); // rows 1-4 of 8
    fs.writeFileSync(out, fs.readFileSync(out, 'utf8').slice(0, -9)); // the last line cut short, as a kill leaves it
    const rest = await answerQuestions(ck.model, tok, opts);
    expect(rest.resumed).toBe(first.answered - 1);
    expect(rest.answered).toBe(run.lines.length - first.answered + 1);
    expect(rest.skipped).toEqual([]);
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    for (const l of lines) {
      expect(Object.keys(l)).toEqual(['question_id', 'round_id', 'prompt', 'text', 'options', 'option_char', 'answer_id', 'model_id', 'metadata']);
      expect(typeof l.text).toBe('string');
    }
    expect(lines.map(llavaFields)).toEqual(run.lines.map(llavaFields));
    // an image that is base64 but no picture: counted with its row, the other rows answered
    const d = tmp();
    const src = cnLines();
    const k = src[0].split('\t').indexOf('image');
    const bad = src[2].split('\t');
    bad[k] = Buffer.from('not an image').toString('base64');
    fs.writeFileSync(path.join(d, 'q.tsv'), [src[0], src[1], bad.join('\t')].join('\n'));
    const r = await answerQuestions(ck.model, tok, { ...opts, questions: path.join(d, 'q.tsv'), answers: path.join(d, 'a.jsonl'), allRounds: false });
    expect(r.answered).toBe(1);
    expect(r.skipped).toEqual([{ line: 3, questionId: 1, reason: expect.stringMatching(/^image row 2: loadImage: cannot decode '.*q\.tsv row 2 column image': /) }]);
    ck.model.dispose();
  });

  it('the CLI: --lang cn --single-pred-prompt --all-rounds give LLaVA\'s lines; broken rows counted by column; --strict', () => {
    const run = expected.runs.find((r) => r.name === 'cn')!;
    const out = path.join(tmp(), 'cn.jsonl');
    const r = cli('answer', '--checkpoint', fx.init, '--questions', path.join(dir, run.tsv), '--format', 'mmbench', '--lang', 'cn', '--single-pred-prompt', '--all-rounds', '--answers', out, '--max-new-tokens', '1');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`answered ${run.lines.length} of ${run.lines.length} questions`));
    expect(fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => llavaFields(JSON.parse(l)))).toEqual(run.lines.map(llavaFields));
    const d = tmp();
    const src = cnLines();
    const k = src[0].split('\t').indexOf('image');
    const broken = [1, 2].map((i) => src[i].split('\t').map((f, j) => (j === k ? f.slice(0, -2) : f)).join('\t'));
    fs.writeFileSync(path.join(d, 'q.tsv'), [src[0], ...broken, src[3]].join('\n'));
    const c = cli('answer', '--checkpoint', fx.init, '--questions', path.join(d, 'q.tsv'), '--format', 'mmbench', '--answers', path.join(d, 'a.jsonl'), '--max-new-tokens', '1');
    expect(c.status, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/answered 1 of 1 questions .*; 2 skipped: 2 column image \(first: .*q\.tsv:2\)/);
    const s = cli('answer', '--checkpoint', fx.init, '--questions', path.join(d, 'q.tsv'), '--format', 'mmbench', '--answers', path.join(d, 'b.jsonl'), '--strict');
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(/vwlmm: questions .*q\.tsv line 2 \(row 1, index 0\): column image: not base64/);
    const l = cli('answer', '--checkpoint', fx.init, '--questions', path.join(d, 'q.tsv'), '--format', 'mmbench', '--lang', 'de', '--answers', path.join(d, 'c.jsonl'));
    expect(l.status).toBe(2);
    expect(l.stderr).toMatch(/--lang must be en or cn, got de/);
  });
});

describe('the MMBench upload file (convert_mmbench_for_submission.py)', () => {
  for (const name of ['en', 'cn']) {
    it(`${name}: our .xlsx has the official one's cells (as openpyxl reads it), number text included`, () => {
      const official = path.join(dir, `${name}_expected.xlsx`);
      const cells = openpyxlCells(path.join(dir, `${name}_expected_cells.json`));
      expect(readXlsx(official).rows).toEqual(cells); // our reader reads openpyxl's file as openpyxl does
      const r = mmbenchSubmission(path.join(dir, `${name}_answers.jsonl`), path.join(dir, `${name}.tsv`));
      expect(r.report).toBe('');
      const ours = path.join(tmp(), 'ours.xlsx');
      fs.writeFileSync(ours, r.xlsx);
      expect(readXlsx(ours).rows).toEqual(cells);
      expect(readXlsx(ours).sheet).toBe('Sheet1');
      expect(valueTexts(ours)).toEqual(valueTexts(official));
    });
  }

  it('vwlmm score mmbench / mmbench_cn write it; a TSV without the dropped columns or an answer without text is an error', () => {
    const d = tmp();
    for (const [cmd, name] of [['mmbench', 'en'], ['mmbench_cn', 'cn']]) {
      const out = path.join(d, `${name}.xlsx`);
      const r = cli('score', cmd, '--answers', path.join(dir, `${name}_answers.jsonl`), '--annotations', path.join(dir, `${name}.tsv`), '--submission', out);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe('');
      expect(readXlsx(out).rows).toEqual(openpyxlCells(path.join(dir, `${name}_expected_cells.json`)));
    }
    const tsv = path.join(d, 'no_comment.tsv');
    fs.writeFileSync(tsv, fs.readFileSync(path.join(dir, 'cn.tsv'), 'utf8').replace('\tcomment\t', '\tnote\t'));
    expect(() => mmbenchSubmission(path.join(dir, 'cn_answers.jsonl'), tsv)).toThrow(/no_comment\.tsv: no column 'comment' \(convert_mmbench_for_submission\.py drops/);
    const answers = path.join(d, 'a.jsonl');
    fs.writeFileSync(answers, '{"question_id": 0, "text": "A"}\n{"question_id": 1}\n');
    expect(() => mmbenchSubmission(answers, path.join(dir, 'cn.tsv'))).toThrow(/a\.jsonl line 2: no text/);
    fs.writeFileSync(answers, '{"question_id": 0, "text": "bell \\u0007"}\n');
    expect(() => mmbenchSubmission(answers, path.join(dir, 'cn.tsv'))).toThrow(/cell G2: character U\+0007 at 5 cannot be stored/);
  });
});

describe('xlsx writer and reader', () => {
  it('numbers are written as "%.16g" (exact ties to even), like openpyxl', () => {
    for (const [x, text] of expected.g16) expect(formatG(x), String(x)).toBe(text);
  });

  it('round-trips strings (spaces, line ends, XML specials, long ones cut at 32767 code points), numbers, booleans, formulas and empty cells', () => {
    const long = '🙂'.repeat(40000);
    const rows: XlsxValue[][] = [['a', ' b ', 'x\r\ny', '<&>"\'', '', null, '=1+1', '=', { formula: 'SUM(A1)' }], [1, -0, 0.1, 1e300, true, false, long]];
    const f = path.join(tmp(), 'r.xlsx');
    fs.writeFileSync(f, writeXlsx(rows));
    expect(readXlsx(f).rows).toEqual([
      ['a', ' b ', 'x\ny', '<&>"\'', null, null, { formula: '1+1' }, '=', { formula: 'SUM(A1)' }],
      [1, 0, 0.1, 1e300, true, false, '🙂'.repeat(32767), null, null],
    ]);
    expect(writeXlsx(rows).equals(writeXlsx(rows))).toBe(true); // the same rows, the same bytes
    expect(() => writeXlsx([[1, NaN]])).toThrow(/cell B1: NaN is not a number Excel can hold/);
    expect(() => writeXlsx([['ok'], ['a\x00']])).toThrow(/cell A2: character U\+0000 at 1 cannot be stored/);
  });

  it('a corrupt deflated entry is an error naming it', () => {
    const f = path.join(tmp(), 'c.xlsx');
    const bytes = writeXlsx([['x'.repeat(1000)]]);
    const at = bytes.indexOf(Buffer.from('xl/worksheets/sheet1.xml')) + 'xl/worksheets/sheet1.xml'.length; // the first copy: the local header's name
    bytes[at + 10] ^= 0xff;
    fs.writeFileSync(f, bytes);
    expect(() => readXlsx(f)).toThrow(/zip: .*c\.xlsx: entry 'xl\/worksheets\/sheet1\.xml': (cannot inflate|inflated to)/);
  });
  it('an entry that inflates past the size its directory states stops at that size (no zip bomb)', () => {
    const z = writeZip([{ name: 'a', data: new Uint8Array(20_000_000) }]);
    z.writeUInt32LE(10, z.lastIndexOf(Buffer.from([0x50, 0x4b, 0x01, 0x02])) + 24); // the central directory's uncompressed size
    const f = path.join(tmp(), 'bomb.zip');
    fs.writeFileSync(f, z);
    const fd = fs.openSync(f, 'r');
    try {
      const e = readZipEntries(fd, f, { deflate: true }).get('a')!;
      expect(() => readZipEntry(fd, f, e)).toThrow(/bomb\.zip: entry 'a': cannot inflate/);
    } finally {
      fs.closeSync(fd);
    }
  });
});
