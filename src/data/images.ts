// Image loading (sharp) and CLIP preprocessing in the LLaVA-1.5 way (shared/method/VISUAL_WORDS.md section 5).
//
// loadImage decodes PNG / JPEG / WebP (anything libvips reads; the first frame of animations) to 8-bit RGB:
// greyscale is replicated to three channels, alpha is dropped without compositing (PIL's convert('RGB')),
// 16-bit images are reduced to 8 bits as Pillow reduces them (the high byte; a 16-bit greyscale PNG or TIFF, Pillow's
// mode I;16, clipped to 0..255, a MinIsWhite TIFF not inverted), an embedded colour profile is ignored and a CMYK JPEG
// converted by Pillow's formula (PIL's convert('RGB') does no colour management), EXIF orientation is NOT applied (PIL
// does not either).
//
// preprocessClip follows CLIPImageProcessor as LLaVA uses it, the aspect named as LLaVA's image_aspect_ratio:
//   'pad'         LLaVA expand2square first: paste the image on a max(w, h) square of the mean colour
//                 (int(mean * 255) as LLaVA truncates: (122, 116, 104) for CLIP) at offset
//                 ((s - w) >> 1, (s - h) >> 1), then as 'square';
//   'square'      resize the shortest side to `size` (long side floor(size * long / short)) with PIL's
//                 bicubic resize, unless it already is `size`; centre crop size x size at
//                 ((w - size) >> 1, (h - size) >> 1) (HF center_crop rounds down). 'resize_crop' is an alias
//                 (the name this module used first);
// then scale 1/255, normalise (x - mean) / std, and lay out CHW float32.
//
// The resize (resizeRgb) is bit-identical with Pillow's Image.resize((w, h), BICUBIC) on 8-bit RGB, which is what
// transformers' image_transforms.resize calls: Pillow's ImagingResample (a = -0.5 cubic, antialiased when shrinking,
// 22-bit fixed-point weights, uint8 between the passes) written anew in TypeScript below resizeRgb, and checked byte
// for byte against Pillow 12.3 (tests/fixtures/resize, scripts/make_resize_fixture.py). sharp decodes only: its
// 'cubic' resize (Catmull-Rom, with libvips' own pixel centres) put upscaled images about half an output pixel off.

import * as fs from 'fs';
import type Sharp from 'sharp';
import { checkKeys, describe, typeError } from '../errors';
import { kindOf } from '../io/safetensors';
import type { ImageWriter } from './collate';

// sharp (libvips) is loaded on first use, so importing the package (`vwlmm info`, a text-only script) does
// not pay for it.
let sharpModule: typeof Sharp | null = null;
function sharp(): typeof Sharp {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (sharpModule ??= require('sharp') as typeof Sharp);
}

export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** 8-bit RGB, row-major [height, width, 3]. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** LLaVA's image_aspect_ratio: 'pad' or 'square'; 'resize_crop' is accepted for 'square'. */
export type AspectMode = 'pad' | 'square' | 'resize_crop';

export interface ClipPreprocessOptions {
  /** Output side (336 for CLIP ViT-L/14-336). */
  size: number;
  mean?: readonly number[];
  std?: readonly number[];
  /**
   * 'pad' (LLaVA-1.5 stage 2, expand2square) or 'square' (default: resize the short side, centre crop), as the
   * config's image.aspect; 'resize_crop' is another name for 'square'.
   */
  aspect?: AspectMode;
}

/**
 * The largest preprocessClip size: 16384 gives 3 x 16384^2 float32 values (3 GiB) per image, already far beyond any
 * vision tower (CLIP: 224, 336); a larger one failed with "Invalid typed array length" instead of naming size.
 */
const MAX_CLIP_SIZE = 16384;

/** The most bytes a resized RGB image may take: a Uint8Array's limit (2^32 elements). */
const MAX_RGB_BYTES = 2 ** 32 - 1;

const CLIP_OPTION_KEYS = { size: true, mean: true, std: true, aspect: true } satisfies Record<keyof ClipPreprocessOptions, true>;

/** ClipPreprocessOptions checked, with the defaults filled in and 'resize_crop' read as 'square'. */
export interface CheckedClipOptions {
  size: number;
  mean: readonly number[];
  std: readonly number[];
  aspect: 'pad' | 'square';
}

/** Checks preprocessClip's options (ClipImageWorkers checks them when made, not at its first image). */
export function checkClipOptions(where: string, opts: ClipPreprocessOptions): CheckedClipOptions {
  if (opts === null || typeof opts !== 'object') throw typeError(where, 'options', `an object { size, mean?, std?, aspect? }`, opts);
  checkKeys(where, 'option', opts, CLIP_OPTION_KEYS);
  const { size } = opts;
  const mean = opts.mean ?? CLIP_MEAN, std = opts.std ?? CLIP_STD, aspect = opts.aspect ?? 'square';
  if (!Number.isInteger(size) || size <= 0) throw new RangeError(`${where}: size must be a positive integer, got ${size}`);
  if (size > MAX_CLIP_SIZE) throw new RangeError(`${where}: size must be at most ${MAX_CLIP_SIZE} (the output is 3 x size x size float32 values), got ${size}`);
  if (aspect !== 'pad' && aspect !== 'square' && aspect !== 'resize_crop') {
    throw new RangeError(`${where}: aspect must be 'pad' or 'square' (alias 'resize_crop'), got ${describe(aspect)}`);
  }
  checkStats(where, mean, std);
  return { size, mean, std, aspect: aspect === 'pad' ? 'pad' : 'square' };
}

/** Decode an image file to 8-bit RGB. Throws an Error naming the file and the reason. */
export async function loadImage(file: string): Promise<RgbImage> {
  return decodeImage(await readImageFile(file), file);
}

/** The bytes of an image file, or loadImage's error naming why they cannot be read. */
async function readImageFile(file: string): Promise<Buffer> {
  let h: fs.promises.FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO would wait for a writer; its stat then refuses it, and a device (/dev/zero: endless)
    h = await fs.promises.open(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw readError(file, e);
  }
  try {
    notRegular(file, await h.stat());
    return await h.readFile();
  } catch (e) {
    throw (e as Error).message?.startsWith('loadImage: ') ? e : readError(file, e);
  } finally {
    await h.close();
  }
}

/** loadImage's error for a directory, a FIFO, a socket or a device. */
function notRegular(file: string, st: fs.Stats): void {
  if (st.isDirectory()) throw new Error(`loadImage: cannot read '${file}': is a directory`);
  if (!st.isFile()) throw new Error(`loadImage: cannot read '${file}': ${kindOf(st)}, not a regular file`);
}

function readError(file: string, e: unknown): Error {
  const err = e as NodeJS.ErrnoException;
  const why = err.code === 'ENOENT' ? 'file not found'
    : err.code === 'EISDIR' ? 'is a directory'
      : err.code === 'EACCES' ? 'permission denied' : err.message;
  return new Error(`loadImage: cannot read '${file}': ${why}`);
}

/**
 * Checks that `file` reads and its header is an image sharp decodes (format, size), without decoding its pixels: a
 * cheap check of every image before training (a file cut short after its header is found when it is decoded).
 * Throws loadImage's errors.
 */
export async function probeImage(file: string): Promise<{ width: number; height: number; format: string }> {
  // the file's type and size, then libvips reads its header from the file (not the whole file, as decoding does)
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(file);
  } catch (e) {
    throw readError(file, e);
  }
  notRegular(file, st); // libvips would wait on a FIFO, and read a device without end
  if (st.size === 0) throw new Error(`loadImage: cannot decode '${file}': the file is empty`);
  try {
    const m = await sharp()(file, { failOn: 'error' }).metadata();
    if (!m.width || !m.height || !m.format) throw new Error('no image size in its header');
    // sharp's own limit on decoded pixels (limitInputPixels), which decoding would hit later
    if (m.width * m.height > 0x3fff * 0x3fff) throw new Error(`Input image exceeds pixel limit (${m.width}x${m.height})`);
    return { width: m.width, height: m.height, format: m.format };
  } catch (e) {
    throw new Error(`loadImage: cannot decode '${file}': ${whyNotDecoded((e as Error).message)}`);
  }
}

function whyNotDecoded(msg: string): string {
  return /unsupported image format/i.test(msg) ? `not a supported image (PNG, JPEG, WebP, GIF or TIFF expected): ${msg}` : msg;
}

/** Decode encoded image bytes (PNG, JPEG, WebP, ...) to 8-bit RGB; `name` is used in error messages. */
export async function decodeImage(bytes: Uint8Array, name = '<buffer>'): Promise<RgbImage> {
  if (bytes.length === 0) throw new Error(`loadImage: cannot decode '${name}': the file is empty`);
  try {
    const i16 = pillowI16(bytes);
    if (i16) return await decodeI16(bytes, i16.invert);
    if (jpegComponents(bytes) === 4) return await decodeCmyk(bytes);
    // ignoreIcc: Pillow's convert('RGB') ignores an embedded profile (a greyscale PNG with a gamma-2.2 profile moved by
    // up to 9 levels through libvips' colour management)
    const { data, info } = await sharp()(bytes, { failOn: 'error', ignoreIcc: true })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`unexpected decoded layout (${info.width}x${info.height}x${info.channels})`);
    }
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    throw new Error(`loadImage: cannot decode '${name}': ${whyNotDecoded((e as Error).message)}`);
  }
}

/**
 * A 16-bit greyscale PNG (colour type 0, with or without a tRNS colour) or single-channel TIFF: Pillow opens it as mode
 * I;16 (a signed TIFF as mode I), and its convert('RGB') clips each value to 0..255 (LLaVA's loaders see 0..255 of
 * 0..65535 as themselves, all else white), where libvips keeps the high byte. Pillow reads a MinIsWhite TIFF's values
 * as they are, where libvips inverts them (`invert`). 16-bit RGB, RGBA and grey+alpha PNGs Pillow opens as 8-bit modes
 * from the high byte, as libvips does. null: another image.
 */
function pillowI16(bytes: Uint8Array): { invert: boolean } | null {
  const png = bytes.length >= 26 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47 && String.fromCharCode(...bytes.subarray(12, 16)) === 'IHDR';
  if (png) return bytes[24] === 16 && bytes[25] === 0 ? { invert: false } : null; // IHDR: bit depth, colour type
  const tags = tiffTags(bytes);
  if (!tags || (tags.get(277) ?? 1) !== 1 || tags.get(258) !== 16) return null; // samples per pixel, bits per sample
  const signed = tags.get(339) === 2; // sample format
  return { invert: tags.get(262) === 0 && !signed }; // photometric 0: MinIsWhite
}

/**
 * The first IFD's single-valued SHORT / LONG tags of a (classic, not Big) TIFF, by tag number; null for another file.
 * A tag with several values (bits per sample of three channels) is left out.
 */
function tiffTags(bytes: Uint8Array): Map<number, number> | null {
  if (bytes.length < 8) return null;
  const le = bytes[0] === 0x49 && bytes[1] === 0x49 && bytes[2] === 0x2a && bytes[3] === 0;
  if (!le && !(bytes[0] === 0x4d && bytes[1] === 0x4d && bytes[2] === 0 && bytes[3] === 0x2a)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ifd = view.getUint32(4, le);
  if (ifd + 2 > bytes.length) return null;
  const tags = new Map<number, number>();
  for (let k = 0, n = view.getUint16(ifd, le); k < n && ifd + 2 + 12 * (k + 1) <= bytes.length; k++) {
    const e = ifd + 2 + 12 * k, type = view.getUint16(e + 2, le);
    if (view.getUint32(e + 4, le) !== 1) continue;
    if (type === 3) tags.set(view.getUint16(e, le), view.getUint16(e + 8, le));
    else if (type === 4) tags.set(view.getUint16(e, le), view.getUint32(e + 8, le));
  }
  return tags;
}

/**
 * pillowI16's image as Pillow's convert('RGB') gives it: each 16-bit value (a MinIsWhite TIFF's uninverted; a signed
 * one's negatives 0, as libvips casts them) clipped to 255, replicated to RGB.
 */
async function decodeI16(bytes: Uint8Array, invert: boolean): Promise<RgbImage> {
  const { data, info } = await sharp()(bytes, { failOn: 'error', ignoreIcc: true }).removeAlpha().toColourspace('grey16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  if (info.channels !== 1 || data.length !== n * 2) throw new Error(`unexpected decoded layout (${info.width}x${info.height}x${info.channels}, 16-bit)`);
  const values = new Uint16Array(Uint8Array.from(data).buffer); // libvips' raw samples, in the machine's byte order
  const out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const v = Math.min(255, invert ? 65535 - values[i] : values[i]);
    out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = v;
  }
  return { width: info.width, height: info.height, data: out };
}

/** The number of components of a JPEG's frame (its SOF marker's Nf: 4 for CMYK / YCCK), or null for another file. */
function jpegComponents(bytes: Uint8Array): number | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return null;
    const m = bytes[i + 1];
    if (m === 0xff) {
      i++; // fill byte
      continue;
    }
    if (m === 0x01 || (m >= 0xd0 && m <= 0xd8)) {
      i += 2; // markers without a length
      continue;
    }
    // SOF0..SOF15, not DHT (c4), JPG (c8) or DAC (cc): FF Cn, length, precision, height, width, components
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) return i + 9 < bytes.length ? bytes[i + 9] : null;
    if (m === 0xda) return null; // scan data before a frame header
    i += 2 + ((bytes[i + 2] << 8) | bytes[i + 3]);
  }
  return null;
}

/**
 * A CMYK JPEG as Pillow's convert('RGB') gives it: the CMYK samples as decoded (libvips reads an Adobe file's inverted
 * ones as Pillow does), then Pillow's cmyk2rgb without colour management, each channel (255 - K) - C (255 - K) / 255
 * in its rounding; libvips' own CMYK conversion (a CMYK profile) was up to 117 levels away.
 */
async function decodeCmyk(bytes: Uint8Array): Promise<RgbImage> {
  const { data, info } = await sharp()(bytes, { failOn: 'error', ignoreIcc: true }).pipelineColourspace('cmyk').toColourspace('cmyk').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  const n = info.width * info.height;
  if (info.channels !== 4 || data.length !== n * 4) throw new Error(`unexpected decoded layout (${info.width}x${info.height}x${info.channels}, CMYK)`);
  const out = new Uint8Array(n * 3);
  for (let p = 0; p < n; p++) {
    const nk = 255 - data[4 * p + 3];
    for (let c = 0; c < 3; c++) {
      const t = data[4 * p + c] * nk + 128; // Pillow's MULDIV255
      out[3 * p + c] = Math.max(0, Math.min(255, nk - (((t >> 8) + t) >> 8)));
    }
  }
  return { width: info.width, height: info.height, data: out };
}

function checkImage(where: string, img: RgbImage): void {
  if (!img || !Number.isInteger(img.width) || !Number.isInteger(img.height) || img.width <= 0 || img.height <= 0) {
    throw new RangeError(`${where}: image width and height must be positive integers, got ${img?.width}x${img?.height}`);
  }
  if (!(img.data instanceof Uint8Array) || img.data.length !== img.width * img.height * 3) {
    throw new RangeError(`${where}: expected ${img.width * img.height * 3} RGB bytes for a ${img.width}x${img.height} image, got ${img.data?.length}`);
  }
}

function checkStats(where: string, mean: readonly number[], std: readonly number[]): void {
  if (mean.length !== 3 || std.length !== 3) throw new RangeError(`${where}: mean and std need 3 values each`);
  if (std.some((s) => !(s > 0)) || mean.some((m) => !Number.isFinite(m))) {
    throw new RangeError(`${where}: std must be positive and mean finite, got mean [${mean}] std [${std}]`);
  }
}

/** LLaVA expand2square: the image centred on a max(w, h) square filled with `fill` (RGB bytes). */
export function expandToSquare(img: RgbImage, fill: readonly number[]): RgbImage {
  checkImage('expandToSquare', img);
  const { width: w, height: h } = img;
  if (w === h) return img;
  const s = Math.max(w, h);
  const out = new Uint8Array(s * s * 3);
  for (let p = 0; p < s * s; p++) { out[3 * p] = fill[0]; out[3 * p + 1] = fill[1]; out[3 * p + 2] = fill[2]; }
  const ox = (s - w) >> 1, oy = (s - h) >> 1;
  for (let y = 0; y < h; y++) out.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((oy + y) * s + ox) * 3);
  return { width: s, height: s, data: out };
}

/**
 * The pad colour of 'pad' mode: int(mean * 255) per channel, truncated as LLaVA does
 * (`tuple(int(x * 255) for x in image_processor.image_mean)`): (122, 116, 104) for the CLIP mean
 * (rounding would give (123, 117, 104)).
 */
export function padColour(mean: readonly number[] = CLIP_MEAN): [number, number, number] {
  return [0, 1, 2].map((c) => Math.min(255, Math.max(0, Math.trunc(mean[c] * 255)))) as [number, number, number];
}

/**
 * Bicubic resize to exactly width x height, byte for byte Pillow's `Image.resize((width, height), Image.BICUBIC)` on
 * 8-bit RGB (see the file comment). The same size returns `img` itself (Pillow returns an equal copy).
 */
export async function resizeRgb(img: RgbImage, width: number, height: number): Promise<RgbImage> {
  checkImage('resizeRgb', img);
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`resizeRgb: expected positive integer for ${name} but received ${v} of type ${typeof v}`);
  }
  if (width * height * 3 > MAX_RGB_BYTES) throw new RangeError(`resizeRgb: width ${width} x height ${height} is ${width * height * 3} RGB bytes, more than one image may take (${MAX_RGB_BYTES})`);
  if (img.width === width && img.height === height) return img;
  return resampleBicubic(img, width, height);
}

// Pillow's ImagingResample (libImaging/Resample.c) for 8-bit bands with its BICUBIC filter, written anew.
//   - separable: a horizontal pass, then a vertical pass on its uint8 result; a pass whose size does not change is
//     skipped, and the horizontal pass computes only the rows the vertical pass reads;
//   - per output index i: center = (i + 0.5) * scale (scale = in / out), filterscale = max(scale, 1) (so a
//     downscale is antialiased), support = 2 * filterscale, taps [trunc(center - support + 0.5), trunc(center +
//     support + 0.5)) clamped to the image, weights filter((j - center + 0.5) * (1 / filterscale)) in float64,
//     divided by their sum, then rounded half away from zero to fixed point with 22 fractional bits (32 - 8 bits of
//     result - 2 bits of headroom for the filter's negative lobes);
//   - each output byte: (2^21 + sum(byte * weight)) >> 22 (arithmetic shift, i.e. floor), clamped to [0, 255].
// Every step is the C code's double or int arithmetic in the same order, so the bytes are the same.
const PRECISION_BITS = 32 - 8 - 2;
const FIXED_ONE = 1 << PRECISION_BITS;
const FIXED_HALF = 1 << (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;

/** The cubic convolution kernel with a = -0.5 (Keys), as Pillow evaluates it. */
function bicubicFilter(x: number): number {
  if (x < 0) x = -x;
  if (x < 1) return ((-0.5 + 2) * x - (-0.5 + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0;
}

/** The taps of one axis: output i reads `count[i]` inputs from `first[i]` with weights[i * ksize ..] (fixed point). */
interface ResampleAxis {
  ksize: number;
  first: Int32Array;
  count: Int32Array;
  weights: Int32Array;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for an axis of inSize resized to outSize. */
function resampleAxis(inSize: number, outSize: number): ResampleAxis {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const ss = 1 / filterscale;
  const first = new Int32Array(outSize), count = new Int32Array(outSize), weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    // (int) in C truncates; the clamp at 0 makes that floor here
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const n = Math.min(inSize, Math.trunc(center + support + 0.5)) - lo;
    let ww = 0;
    for (let j = 0; j < n; j++) {
      const w = bicubicFilter((j + lo - center + 0.5) * ss);
      k[j] = w;
      ww += w;
    }
    for (let j = 0; j < n; j++) {
      const w = ww !== 0 ? k[j] / ww : k[j];
      weights[i * ksize + j] = w < 0 ? Math.trunc(-0.5 + w * FIXED_ONE) : Math.trunc(0.5 + w * FIXED_ONE);
    }
    first[i] = lo;
    count[i] = n;
  }
  return { ksize, first, count, weights };
}

// The passes below sum in int32 as Pillow's C does (byte * weight < 2^31, and the sums stay within an int since the
// |weights| sum to little more than 2^22; the order of integer additions does not matter). Uint8ClampedArray stores
// clamp (sum >> 22) to [0, 255] as Pillow's clip8 table does. Taps go two or four at a time: the loop overhead, not
// the multiplies, is most of the cost of a JS inner loop (a quarter less time than one tap at a time).

/** The horizontal pass over rows [row0, row0 + rows) of src (width srcW): rows x axis-output-width RGB bytes. */
function resampleHorizontal(src: Uint8Array, srcW: number, row0: number, rows: number, axis: ResampleAxis, outW: number): Uint8Array {
  const { ksize, first, count, weights } = axis;
  const out = new Uint8ClampedArray(outW * rows * 3);
  for (let y = 0; y < rows; y++) {
    const rowIn = (row0 + y) * srcW * 3;
    let o = y * outW * 3;
    for (let x = 0; x < outW; x++) {
      let k = x * ksize, p = rowIn + first[x] * 3;
      const kEnd = k + count[x];
      let s0 = FIXED_HALF, s1 = FIXED_HALF, s2 = FIXED_HALF;
      for (; k + 1 < kEnd; k += 2, p += 6) {
        const w = weights[k], v = weights[k + 1];
        s0 = (s0 + Math.imul(src[p], w) + Math.imul(src[p + 3], v)) | 0;
        s1 = (s1 + Math.imul(src[p + 1], w) + Math.imul(src[p + 4], v)) | 0;
        s2 = (s2 + Math.imul(src[p + 2], w) + Math.imul(src[p + 5], v)) | 0;
      }
      if (k < kEnd) {
        const w = weights[k];
        s0 = (s0 + Math.imul(src[p], w)) | 0;
        s1 = (s1 + Math.imul(src[p + 1], w)) | 0;
        s2 = (s2 + Math.imul(src[p + 2], w)) | 0;
      }
      out[o++] = s0 >> PRECISION_BITS;
      out[o++] = s1 >> PRECISION_BITS;
      out[o++] = s2 >> PRECISION_BITS;
    }
  }
  return new Uint8Array(out.buffer);
}

/** The vertical pass: src (width w) resampled along y, with the taps' first rows shifted down by `row0`. */
function resampleVertical(src: Uint8Array, w: number, row0: number, axis: ResampleAxis, outH: number): Uint8Array {
  const { ksize, first, count, weights } = axis;
  const stride = w * 3;
  const out = new Uint8ClampedArray(stride * outH);
  const acc = new Int32Array(stride);
  for (let y = 0; y < outH; y++) {
    const n = count[y], kb = y * ksize, base = (first[y] - row0) * stride, o = y * stride;
    // four input rows at a time along the whole row (the channels alike); a tap past n weighs 0 and reads row 0 of
    // the window; the first group starts the sums, the last writes the bytes, any between adds into acc
    for (let j = 0; j < n; j += 4) {
      const w0 = weights[kb + j], p0 = base + j * stride;
      const w1 = j + 1 < n ? weights[kb + j + 1] : 0, p1 = j + 1 < n ? p0 + stride : base;
      const w2 = j + 2 < n ? weights[kb + j + 2] : 0, p2 = j + 2 < n ? p0 + 2 * stride : base;
      const w3 = j + 3 < n ? weights[kb + j + 3] : 0, p3 = j + 3 < n ? p0 + 3 * stride : base;
      const start = j === 0, end = j + 4 >= n;
      if (start && end) {
        for (let i = 0; i < stride; i++) {
          out[o + i] = (FIXED_HALF + Math.imul(src[p0 + i], w0) + Math.imul(src[p1 + i], w1) + Math.imul(src[p2 + i], w2) + Math.imul(src[p3 + i], w3)) >> PRECISION_BITS;
        }
      } else if (start) {
        for (let i = 0; i < stride; i++) {
          acc[i] = FIXED_HALF + Math.imul(src[p0 + i], w0) + Math.imul(src[p1 + i], w1) + Math.imul(src[p2 + i], w2) + Math.imul(src[p3 + i], w3);
        }
      } else if (end) {
        for (let i = 0; i < stride; i++) {
          out[o + i] = (acc[i] + Math.imul(src[p0 + i], w0) + Math.imul(src[p1 + i], w1) + Math.imul(src[p2 + i], w2) + Math.imul(src[p3 + i], w3)) >> PRECISION_BITS;
        }
      } else {
        for (let i = 0; i < stride; i++) {
          acc[i] = acc[i] + Math.imul(src[p0 + i], w0) + Math.imul(src[p1 + i], w1) + Math.imul(src[p2 + i], w2) + Math.imul(src[p3 + i], w3);
        }
      }
    }
  }
  return new Uint8Array(out.buffer);
}

/** Pillow's Image.resize with its bicubic filter on RGB bytes (the size differs in at least one axis). */
function resampleBicubic(img: RgbImage, width: number, height: number): RgbImage {
  const { width: w, height: h } = img;
  if (h > w * 100 && height < h) {
    // Pillow 12.3's Image.resize shrinks an image more than 100 times taller than wide vertically first: two
    // ImagingResample calls, the first with only a vertical pass, the second with only a horizontal one (Pillow
    // before 12.3 goes horizontal first here too, a few levels apart on such images)
    const tall = resampleVertical(img.data, w, 0, resampleAxis(h, height), height);
    const data = width !== w ? resampleHorizontal(tall, w, 0, height, resampleAxis(w, width), width) : tall;
    return { width, height, data };
  }
  // ImagingResampleInner: horizontal, then vertical
  let data = img.data, row0 = 0;
  const vertical = height !== h ? resampleAxis(h, height) : null;
  if (width !== w) {
    // only the rows that the vertical pass reads (all of them when it is skipped)
    const last = vertical ? vertical.first[height - 1] + vertical.count[height - 1] : h;
    row0 = vertical ? vertical.first[0] : 0;
    data = resampleHorizontal(data, w, row0, last - row0, resampleAxis(w, width), width);
  }
  if (vertical) data = resampleVertical(data, width, row0, vertical, height);
  return { width, height, data };
}

/** The size after resizing the shortest side to `size` (HF get_resize_output_image_size, default_to_square=False). */
export function shortestSideSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.floor((size * height) / width) };
  return { width: Math.floor((size * width) / height), height: size };
}

/** CLIP preprocessing to a [3, size, size] CHW float32 array (see the file comment). */
export async function preprocessClip(img: RgbImage, opts: ClipPreprocessOptions): Promise<Float32Array> {
  const { size, mean, std, aspect } = checkClipOptions('preprocessClip', opts);
  checkImage('preprocessClip', img);
  const { im, ox, oy } = await clipResized('preprocessClip', img, size, aspect, mean);
  return normalizeRgbRegion(im, ox, oy, size, mean, std);
}

/** The image padded (aspect 'pad') and resized as preprocessClip does, with the offsets of its centre crop. */
async function clipResized(where: string, img: RgbImage, size: number, aspect: 'pad' | 'square', mean: readonly number[]): Promise<{ im: RgbImage; ox: number; oy: number }> {
  let im = aspect === 'pad' ? expandToSquare(img, padColour(mean)) : img;
  const target = shortestSideSize(im.width, im.height, size);
  // a long thin image resized to a large size: named here rather than by resizeRgb
  if (target.width * target.height * 3 > MAX_RGB_BYTES)
    throw new RangeError(`${where}: size ${size} resizes the ${im.width} x ${im.height} image's shortest side to ${size}, a ${target.width} x ${target.height} image of more RGB bytes than one image may take (${MAX_RGB_BYTES}): use a smaller size, or crop the image first`);
  im = await resizeRgb(im, target.width, target.height);
  return { im, ox: (im.width - size) >> 1, oy: (im.height - size) >> 1 };
}

/** The size x size RGB bytes the model sees of `img`: preprocessClip's square before normalisation (for pictures). */
export async function clipView(img: RgbImage, opts: ClipPreprocessOptions): Promise<RgbImage> {
  const { size, mean, aspect } = checkClipOptions('clipView', opts);
  checkImage('clipView', img);
  const { im, ox, oy } = await clipResized('clipView', img, size, aspect, mean);
  if (im.width === size && im.height === size) return im;
  const data = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) data.set(im.data.subarray(((oy + y) * im.width + ox) * 3, ((oy + y) * im.width + ox + size) * 3), y * size * 3);
  return { width: size, height: size, data };
}

// (x / 255 - mean) / std for the 256 byte values of one channel, computed in float64 and stored as float32; kept per
// (mean, std), since a batch normalises every image with the same ones (a handful of keys; capped all the same)
const channelLuts = new Map<string, Float32Array>();
function channelLut(m: number, s: number): Float32Array {
  const key = `${m} ${s}`;
  let lut = channelLuts.get(key);
  if (!lut) {
    lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - m) / s;
    if (channelLuts.size < 64) channelLuts.set(key, lut);
  }
  return lut;
}

/** The size x size region at (ox, oy) of img, normalised, as CHW float32 written into out at offset. */
function normalizeRgbRegion(
  img: RgbImage, ox: number, oy: number, size: number, mean: readonly number[], std: readonly number[],
  out: Float32Array = new Float32Array(3 * size * size), offset = 0,
): Float32Array {
  const plane = size * size, w = img.width, d = img.data;
  if (ox === 0 && oy === 0 && w === size) {
    // the whole image: one pass over the bytes, writing the three planes (a fifth less time than a pass per
    // channel: benchmarks/RESULTS.md, "Stages 1 and 2")
    const l0 = channelLut(mean[0], std[0]), l1 = channelLut(mean[1], std[1]), l2 = channelLut(mean[2], std[2]);
    const o1 = offset + plane, o2 = offset + 2 * plane;
    for (let p = 0, q = 0; p < plane; p++, q += 3) {
      out[offset + p] = l0[d[q]];
      out[o1 + p] = l1[d[q + 1]];
      out[o2 + p] = l2[d[q + 2]];
    }
    return out;
  }
  for (let c = 0; c < 3; c++) {
    const lut = channelLut(mean[c], std[c]), base = offset + c * plane;
    for (let y = 0; y < size; y++) {
      const row = ((oy + y) * w + ox) * 3 + c;
      const o = base + y * size;
      for (let x = 0; x < size; x++) out[o + x] = lut[d[row + 3 * x]];
    }
  }
  return out;
}

/** The arguments of normalizeRgb / normalizeRgbInto: size x size RGB bytes and per-channel statistics. */
function checkRgbBytes(where: string, data: Uint8Array, size: number, mean: readonly number[], std: readonly number[]): void {
  if (!Number.isInteger(size) || size <= 0) throw new RangeError(`${where}: size must be a positive integer, got ${size}`);
  if (!(data instanceof Uint8Array) || data.length !== size * size * 3) {
    throw new RangeError(`${where}: expected ${size * size * 3} RGB bytes for ${size}x${size}, got ${(data as Uint8Array | undefined)?.length}`);
  }
  checkStats(where, mean, std);
}

/**
 * Synchronous fast path for raw RGB bytes that are already size x size (e.g. generated Sort-of-CLEVR scenes):
 * scale 1/255, normalise, CHW float32 [3, size, size]. No resize, crop or pad.
 */
export function normalizeRgb(
  data: Uint8Array, size: number, mean: readonly number[] = CLIP_MEAN, std: readonly number[] = CLIP_STD,
): Float32Array {
  checkRgbBytes('normalizeRgb', data, size, mean, std);
  return normalizeRgbRegion({ width: size, height: size, data }, 0, 0, size, mean, std);
}

/**
 * normalizeRgb written into `out` at `offset` (3 * size * size values): a batch's pixels are filled in place, with no
 * array per image to allocate and copy.
 */
export function normalizeRgbInto(
  out: Float32Array, offset: number, data: Uint8Array, size: number, mean: readonly number[] = CLIP_MEAN, std: readonly number[] = CLIP_STD,
): void {
  checkRgbBytes('normalizeRgbInto', data, size, mean, std);
  writeRgbInto('normalizeRgbInto', out, offset, data, size, mean, std);
}

/** normalizeRgbInto after its bytes and statistics were checked: checks where the values go, then writes them. */
function writeRgbInto(where: string, out: Float32Array, offset: number, data: Uint8Array, size: number, mean: readonly number[], std: readonly number[]): void {
  if (!(out instanceof Float32Array)) throw new TypeError(`${where}: out must be a Float32Array`);
  if (!Number.isInteger(offset) || offset < 0 || offset + 3 * size * size > out.length) {
    throw new RangeError(`${where}: ${3 * size * size} values at offset ${offset} do not fit in out (${out.length} values)`);
  }
  normalizeRgbRegion({ width: size, height: size, data }, 0, 0, size, mean, std, out, offset);
}

/**
 * normalizeRgb as an ImageWriter: collate writes the values straight into the batch's pixel array (no array per image).
 * The bytes and statistics are checked now, once; `data` is read when collate writes it.
 */
export function normalizeRgbWriter(
  data: Uint8Array, size: number, mean: readonly number[] = CLIP_MEAN, std: readonly number[] = CLIP_STD,
): ImageWriter {
  checkRgbBytes('normalizeRgbWriter', data, size, mean, std);
  return {
    values: 3 * size * size,
    writeInto: (out, offset) => writeRgbInto('normalizeRgbWriter', out, offset, data, size, mean, std),
  };
}
