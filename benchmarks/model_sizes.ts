// The model sizes of the comparisons with transformers on a GPU: their VwLmmConfig, FLOP count and device-side random
// init, shared by train_throughput.ts (issues 11, 12; hf_vwlmm_train.py is the other side, with the same SIZES table)
// and generate_throughput.ts (issue 12; hf_generate.py).
import { F, noGrad, scope, Tensor } from '../src';
import { callOp } from '../src/call_op';
import type { DeviceSpec } from '../src/device';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../src/model/config';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';

export const SIZES = {
  issue: { vision: { d: 768, ff: 3072, L: 12, heads: 12, image: 224, patch: 16 }, text: { d: 1024, ff: 2816, L: 16, heads: 16, V: 32000 }, batch: 16, textTokens: 129 },
  tiny: { vision: { d: 32, ff: 64, L: 2, heads: 2, image: 32, patch: 8 }, text: { d: 32, ff: 64, L: 2, heads: 2, V: 512 }, batch: 2, textTokens: 9 },
  '7b': { vision: { d: 1024, ff: 4096, L: 24, heads: 16, image: 336, patch: 14 }, text: { d: 4096, ff: 11008, L: 32, heads: 32, V: 32000 }, batch: 16, textTokens: 1472 },
} as const;
export type SizeName = keyof typeof SIZES;
export type Size = (typeof SIZES)[SizeName];

/** The size named on a command line (--size), or an error naming the choices. */
export function sizeName(name: string): SizeName {
  if (!Object.hasOwn(SIZES, name)) throw new RangeError(`--size must be one of ${Object.keys(SIZES).join(', ')}, got '${name}'`);
  return name as SizeName;
}
export const PEAK_BF16 = 989e12; // H200 SXM dense bf16

export function sizeConfig(s: Size): VwLmmConfig {
  return {
    llm: { vocabSize: s.text.V, hiddenSize: s.text.d, intermediateSize: s.text.ff, numLayers: s.text.L, numHeads: s.text.heads, numKvHeads: s.text.heads, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, initializerRange: 0.02 },
    vision: { hiddenSize: s.vision.d, intermediateSize: s.vision.ff, numLayers: s.vision.L, numHeads: s.vision.heads, imageSize: s.vision.image, patchSize: s.vision.patch, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 1, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: s.vision.image, mean: [...CLIP_MEAN] as [number, number, number], std: [...CLIP_STD] as [number, number, number], aspect: 'square' }, imageTokenIndex: -200,
  };
}

/**
 * The VW-LMM of a size on a device. '7b' is drawn on the device (initOnDevice) with the LLM's and the tower's Linear
 * weights stored in bf16, as anything that size is; the others are drawn in JS from seed 0 unless `deviceInit`.
 */
export function createSized(size: SizeName, device: DeviceSpec, deviceInit = size === '7b'): VwLmm {
  const cfg = sizeConfig(SIZES[size]);
  const model = VwLmm.create(cfg, 0, { device, ...(deviceInit ? { uninitialized: true, linearDtype: 'bfloat16' as const } : {}) });
  if (deviceInit) initOnDevice(model.namedParameters(), cfg.llm.initializerRange, new Generator(0));
  return model;
}

/**
 * benchmarks/hf_vwlmm_train.py's flops_per_step: 6 x parameters x tokens (forward, input and weight gradients); with
 * LoRA (r > 0) the frozen LLM's products 4x (no weight gradient) plus the adapters' 6x, the frozen tower's 2x (forward
 * only), and the attention scores of the tower forward only.
 */
export function flopsPerStep(s: Size, batch: number, seq: number, patches: number, r = 0): number {
  const { d, ff, L, V } = s.text, v = s.vision;
  const layers = L * (4 * d * d + 3 * d * ff), heads = 2 * V * d, adapters = L * r * (4 * 2 * d + 2 * (d + ff) + (ff + d));
  const vit = v.L * (4 * v.d * v.d + 2 * v.d * v.ff);
  const proj = v.d * d + d * d;
  const attnLlm = 12 * L * d * seq * seq * batch, attnVit = 12 * v.L * v.d * (patches + 1) ** 2 * batch;
  if (r === 0) return 6 * ((layers + heads) * batch * seq + vit * batch * (patches + 1) + proj * batch * patches) + attnLlm + attnVit;
  return (4 * layers + 6 * (heads + adapters)) * batch * seq + 2 * vit * batch * (patches + 1) + 6 * proj * batch * patches + attnLlm + attnVit / 3;
}

/**
 * Every parameter drawn on its device: norm weights 1, biases 0, the rest random signs of `std` (the init's variance;
 * dropout of ones makes the signs). For models too large to draw in JS.
 */
export function initOnDevice(params: Map<string, Tensor>, std: number, gen: Generator): void {
  noGrad(() => {
    for (const [name, p] of params) {
      scope(() => {
        const dev = p.device, n = p.size, norm = /norm/.test(name), bias = name.endsWith('.bias');
        const v = Tensor.empty([n], { device: dev });
        callOp('fill', dev, [], [v], [n], [norm ? 1 : 0]);
        let x = v;
        if (!norm && !bias) {
          callOp('fill', dev, [], [v], [n], [1]);
          x = F.axpby(F.dropout(v, 0.5, gen), v, std, -std); // {0, 2} -> {-std, +std}
        }
        callOp('cast', dev, [x], [p], [n], []);
      });
    }
  });
}
