// VwLmm.generate's sampling against transformers' generate(do_sample=True): its warpers in its order (temperature,
// TopKLogitsWarper, TopPLogitsWarper) written here from their definitions as an independent float64 full-sort
// reference, the draws against the distribution they come from, the greedy limit of a tiny temperature, and the cost
// of a sampled step at V = 32000 (a sort of the whole vocabulary per row and step made it 25-40x a greedy step).
import { describe, expect, it } from 'vitest';
import { LogitsSampler } from '../../src/model/sampling';
import { VwLmm } from '../../src/model/vwlmm';
import { Generator } from '../../src/random';
import { rngFor } from '../support/random';
import { tinyConfig, tinyData } from '../train/support/tiny';

/**
 * transformers' warpers on one row, literally: scores = logits / T; top-k removes scores < the k-th largest (ties with
 * it stay); top-p sorts ascending, removes entries whose cumulative softmax probability is <= 1 - topP, except the
 * largest. Ties sort with the higher id first (below), so the lower id is removed last. Returns the softmax of what
 * is kept.
 */
function transformersDistribution(logits: ArrayLike<number>, T: number, topK: number, topP: number): Float64Array {
  const V = logits.length;
  let s = Array.from(logits, (x) => x / T);
  if (topK > 0 && topK < V) {
    const kth = [...s].sort((a, b) => b - a)[topK - 1];
    s = s.map((x) => (x < kth ? -Infinity : x));
  }
  const softmax = (v: number[]) => {
    const m = Math.max(...v);
    const e = v.map((x) => Math.exp(x - m));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  };
  if (topP < 1) {
    const p = softmax(s);
    const order = s.map((_, i) => i).sort((a, b) => s[a] - s[b] || b - a);
    let cum = 0;
    order.forEach((i, j) => {
      cum += p[i];
      if (cum <= 1 - topP && j < V - 1) s[i] = -Infinity;
    });
  }
  return Float64Array.from(softmax(s));
}

function samplerDistribution(logits: Float32Array, T: number, topK: number, topP: number): Float64Array {
  const s = new LogitsSampler(logits.length, { temperature: T, topK, topP });
  expect(s.prepare(logits)).toBe(true);
  return s.probabilities();
}

describe('sampling: transformers warpers', () => {
  it('the distribution sampled is temperature, then top-k, then top-p, as transformers computes them', () => {
    const rng = rngFor('sampling:warpers');
    let cases = 0;
    for (const V of [1, 2, 7, 100, 1000, 32000]) {
      // the reference sorts V entries per case: fewer settings at V = 32000
      const big = V > 1000;
      for (const kind of ['normal', 'ties', 'flat', 'peaked'] as const) {
        const logits = new Float32Array(V);
        for (let i = 0; i < V; i++) {
          const g = rng.normal();
          // ties: few distinct values; flat: a near-uniform row (the nucleus is most of V); peaked: a few large logits
          logits[i] = kind === 'ties' ? Math.round(g * 2) : kind === 'flat' ? g * 1e-3 : kind === 'peaked' ? (i % 97 === 3 ? 8 + g : g) : 3 * g;
        }
        for (const T of big ? [0.7] : [0.3, 1, 2.5]) {
          for (const topK of big ? [0, 50] : [0, 1, 5, 50, V, V + 3]) {
            for (const topP of big ? [1, 0.9, 0.3] : [1, 0.95, 0.9, 0.5, 0.1, 1e-9]) {
              const want = transformersDistribution(logits, T, topK, topP);
              const got = samplerDistribution(logits, T, topK, topP);
              // the same entries kept, with the same probabilities
              const bad = want.findIndex((w, i) => got[i] > 0 !== w > 0 || Math.abs(got[i] - w) > 1e-12 + 1e-9 * w);
              expect(bad, `V ${V} ${kind} T ${T} topK ${topK} topP ${topP}: id ${bad}: ${got[bad]}, transformers ${want[bad]}`).toBe(-1);
              cases++;
            }
          }
        }
      }
    }
    expect(cases).toBe(5 * 4 * 3 * 6 * 6 + 4 * 2 * 3);
  });

  it('ties at the top-k boundary are kept, as transformers keeps them (scores < the k-th are removed)', () => {
    const logits = Float32Array.from([1, 3, 2, 3, 2, 2, 0]);
    // the 3rd largest is 2: all three 2s stay with the two 3s
    expect(Array.from(samplerDistribution(logits, 1, 3, 1), (p) => p > 0)).toEqual([false, true, true, true, true, true, false]);
    expect(Array.from(samplerDistribution(logits, 1, 2, 1), (p) => p > 0)).toEqual([false, true, false, true, false, false, false]);
  });

  it('top-p keeps the smallest set of most likely tokens whose mass reaches topP, at least the top one', () => {
    const logits = Float32Array.from([0.1, 0.5, 0.3, 0.05, 0.05].map(Math.log));
    const kept = (topP: number) => Array.from(samplerDistribution(logits, 1, 0, topP), (p) => (p > 0 ? 1 : 0));
    expect(kept(0.45)).toEqual([0, 1, 0, 0, 0]);
    expect(kept(0.7)).toEqual([0, 1, 1, 0, 0]);
    expect(kept(0.85)).toEqual([1, 1, 1, 0, 0]);
    expect(kept(0.97)).toEqual([1, 1, 1, 1, 1]);
    expect(kept(1e-12)).toEqual([0, 1, 0, 0, 0]);
  });

  it('draws follow the distribution (chi-square), one uniform per row, reproducible from the seed', () => {
    const logits = Float32Array.from([2, 1.5, 0.2, -1, 0.7, 1.5, -3, 0, 1, 0.4]);
    for (const [topK, topP] of [[0, 1], [0, 0.8], [4, 1], [6, 0.9]]) {
      const s = new LogitsSampler(logits.length, { temperature: 0.8, topK, topP });
      s.prepare(logits);
      const p = s.probabilities();
      const gen = new Generator(11), count = new Array(logits.length).fill(0);
      const N = 40000;
      for (let n = 0; n < N; n++) count[s.draw(gen)]++;
      let chi2 = 0, dof = -1;
      p.forEach((pi, i) => {
        if (pi === 0) return expect(count[i], `topK ${topK} topP ${topP}: id ${i} is not kept but was drawn`).toBe(0);
        chi2 += (count[i] - N * pi) ** 2 / (N * pi);
        dof++;
      });
      // chi-square with at most 9 degrees of freedom: 40 is beyond its 1e-5 quantile
      expect(chi2, `topK ${topK} topP ${topP}: chi2 ${chi2} on ${dof} dof`).toBeLessThan(40);
      // the same seed, the same draws; one uniform per draw
      const a = new Generator(5), b = new Generator(5);
      const first = Array.from({ length: 50 }, () => s.draw(a));
      expect(Array.from({ length: 50 }, () => s.draw(b))).toEqual(first);
      const c = new Generator(5);
      for (let n = 0; n < 50; n++) c.uniform();
      expect(c.uniform()).toBe(a.uniform());
    }
  });

  it('a tiny positive temperature is the greedy limit: the max is drawn (ties at the max share it), never NaN', () => {
    const logits = Float32Array.from([0.5, 2, -1, 1.9999, 2 - 2 ** -22]);
    for (const T of [1e-310, 5e-324, 1e-30]) {
      const s = new LogitsSampler(logits.length, { temperature: T, topP: 0.9 });
      expect(s.prepare(logits)).toBe(true);
      expect(Array.from(s.probabilities())).toEqual([0, 1, 0, 0, 0]);
      const gen = new Generator(1);
      for (let n = 0; n < 20; n++) expect(s.draw(gen)).toBe(1);
    }
    const tied = new LogitsSampler(3, { temperature: 1e-310 });
    tied.prepare(Float32Array.from([4, -2, 4]));
    expect(Array.from(tied.probabilities())).toEqual([0.5, 0, 0.5]);
    // a row with a NaN or an infinity has nothing to sample from
    expect(new LogitsSampler(2, { temperature: 1 }).prepare(Float32Array.from([0, NaN]))).toBe(false);
    expect(new LogitsSampler(2, { temperature: 1 }).prepare(Float32Array.from([Infinity, 0]))).toBe(false);
  });
});

describe('sampling: VwLmm.generate', () => {
  const setup = () => {
    const { tokenizer, samples } = tinyData(4);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const prompts = samples.slice(0, 3).map((s, i) => ({ tokenIds: Int32Array.from(s.inputIds.slice(40, 52 + 3 * i)), imagePositions: new Int32Array(0), pixelValues: null }));
    return { model, prompts };
  };

  it('temperature 1e-310 gives the greedy tokens (it returned NaN-driven last ids); topK 1 does at any temperature', () => {
    const { model, prompts } = setup();
    const greedy = model.generate(prompts, { maxNewTokens: 6 });
    expect(model.generate(prompts, { maxNewTokens: 6, temperature: 1e-310 })).toEqual(greedy);
    expect(model.generate(prompts, { maxNewTokens: 6, temperature: 1e-310, topP: 0.5, topK: 3 })).toEqual(greedy);
    expect(model.generate(prompts, { maxNewTokens: 6, temperature: 5, topK: 1, seed: 3 })).toEqual(greedy);
    // at temperature 5 without top-k the tiny model's tokens are not the greedy ones (so the line above has teeth)
    expect(model.generate(prompts, { maxNewTokens: 6, temperature: 5, seed: 3 })).not.toEqual(greedy);
    model.dispose();
  });

  it('options: topK is checked, unknown keys are refused by name', () => {
    const { model, prompts } = setup();
    expect(() => model.generate(prompts, { maxNewTokens: 2, topK: -1 })).toThrow('VwLmm.generate: topK must be an integer >= 0 (0: off), got -1');
    expect(() => model.generate(prompts, { maxNewTokens: 2, topK: 2.5 })).toThrow('VwLmm.generate: topK must be an integer >= 0 (0: off), got 2.5');
    expect(() => model.generate(prompts, { maxNewTokens: 2, do_sample: true } as never)).toThrow("VwLmm.generate: unknown option 'do_sample'; known: maxNewTokens, eosId, temperature, topK, topP");
    expect(() => model.generate(prompts, { maxNewTokens: 2, top_k: 50 } as never)).toThrow("VwLmm.generate: unknown option 'top_k' (did you mean 'topK'?)");
    expect(() => model.generate(prompts, { max_new_tokens: 2 } as never)).toThrow("VwLmm.generate: unknown option 'max_new_tokens' (did you mean 'maxNewTokens'?)");
    expect(() => model.generate(prompts, null as never)).toThrow('VwLmm.generate: expected an object with maxNewTokens for options but received null');
    model.dispose();
  });
});
