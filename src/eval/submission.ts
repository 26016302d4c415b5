// The conversions LLaVA-1.5 runs before a score exists (its scripts/convert_*_for_submission.py / _for_eval.py and
// convert_seed_for_submission.py): the upload files of the benchmarks scored by servers (VQAv2 test-dev, VizWiz),
// the files the GQA and MM-Vet evaluators read, and SEED-Bench's accuracy by question type with its upload file.
// Each writes what the script writes and prints what it prints (src/eval/pyformat.ts); tests compare with the
// scripts run as is (scripts/make_eval_fixtures.py). Where a script would crash, these throw an error naming the
// file, line or question.
import { answerFiles, answerObjectLines } from './answer_source';
import { evalAIAnswer } from './evalai';
import { jsonObjectLines, pyFixed, pyJsonDumps, pyKey, pyLines, pyStr, pyRstrip, pyStrCompare, readTextFile } from './pyformat';

/** An answer line's field the script reads with row[name]: a line without it is an error where the script's KeyError is. */
function field(rec: Record<string, unknown>, name: 'question_id' | 'text', at: string, script: string): unknown {
  if (!(name in rec)) throw new Error(`${at}: no ${name} (${script} fails on it with a KeyError)`);
  return rec[name];
}

/** A text the script calls a str method on: anything else (null: None) is an error where its AttributeError is. */
function textString(rec: Record<string, unknown>, at: string, script: string): string {
  const text = field(rec, 'text', at, script);
  if (typeof text !== 'string') throw new Error(`${at}: text must be a string, got ${JSON.stringify(text)} (${script} fails on it)`);
  return text;
}

/**
 * The answers as the VQAv2 / VizWiz converters read them: id -> text (the last line wins), broken lines counted. `source`:
 * an answers file or a chunk folder (answerFiles: its chunks in order, as LLaVA's scripts `cat` them into merge.jsonl).
 */
function readResults(source: string, script: string): { results: Map<string, string>; errorLines: number } {
  const results = new Map<string, string>();
  let errorLines = 0;
  for (const file of answerFiles(source)) pyLines(readTextFile(file, 'answers')).forEach((l, i) => {
    let rec: unknown;
    try {
      rec = JSON.parse(l);
    } catch {
      errorLines++; // the script counts a line that is not JSON and goes on
      return;
    }
    const at = `answers ${file} line ${i + 1}`;
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new Error(`${at}: expected a JSON object (${script} fails on it)`);
    const r = rec as Record<string, unknown>;
    results.set(pyKey(field(r, 'question_id', at, script)), textString(r, at, script));
  });
  return { results, errorLines };
}

export interface Submission {
  /** What the script prints. */
  report: string;
  /** The file it writes. */
  file: string;
}

/** convert_vqav2_for_submission.py: every test-split question, its EvalAI-processed answer ('' when unanswered). */
export function vqav2Submission(answersFile: string, testSplitFile: string): Submission {
  const { results, errorLines } = readResults(answersFile, 'convert_vqav2_for_submission.py');
  const split = jsonObjectLines(testSplitFile, 'test split').map((l) => l.rec);
  const all = split.map((x) => ({ question_id: x.question_id, answer: results.has(pyKey(x.question_id)) ? evalAIAnswer(results.get(pyKey(x.question_id))!) : '' }));
  return { report: `total results: ${results.size}, total split: ${split.length}, error_line: ${errorLines}\n`, file: pyJsonDumps(all, null) };
}

/** convert_vizwiz_for_submission.py: every annotated question (each must be answered), image and processed answer. */
export function vizwizSubmission(answersFile: string, annotationFile: string): Submission {
  const { results, errorLines } = readResults(answersFile, 'convert_vizwiz_for_submission.py');
  const split = jsonObjectLines(annotationFile, 'annotations').map((l) => l.rec);
  const all = split.map((x) => {
    const text = results.get(pyKey(x.question_id));
    if (text === undefined) throw new Error(`answers ${answersFile}: question_id ${JSON.stringify(x.question_id)} of ${annotationFile} has no answer (the official script asserts every one has)`);
    return { image: x.image, answer: evalAIAnswer(text) };
  });
  return { report: `total results: ${results.size}, total split: ${split.length}, error_line: ${errorLines}\n`, file: pyJsonDumps(all, null) };
}

/** convert_gqa_for_eval.py: GQA's prediction file (questionId, the answer without trailing periods, lower case). */
export function gqaSubmission(answersFile: string): Submission {
  const script = 'convert_gqa_for_eval.py';
  const all = answerObjectLines(answersFile).map(({ rec, at }) => ({ questionId: field(rec, 'question_id', at, script), prediction: pyRstrip(textString(rec, at, script), '.').toLowerCase() }));
  return { report: '', file: pyJsonDumps(all, null) };
}

/**
 * convert_mmvet_for_eval.py: {"v1_<question_id>": answer}, as MM-Vet's GPT-4 grader reads it; the answer is written
 * as the line has it (a null text as null: the script copies the value).
 */
export function mmvetSubmission(answersFile: string): Submission {
  const script = 'convert_mmvet_for_eval.py';
  const out: Record<string, unknown> = {};
  for (const { rec, at } of answerObjectLines(answersFile)) {
    const key = `v1_${pyStr(field(rec, 'question_id', at, script))}`;
    out[key] = field(rec, 'text', at, script);
  }
  return { report: '', file: pyJsonDumps(out, 2) };
}

/** Python's int(s) for the strings SEED-Bench ids are (ASCII digits, an optional sign, underscores, spaces). */
function pyInt(v: unknown): unknown {
  if (typeof v === 'number') return Math.trunc(v);
  if (typeof v === 'string' && /^\s*[+-]?\d+(_\d+)*\s*$/.test(v)) return Number(v.trim().replace(/_/g, ''));
  return v;
}

/**
 * sorted(type_counts.keys()): numbers (SEED's type ids) by value, strings by code point; Python cannot order a
 * string and a number, nor null or a list with anything else (TypeError), nor key a dict by a list or object.
 */
function pySorted<T extends { id: unknown }>(types: T[], annotationFile: string): T[] {
  const kind = (v: unknown) => (v === null ? 'null' : typeof v === 'boolean' ? 'number' : typeof v); // True < 2 in Python
  const bad = types.find((t) => kind(t.id) === 'object');
  if (bad) throw new Error(`annotations ${annotationFile}: question_type_id ${JSON.stringify(bad.id)} is a list or an object; convert_seed_for_submission.py fails on it (TypeError: unhashable type)`);
  if (types.length < 2) return types;
  const a = types[0], b = types.slice(1).find((t) => kind(t.id) !== kind(a.id) || kind(t.id) === 'null');
  if (b) throw new Error(`annotations ${annotationFile}: question_type_id ${JSON.stringify(a.id)} and ${JSON.stringify(b.id)} cannot be ordered (a string and a number, or null); Python's sorted() fails on them, and convert_seed_for_submission.py with it (TypeError)`);
  return kind(a.id) === 'string' ? types.sort((a, b) => pyStrCompare(a.id as string, b.id as string)) : types.sort((a, b) => Number(a.id) - Number(b.id));
}

export interface SeedScore extends Submission {
  /** Accuracy (%) per question type name, and over all / image / video questions (null when there are none). */
  byType: Record<string, number>;
  total: number;
  image: number | null;
  video: number | null;
}

/**
 * convert_seed_for_submission.py: accuracy by question type (exact match of the answer letter), in total, on the
 * image and the video questions, and the upload file (JSON lines question_id, prediction).
 */
export function scoreSeed(answersFile: string, annotationFile: string): SeedScore {
  const script = 'convert_seed_for_submission.py';
  const results = new Map<string, { rec: Record<string, unknown>; at: string }>();
  for (const { rec, at } of answerObjectLines(answersFile)) results.set(pyKey(field(rec, 'question_id', at, script)), { rec, at });
  // row['text'] of the rows looked up: another value (null, a number) compares unequal and is written as it is
  const textOf = (row: { rec: Record<string, unknown>; at: string }) => field(row.rec, 'text', row.at, script);
  let data: { questions: Record<string, unknown>[]; question_type: Record<string, unknown> };
  try {
    data = JSON.parse(readTextFile(annotationFile, 'annotations'));
  } catch (e) {
    throw new Error(`annotations ${annotationFile}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data?.questions) || typeof data.question_type !== 'object' || data.questions.some((q) => q === null || typeof q !== 'object'))
    throw new Error(`annotations ${annotationFile}: expected SEED-Bench's {questions: [objects], question_type}`);
  const typeName = new Map<string, string>(Object.entries(data.question_type).map(([n, id]) => [pyKey(id), n]));
  let report = '';
  const evalSingle = (only: string | null): number | null => {
    const counts = new Map<string, { id: unknown; n: number; correct: number | undefined }>();
    for (const q of data.questions) {
      if (only !== null && q.data_type !== only) continue;
      const k = pyKey(q.question_type_id);
      const c = counts.get(k) ?? { id: q.question_type_id, n: 0, correct: undefined };
      c.n++;
      counts.set(k, c);
      const row = results.get(pyKey(pyInt(q.question_id)));
      if (!row) c.correct = c.correct ?? 0;
      else if (pyKey(textOf(row)) === pyKey(q.answer)) c.correct = (c.correct ?? 0) + 1; // Python's ==: True == 1
    }
    let totalCount = 0, totalCorrect = 0;
    const sorted = pySorted([...counts.values()], annotationFile);
    for (const c of sorted) {
      if (c.correct === undefined) throw new Error(`SEED question type ${String(c.id)}: every question answered and none correctly (the official script fails on this with a KeyError)`);
      const acc = (c.correct / c.n) * 100;
      if (only === null) {
        const name = typeName.get(pyKey(c.id));
        if (name === undefined) throw new Error(`annotations ${annotationFile}: question type ${String(c.id)} is not in question_type`);
        report += `${name}: ${pyFixed(acc, 2)}%\n`;
        byType[name] = acc;
      }
      totalCount += c.n;
      totalCorrect += c.correct;
    }
    if (totalCount === 0) {
      if (only === null) throw new Error(`annotations ${annotationFile}: no questions`);
      throw new Error(`SEED: no ${only} questions in ${annotationFile}: the official script divides by zero here`);
    }
    const total = (totalCorrect / totalCount) * 100;
    report += only === null ? `Total accuracy: ${pyFixed(total, 2)}%\n` : `${only} accuracy: ${pyFixed(total, 2)}%\n`;
    return total;
  };
  const byType: Record<string, number> = {};
  const total = evalSingle(null)!;
  const image = evalSingle('image'), video = evalSingle('video');
  let file = '';
  for (const q of data.questions) {
    const r = results.get(pyKey(q.question_id)) ?? results.get(pyKey(pyInt(q.question_id)));
    if (!r) throw new Error(`answers ${answersFile}: SEED question ${JSON.stringify(q.question_id)} has no answer (the official script fails on it)`);
    file += pyJsonDumps({ question_id: q.question_id, prediction: textOf(r) }, null) + '\n';
  }
  return { report, file, byType, total, image, video };
}

