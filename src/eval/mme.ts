// MME as LLaVA-1.5 scores it (scripts/v1_5/eval/mme.sh): convert_answer_to_mme.py (from LLaVA's eval.zip) writes
// the answers into the MME eval_tool's per-subtask files (image, question, ground truth, answer; the ground truth
// from MME_Benchmark_release_version's own question files), then the eval_tool's calculation.py (the MME authors')
// reads an answer as yes or no from its first four characters and scores each subtask: acc over the questions,
// acc+ over the images (both of an image's two questions right), score = (acc + acc+) * 100, summed into the
// perception and cognition totals. `vwlmm score mme` writes those files and prints what calculation.py prints;
// tests/eval/gqa_mme.test.ts compares with both scripts run as is (scripts/make_gqa_mme_fixtures.py). Where they
// would crash, or where calculation.py would pair the wrong two answers as one image's (it takes the lines two
// by two), this throws an error naming the file, line or question.
import * as fs from 'fs';
import * as path from 'path';
import { readAnswers } from './scorers';
import { jsonObjectLines, pyKey, pyLines, pyRepr, pyStrip, readTextFile } from './pyformat';

/** calculation.py's subtasks, in its order. */
export const MME_SUBTASKS = {
  Perception: ['existence', 'count', 'position', 'color', 'posters', 'celebrity', 'scene', 'landmark', 'artwork', 'OCR'],
  Cognition: ['commonsense_reasoning', 'numerical_calculation', 'text_translation', 'code_reasoning'],
} as const;

export interface MMESubtaskScore {
  /** Images (question pairs) and questions whose answer reads as neither yes nor no. */
  images: number;
  other: number;
  /** Fractions in [0, 1], as calculation.py computes them; score = (acc + accPlus) * 100. */
  acc: number;
  accPlus: number;
  score: number;
}

export interface MMEScore {
  perception: { total: number; subtasks: Record<string, MMESubtaskScore> };
  cognition: { total: number; subtasks: Record<string, MMESubtaskScore> };
  /** The eval_tool files convert_answer_to_mme.py writes: subtask (category) -> contents, in its order. */
  files: Map<string, string>;
  /** What calculation.py prints. */
  report: string;
}

const LLAVA_SUFFIX = 'Answer the question using a single word or phrase.';
const MME_SUFFIX = 'Please answer yes or no.';

/**
 * convert_answer_to_mme.py's ground truth: every `question<TAB>answer` line of the benchmark's question files
 * (<category>/*.txt, or <category>/questions_answers_YN/*.txt where the category has an images/ folder).
 */
function readBenchmark(dir: string): Map<string, string> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`MME benchmark ${dir} is not a directory (MME_Benchmark_release_version)`);
  const gt = new Map<string, string>();
  for (const category of fs.readdirSync(dir)) {
    const categoryDir = path.join(dir, category);
    if (!fs.statSync(categoryDir).isDirectory()) continue;
    const split = fs.existsSync(path.join(categoryDir, 'images'));
    const qaDir = split ? path.join(categoryDir, 'questions_answers_YN') : categoryDir;
    for (const d of split ? [path.join(categoryDir, 'images'), qaDir] : [qaDir]) {
      if (!fs.existsSync(d) || !fs.statSync(d).isDirectory()) throw new Error(`MME benchmark ${dir}: ${d} is not a directory (a category with images/ keeps its questions in questions_answers_YN/)`);
    }
    for (const file of fs.readdirSync(qaDir)) {
      if (!file.endsWith('.txt')) continue;
      const p = path.join(qaDir, file);
      pyLines(readTextFile(p, 'MME benchmark file')).forEach((line, i) => {
        const parts = pyStrip(line).split('\t');
        if (parts.length !== 2) throw new Error(`MME benchmark ${p} line ${i + 1}: expected "question<TAB>answer"`);
        gt.set(`${category}\0${file}\0${parts[0]}`, parts[1]);
      });
    }
  }
  return gt;
}

/**
 * convert_answer_to_mme.py: LLaVA's MME answers (question_id "<category>/[images/]<image>", prompt, text) as the
 * eval_tool's files, one per category in order of first answer: `image.txt<TAB>question<TAB>ground truth<TAB>answer`
 * per line, the question being MME's (LLaVA's instruction replaced by MME's " Please answer yes or no.", with the
 * two spaces some of MME's questions have).
 */
export function convertAnswersToMME(answersFile: string, benchmarkDir: string): Map<string, string> {
  const gt = readBenchmark(benchmarkDir);
  const files = new Map<string, string>();
  for (const { rec, at } of readAnswers(answersFile)) {
    if (typeof rec.question_id !== 'string') throw new Error(`${at}: expected a string question_id ("<category>/<image>") but received ${JSON.stringify(rec.question_id)}`);
    if (typeof rec.prompt !== 'string') throw new Error(`${at}: expected a string prompt (the question, which is how the answer finds its ground truth)`);
    const parts = rec.question_id.split('/');
    const category = parts[0], file = parts[parts.length - 1].split('.')[0] + '.txt';
    let prompt = rec.prompt;
    if (prompt.includes(LLAVA_SUFFIX)) prompt = pyStrip(prompt.split(LLAVA_SUFFIX).join(''));
    if (!prompt.includes(MME_SUFFIX)) {
      prompt += ` ${MME_SUFFIX}`;
      if (!gt.has(`${category}\0${file}\0${prompt}`)) prompt = prompt.split(` ${MME_SUFFIX}`).join(`  ${MME_SUFFIX}`);
    }
    const answer = gt.get(`${category}\0${file}\0${prompt}`);
    if (answer === undefined) throw new Error(`${at}: the MME benchmark ${benchmarkDir} has no question ${JSON.stringify(prompt)} in ${category}/${file} (convert_answer_to_mme.py fails on it)`);
    files.set(category, (files.get(category) ?? '') + [file, prompt, answer, rec.text].join('\t') + '\n');
  }
  return files;
}

/** calculation.py's reading of an answer (lower case, with its line end): yes, no or other. */
function yesNo(lowered: string): 'yes' | 'no' | 'other' {
  if (lowered === 'yes' || lowered === 'no') return lowered;
  const prefix = [...lowered].slice(0, 4).join(''); // Python slices code points
  return prefix.includes('yes') ? 'yes' : prefix.includes('no') ? 'no' : 'other';
}

/**
 * convert_answer_to_mme.py, then calculation.py on its files. `questionsFile` (llava_mme.jsonl): every question
 * must have an answer (calculation.py pairs lines two by two, so a missing one would shift every later pair).
 */
export function scoreMME(answersFile: string, benchmarkDir: string, questionsFile?: string): MMEScore {
  const answers = readAnswers(answersFile);
  for (const { rec, at } of answers) {
    if (/[\t\n\r]/.test(rec.text)) throw new Error(`${at}: the answer has a tab or a line break; calculation.py reads one tab-separated line per question, so it would split this one wrongly and score other answers than these`);
  }
  if (questionsFile) {
    const answered = new Set(answers.map(({ rec }) => `${pyKey(rec.question_id)}\0${rec.prompt}`));
    for (const { rec, line } of jsonObjectLines(questionsFile, 'questions')) {
      if (!answered.has(`${pyKey(rec.question_id)}\0${rec.text}`)) {
        throw new Error(`answers ${answersFile}: no answer to question ${JSON.stringify(rec.question_id)} ${JSON.stringify(rec.text)} (${questionsFile} line ${line}); calculation.py needs both questions of every image`);
      }
    }
  }
  const files = convertAnswersToMME(answersFile, benchmarkDir);
  let report = '';
  const result = { perception: { total: 0, subtasks: {} }, cognition: { total: 0, subtasks: {} }, files, report } as MMEScore;
  for (const [evalType, tasks] of Object.entries(MME_SUBTASKS)) {
    report += `=========== ${evalType} ===========\n`;
    const part = evalType === 'Perception' ? result.perception : result.cognition;
    let scores = 0;
    for (const task of tasks) {
      const content = files.get(task);
      if (content === undefined) throw new Error(`answers ${answersFile}: no answers for MME subtask ${task} (calculation.py reads ${task}.txt and fails without it)`);
      const lines = content.split('\n').slice(0, -1).map((l) => l + '\n'); // readlines(): each line keeps its end
      if (lines.length % 2) throw new Error(`answers ${answersFile}: ${lines.length} answers for MME subtask ${task}, an odd number; calculation.py takes the lines two by two as an image's two questions`);
      let correct = 0, plusCorrect = 0, other = 0, clean = 0;
      for (let i = 0; i < lines.length; i += 2) {
        const pair = [lines[i], lines[i + 1]].map((l) => l.split('\t'));
        if (pair[0][0] !== pair[1][0]) throw new Error(`answers ${answersFile}: MME subtask ${task}'s answers ${i + 1} and ${i + 2} are for images ${pair[0][0]} and ${pair[1][0]}; calculation.py would score them as one image's two questions (an image's answers must be consecutive, none missing)`);
        let imageCorrect = 0;
        for (const [image, question, gtAns, predAns] of pair) {
          const g = gtAns.toLowerCase();
          if (g !== 'yes' && g !== 'no') throw new Error(`MME benchmark ${benchmarkDir}: the answer to ${JSON.stringify(question)} (${task}/${image}) is ${JSON.stringify(gtAns)}, not yes or no (calculation.py asserts it)`);
          const p = yesNo(predAns.toLowerCase());
          if (p === g) imageCorrect++;
          if (p === 'other') other++;
          else clean++;
        }
        correct += imageCorrect;
        if (imageCorrect === 2) plusCorrect++;
      }
      // precision and recall, which calculation.py computes and does not use, fail in sklearn on no yes/no answer
      if (clean === 0) throw new Error(`answers ${answersFile}: no answer of MME subtask ${task} reads as yes or no; calculation.py fails here (sklearn's precision of no samples)`);
      const images = lines.length / 2;
      const acc = correct / lines.length, accPlus = plusCorrect / images;
      let score = 0; // task_score: 0, += acc * 100, += acc_plus * 100 (in that order: the float sums must agree)
      score += acc * 100;
      score += accPlus * 100;
      part.subtasks[task] = { images, other, acc, accPlus, score };
      scores += score;
    }
    part.total = scores;
    report += `total score: ${pyRepr(scores)} \n\n`;
    for (const task of tasks) report += `\t ${task}  score: ${pyRepr(part.subtasks[task].score)}\n`;
    report += '\n\n';
  }
  result.report = report;
  return result;
}
