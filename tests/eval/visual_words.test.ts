// visualWordsOf / drawVisualWords: the picture is drawn on exactly the view the model saw (a non-square image padded or
// centre-cropped to the tower's square: normalising the drawn bytes gives preprocessClip's pixels), written atomically
// in the format its extension names, with clear errors for an unknown extension or a missing folder; words are shown
// readable ('▁word' as 'word', '<0x0A>' as '\n') with the raw token kept; non-finite pixels are refused by name.
import * as fs from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { fused, scope } from '../../src';
import { TextTokenizer } from '../../src/data/tokenizer';
import { normalizeRgb, preprocessClip, RgbImage } from '../../src/data/images';
import { CLIP_MEAN, CLIP_STD } from '../../src/model/config';
import { VwLmm } from '../../src/model/vwlmm';
import { writeParameter } from '../../src/nn/module';
import { drawVisualWords, patchWords, visualWordsOf, visualWordTable } from '../../src/eval/visual_words';
import { asInput, backends, tensor } from '../support/backends';
import { llamaBpeJson } from '../support/tokenizer_json';
import { tempDirs } from '../support/tmp';
import { tinyConfig } from '../train/support/tiny';

const tmp = tempDirs('visual-words');

/** A w x h image with a pattern that no resize or crop maps onto itself. */
function pattern(w: number, h: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([(x * 37 + y * 11) & 255, (x * x + 3 * y) & 255, (y * 29) & 255], (y * w + x) * 3);
  return { width: w, height: h, data };
}

async function rgbOf(file: string): Promise<{ width: number; height: number; data: Uint8Array }> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, data: new Uint8Array(data) };
}

describe('visual words', () => {
  it("the picture is the model's view of a non-square image: its bytes normalised are preprocessClip's pixels", async () => {
    const dir = tmp();
    for (const [w, h] of [[48, 30], [30, 61]]) {
      const img = pattern(w, h);
      for (const aspect of ['pad', 'square'] as const) {
        const file = path.join(dir, `view_${w}x${h}_${aspect}.png`);
        await drawVisualWords(img.data, w, h, [], 5, file, { scale: 1, view: { size: 75, mean: CLIP_MEAN, aspect } });
        const drawn = await rgbOf(file);
        expect([drawn.width, drawn.height]).toEqual([75, 75]);
        const seen = await preprocessClip(img, { size: 75, mean: CLIP_MEAN, std: CLIP_STD, aspect: aspect === 'pad' ? 'pad' : 'resize_crop' });
        expect(normalizeRgb(drawn.data, 75, CLIP_MEAN, CLIP_STD), `${w}x${h} ${aspect}`).toEqual(seen);
      }
    }
    // without the view, a non-square image is refused: its grid would not be the patches
    await expect(drawVisualWords(pattern(48, 30).data, 48, 30, [], 5, path.join(dir, 'x.png'))).rejects.toThrow(/a 48x30 image is not the square the model saw/);
  });

  it('the format follows the extension; an unknown one or a missing folder is named; the write is atomic', async () => {
    const dir = tmp();
    const img = pattern(75, 75);
    const magic: Record<string, (b: Buffer) => boolean> = {
      png: (b) => b.subarray(1, 4).toString('latin1') === 'PNG',
      jpg: (b) => b[0] === 0xff && b[1] === 0xd8,
      JPEG: (b) => b[0] === 0xff && b[1] === 0xd8,
      webp: (b) => b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
    };
    for (const [ext, ok] of Object.entries(magic)) {
      const file = path.join(dir, `words.${ext}`);
      await drawVisualWords(img.data, 75, 75, [], 5, file, 2);
      expect(ok(fs.readFileSync(file)), ext).toBe(true);
    }
    await expect(drawVisualWords(img.data, 75, 75, [], 5, path.join(dir, 'words.gif'))).rejects.toThrow(`drawVisualWords: cannot write ${path.join(dir, 'words.gif')}: unknown picture format '.gif' (.png, .jpg, .jpeg or .webp)`);
    await expect(drawVisualWords(img.data, 75, 75, [], 5, path.join(dir, 'words'))).rejects.toThrow(/words: no extension \(\.png/);
    const missing = path.join(dir, 'no', 'such');
    await expect(drawVisualWords(img.data, 75, 75, [], 5, path.join(missing, 'w.png'))).rejects.toThrow(`the folder ${missing} does not exist`);
    // replacing a picture leaves no temporary file; a failed rename (onto a folder) leaves none either
    await drawVisualWords(img.data, 75, 75, [], 5, path.join(dir, 'words.png'), 1);
    expect((await rgbOf(path.join(dir, 'words.png'))).width).toBe(75);
    fs.mkdirSync(path.join(dir, 'taken.png', 'inside'), { recursive: true });
    await expect(drawVisualWords(img.data, 75, 75, [], 5, path.join(dir, 'taken.png'))).rejects.toThrow(/cannot write .*taken\.png/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it("words are shown readable (SentencePiece '▁word' as 'word', byte tokens escaped), the raw token kept", async () => {
    const tokenizer = new TextTokenizer(llamaBpeJson(['▁word', '▁cat', '\u0001ctl']));
    const V = tokenizer.vocabSize;
    const model = VwLmm.create(tinyConfig(V), 3);
    const pixels = await preprocessClip(pattern(75, 75), { size: 75 });
    const patches = visualWordsOf(model, tokenizer, pixels, V);
    const text = new Map(patches[0].words.map((w) => [w.token, w.text]));
    expect(text.get('▁word')).toBe('word');
    expect(text.get('▁cat')).toBe('cat');
    expect(text.get('<0x0A>')).toBe('\\n');
    expect(text.get('<0x09>')).toBe('\\t');
    expect(text.get('<0x41>')).toBe('A');
    expect(text.get('<0x1B>')).toBe('\\x1b');
    expect(text.get('<0xE2>')).toBe('\\xe2');
    expect(text.get('▁')).toBe('▁');
    expect(text.get('<unk>')).toBe('<unk>');
    expect(text.get('\u0001ctl')).toBe('\\x01ctl'); // a raw control character broke the picture's SVG
    expect(patches[0].words.find((w) => w.token === '▁word')!.id).toBe(tokenizer.tokenToId('▁word'));
    // the picture draws the shown word of each patch
    const dir = tmp();
    await drawVisualWords(pattern(75, 75).data, 75, 75, patches, 5, path.join(dir, 'w.png'));
    expect((await rgbOf(path.join(dir, 'w.png'))).width).toBe(600);
    const ctl = patches.map((p) => ({ ...p, words: [p.words.find((w) => w.token === '\u0001ctl')!] }));
    await drawVisualWords(pattern(75, 75).data, 75, 75, ctl, 5, path.join(dir, 'ctl.png'));
    // the arguments' types named (a Float64Array's message said "expected 16875 ... but received 16875")
    expect(() => visualWordsOf(model, tokenizer, Float64Array.from(pixels) as never, 2)).toThrow('visualWordsOf: expected a Float32Array of 16875 values (3 x 75 x 75, preprocessClip\'s) for pixels but received Float64Array(16875)');
    expect(() => visualWordsOf(model, null as never, pixels, 2)).toThrow("visualWordsOf: expected a TextTokenizer (the checkpoint's, to name the words) for tokenizer but received null");
    expect(() => visualWordsOf(model, tokenizer, pixels, 0)).toThrow(`visualWordsOf: expected an integer in [1, ${V}] (the vocabulary's size) for topK but received 0`);
    // non-finite pixels are refused on the host, by name (not as the tower's features)
    const bad = pixels.slice();
    bad[42] = NaN;
    expect(() => visualWordsOf(model, tokenizer, bad, 2)).toThrow('visualWordsOf: the pixels hold a non-finite value (NaN) at index 42');
    expect(() => visualWordsOf(model, tokenizer, pixels.subarray(1), 2)).toThrow('visualWordsOf: expected 16875 pixel values (3 x 75 x 75) but received 16874');
    model.dispose();
  });

  it('visualWordTable: the numbers visualWordsOf names, without an object per word; a non-finite vm_head named as such', async () => {
    const tokenizer = new TextTokenizer(llamaBpeJson(['▁red', '▁circle']));
    const V = tokenizer.vocabSize;
    const model = VwLmm.create(tinyConfig(V), 5);
    const pixels = await preprocessClip(pattern(75, 75), { size: 75 });
    const table = visualWordTable(model, pixels, V);
    expect([table.grid, table.topK, table.ids.length, table.probs.length]).toEqual([5, V, 25 * V, 25 * V]);
    expect(table.ids).toBeInstanceOf(Int32Array);
    const named = visualWordsOf(model, tokenizer, pixels, V);
    named.forEach((p, i) => expect(patchWords(table, tokenizer, i), `patch ${i}`).toEqual(p));
    for (let i = 0; i < 25; i++) {
      const row = table.probs.subarray(i * V, (i + 1) * V);
      expect(Math.abs(row.reduce((a, q) => a + q, 0) - 1)).toBeLessThan(1e-5);
      expect(new Set(table.ids.subarray(i * V, (i + 1) * V)).size).toBe(V);
    }
    expect(() => patchWords(table, tokenizer, 25)).toThrow('patchWords: expected a patch index in [0, 25) for i but received 25');
    expect(() => visualWordTable(model, pixels, V + 1)).toThrow(`visualWordTable: expected an integer in [1, ${V}] (the vocabulary's size) for topK but received ${V + 1}`);
    // the op's own name for vm_head (wVm) was what the error said
    const w = model.vm_head!.weight.toArray() as Float32Array;
    w[7] = NaN;
    writeParameter('test', 'vm_head.weight', model.vm_head!.weight, { dtype: 'float32', shape: [...model.vm_head!.weight.shape], data: w });
    expect(() => visualWordsOf(model, tokenizer, pixels, 2)).toThrow(/^visualWordsOf: vm_head\.weight contains a non-finite value \(nan\) at flat index 7/);
    model.dispose();
    const plain = VwLmm.create(tinyConfig(V, 0), 5);
    expect(() => visualWordsOf(plain, tokenizer, pixels, 2)).toThrow('visualWordsOf: visual words need a vm_head: this model is a plain LLaVA (no vm_head)');
    plain.dispose();
  });

  it("drawVisualWords refuses a grid that is not the patches': another count, a cell twice, a view that is not whole patches", async () => {
    const dir = tmp(), img = pattern(75, 75), file = path.join(dir, 'g.png');
    const cells = (grid: number) => Array.from({ length: grid * grid }, (_, i) => ({ row: Math.floor(i / grid), col: i % grid, words: [{ token: 'a', text: 'a', id: 0, prob: 1 }] }));
    await expect(drawVisualWords(img.data, 75, 75, cells(5), 10, file)).rejects.toThrow("drawVisualWords: expected 100 patches (one per cell of the 10 x 10 grid: the model's image size / patch size) but received 25");
    const twice = cells(5);
    twice[3] = { ...twice[3], row: 0, col: 0 };
    await expect(drawVisualWords(img.data, 75, 75, twice, 5, file)).rejects.toThrow('drawVisualWords: patches[3] is a second entry for the cell at row 0, col 0');
    await expect(drawVisualWords(img.data, 75, 75, cells(4), 4, file)).rejects.toThrow('drawVisualWords: the 75x75 image is not 4 whole patches a side (75 / 4 = 18.75)');
    await expect(drawVisualWords(pattern(60, 40).data, 60, 40, cells(5), 5, file, { view: { size: 61, aspect: 'pad' } })).rejects.toThrow('drawVisualWords: the 61x61 view (options.view.size) is not 5 whole patches a side');
    expect(fs.existsSync(file)).toBe(false);
    await drawVisualWords(img.data, 75, 75, cells(5), 5, file, 1);
    expect((await rgbOf(file)).width).toBe(75);
  });

  // A probability was exp(z - lse) with lse = m + log(sum): at |m| ~ 1e30 that sum rounds to m in double, so three
  // tied top words came out with probability 1 each (the native kernels now form exp((z - m) - log(sum)))
  for (const b of backends) {
    it.skipIf(!b.available)(`fused.visualWords at logits ~1e30 (${b.name}): tied top words share the mass`, () => {
      scope(() => {
        const x = asInput(b, Float32Array.from([1e15, 0]));
        const w = asInput(b, Float32Array.from([1e15, 0, 1e15, 0, 1e15, 0, 0, 1, -1e15, 0]));
        const r = fused.visualWords(tensor(b, x, [1, 2]), tensor(b, w, [5, 2]), { topK: 5 });
        expect(Array.from(r.ids.toArray())).toEqual([0, 1, 2, 3, 4]);
        const p = Array.from(r.probs.toArray());
        for (const q of p.slice(0, 3)) expect(Math.abs(q - 1 / 3)).toBeLessThan(1e-6);
        expect(p.slice(3)).toEqual([0, 0]);
        // and rows of every scale sum to at most 1
        const big = asInput(b, Float32Array.from([3e14, -2e14, 1, 0.5]));
        const ww = asInput(b, Float32Array.from({ length: 14 }, (_, i) => (i % 3 === 0 ? 1e15 : (i % 5) - 2)));
        const all = fused.visualWords(tensor(b, big, [2, 2]), tensor(b, ww, [7, 2]), { topK: 7 }).probs.toArray();
        for (const row of [all.slice(0, 7), all.slice(7)]) expect(Array.from(row).reduce((a, q) => a + q, 0)).toBeLessThan(1 + 1e-6);
      });
    });
  }
});
