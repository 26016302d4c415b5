// A whole LlamaForCausalLM and CLIPVisionModel (tiny, random, 2-3 layers) against PyTorch/transformers:
// scripts/make_fixtures.py saved their weights, inputs, float64 reference outputs and parameter gradients
// (tests/fixtures/tiny_llama, tests/fixtures/tiny_clip); we load the same weights by their HF names and
// must match logits, every hidden state and every parameter gradient within 1e-4 (normwise relative).
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { Generator, nn, F, scope, Tensor } from '../../src';
import { HostTensor, readSafetensors } from '../../src/io/safetensors';
import { maxAbs, relErr } from '../support/compare';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const fixtures = path.join(__dirname, '..', 'fixtures');
const load = (dir: string) => ({
  config: JSON.parse(fs.readFileSync(path.join(fixtures, dir, 'config.json'), 'utf8')) as Record<string, unknown>,
  weights: readSafetensors(path.join(fixtures, dir, 'model.safetensors')),
  io: readSafetensors(path.join(fixtures, dir, 'io.safetensors')),
});
const host = (io: Map<string, HostTensor>, name: string): HostTensor => {
  const t = io.get(name);
  if (!t) throw new Error(`fixture tensor ${name} is missing`);
  return t;
};
const tensorOf = (t: HostTensor) => Tensor.fromArray(t.data, t.shape);

/** Compares only rows whose mask is 1 (padded query positions are free in HF and here alike). */
function maskedRows(a: ArrayLike<number>, mask: Int32Array, width: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < mask.length; r++) if (mask[r]) for (let j = 0; j < width; j++) out.push(a[r * width + j]);
  return out;
}

describe('transformers parity', () => {
  it('LlamaForCausalLM: logits, hidden states and all parameter gradients', () => {
    const { config, weights, io } = load('tiny_llama');
    const cfg = nn.llamaConfigFromHF(config);
    const model = new nn.LlamaForCausalLM(cfg, { generator: new Generator(0) });
    model.loadStateDict(weights);
    const ids = host(io, 'input_ids'), mask = host(io, 'attention_mask').data as Int32Array;
    const [B, T] = ids.shape, V = cfg.vocabSize, D = cfg.hiddenSize;
    scope(() => {
      const out = model.forward(tensorOf(ids), { keyMask: tensorOf(host(io, 'attention_mask')), outputHiddenStates: true });
      const logits = out.logits.toArray();
      expect(relErr(maskedRows(logits, mask, V), maskedRows(host(io, 'logits').data, mask, V))).toBeLessThan(1e-4);
      out.hiddenStates!.forEach((h, k) => {
        expect(relErr(maskedRows(h.toArray(), mask, D), maskedRows(host(io, `hidden_states.${k}`).data, mask, D)), `hidden_states.${k}`).toBeLessThan(1e-4);
      });
      F.sum(F.mul(out.logits, tensorOf(host(io, 'R')))).backward();
    });
    for (const [name, p] of model.namedParameters()) {
      expect(relErr(p.grad!.toArray(), host(io, `grad.${name}`).data), `grad.${name}`).toBeLessThan(1e-4);
    }
    // Every gradient the fixture holds was compared (none left over for a parameter we lack), and the mask
    // really pads keys (so the masked attention path above is exercised, not only the all-ones one).
    const fixtureGrads = [...io.keys()].filter((k) => k.startsWith('grad.')).sort();
    expect(fixtureGrads).toEqual([...model.namedParameters().keys()].map((n) => `grad.${n}`).sort());
    expect(mask.length).toBe(B * T);
    expect(mask.some((m) => m === 0) && mask.some((m) => m === 1)).toBe(true);
    model.dispose();
  });

  it('CLIPVisionModel: hidden states, pooled output and gradients of the LLaVA feature layer', () => {
    const { config, weights, io } = load('tiny_clip');
    const cfg = nn.clipConfigFromHF(config);
    const model = new nn.ClipVisionModel(cfg, { generator: new Generator(0) });
    model.loadStateDict(weights);
    const vm = model.vision_model;
    scope(() => {
      const out = vm.forward(tensorOf(host(io, 'pixel_values')));
      out.hiddenStates.forEach((h, k) => expect(relErr(h.toArray(), host(io, `hidden_states.${k}`).data), `hidden_states.${k}`).toBeLessThan(1e-4));
      expect(relErr(vm.pooled(out.lastHiddenState).toArray(), host(io, 'pooler_output').data)).toBeLessThan(1e-4);
    });
    scope(() => {
      // the LLaVA feature: hidden_states[-2] without the CLS token; the last layer never runs
      const feat = vm.forward(tensorOf(host(io, 'pixel_values')), { upToLayer: -2 }).lastHiddenState;
      // hidden_states[-2] of transformers (index numLayers - 1: entry 0 is the embeddings), CLS included
      const L = cfg.numLayers;
      expect(feat.shape).toEqual(host(io, `hidden_states.${L - 1}`).shape);
      expect(relErr(feat.toArray(), host(io, `hidden_states.${L - 1}`).data)).toBeLessThan(1e-4);
      const T1 = feat.shape[1];
      const patches = F.slice(feat, 1, 1, T1 - 1);
      const R = tensorOf(host(io, 'R'));
      F.sum(F.mul(patches, F.slice(R, 1, 1, T1 - 1))).backward();
    });
    // The key bias gets a gradient that is exactly zero in theory (softmax is invariant to adding
    // q.b to every score of a row), so relative error means nothing there: gradients are measured
    // against max(their own scale, 1e-3 of the largest gradient of the model).
    let largest = 0;
    for (const [name] of model.namedParameters()) largest = Math.max(largest, maxAbs(io.get(`grad.${name}`)?.data ?? []));
    for (const [name, p] of model.namedParameters()) {
      const ref = io.get(`grad.${name}`);
      if (!ref) {
        expect(p.grad, `${name} should get no gradient`).toBeNull();
        continue;
      }
      const scale = Math.max(maxAbs(ref.data), 1e-3 * largest);
      expect(maxAbsDiff(p.grad!.toArray(), ref.data) / scale, `grad.${name}`).toBeLessThan(1e-4);
    }
    // no fixture gradient is left unchecked: each names one of our parameters (the input's is not compared)
    const names = new Set(model.namedParameters().keys());
    const unmatched = [...io.keys()].filter((k) => k.startsWith('grad.') && k !== 'grad.pixel_values' && !names.has(k.slice(5)));
    expect(unmatched).toEqual([]);
    model.dispose();
  });
});
