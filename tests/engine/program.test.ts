// Op programs (src/program.ts, native/napi/program.h): a recorded forward + backward replayed natively computes what
// the function computes for the same inputs, bit for bit, on every backend; its memory is its own; what a replay
// could not repeat is refused with the reason, and the recorded function still runs as it would unrecorded.
import { describe, expect, it } from 'vitest';
import { callOp, F, isAsync, memoryStats, OpProgram, scope, setAsync, synchronize, Tensor } from '../../src';
import type { Device } from '../../src';
import { backends } from '../support/backends';
import { cpu } from '../../src/native';
import { rngFor } from '../support/random';

const rng = rngFor('op-program');
const devices = [...new Set(backends.filter((b) => b.dtype === 'float32').map((b) => ({ device: b.device, available: b.available, name: b.device })))];
const normals = (n: number, s = 1) => Float32Array.from({ length: n }, () => rng.normal() * s);
const live = (device: Device) => memoryStats()[device]?.liveBuffers ?? 0;

/** A small model: parameters with gradients kept allocated (as the Trainer's replay keeps them), and an output slot. */
function model(device: Device, d: number, hidden: number, classes: number) {
  const param = (shape: number[], s: number) => {
    const t = Tensor.fromArray(normals(shape.reduce((a, b) => a * b, 1), s), shape, { device });
    t.requiresGrad = true;
    return t;
  };
  const w1 = param([hidden, d], 0.5), b1 = param([hidden], 0.1), w2 = param([classes, hidden], 0.5);
  const params = [w1, b1, w2];
  const out = Tensor.zeros([2], { device });
  // x [n, d] and targets [n] from the step's data; loss and a second value written into `out` (the Trainer's put)
  const step = (x: Float32Array, targets: Int32Array, scale = 1) => scope(() => {
    const n = targets.length;
    const h = F.quickGelu(F.linear(Tensor.fromArray(x, [n, d], { device }), w1, b1));
    const ce = F.linearCrossEntropy(h, w2, Tensor.fromArray(targets, [n], { device }));
    const loss = F.add(ce, F.scale(F.sum(F.mul(h, h)), scale * 1e-3));
    callOp('copy_2d', device, [loss], [out], [1, 1, 1, 1, 0, 0, 0]);
    callOp('copy_2d', device, [ce], [out], [1, 1, 1, 1, 0, 1, 0]);
    loss.backward();
  });
  const zeroGrads = () => params.forEach((p) => p.grad && callOp('fill', device, [], [p.grad], [p.grad.size], [0]));
  const read = () => [out, ...params.map((p) => p.grad!)].map((t) => Float32Array.from(t.toArray()));
  const dispose = () => [...params, ...params.map((p) => p.grad), out].forEach((t) => t?.dispose());
  return { params, step, zeroGrads, read, dispose };
}

/**
 * fn in async mode (graphs need it) with graphs: CUDA's own, or on the CPU the host graphs that stand in for them
 * (programHostGraphs: a capture keeps the calls, a launch runs them), so CI runs the capture, staging and launch logic.
 */
function withGraphs(device: Device, fn: () => void): void {
  const wasAsync = setAsync(device, true);
  const addon = device === 'cpu' ? cpu() : null;
  const wasHost = addon?.programHostGraphs(true);
  try {
    fn();
  } finally {
    if (addon) addon.programHostGraphs(wasHost!);
    setAsync(device, wasAsync);
  }
}

const data = (n: number, d: number, classes: number) => ({ x: normals(n * d), t: Int32Array.from({ length: n }, () => rng.int(classes)) });
const same = (a: Float32Array[], b: Float32Array[]) => a.length === b.length && a.every((x, i) => x.length === b[i].length && x.every((v, j) => Object.is(v, b[i][j])));

describe('op programs: record once, replay natively', () => {
  for (const dv of devices) {
    const run = dv.available ? it : it.skip;

    run(`${dv.name}: a replay computes what the function computes for the same inputs, bit for bit`, () => {
      const live0 = live(dv.device);
      const [n, d, hidden, classes] = [5, 7, 11, 13];
      const m = model(dv.device, d, hidden, classes);
      const first = data(n, d, classes);
      m.step(first.x, first.t); // the gradients exist before the recording: external buffers it accumulates into
      const x = new Float32Array(n * d), t = new Int32Array(n);
      x.set(first.x);
      t.set(first.t);
      const program = OpProgram.record(dv.device, [x, t], () => {
        m.zeroGrads();
        m.step(x, t);
      });
      // CUDA, async mode: the recording's own data checks (even those that pass) are pending until a synchronisation,
      // and a graph is captured by the first replay that finds none pending (the Trainer reads after every step)
      synchronize(dv.device);
      const info = program.info();
      expect(info.ops).toBeGreaterThan(10);
      expect(info.inputBytes).toEqual([n * d * 4, n * 4]);
      expect(info.externals).toBe(7); // w1, b1, w2, their gradients, and out
      for (let k = 0; k < 3; k++) {
        const next = data(n, d, classes);
        // new arrays each time: the replay reads the ones it is given
        program.replay([next.x, next.t]);
        const replayed = m.read();
        m.zeroGrads();
        m.step(next.x, next.t);
        const js = m.read();
        expect(same(replayed, js)).toBe(true);
        expect(Number.isFinite(replayed[0][0])).toBe(true);
      }
      // on CUDA the first replay was captured into a graph and every replay launched it (in async mode, the default)
      const g = program.info().graph;
      if (dv.device === 'cpu') expect(g).toBeNull();
      else if (isAsync(dv.device)) expect(g, JSON.stringify(g)).toMatchObject({ captured: true, launches: 3, reason: null });
      program.dispose();
      program.dispose(); // idempotent
      expect(program.disposed).toBe(true);
      expect(() => program.replay([x, t])).toThrow(/has been disposed/);
      m.dispose();
      expect(live(dv.device)).toBe(live0);
    });

    run(`${dv.name}: a graph and a replay call by call compute the same, bit for bit; graph: false never captures`, () => withGraphs(dv.device, () => {
      const [n, d, hidden, classes] = [6, 5, 9, 7];
      const m = model(dv.device, d, hidden, classes);
      const first = data(n, d, classes);
      m.step(first.x, first.t);
      const x = Float32Array.from(first.x), t = Int32Array.from(first.t);
      const fn = () => {
        m.zeroGrads();
        m.step(x, t);
      };
      const graphed = OpProgram.record(dv.device, [x, t], fn, { graph: true });
      const plain = OpProgram.record(dv.device, [x, t], fn, { graph: false, poolOf: graphed });
      synchronize(dv.device); // the recordings' pending checks (CUDA): the first replay captures
      expect(plain.differenceFrom(graphed)).toBeNull();
      for (let k = 0; k < 3; k++) {
        const next = data(n, d, classes);
        graphed.replay([next.x, next.t]);
        const a = m.read();
        plain.replay([next.x, next.t]);
        expect(same(m.read(), a)).toBe(true);
      }
      expect(plain.info().graph).toBeNull();
      const g = graphed.info().graph!;
      expect(g, JSON.stringify(g)).toMatchObject({ captured: true, launches: 3, reason: null });
      expect(g.nodes).toBeGreaterThanOrEqual(graphed.info().ops);
      expect(() => OpProgram.record(dv.device, [x, t], fn, { graph: 1 as never })).toThrow(/OpProgram.record: expected a boolean for graph/);
      graphed.dispose();
      plain.dispose();
      m.dispose();
    }));

    // a launch cannot be made to fail on CUDA; the host graphs stand in (programHostGraphs' count of failing launches)
    (dv.device === 'cpu' ? it : it.skip)(`${dv.name}: a graph whose launch fails is given up, with the reason: that replay and the later ones run call by call, to the same numbers`, () => withGraphs(dv.device, () => {
      const [n, d, hidden, classes] = [4, 6, 5, 9];
      const m = model(dv.device, d, hidden, classes);
      const first = data(n, d, classes);
      m.step(first.x, first.t);
      const x = Float32Array.from(first.x), t = Int32Array.from(first.t);
      const program = OpProgram.record(dv.device, [x, t], () => {
        m.zeroGrads();
        m.step(x, t);
      });
      const check = () => {
        const next = data(n, d, classes);
        program.replay([next.x, next.t]);
        const replayed = m.read();
        m.zeroGrads();
        m.step(next.x, next.t);
        expect(same(replayed, m.read())).toBe(true);
      };
      check();
      expect(program.info().graph).toMatchObject({ captured: true, launches: 1, reason: null });
      cpu().programHostGraphs(true, 1); // the next launch fails
      for (let k = 0; k < 3; k++) check();
      const g = program.info().graph!;
      expect(g).toMatchObject({ captured: false, nodes: 0, launches: 1 });
      expect(g.reason).toMatch(/^a launch failed: host graphs: a launch made to fail/);
      expect(() => cpu().programHostGraphs(true, -1)).toThrow(/expected a count of launches to fail/);
      program.dispose();
      m.dispose();
    }));

    run(`${dv.name}: a graph-launched step's data checks are raised at the next read, naming the op`, () => withGraphs(dv.device, () => {
      const device = dv.device;
      {
        scope(() => {
          const wv = normals(5 * 3);
          const W = Tensor.fromArray(wv, [5, 3], { device });
          const out = Tensor.zeros([2, 3], { device });
          const ids = Int32Array.of(0, 1);
          const rows = (a: number, b: number) => [...wv.subarray(3 * a, 3 * a + 3), ...wv.subarray(3 * b, 3 * b + 3)];
          const program = OpProgram.record(device, [ids], () => scope(() => {
            const y = F.embedding(Tensor.fromArray(ids, [2], { device }), W);
            callOp('axpby', device, [y, y], [out], [6], [1, 0]);
          }));
          synchronize(device); // the recording's pending id check (CUDA): the first replay captures
          program.replay([Int32Array.of(4, 2)]);
          expect(Array.from(out.toArray())).toEqual(rows(4, 2));
          program.replay([Int32Array.of(1, 7)]);
          expect(() => out.toArray()).toThrow(/^\[embedding_forward\] ids\[1\] = 7 is outside \[0, 5\) \(an asynchronous check/);
          program.replay([Int32Array.of(3, 0)]);
          expect(Array.from(out.toArray())).toEqual(rows(3, 0));
          expect(program.info().graph).toMatchObject({ captured: true, launches: 3 });
          program.dispose();
        });
      }
    }));

    run(`${dv.name}: an upload of a slice of an input is replayed from that slice of the new input`, () => {
      const device = dv.device;
      const out = Tensor.zeros([4], { device });
      const input = normals(10);
      const program = OpProgram.record(device, [input], () => scope(() => {
        const a = Tensor.fromArray(input.subarray(3, 7), [4], { device });
        const c = Tensor.fromArray(Float32Array.of(1, 2, 3, 4), [4], { device }); // a constant
        callOp('axpby', device, [a, c], [out], [4], [2, 1]);
      }));
      expect(program.info().constantBytes).toBe(16);
      const next = normals(10);
      program.replay([next]);
      expect(Array.from(out.toArray())).toEqual(Array.from({ length: 4 }, (_, i) => Math.fround(2 * next[3 + i] + (i + 1))));
      program.dispose();
      out.dispose();
    });

    run(`${dv.name}: the program's memory is its own: tensors made after the recording are never written by a replay`, () => {
      const device = dv.device;
      const m = model(device, 6, 9, 5);
      const first = data(4, 6, 5);
      m.step(first.x, first.t);
      const x = first.x.slice(), t = first.t.slice();
      const live0 = live(device);
      const program = OpProgram.record(device, [x, t], () => m.step(x, t));
      // the recording's temporaries went back to the program, not to the backend: none is live, none reused below
      expect(live(device)).toBe(live0);
      const others = Array.from({ length: 40 }, (_, k) => Tensor.fromArray(new Float32Array(6 * 9).fill(k + 0.5), [6 * 9], { device }));
      program.replay([x, t]);
      program.replay([x, t]);
      expect(others.every((o, k) => (o.toArray() as Float32Array).every((v) => v === k + 0.5))).toBe(true);
      others.forEach((o) => o.dispose());
      expect(program.info().poolBytes).toBeGreaterThan(0);
      program.dispose();
      m.dispose();
    });

    run(`${dv.name}: programs of other shapes share one pool, alternate, and each still computes what its function does`, () => {
      const device = dv.device;
      const m = model(device, 5, 8, 4);
      const first = data(3, 5, 4);
      m.step(first.x, first.t);
      const shapes = [3, 6, 4];
      const programs: OpProgram[] = [];
      for (const n of shapes) {
        const d0 = data(n, 5, 4);
        programs.push(OpProgram.record(device, [d0.x, d0.t], () => {
          m.zeroGrads();
          m.step(d0.x, d0.t);
        }, { poolOf: programs[0] }));
      }
      // one pool: the later recordings reused the first one's blocks where their classes matched
      const pools = programs.map((p) => p.info().poolBytes);
      expect(new Set(pools).size).toBe(1);
      for (let k = 0; k < 6; k++) {
        const n = shapes[k % 3], next = data(n, 5, 4);
        programs[k % 3].replay([next.x, next.t]);
        const replayed = m.read();
        m.zeroGrads();
        m.step(next.x, next.t);
        expect(same(replayed, m.read())).toBe(true);
      }
      // a recording that shares the pool and leaves a buffer alive: no program of the pool replays until it is freed
      let left: Tensor | null = null;
      const r = OpProgram.tryRecord(device, [], () => {
        left = Tensor.zeros([64], { device });
      }, { poolOf: programs[0] });
      expect('why' in r).toBe(true);
      const d1 = data(3, 5, 4);
      expect(() => programs[0].replay([d1.x, d1.t])).toThrow(/1 buffer\(s\) made while recording a program that shares this one's memory are still alive/);
      left!.dispose();
      expect(() => programs[0].replay([d1.x, d1.t])).not.toThrow();
      expect(() => OpProgram.record(device, [], () => undefined, { poolOf: {} as OpProgram })).toThrow(/poolOf/);
      programs.forEach((p) => p.dispose());
      m.dispose();
    });

    run(`${dv.name}: two recordings of the same calls agree; another parameter or constant is the difference named`, () => {
      const device = dv.device;
      const m = model(device, 4, 6, 3);
      const a = data(3, 4, 3), b = data(3, 4, 3);
      b.t[0] = (a.t[0] + 1) % 3; // p4 and p5 differ only if the two steps' targets do (random draws match 1 time in 27)
      m.step(a.x, a.t);
      const rec = (x: Float32Array, t: Int32Array, scale = 1) => OpProgram.record(device, [x, t], () => {
        m.zeroGrads();
        m.step(x, t, scale);
      });
      const p1 = rec(a.x, a.t), p2 = rec(b.x, b.t), p3 = rec(b.x, b.t, 2);
      expect(p1.differenceFrom(p2)).toBeNull();
      expect(p1.differenceFrom(p3)).toMatch(/float parameters/);
      // the targets uploaded from a copy (not an input): a constant, and two steps' constants differ
      const p4 = OpProgram.record(device, [a.x], () => m.step(a.x, a.t.slice()));
      const p5 = OpProgram.record(device, [b.x], () => m.step(b.x, b.t.slice()));
      expect(p4.differenceFrom(p5)).toMatch(/not an input/);
      expect(p1.differenceFrom(p4)).not.toBeNull();
      [p1, p2, p3, p4, p5].forEach((p) => p.dispose());
      m.dispose();
    });

    run(`${dv.name}: what a replay could not repeat is refused with its reason, after the function ran as it would`, () => {
      const device = dv.device;
      const live0 = live(device);
      const keepOut = Tensor.zeros([3], { device });
      // a read to the host: the value read is right, the recording is refused
      let read: number[] = [];
      const r1 = OpProgram.tryRecord(device, [], () => scope(() => {
        read = Array.from(F.scale(Tensor.fromArray(Float32Array.of(1, 2, 3), [3], { device }), 2).toArray());
      }));
      expect(read).toEqual([2, 4, 6]);
      expect('why' in r1 && r1.why).toMatch(/read a buffer back to the host/);
      // a tensor left alive: still usable and freed as usual afterwards
      let left: Tensor | null = null;
      const r2 = OpProgram.tryRecord(device, [], () => {
        left = Tensor.fromArray(Float32Array.of(5, 6, 7), [3], { device });
      });
      expect('why' in r2 && r2.why).toMatch(/1 buffer\(s\) created during it are still alive/);
      expect(Array.from(left!.toArray())).toEqual([5, 6, 7]);
      left!.dispose();
      // an external buffer disposed during the recording
      const ext = Tensor.fromArray(Float32Array.of(1, 1, 1), [3], { device });
      const r3 = OpProgram.tryRecord(device, [], () => {
        callOp('axpby', device, [ext, ext], [keepOut], [3], [1, 1]);
        ext.dispose();
      });
      expect('why' in r3 && r3.why).toMatch(/disposed during it/);
      expect(() => OpProgram.record(device, [], () => keepOut.toArray())).toThrow(/cannot be replayed: .*read a buffer back/);
      // an error of the function is its own, and no recording is left running
      expect(() => OpProgram.record(device, [], () => {
        throw new RangeError('from the function');
      })).toThrow('from the function');
      expect(() => OpProgram.record(device, [], () => {
        OpProgram.record(device, [], () => undefined);
      })).toThrow(/already recording/);
      expect(() => OpProgram.record(device, [], (async () => undefined) as unknown as () => void)).toThrow(/synchronous/);
      expect(() => OpProgram.record(device, [new DataView(new ArrayBuffer(4)) as unknown as Float32Array], () => undefined)).toThrow(/inputs\[0\]/);
      // a buffer the program uses, disposed after the recording; inputs of other sizes
      const target = Tensor.zeros([3], { device });
      const input = Float32Array.of(1, 2, 3);
      const p = OpProgram.record(device, [input], () => scope(() => {
        callOp('axpby', device, [Tensor.fromArray(input, [3], { device }), target], [target], [3], [1, 1]);
      }));
      expect(() => p.replay([])).toThrow(/0 inputs for a program recorded with 1/);
      expect(() => p.replay([new Float32Array(4)])).toThrow(/inputs\[0\] holds 16 bytes, the recording's 12/);
      // the recorded element type too: an Int32Array's bytes would be read as floats
      expect(() => p.replay([new Int32Array(3)])).toThrow(/^OpProgram\.replay: expected the element type it was recorded with, Float32Array .* for inputs\[0\] but received Int32Array\(3\)$/);
      target.dispose();
      expect(() => p.replay([input])).toThrow(/has been disposed since/);
      p.dispose();
      keepOut.dispose();
      expect(live(device)).toBe(live0);
    });
  }
});
