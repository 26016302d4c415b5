import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PNG } from 'pngjs';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLIP_MEAN, CLIP_STD, RgbImage, decodeImage, expandToSquare, loadImage, normalizeRgb, normalizeRgbInto, normalizeRgbWriter, padColour,
  preprocessClip, resizeRgb, shortestSideSize,
} from '../../src/data/images';
import { encodePng } from '../../src/data/sort_of_clevr';

// Pillow's Image.resize(BICUBIC) results and LLaVA's CLIP preprocessing (scripts/make_resize_fixture.py)
const RESIZE_DIR = path.join(__dirname, '..', 'fixtures', 'resize');
interface ResizeFixture {
  pillow: string;
  inputs: { name: string; width: number; height: number; offset: number }[];
  resizes: { input: string; width: number; height: number; offset: number }[];
  clip: { input: string; size: number; aspect: 'pad' | 'resize_crop'; offset: number }[];
}
const resizeCases = JSON.parse(fs.readFileSync(path.join(RESIZE_DIR, 'cases.json'), 'utf8')) as ResizeFixture;
const resizeBytes = new Uint8Array(fs.readFileSync(path.join(RESIZE_DIR, 'resize.bin')));
const clipBytes = fs.readFileSync(path.join(RESIZE_DIR, 'clip.bin'));
function fixtureImage(name: string): RgbImage {
  const i = resizeCases.inputs.find((x) => x.name === name)!;
  return { width: i.width, height: i.height, data: resizeBytes.slice(i.offset, i.offset + i.width * i.height * 3) };
}
/** The first byte index where a and b differ (with both values), or null: a readable failure for large arrays. */
function firstDifference(a: ArrayLike<number>, b: ArrayLike<number>): string | null {
  if (a.length !== b.length) return `length ${a.length} vs ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `at ${i}: ${a[i]} vs ${b[i]}`;
  return null;
}

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-images-')); });
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

/** The hand computation: float32((v / 255 - mean) / std). */
const norm = (v: number, c: number) => Math.fround((v / 255 - CLIP_MEAN[c]) / CLIP_STD[c]);

function rgb(width: number, height: number, f: (x: number, y: number) => [number, number, number]): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set(f(x, y), (y * width + x) * 3);
  return { width, height, data };
}

/** CHW value at (c, y, x). */
const at = (t: Float32Array, size: number, c: number, y: number, x: number) => t[c * size * size + y * size + x];

describe('loadImage', () => {
  it('decodes an RGB PNG exactly', async () => {
    const img = rgb(5, 3, (x, y) => [x * 50, y * 100, 7]);
    const f = path.join(tmp, 'rgb.png');
    fs.writeFileSync(f, encodePng(img.data, 5, 3));
    const back = await loadImage(f);
    expect([back.width, back.height]).toEqual([5, 3]);
    expect(Array.from(back.data)).toEqual(Array.from(img.data));
  });

  it('replicates a greyscale PNG to RGB and drops alpha without compositing', async () => {
    const g = new PNG({ width: 3, height: 1, colorType: 0, inputColorType: 0, inputHasAlpha: false });
    g.data = Buffer.from([0, 77, 250]);
    const fg = path.join(tmp, 'grey.png');
    fs.writeFileSync(fg, PNG.sync.write(g, { colorType: 0, inputColorType: 0, inputHasAlpha: false }));
    expect(Array.from((await loadImage(fg)).data)).toEqual([0, 0, 0, 77, 77, 77, 250, 250, 250]);

    const a = new PNG({ width: 2, height: 1 });
    a.data = Buffer.from([10, 20, 30, 0, 40, 50, 60, 128]);
    const fa = path.join(tmp, 'rgba.png');
    fs.writeFileSync(fa, PNG.sync.write(a));
    expect(Array.from((await loadImage(fa)).data)).toEqual([10, 20, 30, 40, 50, 60]);

    const ga = new PNG({ width: 1, height: 1, colorType: 4, inputColorType: 4 });
    ga.data = Buffer.from([99, 0]);
    const fga = path.join(tmp, 'grey_alpha.png');
    fs.writeFileSync(fga, PNG.sync.write(ga, { colorType: 4, inputColorType: 4 }));
    expect(Array.from((await loadImage(fga)).data)).toEqual([99, 99, 99]);
  });

  it('reads 16-bit PNG, lossless WebP and JPEG as 8-bit RGB', async () => {
    const img = rgb(4, 4, (x, y) => [x * 60, y * 60, 200]);
    const raw = { raw: { width: 4, height: 4, channels: 3 as const } };
    const f16 = path.join(tmp, 'sixteen.png');
    await sharp(img.data, raw).toColourspace('rgb16').png().toFile(f16);
    expect((await sharp(f16).metadata()).depth).toBe('ushort');
    expect(Array.from((await loadImage(f16)).data)).toEqual(Array.from(img.data));
    const fw = path.join(tmp, 'lossless.webp');
    await sharp(img.data, raw).webp({ lossless: true }).toFile(fw);
    expect(Array.from((await loadImage(fw)).data)).toEqual(Array.from(img.data));
    const fj = path.join(tmp, 'photo.jpg');
    const flat = rgb(8, 8, () => [200, 100, 50]);
    await sharp(flat.data, { raw: { width: 8, height: 8, channels: 3 } }).jpeg({ quality: 100 }).toFile(fj);
    const j = await loadImage(fj);
    expect([j.width, j.height, j.data.length]).toEqual([8, 8, 192]);
    expect(Math.max(...Array.from(j.data).map((v, i) => Math.abs(v - flat.data[i])))).toBeLessThanOrEqual(3);
  });

  it("reads as Pillow's convert('RGB') does, byte for byte: 16-bit images (mode I;16 / I clipped, MinIsWhite not inverted, the others' high byte), embedded profiles ignored, CMYK by Pillow's formula", async () => {
    const dir = path.join(__dirname, '..', 'fixtures', 'decode');
    const { cases } = JSON.parse(fs.readFileSync(path.join(dir, 'cases.json'), 'utf8')) as { cases: { file: string; mode: string; width: number; height: number; offset: number }[] };
    const bytes = fs.readFileSync(path.join(dir, 'rgb.bin'));
    expect(cases.map((c) => c.mode)).toEqual(['I;16', 'I;16', 'RGBA', 'RGB', 'RGBA', 'I;16', 'L', 'RGB', 'RGB', 'CMYK', 'I;16', 'I', 'I']);
    for (const c of cases) {
      const img = await loadImage(path.join(dir, c.file));
      expect([img.width, img.height], c.file).toEqual([c.width, c.height]);
      expect(Buffer.from(img.data).equals(bytes.subarray(c.offset, c.offset + c.width * c.height * 3)), c.file).toBe(true);
    }
  });

  it('names the file and the reason on a missing, corrupt, truncated or empty file', async () => {
    const missing = path.join(tmp, 'nope.png');
    await expect(loadImage(missing)).rejects.toThrow(`'${missing}': file not found`);
    const bad = path.join(tmp, 'bad.png');
    fs.writeFileSync(bad, 'this is not an image');
    await expect(loadImage(bad)).rejects.toThrow(new RegExp(`'${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}': not a supported image`));
    const trunc = path.join(tmp, 'trunc.png');
    fs.writeFileSync(trunc, encodePng(new Uint8Array(20 * 20 * 3).fill(9), 20, 20).subarray(0, 60));
    await expect(loadImage(trunc)).rejects.toThrow(/trunc\.png/);
    const empty = path.join(tmp, 'empty.png');
    fs.writeFileSync(empty, '');
    await expect(loadImage(empty)).rejects.toThrow(/empty\.png'.*empty/);
    await expect(loadImage(tmp)).rejects.toThrow(/is a directory/);
    await expect(decodeImage(Buffer.from('xx'), 'buf')).rejects.toThrow(/'buf'/);
  });
});

describe('resizeRgb', () => {
  it.each(resizeCases.resizes.map((c) => [`${c.input} -> ${c.width}x${c.height}`, c] as const))(
    'equals Pillow Image.resize(BICUBIC) byte for byte: %s', async (_, c) => {
      const img = fixtureImage(c.input);
      const out = await resizeRgb(img, c.width, c.height);
      expect([out.width, out.height]).toEqual([c.width, c.height]);
      expect(firstDifference(out.data, resizeBytes.subarray(c.offset, c.offset + c.width * c.height * 3))).toBeNull();
    },
  );

  it('keeps a bright pixel centred where Pillow puts it (30 -> 60: (10, 10) to (20.5, 20.5), no half-pixel shift)', async () => {
    const out = await resizeRgb(fixtureImage('dot_30x30'), 60, 60);
    let sum = 0, sx = 0, sy = 0;
    for (let y = 0; y < 60; y++) for (let x = 0; x < 60; x++) {
      const v = out.data[(y * 60 + x) * 3];
      sum += v; sx += v * x; sy += v * y;
    }
    expect([sx / sum, sy / sum]).toEqual([20.5, 20.5]);
  });

  it('returns the image itself at the same size and rejects bad sizes and images', async () => {
    const img = fixtureImage('noise_7x5');
    expect(await resizeRgb(img, 7, 5)).toBe(img);
    await expect(resizeRgb(img, 0, 5)).rejects.toThrow(/resizeRgb: expected positive integer for width but received 0/);
    await expect(resizeRgb(img, 3, 2.5)).rejects.toThrow(/positive integer for height but received 2.5/);
    await expect(resizeRgb({ width: 2, height: 2, data: new Uint8Array(5) }, 3, 3)).rejects.toThrow(/resizeRgb: expected 12 RGB bytes/);
  });

  it.each(resizeCases.clip.map((c) => [`${c.input}, size ${c.size}, ${c.aspect}`, c] as const))(
    'preprocessClip equals Pillow resize + centre crop + CLIP normalisation exactly: %s', async (_, c) => {
      const t = await preprocessClip(fixtureImage(c.input), { size: c.size, aspect: c.aspect });
      const n = 3 * c.size * c.size;
      const ref = new Float32Array(clipBytes.buffer.slice(clipBytes.byteOffset + c.offset, clipBytes.byteOffset + c.offset + 4 * n));
      expect(firstDifference(t, ref)).toBeNull();
    },
  );
});

describe('preprocessClip', () => {
  it('normalises an image already at the target size exactly (CHW)', async () => {
    const img = rgb(2, 2, (x, y) => [x * 255, y * 128, 3]);
    const t = await preprocessClip(img, { size: 2 });
    expect(t.length).toBe(12);
    for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
      expect(at(t, 2, 0, y, x)).toBe(norm(x * 255, 0));
      expect(at(t, 2, 1, y, x)).toBe(norm(y * 128, 1));
      expect(at(t, 2, 2, y, x)).toBe(norm(3, 2));
    }
    expect(at(t, 2, 0, 0, 1)).toBeCloseTo((1 - 0.48145466) / 0.26862954, 6);
    expect(Array.from(normalizeRgb(img.data, 2))).toEqual(Array.from(t));
  });

  it("centre-crops the long side when the short side is already the size ('resize_crop', odd offsets)", async () => {
    // 5 x 2 -> short side 2 == size: no resize; crop columns (5 - 2) >> 1 = 1 .. 2.
    const img = rgb(5, 2, (x, y) => [x * 40, y * 200, x + y]);
    const t = await preprocessClip(img, { size: 2, aspect: 'resize_crop' });
    for (let y = 0; y < 2; y++) for (let x = 0; x < 2; x++) {
      expect(at(t, 2, 0, y, x)).toBe(norm((x + 1) * 40, 0));
      expect(at(t, 2, 1, y, x)).toBe(norm(y * 200, 1));
      expect(at(t, 2, 2, y, x)).toBe(norm(x + 1 + y, 2));
    }
    // 3 x 6 -> crop rows (6 - 3) >> 1 = 1 .. 3.
    const tall = rgb(3, 6, (x, y) => [y * 40, x, 0]);
    const u = await preprocessClip(tall, { size: 3 });
    for (let y = 0; y < 3; y++) expect(at(u, 3, 0, y, 2)).toBe(norm((y + 1) * 40, 0));
  });

  it("pads to a square of the mean colour int(mean * 255) = (122, 116, 104) before resizing ('pad')", async () => {
    expect(padColour(CLIP_MEAN)).toEqual([122, 116, 104]);
    // 3 x 1 -> 3 x 3 canvas, image on row (3 - 1) >> 1 = 1; size 3: no resize.
    const img = rgb(3, 1, (x) => [x * 100, 10, 250]);
    const t = await preprocessClip(img, { size: 3, aspect: 'pad' });
    for (const y of [0, 2]) for (let x = 0; x < 3; x++) {
      expect([at(t, 3, 0, y, x), at(t, 3, 1, y, x), at(t, 3, 2, y, x)]).toEqual([norm(122, 0), norm(116, 1), norm(104, 2)]);
    }
    for (let x = 0; x < 3; x++) expect([at(t, 3, 0, 1, x), at(t, 3, 2, 1, x)]).toEqual([norm(x * 100, 0), norm(250, 2)]);
    // Even difference, LLaVA expand2square offset (w - h) // 2: 1 x 4 -> columns 1 .. 1 of a 4-wide canvas.
    const sq = expandToSquare(rgb(1, 4, () => [1, 2, 3]), [9, 9, 9]);
    expect([sq.width, sq.height]).toEqual([4, 4]);
    expect(Array.from(sq.data.subarray(0, 12))).toEqual([9, 9, 9, 1, 2, 3, 9, 9, 9, 9, 9, 9]);
    // Custom mean: pad colour follows it, truncated like LLaVA's int(x * 255).
    expect(padColour([0.5, 0, 1])).toEqual([127, 0, 255]);
  });

  it('resizes the shortest side with bicubic and crops to size x size', async () => {
    expect(shortestSideSize(75, 100, 336)).toEqual({ width: 336, height: 448 });
    expect(shortestSideSize(640, 480, 336)).toEqual({ width: 448, height: 336 });
    expect(shortestSideSize(7, 5, 3)).toEqual({ width: 4, height: 3 });
    // A constant image stays constant through the resize (7 x 5 -> 4 x 3 -> crop 3 x 3).
    const flat = await preprocessClip(rgb(7, 5, () => [10, 200, 99]), { size: 3 });
    for (let i = 0; i < 9; i++) expect([flat[i], flat[9 + i], flat[18 + i]]).toEqual([norm(10, 0), norm(200, 1), norm(99, 2)]);
    // Upscaling a 75 x 75 scene to 336 keeps its layout: a left-half red / right-half blue image.
    const half = rgb(75, 75, (x) => (x < 37 ? [255, 0, 0] : [0, 0, 255]));
    const big = await preprocessClip(half, { size: 336 });
    expect(big.length).toBe(3 * 336 * 336);
    expect(at(big, 336, 0, 100, 10)).toBeCloseTo(norm(255, 0), 5);
    expect(at(big, 336, 2, 100, 330)).toBeCloseTo(norm(255, 2), 5);
    // Mirror symmetry: a mirrored input gives the mirrored output.
    const grad = rgb(9, 6, (x, y) => [x * 28, y * 40, (x * y) % 256]);
    const mirror = rgb(9, 6, (x, y) => [(8 - x) * 28, y * 40, ((8 - x) * y) % 256]);
    const a = await preprocessClip(grad, { size: 4 }), b = await preprocessClip(mirror, { size: 4 });
    // 9 x 6 -> 6 x 4 (floor(4 * 9 / 6)), crop columns 1 .. 4 of 6: symmetric about the centre.
    for (let c = 0; c < 3; c++) for (let y = 0; y < 4; y++) for (let x = 0; x < 4; x++) {
      expect(Math.abs(at(a, 4, c, y, x) - at(b, 4, c, y, 3 - x))).toBeLessThan(0.02);
    }
  });

  it('rejects bad arguments with a clear message', async () => {
    const img = rgb(2, 2, () => [0, 0, 0]);
    await expect(preprocessClip(img, { size: 0 })).rejects.toThrow(/size must be a positive integer/);
    await expect(preprocessClip({ width: 2, height: 2, data: new Uint8Array(5) }, { size: 2 })).rejects.toThrow(/expected 12 RGB bytes/);
    await expect(preprocessClip(img, { size: 2, std: [1, 0, 1] })).rejects.toThrow(/std must be positive/);
    await expect(preprocessClip(img, { size: 2, aspect: 'stretch' as never })).rejects.toThrow(/aspect/);
    expect(() => normalizeRgb(new Uint8Array(10), 2)).toThrow(/expected 12 RGB bytes/);
  });

  it('normalizeRgbInto writes the normalised values at an offset (as normalizeRgb), leaves the rest, and refuses what does not fit', () => {
    const a = rgb(3, 3, (x, y) => [x * 90, y * 70 + 1, (x * y * 37) & 255]), b = rgb(3, 3, (x, y) => [255 - x, y, 200]);
    const stats = [[0.5, 0.4, 0.3], [0.2, 0.25, 0.3]] as const;
    const out = new Float32Array(2 * 27 + 5).fill(7);
    normalizeRgbInto(out, 2, a.data, 3, stats[0], stats[1]);
    normalizeRgbInto(out, 29, b.data, 3);
    // every value against the formula in float64 (CHW from HWC bytes), with each call's own mean / std
    const ref = (img: RgbImage, mean: readonly number[], std: readonly number[]) =>
      Array.from({ length: 27 }, (_, i) => Math.fround((img.data[(i % 9) * 3 + Math.floor(i / 9)] / 255 - mean[Math.floor(i / 9)]) / std[Math.floor(i / 9)]));
    expect(Array.from(out.subarray(2, 29))).toEqual(ref(a, stats[0], stats[1]));
    expect(Array.from(out.subarray(29, 56))).toEqual(ref(b, CLIP_MEAN, CLIP_STD));
    expect(Array.from(out.subarray(2, 29))).toEqual(Array.from(normalizeRgb(a.data, 3, stats[0], stats[1])));
    expect([...out.subarray(0, 2), ...out.subarray(56)]).toEqual([7, 7, 7, 7, 7]);
    expect(() => normalizeRgbInto(out, 33, a.data, 3)).toThrow(/27 values at offset 33 do not fit in out \(59 values\)/);
    expect(() => normalizeRgbInto(out, -1, a.data, 3)).toThrow(/offset -1/);
    expect(() => normalizeRgbInto([] as never, 0, a.data, 3)).toThrow(/out must be a Float32Array/);
    expect(() => normalizeRgbInto(out, 0, new Uint8Array(5), 3)).toThrow(/expected 27 RGB bytes/);
    expect(() => normalizeRgbInto(out, 0, a.data, 3, [0, 0, 0], [1, -1, 1])).toThrow(/std must be positive/);
  });

  it('normalizeRgbWriter checks its arguments at once and writes what normalizeRgbInto writes', () => {
    const a = rgb(4, 4, (x, y) => [x * 60, 255 - y * 50, (x + y) * 30]);
    const w = normalizeRgbWriter(a.data, 4, [0.4, 0.5, 0.6], [0.3, 0.2, 0.1]);
    expect(w.values).toBe(48);
    const out = new Float32Array(53).fill(3);
    w.writeInto(out, 5);
    // every value against the formula in float64 (CHW from HWC bytes); the rest of out untouched
    const [mean, std] = [[0.4, 0.5, 0.6], [0.3, 0.2, 0.1]];
    const ref = Array.from({ length: 48 }, (_, i) => Math.fround((a.data[(i % 16) * 3 + Math.floor(i / 16)] / 255 - mean[Math.floor(i / 16)]) / std[Math.floor(i / 16)]));
    expect(Array.from(out.subarray(5))).toEqual(ref);
    expect([...out.subarray(0, 5)]).toEqual([3, 3, 3, 3, 3]);
    expect(() => w.writeInto(out, 6)).toThrow(/normalizeRgbWriter: 48 values at offset 6 do not fit/);
    expect(() => w.writeInto([] as never, 0)).toThrow(/normalizeRgbWriter: out must be a Float32Array/);
    expect(() => normalizeRgbWriter(a.data, 5)).toThrow(/normalizeRgbWriter: expected 75 RGB bytes/);
    expect(() => normalizeRgbWriter(a.data, 4, [0, 0, 0], [1, 0, 1])).toThrow(/std must be positive/);
  });
});
