// LLaVA-format data sets (shared/method/VISUAL_WORDS.md section 5): reading and validating records from a
// JSON list or JSONL file, a seeded per-epoch order, image loading with skip accounting, and resumable
// batches. Generic: tokenisation and chat templates live in src/data/conversation.ts.

import { readRegularFileSync } from '../io/safetensors';
import * as path from 'path';
import { checkSeed, Generator } from '../random';
import { loadImage as decodeImageFile, RgbImage } from './images';

export type LlavaRole = 'human' | 'gpt';

export interface LlavaTurn {
  from: LlavaRole;
  value: string;
}

export interface LlavaRecord {
  /** The record's id as a string (numbers are converted; a missing id becomes "<file name>#<line or index>"). */
  id: string;
  /** Image path relative to the image folder (absolute paths are used as they are); absent for text-only. */
  image?: string;
  conversations: LlavaTurn[];
  category?: string;
  /** Human answers (10 for VQAv2 / VizWiz / TextVQA). */
  answers?: string[];
  /** Any other field of the source record, kept as it was (e.g. "group"). */
  [key: string]: unknown;
}

/** Where a record stands in its file: its 1-based line (JSONL) or its 0-based index in the list (JSON). */
export interface RecordPosition {
  line?: number;
  index?: number;
}

export interface SkippedRecord {
  /** 1-based line number (JSONL). */
  line?: number;
  /** 0-based position in the list (JSON). */
  index?: number;
  reason: string;
}

export interface ReadLlavaOptions {
  /** Throw on the first malformed line or invalid record (the message names file:line or file[index]). */
  strict?: boolean;
  /** 'json' (a list) or 'jsonl'; default from the extension (.jsonl -> jsonl, .json -> json), else sniffed. */
  format?: 'json' | 'jsonl';
}

const ROLE_MAP: Record<string, LlavaRole> = { human: 'human', user: 'human', gpt: 'gpt', assistant: 'gpt' };

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/**
 * Validate one raw record. Returns the normalised record or a reason string.
 * Rules: an object; `conversations` a non-empty array of { from, value: string } with from in human/gpt
 * (user/assistant accepted and mapped, case-insensitive), alternating and starting with human (it may end
 * with a human turn, as evaluation prompts do; a first turn from gpt is dropped, as LLaVA's preprocess drops it); `image` absent/null or a non-empty string; a record without
 * an image must not contain "<image>"; `id` a string or number if present; `category` a string if present;
 * `answers` a non-empty array of strings if present.
 */
export function validateLlavaRecord(raw: unknown, fallbackId: string): LlavaRecord | string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return `record is ${typeName(raw)}, not an object`;
  const r = raw as Record<string, unknown>;
  let id: string;
  if (r.id === undefined || r.id === null) id = fallbackId;
  else if (typeof r.id === 'string' || (typeof r.id === 'number' && Number.isFinite(r.id))) id = String(r.id);
  else return `id is ${typeName(r.id)}, expected a string or number`;
  const where = `record '${id}'`;
  const conv = r.conversations;
  if (conv === undefined) return `${where}: missing 'conversations'`;
  if (!Array.isArray(conv)) return `${where}: 'conversations' is ${typeName(conv)}, expected an array`;
  if (conv.length === 0) return `${where}: 'conversations' is empty`;
  const turns: LlavaTurn[] = [];
  for (let k = 0; k < conv.length; k++) {
    const t = conv[k] as Record<string, unknown>;
    if (typeof t !== 'object' || t === null || Array.isArray(t)) return `${where}: turn ${k} is ${typeName(t)}, not an object`;
    if (typeof t.from !== 'string') return `${where}: turn ${k} has no string 'from'`;
    const role = ROLE_MAP[t.from.toLowerCase()];
    if (!role) return `${where}: turn ${k} has from '${t.from}', expected human/gpt (or user/assistant)`;
    if (typeof t.value !== 'string') return `${where}: turn ${k} 'value' is ${typeName(t.value)}, expected a string`;
    if (k === 0 && role === 'gpt') continue; // LLaVA's preprocess: a conversation that opens with gpt loses that turn
    const expected: LlavaRole = turns.length % 2 === 0 ? 'human' : 'gpt';
    if (role !== expected) {
      return `${where}: turn ${k} is from ${role} but turns must alternate human, gpt, ... starting with human`;
    }
    turns.push({ from: role, value: t.value });
  }
  if (turns.length === 0) return `${where}: 'conversations' holds only a gpt turn (LLaVA drops a first turn from gpt)`;
  let image: string | undefined;
  if (r.image !== undefined && r.image !== null) {
    if (typeof r.image !== 'string') return `${where}: 'image' is ${typeName(r.image)}, expected a string`;
    if (r.image.length === 0) return `${where}: 'image' is an empty string`;
    image = r.image;
  } else if (turns.some((t) => t.value.includes('<image>'))) {
    return `${where}: has no 'image' but its conversation contains <image>`;
  }
  if (r.category !== undefined && typeof r.category !== 'string') return `${where}: 'category' is ${typeName(r.category)}, expected a string`;
  if (r.answers !== undefined) {
    if (!Array.isArray(r.answers) || r.answers.length === 0 || r.answers.some((a) => typeof a !== 'string')) {
      return `${where}: 'answers' must be a non-empty array of strings`;
    }
  }
  const out: LlavaRecord = { ...r, id, conversations: turns };
  if (image === undefined) delete out.image; else out.image = image;
  return out;
}

/** Refuses bytes that are not UTF-8 (as Python's json.load does), where Buffer.toString would put U+FFFD in silently. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

function utf8Reason(e: unknown): string {
  return e instanceof TypeError ? 'not valid UTF-8 text (another encoding? LLaVA reads its files as UTF-8)' : (e as Error).message;
}

const isWs = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * The byte ranges of the elements of the JSON list in `buf` (after a UTF-8 BOM), found by scanning its structure
 * (strings, escapes, nesting) without making one string of it. Each range is then parsed on its own; a
 * structural error (not a list, unbalanced brackets, a missing element, text after the list) throws with its offset.
 */
export function jsonListElements(buf: Uint8Array): { begin: number; end: number }[] {
  let i = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  const skipWs = () => {
    while (i < buf.length && isWs(buf[i])) i++;
  };
  skipWs();
  if (buf[i] !== 0x5b) {
    const what = i >= buf.length ? 'nothing' : buf[i] === 0x7b ? 'an object' : buf[i] === 0x22 ? 'a string' : `'${String.fromCharCode(buf[i])}'`;
    throw new Error(`it holds ${what} where a list of records ('[') was expected (byte ${i})`);
  }
  i++;
  const out: { begin: number; end: number }[] = [];
  skipWs();
  if (buf[i] === 0x5d) i++;
  else {
    for (;;) {
      skipWs();
      const begin = i;
      let depth = 0;
      for (; i < buf.length; i++) {
        const c = buf[i];
        if (c === 0x22) {
          // a string: to the first quote not escaped (preceded by an even number of backslashes)
          for (;;) {
            i = buf.indexOf(0x22, i + 1);
            if (i < 0) throw new Error(`a string starting in element ${out.length} is not closed`);
            let slashes = 0;
            while (buf[i - 1 - slashes] === 0x5c) slashes++;
            if (slashes % 2 === 0) break;
          }
        } else if (c === 0x5b || c === 0x7b) depth++;
        else if (c === 0x5d || c === 0x7d) {
          if (depth === 0) break;
          depth--;
        } else if (c === 0x2c && depth === 0) break;
      }
      if (i >= buf.length) throw new Error(`the list is not closed (element ${out.length} runs to the end of the file)`);
      let end = i;
      while (end > begin && isWs(buf[end - 1])) end--;
      if (end === begin) throw new Error(`element ${out.length} is missing (at byte ${begin})`);
      out.push({ begin, end });
      if (buf[i] === 0x5d) {
        i++;
        break;
      }
      if (buf[i] !== 0x2c) throw new Error(`unexpected '${String.fromCharCode(buf[i])}' after element ${out.length - 1} (byte ${i})`);
      i++;
    }
  }
  skipWs();
  if (i < buf.length) throw new Error(`text after the end of the list (byte ${i})`);
  return out;
}

function detectFormat(file: string, text: string): 'json' | 'jsonl' {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  return text.trimStart().startsWith('[') ? 'json' : 'jsonl';
}

/**
 * Read and validate a LLaVA-format JSON list or JSONL file. `positions[k]` is where records[k] stands in the file (its
 * line, or its index in the list), for messages about it later (ids need not be unique).
 */
export function readLlavaRecords(file: string, opts: ReadLlavaOptions = {}): { records: LlavaRecord[]; skipped: SkippedRecord[]; positions: RecordPosition[] } {
  const strict = opts.strict ?? false;
  let buf: Buffer;
  try {
    buf = readRegularFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`readLlavaRecords: cannot read '${file}': ${err.code === 'ENOENT' ? 'file not found' : err.message}`);
  }
  const head = buf.subarray(0, 64).toString('utf8').replace(/^\uFEFF/, '');
  const format = opts.format ?? detectFormat(file, head);
  const base = path.basename(file);
  const records: LlavaRecord[] = [];
  const skipped: SkippedRecord[] = [];
  const positions: RecordPosition[] = [];
  if (format === 'json') {
    // element by element (jsonListElements), so a list beyond V8's string limit (LLaVA's 665K mix is about 1 GB) reads
    let elements: { begin: number; end: number }[];
    try {
      elements = jsonListElements(buf);
    } catch (e) {
      const hint = head.trimStart().startsWith('{') ? ' (one object per line? name the file .jsonl)' : '';
      throw new Error(`readLlavaRecords: '${file}' is not a valid JSON list: ${(e as Error).message}${hint}`);
    }
    elements.forEach(({ begin, end }, index) => {
      let raw: unknown;
      try {
        raw = JSON.parse(UTF8.decode(buf.subarray(begin, end)));
      } catch (e) {
        // a list is one JSON document (Python's json.load fails on it whole): no record of it is read
        throw new Error(`readLlavaRecords: '${file}' is not valid JSON: record ${index} (bytes ${begin}-${end}): ${utf8Reason(e)}`);
      }
      const v = validateLlavaRecord(raw, `${base}#${index}`);
      if (typeof v === 'string') {
        if (strict) throw new Error(`readLlavaRecords: ${file}[${index}]: ${v}`);
        skipped.push({ index, reason: v });
      } else {
        records.push(v);
        positions.push({ index });
      }
    });
    return { records, skipped, positions };
  }
  // JSONL: split on \n at the byte level (no whole-file string, so files beyond V8's string limit work).
  let start = 0, line = 0;
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) start = 3;
  while (start <= buf.length) {
    let end = buf.indexOf(0x0a, start);
    if (end < 0) end = buf.length;
    line++;
    const bytes = buf.subarray(start, end);
    start = end + 1;
    let raw: unknown;
    try {
      const text = UTF8.decode(bytes).trim();
      if (text.length === 0) { if (end === buf.length) break; continue; }
      raw = JSON.parse(text);
    } catch (e) {
      const reason = e instanceof TypeError ? utf8Reason(e) : `malformed JSON: ${(e as Error).message}`;
      if (strict) throw new Error(`readLlavaRecords: ${file}:${line}: ${reason}`);
      skipped.push({ line, reason });
      continue;
    }
    const v = validateLlavaRecord(raw, `${base}:${line}`);
    if (typeof v === 'string') {
      if (strict) throw new Error(`readLlavaRecords: ${file}:${line}: ${v}`);
      skipped.push({ line, reason: v });
    } else {
      records.push(v);
      positions.push({ line });
    }
  }
  return { records, skipped, positions };
}

// ------------------------------------------------------------------------------------------------

export interface ImageSkip {
  /** Position of the record in the data set. */
  index: number;
  id: string;
  file: string;
  reason: string;
}

export interface DatasetItem {
  record: LlavaRecord;
  /** Position of the record in the data set (records[index]). */
  index: number;
  /** Position in the epoch order; resume a run with startIndex = last yielded position + 1. */
  position: number;
  /** Decoded RGB; absent for text-only records. */
  image?: RgbImage;
}

export interface BatchOptions {
  batchSize: number;
  epoch?: number;
  seed?: number;
  /** Position in the epoch order to start from (default 0). */
  startIndex?: number;
  /** Drop a final batch smaller than batchSize (default false). */
  dropLast?: boolean;
  /** Batches of images decoded ahead of the consumer (default 1). */
  prefetch?: number;
}

type LoadResult = { ok: true; image?: RgbImage } | { ok: false; file: string; reason: string };

/**
 * A LLaVA data set: records plus the folder their images live in. Broken images (missing, unreadable,
 * not an image) are skipped and counted (skippedImages; imageSkips lists each broken record once), or
 * throw in strict mode. Batches are filled to batchSize from the following positions when a sample is
 * skipped, so every batch but the last is full.
 */
export class LlavaDataset {
  readonly records: LlavaRecord[];
  readonly imageFolder: string;
  readonly strict: boolean;
  /** Number of times an image failed to load and its sample was skipped (counted on every epoch). */
  skippedImages = 0;
  /** Each broken image once, in the order they were met. */
  readonly imageSkips: ImageSkip[] = [];
  private readonly broken = new Set<number>();
  private cachedOrder: { epoch: number; seed: number; order: number[] } | null = null;

  constructor(records: LlavaRecord[], imageFolder = '.', opts: { strict?: boolean } = {}) {
    if (!Array.isArray(records)) throw new TypeError('LlavaDataset: records must be an array');
    this.records = records;
    this.imageFolder = imageFolder;
    this.strict = opts.strict ?? false;
  }

  /** Read a JSON / JSONL file (readLlavaRecords) into a data set; `skipped` lists the rejected records. */
  static fromFile(file: string, imageFolder: string, opts: { strict?: boolean } = {}): { dataset: LlavaDataset; skipped: SkippedRecord[] } {
    const { records, skipped } = readLlavaRecords(file, opts);
    return { dataset: new LlavaDataset(records, imageFolder, opts), skipped };
  }

  get length(): number {
    return this.records.length;
  }

  /** The image path of record i (resolved against the image folder), or undefined for text-only records. */
  imagePath(i: number): string | undefined {
    const img = this.records[i]?.image;
    return img === undefined ? undefined : path.resolve(this.imageFolder, img);
  }

  /** A seeded permutation of 0..length-1 for an epoch: reproducible, different for each (epoch, seed). */
  epochOrder(epoch: number, seed: number): number[] {
    if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`epochOrder: epoch must be a non-negative integer, got ${epoch}`);
    checkSeed('epochOrder', 'seed', seed);
    const c = this.cachedOrder;
    if (c && c.epoch === epoch && c.seed === seed && c.order.length === this.records.length) return c.order.slice();
    const order = Array.from({ length: this.records.length }, (_, i) => i);
    new Generator(seed).fork(`llava-dataset-epoch-${epoch}`).shuffle(order);
    this.cachedOrder = { epoch, seed, order };
    return order.slice();
  }

  private async tryLoad(i: number): Promise<LoadResult> {
    const file = this.imagePath(i);
    if (file === undefined) return { ok: true };
    try {
      return { ok: true, image: await decodeImageFile(file) };
    } catch (e) {
      return { ok: false, file, reason: (e as Error).message };
    }
  }

  /** Count (or, in strict mode, throw) a failed load. */
  private reportSkip(i: number, file: string, reason: string): void {
    const id = this.records[i].id;
    if (this.strict) throw new Error(`LlavaDataset: record '${id}' (index ${i}): image '${file}' failed: ${reason}`);
    this.skippedImages++;
    if (!this.broken.has(i)) {
      this.broken.add(i);
      this.imageSkips.push({ index: i, id, file, reason: `record '${id}': ${reason}` });
    }
  }

  /**
   * The decoded image of record i: an RgbImage, undefined for a text-only record, or null when the image is
   * missing or broken (counted in skippedImages / imageSkips; strict mode throws naming the id and file).
   */
  async loadImage(i: number): Promise<RgbImage | undefined | null> {
    if (!Number.isInteger(i) || i < 0 || i >= this.records.length) throw new RangeError(`LlavaDataset.loadImage: index ${i} out of range [0, ${this.records.length})`);
    const r = await this.tryLoad(i);
    if (r.ok) return r.image;
    this.reportSkip(i, r.file, r.reason);
    return null;
  }

  /**
   * Batches of { record, index, position, image? } in the epoch order from position startIndex. Samples
   * whose image fails are skipped (and counted) and the batch is filled from the next positions. Images are
   * decoded ahead (prefetch batches) with sharp's thread pool; skips are counted as samples are consumed.
   */
  async *batches(opts: BatchOptions): AsyncGenerator<DatasetItem[], void, undefined> {
    const { batchSize } = opts;
    const epoch = opts.epoch ?? 0, seed = opts.seed ?? 0, startIndex = opts.startIndex ?? 0;
    const prefetch = opts.prefetch ?? 1;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(startIndex) || startIndex < 0) throw new RangeError(`batches: startIndex must be a non-negative integer, got ${startIndex}`);
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new RangeError(`batches: prefetch must be a non-negative integer, got ${prefetch}`);
    const order = this.epochOrder(epoch, seed);
    const window = batchSize * (prefetch + 1);
    const pending: { position: number; index: number; result: Promise<LoadResult> }[] = [];
    let next = startIndex;
    const fill = (): void => {
      while (pending.length < window && next < order.length) {
        const position = next++;
        const index = order[position];
        pending.push({ position, index, result: this.tryLoad(index) }); // tryLoad never rejects
      }
    };
    let batch: DatasetItem[] = [];
    fill();
    while (pending.length > 0) {
      const p = pending.shift()!;
      const r = await p.result;
      fill();
      if (r.ok) {
        const item: DatasetItem = { record: this.records[p.index], index: p.index, position: p.position };
        if (r.image) item.image = r.image;
        batch.push(item);
      } else {
        this.reportSkip(p.index, r.file, r.reason);
      }
      if (batch.length === batchSize) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0 && !(opts.dropLast ?? false)) yield batch;
  }
}
