// Frozen weights stored in bfloat16 (nn.storeFrozenWeights, TrainerOptions.frozenDtype): LoRA's frozen base at half
// the memory. In float32 compute the products widen such a weight for the call, in autocast('bfloat16') they take
// it as it is, so either way the results equal, bit for bit, those of float32 weights holding the rounded values;
// a trainable weight is never stored so.
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { autocast, backward, F, memoryStats, nn, noGrad, scope, Tensor } from '../../src';
import type { ComputeDtype } from '../../src';
import { roundToBf16 } from '../../src/bf16';
import { loadCheckpoint, saveCheckpoint } from '../../src/model/checkpoint';
import { applyLora, mergeLora } from '../../src/model/lora';
import { VwLmm } from '../../src/model/vwlmm';
import { Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData, tinyStages } from '../train/support/tiny';
import { rngFor, runSeed } from '../support/random';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('frozen-storage');
const rounded = (a: Float32Array) => a.map(roundToBf16);
const DTYPES: ComputeDtype[] = ['float32', 'bfloat16'];

describe(`frozen weights stored in bf16 (seed ${runSeed})`, () => {
  for (const dtype of DTYPES) {
    it(`F.linear and the fused losses in ${dtype} compute: a bf16 weight gives what its rounded float32 copy gives`, () => {
      const rng = rngFor(`frozen-linear-${dtype}`);
      const R = 7, I = 13, O = 9, V = 11;
      const xv = rng.normals(R * I), wv = rng.normals(O * I), bv = rng.normals(O), gv = rng.normals(R * O);
      const hv = rng.normals(R * I), headv = rng.normals(V * I);
      const run = (wDtype: 'float32' | 'bfloat16') => scope(() => autocast(dtype, () => {
        const x = Tensor.fromArray(xv, [R, I]);
        x.requiresGrad = true;
        const w = Tensor.fromArray(wDtype === 'float32' ? rounded(wv) : wv, [O, I], { dtype: wDtype });
        const b = Tensor.fromArray(bv, [O]);
        b.requiresGrad = true;
        const y = F.linear(x, w, b);
        backward(F.sum(F.mul(y, Tensor.fromArray(gv, [R, O]))));
        // the fused losses with the frozen head (lm_head) and a trainable input
        const h = Tensor.fromArray(hv, [R, I]);
        h.requiresGrad = true;
        const head = Tensor.fromArray(wDtype === 'float32' ? rounded(headv) : headv, [V, I], { dtype: wDtype });
        const targets = Tensor.fromArray(Int32Array.from({ length: R }, (_, i) => (i * 5) % V), [R]);
        const ce = F.linearCrossEntropy(h, head, targets);
        backward(ce);
        return [y, x.grad!, b.grad!, ce, h.grad!].map((t) => Array.from(t.toArray()));
      }));
      expect(run('bfloat16')).toEqual(run('float32'));
    });
  }

  it('refuses a trainable weight stored in bf16, naming it', () => {
    scope(() => {
      const w = Tensor.fromArray(new Float32Array(6), [2, 3], { dtype: 'bfloat16' });
      // a parameter: registered by a module
      const m = new (class extends nn.Module {
        readonly weight = this.param('weight', w);
      })();
      expect(m.weight.requiresGrad).toBe(false); // registered frozen
      m.weight.requiresGrad = true;
      expect(() => F.linear(Tensor.zeros([1, 3]), m.weight)).toThrow(/F\.linear: w is stored in bfloat16 and requires grad/);
      expect(noGrad(() => F.linear(Tensor.zeros([1, 3]), m.weight)).shape).toEqual([1, 2]); // inference is fine
      m.weight.requiresGrad = false;
      expect(F.linear(Tensor.zeros([1, 3]), m.weight).shape).toEqual([1, 2]);
      m.dispose();
    });
  });

  it('storeFrozenWeights halves the frozen Linear weights, keeps vm_head and the trainable ones float32, and goes back exactly', () => {
    const { tokenizer } = tinyData(2);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 2);
    applyLora(model, { r: 2, alpha: 4, seed: runSeed });
    model.setTrainable(false);
    for (const [n, p] of model.namedParameters()) if (/lora_|mm_projector/.test(n)) p.requiresGrad = true;
    const before = new Map([...model.namedParameters()].map(([n, p]) => [n, p.toArray() as Float32Array]));
    const live = memoryStats().cpu.liveBytes;
    const r = nn.storeFrozenWeights(model, 'bfloat16', { exclude: ['vm_head'] });
    expect(r.toBf16).toBeGreaterThan(10);
    expect(r.toFloat32).toBe(0);
    expect(memoryStats().cpu.liveBytes - live).toBe(-(r.bytesBefore - r.bytesAfter));
    for (const [n, p] of model.namedParameters()) {
      const isLinearWeight = /(proj|fc1|fc2|lm_head|linear_\d)\.weight$/.test(n) && !/lora_/.test(n);
      const want = isLinearWeight && !p.requiresGrad && !n.startsWith('vm_head') ? 'bfloat16' : 'float32';
      expect(p.dtype, n).toBe(want);
      expect(Array.from(p.toArray()), n).toEqual(Array.from(want === 'bfloat16' ? rounded(before.get(n)!) : before.get(n)!));
    }
    expect(model.vm_head!.weight.dtype).toBe('float32');
    // trainable again: float32 masters holding the rounded values
    model.setTrainable(true);
    const back = nn.storeFrozenWeights(model, 'bfloat16');
    expect(back.toFloat32).toBe(r.toBf16);
    for (const p of model.parameters()) expect(p.dtype).toBe('float32');
    model.dispose();
  });

  for (const dtype of DTYPES) {
    it(`LoRA training in ${dtype} with the base stored in bf16 matches the float32 base holding the rounded values, bit for bit`, () => {
      const { tokenizer, split, makeBatch } = tinyData(6);
      const stage = { name: 'lora', size: split.scenes.length, makeBatch, steps: 3, batchSize: 2, lr: 1e-2, warmupRatio: 0, trainable: { lora: true, projector: true, vmHead: true } };
      const make = () => {
        const m = VwLmm.create(tinyConfig(tokenizer.vocabSize), 2);
        applyLora(m, { r: 2, alpha: 4, seed: runSeed });
        return m;
      };
      const losses = (m: VwLmm, frozenDtype: ComputeDtype) => {
        const out: unknown[] = [];
        new Trainer(m, [stage], { seed: 1, dtype, frozenDtype, onLog: (rec) => rec.type === 'train' && out.push([rec.loss, rec.ce, rec.kl, rec.gradNorm]) }).run();
        return out;
      };
      const a = make();
      const la = losses(a, 'bfloat16');
      const stored = [...a.namedParameters()].filter(([, p]) => p.dtype === 'bfloat16').map(([n]) => n);
      expect(stored.length).toBeGreaterThan(10);
      const b = make();
      for (const n of stored) {
        const p = b.namedParameters().get(n)!;
        p.buffer.write(rounded(p.toArray() as Float32Array));
      }
      const lb = losses(b, 'float32');
      expect(la).toHaveLength(3);
      expect(la).toEqual(lb);
      for (const [n, p] of a.namedParameters()) expect(Array.from(p.toArray()), n).toEqual(Array.from(b.namedParameters().get(n)!.toArray()));
      a.dispose();
      b.dispose();
    });
  }

  it("loadCheckpoint's weightDtype bf16 holds the LLM's and the tower's Linear weights in bf16; under autocast the outputs are the same", () => {
    const { tokenizer, makeBatch } = tinyData(4);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 2);
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, model);
    const f32 = loadCheckpoint(dir).model, b16 = loadCheckpoint(dir, { weightDtype: 'bfloat16' }).model;
    for (const [n, p] of b16.namedParameters()) {
      const stored = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|out_proj|fc1|fc2)\.weight$|^lm_head\.weight$/.test(n);
      expect(p.dtype, n).toBe(stored ? 'bfloat16' : 'float32');
      const want = f32.namedParameters().get(n)!.toArray() as Float32Array;
      expect(Array.from(p.toArray()), n).toEqual(Array.from(stored ? rounded(want) : want));
    }
    const loss = (m: VwLmm) => scope(() => autocast('bfloat16', () => {
      const out = m.loss(makeBatch([0, 1, 2]));
      return [out.loss.item(), out.ce, out.kl];
    }));
    expect(loss(b16)).toEqual(loss(f32));
    expect(() => loadCheckpoint(dir, { weightDtype: 'float16' as never })).toThrow("loadCheckpoint: expected 'float32' or 'bfloat16' for weightDtype but received 'float16' (string)");
    for (const m of [model, f32, b16]) m.dispose();
  });

  it('a stage that trains what the last one froze gets float32 weights back; checkpoints and merging read bf16 storage', () => {
    const { tokenizer, split, makeBatch } = tinyData(6);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 2);
    const seen: string[] = [];
    const stages = tinyStages(makeBatch, split.scenes.length, 2);
    new Trainer(model, stages, { seed: 1, frozenDtype: 'bfloat16', onLog: (r) => r.type === 'train' && seen.push(`${r.stage}:${model.model.layers.items[0].self_attn.q_proj.weight.dtype}`) }).run();
    // stage a froze the LLM (stored in bf16), stage b trains it (float32 masters again)
    expect(seen[0]).toBe('a:bfloat16');
    expect(seen[seen.length - 1]).toBe('b:float32');
    for (const p of model.parameters()) expect(p.dtype).toBe('float32');

    // a LoRA base stored in bf16: saved, reloaded (float32) and merged
    applyLora(model, { r: 2, alpha: 4, seed: runSeed });
    model.setTrainable(false);
    nn.storeFrozenWeights(model, 'bfloat16');
    const dir = path.join(tmp(), 'ckpt');
    saveCheckpoint(dir, model);
    const loaded = loadCheckpoint(dir).model;
    for (const [n, p] of model.namedParameters()) expect(Array.from(loaded.namedParameters().get(n)!.toArray()), n).toEqual(Array.from(p.toArray()));
    mergeLora(model);
    expect(model.model.layers.items[0].self_attn.q_proj.weight.dtype).toBe('bfloat16');
    loaded.dispose();
    model.dispose();
  });
});
