// CPU attention, forward and backward, at one shape (default: the demo's question stage, B 16 x T 304, 8 heads of
// Dh 8, causal, key padding): the median ms of each over --reps calls, on VWLMM_NUM_THREADS threads. One JSON line.
//
//   npx tsx benchmarks/attention_cpu.ts [--B 16] [--T 304] [--H 8] [--Dh 8] [--causal 1] [--reps 40]
import { Tensor } from '../src';
import { callOp } from '../src/call_op';
import { Generator } from '../src/random';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['B', 'T', 'H', 'Dh', 'causal', 'reps']);

const B = numArg('B', 16, { integer: true, min: 1 }), T = numArg('T', 304, { integer: true, min: 1 }), H = numArg('H', 8, { integer: true, min: 1 }), Dh = numArg('Dh', 8, { integer: true, min: 1 });
const causal = arg('causal', '1') === '1', reps = numArg('reps', 40, { integer: true, min: 1 });
const gen = new Generator(0), n = B * T * H * Dh, shape = [B, T, H, Dh];
const rand = (s: number) => Tensor.fromArray(Float32Array.from(gen.normals(n), (v) => s * v), shape);
const q = rand(1), k = rand(1), v = rand(1), dO = rand(0.1);
// each row's keys: a random length of padding at the end (up to 30%), as a batch of conversations has
const mask = new Int32Array(B * T);
for (let b = 0; b < B; b++) mask.fill(1, b * T, b * T + T - gen.int(Math.floor(0.3 * T) + 1));
const keyMask = Tensor.fromArray(mask, [B, T]);
const o = Tensor.empty(shape), lse = Tensor.empty([B, H, T]), gq = Tensor.empty(shape), gk = Tensor.empty(shape), gv = Tensor.empty(shape);
const ints = [B, T, T, H, H, Dh, causal ? 1 : 0, 1], floats = [1 / Math.sqrt(Dh)];
const fwd = () => callOp('attention_forward', 'cpu', [q, k, v, keyMask], [o, lse], ints, floats);
const bwd = () => callOp('attention_backward', 'cpu', [dO, q, k, v, o, lse, keyMask], [gq, gk, gv], ints, floats);
for (let i = 0; i < 5; i++) fwd(), bwd();
const median = (f: () => void) => {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    f();
    ts.push(performance.now() - t);
  }
  return ts.sort((a, b) => a - b)[Math.floor(reps / 2)];
};
console.log(JSON.stringify({ B, T, H, Dh, causal, threads: Number(process.env.VWLMM_NUM_THREADS ?? 0) || 'default', forwardMs: +median(fwd).toFixed(3), backwardMs: +median(bwd).toFixed(3) }));
