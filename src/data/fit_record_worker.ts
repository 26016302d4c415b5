// One thread of fitRecords (fit_record.ts): its own tokenizer, made from the caller's spec, fits each batch of records
// it is sent; the ids and labels go back transferred, not copied.
import { parentPort, workerData } from 'worker_threads';
import type { LlavaRecord } from './dataset';
import { FitOutcome, fitRecord, FitWorkerData } from './fit_record';
import { TextTokenizer } from './tokenizer';

const data = workerData as FitWorkerData;
let tokenizer: TextTokenizer | null = null;
parentPort!.on('message', ({ start, records }: { start: number; records: LlavaRecord[] }) => {
  try {
    tokenizer ??= new TextTokenizer(data.tokenizer.source, data.tokenizer.options);
    const outcomes: FitOutcome[] = records.map((r) => fitRecord(r, tokenizer!, data.fit));
    const transfer = outcomes.flatMap((x) => ('inputIds' in x ? [x.inputIds.buffer as ArrayBuffer, x.labels.buffer as ArrayBuffer] : []));
    parentPort!.postMessage({ start, outcomes }, transfer);
  } catch (e) {
    parentPort!.postMessage({ error: (e as Error).message });
  }
});
