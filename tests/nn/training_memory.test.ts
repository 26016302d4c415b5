// 100 training steps of a small decoder keep native memory flat: every activation, gradient temporary
// and saved tensor is released deterministically each step (no reliance on the garbage collector).
import { describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm, F, Generator, memoryStats, nn, scope, Tensor, zeroGrad } from '../../src';

describe('training memory', () => {
  it('100 steps of a 2-layer decoder: live native buffers and bytes stay constant, the loss falls', () => {
    const cfg: nn.LlamaConfig = {
      vocabSize: 50, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
      rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 64, initializerRange: 0.1,
    };
    const gen = new Generator(7);
    const model = new nn.LlamaForCausalLM(cfg, { generator: gen });
    const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01 });
    const B = 4, T = 16;
    // a fixed batch the model can memorise: next token = (token * 7 + 3) mod V
    const ids = new Int32Array(B * T).map(() => gen.int(cfg.vocabSize));
    const targets = ids.map((t) => (t * 7 + 3) % cfg.vocabSize);
    const losses: number[] = [];
    const snapshots: { liveBuffers: number; liveBytes: number }[] = [];
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
      if (step === 9 || step === 99) snapshots.push(memoryStats().cpu);
    }
    expect(snapshots[1]).toEqual(snapshots[0]);
    expect(losses[99]).toBeLessThan(0.5 * losses[0]);
    opt.dispose();
    model.dispose();
  });
});
