// LLaVA records tokenised and cut as LLaVA trains them (fitRecord), for `vwlmm train`'s preparation of a file
// (src/train/from_file.ts): on the caller's thread, or spread over worker threads (fit_record_worker.ts), since the
// tokenizer (@huggingface/tokenizers in JavaScript) takes ~4 ms a record: 45 minutes for LLaVA's 665K on one core.
// The outcomes are the same on any number of threads, in record order.
import type { Worker } from 'worker_threads';
import { IGNORE_INDEX, IMAGE_TOKEN_INDEX, TEMPLATES, TemplateName, TokenizedConversation, tokenizeConversation, Turn } from './conversation';
import type { LlavaRecord } from './dataset';
import { TextTokenizer, TextTokenizerOptions } from './tokenizer';
import { startDataWorker } from './worker';

/** How records are fitted: the template of records without their own, the model max length, the image's features. */
export interface FitOptions {
  template: TemplateName;
  maxLength: number;
  patches: number;
}

/**
 * What became of a record: `error`, its own conversation_template is none (the message names the record); `skip`, why
 * it cannot be trained on; else its ids and labels (as typed arrays: outside the JS heap, a quarter of number arrays'
 * bytes), whether its image stays (a cut can drop the placeholder), whether it was cut, and LLaVA's "tokenization
 * mismatch" (its labels then all IGNORE_INDEX).
 */
export type FitOutcome =
  | { error: string }
  | { skip: string }
  | { inputIds: Int32Array; labels: Int32Array; image: boolean; truncated: boolean; mismatch: string | null };

/** The template a record is tokenised with: its own `conversation_template` when it has one, else `fallback`. */
function recordTemplate(r: LlavaRecord, fallback: TemplateName): { template: TemplateName } | { error: string } {
  const t = r.conversation_template;
  if (t === undefined) return { template: fallback };
  if (typeof t === 'string' && Object.prototype.hasOwnProperty.call(TEMPLATES, t)) return { template: t as TemplateName };
  return { error: `record '${r.id}': conversation_template ${JSON.stringify(t)} is not a template (${Object.keys(TEMPLATES).join(', ')})` };
}

/**
 * A record tokenised and cut as LLaVA trains it, or why it cannot be: its tokens are cut to maxLength, then (the
 * placeholder expanded to the image's `patches` features) its positions to maxLength again (LLaVA's collator, then
 * prepare_inputs_labels_for_multimodal's tokenizer_model_max_length). An image whose placeholder the first cut
 * removes is dropped, the record trained as text, as LLaVA does. Refused: a template's own rule broken (plain's one
 * captioned image), more than one placeholder (LLaVA-1.5 reads one image per record), an image without a
 * placeholder, features the second cut would split, nothing left to supervise and no image (with one, the record
 * stays: VW-LMM's KL trains on its patches).
 */
export function fitRecord(r: LlavaRecord, tokenizer: TextTokenizer, o: FitOptions): FitOutcome {
  const tpl = recordTemplate(r, o.template);
  if ('error' in tpl) return tpl;
  const { maxLength, patches } = o, hasImage = r.image !== undefined;
  let t: TokenizedConversation;
  try {
    t = tokenizeConversation(r.conversations as Turn[], tokenizer, tpl.template, { maxLength });
  } catch (e) {
    return { skip: (e as Error).message };
  }
  if (t.numImages > 1) return { skip: `its conversation holds ${t.numImages} <image> placeholders (one image per record)` };
  let image = hasImage, truncated = t.truncated;
  if (hasImage && t.numImages === 0) {
    if (!t.truncated || !t.prompt.includes('<image>')) return { skip: "it has an 'image' but no <image> in its conversation" };
    image = false; // its placeholder lies past maxLength tokens
  }
  if (image) {
    const at = t.inputIds.indexOf(IMAGE_TOKEN_INDEX);
    if (at + patches > maxLength) return { skip: `its image's ${patches} features start at position ${at}: they would not fit in the ${maxLength} positions (model max length)` };
    const keep = maxLength - (patches - 1);
    if (t.inputIds.length > keep) {
      t = { ...t, inputIds: t.inputIds.slice(0, keep), labels: t.labels.slice(0, keep), truncated: true };
      truncated = true;
    }
  }
  // nothing supervised: kept with its image (its KL trains, as LLaVA keeps the record), else it would train nothing
  if (!t.mismatch && !image && !t.labels.some((l) => l !== IGNORE_INDEX)) return { skip: `no supervised token within the first ${maxLength} positions${truncated ? ' (truncated)' : ''} and no image` };
  return { inputIds: Int32Array.from(t.inputIds), labels: Int32Array.from(t.labels), image, truncated, mismatch: t.mismatch ? t.mismatchDetail ?? 'tokenization mismatch' : null };
}

/** A FitOutcome as a thread sends it: a sample's ids and labels at `at` (ids, then labels) of its batch's one buffer. */
export type PackedOutcome = Exclude<FitOutcome, { inputIds: Int32Array }> | (Omit<Extract<FitOutcome, { inputIds: Int32Array }>, 'inputIds' | 'labels'> & { at: number; length: number });

/** Records per message to a thread: enough to amortise the message, few enough to keep the threads evenly busy. */
const BATCH = 256;

/** The work a fit thread is given once (workerData). */
export interface FitWorkerData {
  tokenizer: { source: string | object; options: TextTokenizerOptions };
  fit: FitOptions;
}

/**
 * fitRecord of every record, in order, on `threads` worker threads (0: the caller's thread). Each thread makes its own
 * tokenizer from tokenizer.spec(). A thread that fails rejects the whole call.
 */
export async function fitRecords(records: readonly LlavaRecord[], tokenizer: TextTokenizer, o: FitOptions, threads: number,
  signal?: AbortSignal, onProgress?: (done: number) => void): Promise<FitOutcome[]> {
  if (!Number.isInteger(threads) || threads < 0) throw new RangeError(`fitRecords: threads must be a non-negative integer, got ${threads}`);
  if (threads === 0 || records.length === 0) {
    return records.map((r, k) => {
      if (onProgress && (k + 1) % BATCH === 0) onProgress(k + 1);
      return fitRecord(r, tokenizer, o);
    });
  }
  const out = new Array<FitOutcome>(records.length);
  const data: FitWorkerData = { tokenizer: tokenizer.spec(), fit: o };
  const workers: Worker[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new Error('fitRecords: aborted'));
      signal?.addEventListener('abort', () => reject(new Error('fitRecords: aborted')), { once: true });
      let next = 0, done = 0;
      const send = (w: Worker) => {
        if (next >= records.length) return;
        const start = next;
        next = Math.min(records.length, next + BATCH);
        w.postMessage({ start, records: records.slice(start, next) });
      };
      for (let k = 0; k < Math.min(threads, Math.ceil(records.length / BATCH)); k++) {
        const w = startDataWorker('fit_record_worker', data);
        workers.push(w);
        w.on('message', (m: { start: number; outcomes: PackedOutcome[]; pool: Int32Array } | { error: string }) => {
          if ('error' in m) return reject(new Error(`fitRecords: a tokenizing thread failed: ${m.error}`));
          m.outcomes.forEach((x, i) => {
            if (!('at' in x)) return (out[m.start + i] = x);
            const { at, length, ...rest } = x;
            out[m.start + i] = { ...rest, inputIds: m.pool.subarray(at, at + length), labels: m.pool.subarray(at + length, at + 2 * length) };
          });
          done += m.outcomes.length;
          onProgress?.(done);
          if (done === records.length) resolve();
          else send(w);
        });
        w.on('error', (e) => reject(new Error(`fitRecords: a tokenizing thread failed: ${e.message}`)));
        w.on('exit', (code) => reject(new Error(`fitRecords: a tokenizing thread exited (code ${code}) with records to fit`)));
        send(w);
      }
    });
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return out;
}
