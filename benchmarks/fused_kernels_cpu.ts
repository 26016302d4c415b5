// CPU benchmark of the fused vocabulary kernels (forward + backward in one call) against
//   - the GEMM ceiling: the same sequence of OpenBLAS sgemm calls the fused kernel issues, without its
//     row passes (what a perfect fusion could reach on this machine),
//   - the fused kernel with frozen heads ('fused-frozen-head': gradOutputs without the weight gradients, as
//     F.* asks in LoRA fine-tuning: no [V, d] dW buffer and one GEMM less per side and chunk),
//   - a naive materialised implementation of the same math (full [N, V] logits/probabilities/gradients),
//   - PyTorch eager and torch.compile of the official formulation (benchmarks/torch_reference.py), when
//     python3 with torch is available (said so otherwise).
// Every implementation runs in its own child process, so peak-RSS growth (peak RSS minus RSS once the
// inputs exist) is its own. Prints a table, then one JSON line; --out FILE also writes the JSON.
//
//   npx tsx benchmarks/fused_kernels_cpu.ts [--N 576,2304] [--d 1024] [--V 32000] [--reps 3] [--no-torch]
//     [--op ce] [--impl fused,fused-frozen-head] (default: both ops, every implementation)
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import { backendInfo, fused, scope, Tensor } from '../src';
import { cpu, NativeBuffer } from '../src/native';
import { arg, declareFlags, medianSeconds, uniform } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['op', 'impl', 'N', 'd', 'V', 'reps', 'out'], ['child', 'no-torch']);

type Op = 'kl' | 'ce';
type Impl = 'fused' | 'fused-frozen-head' | 'gemm-ceiling' | 'naive';
const IMPLS: Impl[] = ['gemm-ceiling', 'fused', 'fused-frozen-head', 'naive'];
interface Result {
  op: Op; impl: string; N: number; d: number; V: number;
  seconds: number; gflops: number; peakRssGrowthMiB: number; workspaceMiB?: number; loss?: number; note?: string;
}

const args = process.argv.slice(2);

function rssMiB(): number {
  return process.memoryUsage().rss / 2 ** 20;
}
function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}
const gemmCount = (op: Op, impl = '') => (op === 'kl' ? 6 : 3) - (impl === 'fused-frozen-head' ? (op === 'kl' ? 2 : 1) : 0);

// ------------------------------------------------------------------ child: one measurement
function runChild(op: Op, impl: Impl, N: number, d: number, V: number, reps: number): Result {
  const h = Tensor.fromArray(uniform(N * d, 1), [N, d]);
  const wLm = Tensor.fromArray(uniform(V * d, 2), [V, d]);
  const x = Tensor.fromArray(uniform(N * d, 3), [N, d]);
  const wVm = Tensor.fromArray(uniform(V * d, 4), [V, d]);
  const t = Tensor.fromArray(new Int32Array(N).map((_, i) => (i * 7919) % V), [N]);
  const rss0 = rssMiB();
  let loss = 0, workspace = 0;
  const step = (): void => {
    if (impl === 'fused' || impl === 'fused-frozen-head') {
      const frozen = impl === 'fused-frozen-head';
      scope(() => {
        const r = op === 'kl'
          ? fused.visualWordKL(h, wLm, x, wVm, frozen ? { gradOutputs: { dwLm: false, dwVm: false } } : {})
          : fused.linearCrossEntropy(h, wLm, t, frozen ? { gradOutputs: { dw: false } } : {});
        loss = r.loss;
        workspace = r.workspaceBytes;
      });
    } else if (impl === 'gemm-ceiling') {
      gemmCeiling(op, N, d, V, h, wLm, x, wVm);
    } else {
      loss = op === 'kl' ? naiveKL(N, d, V, h, wLm, x, wVm) : naiveCE(N, d, V, h, wLm, t);
    }
  };
  const seconds = medianSeconds(step, reps);
  return {
    op, impl, N, d, V, seconds, gflops: (gemmCount(op, impl) * 2 * N * d * V) / seconds / 1e9,
    peakRssGrowthMiB: peakRssMiB() - rss0, workspaceMiB: workspace / 2 ** 20, loss: impl === 'gemm-ceiling' ? undefined : loss,
  };
}

// The fused kernel's GEMMs (same chunking as the kernel's default 64 MiB budget), nothing else.
function gemmCeiling(op: Op, N: number, d: number, V: number, h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor): void {
  const a = cpu();
  const bufs = op === 'kl' ? 2 : 1;
  const maxRows = Math.max(1, Math.floor((64 * 2 ** 20) / (V * 4 * bufs)));
  const chunks = Math.ceil(N / maxRows), rows = Math.ceil(N / chunks);
  const z = new a.NativeBuffer(rows * V * 4), dH = new a.NativeBuffer(rows * d * 4), dW = new a.NativeBuffer(V * d * 4);
  const sides: [Tensor, Tensor][] = op === 'kl' ? [[h, wLm], [x, wVm]] : [[h, wLm]];
  for (let c0 = 0; c0 < N; c0 += rows) {
    const nc = Math.min(rows, N - c0);
    for (const [inp, w] of sides) {
      // chunk rows of inp are a row offset into its buffer: emulate with a copy-free full-size call on nc rows
      a.sgemm!(false, true, nc, V, d, inp.buffer, w.buffer, z);     // logits
    }
    for (const [inp, w] of sides) {
      a.sgemm!(false, false, nc, d, V, z, w.buffer, dH);              // d(input) = G W
      a.sgemm!(true, false, V, d, nc, z, inp.buffer, dW);             // dW = G^T input
    }
  }
  [z, dH, dW].forEach((b) => b.dispose());
}

// Naive: materialise [N, V] logits, probabilities and gradients (as an eager framework would), GEMMs by sgemm.
function naiveKL(N: number, d: number, V: number, h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor): number {
  const a = cpu();
  const A = new a.NativeBuffer(N * V * 4), B = new a.NativeBuffer(N * V * 4);
  a.sgemm!(false, true, N, V, d, x.buffer, wVm.buffer, A);
  a.sgemm!(false, true, N, V, d, h.buffer, wLm.buffer, B);
  const za = new Float32Array(N * V), zb = new Float32Array(N * V);
  A.read(za);
  B.read(zb);
  const logp = new Float32Array(N * V), logq = new Float32Array(N * V), ga = new Float32Array(N * V), gb = new Float32Array(N * V);
  let total = 0;
  for (let i = 0; i < N; i++) {
    const o = i * V;
    const lseA = lse(za, o, V), lseB = lse(zb, o, V);
    let kl = 0;
    for (let v = 0; v < V; v++) {
      logp[o + v] = za[o + v] - lseA;
      logq[o + v] = zb[o + v] - lseB;
      kl += Math.exp(logp[o + v]) * (logp[o + v] - logq[o + v]);
    }
    total += kl;
    for (let v = 0; v < V; v++) {
      const p = Math.exp(logp[o + v]), q = Math.exp(logq[o + v]);
      ga[o + v] = (p * (logp[o + v] - logq[o + v] - kl)) / N;
      gb[o + v] = (q - p) / N;
    }
  }
  A.write(ga);
  B.write(gb);
  const out = [N * d, V * d, N * d, V * d].map((n) => new a.NativeBuffer(n * 4));
  a.sgemm!(false, false, N, d, V, B, wLm.buffer, out[0]);
  a.sgemm!(true, false, V, d, N, B, h.buffer, out[1]);
  a.sgemm!(false, false, N, d, V, A, wVm.buffer, out[2]);
  a.sgemm!(true, false, V, d, N, A, x.buffer, out[3]);
  [A, B, ...out].forEach((b: NativeBuffer) => b.dispose());
  return total / N;
}

function naiveCE(N: number, d: number, V: number, h: Tensor, w: Tensor, t: Tensor): number {
  const a = cpu();
  const Z = new a.NativeBuffer(N * V * 4);
  a.sgemm!(false, true, N, V, d, h.buffer, w.buffer, Z);
  const z = new Float32Array(N * V), g = new Float32Array(N * V);
  Z.read(z);
  const tg = t.toArray();
  let total = 0;
  for (let i = 0; i < N; i++) {
    const o = i * V, l = lse(z, o, V);
    total += l - z[o + tg[i]];
    for (let v = 0; v < V; v++) g[o + v] = Math.exp(z[o + v] - l) / N;
    g[o + tg[i]] -= 1 / N;
  }
  Z.write(g);
  const dh = new a.NativeBuffer(N * d * 4), dw = new a.NativeBuffer(V * d * 4);
  a.sgemm!(false, false, N, d, V, Z, w.buffer, dh);
  a.sgemm!(true, false, V, d, N, Z, h.buffer, dw);
  [Z, dh, dw].forEach((b) => b.dispose());
  return total / N;
}

function lse(z: Float32Array, o: number, V: number): number {
  let m = -Infinity;
  for (let v = 0; v < V; v++) m = Math.max(m, z[o + v]);
  let s = 0;
  for (let v = 0; v < V; v++) s += Math.exp(z[o + v] - m);
  return m + Math.log(s);
}

// ------------------------------------------------------------------ parent: orchestrate and report
function child(cmd: string, argv: string[], timeoutMs = 900_000): unknown {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 });
  const line = (r.stdout || '').trim().split('\n').pop() || '';
  try {
    return JSON.parse(line);
  } catch {
    return { error: `${cmd} ${argv.join(' ')} failed: ${(r.stderr || r.error?.message || '').slice(-400)}` };
  }
}

function main(): void {
  if (args.includes('--child')) {
    const r = runChild(arg('op', 'kl') as Op, arg('impl', 'fused') as Impl, +arg('N', '576'), +arg('d', '1024'), +arg('V', '32000'), +arg('reps', '3'));
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const Ns = arg('N', '576,2304').split(',').map(Number), d = +arg('d', '1024'), V = +arg('V', '32000'), reps = arg('reps', '3');
  const impls = arg('impl', IMPLS.join(',')).split(',') as Impl[];
  for (const i of impls) if (!IMPLS.includes(i)) throw new TypeError(`--impl: expected some of ${IMPLS.join(', ')} but received '${i}'`);
  const withTorch = !args.includes('--no-torch');
  const torchOk = withTorch && spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;
  const results: (Result | { error: string })[] = [];
  for (const N of Ns) {
    for (const op of arg('op', 'kl,ce').split(',') as Op[]) {
      for (const impl of impls) {
        const r = child(process.execPath, ['--import', 'tsx', __filename, '--child', '--op', op, '--impl', impl, '--N', `${N}`, '--d', `${d}`, '--V', `${V}`, '--reps', reps]) as Result;
        results.push(r);
        process.stderr.write(`  ${op} ${impl} N=${N}: ${'error' in r ? r.error : r.seconds.toFixed(3) + ' s'}\n`);
      }
      if (torchOk) {
        for (const mode of ['eager', 'compile']) {
          const r = child('python3', ['benchmarks/torch_reference.py', '--op', op, '--N', `${N}`, '--d', `${d}`, '--V', `${V}`, '--mode', mode, '--reps', reps]) as Result & { error?: string };
          if (!r.error) Object.assign(r, { op, N, d, V, gflops: (gemmCount(op) * 2 * N * d * V) / r.seconds / 1e9 });
          results.push(r);
          process.stderr.write(`  ${op} torch ${mode} N=${N}: ${r.error ?? r.seconds.toFixed(3) + ' s'}\n`);
        }
      }
    }
  }
  const info = backendInfo().cpu;
  const meta = {
    date: new Date().toISOString(), machine: `${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    gemm: info.gemm, threads: info.threads, torch: torchOk ? 'python3 torch' : withTorch ? 'not available (python3 -c "import torch" failed)' : 'skipped (--no-torch)',
    command: `npx tsx benchmarks/fused_kernels_cpu.ts ${args.join(' ')}`.trim(),
  };
  // Table: each row with its ratio to the fused kernel and to the GEMM ceiling of the same op and N (none for
  // fused-frozen-head, which runs fewer GEMMs than the ceiling measures).
  console.log(`\n${meta.machine}; ${meta.gemm}; torch: ${meta.torch}`);
  console.log('| op | N | implementation | seconds | GFLOP/s | vs fused (time) | % of GEMM ceiling | peak RSS growth MiB | workspace MiB |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    if ('error' in r && r.error) {
      console.log(`| | | error: ${r.error.replace(/\n/g, ' ').slice(0, 200)} | | | | | | |`);
      continue;
    }
    const x = r as Result;
    const same = (impl: string) => results.find((o) => !('error' in o && o.error) && (o as Result).op === x.op && (o as Result).N === x.N && (o as Result).impl === impl) as Result | undefined;
    const fused = same('fused'), ceil = same('gemm-ceiling');
    console.log(`| ${x.op} | ${x.N} | ${x.impl} | ${x.seconds.toFixed(3)} | ${x.gflops.toFixed(1)} | ${fused ? (x.seconds / fused.seconds).toFixed(2) + 'x' : ''} | ${ceil && x.impl !== 'fused-frozen-head' ? ((100 * ceil.seconds) / x.seconds).toFixed(0) + '%' : ''} | ${x.peakRssGrowthMiB.toFixed(0)} | ${x.workspaceMiB !== undefined && x.impl.startsWith('fused') ? x.workspaceMiB.toFixed(1) : ''} |`);
  }
  const json = JSON.stringify({ meta, results });
  console.log(json);
  const out = arg('out', '');
  if (out) fs.writeFileSync(out, json + '\n');
}

main();
