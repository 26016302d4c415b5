// The official scorers of LLaVA-1.5's evaluation (llava/eval/eval_textvqa.py, eval_pope.py), reimplemented to print
// exactly what they print (src/eval/pyformat.ts) and to return the numbers: `vwlmm score textvqa|pope`. They read
// LLaVA's answer files (JSONL lines with question_id, prompt, text, ...). Where the official script would crash
// (a question without an annotation, no positive predictions for precision), these throw an error naming the
// file, line and question instead.
import * as fs from 'fs';
import * as path from 'path';
import { vqaSoftAccuracy } from './evalai';
import { pyFixed, pyRepr } from './pyformat';

export interface AnswerRecord {
  question_id: unknown;
  prompt?: string;
  text: string;
  [k: string]: unknown;
}

/** A JSONL file of objects; a bad line is an error naming the file and line. */
function readJsonl(file: string, what: string): { rec: Record<string, unknown>; line: number }[] {
  if (!fs.existsSync(file)) throw new Error(`${what} ${file} does not exist`);
  const out: { rec: Record<string, unknown>; line: number }[] = [];
  fs.readFileSync(file, 'utf8').split('\n').forEach((l, i) => {
    if (!l.trim()) return;
    let v: unknown;
    try {
      v = JSON.parse(l);
    } catch (e) {
      throw new Error(`${what} ${file} line ${i + 1}: not JSON (${(e as Error).message})`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} ${file} line ${i + 1}: expected a JSON object`);
    out.push({ rec: v as Record<string, unknown>, line: i + 1 });
  });
  return out;
}

/** LLaVA's answer lines; each needs question_id and a string text. */
export function readAnswers(file: string): { rec: AnswerRecord; line: number }[] {
  return readJsonl(file, 'answers').map(({ rec, line }) => {
    if (!('question_id' in rec)) throw new Error(`answers ${file} line ${line}: no question_id`);
    if (typeof rec.text !== 'string') throw new Error(`answers ${file} line ${line}: text must be a string`);
    return { rec: rec as AnswerRecord, line };
  });
}

/** Python's key equality for JSON values used as dictionary keys (1 and 1.0 are one key; "1" is another). */
const keyOf = (v: unknown): string => (typeof v === 'number' ? `n:${v}` : typeof v === 'string' ? `s:${v}` : `j:${JSON.stringify(v)}`);

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
  if (!fs.existsSync(annotationFile)) throw new Error(`annotations ${annotationFile} does not exist`);
  let data: unknown;
  try {
    data = (JSON.parse(fs.readFileSync(annotationFile, 'utf8')) as { data?: unknown }).data;
  } catch (e) {
    throw new Error(`annotations ${annotationFile}: not JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new Error(`annotations ${annotationFile}: expected an object with a "data" list (TextVQA_0.5.1_val.json)`);
  const byKey = new Map<string, { answers: string[] }>();
  for (const a of data as { image_id: unknown; question: string; answers: string[] }[]) byKey.set(`${keyOf(a.image_id)}|${String(a.question).toLowerCase()}`, a);
  const scores: number[] = [];
  for (const { rec, line } of readAnswers(answersFile)) {
    let q: string;
    try {
      q = textvqaQuestionOf(String(rec.prompt ?? ''));
    } catch (e) {
      throw new Error(`answers ${answersFile} line ${line}: ${(e as Error).message}`);
    }
    const ann = byKey.get(`${keyOf(rec.question_id)}|${q}`);
    if (!ann) throw new Error(`answers ${answersFile} line ${line}: no annotation with image_id ${JSON.stringify(rec.question_id)} and question ${JSON.stringify(q)} in ${annotationFile}`);
    scores.push(vqaSoftAccuracy(rec.text, ann.answers));
  }
  if (scores.length === 0) throw new Error(`answers ${answersFile}: no answers (the official script divides by zero)`);
  let sum = 0;
  for (const s of scores) sum += s;
  const accuracy = sum / scores.length;
  const experiment = path.basename(answersFile).replace(/\.[^.]*$/, '');
  return { experiment, samples: scores.length, accuracy, report: `${experiment}\nSamples: ${scores.length}\nAccuracy: ${pyFixed(100 * accuracy, 2)}%\n\n` };
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
  for (const { rec } of readJsonl(questionFile, 'questions')) questions.set(keyOf(rec.question_id), rec);
  const answers = readAnswers(answersFile);
  if (!fs.existsSync(annotationDir) || !fs.statSync(annotationDir).isDirectory()) throw new Error(`annotations ${annotationDir} is not a directory`);
  let report = '';
  const categories: PopeCategory[] = [];
  for (const file of fs.readdirSync(annotationDir).sort()) {
    if (!file.startsWith('coco_pope_') || !file.endsWith('.json')) throw new Error(`annotations ${annotationDir}: ${file} is not a coco_pope_<category>.json file (the official script asserts that every file is)`);
    const category = file.slice(10, -5);
    const cur = answers.filter(({ rec, line }) => {
      const q = questions.get(keyOf(rec.question_id));
      if (!q) throw new Error(`answers ${answersFile} line ${line}: question_id ${JSON.stringify(rec.question_id)} is not in ${questionFile}`);
      return q.category === category;
    });
    report += `Category: ${category}, # samples: ${cur.length}\n`;
    const labels = readJsonl(path.join(annotationDir, file), 'annotations').map(({ rec }) => (rec.label === 'no' ? 0 : 1));
    const preds = cur.map(({ rec }) => (popeAnswerIsNo(rec.text) ? 0 : 1));
    if (preds.length === 0) throw new Error(`answers ${answersFile}: no answers for category ${category} (the official script divides by zero)`);
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

