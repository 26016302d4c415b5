// What `vwlmm train` spends before its first step on a LLaVA file (src/train/from_file.ts prepareFile): records
// tokenised per second on the caller's thread and on threads (fit_record.ts), and the memory the prepared samples hold
// (JS heap and outside it). Text-only LLaVA records of 4 turns (~425 tokens each with the SentencePiece fixture
// tokenizer, tests/fixtures/sentencepiece), so no image is checked. Prints one JSON line per measurement.
//
//   node --expose-gc --import tsx benchmarks/prepare_file.ts [--records 3000] [--threads 0,2] [--rounds 2]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TextTokenizer } from '../src/data/tokenizer';
import { tokenizerJsonFromSentencePiece } from '../src/data/sentencepiece';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { prepareFile } from '../src/train/from_file';
import { tinyConfig } from '../tests/train/support/tiny';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['records', 'threads', 'rounds']);

const N = numArg('records', 3000, { integer: true, min: 1 }); // per-record rates: / records
const threadList = arg('threads', `0,${Math.min(8, os.availableParallelism())}`).split(',').map(Number);
const rounds = numArg('rounds', 2, { integer: true, min: 1 });
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc (the memory figures need a collection before each reading)');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-prepare-'));
const tokenizer = new TextTokenizer(tokenizerJsonFromSentencePiece(path.join(__dirname, '..', 'tests', 'fixtures', 'sentencepiece')));
const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
const g = new Generator(1);
const words = ['the', 'image', 'shows', 'a', 'red', 'square', 'on', 'left', 'of', 'blue', 'circle', 'What', 'is', 'color', 'object', 'near', 'There', 'are', 'three', 'objects', 'in', 'scene', 'answer', 'question', 'describe', 'detail', 'cat', 'dog', 'table'];
const sentence = (n: number) => Array.from({ length: n }, () => words[g.int(words.length)]).join(' ');
const file = path.join(dir, 'records.json');
fs.writeFileSync(file, JSON.stringify(Array.from({ length: N }, (_, i) => ({ id: String(i), conversations: [
  { from: 'human', value: `${sentence(12)}?` }, { from: 'gpt', value: `${sentence(60)}.` },
  { from: 'human', value: `${sentence(10)}?` }, { from: 'gpt', value: `${sentence(40)}.` },
] }))));

const memory = () => {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return { heap: m.heapUsed, outside: m.external }; // external includes the typed arrays' buffers
};

/** One preparation: its time, the samples' mean length, and the memory with the samples held (gone once this returns). */
async function prepareOnce(threads: number) {
  const t0 = performance.now();
  const data = await prepareFile(model, tokenizer, file, dir, false, { fitThreads: threads });
  const seconds = (performance.now() - t0) / 1000;
  return { seconds, tokens: data.samples.reduce((a, s) => a + s.inputIds.length, 0) / data.samples.length, held: memory() };
}

(async () => {
  for (let r = 0; r < rounds; r++) {
    for (const threads of threadList) {
      const before = memory();
      const { seconds, tokens, held } = await prepareOnce(threads);
      const after = memory(); // what the samples alone held: the difference once they are gone
      console.log(JSON.stringify({
        round: r, threads, records: N, recordsPerSecond: Math.round(N / seconds), tokensPerSample: Math.round(tokens),
        heapKiBPerSample: +((held.heap - after.heap) / 1024 / N).toFixed(2), outsideHeapKiBPerSample: +((held.outside - after.outside) / 1024 / N).toFixed(2),
        heapGrowthKiBPerSample: +((held.heap - before.heap) / 1024 / N).toFixed(2), load1: +os.loadavg()[0].toFixed(2),
      }));
    }
  }
  model.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
})();
