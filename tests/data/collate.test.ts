// collate: image placeholder expansion, right padding, masks, next-token targets and visual-word KL rows.
import { describe, expect, it } from 'vitest';
import { collate, CollateSample, ImageWriter, nextTokenTargets, visualWordRows } from '../../src/data/collate';
import { IMAGE_TOKEN_INDEX, tokenizeConversation } from '../../src/data/conversation';
import { TextTokenizer } from '../../src/data/tokenizer';

const I = IMAGE_TOKEN_INDEX;
const X = -100;
const img = (base: number, S = 2) => Float32Array.from({ length: 3 * S * S }, (_, i) => base + i);

// Two images (P = 3 patches each, S = 2) and a text-only sample; expanded lengths 7, 3, 5 -> T = 7.
const SAMPLES: CollateSample[] = [
  { inputIds: [1, 5, I, 6, 7], labels: [X, X, X, 6, 7], image: img(0) },
  { inputIds: [1, 8, 9], labels: [X, X, 9] },
  { inputIds: [1, I, 4], labels: [X, X, 4], image: img(100) },
];

describe('collate', () => {
  it('expands each placeholder into numPatches positions, then right-pads to the longest sequence', () => {
    const b = collate(SAMPLES, { padId: 0, numPatches: 3 });
    expect([b.B, b.T, b.numImages, b.numPatches, b.imageSize]).toEqual([3, 7, 2, 3, 2]);
    expect(Array.from(b.lengths)).toEqual([7, 3, 5]);
    // prettier-ignore
    expect(Array.from(b.tokenIds)).toEqual([
      1, 5, 0, 0, 0, 6, 7,
      1, 8, 9, 0, 0, 0, 0,
      1, 0, 0, 0, 4, 0, 0,
    ]);
    // prettier-ignore
    expect(Array.from(b.labels)).toEqual([
      X, X, X, X, X, 6, 7,
      X, X, 9, X, X, X, X,
      X, X, X, X, 4, X, X,
    ]);
    // prettier-ignore
    expect(Array.from(b.attentionMask)).toEqual([
      1, 1, 1, 1, 1, 1, 1,
      1, 1, 1, 0, 0, 0, 0,
      1, 1, 1, 1, 1, 0, 0,
    ]);
    expect(Array.from(b.imagePositions)).toEqual([2, 3, 4, 15, 16, 17]);
    expect(Array.from(b.imageBatchIndex)).toEqual([0, 2]);
    expect(b.tokenIds).toBeInstanceOf(Int32Array);
    expect(b.pixelValues).toBeInstanceOf(Float32Array);
    expect(Array.from(b.pixelValues as Float32Array)).toEqual([...Array.from(img(0)), ...Array.from(img(100))]);
  });

  it('uses padId at image and padding positions', () => {
    const b = collate(SAMPLES, { padId: 9, numPatches: 2 });
    expect(b.T).toBe(6);
    expect(Array.from(b.tokenIds.subarray(0, 6))).toEqual([1, 5, 9, 9, 6, 7]);
    expect(Array.from(b.tokenIds.subarray(6, 12))).toEqual([1, 8, 9, 9, 9, 9]);
    expect(Array.from(b.imagePositions)).toEqual([2, 3, 13, 14]);
  });

  it('text-only batches have no images and null pixelValues', () => {
    const b = collate([SAMPLES[1], { inputIds: [1], labels: [X] }], { padId: 0, numPatches: 576 });
    expect([b.B, b.T, b.numImages, b.imageSize]).toEqual([2, 3, 0, 0]);
    expect(b.pixelValues).toBeNull();
    expect(b.imagePositions.length).toBe(0);
    expect(visualWordRows(b).rows.length).toBe(0);
  });

  it('nextTokenTargets shifts labels by one position within each row', () => {
    const b = collate(SAMPLES, { padId: 0, numPatches: 3 });
    // prettier-ignore
    expect(Array.from(nextTokenTargets(b))).toEqual([
      X, X, X, X, 6, 7, X,
      X, 9, X, X, X, X, X,
      X, X, X, 4, X, X, X,
    ]);
  });

  it('visualWordRows: the token before each image and patches 1..P-1, with the feature index of t+1', () => {
    const b = collate(SAMPLES, { padId: 0, numPatches: 3 });
    const { rows, featureIndex } = visualWordRows(b);
    expect(Array.from(rows)).toEqual([1, 2, 3, 14, 15, 16]);
    expect(Array.from(featureIndex)).toEqual([0, 1, 2, 3, 4, 5]);
    for (let i = 0; i < rows.length; i++) expect(b.imagePositions[featureIndex[i]]).toBe(rows[i] + 1);
    // The rows hold no supervised text target (images are labelled -100).
    const targets = nextTokenTargets(b);
    for (const r of rows) expect(targets[r]).toBe(X);
  });

  it('an image at t = 0 has no row for its first patch', () => {
    const b = collate([{ inputIds: [I, 5], labels: [X, 5], image: img(0) }, SAMPLES[2]], { padId: 0, numPatches: 3 });
    expect(b.T).toBe(5);
    expect(Array.from(b.imagePositions)).toEqual([0, 1, 2, 6, 7, 8]);
    const { rows, featureIndex } = visualWordRows(b);
    expect(Array.from(rows)).toEqual([0, 1, 5, 6, 7]);
    expect(Array.from(featureIndex)).toEqual([1, 2, 3, 4, 5]);
  });

  it('maxLength cuts text after expansion and refuses to cut an image', () => {
    const b = collate(SAMPLES, { padId: 0, numPatches: 3, maxLength: 6 });
    expect(b.T).toBe(6);
    expect(Array.from(b.lengths)).toEqual([6, 3, 5]);
    expect(Array.from(b.tokenIds.subarray(0, 6))).toEqual([1, 5, 0, 0, 0, 6]);
    expect(() => collate(SAMPLES, { padId: 0, numPatches: 3, maxLength: 4 })).toThrow(/sample 0: maxLength 4 would cut its image/);
  });

  it('rejects malformed samples, naming the sample index', () => {
    const opts = { padId: 0, numPatches: 3 };
    expect(() => collate([SAMPLES[1], { inputIds: [1, I, 2, I], labels: [X, X, X, X], image: img(0) }], opts)).toThrow(
      /sample 1: more than one image placeholder/,
    );
    expect(() => collate([SAMPLES[0], { inputIds: [1, I, 2], labels: [X, X, 2] }], opts)).toThrow(/sample 1: has an image placeholder .* but no image/);
    expect(() => collate([{ inputIds: [1, 2], labels: [X, 2], image: img(0) }], opts)).toThrow(/sample 0: has an image but no image placeholder/);
    expect(() => collate([{ inputIds: [1, 2], labels: [X] }], opts)).toThrow(/sample 0: inputIds has 2 entries but labels has 1/);
    expect(() => collate([SAMPLES[0], { inputIds: [1, I], labels: [X, X], image: img(0, 3) }], opts)).toThrow(/sample 1: image has 27 values but an earlier image has 12/);
    expect(() => collate([{ inputIds: [1, I], labels: [X, X], image: new Float32Array(10) }], opts)).toThrow(/sample 0: image has 10 values, not 3 \* S \* S/);
    expect(() => collate([{ inputIds: [1, -5], labels: [X, X] }], opts)).toThrow(/sample 0: inputIds\[1\] = -5 is negative/);
    expect(() => collate([{ inputIds: [1, 2], labels: [X, -3] }], opts)).toThrow(/sample 0: labels\[1\] = -3/);
    expect(() => collate([{ inputIds: [], labels: [] }], opts)).toThrow(/sample 0: empty sequence/);
    expect(() => collate([], opts)).toThrow(/non-empty array/);
    expect(() => collate(SAMPLES, { padId: 0, numPatches: 0 })).toThrow(/numPatches/);
    expect(() => collate(SAMPLES, { padId: -1, numPatches: 3 })).toThrow(/padId/);
  });

  it('ImageWriter images are written straight into the batch, and options.pixelValues is filled in place', () => {
    // a writer of img(base): collate hands it the batch array and the image's offset
    const calls: [number, number][] = [];
    const writer = (base: number): ImageWriter => ({
      values: 12,
      writeInto: (out, offset) => {
        calls.push([base, offset]);
        out.set(img(base), offset);
      },
    });
    const asWriters = SAMPLES.map((s) => (s.image ? { ...s, image: writer((s.image as Float32Array)[0]) } : s));
    const ref = collate(SAMPLES, { padId: 0, numPatches: 3 });
    const viaWriters = collate(asWriters, { padId: 0, numPatches: 3 });
    expect(calls).toEqual([[0, 0], [100, 12]]);
    expect(viaWriters).toEqual(ref);
    // the caller's array: the batch's pixelValues is its leading 24 values (the same memory), the rest untouched
    const given = new Float32Array(30).fill(-1);
    const b = collate(asWriters, { padId: 0, numPatches: 3, pixelValues: given });
    expect(b.pixelValues!.buffer).toBe(given.buffer);
    expect([b.pixelValues!.byteOffset, b.pixelValues!.length]).toEqual([0, 24]);
    expect(Array.from(given)).toEqual([...Array.from(ref.pixelValues!), -1, -1, -1, -1, -1, -1]);
    expect(collate(SAMPLES, { padId: 0, numPatches: 3, pixelValues: new Float32Array(24) }).pixelValues!.length).toBe(24);
    // a text-only batch leaves it alone
    expect(collate([SAMPLES[1]], { padId: 0, numPatches: 3, pixelValues: given }).pixelValues).toBeNull();
    expect(() => collate(SAMPLES, { padId: 0, numPatches: 3, pixelValues: new Float32Array(23) })).toThrow(/pixelValues has 23 values but the batch's images need 24/);
    expect(() => collate(SAMPLES, { padId: 0, numPatches: 3, pixelValues: [] as never })).toThrow(/pixelValues must be a Float32Array/);
    const bad = (image: unknown) => () => collate([{ inputIds: [1, I], labels: [X, X], image: image as ImageWriter }], { padId: 0, numPatches: 3 });
    expect(bad({ values: 12 })).toThrow(/sample 0: image must be a Float32Array \[3, S, S\] or an ImageWriter/);
    expect(bad({ values: -3, writeInto: () => undefined })).toThrow(/sample 0: image must be/);
    expect(bad(new Float64Array(12))).toThrow(/sample 0: image must be/);
    expect(bad({ values: 10, writeInto: () => undefined })).toThrow(/sample 0: image has 10 values, not 3 \* S \* S/);
  });

  it('honours a custom imageTokenIndex', () => {
    const b = collate([{ inputIds: [1, -7, 2], labels: [X, X, 2], image: img(0) }], { padId: 0, numPatches: 2, imageTokenIndex: -7 });
    expect(Array.from(b.tokenIds)).toEqual([1, 0, 0, 2]);
    expect(Array.from(b.imagePositions)).toEqual([1, 2]);
  });
});

describe('tokenizeConversation -> collate', () => {
  it('the first supervised target sits at the position of ":" after "assistant"', () => {
    const words = ['<unk>', '<s>', '</s>', 'user', 'assistant', ':', 'what', '?', 'a', 'cat', '.'];
    const tok = new TextTokenizer({
      added_tokens: [0, 1, 2].map((id) => ({ id, content: words[id], special: true, normalized: false, lstrip: false, rstrip: false, single_word: false })),
      normalizer: { type: 'Lowercase' },
      pre_tokenizer: { type: 'Whitespace' },
      post_processor: null,
      decoder: null,
      model: { type: 'WordLevel', vocab: Object.fromEntries(words.map((w, i) => [w, i])), unk_token: '<unk>' },
    });
    const conv = [{ from: 'human', value: 'What?\n<image>' }, { from: 'gpt', value: 'A cat.' }];
    const r = tokenizeConversation(conv, tok, 'vicuna_v1');
    const b = collate([{ inputIds: r.inputIds, labels: r.labels, image: img(0) }], { padId: tok.padId, numPatches: 4 });
    const targets = nextTokenTargets(b);
    const first = targets.findIndex((x) => x !== X);
    expect(tok.idToToken(b.tokenIds[first])).toBe(':');
    expect(tok.idToToken(b.tokenIds[first - 1])).toBe('assistant');
    expect(Array.from(targets.filter((x) => x !== X)).map((id) => tok.idToToken(id))).toEqual(['a', 'cat', '.', '</s>']);
    const { rows } = visualWordRows(b);
    expect(rows.length).toBe(4);
    expect(tok.idToToken(b.tokenIds[rows[0]])).toBe(':'); // "user :" then the image
  });
});
