// MMBench as LLaVA-1.5 runs it: the questions of an MMBench TSV (llava/eval/model_vqa_mmbench.py: hint, options A-D,
// the single-prediction instruction in English or Chinese, every rotation of the options with --all-rounds) and the
// upload file of scripts/convert_mmbench_for_submission.py (the TSV without hint, category, source, image, comment and
// l2-category, a prediction column at position 6, written by pandas to an .xlsx with openpyxl).
//
// Both read the TSV as pandas.read_table does (readTable): tab-separated, '"' quotes a field only at its start ("" is
// a quote inside it), CR / LF / CRLF line ends, blank lines and lines of spaces skipped, a leading BOM dropped, pandas'
// missing-value strings ('', NA, N/A, NaN, None, null, ...), and per column the type pandas infers (integers, floats,
// booleans or text): the answers' question_id is the number pandas reads, and the upload file's cells carry those
// types. Options are LLaVA's get_options: A, B, C, D up to the first missing one (is_none: pandas' missing values and
// the strings "nan" / "none" in any case). Tests run LLaVA's own code on fixture TSVs (scripts/make_mmbench_fixtures.py).
import * as fs from 'fs';
import { kindOf } from '../io/safetensors';
import { writeXlsx, XlsxValue } from '../io/xlsx';
import { answerObjectLines } from './answer_source';
import { chunkOf } from './chunk';
import { pyKey } from './pyformat';

/** pandas' default missing-value strings (pandas._libs.parsers.STR_NA_VALUES). */
const PANDAS_NA = new Set(['', '#N/A', '#N/A N/A', '#NA', '-1.#IND', '-1.#QNAN', '-NaN', '-nan', '1.#IND', '1.#QNAN', '<NA>', 'N/A', 'NA', 'NULL', 'NaN', 'None', 'n/a', 'nan', 'null']);

export interface TsvTable {
  file: string;
  /** Column names as pandas names them (a repeated name gets ".1", ".2", ...; an empty one "Unnamed: i"). */
  columns: string[];
  /** Data rows: the line each starts on, and its fields as written (a row may be shorter: pandas fills NaN). */
  rows: { line: number; fields: string[] }[];
}

const TAB = 9, LF = 10, CR = 13, SP = 32, QUOTE = 34;

/** The records of a tab-separated file as pandas' C tokenizer splits them (see the file comment). */
export function readTable(file: string): TsvTable {
  if (!fs.existsSync(file)) throw new Error(`${file} does not exist`);
  const st = fs.statSync(file);
  if (st.isDirectory()) throw new Error(`${file} is a directory; expected an MMBench TSV file`); // not a bare EISDIR
  if (!st.isFile()) throw new Error(`${file} is ${kindOf(st)}; expected an MMBench TSV file`); // a FIFO would block the read
  const buf = fs.readFileSync(file);
  const n = buf.length;
  let i = n >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  let line = 1;
  const records: { line: number; fields: string[] }[] = [];
  const eol = () => {
    if (buf[i] === CR && buf[i + 1] === LF) i++;
    i++;
    line++;
  };
  while (i < n) {
    if (buf[i] === LF || buf[i] === CR) {
      eol(); // a blank line
      continue;
    }
    if (buf[i] === SP) {
      let j = i;
      while (j < n && buf[j] === SP) j++;
      if (j === n || buf[j] === LF || buf[j] === CR) {
        i = j; // a line of spaces only
        continue;
      }
    }
    const start = line;
    const fields: string[] = [];
    for (;;) {
      const segs: [number, number][] = [];
      let from = i;
      if (buf[i] === QUOTE) {
        // a quoted field: tabs and line ends are text, "" is one quote; what follows the closing quote is appended
        from = ++i;
        for (;;) {
          if (i >= n) throw new Error(`${file} line ${start}: the file ends inside a quoted field (a '"' at the start of a field of this record is never closed)`);
          if (buf[i] === QUOTE) {
            if (buf[i + 1] === QUOTE) {
              segs.push([from, i + 1]);
              i += 2;
              from = i;
              continue;
            }
            segs.push([from, i]);
            from = ++i;
            break;
          }
          if (buf[i] === LF || (buf[i] === CR && buf[i + 1] !== LF)) line++;
          i++;
        }
      }
      while (i < n && buf[i] !== TAB && buf[i] !== LF && buf[i] !== CR) i++;
      if (i > from) segs.push([from, i]);
      fields.push(segs.length === 1 ? buf.toString('utf8', segs[0][0], segs[0][1]) : Buffer.concat(segs.map(([a, b]) => buf.subarray(a, b))).toString('utf8'));
      if (i < n && buf[i] === TAB) {
        i++;
        if (i === n) fields.push(''); // a tab ends the file: one more, empty, field
        if (i < n) continue;
      } else if (i < n) eol();
      break;
    }
    records.push({ line: start, fields });
  }
  if (records.length === 0) throw new Error(`${file} is empty: expected a header line of tab-separated column names`);
  const seen = new Map<string, number>();
  const columns = records[0].fields.map((name, k) => {
    let col = name === '' ? `Unnamed: ${k}` : name;
    if (seen.has(col)) {
      let m = seen.get(col)!;
      while (seen.has(`${col}.${m}`)) m++;
      seen.set(col, m + 1);
      col = `${col}.${m}`;
    }
    seen.set(col, 1);
    return col;
  });
  return { file, columns, rows: records.slice(1) };
}

/** A field is missing for pandas (na_values): absent from a short row, or one of its missing-value strings. */
export function isPandasNA(field: string | undefined): boolean {
  return field === undefined || PANDAS_NA.has(field);
}

/** LLaVA's is_none on the value pandas reads: missing, or the text "nan" / "none" in any case. */
function isNone(field: string | undefined): boolean {
  return isPandasNA(field) || field!.toLowerCase() === 'nan' || field!.toLowerCase() === 'none';
}

const FLOAT = /^[ \t\n\r\v\f]*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity)[ \t\n\r\v\f]*$/i;
const TRUE = new Set(['True', 'TRUE', 'true']), FALSE = new Set(['False', 'FALSE', 'false']);

/**
 * A column's values as pandas infers them: numbers when every present value is an integer or float, booleans when every
 * one is True / False (pandas' spellings), otherwise the text as written; null where pandas has NaN.
 */
export function pandasColumn(fields: readonly (string | undefined)[]): (string | number | boolean | null)[] {
  const present = fields.filter((f): f is string => !isPandasNA(f));
  if (present.length > 0 && present.every((f) => FLOAT.test(f))) {
    return fields.map((f) => {
      if (isPandasNA(f)) return null;
      const t = f!.trim().toLowerCase().replace(/^([+-]?)inf(inity)?$/, '$1Infinity');
      return Number(t);
    });
  }
  if (present.length > 0 && present.every((f) => TRUE.has(f) || FALSE.has(f))) return fields.map((f) => (isPandasNA(f) ? null : TRUE.has(f!)));
  return fields.map((f) => (isPandasNA(f) ? null : f!));
}

// ------------------------------------------------------------------------------------------------ questions

export const MMBENCH_OPTIONS = ['A', 'B', 'C', 'D'] as const;
/** model_vqa_mmbench.py's instructions with --single-pred-prompt (--lang cn: the Chinese one). */
export const MMBENCH_SINGLE_PRED = { en: "Answer with the option's letter from the given choices directly.", cn: '请直接回答选项字母。' } as const;

/** One question of one round, as model_vqa_mmbench.py asks it and writes its answer line. */
export interface MMBenchQuestion {
  /** The TSV line its row starts on, and the row (1-based, the header not counted). */
  line: number;
  row: number;
  /** question_id: the row's index as pandas reads it. */
  questionId: number | string;
  roundId: number;
  /** The image, base64 as in the TSV (checked to be base64; decoded when answered). */
  imageBase64: string;
  /** The human turn after "<image>\n": hint, question, options, and the instruction with single-pred. */
  text: string;
  /** The answer line's prompt (cur_prompt): hint, question and options, no instruction. */
  prompt: string;
  options: string[];
  optionChar: string[];
}

export interface MMBenchQuestionOptions {
  /** 'cn': the Chinese single-prediction instruction (LLaVA's --lang); default 'en'. */
  lang?: 'en' | 'cn';
  singlePredPrompt?: boolean;
  /** Every rotation of the options, one round each (LLaVA's --all-rounds). */
  allRounds?: boolean;
  /** LLaVA's --num-chunks / --chunk-idx over the TSV's rows (before the rounds). */
  numChunks?: number;
  chunkIdx?: number;
  /** Throw on the first broken row instead of listing it in `skipped`. */
  strict?: boolean;
}

const REQUIRED = ['index', 'question', 'hint', 'image', ...MMBENCH_OPTIONS];

/** Standard base64 (whitespace allowed, as Python's b64decode skips it); the reason it is not, or null. */
function base64Problem(s: string): string | null {
  const t = s.replace(/\s+/g, '');
  if (t === '') return 'empty';
  const bad = /[^A-Za-z0-9+/=]/.exec(t);
  if (bad) return `not base64 (character ${JSON.stringify(bad[0])} at ${bad.index})`;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(t)) return "not base64 ('=' inside the data)";
  if (t.length % 4 !== 0) return `not base64 (${t.length} characters, not a multiple of 4: cut short?)`;
  return null;
}

/**
 * The questions of an MMBench TSV as model_vqa_mmbench.py asks them, in its order (rows of this chunk, then the
 * rounds of each row). A row that cannot be asked (index, question or image missing, an image that is not base64, more
 * fields than the header) is listed in `skipped` with its line and the column, or thrown with `strict`; a TSV without
 * one of the columns LLaVA reads is an error naming them.
 */
export function mmbenchQuestions(file: string, options: MMBenchQuestionOptions = {}): { questions: MMBenchQuestion[]; skipped: { line: number; questionId?: unknown; reason: string }[]; rows: number } {
  const lang = options.lang ?? 'en';
  if (lang !== 'en' && lang !== 'cn') throw new RangeError(`mmbenchQuestions: lang must be 'en' or 'cn', got ${JSON.stringify(lang)}`);
  const t = readTable(file);
  const missing = REQUIRED.filter((c) => !t.columns.includes(c));
  if (missing.length) throw new Error(`questions ${file}: no column ${missing.map((c) => `'${c}'`).join(', ')} (model_vqa_mmbench.py reads ${REQUIRED.join(', ')}; the header has ${t.columns.join(', ')})`);
  const col = Object.fromEntries(t.columns.map((c, k) => [c, k])) as Record<string, number>;
  const index = pandasColumn(t.rows.map((r) => r.fields[col.index]));
  const rows = chunkOf(t.rows.map((r, k) => ({ ...r, k })), options.numChunks ?? 1, options.chunkIdx ?? 0);
  const questions: MMBenchQuestion[] = [];
  const skipped: { line: number; questionId?: unknown; reason: string }[] = [];
  for (const r of rows) {
    const id = index[r.k];
    const field = (c: string) => r.fields[col[c]];
    let reason: string | null = null;
    if (r.fields.length > t.columns.length) reason = `too many fields: ${r.fields.length}, the header has ${t.columns.length}`;
    else if (id === null) reason = 'column index: missing value';
    else if (isPandasNA(field('question'))) reason = 'column question: missing value';
    else if (isPandasNA(field('image'))) reason = 'column image: missing value';
    else {
      const b = base64Problem(field('image')!);
      if (b) reason = `column image: ${b}`;
    }
    if (reason !== null) {
      if (options.strict) throw new Error(`questions ${file} line ${r.line} (row ${r.k + 1}${id !== null ? `, index ${String(id)}` : ''}): ${reason}`);
      skipped.push({ line: r.line, questionId: id ?? undefined, reason });
      continue;
    }
    // get_options: A, B, C, D up to the first missing one
    let opts: string[] = [];
    for (const c of MMBENCH_OPTIONS) {
      if (isNone(field(c))) break;
      opts.push(field(c)!);
    }
    let chars: string[] = MMBENCH_OPTIONS.slice(0, opts.length);
    const hint = field('hint');
    const rounds = options.allRounds ? opts.length : 1;
    for (let round = 0; round < rounds; round++) {
      let q = field('question')!;
      if (!isNone(hint)) q = `${hint}\n${q}`;
      opts.forEach((o, j) => (q += `\n${MMBENCH_OPTIONS[j]}. ${o}`));
      questions.push({
        line: r.line, row: r.k + 1, questionId: id as number | string, roundId: round, imageBase64: field('image')!, prompt: q,
        text: options.singlePredPrompt ? `${q}\n${MMBENCH_SINGLE_PRED[lang]}` : q, options: opts, optionChar: chars,
      });
      // the next round: the options rotated by one, their letters with them
      opts = [...opts.slice(1), ...opts.slice(0, 1)];
      chars = [...chars.slice(1), ...chars.slice(0, 1)];
    }
  }
  return { questions, skipped, rows: rows.length };
}

// ------------------------------------------------------------------------------------------------ upload file

const DROPPED = ['hint', 'category', 'source', 'image', 'comment', 'l2-category'];

export interface MMBenchSubmission {
  /** The .xlsx file's bytes. */
  xlsx: Buffer;
  /** The sheet: the header row, then one row per TSV row. */
  rows: XlsxValue[][];
  /** TSV rows, rows given a prediction, answer lines read, and lines whose question_id is no row's index. */
  count: { rows: number; predicted: number; answers: number; unmatched: number };
  /** What the script prints: nothing. */
  report: string;
}

/** A cell as pandas' ExcelFormatter hands it to openpyxl: NaN as na_rep '', infinities as inf_rep 'inf' / '-inf'. */
function excelCell(v: string | number | boolean | null): XlsxValue {
  if (v === null || (typeof v === 'number' && Number.isNaN(v))) return '';
  if (typeof v === 'number' && !Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  return v;
}

/** Python equality of a JSON question_id with an index value pandas read (bool is 0 / 1; 1 == 1.0; "1" != 1). */
function matchKey(v: unknown): string | null {
  if (typeof v === 'boolean') return `n:${v ? 1 : 0}`;
  if (typeof v === 'number') return Number.isNaN(v) ? null : `n:${v === 0 ? 0 : v}`;
  if (typeof v === 'string') return pyKey(v);
  return null;
}

/**
 * convert_mmbench_for_submission.py: the TSV's rows without the dropped columns, `prediction` at column 6 with the text
 * of the last answer line whose question_id equals the row's index (LLaVA's answers of every round share it: the
 * last round's wins), as the .xlsx pandas writes. Where the script would crash (a dropped column missing, a line
 * without question_id or text) this throws, naming the file, line or column.
 */
export function mmbenchSubmission(answersFile: string, annotationFile: string): MMBenchSubmission {
  const t = readTable(annotationFile);
  const missing = ['index', ...DROPPED].filter((c) => !t.columns.includes(c));
  if (missing.length) throw new Error(`annotations ${annotationFile}: no column ${missing.map((c) => `'${c}'`).join(', ')} (convert_mmbench_for_submission.py drops ${DROPPED.join(', ')} and joins on index; the header has ${t.columns.join(', ')})`);
  const long = t.rows.find((r) => r.fields.length > t.columns.length);
  if (long) throw new Error(`annotations ${annotationFile} line ${long.line}: ${long.fields.length} fields, the header has ${t.columns.length} (pandas stops here)`);
  const kept = t.columns.map((c, k) => ({ c, k })).filter(({ c }) => !DROPPED.includes(c));
  if (kept.length < 6) throw new Error(`annotations ${annotationFile}: ${kept.length} columns remain after dropping ${DROPPED.join(', ')}; the script inserts prediction at position 6`);
  if (kept.some(({ c }) => c === 'prediction')) throw new Error(`annotations ${annotationFile}: already has a 'prediction' column (pandas' insert refuses it)`);
  const values = kept.map(({ k }) => pandasColumn(t.rows.map((r) => r.fields[k])));
  const indexValues = values[kept.findIndex(({ c }) => c === 'index')];
  const rowsOf = new Map<string, number[]>();
  indexValues.forEach((v, r) => {
    const key = matchKey(v);
    if (key !== null) rowsOf.set(key, [...(rowsOf.get(key) ?? []), r]);
  });
  const prediction: XlsxValue[] = t.rows.map(() => '');
  let unmatched = 0;
  const answers = answerObjectLines(answersFile);
  for (const { rec, at } of answers) {
    if (!('question_id' in rec)) throw new Error(`${at}: no question_id`);
    if (!('text' in rec)) throw new Error(`${at}: no text`);
    const text = rec.text;
    if (text !== null && typeof text !== 'string' && typeof text !== 'number' && typeof text !== 'boolean') throw new Error(`${at}: text must be a string, got ${JSON.stringify(text).slice(0, 40)} (openpyxl cannot write it)`);
    const key = matchKey(rec.question_id);
    const hit = key === null ? undefined : rowsOf.get(key);
    if (!hit) unmatched++;
    for (const r of hit ?? []) prediction[r] = excelCell(text as string | number | boolean | null);
  }
  const header: XlsxValue[] = kept.map(({ c }) => c);
  header.splice(6, 0, 'prediction');
  const rows: XlsxValue[][] = [header];
  t.rows.forEach((_, r) => {
    const row = values.map((col) => excelCell(col[r]));
    row.splice(6, 0, prediction[r]);
    rows.push(row);
  });
  let xlsx: Buffer;
  try {
    xlsx = writeXlsx(rows);
  } catch (e) {
    // name the TSV line or the answer behind the cell
    throw new Error(`mmbench upload file from ${annotationFile} and ${answersFile}: ${(e as Error).message.replace(/^writeXlsx: /, '')} (row 1 is the header; row k + 1 is the TSV's k-th data row)`);
  }
  return { xlsx, rows, count: { rows: t.rows.length, predicted: prediction.filter((p) => p !== '').length, answers: answers.length, unmatched }, report: '' };
}
