// The device option (src/device.ts): parsing 'cpu' | 'cuda' | 'cuda:N', models created and checkpoints loaded on
// a device, a clear error naming why where CUDA is unusable, and --device on the CLI. Where a GPU is present, a
// training step of the same model on CUDA (fp32) agrees with the CPU: loss, every gradient, the AdamW update.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { AdamW, cudaAvailable, memoryStats, parseDevice, scope, useDevice, zeroGrad } from '../../src';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../../src/model/config';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { batchOf, makeSplit, makeTokenizer, questionConversation, tokenizeSamples } from '../../src/demo/task';
import { Generator } from '../../src/random';
import { runSeed } from '../support/random';
import { maxAbs, zeroGradients } from '../support/compare';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const tmp = tempDirs('device');
const gpu = cudaAvailable();

function tinyConfig(vocabSize: number): VwLmmConfig {
  return {
    llm: { vocabSize, hiddenSize: 16, intermediateSize: 24, numLayers: 2, numHeads: 2, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 256, initializerRange: 0.1 },
    vision: { hiddenSize: 12, intermediateSize: 16, numLayers: 2, numHeads: 2, imageSize: 75, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.1, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 1, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 75, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

function tinyBatch() {
  const { tokenizer } = makeTokenizer();
  const split = makeSplit(2, new Generator(runSeed), { nonRelational: 2, relational: 2 });
  const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
  return { tokenizer, batch: batchOf(samples, split, { imageSize: 75, numPatches: 25, padId: tokenizer.padId, mean: CLIP_MEAN, std: CLIP_STD }) };
}

describe('device option', () => {
  it("parseDevice: 'cpu', 'cuda', 'cuda:N'; anything else is a TypeError naming the argument", () => {
    expect(parseDevice('t', 'cpu')).toEqual({ device: 'cpu', index: null });
    expect(parseDevice('t', 'cuda')).toEqual({ device: 'cuda', index: null });
    expect(parseDevice('t', 'cuda:3')).toEqual({ device: 'cuda', index: 3 });
    for (const bad of ['gpu', 'cuda:', 'cuda:-1', 'cuda:x', 'CUDA', '', 3, null, { device: 'cuda' }])
      expect(() => parseDevice('t', bad), String(bad)).toThrow(/t: expected 'cpu', 'cuda' or 'cuda:N' \(N a GPU index\) for device but received/);
    expect(useDevice('t', undefined)).toBe('cpu');
    // the spec alone read as the caller's name ran on the CPU without a word
    expect(() => (useDevice as (w: string) => string)('cuda')).toThrow(`useDevice(where, spec): expected the caller's name and the device spec, but received one argument ("cuda")`);
  });

  it('a model is created on the CPU by default and on request, with the same weights from the same seed', () => {
    const { tokenizer } = tinyBatch();
    const a = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5), b = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5, { device: 'cpu' });
    expect(a.device).toBe('cpu');
    expect(b.device).toBe('cpu');
    expect(b.parameters().every((p) => p.device === 'cpu')).toBe(true);
    expect(Array.from(b.lm_head.weight.toArray())).toEqual(Array.from(a.lm_head.weight.toArray()));
    a.dispose();
    b.dispose();
  });

  it.skipIf(gpu)('without a usable GPU, asking for CUDA is an error that says why (model, checkpoint, CLI)', () => {
    const { tokenizer } = tinyBatch();
    const live = memoryStats().cpu.liveBuffers;
    expect(() => VwLmm.create(tinyConfig(tokenizer.vocabSize), 5, { device: 'cuda' })).toThrow(/VwLmm\.create: CUDA is unavailable: \S/);
    expect(() => VwLmm.create(tinyConfig(tokenizer.vocabSize), 5, { device: 'cuda:1' })).toThrow(/CUDA is unavailable/);
    expect(memoryStats().cpu.liveBuffers).toBe(live); // nothing was allocated before the error
    const dir = path.join(tmp(), 'ckpt');
    const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 5);
    saveCheckpoint(dir, m);
    m.dispose();
    expect(() => loadCheckpoint(dir, { device: 'cuda' })).toThrow(/CUDA is unavailable/);
    const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    const r = cli('generate', '--checkpoint', dir, '--prompt', 'what?', '--device', 'cuda');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/vwlmm: --device: CUDA is unavailable: \S/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const bad = cli('generate', '--checkpoint', dir, '--prompt', 'what?', '--device', 'gpu');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/vwlmm: --device: expected 'cpu', 'cuda' or 'cuda:N' \(N a GPU index\) for device but received 'gpu'/);
  });

  // For the first GPU session: one fp32 training step on CUDA against the CPU, same model and batch.
  it.skipIf(!gpu)('one fp32 training step on CUDA agrees with the CPU: loss, every gradient, the AdamW update', () => {
    const { tokenizer, batch } = tinyBatch();
    const models = { cpu: VwLmm.create(tinyConfig(tokenizer.vocabSize), 5), cuda: VwLmm.create(tinyConfig(tokenizer.vocabSize), 5, { device: 'cuda' }) };
    expect(models.cuda.device).toBe('cuda');
    const result: Record<string, { loss: number; grads: Map<string, Float32Array>; after: Map<string, Float32Array> }> = {};
    for (const [name, model] of Object.entries(models)) {
      const opt = new AdamW(model.parameters(), { lr: 1e-3, weightDecay: 0.01 });
      let loss = 0;
      scope(() => {
        const out = model.loss(batch);
        loss = out.loss.item();
        out.loss.backward();
      });
      // (the last vision layer has no gradient: select layer -2 never reads it)
      const grads = new Map([...model.namedParameters()].filter(([, p]) => p.grad).map(([n, p]) => [n, p.grad!.toArray() as Float32Array]));
      opt.step();
      zeroGrad(model.parameters());
      result[name] = { loss, grads, after: new Map([...model.namedParameters()].map(([n, p]) => [n, p.toArray() as Float32Array])) };
      opt.dispose();
    }
    expect(Math.abs(result.cuda.loss - result.cpu.loss)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(result.cpu.loss)));
    const close = (a: Float32Array, b: Float32Array, tol: number) => {
      let scale = 0, diff = 0;
      for (let i = 0; i < a.length; i++) {
        scale = Math.max(scale, Math.abs(b[i]));
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
      }
      return diff <= tol * Math.max(scale, 1e-6);
    };
    expect([...result.cuda.grads.keys()]).toEqual([...result.cpu.grads.keys()]);
    const zero = zeroGradients(result.cpu.grads);
    expect(zero.names.size).toBeLessThanOrEqual(2); // the vision layer-0 key bias (and not every gradient)
    for (const [n, g] of result.cpu.grads) {
      const got = result.cuda.grads.get(n)!;
      if (zero.names.has(n)) expect(maxAbs(got), `grad ${n} (zero up to rounding)`).toBeLessThan(1e-4 * zero.largest);
      else expect(close(got, g, 1e-4), `grad ${n}`).toBe(true);
    }
    for (const [n, w] of result.cpu.after) if (!zero.names.has(n)) expect(close(result.cuda.after.get(n)!, w, 1e-5), `updated ${n}`).toBe(true);
    models.cpu.dispose();
    models.cuda.dispose();
  });
});
