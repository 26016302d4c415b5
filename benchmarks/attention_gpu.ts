// GPU benchmark of attention forward + backward (bf16) on the shapes the issue-11 model and a 7B model train on:
// vwlmm's tiled kernels against its gemm kernel (setCudaAttention) at two workspace budgets, and PyTorch's
// scaled_dot_product_attention (benchmarks/torch_attention.py, with SDPA's own choice of backend) in the same run on the
// same GPU. The SDPA row names the backend that ran ("torch SDPA (flash)" etc.): torch_attention.py reads it from the
// aten op one profiled call dispatched to, not from which backends are enabled. Inputs in the [B, T, H, Dh] layout both sides train with (HF transposes to
// [B, H, T, Dh] views). Also prints how far the gemm kernel's outputs are from the tiled kernels' (normwise).
// TFLOP/s count the useful products (causal: half the square), forward 4 B H Tq Tk Dh, backward 2.5x that.
//
//   npx tsx benchmarks/attention_gpu.ts [--shapes llm,clip,7b] [--reps 10] [--workspace-mib 64,256] [--no-torch] [--out FILE]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { backendInfo, cudaAvailable, scope, setCudaAttention, synchronize, Tensor } from '../src';
import type { AttentionKernel } from '../src';
import { callOp } from '../src/call_op';
import { arg, declareFlags, flag, medianSeconds, numArg, uniform } from './support';

interface Shape { name: string; B: number; T: number; Hq: number; Hkv: number; Dh: number; causal: boolean }
const SHAPES: Shape[] = [
  // the issue-11 model's LLM layers (16 x (196 image + 129 text) tokens) and CLIP ViT-B/16 layers
  { name: 'llm', B: 16, T: 325, Hq: 16, Hkv: 16, Dh: 64, causal: true },
  { name: 'clip', B: 16, T: 197, Hq: 12, Hkv: 12, Dh: 64, causal: false },
  // Vicuna-7B at LLaVA-1.5's stage 2 (576 image tokens + ~500 text) with a per-device batch of 4
  { name: '7b', B: 4, T: 1076, Hq: 32, Hkv: 32, Dh: 128, causal: true },
];
interface Row { shape: string; impl: string; seconds: number; tflops: number; vsTorch?: number; maxRelDiff?: number }

declareFlags(['shapes', 'reps', 'workspace-mib', 'out'], ['no-torch']);
const reps = numArg('reps', 10, { integer: true, min: 1 });
const shapes = SHAPES.filter((s) => arg('shapes', 'llm,clip,7b').split(',').includes(s.name));
const budgets = arg('workspace-mib', '64,256').split(',').map(Number);
const flops = (s: Shape) => 3.5 * 4 * s.B * s.Hq * s.T * s.T * s.Dh * (s.causal ? 0.5 : 1);

function maxRel(a: Float32Array, ref: Float32Array): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - ref[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return m === 0 ? d : d / m;
}

/** Forward + backward on CUDA with the given kernel; the outputs (O, dQ, dK, dV) of the last call when `keep`. */
function ours(s: Shape, kernel: AttentionKernel, workspaceMiB: number): { seconds: number; outs: Float32Array[] } {
  const was = setCudaAttention({ kernel, workspaceBytes: workspaceMiB * 2 ** 20 });
  try {
    return scope(() => {
      const opt = { device: 'cuda' as const, dtype: 'bfloat16' as const };
      const nq = s.B * s.T * s.Hq * s.Dh, nk = s.B * s.T * s.Hkv * s.Dh;
      const q = Tensor.fromArray(uniform(nq, 1).map((x) => x * 20), [nq], opt);
      const k = Tensor.fromArray(uniform(nk, 2).map((x) => x * 20), [nk], opt);
      const v = Tensor.fromArray(uniform(nk, 3).map((x) => x * 10), [nk], opt);
      const dO = Tensor.fromArray(uniform(nq, 4), [nq], opt);
      const o = Tensor.empty([nq], opt), lse = Tensor.empty([s.B * s.Hq * s.T], { device: 'cuda' });
      const dq = Tensor.empty([nq], opt), dk = Tensor.empty([nk], opt), dv = Tensor.empty([nk], opt);
      const ints = [s.B, s.T, s.T, s.Hq, s.Hkv, s.Dh, s.causal ? 1 : 0, 0], floats = [1 / Math.sqrt(s.Dh)];
      const step = () => {
        callOp('attention_forward', 'cuda', [q, k, v, null], [o, lse], ints, floats);
        callOp('attention_backward', 'cuda', [dO, q, k, v, o, lse, null], [dq, dk, dv], ints, floats);
        synchronize('cuda');
      };
      const seconds = medianSeconds(step, reps);
      return { seconds, outs: [o, dq, dk, dv].map((t) => t.toArray() as Float32Array) };
    });
  } finally {
    setCudaAttention(was);
  }
}

function torch(s: Shape): { seconds: number; backend: string } | null {
  const r = spawnSync('python3', ['benchmarks/torch_attention.py', '--B', `${s.B}`, '--T', `${s.T}`, '--Hq', `${s.Hq}`, '--Hkv', `${s.Hkv}`,
    '--Dh', `${s.Dh}`, '--causal', s.causal ? '1' : '0', '--reps', `${reps}`], { encoding: 'utf8' });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    const o = JSON.parse(line) as { seconds: number; backend?: string };
    return { seconds: o.seconds, backend: o.backend ?? 'unknown' };
  } catch {
    console.error(`torch_attention.py failed for ${s.name}: ${(r.stderr ?? '').slice(-800)}`);
    return null;
  }
}

if (!cudaAvailable()) {
  console.error(`attention_gpu: needs CUDA (${String(backendInfo().cuda.reason)})`);
  process.exit(1);
}
const rows: Row[] = [];
for (const s of shapes) {
  const sdpa = flag('no-torch') ? null : torch(s), tSdpa = sdpa?.seconds ?? null;
  if (sdpa) rows.push({ shape: s.name, impl: `torch SDPA (${sdpa.backend})`, seconds: sdpa.seconds, tflops: flops(s) / sdpa.seconds / 1e12, vsTorch: 1 });
  const tiled = ours(s, 'tiled', budgets[0]);
  const add = (impl: string, r: { seconds: number; outs: Float32Array[] }, diff?: number) =>
    rows.push({ shape: s.name, impl, seconds: r.seconds, tflops: flops(s) / r.seconds / 1e12, ...(tSdpa ? { vsTorch: tSdpa / r.seconds } : {}), ...(diff !== undefined ? { maxRelDiff: diff } : {}) });
  add('vwlmm tiled', tiled);
  for (const mib of budgets) {
    const g = ours(s, 'gemm', mib);
    add(`vwlmm gemm (ws ${mib} MiB)`, g, Math.max(...g.outs.map((x, i) => maxRel(x, tiled.outs[i]))));
  }
}
console.log('| shape | impl | ms (fwd+bwd) | TFLOP/s | vs SDPA | max rel diff from tiled (O, dQ, dK, dV) |');
console.log('|---|---|---:|---:|---:|---:|');
for (const r of rows)
  console.log(`| ${r.shape} | ${r.impl} | ${(r.seconds * 1e3).toFixed(2)} | ${r.tflops.toFixed(0)} | ${r.vsTorch?.toFixed(2) ?? ''}x | ${r.maxRelDiff?.toExponential(1) ?? ''} |`);
const json = JSON.stringify({ shapes, rows });
console.log(json);
const outFile = arg('out', '');
if (outFile) fs.writeFileSync(outFile, json);
