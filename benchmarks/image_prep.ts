// Host costs of reading LLaVA training data, side by side in one run (ratios; this is a CPU benchmark):
//   - resizeRgb (Pillow's BICUBIC, bit-exact, TypeScript) against sharp's 'cubic' resize (libvips; what resizeRgb
//     called before it matched Pillow), on a photo-sized downscale and a 224 -> 336 upscale, alternating rounds;
//   - images per second through ClipImageWorkers (decode + resize + crop + normalise) with 0 threads (the caller's)
//     and with N threads, on PNG files of the downscale's size;
//   - reading a JSON list of LLaVA records: jsonListElements' scan plus a JSON.parse per record, against one
//     JSON.parse of the whole text (which fails past V8's 512 MiB string limit).
//   npx tsx benchmarks/image_prep.ts [--rounds 200] [--images 64] [--threads 2] [--records 100000]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { ClipImageWorkers } from '../src/data/clip_workers';
import { jsonListElements } from '../src/data/dataset';
import { resizeRgb, RgbImage, shortestSideSize } from '../src/data/images';
import { encodePng } from '../src/data/sort_of_clevr';
import { Generator } from '../src/random';
import { declareFlags, numArg } from './support';

declareFlags(['rounds', 'images', 'threads', 'records']);
// --threads at least 1: the pool is timed with 0 threads (the caller's) and with --threads
const rounds = numArg('rounds', 200, { integer: true, min: 1 }), nImages = numArg('images', 64, { integer: true, min: 1 }), threads = numArg('threads', 2, { integer: true, min: 1 }), nRecords = numArg('records', 100000, { integer: true, min: 1 });
const g = new Generator(0);

/** A smooth random photo-like image (noise, blurred by a box filter) of w x h. */
function photo(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(g.uniform() * 256);
  for (let pass = 0; pass < 2; pass++) for (let i = 3; i < data.length - 3; i++) data[i] = (data[i - 3] + data[i] + data[i + 3]) / 3;
  return { width: w, height: h, data };
}
const sharpResize = async (img: RgbImage, w: number, h: number) =>
  sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).resize(w, h, { kernel: 'cubic', fit: 'fill' }).raw().toBuffer();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function main(): Promise<void> {
  sharp.concurrency(1);
  console.log(`image_prep: ${os.cpus()[0].model}, ${os.availableParallelism()} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}`);
  for (const [w, h, size] of [[640, 480, 336], [224, 224, 336]]) {
    const img = photo(w, h), t = shortestSideSize(w, h, size);
    const ours: number[] = [], theirs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let s = performance.now();
      await resizeRgb(img, t.width, t.height);
      ours.push(performance.now() - s);
      s = performance.now();
      await sharpResize(img, t.width, t.height);
      theirs.push(performance.now() - s);
    }
    console.log(`resize ${w}x${h} -> ${t.width}x${t.height}: Pillow-exact ${median(ours).toFixed(2)} ms, sharp cubic ${median(theirs).toFixed(2)} ms (median of ${rounds}; ratio ${(median(ours) / median(theirs)).toFixed(2)})`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-image-prep-'));
  try {
    const files = Array.from({ length: nImages }, (_, k) => {
      const f = path.join(dir, `${k}.png`), img = photo(640, 480);
      fs.writeFileSync(f, encodePng(img.data, img.width, img.height));
      return f;
    });
    for (const n of [0, threads]) {
      const pool = new ClipImageWorkers({ size: 336, aspect: 'pad' }, { workers: n });
      await Promise.all(files.slice(0, 4).map((f) => pool.pixels(f))); // threads started and warm
      const s = performance.now();
      await Promise.all(files.map((f) => pool.pixels(f)));
      const secs = (performance.now() - s) / 1000;
      console.log(`ClipImageWorkers, ${n} threads: ${(nImages / secs).toFixed(1)} images/s (640x480 PNG, pad, 336 px)`);
      await pool.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const rec = (i: number) => ({ id: `r${i}`, image: `coco/train2017/${i}.jpg`, conversations: [{ from: 'human', value: '<image>\nWhat is "this"? [a, b] {c}' }, { from: 'gpt', value: 'A long answer, '.repeat(20) }] });
  const text = JSON.stringify(Array.from({ length: nRecords }, (_, i) => rec(i)), null, 1), buf = Buffer.from(text), utf8 = new TextDecoder('utf-8', { fatal: true });
  let s = performance.now();
  for (const e of jsonListElements(buf)) JSON.parse(utf8.decode(buf.subarray(e.begin, e.end)));
  const scan = performance.now() - s;
  s = performance.now();
  JSON.parse(text);
  const whole = performance.now() - s;
  console.log(`JSON list of ${nRecords} records (${(buf.length / 1e6).toFixed(0)} MB): by element ${(buf.length / 1e6 / (scan / 1000)).toFixed(0)} MB/s, whole-text JSON.parse ${(buf.length / 1e6 / (whole / 1000)).toFixed(0)} MB/s (ratio ${(scan / whole).toFixed(2)})`);
}
void main();
