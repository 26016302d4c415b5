// Host synchronisations (native/core/host_sync.h, hostSyncs()): a training step reads what it logs and decides on
// (per micro-batch loss, CE, KL, the gradient norm) in one read at its end; the fused losses keep their loss
// on the device and scale their saved gradients there (mul_scalar), the model's loss terms are not read. On the
// CPU this counts the reads of tensor data (where CUDA would wait), so the orchestration is checked in CI;
// the CUDA ops' own waits are counted there too (a GPU session reports them).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { F, hostSyncs, scope, Tensor } from '../../src';
import { cpu } from '../../src/native';
import { launchRanks } from '../../src/distributed/launch';
import { tempDirs } from '../support/tmp';
import { VwLmm } from '../../src/model/vwlmm';
import { Stage, Trainer } from '../../src/train/trainer';
import { tinyConfig, tinyData } from './support/tiny';

/** Host syncs of each optimizer step of `stages` (train records only: no evaluation, no checkpoints). */
function syncsPerStep(stages: Stage[], opts: { dtype?: 'float32' | 'bfloat16'; gradientCheckpointing?: boolean; vmWeight?: number } = {}): number[] {
  const { tokenizer } = tinyData(8);
  const model = VwLmm.create(tinyConfig(tokenizer.vocabSize, opts.vmWeight ?? 1), 4);
  const counts: number[] = [];
  let last = hostSyncs();
  const t = new Trainer(model, stages, {
    seed: 2, dtype: opts.dtype, gradientCheckpointing: opts.gradientCheckpointing,
    onLog: (r) => {
      if (r.type !== 'train') return;
      const now = hostSyncs();
      counts.push(now - last);
      last = now;
    },
  });
  last = hostSyncs();
  t.run();
  model.dispose();
  return counts;
}

describe('host synchronisations per training step', () => {
  it('hostSyncs counts every read of tensor data, nothing else', () => {
    scope(() => {
      const a = Tensor.fromArray(new Float32Array([1, 2, 3]), [3]);
      const before = hostSyncs();
      const b = F.add(a, a); // ops and uploads are not waits
      Tensor.fromArray(new Float32Array(4), [4]);
      expect(hostSyncs()).toBe(before);
      b.toArray();
      F.sum(b).item();
      expect(hostSyncs()).toBe(before + 2);
    });
  });

  it('one per optimizer step: VW-LMM loss (CE + KL), gradient accumulation, clipping, every stage kind', () => {
    const { samples, makeBatch } = tinyData(8);
    const stages: Stage[] = [
      { name: 'one', size: samples.length, makeBatch, steps: 3, batchSize: 2, lr: 3e-3, trainable: { projector: true, vmHead: true } },
      { name: 'accum', size: samples.length, makeBatch, steps: 3, batchSize: 2, gradAccum: 3, lr: 2e-3, maxGradNorm: 1e-3, trainable: { visionTower: true, projector: true, llm: true, vmHead: true } },
    ];
    expect(syncsPerStep(stages)).toEqual([1, 1, 1, 1, 1, 1]);
    // in bf16, with every layer recomputed in the backward
    expect(syncsPerStep(stages, { dtype: 'bfloat16', gradientCheckpointing: true })).toEqual([1, 1, 1, 1, 1, 1]);
    // plain LLaVA (no KL term)
    expect(syncsPerStep(stages.slice(1), { vmWeight: 0 })).toEqual([1, 1, 1]);
  });

  it("one per step for a stage with its own loss (HF's compute_loss)", () => {
    const { samples, makeBatch } = tinyData(8);
    const stage: Stage = {
      name: 'custom', size: samples.length, steps: 3, batchSize: 2, gradAccum: 2, lr: 1e-3, trainable: { projector: true, llm: true },
      loss: (m, idx) => m.loss(makeBatch(idx)).loss,
    };
    expect(syncsPerStep([stage])).toEqual([1, 1, 1]);
  });

  it('the logged numbers are the ones the loss terms hold (read once, at the end)', () => {
    const { tokenizer, samples, makeBatch } = tinyData(8);
    const model = VwLmm.create(tinyConfig(tokenizer.vocabSize), 4);
    const idx = [0, 1];
    const direct = scope(() => {
      const out = model.loss(makeBatch(idx));
      return { loss: out.loss.item(), ce: out.ce, kl: out.kl };
    });
    expect(direct.kl).toBeGreaterThan(0);
    expect(direct.loss).toBeCloseTo(direct.ce + direct.kl, 5);
    const records: Record<string, unknown>[] = [];
    // one step of one micro-batch whose indices the trainer picks: compare against the same computation
    const t = new Trainer(model, [{ name: 's', size: samples.length, makeBatch, steps: 1, batchSize: 8, lr: 0, trainable: { projector: true } }], { seed: 1, onLog: (r) => records.push(r) });
    const all = scope(() => {
      const out = model.loss(makeBatch([...Array(8).keys()]));
      return { loss: out.loss.item(), ce: out.ce, kl: out.kl };
    });
    t.run();
    const rec = records.find((r) => r.type === 'train')!;
    // the batch is all 8 samples in some order: the same mean loss up to summation order
    expect(rec.loss as number).toBeCloseTo(all.loss, 5);
    expect(rec.ce as number).toBeCloseTo(all.ce, 5);
    expect(rec.kl as number).toBeCloseTo(all.kl, 5);
    expect(Number.isFinite(rec.gradNorm as number) && (rec.gradNorm as number) > 0).toBe(true);
    model.dispose();
  });
});

// Data-parallel (2 ranks over MPI, tests/distributed/support/rank_child.ts): the all-reduced stats and ZeroAdamW's
// has-gradient flags come back in one read (ZeroAdamW.readWithFlags; two reads before), and in a stage's first step
// also the bucket order rank 0 broadcasts after the first backward (ZeroAdamW.rebuildBuckets; a read of its own before).
const tmp = tempDirs('host-syncs-dp');
const mpiReady = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0 && !!(cpu().backendInfo() as { mpi?: { built?: boolean } }).mpi?.built;
describe.skipIf(!mpiReady && process.env.VWLMM_REQUIRE_MPI !== '1')('host synchronisations per data-parallel step', () => {
  it('one per step on 2 ranks, a stage\'s first step too, through both stages and gradient accumulation', async () => {
    const dir = tmp();
    const child = path.join(__dirname, '..', 'distributed', 'support', 'rank_child.ts');
    const r = await launchRanks({ nproc: 2, backend: 'mpi', stdio: 'pipe', env: { ...process.env }, graceMs: 2000,
      command: [process.execPath, '--import', 'tsx', child, 'train', dir, JSON.stringify({ batchSize: 2, steps: 4, noOutDir: true })] });
    expect(r.failure, r.output.join('\n')).toBeNull();
    const { syncs } = JSON.parse(fs.readFileSync(path.join(dir, 'weights.json'), 'utf8')) as { syncs: number[] };
    expect(syncs).toEqual([1, 1, 1, 1, 1, 1, 1, 1]); // before: [2, 1, 1, 1, 2, 1, 1, 1], and before that [3, 2, 2, 2, 3, 2, 2, 2]
  }, 60_000);

  it('ZeroAdamW.step() called without readWithFlags reads once too (the flags and the first step\'s bucket order together), to the same weights', async () => {
    const child = path.join(__dirname, '..', 'distributed', 'support', 'rank_child.ts');
    const run = async (withRead: boolean) => {
      const dir = tmp();
      const r = await launchRanks({ nproc: 2, backend: 'mpi', stdio: 'pipe', env: { ...process.env }, graceMs: 2000,
        command: [process.execPath, '--import', 'tsx', child, 'zero', dir, JSON.stringify({ withRead })] });
      expect(r.failure, r.output.join('\n')).toBeNull();
      return JSON.parse(fs.readFileSync(path.join(dir, 'zero.json'), 'utf8')) as { syncs: number[]; weights: number[][] };
    };
    const alone = await run(false), after = await run(true);
    expect(alone.syncs).toEqual([1, 1, 1]); // before: [2, 1, 1] (the flags, then the order)
    expect(after.syncs).toEqual([0, 0, 0]); // readWithFlags took both
    expect(alone.weights).toEqual(after.weights);
  }, 60_000);
});
