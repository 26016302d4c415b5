// The Node-API boundary under hostile input: a fuzzer in a child process (tests/fuzz/fuzz_child.ts: it must
// exit 0 without a signal within its time, every call returning or throwing a clear Error, no buffer
// leaked), and explicit cases: use after dispose, double dispose, cross-device mixing, `this` checks, and
// regressions of the bugs the fuzzer and the sanitizers found (.ci/sanitize.sh runs this file under
// ASan/UBSan too: the child inherits LD_PRELOAD and VWLMM_ADDON).
//
// Decisions: dispose() is idempotent on tensors and buffers (a second call does nothing); any other use of
// a disposed tensor or buffer throws a TypeError saying it has been disposed.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { callOp, cudaAvailable, opNames, fused, memoryStats, F, scope, Tensor } from '../../src';
import { Addon, cpu, NativeBuffer, tryCuda } from '../../src/native';
import { runSeed } from '../support/random';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const tmp = tempDirs('napi-fuzz');
const seed = Number(process.env.VWLMM_FUZZ_SEED ?? runSeed);
const CALLS = Number(process.env.VWLMM_FUZZ_CALLS ?? 300_000);
const TIME_MS = Number(process.env.VWLMM_FUZZ_TIME_MS ?? 25_000);

interface Report {
  seed: number;
  seconds: number;
  tried: number;
  worked: number;
  threw: number;
  propagated: number;
  problemCount: number;
  problems: { target: string; problem: string; args: string }[];
  baselineFailures: string[];
  leakedBuffers: number;
  uncoveredOps: string[];
  untried: string[];
  addonExports: string[];
  slowest: { ms: number; target: string };
  perTarget: Record<string, { tried: number; worked: number; threw: number }>;
}



/** The binding's visual_words with raw buffers: ints [N, d, V, k] (+ chunkRows 0, a 64-byte budget unless given). */
function rawVisualWords(a: Addon, x: unknown, w: unknown, ints: number[]): unknown {
  const full = ints.length >= 6 ? ints : [...ints, 0, 64];
  const ids = new a.NativeBuffer(64), probs = new a.NativeBuffer(64);
  try {
    return a.callOp('visual_words', [x as NativeBuffer, w as NativeBuffer], ['float32', 'float32'], [ids, probs], ['int32', 'float32'], full, []);
  } finally {
    ids.dispose();
    probs.dispose();
  }
}

describe('Node-API fuzzing', () => {
  it(`thousands of hostile calls never crash, hang, leak or throw unclear errors (seed ${seed})`, () => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', path.join('tests', 'fuzz', 'fuzz_child.ts'), '--seed', String(seed), '--calls', String(CALLS), '--time-ms', String(TIME_MS)],
      { cwd: root, env: process.env, encoding: 'utf8', timeout: TIME_MS + 60_000, maxBuffer: 64 << 20 },
    );
    const tail = (s: string | null) => (s ?? '').slice(-4000);
    // a signal (SIGSEGV, SIGABRT from a sanitizer, SIGTERM from the timeout) is a crash or a hang
    expect(r.signal, `child killed by ${r.signal}; replay with VWLMM_FUZZ_SEED=${seed} (and --trace FILE)\n${tail(r.stderr)}`).toBeNull();
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let rep: Report;
    try {
      rep = JSON.parse(line) as Report;
    } catch {
      throw new Error(`fuzz child (seed ${seed}) exited ${r.status} without a report:\n${tail(r.stderr)}\n${tail(r.stdout)}`);
    }
    console.log(
      `napi fuzz: seed ${seed}: ${rep.tried} calls in ${rep.seconds.toFixed(1)} s, ${rep.worked} worked, ${rep.threw} threw a clear Error, ` +
        `${rep.propagated} propagated a getter's error; slowest ${rep.slowest.ms} ms (${rep.slowest.target})`,
    );
    expect(rep.problems, `seed ${seed}: ${rep.problemCount} calls broke the error contract`).toEqual([]);
    expect(rep.problemCount).toBe(0);
    expect(rep.baselineFailures, 'valid calls of the generators must work').toEqual([]);
    expect(rep.leakedBuffers, 'native buffers left alive after every call was disposed').toBe(0);
    expect(rep.uncoveredOps, 'ops.* functions without a generator in fuzz_child.ts').toEqual([]);
    expect(rep.untried).toEqual([]);
    expect(rep.tried).toBeGreaterThanOrEqual(Math.min(CALLS, 20_000));
    expect(r.status).toBe(0);
    // every export of the addon, every fused kernel and every engine op was called
    const names = Object.keys(rep.perTarget);
    for (const k of rep.addonExports) expect(names.some((n) => n.includes(k)), `addon export ${k} is never fuzzed`).toBe(true);
    for (const k of Object.keys(fused)) expect(rep.perTarget[`fused.${k}`]?.tried ?? 0, k).toBeGreaterThan(0);
    for (const op of opNames('cpu')) expect(rep.perTarget[`rawCallOp ${op}`]?.tried ?? 0, op).toBeGreaterThan(0);
  }, TIME_MS + 90_000);
});

describe('disposal, devices and argument checks at the boundary', () => {
  const a = cpu();
  const live = () => memoryStats().cpu.liveBuffers;

  it('use after dispose throws a TypeError naming the problem, everywhere', () => {
    const t = Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
    const w = Tensor.fromArray(new Float32Array(8), [4, 2]);
    t.dispose();
    expect(() => t.toArray()).toThrow(TypeError);
    expect(() => t.toArray()).toThrow(/has been disposed/);
    expect(() => t.view([4])).toThrow(/has been disposed/);
    expect(() => t.to('cpu')).toThrow(/has been disposed/);
    expect(() => fused.visualWords(t, w)).toThrow(/fused.visualWords: x has been disposed/);
    expect(() => F.add(t, t)).toThrow(/F.add: a has been disposed/);
    expect(() => callOp('fill', 'cpu', [], [t], [4], [0])).toThrow(/callOp \[fill\]: outputs\[0\] has been disposed/);
    const b = new a.NativeBuffer(16);
    b.dispose();
    expect(b.disposed).toBe(true);
    expect(b.bytes).toBe(16);
    expect(() => b.write(new Float32Array(1))).toThrow(/NativeBuffer.write: the buffer has been disposed/);
    expect(() => b.read(new Float32Array(1))).toThrow(/NativeBuffer.read: the buffer has been disposed/);
    expect(() => rawVisualWords(a, b, b, [1, 1, 1, 1])).toThrow(/\[visual_words\] inputs\[0\] has been disposed/);
    expect(() => a.callOp('fill', [], [], [b], ['float32'], [1], [0])).toThrow(
      /\[fill\] outputs\[0\] has been disposed/,
    );
    expect(() => new Tensor(b, [4], 'float32', 'cpu')).toThrow(/new Tensor: the buffer has been disposed/);
    w.dispose();
  });

  it('double dispose is harmless (idempotent) for tensors, views and buffers', () => {
    const base = live();
    const t = Tensor.fromArray(new Float32Array(6), [2, 3]);
    const v = t.view([6]);
    v.dispose();
    v.dispose();
    expect(t.toArray().length).toBe(6); // a view frees nothing
    t.dispose();
    t.dispose();
    const b = new a.NativeBuffer(8);
    b.dispose();
    b.dispose();
    expect(live()).toBe(base);
    const kept = scope(() => {
      const x = Tensor.zeros([3]);
      x.dispose(); // disposed by hand inside a scope: the scope's dispose is then a no-op
      return Tensor.zeros([2]);
    });
    kept.dispose();
    expect(live()).toBe(base);
  });

  it('cross-device use gives a clear error (without a GPU: CUDA is unavailable, named by the caller)', () => {
    const t = Tensor.fromArray(new Float32Array(4), [2, 2]);
    if (!cudaAvailable()) {
      expect(() => Tensor.fromArray(new Float32Array(4), [2, 2], { device: 'cuda' })).toThrow(/Tensor.fromArray: CUDA is unavailable/);
      expect(() => Tensor.fromArray(new Float32Array(4), [2, 2], { device: 'cuda', dtype: 'bfloat16' })).toThrow(/CUDA is unavailable/);
      expect(() => Tensor.zeros([2], { device: 'cuda' })).toThrow(/Tensor.zeros: CUDA is unavailable/);
      expect(() => t.to('cuda')).toThrow(/Tensor.to: CUDA is unavailable/);
      expect(() => callOp('fill', 'cuda', [], [t], [4], [0])).toThrow(/a tensor is on cpu but the op runs on cuda/);
      expect(() => new Tensor(t.buffer, [2, 2], 'float32', 'cuda')).toThrow(/new Tensor: CUDA is unavailable/);
    } else {
      const g = Tensor.fromArray(new Float32Array(4), [2, 2], { device: 'cuda' });
      const gi = Tensor.fromArray(new Int32Array([0, 1]), [2], { device: 'cuda' });
      expect(() => fused.linearCrossEntropy(t, g, gi)).toThrow(/is on cuda but h is on cpu|targets is on cuda but h is on cpu/);
      expect(() => fused.visualWords(g, t)).toThrow(/wVm is on cpu but x is on cuda/);
      expect(() => F.add(t, g)).toThrow(/a is on cpu but b is on cuda/);
      expect(() => F.matmul(t, g)).toThrow(/a is on cpu but b is on cuda/);
      expect(() => callOp('axpby', 'cpu', [t, g], [t], [4], [1, 1])).toThrow(/a tensor is on cuda but the op runs on cpu/);
      // a CUDA buffer is not a CPU buffer for the CPU addon (type tags, not instanceof)
      expect(() => rawVisualWords(a, g.buffer, t.buffer, [2, 2, 2, 1])).toThrow(/\[visual_words\] inputs\[0\] must be a cpu NativeBuffer/);
      expect(() => new Tensor(t.buffer, [2, 2], 'float32', 'cuda')).toThrow(/new Tensor: expected a cuda NativeBuffer/);
      scope(() => expect(g.to('cpu').toArray()).toEqual(new Float32Array(4)));
      g.dispose();
      gi.dispose();
    }
    t.dispose();
  });

  it("another copy of the addon's buffers are not this addon's (as the CUDA addon's are not the CPU addon's), whatever their prototype", () => {
    // a second instance of the same library (another path: a second dlopen): the same class, its own buffers. Type
    // tags, which this replaced, were constants, so they took these for their own.
    const file = process.env.VWLMM_ADDON || (require('node-gyp-build') as { path(dir: string): string }).path(root);
    const dir = tmp();
    fs.copyFileSync(file, path.join(dir, 'second.node'));
    const second = require(path.join(dir, 'second.node')) as Addon;
    expect(second).not.toBe(a);
    const theirs = new second.NativeBuffer(16), mine = new a.NativeBuffer(16);
    expect(() => a.callOp('fill', [], [], [theirs], ['float32'], [4], [0])).toThrow(/\[fill\] outputs\[0\] must be a cpu NativeBuffer/);
    expect(() => new Tensor(theirs, [4], 'float32', 'cpu')).toThrow(/expected a cpu NativeBuffer/);
    Object.setPrototypeOf(theirs, a.NativeBuffer.prototype); // passes instanceof now
    expect(() => new Tensor(theirs, [4], 'float32', 'cpu')).toThrow(/NativeBuffer.disposed: `this` must be a cpu NativeBuffer/);
    expect(() => theirs.bytes).toThrow(/NativeBuffer.bytes: `this` must be a cpu NativeBuffer/);
    expect(() => theirs.dispose()).toThrow(/NativeBuffer.dispose: `this` must be a cpu NativeBuffer/);
    Object.setPrototypeOf(mine, second.NativeBuffer.prototype);
    expect(() => mine.write(new Float32Array(4))).toThrow(/NativeBuffer.write: `this` must be a cpu NativeBuffer/);
    expect(() => second.callOp('fill', [], [], [mine], ['float32'], [4], [0])).toThrow(/must be a cpu NativeBuffer/);
    // each addon's own methods still work on its own buffers
    const disposedBy = (addon: Addon, b: NativeBuffer) => Object.getOwnPropertyDescriptor(addon.NativeBuffer.prototype, 'disposed')!.get!.call(b);
    a.NativeBuffer.prototype.dispose.call(mine);
    second.NativeBuffer.prototype.dispose.call(theirs);
    expect([disposedBy(a, mine), disposedBy(second, theirs)]).toEqual([true, true]);
  });

  it('NativeBuffer methods check `this`; objects that only look like buffers are rejected', () => {
    const fake = Object.create(a.NativeBuffer.prototype) as NativeBuffer;
    expect(() => fake.dispose()).toThrow(/NativeBuffer.dispose: `this` must be a cpu NativeBuffer/);
    expect(() => fake.bytes).toThrow(/NativeBuffer.bytes: `this` must be a cpu NativeBuffer/);
    const write = a.NativeBuffer.prototype.write;
    expect(() => write.call({}, new Float32Array(1))).toThrow(TypeError);
    expect(() => rawVisualWords(a, fake, fake, [0, 1, 1, 1])).toThrow(/inputs\[0\] must be a cpu NativeBuffer, got an object/);
    expect(() => (a.NativeBuffer as unknown as () => void)()).toThrow(TypeError);
    expect(() => new Tensor({ bytes: 64, disposed: false, device: 'cpu' } as unknown as NativeBuffer, [4], 'float32', 'cpu')).toThrow(/expected a cpu NativeBuffer/);
    const b = new a.NativeBuffer(8);
    expect(() => new Tensor(b, [4], 'float32', 'cpu')).toThrow(/holds 8 bytes but shape \[4\] of float32 needs 16/);
    expect(() => b.write(new Float32Array(1), 2.5)).toThrow(/byteOffset must be an integer/);
    expect(() => b.write(new Float32Array(1), '4' as unknown as number)).toThrow(/byteOffset must be a number/);
    b.write(new Float32Array(new SharedArrayBuffer(8)).fill(3)); // a shared buffer is a typed array too
    const detached = new Float32Array(new ArrayBuffer(8));
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    b.write(detached); // detached: 0 bytes, nothing copied
    const out = new Float32Array(2);
    b.read(out);
    expect(Array.from(out)).toEqual([3, 3]);
    b.dispose();
  });

  it('a getter that disposes the inputs while the arguments are read cannot cause a use after free', () => {
    const h = new a.NativeBuffer(16), w = new a.NativeBuffer(16);
    const vints = [2, 2, 2, 1, 0, 64];
    Object.defineProperty(vints, 3, { get: () => (h.dispose(), w.dispose(), 1) });
    // parameters are read before the buffers are looked up: the op sees the disposal
    expect(() => rawVisualWords(a, h, w, vints)).toThrow(/\[visual_words\] inputs\[0\] has been disposed/);
    const x = new a.NativeBuffer(16), y = new a.NativeBuffer(16);
    const ints = [4];
    Object.defineProperty(ints, 0, { get: () => (x.dispose(), 4) });
    expect(() => a.callOp('mul', [x, y], ['float32', 'float32'], [y], ['float32'], ints, [])).toThrow(
      /\[mul\] inputs\[0\] has been disposed/,
    );
    y.dispose();
  });

  it('sizes whose products overflow are rejected instead of wrapping (found by the fuzzer)', () => {
    const call = (...z: unknown[]) => (a.callOp as (...x: unknown[]) => unknown)(...z);
    const b = new a.NativeBuffer(64);
    // 2^31 x 2^31 elements x 4 bytes wrapped to 0 bytes and the op ran over 60-byte buffers (SIGSEGV)
    expect(() => call('softmax_backward', [b, b], ['float32', 'float32'], [b], ['float32'], [2 ** 31, 2 ** 31], [])).toThrow(RangeError);
    expect(() => call('rms_norm_forward', [b, b], ['float32', 'float32'], [b, b], ['float32', 'float32'], [2 ** 62, 4], [1e-6])).toThrow(RangeError);
    expect(() => call('fill', [], [], [b], ['float32'], [2 ** 60], [0])).toThrow(/fill/);
    expect(() => call('fill', [], [], [b], ['float32'], [1e300], [0])).toThrow(/ints\[0\] must be an integer in \[-2\^53, 2\^53\]/);
    // all strides 0: nothing bounds the batch count (2^32 tiny GEMMs ran for minutes)
    expect(() => call('matmul', [b, b, null], ['float32', 'float32', 'float32'], [b], ['float32'], [2 ** 32, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0], [1])).toThrow(
      /strideA = strideB = strideC = 0/,
    );
    expect(() => a.sgemm!(false, false, 2 ** 40, 1, 1, b, b, b)).toThrow(/\[sgemm\] M must be an integer in \[0, 2147483647\]/);
    expect(() => a.sgemm!(1 as unknown as boolean, false, 1, 1, 1, b, b, b)).toThrow(/transA must be a boolean/);
    // N x d = 2^52 x 2^12 = 2^64 elements wrapped to 0 and passed the size check of x
    expect(() => call('pseudo_image_features', [b, b, b], ['float32', 'float32', 'float32'], [b], ['float32'], [2 ** 52, 2 ** 12, 1, 2 ** 12, 0, 64], [])).toThrow(RangeError);
    expect(() => rawVisualWords(a, b, b, [1, 0, 1, 1])).toThrow(/\[visual_words\] d must be >= 1, got 0/);
    expect(() => rawVisualWords(a, b, b, [1, 1, 4, 1.5])).toThrow(/ints\[3\] must be an integer/);
    const o = new a.NativeBuffer(64);
    const ce = (ints: number[]) => call('linear_cross_entropy', [b, b, b], ['float32', 'float32', 'int32'], [o, o, o], ['float32', 'float32', 'float32'], ints, [1, 0, 0]);
    expect(() => ce([1, 1, 1, 2 ** 40, 0, 1, 0, 64])).toThrow(/ignoreIndex must be in \[-2147483648, 2147483647\]/);
    expect(() => ce([1, 1, 1, -100, 0, 1, 1e300, 64])).toThrow(/ints\[6\] must be an integer in \[-2\^53, 2\^53\]/);
    o.dispose();
    expect(() => new a.NativeBuffer(2 ** 53)).toThrow(/NativeBuffer\(bytes\): bytes must be an integer in \[0, 9e15\]/);
    expect(() => new a.NativeBuffer(2 ** 50)).toThrow(/NativeBuffer\(bytes\): out of host memory/);
    expect(() => Tensor.zeros([2 ** 30, 2 ** 30])).toThrow(/more than 2\^53 elements|NativeBuffer/);
    b.dispose();
  });

  it('an int32 input cannot be the buffer of a float output (it would be read as indices while written)', () => {
    const call = (...z: unknown[]) => (a.callOp as (...x: unknown[]) => unknown)(...z);
    const src = new a.NativeBuffer(16), idx = new a.NativeBuffer(8);
    idx.write(new Int32Array([0, 1]));
    expect(() => call('gather_rows', [src, idx], ['float32', 'int32'], [idx], ['float32'], [2, 2, 1], [])).toThrow(
      /outputs\[0\] is the buffer of an input of another dtype \(float32 vs int32\)/,
    );
    // the same buffer with the same dtype is allowed (axpby's Z = Y)
    call('axpby', [src, src], ['float32', 'float32'], [src], ['float32'], [4], [1, 1]);
    src.dispose();
    idx.dispose();
  });

  it('hostile option objects and arguments give errors that name the call', () => {
    const t = Tensor.fromArray(new Float32Array(6), [2, 3]);
    expect(() => Tensor.fromArray(new Float32Array(4), [2, 2], null as never)).toThrow(/Tensor.fromArray: expected an object/);
    expect(() => Tensor.zeros([2], 5 as never)).toThrow(/Tensor.zeros: expected an object/);
    expect(() => F.matmul(t, t, null as never)).toThrow(/F.matmul: expected an object of options \(known: transA, transB\) for options/);
    expect(() => F.activation(t, 'toString' as never)).toThrow(/F.activation: expected gelu/);
    scope(() => expect(() => F.rope(Tensor.zeros([1, 1, 1, 2]), NaN)).toThrow(/F.rope: expected a finite number for theta/));
    expect(() => F.slice(t, Symbol('x') as never, 0, 1)).toThrow(/F.slice: expected an integer for axis/);
    expect(() => F.concat([, t] as never, 0)).toThrow(/F.concat: expected a Tensor for xs\[0\] but received undefined/);
    expect(() => F.linearCrossEntropy(0.5 as never, t, t)).toThrow(/F.linearCrossEntropy: expected a Tensor for h/);
    expect(() => callOp('fill', 'cpu', 3 as never, [t])).toThrow(/callOp \[fill\]: expected an array of Tensors/);
    expect(() => fused.visualWords(Object.create(null), t)).toThrow(/fused.visualWords: expected a Tensor \[N, d\] for x but received \[object Object\]/);
    expect(() => t.to('cpu', 'int32')).toThrow(/Tensor.to: expected a float dtype/);
    t.dispose();
    const tx = tryCuda(); // loading a missing CUDA addon is never an error by itself
    expect(tx === null || typeof tx.backendInfo === 'function').toBe(true);
  });
});
