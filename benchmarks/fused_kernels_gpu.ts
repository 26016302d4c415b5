// GPU benchmark of the fused vocabulary kernels (forward + backward in one call) against PyTorch eager
// and torch.compile of the official formulation on the same GPU (benchmarks/torch_reference.py
// --device cuda), bf16 inputs with fp32 softmax/loss math, as a user of HF/LLaVA would run it.
// Memory: ours = the kernel's workspace + its outputs (the gradients, fp32 for weights), counted exactly
// from the allocations; torch = torch.cuda.max_memory_allocated() minus the inputs.
// Prints a table, then one JSON line; --out FILE also writes the JSON.
//
//   npx tsx benchmarks/fused_kernels_gpu.ts [--N 9216] [--d 4096] [--V 32000] [--reps 5] [--dtypes bfloat16,float32]
//       [--workspace-mib 64,256] [--chunk-rows 0] [--torch-dtypes bfloat16] [--no-torch]
// --chunk-rows: the ops' chunkRows, each with each workspace (0: the op's own; in bf16 on CUDA the losses' logit
// chunks, the rest of the budget going to gradient groups: the impl column shows chunk / group rows).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { backendInfo, cudaAvailable, fused, memoryStats, scope, Tensor } from '../src';
import type { DType } from '../src';
import { arg, declareFlags, medianSeconds, numArg, uniform } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['N', 'd', 'V', 'reps', 'dtypes', 'workspace-mib', 'chunk-rows', 'torch-dtypes', 'out'], ['no-torch']);

type Op = 'kl' | 'ce';
interface Result {
  op: Op; impl: string; dtype: string; N: number; d: number; V: number;
  seconds: number; tflops: number; memMiB: number; workspaceMiB?: number; loss?: number; note?: string;
}

const args = process.argv.slice(2);
const N = numArg('N', 9216, { integer: true, min: 1 }), d = numArg('d', 4096, { integer: true, min: 1 }), V = numArg('V', 32000, { integer: true, min: 1 });
const reps = numArg('reps', 5, { integer: true, min: 1 });
const dtypes = arg('dtypes', 'bfloat16,float32').split(',') as DType[];
const workspaces = arg('workspace-mib', '64,256').split(',').map(Number);
const chunkRowsList = arg('chunk-rows', '0').split(',').map(Number);
// PyTorch (eager and compile) for these dtypes only: compiling costs ~1 min per case of a short GPU lease
const torchDtypes = arg('torch-dtypes', 'bfloat16').split(',');
const gemms = (op: Op) => (op === 'kl' ? 6 : 3);

interface Inputs { h: Tensor; wLm: Tensor; x: Tensor; wVm: Tensor; t: Tensor }
// Drawn once per dtype (300M values: seconds in JavaScript), shared by every configuration.
function makeInputs(dtype: DType): Inputs {
  const opt = { device: 'cuda' as const, dtype };
  return {
    h: Tensor.fromArray(uniform(N * d, 1), [N, d], opt),
    wLm: Tensor.fromArray(uniform(V * d, 2), [V, d], opt),
    x: Tensor.fromArray(uniform(N * d, 3), [N, d], opt),
    wVm: Tensor.fromArray(uniform(V * d, 4), [V, d], opt),
    t: Tensor.fromArray(new Int32Array(N).map((_, i) => (i * 7919) % V), [N], { device: 'cuda' }),
  };
}

function ours(op: Op, dtype: DType, { h, wLm, x, wVm, t }: Inputs, workspaceMiB: number, chunkRows: number): Result {
  const base = memoryStats().cuda!.liveBytes;
  let loss = 0, workspace = 0, outBytes = 0, plan = '';
  const workspaceBudget = workspaceMiB * 2 ** 20;
  // the loss is read back to the host, which waits for the GPU: each step's time is complete
  const run = (measure: boolean) => scope(() => {
    const o = { workspaceBudget, chunkRows };
    const r = op === 'kl' ? fused.visualWordKL(h, wLm, x, wVm, o) : fused.linearCrossEntropy(h, wLm, t, o);
    loss = r.loss;
    workspace = r.workspaceBytes;
    plan = `${r.chunkRows}/${r.groupRows}`;
    if (measure) outBytes = memoryStats().cuda!.liveBytes - base;
  });
  run(true); // the outputs' size, outside the timed calls
  const seconds = medianSeconds(() => run(false), reps);
  return {
    op, impl: `vwlmm ws ${workspaceMiB} MiB, rows ${plan}`, dtype, N, d, V, seconds, tflops: (gemms(op) * 2 * N * d * V) / seconds / 1e12,
    memMiB: (outBytes + workspace) / 2 ** 20, workspaceMiB: workspace / 2 ** 20, loss,
  };
}

function torch(op: Op, dtype: DType, mode: 'eager' | 'compile'): Result {
  const r = spawnSync('python3', ['benchmarks/torch_reference.py', '--op', op, '--N', `${N}`, '--d', `${d}`, '--V', `${V}`, '--mode', mode,
    '--reps', `${reps}`, '--device', 'cuda', '--dtype', dtype], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const base = { op, impl: `torch ${mode}`, dtype, N, d, V };
  const line = (r.stdout || '').trim().split('\n').pop() ?? '';
  try {
    const j = JSON.parse(line);
    return { ...base, seconds: j.seconds, tflops: (gemms(op) * 2 * N * d * V) / j.seconds / 1e12, memMiB: j.peakMemGrowthMiB, loss: j.loss };
  } catch {
    return { ...base, seconds: NaN, tflops: NaN, memMiB: NaN, note: `failed: ${(r.stderr || r.error?.message || '').slice(-400)}` };
  }
}

if (!cudaAvailable()) {
  console.error(`fused_kernels_gpu: no usable CUDA device (${JSON.stringify(backendInfo().cuda)})`);
  process.exit(1);
}
const results: Result[] = [];
for (const op of ['kl', 'ce'] as Op[]) {
  for (const dtype of dtypes) {
    const inputs = makeInputs(dtype);
    for (const ws of workspaces) for (const c of chunkRowsList) results.push(ours(op, dtype, inputs, ws, c));
    Object.values(inputs).forEach((a) => a.dispose());
    if (!args.includes('--no-torch') && torchDtypes.includes(dtype)) for (const mode of ['eager', 'compile'] as const) results.push(torch(op, dtype, mode));
  }
}
const fmt = (x: number, p = 2) => (Number.isFinite(x) ? x.toFixed(p) : 'n/a');
console.log(`device: ${JSON.stringify(backendInfo().cuda)}`);
console.log(`N ${N}, d ${d}, V ${V}, median of ${reps}`);
console.log('op | dtype    | impl                          |      ms | TFLOP/s | mem MiB | vs eager | vs compile | loss');
for (const r of results) {
  const ref = (mode: string) => results.find((q) => q.op === r.op && q.dtype === r.dtype && q.impl === `torch ${mode}`);
  const ratio = (q?: Result) => (q && Number.isFinite(q.seconds) ? `${fmt(q.seconds / r.seconds)}x` : 'n/a');
  console.log(`${r.op} | ${r.dtype.padEnd(8)} | ${r.impl.padEnd(29)} | ${fmt(r.seconds * 1e3, 1).padStart(7)} | ${fmt(r.tflops, 1).padStart(7)} | ${fmt(r.memMiB, 0).padStart(7)} | ${ratio(ref('eager')).padStart(8)} | ${ratio(ref('compile')).padStart(10)} | ${r.loss ?? ''}${r.note ? ' ' + r.note : ''}`);
}
const json = JSON.stringify({ device: backendInfo().cuda, N, d, V, reps, results });
console.log(json);
const out = arg('out', '');
if (out) fs.writeFileSync(out, json + '\n');
