// What `vwlmm train` spends per image checking a LLaVA file's images before training (src/train/from_file.ts
// prepareFile): reading the header (--verify-images header: probeImage), decoding (--verify-images decode: loadImage),
// and, for comparison, decoding plus the CLIP preprocessing (what the check did before it was decode only). One 640x480
// photo-like image as JPEG and as PNG, alternating rounds on the caller's thread; median ms per image.
//
//   npx tsx benchmarks/image_check.ts [--rounds 40]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { loadImage, preprocessClip, probeImage } from '../src/data/images';
import { CLIP_MEAN, CLIP_STD } from '../src/model/config';
import { Generator } from '../src/random';
import { declareFlags, numArg } from './support';

declareFlags(['rounds']);
const rounds = numArg('rounds', 40, { integer: true, min: 1 });
const W = 640, H = 480;

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-image-check-'));
  try {
    const g = new Generator(0);
    const raw = Buffer.alloc(W * H * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = Math.floor(g.uniform() * 256);
    for (let pass = 0; pass < 2; pass++) for (let i = 3; i < raw.length - 3; i++) raw[i] = (raw[i - 3] + raw[i] + raw[i + 3]) / 3;
    const files = {
      jpeg: path.join(dir, 'a.jpg'),
      png: path.join(dir, 'a.png'),
    };
    fs.writeFileSync(files.jpeg, await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 90 }).toBuffer());
    fs.writeFileSync(files.png, await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toBuffer());
    const clip = { size: 336, mean: CLIP_MEAN, std: CLIP_STD, aspect: 'pad' as const };
    const ways: Record<string, (f: string) => Promise<unknown>> = {
      header: (f) => probeImage(f),
      decode: (f) => loadImage(f),
      'decode+clip': async (f) => preprocessClip(await loadImage(f), clip),
    };
    const times = new Map<string, number[]>();
    for (let r = 0; r < rounds; r++) {
      for (const [kind, file] of Object.entries(files)) {
        for (const [way, fn] of Object.entries(ways)) {
          const t0 = performance.now();
          await fn(file);
          const key = `${kind} ${way}`;
          if (!times.has(key)) times.set(key, []);
          times.get(key)!.push(performance.now() - t0);
        }
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const out: Record<string, number> = {};
    for (const [k, v] of times) out[k] = +median(v).toFixed(2);
    console.log(JSON.stringify({ image: `${W}x${H}`, rounds, msPerImage: out, load1: +os.loadavg()[0].toFixed(2) }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
