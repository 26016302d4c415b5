// Visual words as an inspection tool (VISUAL_WORDS.md section 4): the top-k tokens of
// softmax(vm_head(x_i)) for every patch i of an image, and a picture with the top-1 word drawn on each
// patch cell of the (upscaled) image the model saw: the tower-size square of CLIP preprocessing before normalisation
// (expanded to a square of the mean colour with 'pad', resized and centre-cropped with 'square' / 'resize_crop'), so
// the grid cells are the patches. Words are drawn readable: a SentencePiece '▁word' as 'word', a byte token
// '<0x0A>' as '\n'; the JSON keeps the raw token beside it.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { fused } from '../fused';
import { noGrad } from '../autograd';
import { scope } from '../tensor';
import { TextTokenizer } from '../data/tokenizer';
import { clipView, RgbImage } from '../data/images';
import { VwLmm } from '../model/vwlmm';
import { writeFileAtomic } from '../io/atomic_file';
import { checkKeys, rangeError, typeError } from '../errors';

export interface PatchWords {
  row: number;
  col: number;
  /** token: the vocabulary's token string (idToToken); text: as drawn ('▁word' -> 'word', '<0x0A>' -> '\n'). */
  words: { token: string; text: string; id: number; prob: number }[];
}

/**
 * A token as a reader wants to see it: SentencePiece's word-start mark '▁' as a space (trimmed: '▁word' -> 'word'),
 * a byte-fallback token '<0xNN>' as its character, escaped when it is not printable ('\n', '\t', '\x1b'; a byte of a
 * multi-byte UTF-8 character as '\xNN'). Anything else is shown as it is, and so is a token of spaces alone.
 */
function displayToken(token: string): string {
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(token);
  if (byte) {
    const b = parseInt(byte[1], 16);
    const named: Record<number, string> = { 0x09: '\\t', 0x0a: '\\n', 0x0d: '\\r' };
    if (named[b]) return named[b];
    return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${byte[1].toLowerCase()}`;
  }
  // control characters as escapes, as the byte tokens' (the picture's SVG cannot hold most of them raw)
  const text = token.replace(/\u2581/g, ' ').trim().replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\ufffe\uffff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
  return text === '' ? token : text;
}

/**
 * The top-k visual words of every patch of one image as numbers: `ids` and `probs` [patches, topK] row-major, best
 * first; patch i is at row floor(i / grid), column i % grid. What visualWordsOf names; at topK near the vocabulary's
 * size (a heat map of every word) the numbers alone, without an object per word (576 x 32000 of them at LLaVA's sizes).
 */
export interface VisualWordTable {
  /** Patches per side of the tower's square input (image size / patch size). */
  grid: number;
  topK: number;
  ids: Int32Array;
  probs: Float32Array;
}

/** The op's names of its inputs, as a user knows them. */
const OP_INPUTS: [RegExp, string][] = [[/^\[visual_words\] wVm\b/, 'vm_head.weight'], [/^\[visual_words\] x\b/, 'the image features (vm_head\'s input)']];

/** Top-k visual words of every patch of one preprocessed image [3, S, S], as numbers (VisualWordTable). */
export function visualWordTable(model: VwLmm, pixels: Float32Array, topK = 5): VisualWordTable {
  return tableOf('visualWordTable', model, pixels, topK);
}

/** visualWordTable, its errors in the name of the function called (`where`). */
function tableOf(where: string, model: VwLmm, pixels: Float32Array, topK: number): VisualWordTable {
  if (model === null || typeof model !== 'object' || typeof model.imageFeatures !== 'function' || typeof model.config !== 'object') throw typeError(where, 'model', 'a VwLmm', model);
  if (!Number.isSafeInteger(topK) || topK < 1 || topK > model.config.llm.vocabSize)
    throw typeError(where, 'topK', `an integer in [1, ${model.config.llm.vocabSize}] (the vocabulary's size)`, topK);
  if (!model.vm_head) throw new Error(`${where}: visual words need a vm_head: this model is a plain LLaVA (no vm_head)`);
  const v = model.config.vision;
  if (model.config.selectFeature !== 'patch') throw new Error(`${where}: visual words are drawn per patch: mm_vision_select_feature must be "patch"`);
  const expected = v.numChannels * v.imageSize * v.imageSize;
  if (!(pixels instanceof Float32Array)) throw typeError(where, 'pixels', `a Float32Array of ${expected} values (${v.numChannels} x ${v.imageSize} x ${v.imageSize}, preprocessClip's)`, pixels);
  if (pixels.length !== expected)
    throw new RangeError(`${where}: expected ${expected} pixel values (${v.numChannels} x ${v.imageSize} x ${v.imageSize}) but received ${pixels.length}`);
  // on the host, before the tower: the fused op would refuse the features, naming x rather than the pixels
  for (let i = 0; i < pixels.length; i++) {
    if (!Number.isFinite(pixels[i])) throw new RangeError(`${where}: the pixels hold a non-finite value (${pixels[i]}) at index ${i}`);
  }
  // typed arrays out of the scope: it walks what it returns for tensors, and an object per word is millions at topK V
  const { ids, probs } = noGrad(() =>
    scope(() => {
      const x = model.imageFeatures(pixels, 1);
      try {
        const r = fused.visualWords(x, model.vm_head!.weight, { topK });
        return { ids: r.ids.toArray() as Int32Array, probs: r.probs.toArray() as Float32Array };
      } catch (e) {
        const m = (e as Error).message, named = OP_INPUTS.find(([re]) => re.test(m));
        if (!named) throw e;
        const Ctor = e instanceof RangeError ? RangeError : e instanceof TypeError ? TypeError : Error;
        throw new Ctor(m.replace(named[0], `${where}: ${named[1]}`), { cause: e });
      }
    }),
  );
  return { grid: v.imageSize / v.patchSize, topK, ids, probs };
}

/** Patch `i` of a VisualWordTable with its words named by `tokenizer` (visualWordsOf's entries). */
export function patchWords(table: VisualWordTable, tokenizer: TextTokenizer, i: number): PatchWords {
  const where = 'patchWords';
  checkTokenizer(where, tokenizer);
  const n = table.ids.length / table.topK;
  if (!(Number.isSafeInteger(i) && i >= 0 && i < n)) throw typeError(where, 'i', `a patch index in [0, ${n})`, i);
  return namedPatch(table, tokenizer, i);
}

function checkTokenizer(where: string, tokenizer: TextTokenizer): void {
  if (typeof (tokenizer as TextTokenizer | null)?.idToToken !== 'function') throw typeError(where, 'tokenizer', 'a TextTokenizer (the checkpoint\'s, to name the words)', tokenizer);
}

/** Patch `i` of `table` named (patchWords without its checks, for callers that made them). */
function namedPatch(table: VisualWordTable, tokenizer: TextTokenizer, i: number): PatchWords {
  const words = [];
  for (let j = 0; j < table.topK; j++) {
    const k = table.ids[i * table.topK + j], raw = tokenizer.idToToken(k);
    words.push({ id: k, token: raw ?? `<${k}>`, text: raw === null ? `<${k}>` : displayToken(raw), prob: table.probs[i * table.topK + j] });
  }
  return { row: Math.floor(i / table.grid), col: i % table.grid, words };
}

/** Top-k visual words of every patch of one preprocessed image [3, S, S], each word named (visualWordTable's). */
export function visualWordsOf(model: VwLmm, tokenizer: TextTokenizer, pixels: Float32Array, topK = 5): PatchWords[] {
  checkTokenizer('visualWordsOf', tokenizer);
  const table = tableOf('visualWordsOf', model, pixels, topK);
  return Array.from({ length: table.ids.length / topK }, (_, i) => namedPatch(table, tokenizer, i));
}

const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);

/** How an image became the model's input (the checkpoint's ImageConfig): what drawVisualWords draws on. */
export interface ModelView {
  /** The tower's input side (image_size). */
  size: number;
  /** The pad colour's source ('pad': int(mean * 255)); default CLIP's. */
  mean?: readonly number[];
  /** LLaVA's image_aspect_ratio: 'pad', or 'square' / 'resize_crop' (resize the short side, centre crop). */
  aspect: 'pad' | 'square' | 'resize_crop';
}

export interface DrawVisualWordsOptions {
  /** Upscaling of the picture (nearest neighbour), default 8. */
  scale?: number;
  /**
   * Draw on the view the model saw of this image (preprocessClip's square before normalisation): needed when the image
   * given is the original, unless it already is that square.
   */
  view?: ModelView;
}

// Every option drawVisualWords reads: another key ({ scal: 2 }) is refused, not ignored
const DRAW_KEYS = { scale: true, view: true } satisfies Record<keyof DrawVisualWordsOptions, true>;
const VIEW_KEYS = { size: true, mean: true, aspect: true } satisfies Record<keyof ModelView, true>;

/** preprocessClip's size x size RGB bytes before normalisation (clipView), with the view's own checks. */
async function modelView(img: RgbImage, v: ModelView): Promise<RgbImage> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeError('drawVisualWords', 'view', 'an object { size, mean?, aspect }', v);
  checkKeys('drawVisualWords', 'key of view', v, VIEW_KEYS);
  if (v.aspect !== 'pad' && v.aspect !== 'square' && v.aspect !== 'resize_crop') throw new RangeError(`drawVisualWords: view.aspect must be 'pad', 'square' or 'resize_crop', got ${String(v.aspect)}`);
  return clipView(img, { size: v.size, mean: v.mean, aspect: v.aspect });
}

const FORMATS: Record<string, 'png' | 'jpeg' | 'webp'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/** The picture's format from the file's extension, checking that its folder exists; an error names what is wrong. */
function pictureFormat(file: string): 'png' | 'jpeg' | 'webp' {
  const ext = path.extname(file);
  const format = FORMATS[ext.toLowerCase()];
  if (!format) throw new Error(`drawVisualWords: cannot write ${file}: ${ext ? `unknown picture format '${ext}'` : 'no extension'} (.png, .jpg, .jpeg or .webp)`);
  const dir = path.dirname(path.resolve(file));
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new Error(`drawVisualWords: cannot write ${file}: the folder ${dir} does not exist`);
  }
  if (!st.isDirectory()) throw new Error(`drawVisualWords: cannot write ${file}: ${dir} is not a folder`);
  return format;
}

/**
 * The picture (RGB, width x height) upscaled, with the patch grid and each patch's top-1 word, written to `file` in the
 * format its extension names (.png, .jpg / .jpeg, .webp) atomically: a temporary file in the same folder, renamed.
 * The image must be the square the model saw, or be given with `view` (how the model saw it). `patches` has one entry
 * per cell of the grid x grid patches (visualWordsOf's), or none: the view alone.
 */
export async function drawVisualWords(rgb: Uint8Array, width: number, height: number, patches: PatchWords[], grid: number, file: string, options: number | DrawVisualWordsOptions = 8): Promise<void> {
  const where = 'drawVisualWords';
  const o = typeof options === 'number' ? { scale: options } : options;
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw typeError(where, 'options', 'a scale, or an object { scale?, view? }', o);
  checkKeys(where, 'option', o, DRAW_KEYS);
  const scale = o.scale ?? 8;
  // whole pixels per image pixel (nearest neighbour), so that the grid lines fall on the patches' edges
  if (!(Number.isSafeInteger(scale) && scale >= 1)) throw typeError(where, 'scale', 'an integer >= 1 (picture pixels per image pixel)', scale);
  if (!(Number.isSafeInteger(grid) && grid >= 1)) throw typeError(where, 'grid', 'an integer >= 1 (patches per side: image size / patch size)', grid);
  for (const [name, v] of [['width', width], ['height', height]] as const)
    if (!(Number.isSafeInteger(v) && v >= 1)) throw typeError(where, name, 'an integer >= 1', v);
  if (!(rgb instanceof Uint8Array) || rgb.length !== width * height * 3)
    throw typeError(where, 'rgb', `a Uint8Array of ${width} x ${height} x 3 = ${width * height * 3} RGB bytes`, rgb);
  if (!Array.isArray(patches)) throw typeError(where, 'patches', 'an array of PatchWords (visualWordsOf)', patches);
  // every cell once (or none: the view alone): a grid that is not the model's (20 for its 10 x 10 patches) would put
  // the words in the wrong cells
  if (patches.length !== grid * grid && patches.length !== 0)
    throw rangeError(where, `expected ${grid * grid} patches (one per cell of the ${grid} x ${grid} grid: the model's image size / patch size) but received ${patches.length}`);
  const seen = new Set<number>();
  patches.forEach((p, i) => {
    if (p === null || typeof p !== 'object' || !Array.isArray(p.words) || p.words.length === 0) throw typeError(where, `patches[${i}]`, 'a PatchWords { row, col, words } with one word at least', p);
    if (!(Number.isInteger(p.row) && Number.isInteger(p.col) && p.row >= 0 && p.col >= 0 && p.row < grid && p.col < grid))
      throw rangeError(where, `expected patches[${i}] in the ${grid} x ${grid} grid (row and col in [0, ${grid})) but received row ${p.row}, col ${p.col}`);
    if (seen.has(p.row * grid + p.col)) throw rangeError(where, `patches[${i}] is a second entry for the cell at row ${p.row}, col ${p.col}`);
    seen.add(p.row * grid + p.col);
  });
  const format = pictureFormat(file);
  let img: RgbImage = { width, height, data: rgb };
  if (o.view) img = await modelView(img, o.view);
  else if (width !== height) throw new RangeError(`drawVisualWords: a ${width}x${height} image is not the square the model saw, so the grid would not be its patches: give options.view (the checkpoint's image size and aspect)`);
  // the tower's square is whole patches a side: another size's cells would not be its patches
  if (img.width % grid !== 0)
    throw new RangeError(`drawVisualWords: the ${img.width}x${img.height} ${o.view ? 'view (options.view.size)' : 'image'} is not ${grid} whole patches a side (${img.width} / ${grid} = ${(img.width / grid).toFixed(2)}): give the model's image size`);
  const W = img.width * scale, H = img.height * scale, cw = W / grid, ch = H / grid;
  const fontSize = Math.max(8, Math.min(cw / 4, ch / 3));
  const cells = patches.map((p) => {
    const x = p.col * cw, y = p.row * ch, w = p.words[0], text = w.text ?? w.token;
    // a long word in a smaller font, to stay in its cell (DejaVu Sans: about 0.6 em a character), down to 6 px
    const size = Math.max(6, Math.min(fontSize, (0.92 * cw) / (0.6 * Math.max(1, [...text].length))));
    return `<rect x="${x}" y="${y}" width="${cw}" height="${ch}" fill="none" stroke="#000" stroke-opacity="0.35"/>` +
      `<text x="${x + cw / 2}" y="${y + ch / 2}" font-size="${size}" font-family="DejaVu Sans, sans-serif" text-anchor="middle" dominant-baseline="middle" fill="#000" stroke="#fff" stroke-width="${size / 6}" paint-order="stroke">${escapeXml(text)}</text>`;
  }).join('');
  const svg = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${cells}</svg>`);
  const picture = sharp(Buffer.from(img.data), { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(W, H, { kernel: 'nearest' })
    .composite([{ input: svg, top: 0, left: 0 }]);
  const bytes = await (format === 'png' ? picture.png() : format === 'jpeg' ? picture.jpeg() : picture.webp()).toBuffer();
  // a reader never sees half a picture, and a failed write leaves an earlier one in place
  try {
    writeFileAtomic(file, bytes);
  } catch (e) {
    throw new Error(`drawVisualWords: cannot write ${file}: ${(e as Error).message}`);
  }
}
