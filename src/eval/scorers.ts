// The official scorers of LLaVA-1.5's evaluation (llava/eval/eval_textvqa.py, eval_pope.py, eval_science_qa.py),
// reimplemented to print exactly what they print and write (src/eval/pyformat.ts) and to return the numbers:
// `vwlmm score textvqa|pope|sqa`. They read
// LLaVA's answer files (JSONL lines with question_id, prompt, text, ...). Where the official script would crash
// (a question without an annotation, no positive predictions for precision), these throw an error naming the
// file, line and question instead.
import * as fs from 'fs';
import * as path from 'path';
import { answerObjectLines } from './answer_source';
import { vqaSoftAccuracy } from './evalai';
import { jsonObjectLines, PyFloat, pyFixed, pyJsonDumps, pyKey, pyRepr, readTextFile } from './pyformat';

export interface AnswerRecord {
  question_id: unknown;
  prompt?: string;
  text: string;
  [k: string]: unknown;
}

/**
 * LLaVA's answer lines, from a file or a folder of chunk files (answerFiles); each needs question_id and a string
 * text. `at` names the line's file and line number.
 */
export function readAnswers(source: string): { rec: AnswerRecord; line: number; at: string }[] {
  return answerObjectLines(source).map(({ rec, line, at }) => {
    if (!('question_id' in rec)) throw new Error(`${at}: no question_id`);
    if (typeof rec.text !== 'string') throw new Error(`${at}: text must be a string`);
    return { rec: rec as AnswerRecord, line, at };
  });
}


/** eval_textvqa.py's prompt_processor: the question inside one of LLaVA's three TextVQA prompt forms, lower case. */
export function textvqaQuestionOf(prompt: string): string {
  let q: string;
  const lines = prompt.split('\n');
  if (prompt.startsWith('OCR tokens: ')) {
    const m = /Question: ([\s\S]*?) Short answer:/.exec(prompt);
    if (!m) throw new Error('a TextVQA prompt starting "OCR tokens: " has no "Question: ... Short answer:"');
    q = m[1];
  } else if (prompt.includes('Reference OCR token: ') && lines.length === 3) {
    q = prompt.startsWith('Reference OCR token:') ? lines[1] : lines[0];
  } else if (lines.length === 2) {
    q = lines[0];
  } else {
    throw new Error('not one of the TextVQA prompt forms of LLaVA (OCR tokens / Reference OCR token / question + instruction)');
  }
  return q.toLowerCase();
}

export interface TextVQAScore {
  experiment: string;
  samples: number;
  accuracy: number;
  /** What eval_textvqa.py prints for this file. */
  report: string;
}

/** eval_textvqa.py on one answers file against TextVQA_0.5.1_val.json (its `data`). */
export function scoreTextVQA(answersFile: string, annotationFile: string): TextVQAScore {
  const text = readTextFile(annotationFile, 'annotations');
  let data: unknown;
  try {
    data = (JSON.parse(text) as { data?: unknown } | null)?.data;
  } catch (e) {
    throw new Error(`annotations ${annotationFile}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new Error(`annotations ${annotationFile}: expected an object with a "data" list (TextVQA_0.5.1_val.json)`);
  const byKey = new Map<string, { answers: string[] }>();
  for (const a of data as { image_id: unknown; question: string; answers: string[] }[]) {
    if (a === null || typeof a !== 'object' || !Array.isArray(a.answers)) throw new Error(`annotations ${annotationFile}: an entry of "data" without an answers list`);
    byKey.set(`${pyKey(a.image_id)}|${String(a.question).toLowerCase()}`, a);
  }
  const scores: number[] = [];
  for (const { rec, at } of readAnswers(answersFile)) {
    let q: string;
    try {
      q = textvqaQuestionOf(String(rec.prompt ?? ''));
    } catch (e) {
      throw new Error(`${at}: ${(e as Error).message}`);
    }
    const ann = byKey.get(`${pyKey(rec.question_id)}|${q}`);
    if (!ann) throw new Error(`${at}: no annotation with image_id ${JSON.stringify(rec.question_id)} and question ${JSON.stringify(q)} in ${annotationFile}`);
    if (ann.answers.length !== 10) throw new Error(`${at}: the annotation of image_id ${JSON.stringify(rec.question_id)} and question ${JSON.stringify(q)} in ${annotationFile} holds ${ann.answers.length} answers, not TextVQA's 10 (m4c_evaluator.py asserts 10)`);
    scores.push(vqaSoftAccuracy(rec.text, ann.answers));
  }
  if (scores.length === 0) throw new Error(`answers ${answersFile}: no answers (the official script divides by zero)`);
  let sum = 0;
  for (const s of scores) sum += s;
  const accuracy = sum / scores.length;
  // a chunk folder is what LLaVA's scripts merge into merge.jsonl, the file its scorer would name
  const experiment = fs.statSync(answersFile).isDirectory() ? 'merge' : pySplitextRoot(path.basename(answersFile));
  return { experiment, samples: scores.length, accuracy, report: `${experiment}\nSamples: ${scores.length}\nAccuracy: ${pyFixed(100 * accuracy, 2)}%\n\n` };
}

/** os.path.splitext(name)[0]: the part before the last dot, unless only dots precede it ('.jsonl', '..jsonl' stay whole). */
function pySplitextRoot(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 && /[^.]/.test(name.slice(0, dot)) ? name.slice(0, dot) : name;
}

export interface PopeCategory {
  category: string;
  samples: number;
  TP: number; FP: number; TN: number; FN: number;
  accuracy: number; precision: number; recall: number; f1: number; yesRatio: number;
}

/** eval_pope.py's reading of an answer: its first sentence says no ("No", "no" or "not" as a word) or yes. */
export function popeAnswerIsNo(text: string): boolean {
  let t = text;
  if (t.includes('.')) t = t.split('.')[0];
  const words = t.split(',').join('').split(' ');
  return words.includes('No') || words.includes('not') || words.includes('no');
}

/**
 * eval_pope.py: answers split by their question's category, each category against its coco_pope_<category>.json
 * labels (JSON lines, paired with the category's answers in file order, as zip() pairs them). Categories are
 * taken in sorted file-name order (the official script takes os.listdir's order).
 */
export function scorePope(answersFile: string, questionFile: string, annotationDir: string): { categories: PopeCategory[]; report: string } {
  const questions = new Map<string, Record<string, unknown>>();
  for (const { rec } of jsonObjectLines(questionFile, 'questions')) questions.set(pyKey(rec.question_id), rec);
  const answers = readAnswers(answersFile);
  if (!fs.existsSync(annotationDir) || !fs.statSync(annotationDir).isDirectory()) throw new Error(`annotations ${annotationDir} is not a directory`);
  let report = '';
  const categories: PopeCategory[] = [];
  const files = fs.readdirSync(annotationDir).sort();
  if (files.length === 0) throw new Error(`annotations ${annotationDir} holds no coco_pope_<category>.json file`);
  for (const file of files) {
    if (!file.startsWith('coco_pope_') || !file.endsWith('.json')) throw new Error(`annotations ${annotationDir}: ${file} is not a coco_pope_<category>.json file (the official script asserts that every file is)`);
    const category = file.slice(10, -5);
    const cur = answers.filter(({ rec, at }) => {
      const q = questions.get(pyKey(rec.question_id));
      if (!q) throw new Error(`${at}: question_id ${JSON.stringify(rec.question_id)} is not in ${questionFile}`);
      return q.category === category;
    });
    report += `Category: ${category}, # samples: ${cur.length}\n`;
    const labelLines = jsonObjectLines(path.join(annotationDir, file), 'annotations');
    const labels = labelLines.map(({ rec }) => (rec.label === 'no' ? 0 : 1));
    const preds = cur.map(({ rec }) => (popeAnswerIsNo(rec.text) ? 0 : 1));
    if (preds.length === 0) throw new Error(`answers ${answersFile}: no answers for category ${category} (the official script divides by zero)`);
    // eval_pope.py pairs a category's answers with its labels by position (zip): a missing, extra or reordered answer
    // would pair every later answer with another question's label and still print numbers. Refused here: the counts
    // must agree, and so must the images of each pair where both files name them.
    if (preds.length !== labels.length)
      throw new Error(`answers ${answersFile}: ${preds.length} answers for category ${category}, but ${file} labels ${labels.length} questions: eval_pope.py pairs them by position, so a missing or extra answer shifts every label after it${category === 'random' && preds.length === 2910 && labels.length === 3000 ? " (LLaVA-1.5's llava_pope_test.jsonl asks the 2910 random questions of POPE's coco labels at commit e3e39262; later ones have 3000)" : ''}`);
    cur.forEach(({ rec, at }, i) => {
      const image = questions.get(pyKey(rec.question_id))!.image, labelled = labelLines[i].rec.image;
      if (typeof image === 'string' && typeof labelled === 'string' && path.basename(image) !== path.basename(labelled))
        throw new Error(`${at}: question_id ${JSON.stringify(rec.question_id)} (image ${JSON.stringify(image)}) is answer ${i + 1} of category ${category}, but label ${i + 1} of ${file} is for image ${JSON.stringify(labelled)}: eval_pope.py pairs answers with labels by position (answers out of the question file's order, or one missing)`);
    });
    const yesRatio = preds.filter((p) => p === 1).length / preds.length;
    let TP = 0, TN = 0, FP = 0, FN = 0;
    for (let i = 0; i < Math.min(preds.length, labels.length); i++) {
      const p = preds[i], l = labels[i];
      if (p === 1 && l === 1) TP++;
      else if (p === 1 && l === 0) FP++;
      else if (p === 0 && l === 0) TN++;
      else if (p === 0 && l === 1) FN++;
    }
    if (TP + FP === 0 || TP + FN === 0 || TP === 0) throw new Error(`POPE category ${category}: TP ${TP}, FP ${FP}, FN ${FN}: precision, recall or F1 divide by zero (the official script crashes here)`);
    const precision = TP / (TP + FP), recall = TP / (TP + FN);
    const f1 = (2 * precision * recall) / (precision + recall);
    const accuracy = (TP + TN) / (TP + TN + FP + FN);
    report += 'TP\tFP\tTN\tFN\t\n' + `${TP}\t${FP}\t${TN}\t${FN}\n`;
    report += `Accuracy: ${pyRepr(accuracy)}\nPrecision: ${pyRepr(precision)}\nRecall: ${pyRepr(recall)}\nF1 score: ${pyRepr(f1)}\nYes ratio: ${pyRepr(yesRatio)}\n`;
    report += `${[f1, accuracy, precision, recall, yesRatio].map((v) => pyFixed(v, 3)).join(', ')}\n`;
    report += '====================================\n';
    categories.push({ category, samples: cur.length, TP, FP, TN, FN, accuracy, precision, recall, f1, yesRatio });
  }
  return { categories, report };
}


export interface ScienceQAScore {
  total: number;
  correct: number;
  /** Percentages, as the official script computes them. */
  accuracy: number;
  imgAccuracy: number;
  /** What eval_science_qa.py prints. */
  report: string;
  /** The contents of its --output-file and --output-result (json.dump, indent 2). */
  outputFile: string;
  outputResult: string;
}

const SQA_OPTIONS = ['A', 'B', 'C', 'D', 'E'];

/** eval_science_qa.py's reading of an answer: the letter alone, "X. ...", or exactly one "The answer is X."; else FAILED. */
export function scienceQAAnswerOf(text: string): string {
  if (SQA_OPTIONS.includes(text)) return text;
  if (text.length >= 3 && SQA_OPTIONS.includes(text[0]) && text.slice(1, 3) === '. ') return text[0];
  // Python's '.' matches anything but '\n' (JavaScript's also refuses '\r', '\u2028', '\u2029')
  const found = [...text.matchAll(/The answer is ([A-Z])[^\n]/g)];
  return found.length === 1 ? found[0][1] : 'FAILED';
}

/**
 * eval_science_qa.py: the answers file against ScienceQA's problems.json and pid_splits.json (in baseDir), the
 * split's problems in pid_splits order; a problem without an answer counts as FAILED.
 */
export function scoreScienceQA(baseDir: string, answersFile: string, split = 'test'): ScienceQAScore {
  const readJson = (f: string) => {
    const p = path.join(baseDir, f);
    const text = readTextFile(p, 'ScienceQA');
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new Error(`ScienceQA ${p}: not JSON (${(e as Error).message})`);
    }
  };
  const splits = readJson('pid_splits.json') as Record<string, string[]>;
  const problems = readJson('problems.json') as Record<string, { choices: string[]; answer: number }>;
  const ids = splits?.[split];
  if (!Array.isArray(ids)) throw new Error(`ScienceQA ${path.join(baseDir, 'pid_splits.json')} has no split "${split}"`);
  const preds = new Map<string, { rec: AnswerRecord; at: string }>();
  for (const a of readAnswers(answersFile)) preds.set(pyKey(a.rec.question_id), a);
  const results: { correct: Record<string, unknown>[]; incorrect: Record<string, unknown>[] } = { correct: [], incorrect: [] };
  // Maps: in the split's order, as the official script's dicts (an object would sort numeric ids)
  const parsed = new Map<string, number>(), outputs = new Map<string, string>();
  const seen = new Set<string>();
  for (const pid of ids) {
    if (seen.has(pid)) continue; // a dict of the split: a repeated id counts once
    seen.add(pid);
    const prob = problems[pid];
    if (!prob || !Array.isArray(prob.choices)) throw new Error(`ScienceQA problems.json has no problem ${pid} (listed in split ${split})`);
    // the official script indexes its option letters with it (an IndexError past E); past the choices it is no answer
    if (!Number.isInteger(prob.answer) || prob.answer < 0 || prob.answer >= Math.min(prob.choices.length, SQA_OPTIONS.length))
      throw new Error(`ScienceQA problems.json problem ${pid}: answer ${JSON.stringify(prob.answer)} is not the index of one of its ${prob.choices.length} choices`);
    const p = preds.get(pyKey(pid));
    if (p && typeof p.rec.prompt !== 'string') throw new Error(`${p.at}: no prompt (the official script reads it)`);
    const text = p ? p.rec.text : 'FAILED', prompt = p ? (p.rec.prompt as string) : 'Unknown';
    const answer = scienceQAAnswerOf(text);
    const opts = SQA_OPTIONS.slice(0, prob.choices.length);
    const idx = opts.includes(answer) ? SQA_OPTIONS.indexOf(answer) : -1;
    const analysis = { question_id: pid, parsed_ans: answer, ground_truth: SQA_OPTIONS[prob.answer], question: prompt, pred: text, is_multimodal: prompt.includes('<image>') };
    parsed.set(pid, idx);
    outputs.set(pid, text);
    (idx === prob.answer ? results.correct : results.incorrect).push(analysis);
  }
  const correct = results.correct.length, total = correct + results.incorrect.length;
  const mmCorrect = results.correct.filter((x) => x.is_multimodal).length, mmTotal = mmCorrect + results.incorrect.filter((x) => x.is_multimodal).length;
  if (total === 0 || mmTotal === 0) throw new Error(`ScienceQA split ${split}: ${total} problems, ${mmTotal} with an image: the official script divides by zero`);
  const accuracy = (correct / total) * 100, imgAccuracy = (mmCorrect / mmTotal) * 100;
  const report = `Total: ${total}, Correct: ${correct}, Accuracy: ${pyFixed(accuracy, 2)}%, IMG-Accuracy: ${pyFixed(imgAccuracy, 2)}%\n`;
  const outputResult = pyJsonDumps({ acc: new PyFloat(accuracy), correct, count: total, results: parsed, outputs }, 2);
  return { total, correct, accuracy, imgAccuracy, report, outputFile: pyJsonDumps(results, 2), outputResult };
}
