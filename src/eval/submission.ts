// The conversions LLaVA-1.5 runs before a score exists (its scripts/convert_*_for_submission.py / _for_eval.py and
// convert_seed_for_submission.py): the upload files of the benchmarks scored by servers (VQAv2 test-dev, VizWiz),
// the files the GQA and MM-Vet evaluators read, and SEED-Bench's accuracy by question type with its upload file.
// Each writes what the script writes and prints what it prints (src/eval/pyformat.ts); tests compare with the
// scripts run as is (scripts/make_eval_fixtures.py). Where a script would crash, these throw an error naming the
// file, line or question.
import { answerObjectLines } from './answer_source';
import { evalAIAnswer } from './evalai';
import { jsonObjectLines, pyFixed, pyJsonDumps, pyKey, pyLines, pyRepr, pyRstrip, readTextFile } from './pyformat';

/** The answers as the VQAv2 / VizWiz converters read them: id -> text (the last line wins), broken lines counted. */
function readResults(file: string): { results: Map<string, string>; errorLines: number } {
  const results = new Map<string, string>();
  let errorLines = 0;
  for (const l of pyLines(readTextFile(file, 'answers'))) {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(l) as Record<string, unknown>;
    } catch {
      errorLines++;
      continue;
    }
    if (typeof rec?.text !== 'string') throw new Error(`answers ${file}: a line without a string "text" (${JSON.stringify(l).slice(0, 80)})`);
    results.set(pyKey(rec.question_id), rec.text);
  }
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
  const { results, errorLines } = readResults(answersFile);
  const split = jsonObjectLines(testSplitFile, 'test split').map((l) => l.rec);
  const all = split.map((x) => ({ question_id: x.question_id, answer: results.has(pyKey(x.question_id)) ? evalAIAnswer(results.get(pyKey(x.question_id))!) : '' }));
  return { report: `total results: ${results.size}, total split: ${split.length}, error_line: ${errorLines}\n`, file: pyJsonDumps(all, null) };
}

/** convert_vizwiz_for_submission.py: every annotated question (each must be answered), image and processed answer. */
export function vizwizSubmission(answersFile: string, annotationFile: string): Submission {
  const { results, errorLines } = readResults(answersFile);
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
  const all = answerObjectLines(answersFile).map((l) => l.rec).map((r) => ({ questionId: r.question_id, prediction: pyRstrip(String(r.text), '.').toLowerCase() }));
  return { report: '', file: pyJsonDumps(all, null) };
}

/** Python's f'{v}' of a JSON value. */
const pyStr = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? (Number.isInteger(v) && !String(v).includes('e') ? String(v) : pyRepr(v)) : JSON.stringify(v));

/** convert_mmvet_for_eval.py: {"v1_<question_id>": answer}, as MM-Vet's GPT-4 grader reads it. */
export function mmvetSubmission(answersFile: string): Submission {
  const out: Record<string, string> = {};
  for (const r of answerObjectLines(answersFile).map((l) => l.rec)) out[`v1_${pyStr(r.question_id)}`] = String(r.text);
  return { report: '', file: pyJsonDumps(out, 2) };
}

/** Python's int(s) for the strings SEED-Bench ids are (ASCII digits, an optional sign, underscores, spaces). */
function pyInt(v: unknown): unknown {
  if (typeof v === 'number') return Math.trunc(v);
  if (typeof v === 'string' && /^\s*[+-]?\d+(_\d+)*\s*$/.test(v)) return Number(v.trim().replace(/_/g, ''));
  return v;
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
  const results = new Map<string, Record<string, unknown>>();
  for (const r of answerObjectLines(answersFile).map((l) => l.rec)) results.set(pyKey(r.question_id), r);
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
      else if (row.text === q.answer) c.correct = (c.correct ?? 0) + 1;
    }
    let totalCount = 0, totalCorrect = 0;
    // sorted(type_counts.keys()): SEED's type ids are integers
    const sorted = [...counts.values()].sort((a, b) => (a.id as number) - (b.id as number));
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
    file += pyJsonDumps({ question_id: q.question_id, prediction: r.text }, null) + '\n';
  }
  return { report, file, byType, total, image, video };
}

