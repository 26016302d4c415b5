// Answers in LLaVA's formats (llava/eval/model_vqa_loader.py): a question file of JSON lines (question_id, image,
// text[, category]) in, an answers file out with one line per question, `{question_id, prompt, text, answer_id,
// model_id, metadata}` as LLaVA writes it (prompt: the question text; text: the greedy answer, stripped). The
// prompt is the loader's: "<image>\n" + question as the human turn of the conversation template, the assistant
// turn open (the question as it is: LLaVA's eval loaders do not strip it, as preprocess_multimodal does in training).
// Lines are written as LLaVA's json.dumps writes them (', ' and ': ', non-ASCII as \uXXXX escapes).
// Questions are split as LLaVA's --num-chunks / --chunk-idx split them; a rerun skips the questions already answered
// in the answers file, and lines are appended and flushed per batch, so a killed run loses at most one batch. A
// question's answer is found by (question_id, round_id, prompt), not the id alone (MME asks two questions of an image
// under one id); the k-th such line answers the k-th such question. A resumed file has this chunk's lines put back in
// question order, LLaVA's order, which MME's and POPE's scorers read in pairs and zip with their labels.
// format 'science' is model_vqa_science.py; 'mmbench' is model_vqa_mmbench.py (src/eval/mmbench.ts: an MMBench TSV with
// base64 images; its lines add round_id, options and option_char).
import * as crypto from 'crypto';
import * as fs from 'fs';
import { describeFsError, readRegularFileSync } from '../io/safetensors';
import * as path from 'path';
import { collate } from '../data/collate';
import { buildGenerationPrompt, ConversationTemplate, GenerationPrompt, getTemplate, IMAGE_TOKEN, TemplateName, tokenizerImageToken } from '../data/conversation';
import { decodeImage, loadImage, preprocessClip } from '../data/images';
import { clipPreprocessOptions } from '../model/config';
import { TextTokenizer } from '../data/tokenizer';
import type { ComputeDtype } from '../amp';
import { checkKeys, typeError } from '../errors';
import { VwLmm } from '../model/vwlmm';
import { chunkOf } from './chunk';
import { pyStrip } from './evalai';
import { mmbenchQuestions } from './mmbench';
import { writeFileAtomic } from '../io/atomic_file';
import { pyJsonDumps, pyKey } from './pyformat';

export { chunkOf };

export interface AnswerOptions {
  /**
   * The question file: model_vqa_loader's JSONL (question_id, image, text[, category]), or with format 'science'
   * model_vqa_science's JSON list of LLaVA records (id, image?, conversations: the first turn is the question), or with
   * format 'mmbench' an MMBench TSV (index, question, hint, A-D, image in base64, ...).
   */
  questions: string;
  /** Which LLaVA loader's questions and prompts: 'vqa_loader' (default), 'science' (ScienceQA) or 'mmbench'. */
  format?: 'vqa_loader' | 'science' | 'mmbench';
  /**
   * science, mmbench: append "Answer with the option's letter from the given choices directly." (LLaVA's
   * --single-pred-prompt; mmbench with lang 'cn': "请直接回答选项字母。").
   */
  singlePredPrompt?: boolean;
  /** mmbench: the language of the single-prediction instruction (LLaVA's --lang; default 'en'). */
  lang?: 'en' | 'cn';
  /** mmbench: answer every rotation of each question's options (LLaVA's --all-rounds). */
  allRounds?: boolean;
  imageFolder: string;
  /** The answers file (JSONL), appended to. */
  answers: string;
  /** model_id of every line (LLaVA: the checkpoint folder's name). */
  modelId: string;
  /** The conversation template (LLaVA's --conv-mode); default the model's. */
  template?: TemplateName;
  /** Generation budget per answer (LLaVA's default 128). */
  maxNewTokens?: number;
  /** Questions per generation batch (and per flush of the answers file). */
  batchSize?: number;
  /**
   * Questions per flush of the answers file, when more than batchSize: generation batches only prompts of one length,
   * so a larger window fills more of them (evaluateFile: Sort-of-CLEVR's questions come in several lengths, mixed).
   */
  flushEvery?: number;
  numChunks?: number;
  chunkIdx?: number;
  /** Stop on the first broken line or missing image instead of counting it. */
  strict?: boolean;
  /** The precision of generation (GenerateOptions.dtype; default the device's). */
  dtype?: ComputeDtype;
  onProgress?: (p: { done: number; total: number; answersPerSec: number; tokensPerSec: number; etaSec: number }) => void;
}

// Every option answerQuestions reads: another key ({ max_new_tokens: 2 }) is refused, not ignored
const ANSWER_KEYS = {
  questions: true, format: true, singlePredPrompt: true, lang: true, allRounds: true, imageFolder: true, answers: true, modelId: true, template: true,
  maxNewTokens: true, batchSize: true, flushEvery: true, numChunks: true, chunkIdx: true, strict: true, dtype: true, onProgress: true,
} satisfies Record<keyof AnswerOptions, true>;

/** AnswerOptions checked at run time (a JavaScript caller's may lack modelId, and every line would say "model_id": null). */
function checkAnswerOptions(o: AnswerOptions): void {
  const where = 'answerQuestions';
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(where, 'options', 'an object with questions, imageFolder, answers and modelId', o);
  checkKeys(where, 'option', o, ANSWER_KEYS);
  for (const k of ['questions', 'imageFolder', 'answers', 'modelId'] as const)
    if (typeof o[k] !== 'string' || o[k] === '') throw typeError(where, k, k === 'modelId' ? "a non-empty string (the answer lines' model_id)" : 'a non-empty path', o[k]);
  const oneOf = (k: keyof AnswerOptions, allowed: readonly string[]) => {
    if (o[k] !== undefined && !allowed.includes(o[k] as string)) throw typeError(where, k, allowed.map((a) => `'${a}'`).join(' | '), o[k]);
  };
  oneOf('format', ['vqa_loader', 'science', 'mmbench']);
  oneOf('lang', ['en', 'cn']);
  for (const k of ['singlePredPrompt', 'allRounds', 'strict'] as const)
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw typeError(where, k, 'a boolean', o[k]);
  for (const [k, min] of [['maxNewTokens', 0], ['batchSize', 1], ['numChunks', 1], ['chunkIdx', 0]] as const)
    if (o[k] !== undefined && !(Number.isSafeInteger(o[k]) && (o[k] as number) >= min)) throw typeError(where, k, `an integer >= ${min}`, o[k]);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw typeError(where, 'onProgress', 'a function', o.onProgress);
}

export interface AnswerResult {
  /**
   * Questions of this chunk (mmbench: one per round), answered now, and found in the answers file already: total =
   * answered + resumed + the skipped ones that are questions (skipped.length - unreadable).
   */
  total: number;
  answered: number;
  resumed: number;
  /**
   * What was not answered, with the reason: the entries of the question file that are no question (a broken line,
   * record or row: `unreadable` of them, the first ones; outside total) and questions of total (an unreadable image).
   */
  skipped: { line: number; questionId?: unknown; reason: string }[];
  /** How many of `skipped` (its first ones) are entries of the question file that could not be read as a question. */
  unreadable: number;
  /**
   * Lines of the answers file found at the start that answer no question of the question file (mmbench: of this
   * chunk): another question file's, or questions whose text changed since. They stay, and a scorer counts them.
   */
  unmatched: number;
  generatedTokens: number;
  seconds: number;
}

const SHORTUUID = '23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
/** A 22-character id from shortuuid's alphabet (LLaVA's answer_id). */
function answerId(): string {
  const bytes = crypto.randomBytes(22);
  return Array.from(bytes, (b) => SHORTUUID[b % SHORTUUID.length]).join('');
}

/**
 * A question's identity in the answers file: its id, its round where LLaVA writes one (MMBench), and its prompt (the
 * id alone is not one: MME's two questions of an image share it).
 */
const doneKey = (id: unknown, round: unknown, prompt: unknown) => JSON.stringify([pyKey(id), round === undefined ? null : pyKey(round), pyKey(prompt)]);

/**
 * The model_id of a checkpoint's answers, as LLaVA's get_model_name_from_path names a model: the folder's name, or
 * `<parent>_<folder>` for a checkpoint folder (LLaVA's checkpoint-N; a vwlmm run's own `<out>/checkpoint` too, so that
 * runs are told apart). With a LoRA adapter, the adapter folder's (LLaVA's LoRA evaluation passes the adapter folder
 * as --model-path and the base as --model-base): answers of the base and of its adapters are different models.
 */
export function modelIdOf(checkpoint: string, adapter?: string): string {
  const parts = path.resolve(adapter ?? checkpoint).split(path.sep).filter(Boolean);
  const last = parts[parts.length - 1] ?? 'model';
  return last.startsWith('checkpoint') && parts.length > 1 ? `${parts[parts.length - 2]}_${last}` : last;
}

/** What answeredLines read of an answers file. */
interface AnsweredLines {
  /** The complete answer lines by doneKey, in file order (0-based line numbers). */
  lines: Map<string, number[]>;
  /** The first line (1-based) that answers another model than the one asked for, with its model_id; null: none. */
  other: { line: number; modelId: unknown } | null;
  /**
   * The last line as a killed run leaves it (no newline): 'cut' when it is not a whole record (the file is cut back to
   * `keep` bytes), 'newline' when it is one whose newline was not written; null when the file ends with a newline.
   */
  tail: 'cut' | 'newline' | null;
  keep: number;
}

/**
 * Reads an answers file (a missing one has no lines) without changing it: every line but a last one left by a killed
 * run must be a JSON answer record, or the file is refused as not one this command wrote. repairTail then mends
 * that last line, once the caller has checked the file is its own (the other model's file, a question file, a
 * user's notes given as --answers by mistake must not lose a byte).
 */
function answeredLines(file: string, modelId: string): AnsweredLines {
  const byKey = new Map<string, number[]>();
  let other: AnsweredLines['other'] = null;
  if (!fs.existsSync(file)) return { lines: byKey, other, tail: null, keep: 0 };
  const text = textOf('answers', file);
  const lines = text.split('\n');
  let keep = 0, tail: AnsweredLines['tail'] = null; // keep: bytes of the whole records
  const notOurs = (i: number, why: string) => new Error(`answers ${file} line ${i + 1} ${why}: not a file this command wrote (give another answers file)`);
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    const last = i === lines.length - 1;
    if (last && l === '') break;
    let rec: { question_id?: unknown; round_id?: unknown; prompt?: unknown; model_id?: unknown };
    try {
      rec = JSON.parse(l);
    } catch (e) {
      // a record cut short by a kill: the last line, after whole records of this command's or as its first line starts
      if (last && (i > 0 || l.startsWith('{"question_id": ') || '{"question_id": '.startsWith(l))) {
        tail = 'cut';
        break;
      }
      throw notOurs(i, `is not JSON (${(e as Error).message})`);
    }
    if (rec === null || typeof rec !== 'object' || Array.isArray(rec) || !('question_id' in rec)) throw notOurs(i, 'is not an answer record (an object with a question_id)');
    if (last) tail = 'newline';
    const k = doneKey(rec.question_id, rec.round_id, rec.prompt);
    (byKey.get(k) ?? byKey.set(k, []).get(k)!).push(i);
    if (other === null && rec.model_id !== modelId) other = { line: i + 1, modelId: rec.model_id };
    keep += Buffer.byteLength(l, 'utf8') + 1;
  }
  return { lines: byKey, other, tail, keep };
}

/** Mends the last line a killed run left (answeredLines): a record cut short goes, a whole one gets its newline. */
function repairTail(file: string, read: AnsweredLines): void {
  if (read.tail === 'cut') fs.truncateSync(file, read.keep);
  else if (read.tail === 'newline') fs.appendFileSync(file, '\n');
}

/**
 * The line of the file (0-based) that answers each question, null for none: the k-th line of a doneKey answers the
 * k-th question of it.
 */
function matchAnswers(byKey: Map<string, number[]>, questions: readonly Question[]): (number | null)[] {
  const next = new Map<string, number>();
  return questions.map((q) => {
    const k = doneKey(q.id, q.round?.roundId, q.prompt);
    const n = next.get(k) ?? 0;
    next.set(k, n + 1);
    return byKey.get(k)?.[n] ?? null;
  });
}

/**
 * Puts the answer lines of `questions` in question order, in the places of the file they hold (other lines, another
 * chunk's, stay where they are): a resumed run appends the questions an earlier run skipped after later ones. The
 * file is replaced by a rename, so a kill leaves the old or the new one.
 */
function orderAnswers(file: string, modelId: string, questions: readonly Question[]) {
  const at = matchAnswers(answeredLines(file, modelId).lines, questions).filter((i): i is number => i !== null);
  if (at.every((i, k) => k === 0 || at[k - 1] < i)) return;
  const lines = textOf('answers', file).split('\n');
  const out = lines.slice();
  [...at].sort((a, b) => a - b).forEach((slot, k) => (out[slot] = lines[at[k]]));
  writeFileAtomic(file, out.join('\n'));
}

const SINGLE_PRED = "Answer with the option's letter from the given choices directly.";

/** A question to answer: its image (a file, or base64 from an MMBench TSV), the human turn after "<image>\n", the prompt written. */
export interface Question {
  line: number;
  id: unknown;
  image: { file: string } | { base64: string; row: number } | null;
  text: string;
  prompt: string;
  /** MMBench's fields of the answer line. */
  round?: { roundId: number; options: string[]; optionChar: string[] };
}

/** A questions or answers file's text; one that cannot be read (missing, a directory, a FIFO) is an error naming it. */
function textOf(what: string, file: string): string {
  try {
    return readRegularFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${what} ${file}: cannot read: ${describeFsError(e)}`);
  }
}

/**
 * model_vqa_science's questions: the first turn without "<image>", stripped; the written prompt gets "<image>\n" in
 * front when the record has an image (eval_science_qa counts those as IMG), and both get the single-prediction
 * instruction with --single-pred-prompt.
 */
export function scienceQuestions(file: string, singlePred: boolean, strict: boolean | undefined, skipped: AnswerResult['skipped']): Question[] {
  let list: unknown;
  const text = textOf('questions', file);
  try {
    list = JSON.parse(text);
  } catch (e) {
    throw new Error(`questions ${file}: not JSON (${(e as Error).message}); ScienceQA questions are one JSON list (llava_test_CQM-A.json)`);
  }
  if (!Array.isArray(list)) throw new Error(`questions ${file}: expected a JSON list of LLaVA records`);
  const out: Question[] = [];
  list.forEach((item: unknown, i) => {
    const r = (item !== null && typeof item === 'object' ? item : {}) as Record<string, unknown>;
    const first = Array.isArray(r.conversations) ? (r.conversations[0] as { value?: unknown } | undefined) : undefined;
    if (!('id' in r) || typeof first?.value !== 'string' || (r.image !== undefined && typeof r.image !== 'string')) {
      const reason = 'not a LLaVA record with an id and a first turn (and an image file name, if any)';
      if (strict) throw new Error(`questions ${file} record ${i}: ${reason}`);
      skipped.push({ line: i + 1, questionId: r.id, reason });
      return;
    }
    let qs = pyStrip(first.value.split('<image>').join(''));
    let prompt = r.image !== undefined ? `<image>\n${qs}` : qs;
    if (singlePred) {
      qs += `\n${SINGLE_PRED}`;
      prompt += `\n${SINGLE_PRED}`;
    }
    out.push({ line: i + 1, id: r.id, image: r.image !== undefined ? { file: r.image as string } : null, text: qs, prompt });
  });
  return out;
}

/**
 * model_vqa_loader's (and model_vqa's: the same prompt code) questions: JSON lines with question_id, text and image (a
 * file name; without one, a text-only question), the text taken as it is for both the prompt and the line written.
 */
export function loaderQuestions(file: string, strict: boolean | undefined, skipped: AnswerResult['skipped']): Question[] {
  const out: Question[] = [];
  const text = textOf('questions', file);
  // A JSON array (LLaVA's conversation files are one) would come out as one "not JSON" skip per line
  if (text.trimStart().startsWith('['))
    throw new Error(`questions ${file} is a JSON array; model_vqa_loader's questions are JSON lines, one object (question_id, image, text) per line (to answer a LLaVA conversation file, use \`vwlmm eval --data\`)`);
  text.split('\n').forEach((l, i) => {
    if (!l.trim()) return;
    const bad = (reason: string, id?: unknown) => {
      if (strict) throw new Error(`questions ${file} line ${i + 1}: ${reason}`);
      skipped.push({ line: i + 1, questionId: id, reason });
    };
    let q: Record<string, unknown>;
    try {
      q = JSON.parse(l) as Record<string, unknown>;
    } catch (e) {
      return bad(`not JSON (${(e as Error).message})`);
    }
    if (q === null || typeof q !== 'object' || Array.isArray(q)) return bad('not a JSON object');
    if (!('question_id' in q)) return bad('no question_id');
    // an integer literal past 2^53: Python keeps it exact; here it would be rounded, written back as another number,
    // and the scorer would not find it (or would find another question's). A float (1e17) is a float in both
    const digits = typeof q.question_id === 'number' && !Number.isSafeInteger(q.question_id) ? /"question_id"\s*:\s*(-?\d+)\s*[,}]/.exec(l)?.[1] : undefined;
    if (digits !== undefined) return bad(`question_id ${digits} is an integer past 2^53, which a JavaScript number cannot hold exactly: write it as a string`);
    if (typeof q.text !== 'string') return bad('text must be a string', q.question_id);
    if (q.image !== undefined && typeof q.image !== 'string') return bad('image must be a file name', q.question_id);
    out.push({ line: i + 1, id: q.question_id, image: q.image !== undefined ? { file: q.image as string } : null, text: q.text, prompt: q.text });
  });
  return out;
}

/**
 * The generation prompt of a question as LLaVA's eval loaders build it: "<image>\n" + text as the human turn (text
 * taken as it is), the assistant turn open; its token ids by tokenizer_image_token when a tokenizer is given.
 * With plain (conv_plain, SeparatorStyle.PLAIN) that is the human turn + "\n", its text kept; buildGenerationPrompt's
 * plain prompt is the training one ("<image>" alone: a stage-1 model's caption cue).
 */
export function answerPrompt(text: string, hasImage: boolean, template: TemplateName | ConversationTemplate, tokenizer?: TextTokenizer | null): GenerationPrompt {
  const value = hasImage ? `${IMAGE_TOKEN}\n${text}` : text;
  const t = getTemplate(template);
  if (t.style === 'plain') {
    const prompt = value ? value + t.sep : ''; // get_prompt skips an empty message, separator and all
    return { prompt, inputIds: tokenizer ? tokenizerImageToken(prompt, tokenizer) : null, numImages: prompt.split(IMAGE_TOKEN).length - 1 };
  }
  return buildGenerationPrompt([{ from: 'human', value }], t, tokenizer, { moveImageToFront: false });
}

/** answerOne's options: the prompt's template and how to generate (VwLmm.generate's GenerateOptions). */
export interface AnswerOneOptions {
  /** The conversation template (LLaVA's --conv-mode); default the model's. */
  template?: TemplateName;
  /** Generation budget (default 128, `vwlmm generate`'s and the official inference's). */
  maxNewTokens?: number;
  /** 0 (default): greedy; > 0 samples (GenerateOptions.temperature). */
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  dtype?: ComputeDtype;
}
const ANSWER_ONE_KEYS = {
  template: true, maxNewTokens: true, temperature: true, topP: true, topK: true, seed: true, dtype: true,
} satisfies Record<keyof AnswerOneOptions, true>;

/**
 * The answer to one question, as `vwlmm generate` prints it and `vwlmm answer` writes it: the question (as it is) after
 * "<image>\n" when there are pixels, as the human turn of the template with the assistant turn open (answerPrompt),
 * generated up to the tokenizer's EOS and stripped as Python's str.strip() does. `pixels`: one image preprocessed as the
 * model takes it (preprocessClip(image, clipPreprocessOptions(model.config))), or null for a text-only question.
 */
export function answerOne(model: VwLmm, tokenizer: TextTokenizer, question: string, pixels: Float32Array | null, options: AnswerOneOptions = {}): string {
  return answered('answerOne', model, tokenizer, question, pixels, options).text;
}

/** answerOne's answer with what made it. */
export interface AnswerDetails {
  prompt: string;
  /** The prompt's ids as tokenizer_image_token gives them: the image as LLaVA's placeholder -200, once (transformers' processor writes its image token once per image feature). */
  inputIds: number[];
  /** The ids generated, without the EOS that ends them (transformers' generate returns it too). */
  outputIds: number[];
  text: string;
}

/**
 * answerOne with its prompt and ids (`vwlmm generate --json`), to compare token for token with another implementation
 * (transformers' generate on a converted folder).
 */
export function answerOneDetails(model: VwLmm, tokenizer: TextTokenizer, question: string, pixels: Float32Array | null, options: AnswerOneOptions = {}): AnswerDetails {
  return answered('answerOneDetails', model, tokenizer, question, pixels, options);
}

function answered(where: string, model: VwLmm, tokenizer: TextTokenizer, question: string, pixels: Float32Array | null, options: AnswerOneOptions): AnswerDetails {
  if (typeof question !== 'string') throw typeError(where, 'question', 'a string', question);
  if (pixels !== null && !(pixels instanceof Float32Array)) throw typeError(where, 'pixels', 'a Float32Array of one preprocessed image, or null (no image)', pixels);
  const v = model.config.vision, perImage = v.numChannels * v.imageSize * v.imageSize;
  if (pixels !== null && pixels.length !== perImage)
    throw new RangeError(`${where}: expected one image of ${v.numChannels} x ${v.imageSize} x ${v.imageSize} = ${perImage} values (preprocessClip(image, clipPreprocessOptions(model.config))) for pixels but received Float32Array(${pixels.length})`);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw typeError(where, 'options', `an object with keys among ${Object.keys(ANSWER_ONE_KEYS).join(', ')}`, options);
  checkKeys(where, 'option', options, ANSWER_ONE_KEYS);
  // the image goes in front of the question: one placeholder in it too would make two for one image (answer skips such a question)
  const held = question.split(IMAGE_TOKEN).length - 1;
  if (held > 0) throw new RangeError(`${where}: the question holds "${IMAGE_TOKEN}": the prompt would hold ${held + (pixels ? 1 : 0)} image placeholders for ${pixels ? 'one image' : 'no image'}; give the question alone (the image goes in front of it)`);
  const p = answerPrompt(question, pixels !== null, getTemplate(options.template ?? model.config.template), tokenizer);
  const b = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
  const { template: _, maxNewTokens = 128, ...sampling } = options;
  const [ids] = model.generate([{ tokenIds: b.tokenIds, imagePositions: b.imagePositions, pixelValues: b.pixelValues }], { ...sampling, maxNewTokens, eosId: tokenizer.eosId });
  return { prompt: p.prompt, inputIds: p.inputIds!, outputIds: [...ids], text: pyStrip(tokenizer.decode(ids)) };
}

export async function answerQuestions(model: VwLmm, tokenizer: TextTokenizer, o: AnswerOptions): Promise<AnswerResult> {
  const t0 = Date.now();
  checkAnswerOptions(o);
  if (!fs.existsSync(o.questions)) throw new Error(`questions ${o.questions} does not exist`);
  const skipped: AnswerResult['skipped'] = [];
  const questions: Question[] = [];
  let mmbench: Question[] | null = null;
  if (o.format === 'mmbench') {
    // LLaVA chunks the TSV's rows, then asks each row's rounds
    const m = mmbenchQuestions(o.questions, { lang: o.lang, singlePredPrompt: o.singlePredPrompt, allRounds: o.allRounds, numChunks: o.numChunks, chunkIdx: o.chunkIdx, strict: o.strict });
    skipped.push(...m.skipped);
    mmbench = m.questions.map((q) => ({
      line: q.line, id: q.questionId, image: { base64: q.imageBase64, row: q.row }, text: q.text, prompt: q.prompt,
      round: { roundId: q.roundId, options: q.options, optionChar: q.optionChar },
    }));
  } else if (o.format === 'science') {
    for (const q of scienceQuestions(o.questions, !!o.singlePredPrompt, o.strict, skipped)) questions.push(q);
  } else for (const q of loaderQuestions(o.questions, o.strict, skipped)) questions.push(q);
  const chunk = mmbench ?? chunkOf(questions, o.numChunks ?? 1, o.chunkIdx ?? 0);
  const unreadable = skipped.length; // no question: not in the chunk's total
  const dir = path.dirname(path.resolve(o.answers));
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file stands where a folder of that path must be' : describeFsError(e);
    throw new Error(`answers ${o.answers}: cannot make its folder ${dir}: ${why}`);
  }
  const read = answeredLines(o.answers, o.modelId);
  const { lines: done, other } = read;
  // a rerun resumes its own answers; another model's would be scored as this one's
  if (other) throw new Error(`answers ${o.answers} line ${other.line} is an answer of model_id ${JSON.stringify(other.modelId)}, not of ${JSON.stringify(o.modelId)}: a rerun resumes only its own model's answers (give another answers file, or delete this one)`);
  repairTail(o.answers, read);
  const found = matchAnswers(done, chunk);
  let lineCount = 0;
  for (const at of done.values()) lineCount += at.length;
  const unmatched = lineCount - (mmbench ? found : matchAnswers(done, questions)).filter((i) => i !== null).length;
  const pending = chunk.filter((_, i) => found[i] === null);
  const cfg = model.config, template = getTemplate(o.template ?? cfg.template); // an unknown name fails here, before any work
  const batchSize = o.batchSize ?? 16;
  if (o.flushEvery !== undefined && !(Number.isInteger(o.flushEvery) && o.flushEvery >= 1)) throw new RangeError(`answer: flushEvery must be an integer >= 1, got ${o.flushEvery}`);
  const flushEvery = Math.max(batchSize, o.flushEvery ?? batchSize);
  let answered = 0, tokens = 0;
  const created = !fs.existsSync(o.answers);
  const fd = fs.openSync(o.answers, 'a');
  try {
    for (let b = 0; b < pending.length; b += flushEvery) {
      const batch: { q: (typeof pending)[number]; prompt: { tokenIds: Int32Array; imagePositions: Int32Array; pixelValues: Float32Array | null } }[] = [];
      for (const q of pending.slice(b, b + flushEvery)) {
        const skip = (reason: string) => {
          if (o.strict) throw new Error(`questions ${o.questions} line ${q.line} (question_id ${JSON.stringify(q.id)}): ${reason}`);
          skipped.push({ line: q.line, questionId: q.id, reason });
        };
        const p = answerPrompt(q.text, q.image !== null, template, tokenizer);
        // LLaVA builds such a prompt too, but its model fails on more placeholders than images
        if (p.numImages !== (q.image !== null ? 1 : 0)) {
          skip(`the question's text holds "<image>" (the prompt would hold ${p.numImages} image placeholders for ${q.image !== null ? 'one image' : 'no image'})`);
          continue;
        }
        let pixels: Float32Array | null = null;
        if (q.image !== null) {
          const img = q.image;
          try {
            const rgb = 'file' in img ? await loadImage(path.resolve(o.imageFolder, img.file)) : await decodeImage(Buffer.from(img.base64, 'base64'), `${o.questions} row ${img.row} column image`);
            pixels = await preprocessClip(rgb, clipPreprocessOptions(cfg));
          } catch (e) {
            skip(`image ${'file' in img ? img.file : `row ${img.row}`}: ${(e as Error).message}`);
            continue;
          }
        }
        const c = collate([{ inputIds: p.inputIds!, labels: p.inputIds!.map(() => -100), image: pixels }], { padId: tokenizer.padId, numPatches: model.numImageTokens });
        batch.push({ q, prompt: { tokenIds: c.tokenIds, imagePositions: c.imagePositions, pixelValues: c.pixelValues } });
      }
      if (batch.length === 0) continue;
      const outs = model.generate(batch.map((x) => x.prompt), { maxNewTokens: o.maxNewTokens ?? 128, eosId: tokenizer.eosId, batchSize, dtype: o.dtype });
      let lines = '';
      outs.forEach((ids, k) => {
        tokens += ids.length;
        const text = pyStrip(tokenizer.decode(ids));
        const q = batch[k].q;
        // LLaVA's key order: model_vqa_mmbench.py adds round_id after question_id, options and option_char after text
        const rec = q.round
          ? { question_id: q.id, round_id: q.round.roundId, prompt: q.prompt, text, options: q.round.options, option_char: q.round.optionChar, answer_id: answerId(), model_id: o.modelId, metadata: {} }
          : { question_id: q.id, prompt: q.prompt, text, answer_id: answerId(), model_id: o.modelId, metadata: {} };
        lines += pyJsonDumps(rec, null) + '\n';
      });
      fs.writeSync(fd, lines);
      fs.fsyncSync(fd);
      answered += outs.length;
      const sec = (Date.now() - t0) / 1000;
      o.onProgress?.({ done: answered, total: pending.length, answersPerSec: answered / sec, tokensPerSec: tokens / sec, etaSec: ((pending.length - b - batch.length) * sec) / Math.max(1, b + batch.length) });
    }
  } finally {
    fs.closeSync(fd);
    // a run that answered none of its questions (every image unreadable, or a --strict stop) leaves no empty file it
    // made; a chunk with no question keeps its empty file (LLaVA's merge reads every chunk's)
    if (created && answered === 0 && pending.length > 0) fs.rmSync(o.answers, { force: true });
  }
  // also when nothing was left to answer: a run killed before this ordered its file
  if (pending.length < chunk.length) orderAnswers(o.answers, o.modelId, chunk);
  return { total: chunk.length, answered, resumed: chunk.length - pending.length, skipped, unreadable, unmatched, generatedTokens: tokens, seconds: (Date.now() - t0) / 1000 };
}
