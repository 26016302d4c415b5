// Data-parallel training on image and text-only samples (src/distributed/zero.ts with the Trainer): a micro-batch that
// does not reach the projector or vm_head (text-only) gives them a zero gradient (LLaVA's rule: its dummy image), on a
// rank as in one process, so ZeroAdamW's has-gradient flags are set for every trained parameter and every one steps at
// every step, also when every rank's micro-batch is text-only. 2 ranks at batch 1 train what 1 rank at batch 1 with
// accumulation x2 trains (the same micro-batches), AdamW step counts included.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../../src/native';
import { launchRanks } from '../../src/distributed/launch';
import { readTrainerState } from '../../src/train/trainer';
import { batchIndices, Stage } from '../../src/train/trainer';
import { tempDirs } from '../support/tmp';
import { mixedData } from '../train/support/mixed';

const tmp = tempDirs('dist-text');
const root = path.join(__dirname, '..', '..');
const child = path.join(__dirname, 'support', 'rank_child.ts');
const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const mpiReady = haveMpirun && !!(cpu().backendInfo() as { mpi?: { built: boolean } }).mpi?.built;
const required = process.env.VWLMM_REQUIRE_MPI === '1';

const STEPS = 12;
const weights = (dir: string) => (JSON.parse(fs.readFileSync(path.join(dir, 'weights.json'), 'utf8')) as { weights: Record<string, number[]> }).weights;
const stepCounts = (dir: string) => [...readTrainerState(path.join(dir, 'checkpoint')).optimizer].filter(([k]) => k.endsWith('.step')).map(([, t]) => t.data[0]);

describe.skipIf(!mpiReady && !required)('data parallel on text-only micro-batches', () => {
  it('every trained parameter steps at every step on 2 ranks as on 1 (text-only micro-batches on one rank, or on both)', async () => {
    // the samples each rank draws (seed 5, stage 'mix', batch 1 on 2 ranks): steps where both ranks' are text-only,
    // and steps where one rank's is, so that the test covers both
    const d = mixedData();
    const s: Stage = { name: 'mix', size: d.samples.length, makeBatch: d.makeBatch, steps: STEPS, batchSize: 1, lr: 3e-3, trainable: { projector: true } };
    const kinds = Array.from({ length: STEPS }, (_, k) => [0, 1].map((r) => d.isTextOnly(batchIndices(5, s, k, 0, r, 2))));
    expect(kinds.some(([a, b]) => a && b), 'a step where both ranks are text-only').toBe(true);
    expect(kinds.some(([a, b]) => a !== b), 'a step where one rank is text-only').toBe(true);
    const one = tmp(), two = tmp();
    const r1 = spawnSync(process.execPath, ['--import', 'tsx', child, 'train', one, JSON.stringify({ noGroup: true, mixed: true, steps: STEPS, accumScale: 2 })], { encoding: 'utf8', cwd: root, timeout: 90_000 });
    expect(r1.status, r1.stderr).toBe(0);
    const r2 = await launchRanks({ nproc: 2, backend: 'mpi', command: [process.execPath, '--import', 'tsx', child, 'train', two, JSON.stringify({ mixed: true, steps: STEPS })], stdio: 'pipe', env: { ...process.env }, graceMs: 2000 });
    expect(r2.failure, r2.output.join('\n')).toBeNull();
    for (const dir of [one, two]) {
      const counts = stepCounts(dir);
      expect(counts.length).toBeGreaterThan(0);
      expect(new Set(counts), dir === one ? '1 rank' : '2 ranks').toEqual(new Set([STEPS]));
    }
    const [a, b] = [weights(one), weights(two)];
    let diff = 0;
    for (const k of Object.keys(a)) a[k].forEach((x, i) => (diff = Math.max(diff, Math.abs(x - b[k][i]))));
    expect(diff).toBeLessThan(2e-6); // fp32 summation order only
  }, 120_000);
});
