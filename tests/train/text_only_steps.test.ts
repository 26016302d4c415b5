// Text-only batches among image batches (LLaVA's mix665k, grouped by modality as its finetune.sh does): LLaVA runs a
// text-only sample through the projector on a zero dummy image, so the parts the batch does not reach (projector,
// vm_head, the vision tower when it trains) get a zero gradient, not none, and AdamW updates them (step count and
// moments advance). A replayed step does so because its gradients stay allocated; a step in JavaScript (--no-replay,
// and the first step after a resume) must do the same: replay on or off, interrupted right before a text-only step and
// resumed or not, the run ends with the same weights and the same AdamW state, bit for bit. And a text-only step logs
// KL 0, not the previous step's.
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';
import { cudaAvailable } from '../../src';
import { batchIndices, readTrainerState, Stage, Trainable, Trainer } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { mixedData } from './support/mixed';
import { tinyConfig } from './support/tiny';

const tmp = tempDirs('text-only');
const d = mixedData();
const STEPS = 24, SEED = 3;

const stageOf = (trainable: Trainable): Stage => ({ name: 'mix', size: d.samples.length, makeBatch: d.makeBatch, modalityLengths: d.modalityLengths, steps: STEPS, batchSize: 2, lr: 3e-3, weightDecay: 0.1, trainable });
/** Per step (0-based), whether its batch is text-only. */
const textOnly = (s: Stage) => Array.from({ length: STEPS }, (_, k) => d.isTextOnly(batchIndices(SEED, s, k, 0)));

/** A run (stopped after `stopAt` steps and resumed from its checkpoint in a new process's way, when given): its final weights, optimizer state and log. */
function run(s: Stage, replay: boolean, stopAt?: number, device: 'cpu' | 'cuda' = 'cpu') {
  const out = tmp(), logs: Record<string, unknown>[] = [];
  const opts = { seed: SEED, outDir: out, replay, checkpointFiles: { tokenizer: d.json }, onLog: (r: Record<string, unknown>) => logs.push(r) };
  const m = VwLmm.create(tinyConfig(d.tokenizer.vocabSize), 5, { device });
  new Trainer(m, [s], { ...opts, stopAfterSteps: stopAt }).run();
  m.dispose();
  const ck = path.join(out, 'checkpoint');
  if (stopAt !== undefined) {
    // the weights fingerprint is read from the device's parameters (one transfer)
    const resumed = loadCheckpoint(ck, { device }).model;
    new Trainer(resumed, [s], opts).run(readTrainerState(ck));
    resumed.dispose();
  }
  return outcome(out, logs);
}

/** As `vwlmm train` runs: batches loaded asynchronously (loadBatch), runAsync, a resume through autoResume. */
async function runAsync(s: Stage, replay: boolean, stopAt?: number) {
  const out = tmp(), logs: Record<string, unknown>[] = [];
  const stage: Stage = { ...s, makeBatch: undefined, loadBatch: async (idx) => d.makeBatch(idx) };
  const opts = { seed: SEED, outDir: out, replay, checkpointFiles: { tokenizer: d.json }, onLog: (r: Record<string, unknown>) => logs.push(r) };
  const m = VwLmm.create(tinyConfig(d.tokenizer.vocabSize), 5);
  await new Trainer(m, [stage], { ...opts, stopAfterSteps: stopAt }).runAsync();
  if (stopAt !== undefined) await new Trainer(m, [stage], { ...opts, autoResume: true }).runAsync();
  m.dispose();
  return outcome(out, logs);
}

function outcome(out: string, logs: Record<string, unknown>[]) {
  const ck = path.join(out, 'checkpoint');
  const model = loadCheckpoint(ck).model;
  const weights = new Map([...model.namedParameters()].map(([n, p]) => [n, Float32Array.from(p.toArray() as Float32Array)]));
  model.dispose();
  return { weights, optimizer: readSafetensors(path.join(ck, 'optimizer.safetensors')), logs };
}

/** Bit-for-bit equality of two runs' weights and optimizer entries (moments and step counts), naming the first difference. */
function expectSame(a: ReturnType<typeof outcome>, b: ReturnType<typeof outcome>, what: string): void {
  expect([...b.weights.keys()], what).toEqual([...a.weights.keys()]);
  for (const [n, w] of a.weights) expect(Buffer.compare(Buffer.from(w.buffer), Buffer.from(b.weights.get(n)!.buffer)), `${what}: weight ${n}`).toBe(0);
  expect([...b.optimizer.keys()].sort(), what).toEqual([...a.optimizer.keys()].sort());
  for (const [k, t] of a.optimizer) {
    const u = b.optimizer.get(k)!;
    expect(Buffer.compare(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength), Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength)), `${what}: optimizer ${k}`).toBe(0);
  }
}

const trainRecords = (r: ReturnType<typeof outcome>) => r.logs.filter((x) => x.type === 'train').map((x) => ({ step: x.step, loss: x.loss, ce: x.ce, kl: x.kl, gradNorm: x.gradNorm }));

describe('text-only batches: every trained part steps (a zero gradient), in JavaScript as in a replayed step', () => {
  // On CUDA (bf16 by default, replays as CUDA graphs): the same rule, and a resume checked against the fingerprint of
  // the device's weights. Not yet run on a GPU (benchmarks/gpu/device_check.sh runs this file).
  it.skipIf(!cudaAvailable())('on CUDA: replay on / off and resumed before a text-only step end the same, bit for bit', () => {
    const s = stageOf({ projector: true, vmHead: true });
    const kinds = textOnly(s);
    const cut = kinds.findIndex((t, k) => k >= 3 && t && !kinds[k - 1]);
    const replayed = run(s, true, undefined, 'cuda'), js = run(s, false, undefined, 'cuda'), resumed = run(s, true, cut, 'cuda');
    expectSame(replayed, js, 'cuda: replay vs --no-replay');
    expectSame(replayed, resumed, 'cuda: resumed before a text-only step');
  });

  for (const [name, trainable] of [['projector + vm_head (a text-only batch reaches none of them)', { projector: true, vmHead: true }], ['projector + LLM + vm_head + vision tower', { visionTower: true, projector: true, llm: true, vmHead: true }]] as const) {
    it(`${name}: replay on / off, and resumed right before a text-only step, end with the same weights and AdamW state`, () => {
      const s = stageOf(trainable);
      const kinds = textOnly(s);
      // a text-only step after an image step, not the first few (the resume then starts with a text-only step)
      const cut = kinds.findIndex((t, k) => k >= 3 && t && !kinds[k - 1]);
      expect(cut, `a text-only step after an image step in ${kinds.map((t) => (t ? 'T' : 'I')).join('')}`).toBeGreaterThan(0);
      const replayed = run(s, true), js = run(s, false);
      // every trained parameter stepped at every step: AdamW step count = the stage's steps
      const steps = [...replayed.optimizer].filter(([k]) => k.endsWith('.step')).map(([, t]) => t.data[0]);
      expect(steps.length).toBe(replayed.optimizer.size / 3);
      expect(new Set(steps)).toEqual(new Set([STEPS]));
      expectSame(replayed, js, 'replay vs --no-replay');
      expect(trainRecords(js)).toEqual(trainRecords(replayed));
      const resumed = run(s, true, cut), resumedJs = run(s, false, cut);
      expectSame(replayed, resumed, 'resumed before a text-only step (replay)');
      expectSame(replayed, resumedJs, 'resumed before a text-only step (--no-replay)');
      expect(trainRecords(resumed)).toEqual(trainRecords(replayed));
      // after the resume (its first step text-only, in JavaScript), steps are recorded and replayed again
      const replayRecords = resumed.logs.filter((r) => r.type === 'replay');
      expect(replayRecords.filter((r) => r.used === false)).toEqual([]);
      expect(replayRecords.at(-1)).toMatchObject({ summary: true, javascript: 1, replayed: expect.any(Number) });
      expect(replayRecords.at(-1)!.replayed as number).toBeGreaterThan(0);
    });
  }

  it('batches loaded asynchronously (as vwlmm train): stopped before a text-only step and resumed, the same as uninterrupted, replay on or off', async () => {
    const s = stageOf({ projector: true, llm: true, vmHead: true });
    const kinds = textOnly(s);
    const cut = kinds.findIndex((t, k) => k >= 3 && t && !kinds[k - 1]);
    const ref = run(s, true);
    for (const replay of [true, false]) {
      const [whole, resumed] = [await runAsync(s, replay), await runAsync(s, replay, cut)];
      expectSame(ref, whole, `runAsync, replay ${replay}`);
      expectSame(ref, resumed, `runAsync resumed, replay ${replay}`);
      expect(trainRecords(resumed)).toEqual(trainRecords(ref));
    }
  });

  it("a text-only step logs KL 0 with replay on (not the previous step's), as without replay", () => {
    const s = stageOf({ projector: true, llm: true, vmHead: true });
    const kinds = textOnly(s);
    const records = trainRecords(run(s, true));
    const text = records.filter((r) => kinds[(r.step as number) - 1]), image = records.filter((r) => !kinds[(r.step as number) - 1]);
    expect(text.length).toBeGreaterThan(3);
    expect(image.every((r) => (r.kl as number) > 0)).toBe(true); // so that a stale value would show
    for (const r of text) {
      expect(r.kl, `step ${r.step}`).toBe(0);
      expect(r.loss, `step ${r.step}`).toBe(r.ce);
    }
  });
});
