// CPU GEMM benchmark: the GEMM in use (OpenBLAS where the build found it) against the built-in packed GEMM
// (native/cpu/gemm_builtin.cpp, the one users without OpenBLAS get), side by side in one process, on the
// shapes the project runs:
//   - fused vocabulary kernels (benchmarks/RESULTS.md, d = 1024, V = 32000), per chunk of nc rows: the
//     logits [nc, d] x [V, d]^T (NT), d(input) = G W (NN) and dW += G^T input (TN, beta = 1); nc = 192 and
//     256 are the KL's chunks at N = 576 / 2304, 288 and 461 the cross-entropy's (64 MiB workspace);
//   - the demo (src/demo/recipe.ts): vision tower d 64, FFN 256, 32 images x 26 tokens = 832 rows, patch
//     embedding 675 -> 64 on 800 patches; LLM d 64, FFN 128, vocab 72, 32 sequences x ~91 tokens = 2912
//     rows; each linear layer's forward (x W^T, NT), dX (dY W, NN) and dW (dY^T x, TN);
//   - decoder: the engine benchmark's decoder layers (--set decoder);
//   - answer: the d512 answering model's x W^T at prefill and at decode steps of 16, 4 and 1 rows (--set answer).
// The two implementations alternate within each repetition, so background load hits both alike. GFLOP/s
// from the median wall time; "cpu ratio" compares process CPU time per call (user + system, all threads),
// which a busy machine disturbs less than wall time. Prints a table, then one JSON line.
//
//   npx tsx benchmarks/gemm_cpu.ts [--set fused,demo] [--reps 5] [--min-ms 50] [--out FILE]
// (VWLMM_NUM_THREADS=1 compares single-threaded kernels: OpenBLAS runs single-threaded in the pool's tiles.)
// The first column is the GEMM in use, which is not always OpenBLAS: a build with OpenBLAS uses the built-in GEMM
// when VWLMM_GEMM=builtin, or when OpenBLAS chose kernels without AVX2+FMA on this CPU (native/cpu/gemm.cpp; the
// gemm string then reads "builtin (...; linked: openblas ...)"), and both columns are the built-in GEMM. For a real
// OpenBLAS comparison run it as
//   VWLMM_GEMM=openblas npx tsx benchmarks/gemm_cpu.ts ...
// The table's headers name what ran; the JSON keeps the keys openblas (the GEMM in use) / builtin, with meta.inUse.
import * as fs from 'fs';
import * as os from 'os';
import { backendInfo } from '../src';
import { cpu, NativeBuffer } from '../src/native';
import { arg, declareFlags, uniform } from './support';

interface Shape { set: string; name: string; ta: boolean; tb: boolean; M: number; N: number; K: number; beta: number }
interface Timing { wallSeconds: number; cpuSeconds: number; gflops: number }
interface Row extends Shape { openblas: Timing; builtin: Timing; ratio: number; cpuRatio: number; maxRelDiff: number }

const d = 1024, V = 32000;
function shapes(): Shape[] {
  const list: Shape[] = [];
  for (const nc of [192, 256, 288, 461]) {
    list.push({ set: 'fused', name: `logits nc=${nc}`, ta: false, tb: true, M: nc, N: V, K: d, beta: 0 });
    list.push({ set: 'fused', name: `dInput nc=${nc}`, ta: false, tb: false, M: nc, N: d, K: V, beta: 0 });
    list.push({ set: 'fused', name: `dW nc=${nc}`, ta: true, tb: false, M: V, N: d, K: nc, beta: 1 });
  }
  const linear = (name: string, rows: number, inF: number, outF: number): void => {
    list.push({ set: 'demo', name: `${name} fwd`, ta: false, tb: true, M: rows, N: outF, K: inF, beta: 0 });
    list.push({ set: 'demo', name: `${name} dX`, ta: false, tb: false, M: rows, N: inF, K: outF, beta: 0 });
    list.push({ set: 'demo', name: `${name} dW`, ta: true, tb: false, M: outF, N: inF, K: rows, beta: 1 });
  };
  linear('vision patch-embed', 800, 675, 64);
  linear('vision qkv/out', 832, 64, 64);
  linear('vision fc1', 832, 64, 256);
  linear('vision fc2', 832, 256, 64);
  linear('llm qkv/out', 2912, 64, 64);
  linear('llm gate/up', 2912, 64, 128);
  linear('llm down', 2912, 128, 64);
  linear('llm lm_head', 2912, 64, 72);
  // the engine benchmark's decoder (benchmarks/engine_cpu.ts): 8 x 256 tokens, d 256, FFN 688; q/k/v and
  // gate/up also as one GEMM each (the concatenated weights)
  for (const [name, inF, outF] of [['q/k/v/o', 256, 256], ['qkv fused', 256, 768], ['gate/up', 256, 688], ['gate+up fused', 256, 1376], ['down', 688, 256]] as const) {
    for (const l of [{ name: `${name} fwd`, ta: false, tb: true, M: 2048, N: outF, K: inF, beta: 0 }, { name: `${name} dX`, ta: false, tb: false, M: 2048, N: inF, K: outF, beta: 0 }, { name: `${name} dW`, ta: true, tb: false, M: outF, N: inF, K: 2048, beta: 1 }]) {
      list.push({ set: 'decoder', ...l });
    }
  }
  // answering with the d512 model of benchmarks/answer_throughput.ts (d 512, FFN 1376, V 32000): the prefill of one
  // ~250-token prompt (x W^T) and decode steps of 1 and 16 sequences (M = 1 and 4 run the few-rows path)
  for (const [name, inF, outF] of [['q/k/v/o', 512, 512], ['gate/up', 512, 1376], ['down', 1376, 512], ['lm_head', 512, 32000]] as const) {
    for (const M of name === 'lm_head' ? [1, 16] : [250, 16, 4, 1]) list.push({ set: 'answer', name: `${name} M=${M}`, ta: false, tb: true, M, N: outF, K: inF, beta: 0 });
  }
  return list;
}

function measure(s: Shape, reps: number, minMs: number): Row {
  const a = cpu();
  const buf = (n: number, seed: number): NativeBuffer => {
    const b = new a.NativeBuffer(n * 4);
    b.write(uniform(n, seed));
    return b;
  };
  const A = buf(s.M * s.K, 1), B = buf(s.K * s.N, 2), C0 = buf(s.M * s.N, 3);
  const Cs = { openblas: buf(s.M * s.N, 3), builtin: buf(s.M * s.N, 3) };
  const call = (impl: 'openblas' | 'builtin'): void =>
    a.sgemm!(s.ta, s.tb, s.M, s.N, s.K, A, B, Cs[impl], { builtin: impl === 'builtin', beta: s.beta });
  // calls per sample so that one sample takes >= minMs (small demo GEMMs take well under a millisecond)
  const t0 = process.hrtime.bigint();
  call('openblas');
  call('builtin');
  const once = Number(process.hrtime.bigint() - t0) / 2e6;
  const inner = Math.max(1, Math.ceil(minMs / Math.max(once, 1e-3)));
  const samples = { openblas: [] as [number, number][], builtin: [] as [number, number][] };
  for (let r = 0; r < reps; r++) {
    for (const impl of ['openblas', 'builtin'] as const) {
      const c0 = process.cpuUsage(), w0 = process.hrtime.bigint();
      for (let i = 0; i < inner; i++) call(impl);
      const wall = Number(process.hrtime.bigint() - w0) / 1e9 / inner, c = process.cpuUsage(c0);
      samples[impl].push([wall, (c.user + c.system) / 1e6 / inner]);
    }
  }
  // the two results agree to float32 rounding (with beta = 1 each C saw its own number of calls: recompute once)
  for (const impl of ['openblas', 'builtin'] as const) {
    const z = new Float32Array(s.M * s.N);
    C0.read(z);
    Cs[impl].write(z);
    call(impl);
  }
  const x = new Float32Array(s.M * s.N), y = new Float32Array(s.M * s.N);
  Cs.openblas.read(x);
  Cs.builtin.read(y);
  let diff = 0, scale = 0;
  for (let i = 0; i < x.length; i++) {
    diff = Math.max(diff, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(x[i]));
  }
  [A, B, C0, Cs.openblas, Cs.builtin].forEach((b) => b.dispose());
  const flops = 2 * s.M * s.N * s.K;
  const med = (v: number[]): number => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
  const timing = (smp: [number, number][]): Timing => {
    const wall = med(smp.map((t) => t[0]));
    return { wallSeconds: wall, cpuSeconds: med(smp.map((t) => t[1])), gflops: flops / wall / 1e9 };
  };
  const o = timing(samples.openblas), b = timing(samples.builtin);
  return { ...s, openblas: o, builtin: b, ratio: b.wallSeconds / o.wallSeconds, cpuRatio: b.cpuSeconds / o.cpuSeconds, maxRelDiff: scale > 0 ? diff / scale : diff };
}

function main(): void {
  declareFlags(['set', 'reps', 'min-ms', 'out']);
  const sets = arg('set', 'fused,demo').split(','), reps = Math.max(1, +arg('reps', '5')), minMs = +arg('min-ms', '50');
  const info = backendInfo().cpu;
  const meta = {
    date: new Date().toISOString(), machine: `${os.cpus()[0]?.model ?? 'unknown cpu'}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    gemm: info.gemm, threads: info.threads, simd: info.simd, loadAverage: os.loadavg().map((l) => +l.toFixed(2)),
    command: `npx tsx benchmarks/gemm_cpu.ts ${process.argv.slice(2).join(' ')}`.trim(),
  };
  const gemm = String(info.gemm), openblasInUse = gemm.startsWith('openblas');
  // the first column's GEMM, as it ran
  const inUse = openblasInUse ? 'OpenBLAS' : 'built-in (in use)';
  if (!openblasInUse && gemm.includes('linked: openblas'))
    console.log(`note: OpenBLAS is linked but not used here (gemm = ${gemm}): both columns are the built-in GEMM; VWLMM_GEMM=openblas forces OpenBLAS for a real comparison`);
  else if (!openblasInUse) console.log(`note: this build has no OpenBLAS (gemm = ${gemm}): both columns are the built-in GEMM`);
  const rows: Row[] = [];
  console.log(`${meta.machine}; gemm in use: ${meta.gemm}; ${meta.threads} threads; simd ${meta.simd}; load average ${meta.loadAverage.join(' ')}`);
  console.log(`| set | GEMM | op | M x N x K | ${inUse} GFLOP/s | built-in GFLOP/s | time built-in / ${inUse} | cpu-time ratio |`);
  console.log('|---|---|---|---|---|---|---|---|');
  for (const s of shapes().filter((x) => sets.includes(x.set))) {
    const r = measure(s, reps, minMs);
    rows.push(r);
    if (r.maxRelDiff > 1e-3) throw new Error(`${s.name}: ${inUse} and the built-in GEMM disagree (max diff ${r.maxRelDiff} of max |C|)`);
    const op = `${s.ta ? 'T' : 'N'}${s.tb ? 'T' : 'N'}${s.beta ? ' +=' : ''}`;
    console.log(`| ${s.set} | ${s.name} | ${op} | ${s.M} x ${s.N} x ${s.K} | ${r.openblas.gflops.toFixed(1)} | ${r.builtin.gflops.toFixed(1)} | ${r.ratio.toFixed(2)}x | ${r.cpuRatio.toFixed(2)}x |`);
  }
  const geo = (v: number[]): number => Math.exp(v.reduce((p, q) => p + Math.log(q), 0) / Math.max(v.length, 1));
  for (const set of sets) {
    const rs = rows.filter((r) => r.set === set);
    if (rs.length) console.log(`${set}: geometric mean time ratio built-in / ${inUse} ${geo(rs.map((r) => r.ratio)).toFixed(2)}x (worst ${Math.max(...rs.map((r) => r.ratio)).toFixed(2)}x), cpu-time ratio ${geo(rs.map((r) => r.cpuRatio)).toFixed(2)}x`);
  }
  const json = JSON.stringify({ meta: { ...meta, inUse: openblasInUse ? 'openblas' : 'builtin' }, results: rows });
  console.log(json);
  const out = arg('out', '');
  if (out) fs.writeFileSync(out, json + '\n');
}

main();
