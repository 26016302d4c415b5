// One thread of fitRecords (fit_record.ts): its own tokenizer, made from the caller's spec, fits each batch of records
// it is sent; the ids and labels of the batch go back in one buffer, transferred, not copied (a transferred buffer
// holds ~0.6 KB of the receiving heap: one per sample tripled the samples' heap).
import { parentPort, workerData } from 'worker_threads';
import type { LlavaRecord } from './dataset';
import { FitOutcome, fitRecord, FitWorkerData, PackedOutcome } from './fit_record';
import { TextTokenizer } from './tokenizer';

const data = workerData as FitWorkerData;
let tokenizer: TextTokenizer | null = null;
parentPort!.on('message', ({ start, records }: { start: number; records: LlavaRecord[] }) => {
  try {
    tokenizer ??= new TextTokenizer(data.tokenizer.source, data.tokenizer.options);
    const outcomes: FitOutcome[] = records.map((r) => fitRecord(r, tokenizer!, data.fit));
    const pool = new Int32Array(outcomes.reduce((n, x) => n + ('inputIds' in x ? 2 * x.inputIds.length : 0), 0));
    let at = 0;
    const packed: PackedOutcome[] = outcomes.map((x) => {
      if (!('inputIds' in x)) return x;
      const { inputIds, labels, ...rest } = x;
      pool.set(inputIds, at);
      pool.set(labels, at + inputIds.length);
      at += 2 * inputIds.length;
      return { ...rest, at: at - 2 * inputIds.length, length: inputIds.length };
    });
    parentPort!.postMessage({ start, outcomes: packed, pool }, [pool.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message });
  }
});
