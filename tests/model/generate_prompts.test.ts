// VwLmm.generate checks each prompt's images on its own, as transformers' LLaVA does ("Image features and image tokens
// do not match"): the batch totals agreeing let one prompt's image go to another, or be dropped, without a word; and
// non-finite pixels are refused on the host (an all-NaN image came out as '' silently).
import { describe, expect, it } from 'vitest';
import { F, noGrad, scope } from '../../src';
import { CLIP_MEAN, CLIP_STD } from '../../src/model/config';
import { VwLmm, GeneratePrompt } from '../../src/model/vwlmm';
import { batchOf } from '../../src/demo/task';
import { tinyConfig, tinyData } from '../train/support/tiny';

function setup() {
  const { tokenizer, split, samples } = tinyData(2);
  const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
  // image positions 32..56, pixels of one 75 x 75 image
  const b = batchOf([samples[0]], split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD });
  const image: GeneratePrompt = { tokenIds: b.tokenIds.slice(0, 60), imagePositions: b.imagePositions, pixelValues: b.pixelValues };
  const text: GeneratePrompt = { tokenIds: b.tokenIds.slice(0, 60), imagePositions: new Int32Array(0), pixelValues: null };
  return { model, image, text };
}

describe('generate: each prompt its own images', () => {
  it("one prompt's positions and another's pixels (batch totals that agree) are refused, naming the prompt", () => {
    const { model, image, text } = setup();
    const positionsOnly = { ...image, pixelValues: null };
    const pixelsOnly = { ...text, pixelValues: image.pixelValues };
    expect(() => model.generate([positionsOnly, pixelsOnly], { maxNewTokens: 2 }))
      .toThrow('VwLmm.generate: prompt 0: image features and image tokens do not match: 0 image(s) (pixelValues null) need 0 image positions (25 per image), got 25');
    expect(() => model.generate([image, pixelsOnly], { maxNewTokens: 2 }))
      .toThrow('VwLmm.generate: prompt 1: image features and image tokens do not match: 1 image(s) (pixelValues) need 25 image positions (25 per image), got 0');
    model.dispose();
  });

  it('positions that are not exactly 25 per image, pixels of a partial image, a position twice', () => {
    const { model, image } = setup();
    const px = image.pixelValues!;
    expect(() => model.generate([image, { ...image, imagePositions: image.imagePositions.slice(0, 24) }], { maxNewTokens: 1 }))
      .toThrow('VwLmm.generate: prompt 1: image features and image tokens do not match: 1 image(s) (pixelValues) need 25 image positions (25 per image), got 24');
    const two = new Float32Array(2 * px.length);
    two.set(px);
    two.set(px, px.length);
    expect(() => model.generate([{ ...image, pixelValues: two }], { maxNewTokens: 1 }))
      .toThrow('VwLmm.generate: prompt 0: image features and image tokens do not match: 2 image(s) (pixelValues) need 50 image positions (25 per image), got 25');
    expect(() => model.generate([{ ...image, pixelValues: px.slice(1) }], { maxNewTokens: 1 }))
      .toThrow('VwLmm.generate: prompt 0 has 16874 pixel values, not a whole number of images of 16875 (3 x 75 x 75)');
    const twice = image.imagePositions.slice();
    twice[3] = twice[2];
    expect(() => model.generate([{ ...image, imagePositions: twice }], { maxNewTokens: 1 })).toThrow('VwLmm.generate: prompt 0 names an image position twice');
    model.dispose();
  });

  it('non-finite pixels are an error naming the prompt, before any work', () => {
    const { model, image, text } = setup();
    const nan = new Float32Array(image.pixelValues!.length).fill(NaN);
    expect(() => model.generate([text, { ...image, pixelValues: nan }], { maxNewTokens: 2 })).toThrow("VwLmm.generate: prompt 1's pixelValues hold a non-finite value (NaN) at index 0");
    const inf = image.pixelValues!.slice();
    inf[777] = -Infinity;
    expect(() => model.generate([{ ...image, pixelValues: inf }], { maxNewTokens: 2 })).toThrow("VwLmm.generate: prompt 0's pixelValues hold a non-finite value (-Infinity) at index 777");
    model.dispose();
  });

  it('well-formed prompts, images and text mixed, still generate', () => {
    const { model, image, text } = setup();
    const out = model.generate([image, text, image], { maxNewTokens: 3 });
    expect(out.map((o) => o.length)).toEqual([3, 3, 3]);
    expect(out[2]).toEqual(out[0]);
    model.dispose();
  });

  it('a prompt with two images (batched with a one-image prompt) generates what greedy decoding by full forwards gives', () => {
    const { model, image, text } = setup();
    // a second image at positions 2..26, before the first image's 32..56; its pixels mirror the first's
    const px = image.pixelValues!, second = px.slice().reverse();
    const positions = Int32Array.from([...Array.from({ length: 25 }, (_, i) => 2 + i), ...image.imagePositions]);
    const two: GeneratePrompt = { tokenIds: text.tokenIds, imagePositions: positions, pixelValues: Float32Array.from([...second, ...px]) };
    const out = model.generate([two, image], { maxNewTokens: 4 });
    // the reference: the whole sequence through VwLmm.hidden at every step, no cache
    const ref: number[] = [];
    let ids = Array.from(two.tokenIds);
    for (let k = 0; k < 4; k++) {
      const T = ids.length;
      const next = scope(() => noGrad(() => {
        const { h } = model.hidden({ B: 1, T, tokenIds: Int32Array.from(ids), attentionMask: new Int32Array(T).fill(1), imagePositions: positions, pixelValues: two.pixelValues });
        const logits = F.linear(F.slice(h, 0, T - 1, 1), model.lm_head.weight).toArray() as Float32Array;
        return logits.indexOf(Math.max(...logits));
      }));
      ref.push(next);
      ids = [...ids, next];
    }
    expect(out[0]).toEqual(ref);
    expect(out[1]).toEqual(model.generate([image], { maxNewTokens: 4 })[0]);
    model.dispose();
  });
});
