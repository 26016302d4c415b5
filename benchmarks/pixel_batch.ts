// What preparing a demo batch's pixels costs on the host (32 Sort-of-CLEVR images of 75 x 75, CLIP statistics), three
// ways: an array per image (normalizeRgb) copied into a new batch array; normalizeRgbInto into a new batch array; and
// normalizeRgbInto into one kept array (what the demo's stages do: stage 0 directly, stages 1 and 2 through
// collate's ImageWriters and stageBatches). A new 2 MB array costs its zeroing and first-touch page
// faults every batch. Prints ms a batch per way, each twice, alternating.
//   npx tsx benchmarks/pixel_batch.ts [--batches 300] [--batch 32] [--size 75]
import { CLIP_MEAN, CLIP_STD, normalizeRgb, normalizeRgbInto } from '../src/data/images';
import { declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['batches', 'batch', 'size']);

const batches = numArg('batches', 300, { integer: true, min: 1 }), B = numArg('batch', 32, { integer: true, min: 1 }), S = numArg('size', 75, { integer: true, min: 1 });
const N = 3 * S * S;
const images = Array.from({ length: 512 }, (_, i) => Uint8Array.from({ length: S * S * 3 }, (_, j) => (i * 7 + j * 13) & 255));
const kept = new Float32Array(B * N);
let sink = 0; // read back, so no way's work is dead
for (const round of [0, 1]) {
  for (const way of ['per image', 'into a new array', 'into a kept array'] as const) {
    let k = 0;
    const t0 = performance.now();
    for (let s = 0; s < batches; s++) {
      const pixels = way === 'into a kept array' ? kept : new Float32Array(B * N);
      for (let b = 0; b < B; b++) {
        const d = images[k++ % images.length];
        if (way === 'per image') pixels.set(normalizeRgb(d, S, CLIP_MEAN, CLIP_STD), b * N);
        else normalizeRgbInto(pixels, b * N, d, S, CLIP_MEAN, CLIP_STD);
      }
      sink += pixels[s % pixels.length];
    }
    console.log(`round ${round}, ${way}: ${((performance.now() - t0) / batches).toFixed(3)} ms a batch of ${B}`);
  }
}
if (!Number.isFinite(sink)) throw new Error('pixel_batch: non-finite pixels');
