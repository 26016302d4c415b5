// resizeTokenEmbeddings and dropVmHead (src/model/resize.ts), what a transformers-format export needs of a model: on
// a batch with an image, the grown model's logits over the old vocabulary are the old ones bit for bit, and each new
// token's logit is the mean of the old ones (its rows at the mean of theirs); the model without vm_head runs as before.
// Both keep the Linear weights' storage (bf16), and refuse what they cannot do: shrinking, adapters, a vm_head's
// visual words over a grown vocabulary, a PIF model without its vm_head.
import { describe, expect, it } from 'vitest';
import { noGrad, scope } from '../../src';
import { collate, nextTokenTargets, visualWordRows } from '../../src/data/collate';
import { applyLora } from '../../src/model/lora';
import { dropVmHead, resizeTokenEmbeddings } from '../../src/model/resize';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { tinyConfig } from '../train/support/tiny';

/** Two samples with an image each, as collate makes them. */
function batchOf(model: VwLmm): ModelBatch {
  const P = model.numImageTokens, S = model.config.vision.imageSize;
  const sample = (ids: number[], v: number) => ({ inputIds: ids, labels: ids.map((t) => (t < 0 ? -100 : t)), image: Float32Array.from({ length: 3 * S * S }, (_, i) => Math.sin(i * v)) });
  const b = collate([sample([1, -200, 5, 6, 7], 0.37), sample([1, -200, 8, 9], 1.3)], { padId: 0, numPatches: P });
  return { B: b.B, T: b.T, tokenIds: b.tokenIds, attentionMask: b.attentionMask, imagePositions: b.imagePositions, pixelValues: b.pixelValues, targets: nextTokenTargets(b), klRows: visualWordRows(b) };
}

/** The logits of every position, [B * T, V] row-major. */
const logitsOf = (model: VwLmm, batch: ModelBatch) => noGrad(() => scope(() => model.lm_head.forward(model.hidden(batch).h).toArray() as Float32Array));

describe('resizeTokenEmbeddings', () => {
  for (const linearDtype of ['float32', 'bfloat16'] as const) {
    it(`grows embed_tokens and lm_head with rows at the mean; the old logits unchanged (${linearDtype} Linears)`, () => {
      const V = 37, grown = 64;
      const model = VwLmm.create(tinyConfig(V, 0), 3, { linearDtype });
      const batch = batchOf(model);
      const before = logitsOf(model, batch);
      const big = resizeTokenEmbeddings(model, grown);
      expect(big.config.llm.vocabSize).toBe(grown);
      expect(big.lm_head.weight.dtype).toBe(model.lm_head.weight.dtype);
      expect(big.model.embed_tokens.weight.shape).toEqual([grown, model.config.llm.hiddenSize]);
      const after = logitsOf(big, batch);
      const N = before.length / V;
      for (let r = 0; r < N; r++) {
        const old = before.subarray(r * V, (r + 1) * V);
        expect(after.subarray(r * grown, r * grown + V)).toEqual(old);
        const mean = old.reduce((a, b) => a + b, 0) / V;
        for (let v = V; v < grown; v++) expect(after[r * grown + v]).toBeCloseTo(mean, linearDtype === 'bfloat16' ? 2 : 5);
      }
      // every other weight as it was; the new embedding rows at the mean too
      const a = model.stateDict(), b = big.stateDict();
      for (const [n, t] of a) if (!['model.embed_tokens.weight', 'lm_head.weight'].includes(n)) expect(b.get(n)!.data, n).toEqual(t.data);
      const H = model.config.llm.hiddenSize, e = a.get('model.embed_tokens.weight')!.data, eBig = b.get('model.embed_tokens.weight')!.data;
      expect(eBig.subarray(0, V * H)).toEqual(e);
      for (let c = 0; c < H; c++) {
        let mean = 0;
        for (let r = 0; r < V; r++) mean += e[r * H + c];
        expect(eBig[(grown - 1) * H + c]).toBeCloseTo(mean / V, 6);
      }
      // the old model is the caller's, untouched
      expect(logitsOf(model, batch)).toEqual(before);
      big.dispose();
      model.dispose();
    });
  }

  it('refuses shrinking, a size that is not a count, a model with a vm_head, and one with adapters', () => {
    for (const config of [tinyConfig(40), { ...tinyConfig(40, 0), pif: true }]) {
      const vw = VwLmm.create(config, 3);
      expect(() => resizeTokenEmbeddings(vw, 48)).toThrow('resizeTokenEmbeddings: the model has a vm_head, whose visual words are distributions over the vocabulary: new rows would change them');
      vw.dispose();
    }
    const model = VwLmm.create(tinyConfig(40, 0), 3);
    expect(() => resizeTokenEmbeddings(model, 39)).toThrow("resizeTokenEmbeddings: vocabSize 39 is less than the model's 40: resizing only grows the vocabulary (its rows were trained)");
    expect(() => resizeTokenEmbeddings(model, 40.5)).toThrow('resizeTokenEmbeddings: expected an integer >= 1 for vocabSize but received 40.5');
    for (const f of [resizeTokenEmbeddings, dropVmHead]) expect(() => (f as (m: unknown, n: number) => VwLmm)(null, 48)).toThrow(`${f.name}: expected a VwLmm for model but received null`);
    applyLora(model, { r: 2, alpha: 4, seed: 1 });
    expect(() => resizeTokenEmbeddings(model, 48)).toThrow('resizeTokenEmbeddings: the model has LoRA adapters: merge them first (mergeLora)');
    model.dispose();
  });
});

describe('{ consume: true }', () => {
  it("frees the old model as it copies: the same result; the old model's parameters say what freed them; refused arguments leave it whole", () => {
    const model = VwLmm.create(tinyConfig(40), 3);
    const batch = batchOf(model);
    const keep = dropVmHead(model);
    const plain = dropVmHead(model, { consume: true });
    expect(logitsOf(plain, batch)).toEqual(logitsOf(keep, batch));
    for (const p of model.parameters()) expect(p.disposed).toBe(true);
    expect(() => model.lm_head.weight.toArray()).toThrow("was freed by dropVmHead({ consume: true }), which frees the old model as it copies it: its parameter 'lm_head.weight'");
    model.dispose(); // (a caller's dispose after it keeps the first reason)
    expect(() => model.lm_head.weight.toArray()).toThrow('was freed by dropVmHead({ consume: true })');
    expect(() => model.vm_head!.weight.toArray()).toThrow("was left out by dropVmHead({ consume: true }): the model it returned has no such parameter (its parameter 'vm_head.weight'");
    const grown = resizeTokenEmbeddings(plain, 64, { consume: true });
    expect(logitsOf(grown, batch).subarray(0, 40)).toEqual(logitsOf(keep, batch).subarray(0, 40));
    expect(plain.parameters().every((p) => p.disposed)).toBe(true);
    // an argument refused before anything is copied: the model is still the caller's
    expect(() => resizeTokenEmbeddings(grown, 63, { consume: true })).toThrow('resizeTokenEmbeddings: vocabSize 63 is less');
    for (const bad of [{ consume: 1 }, { consum: true }, null]) expect(() => resizeTokenEmbeddings(grown, 128, bad as never)).toThrow(/^resizeTokenEmbeddings: /);
    expect(grown.parameters().some((p) => p.disposed)).toBe(false);
    // a new model too large to make: refused before anything is freed
    expect(() => resizeTokenEmbeddings(grown, 2 ** 31, { consume: true })).toThrow(/^VwLmm\.create: /);
    expect(grown.parameters().some((p) => p.disposed)).toBe(false);
    for (const m of [grown, keep]) m.dispose();
  });
});

describe('dropVmHead', () => {
  it('a VW-LMM as the plain LLaVA it runs as: the same logits, no vm_head; a PIF model refused', () => {
    const model = VwLmm.create(tinyConfig(40), 3);
    const batch = batchOf(model);
    const plain = dropVmHead(model);
    expect(plain.vm_head).toBeNull();
    expect(plain.config).toEqual({ ...model.config, vmWeight: 0, detachTarget: false });
    expect(logitsOf(plain, batch)).toEqual(logitsOf(model, batch));
    plain.dispose();
    model.dispose();
    const pif = VwLmm.create({ ...tinyConfig(40), pif: true }, 3);
    expect(() => dropVmHead(pif)).toThrow('dropVmHead: a PIF model feeds its image features through vm_head');
    pif.dispose();
  });
});
