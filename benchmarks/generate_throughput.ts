// Generation and visual words at a model size (issue 12: "tokens/s against transformers' generate" at LLaVA-1.5-7B's
// shapes). This script times vwlmm's side only. The transformers side is benchmarks/hf_generate.py, a separate command
// run on its own (not called from here) with the same --size / --batch / --question / --new-tokens / --reps. It uses
// the same shapes, but its own random weights, token ids and pixels (torch.randint / randn). The prompts are not the
// same, and with random weights the two sides' answers are not compared; only the timings are. B prompts of 4 prefix
// tokens, the image and Q question tokens; greedy, no end token (random weights: every answer runs the whole budget),
// one batch. Times max new tokens 1 (the prefill: the tower, the prompt, one token) and N: decode
// tokens/s = B (N - 1) / (t_N - t_1). Visual words: the top-5 words of every patch of B images (the projected features
// through vm_head), images/s. Prints one JSON line.
//
//   npx tsx benchmarks/generate_throughput.ts [--size 7b|issue|tiny] [--device cuda|cpu] [--batch 16] [--question 64]
//       [--new-tokens 32] [--reps 3]
//   python3 benchmarks/hf_generate.py [the same flags]     # the transformers side, as a second command
import { fused, noGrad, scope } from '../src';
import { DeviceSpec, useDevice } from '../src/device';
import type { GeneratePrompt } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { createSized, SIZES, sizeName } from './model_sizes';
import { arg, declareFlags, medianSeconds, numArg } from './support';

declareFlags(['size', 'device', 'batch', 'question', 'new-tokens', 'reps']);
const size = sizeName(arg('size', '7b'));
const s = SIZES[size];
const device = arg('device', 'cuda') as DeviceSpec;
useDevice('--device', device);
// new tokens at least 2: decode tokens/s is B (N - 1) / (t_N - t_1)
const B = numArg('batch', 16, { integer: true, min: 1 }), Q = numArg('question', 64, { integer: true, min: 1 }), N = numArg('new-tokens', 32, { integer: true, min: 2 }), reps = numArg('reps', 3, { integer: true, min: 1 });
const model = createSized(size, device);
const gen = new Generator(1);
const S = s.vision.image, P = (S / s.vision.patch) ** 2, prefix = 4;
const prompts: GeneratePrompt[] = Array.from({ length: B }, () => ({
  tokenIds: Int32Array.from({ length: prefix + P + Q }, (_, i) => (i >= prefix && i < prefix + P ? 0 : 1 + gen.int(s.text.V - 2))),
  imagePositions: Int32Array.from({ length: P }, (_, i) => prefix + i),
  pixelValues: gen.normals(3 * S * S),
}));
const run = (n: number) => () => void model.generate(prompts, { maxNewTokens: n, batchSize: B });
const prefill = medianSeconds(run(1), reps);
const full = medianSeconds(run(N), Math.max(1, reps - 1));
const pixels = new Float32Array(B * 3 * S * S);
prompts.forEach((p, i) => pixels.set(p.pixelValues!, i * 3 * S * S));
const words = medianSeconds(() => noGrad(() => scope(() => {
  const { ids } = fused.visualWords(model.imageFeatures(pixels, B), model.vm_head!.weight, { topK: 5 });
  ids.toArray(); // waits for the device
})), reps);
console.log(JSON.stringify({
  impl: 'vwlmm', size, device, batch: B, promptTokens: prefix + P + Q, newTokens: N,
  prefillSeconds: prefill, fullSeconds: full, decodeTokensPerSec: (B * (N - 1)) / (full - prefill), answersTokensPerSec: (B * N) / full,
  visualWordsImagesPerSec: B / words,
}));
model.dispose();
