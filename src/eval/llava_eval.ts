// Evaluation on any LLaVA-format file whose last assistant turn is the expected answer, through the same two steps
// as LLaVA-1.5's benchmarks (answers file, then score): each record's question is written as a model_vqa_loader
// question line (question_id = record id, image, text = the human turn without "<image>") and answered by
// answerQuestions (src/eval/answer.ts: greedy, LLaVA's answer lines, resumable); then scoreLlavaAnswers matches the
// answer lines to the records: exact match after normalisation (case and punctuation insensitive), or the VQA soft
// accuracy with EvalAI's answer processing (src/eval/evalai.ts) when a record carries 10 `answers`; overall, per
// `category` and per `group`. `vwlmm eval`, `vwlmm score sort-of-clevr` and the demo all go through here.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LlavaRecord, readLlavaRecords } from '../data/dataset';
import { TextTokenizer } from '../data/tokenizer';
import type { ComputeDtype } from '../amp';
import { VwLmm } from '../model/vwlmm';
import { answerQuestions, AnswerResult, chunkOf } from './answer';
import type { ProcessGroup } from '../distributed/process_group';
import { vqaSoftAccuracy } from './evalai';
import { readAnswers } from './scorers';
import { checkKeys, typeError } from '../errors';
import { writeFileAtomic } from '../io/atomic_file';

export interface EvalResult {
  /** Mean score of the records scored; NaN when none was (count 0: every record skipped), not a 0% to be believed. */
  accuracy: number;
  count: number;
  categories: Record<string, { accuracy: number; count: number }>;
  /** Accuracy per record `group` (Sort-of-CLEVR: non-relational, relational); empty when no record names one. */
  groups: Record<string, { accuracy: number; count: number }>;
  /** Records skipped (unreadable line, not one question and its answer, missing image, no answer line) with the reason. */
  skipped: { id?: string; line?: number; reason: string }[];
  /** The answers file scored, where EvalOptions.answers put it; null when it was a temporary one (removed). */
  answers: string | null;
  /** Answers found in that file already (a resumed evaluation): scored, not generated again. */
  resumed: number;
}

export interface EvalOptions {
  /** Generation budget per answer (default 16). */
  maxNewTokens?: number;
  /** Stop on the first broken record or image instead of skipping it. */
  strict?: boolean;
  /** Evaluate the first n records. */
  limit?: number;
  dtype?: ComputeDtype;
  /**
   * Where to write the answers (LLaVA's answer lines, JSONL), kept; when it exists, the records it answers already are
   * not answered again (as `vwlmm answer`). Default: a temporary file, removed afterwards.
   */
  answers?: string;
  /** model_id of the answer lines (LLaVA: the checkpoint's folder name; default 'vwlmm'). */
  modelId?: string;
  /** Prompts per generation batch (default 32). */
  batchSize?: number;
  /**
   * Data-parallel ranks that share the answering (every rank calls evaluateFile with the same file and options): each
   * answers its contiguous share of the questions (LLaVA's --num-chunks split), the answer lines travel to every rank
   * (allGatherObject), and every rank scores them all and returns the same result. Rank 0 reads and writes `answers`
   * (resumed as without a group; written once the ranks' answers are in, so a killed run answers its share again); a
   * rank's error ends every rank with it.
   */
  processGroup?: ProcessGroup;
}

// Every option evaluateFile reads: another key ({ max_new_tokens: 2 }) is refused, not ignored
const EVAL_KEYS = {
  maxNewTokens: true, strict: true, limit: true, dtype: true, answers: true, modelId: true, batchSize: true, processGroup: true,
} satisfies Record<keyof EvalOptions, true>;

/** An options object checked against its keys (undefined: none). */
function checkOptions(where: string, o: object | undefined, known: Record<string, true>): void {
  if (o === undefined) return;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(where, 'options', `an object with keys among ${Object.keys(known).join(', ')}`, o);
  checkKeys(where, 'option', o, known);
}

export function normalizeAnswer(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}\s]/gu, ' ').replace(/\s+/g, ' ').trim();
}

/** 1 when prediction and answer are equal after normalizeAnswer (case, punctuation, spacing), else 0. */
export function exactMatch(pred: string, answer: string): number {
  return Number(normalizeAnswer(pred) === normalizeAnswer(answer));
}


/** A record as a question: the text of its one human turn, without "<image>" (the loader puts "<image>\n" in front). */
interface EvalQuestion {
  record: LlavaRecord;
  text: string;
  /** The expected answer: the last (assistant) turn. */
  answer: string;
}

/** The records of a LLaVA-format file that can be asked (the first `limit`), the others with the reason, and every record id. */
function evalQuestions(file: string, opts: { strict?: boolean; limit?: number }) {
  const { records, skipped: badLines } = readLlavaRecords(file, { strict: opts.strict });
  const skipped: EvalResult['skipped'] = badLines.map((s) => ({ line: s.line, reason: s.reason }));
  const ids = new Set(records.map((r) => r.id));
  const seen = new Set<string>();
  const questions: EvalQuestion[] = [];
  for (const r of records.slice(0, opts.limit ?? records.length)) {
    const turns = r.conversations;
    const last = turns[turns.length - 1];
    if (!last || last.from !== 'gpt') {
      skipped.push({ id: r.id, reason: 'the last turn is not an assistant answer' });
      continue;
    }
    // LLaVA's question files ask one question per line: a conversation with earlier turns has no such form
    if (turns.length !== 2) { // readLlavaRecords has checked that turns alternate from the human's
      skipped.push({ id: r.id, reason: `not one human question and its answer (${turns.length} turns): LLaVA's question lines ask one question` });
      continue;
    }
    // answers are matched to records by id: a second record with the same id could not be told apart
    if (seen.has(r.id)) {
      skipped.push({ id: r.id, reason: 'a second record with this id' });
      continue;
    }
    seen.add(r.id);
    // what training's preprocess_multimodal leaves after "<image>\n": the question's text, trimmed as it trims it
    const q = turns[0].value;
    questions.push({ record: r, text: q.includes('<image>') ? q.split('<image>').join('').trim() : q, answer: last.value });
  }
  return { questions, skipped, ids };
}

/**
 * The one scorer of evaluateFile and `vwlmm score sort-of-clevr`: each question's answer line (question_id = record
 * id) scored against its record. An answer line naming no record of the file, or a record twice, is an error naming
 * the answers file and line; a question without an answer line is skipped ("no answer").
 */
function scoreQuestions(answersFile: string, questions: readonly EvalQuestion[], ids: ReadonlySet<string>, dataFile: string) {
  const byId = new Map<string, { text: string; at: string }>();
  for (const { rec, at } of readAnswers(answersFile)) {
    const q = rec.question_id;
    const id = typeof q === 'string' ? q : typeof q === 'number' ? String(q) : null; // readLlavaRecords makes number ids strings
    if (id === null || !ids.has(id)) {
      // a question file given as the data (its lines have no conversations, so no record of it could be read)
      const none = ids.size === 0 ? ` (no LLaVA record of it could be read: each needs an id and its conversations, the answer last; a question file of \`vwlmm answer\` holds none)` : '';
      throw new Error(`${at}: question_id ${JSON.stringify(q)} is not the id of a record of ${dataFile}${none}`);
    }
    const prev = byId.get(id);
    if (prev) throw new Error(`${at}: a second answer to question_id ${JSON.stringify(q)} (the first: ${prev.at})`);
    byId.set(id, { text: rec.text, at });
  }
  const skipped: EvalResult['skipped'] = [];
  const cats: Record<string, { sum: number; count: number }> = {}, groups: Record<string, { sum: number; count: number }> = {};
  const add = (m: typeof cats, k: string, score: number) => {
    m[k] ??= { sum: 0, count: 0 };
    m[k].sum += score;
    m[k].count++;
  };
  let sum = 0, count = 0;
  for (const { record: r, answer } of questions) {
    const a = byId.get(r.id);
    if (!a) {
      skipped.push({ id: r.id, reason: `no answer in ${answersFile}` });
      continue;
    }
    const score = Array.isArray(r.answers) && r.answers.length === 10 ? vqaSoftAccuracy(a.text, r.answers) : exactMatch(a.text, answer);
    sum += score;
    count++;
    add(cats, (r.category as string | undefined) ?? 'all', score);
    if (typeof r.group === 'string') add(groups, r.group, score);
  }
  const fin = (m: typeof cats) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, { accuracy: v.sum / v.count, count: v.count }]));
  return { accuracy: count ? sum / count : NaN, count, categories: fin(cats), groups: fin(groups), skipped };
}

/**
 * Scores an answers file (LLaVA's answer lines: from evaluateFile's `answers`, `vwlmm eval --answers` or `vwlmm
 * answer` on the questions evaluateFile writes) against a LLaVA-format file, as evaluateFile scores: answer once, score
 * many times. Records without an answer line are skipped and listed, not counted.
 */
export function scoreLlavaAnswers(answersFile: string, dataFile: string, opts: { strict?: boolean; limit?: number } = {}): EvalResult {
  checkOptions('scoreLlavaAnswers', opts, { strict: true, limit: true });
  const { questions, skipped, ids } = evalQuestions(dataFile, opts);
  const r = scoreQuestions(answersFile, questions, ids, dataFile);
  return { ...r, skipped: [...skipped, ...r.skipped], answers: answersFile, resumed: 0 };
}

// Answer lines are flushed every this many questions: generation batches only prompts of one length, and a window of
// 1,024 mixed Sort-of-CLEVR questions fills its batches of 32 about as a whole test set does; a killed run loses at
// most this many answers.
const FLUSH_EVERY = 1024;

export async function evaluateFile(model: VwLmm, tokenizer: TextTokenizer, file: string, imageFolder: string, opts: EvalOptions = {}): Promise<EvalResult> {
  checkOptions('evaluateFile', opts, EVAL_KEYS);
  if (opts.limit !== undefined && !(Number.isSafeInteger(opts.limit) && opts.limit >= 0)) throw typeError('evaluateFile', 'limit', 'an integer >= 0', opts.limit);
  const group = opts.processGroup;
  if (group !== undefined && (group === null || typeof group !== 'object' || typeof group.allGatherObject !== 'function')) throw typeError('evaluateFile', 'processGroup', 'a ProcessGroup', group);
  const { questions, skipped, ids } = evalQuestions(file, opts);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-eval-'));
  try {
    const questionFile = path.join(tmp, 'questions.jsonl');
    fs.writeFileSync(questionFile, questions.map(({ record: r, text }) =>
      JSON.stringify({ question_id: r.id, ...(r.image !== undefined ? { image: r.image } : {}), text, ...(typeof r.category === 'string' ? { category: r.category } : {}) }) + '\n').join(''));
    const shared = group !== undefined && group.worldSize > 1 ? group : null;
    const answers = shared ? path.join(tmp, 'answers.jsonl') : opts.answers ?? path.join(tmp, 'answers.jsonl');
    const answer = async (chunk?: { numChunks: number; chunkIdx: number }): Promise<AnswerResult> => {
      try {
        return await answerQuestions(model, tokenizer, {
          questions: questionFile, imageFolder, answers, modelId: opts.modelId ?? 'vwlmm', maxNewTokens: opts.maxNewTokens ?? 16,
          batchSize: opts.batchSize ?? 32, flushEvery: FLUSH_EVERY, strict: opts.strict, dtype: opts.dtype, ...chunk,
        });
      } catch (e) {
        // --strict: name the records' file, not the temporary question file written from it (the message names the id);
        // with a group, the answers file rank 0 read, not this rank's copy of it
        const m = (e as Error).message, prefix = `questions ${questionFile} `;
        if (m.startsWith(prefix)) throw new Error(`${file} ${m.slice(prefix.length).replace(/^line \d+ \(question_id (.*?)\): /, 'record $1: ')}`);
        if (shared && opts.answers !== undefined && m.includes(answers)) throw new Error(m.split(answers).join(opts.answers));
        throw e;
      }
    };
    let res: Pick<AnswerResult, 'skipped' | 'resumed'>, scored = answers;
    if (!shared) res = await answer();
    else {
      // rank 0's answers so far, on every rank: each resumes its share from them
      const [before] = await everyRank(shared, async () => (shared.rank === 0 && opts.answers !== undefined && fs.existsSync(opts.answers) ? fs.readFileSync(opts.answers, 'utf8') : null));
      if (before !== null) fs.writeFileSync(answers, before);
      const mine = new Set(chunkOf(questions, shared.worldSize, shared.rank).map((q) => q.record.id));
      const asked = new Set(questions.map((q) => q.record.id));
      const parts = await everyRank(shared, async () => {
        const r = await answer({ numChunks: shared.worldSize, chunkIdx: shared.rank });
        const lines = (fs.existsSync(answers) ? fs.readFileSync(answers, 'utf8').split('\n').filter((l) => l !== '') : [])
          .map((l) => ({ l, id: String((JSON.parse(l) as { question_id?: unknown }).question_id) }));
        return {
          // this share's lines in question order (answerQuestions orders a resumed share); rank 0 keeps the lines it read
          // that answer no question asked (another --limit's), ahead of the rest, as a single process keeps them
          lines: lines.filter((x) => mine.has(x.id)).map((x) => x.l),
          others: shared.rank === 0 ? lines.filter((x) => !asked.has(x.id)).map((x) => x.l) : [],
          resumed: r.resumed, skipped: r.skipped.map((s) => ({ line: s.line, questionId: s.questionId, reason: s.reason })),
        };
      });
      const all = [...parts[0].others, ...parts.flatMap((p) => p.lines)].map((l) => l + '\n').join('');
      scored = path.join(tmp, 'all.jsonl');
      fs.writeFileSync(scored, all);
      if (shared.rank === 0 && opts.answers !== undefined) {
        fs.mkdirSync(path.dirname(path.resolve(opts.answers)), { recursive: true });
        writeFileAtomic(opts.answers, all);
        scored = opts.answers;
      }
      res = { resumed: parts.reduce((a, p) => a + p.resumed, 0), skipped: parts.flatMap((p) => p.skipped) };
    }
    // a question answerQuestions could not ask (an unreadable image) is skipped for its reason, not as "no answer"
    const why = new Map(res.skipped.map((s) => [String(s.questionId), s.reason]));
    // answerQuestions leaves no answers file it made when it could answer none: nothing to score
    if (!fs.existsSync(scored)) fs.writeFileSync((scored = path.join(tmp, 'none.jsonl')), '');
    const r = scoreQuestions(scored, questions, ids, file);
    return { ...r, skipped: [...skipped, ...r.skipped.map((s) => (why.has(s.id!) ? { id: s.id, reason: why.get(s.id!)! } : s))], answers: opts.answers ?? null, resumed: res.resumed };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * `work`'s value on every rank, in rank order (allGatherObject), or on every rank the error of the first rank whose work
 * failed: a rank's error ends the others at once, not at the collective timeout of the next collective it never reaches.
 */
async function everyRank<T>(group: ProcessGroup, work: () => Promise<T>): Promise<T[]> {
  let value: T | undefined, error: unknown = null;
  try {
    value = await work();
  } catch (e) {
    error = e;
  }
  const all = group.allGatherObject<{ value?: T; error?: string }>(error === null ? { value } : { error: error instanceof Error ? error.message : String(error) });
  const bad = all.findIndex((x) => x.error !== undefined);
  if (bad === group.rank) throw error;
  if (bad >= 0) throw new Error(`rank ${bad} of ${group.worldSize}: ${all[bad].error}`);
  return all.map((x) => x.value as T);
}
