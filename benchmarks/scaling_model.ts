// A scaling model of data-parallel VW-LMM training over 8 GPUs on NVLink (issue 14), computed, not measured: the
// bytes each rank moves per optimizer step with ZeRO-1 as src/distributed/zero.ts does it (a reduce-scatter of the
// gradients, an all-gather of the weights), the time that takes at a given NCCL bus bandwidth, the backward pass it
// has to hide behind, and the efficiency that follows. Prints a markdown table.
//   npx tsx benchmarks/scaling_model.ts [--gpus 8] [--busbw 360] [--mfu 0.4] [--peak 989]
// busbw: NCCL's bus bandwidth for large reduce-scatter / all-gather within one 8-GPU NVLink node, GB/s (nccl-tests
// report about 360-480 on H100 / H200 HGX; 360 is the conservative end). Compute time: 6 x trainable-or-not matmul
// parameters x tokens at `mfu` of the bf16 peak (989 TFLOP/s dense for H200 SXM); the backward is 2/3 of it.
// The bf16 column is zero.ts's gatherDtype 'bfloat16': the weight all-gather in bf16 (2 bytes); the gradients, and so
// the reduce-scatter, stay float32 (4 bytes) in both columns (as benchmarks/data_parallel.ts counts them: 4 + 2).
import { declareFlags, numArg } from './support';

declareFlags(['gpus', 'busbw', 'mfu', 'peak']);
// bandwidth, MFU and peak divide: above 0 (and MFU a fraction of the peak)
const W = numArg('gpus', 8, { integer: true, min: 1 }), busbw = numArg('busbw', 360, { min: 0, minExclusive: true }) * 1e9;
const mfu = numArg('mfu', 0.4, { min: 0, minExclusive: true, max: 1 }), peak = numArg('peak', 989, { min: 0, minExclusive: true }) * 1e12;

interface Llm { d: number; ff: number; L: number; V: number; kvHeads: number; heads: number }
interface Config { name: string; llm: Llm; vision: { d: number; ff: number; L: number; tokens: number }; batchPerGpu: number; textTokens: number; trainLlm: boolean }

const llmParams = (l: Llm) => {
  const kv = (l.d / l.heads) * l.kvHeads;
  const layer = l.d * l.d * 2 + 2 * l.d * kv + 3 * l.d * l.ff + 2 * l.d;
  return { layers: l.L * layer, embed: l.V * l.d, head: l.V * l.d };
};
const vitParams = (v: Config['vision']) => v.L * (4 * v.d * v.d + 2 * v.d * v.ff);

const CONFIGS: Config[] = [
  // the end-to-end configuration (benchmarks/hf_vwlmm_train.py --size issue): stage 2, LLM + projector + vm_head
  { name: "issue's end-to-end (ViT-B/16, 16-layer d 1024 LLaMA, V 32000)", llm: { d: 1024, ff: 2816, L: 16, V: 32000, heads: 16, kvHeads: 16 }, vision: { d: 768, ff: 3072, L: 12, tokens: 197 }, batchPerGpu: 16, textTokens: 129, trainLlm: true },
  // LLaVA-1.5 / VW-LMM 7B stage 2 (Vicuna-7B, CLIP ViT-L/14-336: 576 patches; batch 16 per GPU, ~ 500 text tokens)
  { name: 'VW-LMM 7B stage 2 (Vicuna-7B, ViT-L/14-336)', llm: { d: 4096, ff: 11008, L: 32, V: 32000, heads: 32, kvHeads: 32 }, vision: { d: 1024, ff: 4096, L: 24, tokens: 577 }, batchPerGpu: 16, textTokens: 500, trainLlm: true },
];

console.log(`${W} GPUs, NCCL bus bandwidth ${busbw / 1e9} GB/s, ${mfu * 100}% MFU of ${peak / 1e12} TFLOP/s\n`);
console.log('| configuration | trained parameters | per step and rank: reduce-scatter + all-gather (fp32 / bf16 all-gather) | time at the bus bandwidth (fp32 / bf16 all-gather) | compute per step (backward) | bandwidth to hide the reduce-scatter in the backward | expected efficiency (fp32 / bf16 weights) |');
console.log('|---|---|---|---|---|---|---|');
for (const c of CONFIGS) {
  const p = llmParams(c.llm), proj = c.vision.d * c.llm.d + c.llm.d * c.llm.d, vm = c.llm.V * c.llm.d;
  const trained = (c.trainLlm ? p.layers + p.embed + p.head : 0) + proj + vm;
  const seq = c.vision.tokens - 1 + c.textTokens, tokens = c.batchPerGpu * seq;
  // matmul FLOPs: the LLM (its embedding is a lookup), vm_head on the image rows, the projector, the frozen tower's forward
  const flops = 6 * (p.layers + p.head) * tokens + 6 * vm * c.batchPerGpu * (c.vision.tokens - 1) + 6 * proj * c.batchPerGpu * (c.vision.tokens - 1)
    + 2 * vitParams(c.vision) * c.batchPerGpu * c.vision.tokens + 12 * c.llm.L * c.llm.d * seq * seq * c.batchPerGpu;
  const compute = flops / (peak * mfu), backward = (compute * 2) / 3;
  // ring reduce-scatter / all-gather: each rank sends and receives (W - 1) / W of the buffer
  const moved = (bytes: number) => ((W - 1) / W) * trained * bytes;
  // NCCL's bus bandwidth of a reduce-scatter or all-gather of S bytes in time t is S (W - 1) / W / t
  const t = (bytes: number) => moved(bytes) / busbw;
  // gradients are reduce-scattered in float32 either way; only the weights' all-gather is bf16 in the second column
  const tRs32 = t(4), tAg32 = t(4), tRs16 = t(4), tAg16 = t(2);
  const hideBw = (moved(4) / backward) / 1e9;
  // the reduce-scatter overlaps the backward (buckets); the all-gather follows the update, exposed
  const eff = (ag: number, rs: number) => compute / (compute + ag + Math.max(0, rs - backward));
  const f = (x: number) => `${(x * 1e3).toFixed(1)} ms`;
  console.log(`| ${c.name} | ${(trained / 1e6).toFixed(0)} M | ${(2 * moved(4) / 1e9).toFixed(2)} / ${((moved(4) + moved(2)) / 1e9).toFixed(2)} GB | ${f(tRs32 + tAg32)} / ${f(tRs16 + tAg16)} | ${f(compute)} (${f(backward)}) | ${hideBw.toFixed(0)} GB/s (fp32 gradients) | ${(eff(tAg32, tRs32) * 100).toFixed(1)}% / ${(eff(tAg16, tRs16) * 100).toFixed(1)}% |`);
}
