// Fuzzer of the Node-API boundary and the public TS API, run in a child process by napi_fuzz.test.ts (so
// a crash, abort or hang is seen from outside). It calls every export of the CPU addon (the NativeBuffer
// constructor, its methods and accessors, callOp with every op of the table,
// sgemm, the memory and cache functions) and the TS API (Tensor.*, fused.*, F.*, callOp) thousands of
// times, each call a valid one with a few arguments replaced: wrong types, shapes and dtypes; negative,
// huge, fractional, NaN and infinite sizes; disposed tensors and buffers; detached and shared ArrayBuffers;
// typed arrays of the wrong type; empty arrays; missing and extra arguments; objects and proxies whose
// getters throw; and getters that dispose the call's own buffers half-way through argument reading.
//
// Contract checked on every call: it returns, or it throws an Error (instanceof Error) whose message is
// non-empty, is not a bare engine message ("Cannot read properties of ...", N-API's "Invalid argument"),
// and names the function, op or argument at fault (one of the target's names) or is one of a few
// self-explanatory problems ("... has been disposed", "out of host memory", "CUDA is unavailable", an asynchronous
// check's failure raised at a later read). An
// error thrown by our own throwing getters may propagate unchanged. Every tensor and buffer the harness created is disposed
// at the end and the live native buffer count must be back where it started (no leaks on error paths).
//
//   node --import tsx tests/fuzz/fuzz_child.ts [--seed N] [--calls N] [--time-ms N] [--slow-ms N] [--trace FILE]
// prints one JSON line: { seed, tried, worked, threw, propagated, problems, perTarget, ... }; exit code 0
// when no problem was found, 1 otherwise. --trace writes each call's description to FILE (synchronously,
// before the call) to find the call behind a crash.
import * as fs from 'fs';
import {
  cachedHostBytes, callOp, clearTape, opNames, fused, Generator, hostSyncs, isAsync, memoryStats, F, releaseHostCache, scope, setAsync,
  synchronize, Tensor, backendInfo,
} from '../../src';
import { cpu, NativeBuffer } from '../../src/native';
import { Rng } from '../support/random';

// ------------------------------------------------------------------ arguments
function argValue(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}
const seed = argValue('--seed', 1);
const maxCalls = argValue('--calls', 20_000);
const timeMs = argValue('--time-ms', 20_000);
const traceIdx = process.argv.indexOf('--trace');
const traceFd = traceIdx >= 0 ? fs.openSync(process.argv[traceIdx + 1], 'w') : null;

const rng = new Rng(seed);
const addon = cpu() as unknown as Record<string, unknown> & Pick<ReturnType<typeof cpu>, "distInit" | "distStart"> & {
  NativeBuffer: new (bytes: number, zero?: boolean) => NativeBuffer;
  callOp: (...a: unknown[]) => unknown;
  opNames(): string[];
};
const NB = addon.NativeBuffer;
const pick = <T>(a: readonly T[]): T => a[rng.int(a.length)];
const chance = (p: number) => rng.next() < p;

// ------------------------------------------------------------------ per-call ownership
// Everything a call's arguments allocate goes to `local`, everything it returns is collected; both are
// disposed after the call (a disposed tensor or buffer may be disposed again: that is harmless).
let local: { dispose(): void }[] = [];
function own<T extends { dispose(): void }>(x: T): T {
  local.push(x);
  return x;
}
function buf(bytes: number, fill: 'rand' | 'zero' = 'rand'): NativeBuffer {
  const b = own(new NB(bytes, fill === 'zero'));
  if (fill === 'rand' && bytes >= 4) {
    const a = new Float32Array(Math.floor(bytes / 4));
    for (let i = 0; i < a.length; i++) a[i] = rng.normal();
    b.write(a);
  }
  return b;
}
function ibuf(values: number[]): NativeBuffer {
  const b = own(new NB(values.length * 4));
  if (values.length) b.write(Int32Array.from(values));
  return b;
}
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
function tf(shape: number[], scale = 1): Tensor {
  const a = new Float32Array(prod(shape));
  for (let i = 0; i < a.length; i++) a[i] = rng.normal() * scale;
  return own(Tensor.fromArray(a, shape));
}
function ti(values: number[], shape: number[] = [values.length]): Tensor {
  return own(Tensor.fromArray(Int32Array.from(values), shape));
}
const randInts = (n: number, lo: number, hi: number) => Array.from({ length: n }, () => lo + rng.int(hi - lo));

// ------------------------------------------------------------------ hostile values
const SENTINEL = 'fuzz: a getter threw on purpose';
class FuzzGetterError extends Error {
  constructor() {
    super(SENTINEL);
  }
}
const thrower = () => {
  throw new FuzzGetterError();
};
const KEYS = ['N', 'M', 'd', 'V', 'dE', 'dtype', 'device', 'reduction', 'topK', 'chunkRows', 'workspaceBytes', 'ignoreIndex',
  'gradScale', 'temperature', 'labelSmoothing', 'zLossWeight', 'grad', 'detachTarget', 'transA', 'transB', 'causal', 'keyMask',
  'scale', 'shape', 'length', 'buffer', 'bytes', '0', '1'];

function throwingObject(): object {
  const o: Record<string, unknown> = {};
  for (const k of KEYS) Object.defineProperty(o, k, { get: thrower, enumerable: true });
  return o;
}
function throwingProxy(): object {
  return new Proxy({}, { get: thrower, has: thrower, ownKeys: thrower, getPrototypeOf: thrower, getOwnPropertyDescriptor: thrower });
}
function throwingArray(): unknown[] {
  const a = [1, 2, 3];
  Object.defineProperty(a, 1, { get: thrower });
  return a;
}
function detachedF32(): Float32Array {
  const ab = new ArrayBuffer(16);
  const f = new Float32Array(ab);
  structuredClone(ab, { transfer: [ab] });
  return f;
}
function disposedBuffer(): NativeBuffer {
  const b = new NB(16);
  b.dispose();
  return b;
}
function disposedTensor(): Tensor {
  const t = Tensor.fromArray(new Float32Array(4), [2, 2]);
  t.dispose();
  return t;
}

// Sizes are never between 2^28 and 2^44 bytes: such a request may succeed on a big machine and then be
// zeroed or copied (a minute, GBs of RSS) instead of failing at once; above 2^44 it fails everywhere.
const HUGE = [2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 1e300, Number.MAX_VALUE, -(2 ** 31) - 1, -(2 ** 53)];
function badValue(): unknown {
  switch (rng.int(12)) {
    case 0: return pick([undefined, null, true, false]);
    case 1: return pick([0, -0, 1, -1, 2, 3, 7, 0.5, -2.5, 1e-300, Number.MIN_VALUE]);
    case 2: return pick([NaN, Infinity, -Infinity]);
    case 3: return pick(HUGE);
    case 4: return pick(['', 'float32', 'int32', 'bfloat16', 'float16', 'cpu', 'cuda', 'gpu', 'mean', 'sum', 'none', 'x'.repeat(300), '1', '__proto__', 'toString']);
    case 5: return pick([Symbol('fuzz'), 10n, () => 1, new Date(0), /re/, new Map(), new Set(), Object.create(null), new Error('not a value')]);
    case 6: return pick([{}, [], [1], [-1], [0.5], [NaN], [2 ** 31, 2 ** 31], [1e300], new Array(3), [[1, 2]], ['2', '3']]);
    case 7:
      return pick([
        () => new Float32Array(0), () => new Float32Array(7), () => new Int32Array(3), () => new Uint8Array(5),
        () => new Float64Array(2), () => new Uint16Array(4), () => new BigInt64Array(2), () => new DataView(new ArrayBuffer(8)),
        () => new ArrayBuffer(16), detachedF32, () => new Float32Array(new SharedArrayBuffer(16)),
        () => new Float32Array(new ArrayBuffer(32), 8, 2), () => Buffer.from([1, 2, 3, 4]),
      ])();
    case 8: return pick([throwingObject, throwingProxy, throwingArray, () => ({ valueOf: thrower, toString: thrower })])();
    case 9:
      return pick([
        () => buf(pick([0, 4, 16, 64])), disposedBuffer, () => Object.create(NB.prototype), () => ({ bytes: 16, disposed: false, device: 'cpu' }),
        () => own(new (class extends NB {})(8)),
      ])();
    case 10:
      return pick([
        () => tf([2, 3]), () => tf([3]), () => tf([0, 4]), () => tf([]), () => tf([1, 2, 2, 2]), () => ti([0, 1, 2]),
        () => ti([5, -1], [1, 2]), disposedTensor, () => tf([2, 2]).view([4]),
        () => ({ shape: [2, 2], dtype: 'float32', device: 'cpu', size: 4, rank: 2, buffer: buf(16) }),
      ])();
    default: return pick([[], {}, undefined, 0, -1, 'float32']);
  }
}

function mutateNumber(v: number): unknown {
  switch (rng.int(8)) {
    case 0: return v + 1;
    case 1: return v - 1;
    case 2: return -v;
    case 3: return v + 0.5;
    case 4: return v * 3;
    case 5: return 0;
    default: return badValue();
  }
}

function isPlain(v: unknown): v is Record<string, unknown> {
  try {
    return v !== null && typeof v === 'object' && (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype);
  } catch {
    return false; // a proxy whose getPrototypeOf throws
  }
}

/** A mutated copy of v: one nested entry replaced, dropped or added, or v replaced by a hostile value. */
function mutate(v: unknown, depth = 0): unknown {
  try {
    return mutateUnsafe(v, depth);
  } catch {
    return badValue(); // v was hostile already (a throwing getter met while copying it)
  }
}
function mutateUnsafe(v: unknown, depth: number): unknown {
  if (depth < 3 && Array.isArray(v) && v.length > 0 && chance(0.65)) {
    const c = [...v];
    const r = rng.next();
    if (r < 0.7) {
      const i = rng.int(c.length);
      c[i] = mutate(c[i], depth + 1);
    } else if (r < 0.85) c.length = rng.int(c.length);
    else c.push(badValue());
    return c;
  }
  if (depth < 3 && isPlain(v) && !Array.isArray(v) && chance(0.7)) {
    const c: Record<string, unknown> = { ...v };
    const keys = Object.keys(c);
    const r = rng.next();
    if (keys.length && r < 0.6) {
      const k = pick(keys);
      c[k] = mutate(c[k], depth + 1);
    } else if (keys.length && r < 0.75) delete c[pick(keys)];
    else if (r < 0.92) c[pick(KEYS)] = badValue();
    else if (keys.length) Object.defineProperty(c, pick(keys), { get: thrower, enumerable: true });
    return c;
  }
  if (typeof v === 'number' && chance(0.6)) return mutateNumber(v);
  return badValue();
}

/** Every NativeBuffer and Tensor reachable in args (depth 3): the victims of a disposing getter. */
function victims(v: unknown, out: { dispose(): void }[] = [], depth = 0): { dispose(): void }[] {
  if (v instanceof Tensor || v instanceof NB) out.push(v);
  else if (depth < 3 && isPlain(v)) for (const x of Object.values(v)) victims(x, out, depth + 1);
  return out;
}

/**
 * Replaces one plain-object argument by a copy whose property getter disposes every buffer and tensor of
 * the call (then returns the original value): a binding that took a pointer before reading that property
 * would use freed memory (found by ASan in .ci/sanitize.sh).
 */
function withDisposingGetter(args: unknown[]): unknown[] {
  const objs = args.map((a, i) => [a, i] as const).filter(([a]) => isPlain(a) && !Array.isArray(a) && Object.keys(a as object).length > 0);
  const all = victims(args);
  if (!objs.length || !all.length) return args;
  const [o, i] = pick(objs);
  const c: Record<string, unknown> = { ...(o as Record<string, unknown>) };
  const k = pick(Object.keys(c));
  const val = c[k];
  Object.defineProperty(c, k, { get: () => (all.forEach((x) => x.dispose()), val), enumerable: true });
  const out = [...args];
  out[i] = c;
  return out;
}

// ------------------------------------------------------------------ targets
interface Call {
  fn: (...a: unknown[]) => unknown;
  args: unknown[];
  self?: unknown;
  construct?: boolean;
  /** Names an error message may use to point at the problem (the function, op or argument). */
  names: string[];
  /** The call may be made with a hostile `this` (native methods and accessors check it themselves). */
  nativeThis?: boolean;
  /** Sizes that must not be mutated into the 2^28..2^44-byte range (see HUGE). */
  guard?: (args: unknown[]) => boolean;
}
interface Target {
  name: string;
  make: () => Call;
}

// A single call slower than this is reported as a (near-)hang; the largest valid calls take ~1 ms.
const SLOW_MS = argValue('--slow-ms', 3000);
const slowest = { ms: 0, target: '', args: '' };
const stats = { tried: 0, worked: 0, threw: 0, propagated: 0, skipped: 0 };
const perTarget: Record<string, { tried: number; worked: number; threw: number }> = {};
const problems: { target: string; problem: string; args: string }[] = [];
let problemCount = 0;

// Messages that are clear without naming the call: the problem itself is the information.
// An asynchronous check's error names the op that found it, which ran in an earlier call.
const PROBLEM_KINDS = /has been disposed|out of (host|CUDA) memory|CUDA is unavailable|an asynchronous check/;
const GENERIC = /Cannot read prop|is not a function|is not iterable|is not a constructor|^Invalid argument|was expected$|undefined is not|null is not|Cannot convert|Maximum call stack|Invalid typed array length|Array buffer allocation failed/;

function describeArg(v: unknown, depth = 0): string {
  try {
    return describeUnsafe(v, depth);
  } catch {
    return '<hostile>';
  }
}
function describeUnsafe(v: unknown, depth: number): string {
  if (v instanceof Tensor) return `Tensor[${v.shape.join(',')}] ${v.dtype}${v.disposed ? ' disposed' : ''}`;
  if (v instanceof NB) return `NativeBuffer(${v.disposed ? 'disposed' : v.bytes})`;
  if (typeof v === 'symbol' || typeof v === 'bigint') return String(v) + (typeof v === 'bigint' ? 'n' : '');
  if (typeof v === 'function') return 'function';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${v.byteLength}B)`;
  if (v === null || typeof v !== 'object') return typeof v === 'string' ? JSON.stringify(v.slice(0, 30)) : String(v);
  if (depth > 2) return '...';
  try {
    if (Array.isArray(v)) return `[${v.slice(0, 12).map((x) => describeArg(x, depth + 1)).join(', ')}]`;
    if (!isPlain(v)) return `<${Object.prototype.toString.call(v)}>`;
    return `{${Object.keys(v).map((k) => {
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      return `${k}: ${d.get ? '<getter>' : describeArg(d.value, depth + 1)}`;
    }).join(', ')}}`;
  } catch {
    return '<hostile>';
  }
}

function judge(e: unknown, names: string[]): string | null {
  if (!(e instanceof Error)) return `threw a non-Error (${typeof e}: ${String(e)})`;
  const m = e.message;
  if (m === SENTINEL) return null;
  if (typeof m !== 'string' || m.trim() === '') return `${e.name} with an empty message`;
  if (GENERIC.test(m)) return `unclear engine message: ${e.name}: ${m}`;
  if (!names.some((n) => m.includes(n)) && !PROBLEM_KINDS.test(m)) return `message names none of [${names.join(', ')}]: ${e.name}: ${m}`;
  return null;
}

function disposeAll(v: unknown, depth = 0): void {
  if (v instanceof Tensor || v instanceof NB) v.dispose();
  else if (depth < 3 && v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) {
    for (const x of Array.isArray(v) ? v : Object.values(v)) disposeAll(x, depth + 1);
  }
}

function run(targetName: string, call: Call): void {
  const pt = (perTarget[targetName] ??= { tried: 0, worked: 0, threw: 0 });
  if (/^(rawCallOp|callOp) /.test(targetName) && typeof call.args[0] === 'string') call.names = [...call.names, `[${call.args[0]}]`];
  let allowed = true;
  try {
    allowed = !call.guard || call.guard(call.args);
  } catch {
    // hostile arguments (a throwing getter): the call cannot reach an allocation with them
  }
  if (!allowed) {
    stats.skipped++;
    return;
  }
  if (traceFd !== null) fs.writeSync(traceFd, `${stats.tried} ${targetName} ${describeArg(call.args)}\n`);
  stats.tried++;
  pt.tried++;
  const start = performance.now();
  let result: unknown;
  try {
    result = scope(() => (call.construct ? Reflect.construct(call.fn, call.args) : Reflect.apply(call.fn, call.self, call.args)));
    stats.worked++;
    pt.worked++;
  } catch (e) {
    pt.threw++;
    if (e instanceof Error && e.message === SENTINEL) stats.propagated++;
    else stats.threw++;
    const p = judge(e, call.names);
    if (p) {
      problemCount++;
      if (problems.length < 40 && !problems.some((q) => q.target === targetName && q.problem === p))
        problems.push({ target: targetName, problem: p, args: describeArg(call.args).slice(0, 400) });
    }
  }
  const ms = performance.now() - start;
  if (ms > slowest.ms) Object.assign(slowest, { ms: Math.round(ms), target: targetName, args: describeArg(call.args).slice(0, 300) });
  if (ms > SLOW_MS) {
    problemCount++;
    if (problems.length < 40) problems.push({ target: targetName, problem: `a call took ${Math.round(ms)} ms (a near-hang)`, args: describeArg(call.args).slice(0, 400) });
  }
  try {
    disposeAll(result);
    for (const x of local) x.dispose();
  } catch (e) {
    problemCount++;
    if (problems.length < 40) problems.push({ target: targetName, problem: `dispose() of a result or argument threw: ${String(e)}`, args: describeArg(call.args).slice(0, 400) });
  }
  local = [];
  clearTape();
}

const targets: Target[] = [];
const add = (name: string, make: () => Call) => targets.push({ name, make });
const NBN = ['NativeBuffer'];

// --- NativeBuffer: constructor, methods and accessors (also with a wrong `this`)
const bytesGuard = (a: unknown[]) => typeof a[0] !== 'number' || !(a[0] >= 2 ** 28 && a[0] < 2 ** 44);
add('NativeBuffer()', () => ({ fn: NB as never, construct: true, args: [rng.int(65), chance(0.5)], names: NBN, guard: bytesGuard }));
add('NativeBuffer() without new', () => ({ fn: NB as never, args: [8], names: [...NBN, 'new'] }));
const proto = NB.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
const getter = (k: string) => Object.getOwnPropertyDescriptor(NB.prototype, k)!.get! as (...a: unknown[]) => unknown;
for (const m of ['write', 'read'] as const) {
  add(`NativeBuffer.${m}`, () => {
    const b = buf(32);
    const off = 4 * rng.int(3), n = rng.int((32 - off) / 4 + 1);
    return { fn: proto[m], self: b, nativeThis: true, args: [pick([new Float32Array(n), new Int32Array(n), new Uint8Array(4 * n)]), off], names: [`NativeBuffer.${m}`] };
  });
}
add('NativeBuffer.dispose', () => ({ fn: proto.dispose, self: chance(0.5) ? buf(8) : disposedBuffer(), nativeThis: true, args: [], names: ['NativeBuffer.dispose'] }));
for (const k of ['bytes', 'disposed', 'device'])
  add(`NativeBuffer.${k}`, () => ({ fn: getter(k), self: chance(0.5) ? buf(8) : disposedBuffer(), nativeThis: true, args: [], names: [`NativeBuffer.${k}`] }));

// --- the fused ops through fused.* (raw, they are callOp targets like every other op of the table)
const snake: Record<string, string> = {
  linearCrossEntropy: 'linear_cross_entropy', visualWordKL: 'visual_word_kl', visualWords: 'visual_words',
  pseudoImageFeatures: 'pseudo_image_features', pseudoImageFeaturesBackward: 'pseudo_image_features_backward',
};
const dimsOf = () => ({ N: 1 + rng.int(5), d: 1 + rng.int(6), V: 1 + rng.int(7), dE: 1 + rng.int(4) });
const tsKernel: Record<string, () => unknown[]> = {
  linearCrossEntropy: () => {
    const { N, d, V } = dimsOf();
    return [tf([N, d]), tf([V, d]), ti(randInts(N, -1, V)), { ignoreIndex: -1, reduction: pick(['mean', 'sum', 'none']), grad: chance(0.8), gradOutputs: { dh: chance(0.8), dw: chance(0.6) } }];
  },
  visualWordKL: () => {
    const { N: M, d, V } = dimsOf();
    return [tf([M, d]), tf([V, d]), tf([M, d]), tf([V, d]), { temperature: 2, detachTarget: chance(0.3), chunkRows: 1,
      gradOutputs: { dh: chance(0.8), dwLm: chance(0.6), dx: chance(0.8), dwVm: chance(0.6) } }];
  },
  visualWords: () => {
    const { N, d, V } = dimsOf();
    return [tf([N, d]), tf([V, d]), { topK: 1 + rng.int(V) }];
  },
  pseudoImageFeatures: () => {
    const { N, d, V, dE } = dimsOf();
    return [tf([N, d]), tf([V, d]), tf([V, dE]), { workspaceBudget: 32 }];
  },
  pseudoImageFeaturesBackward: () => {
    const { N, d, V, dE } = dimsOf();
    return [tf([N, d]), tf([V, d]), tf([V, dE]), tf([N, dE])];
  },
};
for (const k of Object.keys(fused)) {
  if (!tsKernel[k] || !snake[k]) throw new Error(`fuzz: no generator for fused.${k}: add one to tests/fuzz/fuzz_child.ts`);
  add(`fused.${k}`, () => ({ fn: (fused as unknown as Record<string, never>)[k], args: tsKernel[k](), names: [`fused.${k}`, snake[k], ...NBN] }));
}

add('addon.sgemm', () => {
  const M = rng.int(5), N = rng.int(5), K = rng.int(5);
  return { fn: addon.sgemm as never, args: [chance(0.5), chance(0.5), M, N, K, buf(4 * M * K), buf(4 * K * N), buf(4 * M * N)], names: ['sgemm', ...NBN] };
});
add('addon.chunkPlan', () => ({
  fn: addon.chunkPlan as never,
  // requested, n, V, float32 blocks, bf16 blocks, budget (the mutations make them hostile)
  args: [pick([0, 7]), pick([0, 1, 600, 2 ** 31 - 1]), pick([1, 101, 32000, 2 ** 31 - 1]), rng.int(3), rng.int(3), pick([0, 1, 2 ** 20, 2 ** 53])],
  names: ['chunkPlan'],
}));
for (const k of ['opNames', 'opConstants', 'memoryStats', 'backendInfo', 'releaseCache', 'hostSyncs', 'synchronize', 'isAsync'])
  add(`addon.${k}`, () => ({ fn: addon[k] as never, args: [], names: [k] }));
// The process group's binding (native/napi/dist_napi.h). distInit always gets a library that does not exist: MPI
// itself never starts in the fuzzer (its memory hooks and threads are not what this run is about); the calls with
// a live group are tests/dist's. So the others meet "no process group", after their own argument checks.
add('addon.distInit', () => ({
  fn: ((backend: unknown, o: unknown) => addon.distInit(backend as string, { ...(o !== null && typeof o === 'object' ? o : {}), library: '/nonexistent/libvwlmm_mpi.so' })) as never,
  args: [pick(['mpi', 'nccl', 'gloo']), { timeoutMs: pick([1000, 0, -1, NaN, 1e300]) }], names: ['distInit', 'process group'],
}));
add('addon.distStart', () => {
  const n = rng.int(5);
  return { fn: addon.distStart as never, args: [pick(['all_reduce', 'reduce_scatter', 'all_gather', 'broadcast', 'scan']), buf(4 * n), buf(4 * n), pick(['float32', 'bfloat16', 'int32']), n, pick(['sum', 'avg', 'max', 'min']), rng.int(2)], names: ['distStart', 'process group', 'collective', 'all_reduce', 'reduce_scatter', 'all_gather', 'broadcast', ...NBN] };
});
for (const k of ['distTest', 'distWait', 'distDestroy', 'distInfo'])
  add(`addon.${k}`, () => ({ fn: addon[k] as never, args: k === 'distInfo' ? [] : k === 'distDestroy' ? [1000] : [1 + rng.int(3), 1000], names: [k, 'process group'] }));
// Op programs (native/napi/program.cc). Every call leaves no recording running (the wrappers abort one), and
// programs are disposed by programDispose or the GC. A valid program: one axpby on fresh buffers (made before the
// recording, so they are its external buffers: once the run disposes them, a replay must refuse, not read them).
const P = addon as unknown as ReturnType<typeof cpu>;
const recordedProgram = () => {
  const a = buf(16), b = buf(16);
  P.programBegin([]);
  try {
    P.callOp('axpby', [a, a], ['float32', 'float32'], [b], ['float32'], [4], [1, 1]);
    return P.programEnd();
  } finally {
    P.programAbort();
  }
};
const disposedProgram = () => {
  const p = recordedProgram();
  P.programDispose(p);
  return p;
};
add('addon.programBegin', () => ({
  fn: ((inputs: unknown) => {
    try {
      P.programBegin(inputs as never);
    } finally {
      P.programAbort();
    }
  }) as never,
  args: [[new Float32Array(rng.int(5)), new Int32Array(rng.int(3))]], names: ['programBegin'],
}));
add('addon.programEnd', () => ({
  fn: ((withBegin: unknown) => {
    if (withBegin !== false) P.programBegin([]);
    try {
      P.programDispose(P.programEnd());
    } finally {
      P.programAbort();
    }
  }) as never,
  args: [true], names: ['programEnd'],
}));
add('addon.programEnd unbegun', () => ({ fn: P.programEnd as never, args: [], names: ['programEnd'] }));
add('addon.programAbort', () => ({ fn: P.programAbort as never, args: [], names: ['programAbort'] }));
for (const disposed of [false, true]) {
  const handle = () => (disposed ? disposedProgram() : recordedProgram());
  const tag = disposed ? ' disposed' : '';
  add(`addon.programReplay${tag}`, () => ({ fn: P.programReplay as never, args: [handle(), []], names: ['programReplay'] }));
  add(`addon.programCompare${tag}`, () => ({ fn: P.programCompare as never, args: [recordedProgram(), handle()], names: ['programCompare'] }));
  add(`addon.programInfo${tag}`, () => ({ fn: P.programInfo as never, args: [handle()], names: ['programInfo'] }));
}
add('addon.programDispose', () => ({ fn: P.programDispose as never, args: [chance(0.5) ? recordedProgram() : disposedProgram()], names: ['programDispose'] }));
// host graphs on some of the time: replays in async mode are then captured and launched (program.cc, "Graphs")
add('addon.programHostGraphs', () => ({ fn: P.programHostGraphs as never, args: [chance(0.5)], names: ['programHostGraphs'] }));
// Async mode some of the time (native/core/error_flags.h): the hostile ids, masks and targets of the calls then
// run into the kernels, which must skip them, and their errors surface at a later read.
add('addon.setAsync', () => ({ fn: addon.setAsync as never, args: [chance(0.3)], names: ['setAsync'] }));
for (const [k, fn] of Object.entries({ memoryStats, backendInfo, releaseHostCache, cachedHostBytes, opNames, hostSyncs, synchronize, isAsync }))
  add(k, () => ({ fn: fn as never, args: k === 'opNames' ? ['cpu'] : k === 'hostSyncs' || k === 'synchronize' || k === 'isAsync' ? [pick(['cpu', undefined])] : [], names: [k, 'CUDA'] }));
add('setAsync', () => ({ fn: setAsync as never, args: ['cpu', chance(0.3)], names: ['setAsync'] }));

// --- ops: valid templates recorded from F.* and fused.* (every call they make to the binding's callOp), replayed
// raw through the binding and through callOp with fresh buffers of the same sizes, then mutated.
interface Template { op: string; ins: ({ bytes: number; dtype: string; ints: number[] | null } | null)[]; outs: ({ bytes: number; dtype: string } | null)[]; ints: number[]; floats: number[] }
const templates = new Map<string, Template[]>();

function recordTemplates(): void {
  const orig = addon.callOp;
  addon.callOp = (op: unknown, inputs: unknown, inDtypes: unknown, outputs: unknown, outDtypes: unknown, ints: unknown, floats: unknown) => {
    const ins = (inputs as (NativeBuffer | null)[]).map((b, i) => {
      if (!b) return null;
      const dtype = (inDtypes as string[])[i];
      let iv: number[] | null = null;
      if (dtype === 'int32') {
        const a = new Int32Array(b.bytes / 4);
        if (a.length) b.read(a);
        iv = Array.from(a);
      }
      return { bytes: b.bytes, dtype, ints: iv };
    });
    const outs = (outputs as (NativeBuffer | null)[]).map((b, i) => (b ? { bytes: b.bytes, dtype: (outDtypes as string[])[i] } : null));
    const list = templates.get(op as string) ?? [];
    if (list.length < 6) list.push({ op: op as string, ins, outs, ints: [...(ints as number[])], floats: [...(floats as number[])] });
    templates.set(op as string, list);
    return orig(op, inputs, inDtypes, outputs, outDtypes, ints, floats);
  };
  try {
    for (let rep = 0; rep < 3; rep++) {
      for (const [name, gen] of Object.entries(opsGen)) {
        try {
          const args = gen();
          scope(() => {
            const fn = (F as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
            // gradients to every float input (patchEmbed: not to the pixels; writeAt is not differentiable)
            args.forEach((a, i) => {
              if (a instanceof Tensor && a.dtype === 'float32' && !(name === 'patchEmbed' && i === 0) && name !== 'writeAt') a.requiresGrad = true;
            });
            const r = fn(...args);
            const out = Array.isArray(r) ? r[0] : r;
            if (out instanceof Tensor && out.requiresGrad) F.sum(out.dtype === 'float32' ? out : F.cast(out, 'float32')).backward();
          });
        } finally {
          for (const x of local) x.dispose();
          local = [];
        }
      }
      // the optimizer ops (adamw_step, sum_squares) and fill
      const p = tf([3, 2]);
      const g = tf([3, 2]);
      const q = tf([4]);
      addon.callOp('sum_squares', [p.buffer, q.buffer], ['float32', 'float32'], [buf(4)], ['float32'], [2, 6, 4], []);
      addon.callOp('adamw_step', [g.buffer], ['float32'], [p.buffer, buf(24, 'zero'), buf(24, 'zero')], ['float32', 'float32', 'float32'], [1, 1, 6], [1e-3, 0.9, 0.999, 1e-8, 0.01, 1]);
      addon.callOp('fill', [], [], [q.buffer], ['float32'], [4], [2.5]);
      for (const x of local) x.dispose();
      local = [];
    }
  } finally {
    addon.callOp = orig;
    clearTape();
  }
}

function instantiate(t: Template, asTensors: boolean): { ins: unknown[]; inD: string[]; outs: unknown[]; outD: string[] } {
  const mk = (bytes: number, dtype: string, ints: number[] | null) => {
    if (!asTensors) return ints ? ibuf(ints) : buf(bytes, 'rand');
    const n = bytes / (dtype === 'bfloat16' ? 2 : 4);
    return ints ? ti(ints) : tf([n]);
  };
  return {
    ins: t.ins.map((s) => (s ? mk(s.bytes, s.dtype, s.ints) : null)),
    inD: t.ins.map((s) => (s ? s.dtype : 'float32')),
    outs: t.outs.map((s) => (s ? mk(s.bytes, s.dtype, null) : null)),
    outD: t.outs.map((s) => (s ? s.dtype : 'float32')),
  };
}

// --- F.*: one valid call per exported function (the templates for the engine come from these too)
const opsGen: Record<string, () => unknown[]> = {
  reshape: () => [tf([2, 3]), [3, 2]],
  axpby: () => [tf([2, 3]), tf([2, 3]), 0.5, 2],
  add: () => [tf([4]), tf([4])],
  sub: () => [tf([2, 2]), tf([2, 2])],
  scale: () => [tf([5]), 3],
  mul: () => [tf([3]), tf([3])],
  addBroadcast: () => [tf([3, 4]), tf([4])],
  sum: () => [tf([2, 3])],
  matmul: () => (chance(0.5) ? [tf([2, 3, 4]), tf([4, 5])] : [tf([2, 4, 3]), tf([2, 5, 4]), { transA: true, transB: true }]),
  linear: () => [tf([2, 3]), tf([4, 3]), chance(0.5) ? tf([4]) : null],
  linears: () => [tf([2, 3]), [tf([4, 3]), tf([2, 3])], chance(0.5) ? [tf([4]), null] : undefined],
  embedding: () => [ti([0, 2, 1, 2], [2, 2]), tf([3, 4])],
  rmsNorm: () => [tf([3, 4]), tf([4]), 1e-6],
  layerNorm: () => [tf([3, 4]), tf([4]), tf([4]), 1e-5],
  rope: () => [tf([1, 3, 2, 4]), 10000, rng.int(3)],
  softmax: () => [tf([3, 5])],
  activation: () => [tf([6]), pick(['gelu', 'geluTanh', 'quickGelu', 'silu'])],
  gelu: () => [tf([4])],
  geluTanh: () => [tf([4])],
  quickGelu: () => [tf([4])],
  silu: () => [tf([4])],
  swiglu: () => [tf([2, 3]), tf([2, 3])],
  concat: () => [[tf([2, 3]), tf([2, 1])], 1],
  slice: () => [tf([4, 3]), 0, 1, 2],
  writeAt: () => [tf([2, 5, 3]), tf([2, 2, 3]), 1, 3],
  gatherRows: () => [tf([4, 3]), ti([3, 0, 0])],
  attention: () => [tf([1, 3, 2, 4]), tf([1, 3, 1, 4]), tf([1, 3, 1, 4]), { causal: chance(0.5), keyMask: chance(0.5) ? ti([1, 1, 0], [1, 3]) : null }],
  patchEmbed: () => [tf([1, 2, 4, 4]), tf([3, 2, 2, 2])],
  linearCrossEntropy: () => [tf([3, 4]), tf([5, 4]), ti([0, 4, -100]), { reduction: 'sum' }],
  visualWordKL: () => [tf([2, 3]), tf([4, 3]), tf([2, 3]), tf([4, 3])],
  pseudoImageFeatures: () => [tf([2, 3]), tf([4, 3]), tf([4, 2])],
  cast: () => [tf([2, 3]), pick(['bfloat16', 'float32'])],
  dropout: () => [tf([2, 3]), pick([0, 0.25, 0.9]), new Generator(rng.int(1000))],
};
const uncoveredOps: string[] = [];
const engineNames = opNames('cpu').map((n) => `[${n}]`);
for (const [name, fn] of Object.entries(F)) {
  if (typeof fn !== 'function') continue;
  if (!opsGen[name]) {
    uncoveredOps.push(name);
    continue;
  }
  // an op may report through the op it delegates to (F.gelu -> F.activation, F.* -> fused.*) or the
  // engine op that rejected a parameter ("[rope] theta must be ..."): any API or engine op name will do
  add(`F.${name}`, () => ({ fn: fn as never, args: opsGen[name](), names: ['F.', 'fused.', 'Tensor.', ...engineNames, ...Object.values(snake).map((n) => `[${n}]`), ...NBN] }));
}

// --- Tensor
const shapeGuard = (a: unknown[]) => {
  const s = a[0];
  if (!Array.isArray(s) || !s.every((x) => typeof x === 'number')) return true;
  const bytes = prod(s as number[]) * 4;
  return !(bytes >= 2 ** 28 && bytes < 2 ** 44);
};
add('Tensor.fromArray', () => {
  const shape = [rng.int(4), 1 + rng.int(3)];
  const isInt = chance(0.3);
  const data = isInt ? new Int32Array(prod(shape)) : new Float32Array(prod(shape));
  return { fn: Tensor.fromArray as never, args: [data, shape, { device: 'cpu', dtype: isInt ? 'int32' : 'float32' }], names: ['Tensor.fromArray', ...NBN] };
});
add('Tensor.fromArray cuda', () => ({ fn: Tensor.fromArray as never, args: [new Float32Array(4), [2, 2], { device: 'cuda', dtype: pick(['float32', 'bfloat16']) }], names: ['Tensor.fromArray', 'CUDA', ...NBN] }));
for (const k of ['zeros', 'empty'] as const)
  add(`Tensor.${k}`, () => ({ fn: Tensor[k] as never, args: [[rng.int(4), 1 + rng.int(4)], { dtype: pick(['float32', 'int32']) }], names: [`Tensor.${k}`, ...NBN], guard: shapeGuard }));
add('new Tensor', () => {
  const n = 1 + rng.int(6);
  const dtype = pick(['float32', 'int32']);
  return { fn: Tensor as never, construct: true, args: [buf(4 * n), [n], dtype, 'cpu', chance(0.5)], names: ['Tensor', ...NBN] };
});
const method = (name: string, self: () => Tensor, args: () => unknown[]) =>
  add(`Tensor.${name}`, () => ({
    fn: (Tensor.prototype as unknown as Record<string, never>)[name], self: self(), args: args(), names: [`Tensor.${name}`, 'Tensor [', 'CUDA', ...NBN],
  }));
method('view', () => tf([2, 3]), () => [[3, 2]]);
method('toArray', () => (chance(0.5) ? tf([2, 2]) : ti([1, 2])), () => []);
method('to', () => tf([3]), () => ['cpu', 'float32']);
method('item', () => tf([1]), () => []);
method('moveTo', () => tf([2, 2]), () => [[4]]);
method('dispose', () => (chance(0.5) ? tf([2]) : disposedTensor()), () => []);

// --- callOp
let engineTargets = 0;
function addEngineTargets(): void {
  for (const op of opNames('cpu')) {
    const list = templates.get(op);
    engineTargets++;
    add(`rawCallOp ${op}`, () => {
      if (!list) {
        // no template (an op F.* does not use): random buffers and parameters
        const nIn = rng.int(5), nOut = rng.int(4);
        const ins = Array.from({ length: nIn }, () => (chance(0.3) ? ibuf(randInts(rng.int(12), -2, 6)) : buf(4 * rng.int(24))));
        const outs = Array.from({ length: nOut }, () => buf(4 * rng.int(24)));
        return {
          fn: addon.callOp as never,
          args: [op, ins, ins.map(() => pick(['float32', 'int32'])), outs, outs.map(() => 'float32'), randInts(rng.int(12), 0, 6), [rng.next()]],
          names: [op, 'callOp', ...NBN],
        };
      }
      const t = pick(list);
      const x = instantiate(t, false);
      return { fn: addon.callOp as never, args: [op, x.ins, x.inD, x.outs, x.outD, [...t.ints], [...t.floats]], names: [op, 'callOp', ...NBN] };
    });
    if (list)
      add(`callOp ${op}`, () => {
        const t = pick(list);
        const x = instantiate(t, true);
        return { fn: callOp as never, args: [op, 'cpu', x.ins, x.outs, [...t.ints], [...t.floats]], names: [op, 'callOp', ...NBN] };
      });
  }
  add('rawCallOp unknown op', () => ({ fn: addon.callOp as never, args: [pick(['', 'nope', 'constructor', '__proto__', 'toString']), [], [], [], [], [], []], names: ['callOp', 'is not an op'] }));
  add('callOp cuda', () => ({ fn: callOp as never, args: ['fill', 'cuda', [], [], [1], [0]], names: ['fill', 'callOp', 'CUDA'] }));
}

// ------------------------------------------------------------------ main
const base = memoryStats().cpu.liveBuffers;
recordTemplates();
addEngineTargets();
const t0 = Date.now();

// Each target gets its unmutated call first (it must work: the generators are valid calls).
const baselineFailures: string[] = [];
for (const t of targets) {
  const before = perTarget[t.name]?.worked ?? 0;
  run(t.name, t.make());
  // (the process group's calls other than distInfo / distDestroy need a group, which the fuzzer never starts)
  const expectFail = /without new|cuda|unknown op|^addon\.dist(Init|Start|Test|Wait)$|^addon\.program\w+ (disposed|unbegun)$/.test(t.name) || (t.name.startsWith('rawCallOp ') && !templates.has(t.name.slice(10)));
  if (!expectFail && (perTarget[t.name]?.worked ?? 0) === before) baselineFailures.push(t.name);
}

while (stats.tried < maxCalls && Date.now() - t0 < timeMs) {
  const t = pick(targets);
  const call = t.make();
  const r = rng.next();
  if (r < 0.12) {
    // unmutated
  } else if (r < 0.2) {
    call.args = withDisposingGetter(call.args);
  } else if (r < 0.27 && call.nativeThis) {
    call.self = badValue();
  } else if (r < 0.32) {
    call.args = call.args.slice(0, rng.int(call.args.length + 1));
  } else if (r < 0.36) {
    call.args = [...call.args, ...Array.from({ length: 1 + rng.int(3) }, badValue)];
  } else {
    const k = chance(0.75) ? 1 : 2;
    for (let j = 0; j < k; j++) call.args = mutate(call.args) as unknown[];
    if (!Array.isArray(call.args)) call.args = [call.args];
  }
  run(t.name, call);
}
const seconds = (Date.now() - t0) / 1000;

setAsync('cpu', false);
try {
  synchronize('cpu');
} catch {
  // a failed check of the last async calls
}
for (const x of local) x.dispose();
clearTape();
const leaked = memoryStats().cpu.liveBuffers - base;
const untried = targets.filter((t) => !perTarget[t.name] || perTarget[t.name].tried === 0).map((t) => t.name);
const report = {
  seed, seconds, ...stats, problemCount, problems, slowest, baselineFailures, leakedBuffers: leaked, uncoveredOps,
  targets: targets.length, engineOps: engineTargets, templatedOps: [...templates.keys()].length, fusedWrappers: Object.keys(fused).length,
  addonExports: Object.keys(addon).sort(), untried, perTarget,
};
process.stdout.write(JSON.stringify(report) + '\n');
process.exitCode = problemCount === 0 && leaked === 0 && baselineFailures.length === 0 && uncoveredOps.length === 0 ? 0 : 1;
