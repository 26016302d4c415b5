// 100 training steps of a small decoder keep native memory flat: every activation, gradient temporary
// and saved tensor is released deterministically each step (no reliance on the garbage collector); and a
// steady-state step's memory all comes from the caching allocator.
import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, F, Generator, memoryStats, nn, noGrad, releaseHostCache, scope, Tensor, zeroGrad } from '../../src';

/** A 2-layer, 4-head decoder of width d (initialisation std `std`), its generator, and AdamW over its parameters. */
function decoder(vocabSize: number, d: number, ffn: number, kvHeads: number, std: number, seed: number, opt: { lr: number; weightDecay?: number }) {
  const cfg: nn.LlamaConfig = { vocabSize, hiddenSize: d, intermediateSize: ffn, numLayers: 2, numHeads: 4, numKvHeads: kvHeads, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: std };
  const gen = new Generator(seed);
  const model = new nn.LlamaForCausalLM(cfg, { generator: gen });
  return { cfg, gen, model, opt: new AdamW(model.parameters(), opt) };
}

describe('training memory', () => {
  it('100 steps of a 2-layer decoder: live native buffers and bytes stay constant, the loss falls', () => {
    const { cfg, gen, model, opt } = decoder(50, 32, 48, 2, 0.1, 7, { lr: 3e-3, weightDecay: 0.01 });
    const B = 4, T = 16;
    // a fixed batch the model can memorise: next token = (token * 7 + 3) mod V
    const ids = new Int32Array(B * T).map(() => gen.int(cfg.vocabSize));
    const targets = ids.map((t) => (t * 7 + 3) % cfg.vocabSize);
    const losses: number[] = [];
    const snapshots: { liveBuffers: number; liveBytes: number; reservedBytes: number }[] = [];
    for (let step = 0; step < 100; step++) {
      scope(() => {
        const x = Tensor.fromArray(ids, [B, T]);
        const out = model.model.forward(model.model.embed_tokens.forward(x));
        const h = F.reshape(out.last, [B * T, cfg.hiddenSize]);
        const loss = F.linearCrossEntropy(h, model.lm_head.weight, Tensor.fromArray(targets, [B * T]));
        losses.push(loss.item());
        loss.backward();
        clipGradNorm(model.parameters(), 1.0);
        opt.step();
        zeroGrad(model.parameters());
      });
      if (step === 9 || step === 99) {
        const m = memoryStats().cpu;
        snapshots.push({ liveBuffers: m.liveBuffers, liveBytes: m.liveBytes, reservedBytes: m.reservedBytes });
      }
    }
    expect(snapshots[1]).toEqual(snapshots[0]);
    expect(losses[99]).toBeLessThan(0.5 * losses[0]);
    opt.dispose();
    model.dispose();
  });

  // The caching allocator (native/core/block_cache.h) is the same code on both backends (on CUDA every size is
  // cached; on the host, blocks over 64 KiB): checked here on the host, with tensors large enough to be cached.
  it('a steady-state step asks the system for no memory: every block comes from the cache', () => {
    const { cfg, gen, model, opt } = decoder(512, 128, 200, 4, 0.05, 11, { lr: 1e-3 });
    const B = 2, T = 128; // activations [256, 128] floats: 128 KiB blocks
    const ids = new Int32Array(B * T).map(() => gen.int(cfg.vocabSize));
    const step = () => scope(() => {
      const out = model.model.forward(model.model.embed_tokens.forward(Tensor.fromArray(ids, [B, T])));
      const loss = F.linearCrossEntropy(F.reshape(out.last, [B * T, cfg.hiddenSize]), model.lm_head.weight, Tensor.fromArray(ids, [B * T]));
      loss.backward();
      opt.step();
      zeroGrad(model.parameters());
    });
    step();
    step();
    const before = memoryStats().cpu;
    for (let k = 0; k < 3; k++) step();
    const after = memoryStats().cpu;
    expect(after.systemAllocs).toBe(before.systemAllocs);
    expect(after.cacheHits - before.cacheHits).toBeGreaterThan(3 * 20); // dozens of cached blocks reused per step
    expect(after.reservedBytes).toBe(before.reservedBytes);
    expect(after.peakReservedBytes).toBeGreaterThanOrEqual(after.reservedBytes);
    // (not >= liveBytes + cachedBytes: sanitizer builds give small blocks their exact size outside the cache)
    expect(after.reservedBytes).toBeGreaterThan(after.cachedBytes);
    expect(after.cachedBytes).toBeGreaterThan(0);
    // empty_cache: the cached blocks go back, the live ones stay
    const freed = releaseHostCache();
    const released = memoryStats().cpu;
    expect(freed).toBe(after.cachedBytes);
    expect(released.cachedBytes).toBe(0);
    expect(released.reservedBytes).toBe(after.reservedBytes - freed);
    expect(released.liveBytes).toBe(after.liveBytes);
    // the next step refills the cache from the system, then runs from it again
    step();
    const refilled = memoryStats().cpu;
    expect(refilled.systemAllocs).toBeGreaterThan(released.systemAllocs);
    step();
    expect(memoryStats().cpu.systemAllocs).toBe(refilled.systemAllocs);
    opt.dispose();
    model.dispose();
  });

  it('without autograd each decoder and vision layer frees its intermediates as it ends: the peak is about one layer', () => {
    // 8 layers: with autograd every layer's intermediates live until the scope ends (the backward needs them);
    // without, the forward holds about one layer's. Peak reserved host bytes beyond the weights, after emptying the cache.
    const peakOf = (fn: () => void) => {
      releaseHostCache();
      const before = memoryStats().cpu.reservedBytes;
      scope(fn);
      return memoryStats().cpu.peakReservedBytes - before;
    };
    const cfg: nn.LlamaConfig = { vocabSize: 64, hiddenSize: 64, intermediateSize: 256, numLayers: 8, numHeads: 4, numKvHeads: 4, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.02 };
    const llm = new nn.LlamaForCausalLM(cfg, { generator: new Generator(3) });
    const ids = Tensor.fromArray(Int32Array.from({ length: 4 * 128 }, (_, i) => i % 64), [4, 128]);
    const run = () => void llm.model.forward(llm.model.embed_tokens.forward(ids));
    const withGrad = peakOf(run), without = peakOf(() => noGrad(run));
    expect(without).toBeLessThan(withGrad / 3);
    // the same values either way
    const a = scope(() => llm.model.forward(llm.model.embed_tokens.forward(ids)).last.toArray());
    const b = noGrad(() => scope(() => llm.model.forward(llm.model.embed_tokens.forward(ids)).last.toArray()));
    expect(Array.from(b)).toEqual(Array.from(a));
    const clip: nn.ClipVisionConfig = { hiddenSize: 64, intermediateSize: 256, numLayers: 8, numHeads: 4, imageSize: 64, patchSize: 4, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 };
    const tower = new nn.ClipVisionModel(clip, { generator: new Generator(4) });
    const pixels = Tensor.fromArray(new Generator(5).normals(4 * 3 * 64 * 64), [4, 3, 64, 64]);
    const runTower = () => void tower.vision_model.forward(pixels);
    const towerGrad = peakOf(runTower), towerNo = peakOf(() => noGrad(runTower));
    expect(towerNo).toBeLessThan(towerGrad / 2);
    ids.dispose();
    pixels.dispose();
    llm.dispose();
    tower.dispose();
  });
});
