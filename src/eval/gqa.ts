// GQA's testdev_balanced score as LLaVA-1.5 computes it (scripts/v1_5/eval/gqa.sh): the answers converted by
// convert_gqa_for_eval.py (no trailing periods, lower case), then GQA's eval.py (the GQA authors' script, with the
// changes LLaVA's docs/Evaluation.md links for the testdev release, which has no scene graphs and no choices file):
// exact-match accuracy over the balanced questions, binary (every structural type but query) and open (query)
// accuracy, accuracy per structural type, semantic type, number of reasoning steps and question length, the
// answer-distribution chi-square, and, with `consistency`, the entailed-question consistency. Validity and
// plausibility need the choices file and grounding needs attention maps: eval.py prints 0.00% for the first two
// without them and skips grounding; so does the report here. `vwlmm score gqa` prints what eval.py prints;
// tests/eval/gqa_mme.test.ts compares with eval.py run as is (scripts/make_gqa_mme_fixtures.py). Where eval.py
// would crash (a missing prediction, an entailed question not in the file), this throws an error naming it.
import { readAnswers } from './scorers';
import { pyFixed, pyKey, pyRstrip, pySplit, pyStrCompare, readTextFile } from './pyformat';

/** Accuracy (%) of the balanced questions of one kind, and how many there are. */
export interface GQAGroupScore {
  accuracy: number;
  questions: number;
}

export interface GQAScore {
  /** Percentages over the balanced questions, as eval.py computes them. */
  accuracy: number;
  binary: number;
  open: number;
  /** Entailed-question consistency (%), with `consistency`; else null. */
  consistency: number | null;
  /** The answer distribution's chi-square against the gold one, / 100 (lower is better). */
  distribution: number;
  /** Keyed by type, steps or words, in eval.py's (sorted) order. */
  byStructuralType: Record<string, GQAGroupScore>;
  bySemanticType: Record<string, GQAGroupScore>;
  bySteps: Record<string, GQAGroupScore>;
  byWords: Record<string, GQAGroupScore>;
  /** Balanced questions scored. */
  questions: number;
  /** What eval.py prints (its stdout; the progress bar goes to stderr). */
  report: string;
}

export interface GQAOptions {
  /** eval.py's --consistency: every question of the file (balanced or not) needs an answer. */
  consistency?: boolean;
}

interface Question {
  id: string;
  rec: Record<string, unknown>;
}

/** convert_gqa_for_eval.py's prediction for an answer (gqaSubmission writes the same). */
export function gqaPrediction(text: string): string {
  return pyRstrip(text, '.').toLowerCase();
}

/**
 * eval.py --tier testdev_balanced [--consistency] on LLaVA's answers file (JSONL: question_id, text) against GQA's
 * questions file (testdev_balanced_questions.json: {id: question}).
 */
export function scoreGQA(answersFile: string, questionsFile: string, options: GQAOptions = {}): GQAScore {
  const consistency = options.consistency ?? false;
  // {p["questionId"]: p["prediction"]}: a repeated question's later answer wins
  const predictions = new Map<string, string>();
  let numeric: { at: string; id: number } | null = null; // the first answer with a number for an id
  for (const { rec, at } of readAnswers(answersFile)) {
    predictions.set(pyKey(rec.question_id), gqaPrediction(rec.text));
    if (numeric === null && typeof rec.question_id === 'number') numeric = { at, id: rec.question_id };
  }
  const questions = readQuestions(questionsFile);
  const byKey = new Map(questions.map((q) => [pyKey(q.id), q]));
  const where = (q: Question) => `questions ${questionsFile}: question ${q.id}`;

  let report = HEADER + (consistency ? '' : NO_CONSISTENCY) + NO_GROUNDING + LOADING;
  for (const q of questions) {
    if (!predictions.has(pyKey(q.id)) && (consistency || pyTruthy(field(q, 'isBalanced', where)))) {
      // GQA's ids are strings ("01843821"): eval.py finds no answer by a number, and a number has lost its leading zeros
      const why = numeric ? `; ${numeric.at} has question_id ${numeric.id}, a number: GQA's question ids are strings, as in ${questionsFile} (a number loses leading zeros), and eval.py looks answers up by them` : '';
      throw new Error(`answers ${answersFile}: no answer for question ${q.id} of ${questionsFile} (eval.py needs one for every ${consistency ? 'question with --consistency' : 'balanced question'})${why}`);
    }
  }

  const all: number[] = [], binary: number[] = [], open: number[] = [], consistencyScores: number[] = [];
  const perType = { structural: new Map<string, number[]>(), semantic: new Map<string, number[]>(), steps: new Map<number, number[]>(), words: new Map<number, number[]>() };
  const push = <K>(m: Map<K, number[]>, k: K, v: number) => (m.get(k) ?? m.set(k, []).get(k)!).push(v);
  // answer histograms per global group, in first-seen order (the chi-square's sums run in that order)
  const gold = new Map<string, Map<string, number>>(), predicted = new Map<string, Map<string, number>>();
  const count = (m: Map<string, Map<string, number>>, g: string, a: string) => {
    const h = m.get(g) ?? m.set(g, new Map()).get(g)!;
    h.set(a, (h.get(a) ?? 0) + 1);
  };

  for (const q of questions) {
    if (!pyTruthy(field(q, 'isBalanced', where))) continue;
    const answer = str(q, 'answer', field(q, 'answer', where), where);
    const prediction = predictions.get(pyKey(q.id))!;
    const correct = prediction === answer;
    const score = correct ? 1 : 0;
    const types = field(q, 'types', where) as Record<string, unknown>;
    const structural = str(q, 'types.structural', types?.structural, where), semantic = str(q, 'types.semantic', types?.semantic, where);
    all.push(score);
    push(perType.words, pySplit(str(q, 'question', field(q, 'question', where), where)).length, score);
    push(perType.steps, stepsOf(q, where), score);
    push(perType.structural, structural, score);
    push(perType.semantic, semantic, score);
    (structural === 'query' ? open : binary).push(score);
    const groups = field(q, 'groups', where) as Record<string, unknown>;
    const group = groups?.global;
    if (group !== null) {
      const g = str(q, 'groups.global', group, where);
      count(gold, g, answer);
      count(predicted, g, prediction);
    }
    if (consistency) {
      const entailed = field(q, 'entailed', where);
      if (!Array.isArray(entailed)) throw new Error(`${where(q)}: expected a list for "entailed"`);
      const inferred = entailed.filter((e) => pyKey(e) !== pyKey(q.id));
      if (correct && inferred.length > 0) {
        const scores = inferred.map((e) => {
          const other = byKey.get(pyKey(e));
          if (!other) throw new Error(`${where(q)}: its entailed question ${JSON.stringify(e)} is not in the file (eval.py --consistency needs every entailed question and its answer)`);
          return predictions.get(pyKey(e)) === field(other, 'answer', where) ? 1 : 0;
        });
        consistencyScores.push(avg(scores));
      }
    }
  }

  let sumScore = 0, sumOverall = 0;
  for (const [g, hist] of gold) {
    let score = 0, overall = 0;
    for (const [a, e] of hist) {
      const o = predicted.get(g)!.get(a) ?? 0;
      score += ((o - e) * (o - e)) / e;
      overall += e;
    }
    sumScore += score * overall;
    sumOverall += overall;
  }
  if (sumOverall === 0) throw new Error(`questions ${questionsFile}: no balanced question has a global group (groups.global): eval.py divides by zero computing the distribution score`);
  const distribution = sumScore / sumOverall / 100;

  const result: GQAScore = {
    binary: avg(binary) * 100, open: avg(open) * 100, accuracy: avg(all) * 100,
    consistency: consistency ? avg(consistencyScores) * 100 : null, distribution,
    byStructuralType: {}, bySemanticType: {}, bySteps: {}, byWords: {}, questions: all.length, report: '',
  };
  report += '\n';
  report += `Binary: ${pyFixed(result.binary, 2)}%\nOpen: ${pyFixed(result.open, 2)}%\nAccuracy: ${pyFixed(result.accuracy, 2)}%\n`;
  if (consistency) report += `Consistency: ${pyFixed(result.consistency!, 2)}%\n`;
  // no choices file: eval.py scores every answer invalid and implausible
  report += `Validity: ${pyFixed(0, 2)}%\nPlausibility: ${pyFixed(0, 2)}%\nDistribution: ${pyFixed(distribution, 2)} (lower is better)\n`;
  const detailed: [string, Map<string, number[]> | Map<number, number[]>, Record<string, GQAGroupScore>][] = [
    ['Accuracy / structural type', perType.structural, result.byStructuralType],
    ['Accuracy / semantic type', perType.semantic, result.bySemanticType],
    ['Accuracy / steps number', perType.steps, result.bySteps],
    ['Accuracy / words number', perType.words, result.byWords],
  ];
  for (const [title, m, out] of detailed) {
    report += `\n${title}:\n`;
    const keys = [...m.keys()] as (string | number)[];
    keys.sort((a, b) => (typeof a === 'number' ? (a as number) - (b as number) : pyStrCompare(a as string, b as string)));
    for (const k of keys) {
      const l = (m as Map<string | number, number[]>).get(k)!;
      out[String(k)] = { accuracy: avg(l) * 100, questions: l.length };
      // eval.py means to print the semantic types' long names but tests the wrong variable: the keys as they are
      report += `  ${k}: ${pyFixed(out[String(k)].accuracy, 2)}% (${l.length} questions)\n`;
    }
  }
  result.report = report;
  return result;
}

const HEADER =
  'Please make sure to use our provided visual features as gqadataset.org for better comparability. We provide both spatial and object-based features trained on GQA train set.\n' +
  'In particular please avoid using features from https://github.com/peteanderson80/bottom-up-attention since they were trained on images contained in the GQA validation set and thus may give false scores improvement.\n\n';
const NO_CONSISTENCY = 'Please consider using --consistency to compute consistency scores for entailed questions.\nIf you do so, please provide answers to all questions in val_all_questions.json.\n\n';
const NO_GROUNDING = 'Please consider using --grounding to compute attention scores.\nIf you do so, please provide attention maps through --attentions.\n\n';
// testdev_balanced comes without scene graphs and choices: LLaVA's eval.py reports both as missing and goes on
const LOADING = 'Loading scene graphs...\nFailed to load scene graphs -- cannot evaluate grounding\nLoading questions...\nLoading choices...\nFailed to load choices -- cannot evaluate validity or plausibility\nLoading predictions...\n';

/** eval.py's avg: float(sum(l)) / len(l), 0 for none; the sum runs left to right (Python before 3.12; LLaVA's is 3.10). */
function avg(l: number[]): number {
  if (l.length === 0) return 0;
  let s = 0;
  for (const v of l) s += v;
  return s / l.length;
}

/** Python's truth value of a JSON value. */
function pyTruthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v !== null && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

function field(q: Question, name: string, where: (q: Question) => string): unknown {
  if (!(name in q.rec)) throw new Error(`${where(q)}: no "${name}" (GQA's questions have question, answer, isBalanced, types, groups, semantic, entailed)`);
  return q.rec[name];
}

function str(q: Question, name: string, v: unknown, where: (q: Question) => string): string {
  if (typeof v !== 'string') throw new Error(`${where(q)}: expected a string for ${name} but received ${JSON.stringify(v) ?? typeof v}`);
  return v;
}

/** eval.py's getStepsNum: the program's operations but the final exist / query name / choose name. */
function stepsOf(q: Question, where: (q: Question) => string): number {
  const program = field(q, 'semantic', where);
  if (!Array.isArray(program)) throw new Error(`${where(q)}: expected a list of operations for "semantic"`);
  let n = 0;
  for (const c of program as Record<string, unknown>[]) {
    const op = `${str(q, 'semantic[].operation', c?.operation, where)}: ${str(q, 'semantic[].argument', c?.argument, where)}`;
    if (!['exist', 'query: name', 'choose name'].some((o) => op.includes(o))) n++;
  }
  return n;
}

/**
 * The questions file's {id: question} entries in file order, as Python's json.load keeps them (a repeated id: its
 * first place, its last value); JSON.parse would put integer-like ids (GQA's are) first, in numeric order.
 */
function readQuestions(file: string): Question[] {
  const text = readTextFile(file, 'questions');
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (e) {
    throw new Error(`questions ${file}: not JSON (${(e as Error).message})`);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(`questions ${file}: expected GQA's {questionId: question} object (testdev_balanced_questions.json)`);
  const values = obj as Record<string, unknown>;
  return topLevelKeys(text).map((id) => {
    const rec = values[id];
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) throw new Error(`questions ${file}: question ${id} is not an object`);
    return { id, rec: rec as Record<string, unknown> };
  });
}

/** The keys of the top-level object of valid JSON text, in order, each once. */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [], seen = new Set<string>();
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        const k = JSON.parse(text.slice(i, j + 1)) as string;
        if (!seen.has(k)) keys.push(k), seen.add(k);
        expectKey = false;
      }
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}
