// The trainer's op programs (TrainerOptions.replay, src/train/replay.ts): a stage of VwLmm.loss on model batches, or
// with its own loss and Stage.prepare, records its steps per batch shape and replays them natively, and trains to the
// same weights, bit for bit, as the same run in JavaScript; a step that is not the same for every batch, a non-finite
// step, gradient accumulation or replay: false leave the stage in JavaScript, with the same numbers.
import { describe, expect, it, vi } from 'vitest';
import { memoryStats, OpProgram, setAsync } from '../../src';
import { cpu } from '../../src/native';
import * as F from '../../src/functional';
import { ModelBatch, VwLmm } from '../../src/model/vwlmm';
import { scope, Tensor } from '../../src/tensor';
import { REPLAY_MAX_POOL_GROWTH, REPLAY_MAX_SHAPES, StageReplay } from '../../src/train/replay';
import { Stage, Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData } from './support/tiny';

const { tokenizer, makeBatch, samples } = tinyData(16);
const cfg = tinyConfig(tokenizer.vocabSize);
const all = { visionTower: true, projector: true, llm: true, vmHead: true };

/** Trains a fresh model (same seed every time) on `stages`; its weights, the log's replay and nonfinite records, and how many replays ran. */
function train(stages: Stage[], replay: boolean) {
  const live0 = memoryStats().cpu.liveBuffers;
  const model = VwLmm.create(cfg, 11);
  const logs: Record<string, unknown>[] = [];
  const replays = vi.spyOn(OpProgram.prototype, 'replay');
  try {
    new Trainer(model, stages, { seed: 5, replay, onLog: (r) => logs.push(r) }).run();
    const weights = model.parameters().map((p) => Float32Array.from(p.toArray()));
    model.dispose();
    expect(memoryStats().cpu.liveBuffers, 'native buffers left after the run').toBe(live0);
    return { weights, logs: logs.filter((r) => r.type === 'replay' || r.type === 'nonfinite'), losses: logs.filter((r) => r.type === 'train').map((r) => r.loss), replays: replays.mock.calls.length };
  } finally {
    replays.mockRestore();
  }
}
/** A text-only batch of B x T tokens drawn from `k`, each row's next token its target. */
function textOnlyBatch(B: number, T: number, k: number): ModelBatch {
  const tokenIds = Int32Array.from({ length: B * T }, (_, i) => 1 + ((i * 7 + k) % (tokenizer.vocabSize - 1)));
  const targets = Int32Array.from({ length: B * T }, (_, i) => ((i + 1) % T === 0 ? -100 : tokenIds[i + 1]));
  return { B, T, tokenIds, attentionMask: new Int32Array(B * T).fill(1), imagePositions: new Int32Array(0), pixelValues: null, targets };
}
const same = (a: Float32Array[], b: Float32Array[]) => a.length === b.length && a.every((x, i) => x.every((v, j) => Object.is(v, b[i][j])));

describe('Trainer: steps replayed as op programs', () => {
  it('model batches: programs per batch shape, the same weights and losses bit for bit as in JavaScript', () => {
    const stage: Stage = { name: 'q', size: samples.length, makeBatch, steps: 24, batchSize: 2, lr: 3e-3, trainable: all };
    const js = train([stage], false), replayed = train([stage], true);
    expect(js.replays).toBe(0);
    // batches of several lengths: each shape is recorded twice before it replays, so fewer than 24 - 3 replays
    expect(replayed.replays).toBeGreaterThan(0);
    expect(replayed.logs.filter((r) => r.type === 'replay')).toMatchObject([
      { stage: 'q', used: true },
      // the stage's summary: step 1 in JavaScript, each shape's first two steps recorded, the rest replayed
      { stage: 'q', summary: true, javascript: 1, recorded: expect.any(Number), replayed: replayed.replays },
    ]);
    const summary = replayed.logs.at(-1)!;
    expect((summary.recorded as number) + (summary.replayed as number)).toBe(23);
    // every program kept was recorded twice; a shape seen once more than its recording is left in JavaScript
    expect(summary.programs as number).toBeGreaterThan(0);
    expect(summary.recorded as number).toBeGreaterThanOrEqual(2 * (summary.programs as number));
    expect(replayed.losses).toEqual(js.losses);
    expect(same(replayed.weights, js.weights)).toBe(true);
  });

  it("as graphs (CUDA's; on the CPU the host graphs that stand in for them, in async mode): the same weights and losses", () => {
    const stage: Stage = { name: 'g', size: samples.length, makeBatch, steps: 16, batchSize: 2, lr: 3e-3, trainable: all };
    const js = train([stage], false);
    const wasAsync = setAsync('cpu', true), wasHost = cpu().programHostGraphs(true);
    let graphed: ReturnType<typeof train>;
    try {
      graphed = train([stage], true);
    } finally {
      cpu().programHostGraphs(wasHost);
      setAsync('cpu', wasAsync);
    }
    const summary = graphed.logs.at(-1)!;
    // every replay launched a graph (a program is captured at its first replay: one never replayed has none yet)
    expect(summary).toMatchObject({ summary: true, graphLaunches: summary.replayed });
    expect(summary.graphWhy).toBeUndefined();
    expect(summary.replayed as number).toBeGreaterThan(0);
    expect(summary.graphs as number).toBeGreaterThan(0);
    expect(summary.graphs as number).toBeLessThanOrEqual(summary.programs as number);
    expect(graphed.losses).toEqual(js.losses);
    expect(same(graphed.weights, js.weights)).toBe(true);
  });

  it("while replaying, the next step's batch is made before this step's loss is read (the host's work overlaps the device's)", () => {
    const events: string[] = [];
    let made = 0;
    const stage: Stage = { name: 'ahead', size: samples.length, makeBatch: (idx) => (events.push(`batch ${++made}`), makeBatch(idx)), steps: 10, batchSize: 2, lr: 3e-3, trainable: all };
    const model = VwLmm.create(cfg, 11);
    try {
      new Trainer(model, [stage], { seed: 5, onLog: (r) => r.type === 'train' && events.push(`step ${r.step}`) }).run();
    } finally {
      model.dispose();
    }
    // step 1 in JavaScript (its batch made as it starts); from step 2 on (recorded or replayed) step k + 1's batch is
    // made before step k is logged; never one batch too many
    expect(made).toBe(10);
    // per step k: the last batch made before it was logged, k (made as it started) or k + 1 (made ahead)
    const lastBatch = events.flatMap((e, i) => (e.startsWith('step') ? [Number(events.slice(0, i).filter((x) => x.startsWith('batch')).pop()!.split(' ')[1]) - Number(e.split(' ')[1])] : []));
    expect(lastBatch[0]).toBe(0); // the first step runs in JavaScript before replay is on
    expect(lastBatch.filter((d) => d === 1).length).toBeGreaterThan(0);
    expect(lastBatch.every((d) => d === 0 || d === 1)).toBe(true);
    expect(lastBatch.at(-1)).toBe(0); // the last step makes none ahead
  });

  it('batches whose arrays have the same sizes but another B x T get programs of their own', () => {
    // text only: 2 x 12 and 3 x 8 tokens, arrays of the same byte sizes; three steps of the first shape, then both
    let k = 0;
    const textBatch = () => textOnlyBatch(...(k++ < 3 || k % 2 === 0 ? [2, 12] : [3, 8]) as [number, number], k);
    const stage: Stage = { name: 'text', size: samples.length, makeBatch: textBatch, steps: 12, batchSize: 2, lr: 3e-3, trainable: { llm: true } };
    const js = train([stage], false);
    k = 0;
    const replayed = train([stage], true);
    expect(replayed.replays).toBeGreaterThan(0);
    expect(replayed.losses).toEqual(js.losses);
    expect(same(replayed.weights, js.weights)).toBe(true);
  });

  it(`batches whose programs' pool outgrows ${REPLAY_MAX_POOL_GROWTH} x its largest step's (T growing step after step), or of more than ${REPLAY_MAX_SHAPES} shapes, go on in JavaScript: the same numbers, the programs freed`, () => {
    // text-only batches of 2 x T tokens, T = 6, 12, 18, ...: each length's blocks are new
    let k = 0;
    const textBatch = () => textOnlyBatch(2, 6 * ++k, k);
    const stage: Stage = { name: 'lengths', size: samples.length, makeBatch: textBatch, steps: 30, batchSize: 2, lr: 3e-3, trainable: { llm: true } };
    const js = train([stage], false);
    k = 0;
    const replayed = train([stage], true); // (train checks that no native buffer is left)
    expect(replayed.logs.filter((r) => r.used === false)).toMatchObject([{ stage: 'lengths', why: expect.stringMatching(/pool grew to \d+ bytes, more than 4 x its largest step's \d+/) }]);
    expect(replayed.logs.at(-1)).toMatchObject({ summary: true, programs: 0 });
    expect(replayed.losses).toEqual(js.losses);
    expect(same(replayed.weights, js.weights)).toBe(true);
    // the shapes' bound, on a StageReplay of 3: a fourth shape's step runs in JavaScript, its gradients zeroed first
    const w = Tensor.fromArray(Float32Array.from({ length: 16 }, (_, i) => i / 16), [4, 4]);
    w.requiresGrad = true;
    const r = new StageReplay('cpu', 4, { maxShapes: 3, maxPoolGrowth: 1000 });
    const step = (rows: number) => () => scope(() => F.sum(F.matmul(Tensor.fromArray(new Float32Array(rows * 4).fill(1), [rows, 4]), w)).backward());
    const grads: number[][] = [];
    const records: unknown[] = [];
    for (const rows of [1, 2, 2, 3, 1, 4, 2]) {
      const rec = r.run([new Float32Array(rows * 4).fill(1)], step(rows));
      if (rec) records.push(rec);
      grads.push(Array.from(w.grad!.toArray()));
      if (r.afterStep([w])) {
        w.grad!.dispose();
        w.grad = null;
      }
    }
    expect(records).toEqual([{ used: true, ops: expect.any(Number), poolBytes: expect.any(Number) }, { used: false, why: "the stage's batches came in more than 3 shapes (sizes of B x T and data): a program for each would hold its memory for the stage" }]);
    expect(r.phase).toBe('off');
    // each step's gradient is its own batch's (rows x the column sums of ones): never the last step's added in
    expect(grads.map((g) => g[0])).toEqual([1, 2, 2, 3, 1, 4, 2]);
    r.dispose();
    w.grad?.dispose();
    w.dispose();
  });

  it('a step whose calls change from batch to batch is found by its two recordings, and the stage goes on in JavaScript', () => {
    // the loss scales by a number drawn per step (a float parameter of F.scale), which no data array carries
    let calls = 0;
    const stage: Stage = {
      name: 'drift', size: samples.length, steps: 8, batchSize: 2, lr: 3e-3, trainable: { projector: true, vmHead: true, llm: true },
      prepare: (idx) => [makeBatch(idx).tokenIds],
      loss: (m, idx, data) => {
        const ids = data![0] as Int32Array;
        const emb = m.model.embed_tokens.forward(Tensor.fromArray(ids, [ids.length]));
        return F.scale(F.sum(F.mul(emb, emb)), 1 + (calls++ % 3));
      },
    };
    const replayed = train([stage], true);
    calls = 0;
    const js = train([stage], false);
    expect(replayed.replays).toBe(0);
    expect(replayed.logs).toMatchObject([
      { type: 'replay', stage: 'drift', used: false, why: expect.stringMatching(/differ: .*float parameters/) },
      { type: 'replay', stage: 'drift', summary: true, replayed: 0, programs: 0 },
    ]);
    expect(same(replayed.weights, js.weights)).toBe(true);
  });

  it('a non-finite step while replaying is skipped as in JavaScript, and the stage goes on in JavaScript', () => {
    // one sample's pixels are NaN: every step that draws it is non-finite
    const poisoned = (idx: number[]) => {
      const b = makeBatch(idx);
      if (idx.includes(3) && b.pixelValues) b.pixelValues.fill(NaN, 0, 10);
      return b;
    };
    const stage: Stage = { name: 'nan', size: samples.length, makeBatch: poisoned, steps: 30, batchSize: 2, lr: 3e-3, trainable: all };
    const js = train([stage], false), replayed = train([stage], true);
    const skipped = js.logs.filter((r) => r.type === 'nonfinite');
    expect(skipped.length).toBeGreaterThan(0);
    expect(replayed.logs.filter((r) => r.type === 'nonfinite').map((r) => r.step)).toEqual(skipped.map((r) => r.step));
    expect(same(replayed.weights, js.weights)).toBe(true);
  });

  it("a prepare that gives no array of typed arrays is an error naming the stage", () => {
    const stage: Stage = {
      name: 'bad', size: samples.length, steps: 2, batchSize: 2, lr: 3e-3, trainable: { llm: true },
      prepare: () => [[1, 2, 3]] as unknown as ArrayBufferView[],
      loss: (m) => F.sum(m.lm_head.weight),
    };
    const model = VwLmm.create(cfg, 11);
    try {
      expect(() => new Trainer(model, [stage], { seed: 5 }).run()).toThrow(/stage 'bad': expected an array of typed arrays .* for the value of prepare\(indices\)/);
    } finally {
      model.dispose();
    }
  });

  it('gradient accumulation and replay: false run in JavaScript', () => {
    const accum: Stage = { name: 'acc', size: samples.length, makeBatch, steps: 6, batchSize: 2, gradAccum: 2, lr: 3e-3, trainable: all };
    expect(train([accum], true).replays).toBe(0);
    const plain: Stage = { name: 'p', size: samples.length, makeBatch, steps: 6, batchSize: 2, lr: 3e-3, trainable: all };
    expect(train([plain], false).replays).toBe(0);
  });
});
