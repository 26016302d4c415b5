// Two of the demo's fixed costs (benchmarks/RESULTS.md, "The demo's fixed costs"), on the host:
//   - tokenising a stage file's conversations (tokenizeConversation with the record's template), twice: the first
//     round with TextTokenizer.encode's memo empty, the second with it filled;
//   - encoding the Sort-of-CLEVR images as PNG with pngjs's default (all five row filters tried per row) and with one
//     filter (Paeth, what encodePng uses) or none, interleaved rounds.
//   npx tsx benchmarks/data_prep.ts --data DIR [--conversations N] [--images N]
// DIR: a demo run's data directory (vwlmm demo --out OUT writes OUT/data, with stages/questions.json and tokenizer.json).
import * as fs from 'fs';
import * as path from 'path';
import { PNG } from 'pngjs';
import { tokenizeConversation, TemplateName, Turn } from '../src/data/conversation';
import { renderScene, sortOfClevrSplit } from '../src/data/sort_of_clevr';
import { TextTokenizer } from '../src/data/tokenizer';
import { Generator } from '../src/random';
import { arg, declareFlags, numArg } from './support';

declareFlags(['data', 'conversations', 'images']);
const dataDir = arg('data', '');
if (!dataDir) throw new Error('data_prep: --data DIR is required');
const nConv = numArg('conversations', 20000, { integer: true, min: 1 });
const nImages = numArg('images', 1000, { integer: true, min: 1 }); // ms an image: / images

const tok = new TextTokenizer(path.join(dataDir, 'tokenizer.json'));
const records = JSON.parse(fs.readFileSync(path.join(dataDir, 'stages', 'questions.json'), 'utf8')) as { conversations: Turn[]; conversation_template: TemplateName }[];
const n = Math.min(records.length, nConv);
for (let round = 0; round < 2; round++) {
  const t = performance.now();
  let tokens = 0;
  for (let i = 0; i < n; i++) tokens += tokenizeConversation(records[i].conversations, tok, records[i].conversation_template).inputIds.length;
  console.log(`tokenise round ${round} (${round === 0 ? 'memo empty' : 'memo filled'}): ${n} conversations in ${((performance.now() - t) / 1000).toFixed(2)} s, ${tokens} tokens`);
}

const { scenes } = sortOfClevrSplit(new Generator(1), nImages, { nonRelational: 10, relational: 10 });
const rgbs = scenes.map(renderScene);
const encode = (rgb: Uint8Array, filterType: number) => {
  const png = new PNG({ width: 75, height: 75, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false, ...(filterType >= 0 ? { filterType } : {}) });
};
for (let round = 0; round < 4; round++) {
  for (const [label, ft] of [['all five filters (pngjs default)', -1], ['Paeth (encodePng)', 4], ['none', 0]] as const) {
    const t = performance.now();
    let bytes = 0;
    for (const rgb of rgbs) bytes += encode(rgb, ft).length;
    console.log(`png round ${round}, ${label}: ${((performance.now() - t) / rgbs.length).toFixed(3)} ms an image, ${(bytes / rgbs.length).toFixed(0)} bytes`);
  }
}
