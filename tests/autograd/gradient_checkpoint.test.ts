// Gradient checkpointing (autograd.gradientCheckpoint, LlamaDecoder / ClipVisionTransformer
// .gradientCheckpointing): the same loss and bit-identical gradients as without it (the recomputation runs
// the same deterministic ops), less memory held between forward and backward, nothing leaked.
import { describe, expect, it } from 'vitest';
import { F, Generator, gradientCheckpoint, memoryStats, nn, noGrad, scope, Tensor, zeroGrad } from '../../src';
import { runSeed } from '../support/random';
import { VwLmm } from '../../src/model/vwlmm';
import { tinyConfig, tinyData } from '../train/support/tiny';

const seed = runSeed;
const llamaCfg: nn.LlamaConfig = { vocabSize: 61, hiddenSize: 24, intermediateSize: 40, numLayers: 3, numHeads: 4, numKvHeads: 2, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 64, initializerRange: 0.2 };
const clipCfg: nn.ClipVisionConfig = { hiddenSize: 16, intermediateSize: 24, numLayers: 3, numHeads: 2, imageSize: 12, patchSize: 4, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.2, initializerFactor: 1 };

/** Loss and every parameter's gradient of one forward + backward of the decoder; bytes held after the forward. */
function decoderStep(model: nn.LlamaForCausalLM, ids: Int32Array, mask: Int32Array, B: number, T: number) {
  let afterForward = 0, loss = 0;
  const before = memoryStats().cpu.liveBytes; // the parameters (no gradients yet)
  scope(() => {
    const out = model.model.forward(model.model.embed_tokens.forward(Tensor.fromArray(ids, [B, T])), { keyMask: Tensor.fromArray(mask, [B, T]) });
    const targets = Int32Array.from(ids, (_, i) => ((i + 1) % T === 0 || !mask[i + 1] ? -100 : ids[i + 1]));
    const l = F.linearCrossEntropy(F.reshape(out.last, [B * T, llamaCfg.hiddenSize]), model.lm_head.weight, Tensor.fromArray(targets, [B * T]));
    afterForward = memoryStats().cpu.liveBytes - before;
    loss = l.item();
    l.backward();
  });
  const grads = new Map([...model.namedParameters()].map(([n, p]) => [n, p.grad ? Array.from(p.grad.toArray()) : null]));
  zeroGrad(model.parameters());
  return { loss, grads, afterForward };
}

describe('gradient checkpointing', () => {
  it('a LLaMA decoder: the same loss and bit-identical gradients, with less memory held after the forward', () => {
    const gen = new Generator(seed);
    const model = new nn.LlamaForCausalLM(llamaCfg, { generator: gen });
    const B = 3, T = 11;
    const ids = Int32Array.from({ length: B * T }, () => gen.int(llamaCfg.vocabSize));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i % T < T - (i / T | 0) ? 1 : 0)); // right padding
    const base = memoryStats().cpu.liveBuffers;
    const plain = decoderStep(model, ids, mask, B, T);
    model.model.gradientCheckpointing = true;
    const ckpt = decoderStep(model, ids, mask, B, T);
    expect(ckpt.loss).toBe(plain.loss);
    for (const [name, g] of plain.grads) {
      expect(g, name).not.toBeNull();
      expect(ckpt.grads.get(name), name).toEqual(g);
    }
    // held between forward and backward: every layer's intermediates without, its outputs with
    expect(ckpt.afterForward).toBeLessThan(plain.afterForward / 4); // measured 6.5x less
    // a frozen embedding: layer 0's input needs no gradient, its parameters still get theirs
    model.model.embed_tokens.weight.requiresGrad = false;
    const frozen = decoderStep(model, ids, mask, B, T);
    model.model.gradientCheckpointing = false;
    const frozenPlain = decoderStep(model, ids, mask, B, T);
    for (const [name, g] of frozenPlain.grads) expect(frozen.grads.get(name), name).toEqual(g);
    expect(frozen.grads.get('model.layers.0.self_attn.q_proj.weight')).not.toBeNull();
    expect(memoryStats().cpu.liveBuffers).toBe(base);
    model.dispose();
  });

  it('a CLIP vision tower: bit-identical gradients, and evaluation under noGrad is unchanged', () => {
    const gen = new Generator(seed + 1);
    const model = new nn.ClipVisionModel(clipCfg, { generator: gen });
    const B = 2, S = clipCfg.imageSize, nTok = (S / clipCfg.patchSize) ** 2 + 1;
    const pix = gen.normals(B * 3 * S * S), R = gen.normals(B * nTok * clipCfg.hiddenSize);
    const step = () => {
      let loss = 0;
      scope(() => {
        const h = model.vision_model.forward(Tensor.fromArray(pix, [B, 3, S, S]), { upToLayer: -2 }).lastHiddenState;
        const l = F.sum(F.mul(h, Tensor.fromArray(R, [B, nTok, clipCfg.hiddenSize])));
        loss = l.item();
        l.backward();
      });
      const grads = model.parameters().map((p) => (p.grad ? Array.from(p.grad.toArray()) : null));
      zeroGrad(model.parameters());
      return { loss, grads };
    };
    const evalOut = () => scope(() => Array.from(noGrad(() => model.vision_model.forward(Tensor.fromArray(pix, [B, 3, S, S])).lastHiddenState).toArray()));
    const plain = step(), plainEval = evalOut();
    model.vision_model.gradientCheckpointing = true;
    const ckpt = step();
    expect(ckpt.loss).toBe(plain.loss);
    expect(ckpt.grads).toEqual(plain.grads);
    expect(ckpt.grads.filter((g) => g !== null).length).toBeGreaterThan(0);
    expect(evalOut()).toEqual(plainEval);
    model.dispose();
  });

  it('gradients of a checkpointed function by hand, and a view as its result is refused', () => {
    const x = Tensor.fromArray(Float32Array.from([1, -2, 3]), [3]), w = Tensor.fromArray(Float32Array.from([0.5, 2, -1]), [3]);
    x.requiresGrad = w.requiresGrad = true;
    scope(() => {
      // y = sum((x * w) * x) = sum(w x^2): dy/dx = 2 w x, dy/dw = x^2
      const y = gradientCheckpoint((a) => F.mul(F.mul(a, w), a), [x], [w]);
      F.sum(y).backward();
    });
    expect(Array.from(x.grad!.toArray())).toEqual([1, -8, -6]);
    expect(Array.from(w.grad!.toArray())).toEqual([1, 4, 9]);
    expect(() => scope(() => gradientCheckpoint((a) => F.reshape(a, [3, 1]), [x], []))).toThrow(/gradientCheckpoint: fn must return a tensor it created/);
    x.dispose();
    w.dispose();
  });
});

describe('gradient checkpointing of a loss computed outside any scope', () => {
  it("VwLmm.loss on a padded batch (the key mask every checkpointed layer shares): the gradients of the plain model's loss", () => {
    const { tokenizer, makeBatch } = tinyData(8);
    const config = { ...tinyConfig(tokenizer.vocabSize), llm: { ...tinyConfig(tokenizer.vocabSize).llm, numLayers: 2 } };
    const batch = makeBatch([0, 1, 2, 3]);
    expect(Array.from(batch.attentionMask)).toContain(0);
    const grads = (checkpointing: boolean) => {
      const model = VwLmm.create(config, 5);
      model.gradientCheckpointing = checkpointing;
      const out = model.loss(batch); // outside any scope: the loss's own scope is the outermost
      out.loss.backward();
      const g = model.parameters().map((p) => (p.grad ? Array.from(p.grad.toArray()) : null));
      for (const t of [out.loss, out.ceLoss, out.klLoss]) t?.dispose();
      model.dispose();
      return g;
    };
    expect(grads(true)).toEqual(grads(false));
  });
});
