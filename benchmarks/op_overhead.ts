// The host cost of one op call, apart from its kernel: tiny tensors (8 values), so what is timed is the JavaScript
// layer (argument checks, Tensor objects, scopes, autograd records) and the binding (N-API marshalling, NativeBuffer
// objects). On CUDA in async mode that is what a step's launches cost the host (the kernels run behind it), and the
// demo model's steps are host-bound there (RESULTS.md, "Host waits per step"). Prints microseconds a call, median of
// --rounds rounds of --calls calls each. On CUDA each round ends with a synchronisation (counted in its time), so the
// kernels cannot fall behind the launches unmeasured; in sync mode (VWLMM_CUDA_ASYNC=0) every op waits for its kernel.
//   npx tsx benchmarks/op_overhead.ts [--device cpu|cuda] [--calls 100000] [--rounds 5]
import { callOp, F, noGrad, scope, synchronize, Tensor } from '../src';
import { addonFor } from '../src/native';
import { arg, declareFlags, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['calls', 'rounds', 'device']);

const calls = numArg('calls', 100000, { integer: true, min: 1 }), rounds = numArg('rounds', 5, { integer: true, min: 1 });
const device = arg('device', 'cpu');
if (device !== 'cpu' && device !== 'cuda') throw new Error(`op_overhead: --device must be cpu or cuda, not '${device}'`);
const addon = addonFor(device, 'op_overhead');
const on = { device } as const;
const a = Tensor.fromArray(Float32Array.from({ length: 8 }, (_, i) => i / 8), [1, 8], on);
const b = Tensor.fromArray(Float32Array.from({ length: 8 }, (_, i) => 1 - i / 8), [1, 8], on);
const w = Tensor.fromArray(Float32Array.from({ length: 64 }, (_, i) => ((i * 7) % 13) / 13 - 0.5), [8, 8], on);
const g = Tensor.fromArray(new Float32Array(8).fill(1), [8], on);
const out = Tensor.empty([1, 8], on);
const [ab, bb, ob] = [a.buffer, b.buffer, out.buffer];
const aGrad = Tensor.fromArray(a.toArray() as Float32Array, [1, 8], on);
const wGrad = Tensor.fromArray(w.toArray() as Float32Array, [8, 8], on);
aGrad.requiresGrad = true;
wGrad.requiresGrad = true;

const cases: [string, () => void][] = [
  ['NativeBuffer: new + dispose', () => new addon.NativeBuffer(32).dispose()],
  ['Tensor.empty + dispose', () => Tensor.empty([1, 8], on).dispose()],
  ['addon.callOp axpby (the binding alone)', () => addon.callOp('axpby', [ab, bb], ['float32', 'float32'], [ob], ['float32'], [8], [1, 1])],
  ['callOp axpby (checks + binding)', () => callOp('axpby', device, [a, b], [out], [8], [1, 1])],
  ['F.add, no grad, in a scope', () => noGrad(() => scope(() => { F.add(a, b); }))],
  ['F.linear, no grad, in a scope', () => noGrad(() => scope(() => { F.linear(a, w); }))],
  ['F.rmsNorm, no grad, in a scope', () => noGrad(() => scope(() => { F.rmsNorm(a, g, 1e-6); }))],
  ['F.linear + F.sum, forward + backward (6 ops)', () => {
    scope(() => F.sum(F.linear(aGrad, wGrad)).backward());
    aGrad.grad!.dispose();
    wGrad.grad!.dispose();
    aGrad.grad = wGrad.grad = null;
  }],
];

for (const [name, fn] of cases) {
  for (let i = 0; i < Math.min(calls, 5000); i++) fn(); // warm-up: optimised code, a warm host cache
  synchronize(device);
  const us: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) fn();
    synchronize(device);
    us.push(((performance.now() - t0) / calls) * 1000);
  }
  us.sort((x, y) => x - y);
  console.log(`${device} ${name.padEnd(48)} ${us[rounds >> 1].toFixed(2).padStart(7)} us  (${us[0].toFixed(2)} - ${us[rounds - 1].toFixed(2)})`);
}
