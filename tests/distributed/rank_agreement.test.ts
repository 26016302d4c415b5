// Ranks that disagree (tests/distributed/support/rank_child.ts over 2 MPI ranks): a data-parallel stage starts with every
// rank comparing what it trains and how with rank 0 (the Trainer, src/train/trainer.ts checkRanksAgree; ZeroAdamW over
// its parameters), and under checkCollectives every collective's size: a difference ends every rank with an error
// naming it, rank 0's value and this rank's, before any gradient is exchanged (before: MPI overran its buffers, heap
// corruption and SIGABRT, or the ranks waited for each other until the collective timeout). Also what a process is
// told by its launch environment (both torchrun-style and mpirun variables), and the collective timeout's variable.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../../src/native';
import { launchEnv } from '../../src/distributed/env';
import { launchRanks } from '../../src/distributed/launch';
import { collectiveTimeoutMs, DEFAULT_TIMEOUT_MS } from '../../src/distributed/process_group';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('dist-agree');
const child = path.join(__dirname, 'support', 'rank_child.ts');
const mpiReady = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0 && !!(cpu().backendInfo() as { mpi?: { built?: boolean } }).mpi?.built;
const required = process.env.VWLMM_REQUIRE_MPI === '1';

async function ranks(mode: string, dir: string, opts: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const t0 = Date.now();
  // killGraceS 1: mpirun ends the other rank 1 s after one fails, not the launcher's 3 (the runs end sooner)
  const r = await launchRanks({ nproc: 2, backend: 'mpi', stdio: 'pipe', graceMs: 2000, killGraceS: 1, env: { ...process.env, ...env },
    command: [process.execPath, '--import', 'tsx', child, mode, dir, JSON.stringify(opts)] });
  return { ...r, seconds: (Date.now() - t0) / 1000, text: r.output.join('\n') };
}

describe.skipIf(!mpiReady && !required)('ranks that disagree, 2 MPI ranks', () => {
  it('a data-parallel stage refuses, on every rank and before any collective of its steps, ranks with another model, trainable set, data size, steps, seed, batch size, accumulation, lr or bucket size, naming each with both values', async () => {
    const dir = tmp();
    const r = await ranks('train', dir, { batchSize: 2, steps: 3, timeoutMs: 20_000, noOutDir: true,
      perRank: { 1: { hidden: 20, trainVision: true, size: 15, steps: 4, seed: 6, batchSize: 3, accumScale: 2, gradAccum: 1, lr: 1e-3, bucketBytes: 8192 } } });
    expect(r.failure, r.text).toMatch(/exited with code 1/);
    expect(r.text).not.toMatch(/corrupted|Aborted|signal 6|did not complete within/);
    const errors = r.text.split('\n').filter((l) => l.startsWith('rank error: '));
    expect(errors, r.text).toHaveLength(2); // every rank, not one rank and a hang
    for (const e of errors) expect(e).toMatch(/^rank error: Trainer: stage 'a': the data-parallel ranks disagree, so every rank stops here/);
    // rank 1's message: rank 0's value and its own, for each; rank 0's names rank 1's
    const one = errors.find((e) => e.includes('this rank (1)'))!, zero = errors.find((e) => !e.includes('this rank'))!;
    expect(one, r.text).toBeDefined();
    expect(zero, r.text).toBeDefined();
    for (const [what, a, b] of [
      ['model parameters', String.raw`\d+ tensors of \d+ elements \(shapes #[0-9a-f]+\)`, String.raw`\d+ tensors of \d+ elements \(shapes #[0-9a-f]+\)`],
      ['trainable parameters', String.raw`\d+ tensors of \d+ elements \(shapes #[0-9a-f]+\)`, String.raw`\d+ tensors of \d+ elements \(shapes #[0-9a-f]+\)`],
      ['seed', '5', '6'], ['steps', '3', '4'], ['gradAccum', '1', '2'], [String.raw`size \(samples in the stage's data\)`, '16', '15'],
      ['batchSize', '2', '3'], ['lr', '0.003', '0.001'], ['bucketBytes', '4096', '8192'],
    ]) {
      expect(one).toMatch(new RegExp(`${what}: rank 0 has ${a}, this rank \\(1\\) has ${b}(;| \\()`));
      expect(zero).toMatch(new RegExp(`${what}: rank 0 has ${a}, rank 1 has ${b}(;| \\()`));
    }
    // what agrees is not named
    for (const e of errors) expect(e).not.toMatch(/dtype:|gatherDtype|position|stages:/);
    expect(r.seconds).toBeLessThan(30);
  }, 60_000);

  it("ranks whose models have the same shapes but other weights, settings or adapters' scale are refused too (they trained a mix)", async () => {
    const dir = tmp();
    // (with 30 data settings each, which one field per setting could not send: at most 48 fields)
    const r = await ranks('train', dir, { batchSize: 2, steps: 2, timeoutMs: 20_000, noOutDir: true, loraAlpha: 4, dataSettings: 30, perRank: { 1: { initSeed: 7, pif: true, loraAlpha: 8, dataSettings: 31 } } });
    expect(r.failure, r.text).toMatch(/exited with code 1/);
    const errors = r.text.split('\n').filter((l) => l.startsWith('rank error: '));
    expect(errors, r.text).toHaveLength(2);
    const one = errors.find((e) => e.includes('this rank (1)'))!;
    expect(one, r.text).toMatch(/model settings: rank 0 has pif false, .*this rank \(1\) has pif true, /);
    expect(one).toMatch(/LoRA adapters: rank 0 has r 2, alpha 4, dropout 0, on [a-z_, ]+, this rank \(1\) has r 2, alpha 8, dropout 0/);
    expect(one).toMatch(/weights: rank 0 has checksum #[0-9a-f]{8} of up to 64 elements of each of \d+ float32 tensors, this rank \(1\) has checksum #[0-9a-f]{8}/);
    expect(one).toMatch(/dataSettings: rank 0 has s0 0, s1 1, .*, this rank \(1\) has s0 0, s1 1, /);
    // the shapes agree: not named
    expect(one).not.toMatch(/model parameters:|trainable parameters:/);
  }, 60_000);

  it('ZeroAdamW over parameters of other sizes, and (checkCollectives) a collective of another size, are refused on every rank before MPI runs them; the group goes on', async () => {
    const dir = tmp();
    const r = await ranks('checks', dir, { timeoutMs: 20_000 });
    expect(r.failure, r.text).toBeNull();
    const got = [0, 1].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `checks_rank_${k}.json`), 'utf8')) as string[]);
    expect(got[0][0]).toMatch(/^\[all_reduce\] rank 0 of 2: the ranks started different collectives: this rank all_reduce of 4 x float32 \(sum\), another all_reduce of 5 x float32 \(sum\)/);
    expect(got[1][0]).toMatch(/^\[all_reduce\] rank 1 of 2: the ranks started different collectives: this rank all_reduce of 5 x float32 \(sum\), another all_reduce of 4 x float32 \(sum\)/);
    expect(got.map((g) => g[1])).toEqual(['', '']); // the next collective, the same on both, runs
    expect(got[1][2]).toMatch(/^ZeroAdamW: the data-parallel ranks disagree.*parameters: rank 0 has 2 tensors of 12 elements \(shapes #[0-9a-f]+\), this rank \(1\) has 2 tensors of 13 elements/);
    expect(got[0][2]).toMatch(/parameters: rank 0 has 2 tensors of 12 elements \(shapes #[0-9a-f]+\), rank 1 has 2 tensors of 13 elements/);
  }, 60_000);

  it('VWLMM_COLLECTIVE_TIMEOUT sets the collective timeout (seconds) of a group started without one', async () => {
    const r = await ranks('hang', tmp(), { timeoutFromEnv: true }, { VWLMM_COLLECTIVE_TIMEOUT: '2' });
    expect(r.failure).toMatch(/exited with code 1|was killed/);
    expect(r.text).toMatch(/\[all_reduce of 1 x int32\] rank 0 of 2: the collective did not complete within 2 s/);
    expect(r.seconds).toBeLessThan(40);
  }, 60_000);
});

describe('the launch environment and the collective timeout, read from the environment', () => {
  it('refuses torchrun-style variables that disagree with mpirun\'s, naming both (WORLD_SIZE=1 RANK=0 left exported under mpirun -np 2)', () => {
    const mpi = { OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' };
    expect(() => launchEnv({ ...mpi, RANK: '0', WORLD_SIZE: '1' })).toThrow(/RANK=0 WORLD_SIZE=1 \(torchrun-style\) disagree with mpirun's OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2: .*unset RANK \/ WORLD_SIZE/);
    expect(() => launchEnv({ PMI_RANK: '0', PMI_SIZE: '2', RANK: '0', WORLD_SIZE: '1' })).toThrow(/disagree with mpirun's PMI_RANK=0 PMI_SIZE=2/);
    expect(() => launchEnv({ ...mpi, RANK: '0', WORLD_SIZE: '2' })).toThrow(/RANK=0 WORLD_SIZE=2 .*OMPI_COMM_WORLD_RANK=1/);
    // the same numbers in both: nothing to choose
    expect(launchEnv({ ...mpi, RANK: '1', WORLD_SIZE: '2' })).toMatchObject({ rank: 1, worldSize: 2 });
    expect(launchEnv(mpi)).toMatchObject({ launcher: 'mpirun', rank: 1, worldSize: 2 });
  });

  it('VWLMM_COLLECTIVE_TIMEOUT: seconds > 0, else an error naming it; unset: 10 minutes', () => {
    expect(collectiveTimeoutMs({})).toBe(DEFAULT_TIMEOUT_MS);
    expect(collectiveTimeoutMs({ VWLMM_COLLECTIVE_TIMEOUT: '90' })).toBe(90_000);
    expect(collectiveTimeoutMs({ VWLMM_COLLECTIVE_TIMEOUT: '0.5' })).toBe(500);
    for (const bad of ['0', '-3', 'ten']) expect(() => collectiveTimeoutMs({ VWLMM_COLLECTIVE_TIMEOUT: bad })).toThrow(new RegExp(`VWLMM_COLLECTIVE_TIMEOUT must be a number of seconds > 0, got '${bad}'`));
  });
});
