// Data-parallel training over MPI on this machine (2 ranks through mpirun, src/distributed): the collectives against
// a float64 reference, 2 ranks at batch B against 1 rank at batch B with twice the accumulation (the same micro-batches,
// so the same objective whatever the loss), ZeRO-1's sharded optimizer state through a
// checkpoint (same and different world size), a rank that dies or hangs, the data shards, the launch environment
// and the TCP rendezvous. The ranks are tests/distributed/support/rank_child.ts.
// Needs Open MPI (apt install libopenmpi-dev openmpi-bin; .ci/run installs it): without it the MPI tests skip, unless
// VWLMM_REQUIRE_MPI=1 (CI), where a missing MPI fails.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { cpu } from '../../src/native';
import { launchEnv, rankThreads } from '../../src/distributed/env';
import { launchRanks, freePort } from '../../src/distributed/launch';
import { ncclDeviceIndex, rendezvous } from '../../src/distributed/rendezvous';
import { batchIndices, readTrainerState, Stage } from '../../src/train/trainer';
import { bf16ToF32, f32ToBf16 } from '../../src/bf16';
import { tempDirs } from '../support/tmp';
import { runSeed } from '../support/random';
import { inputOf, objectOf } from './support/inputs';
import { tinyConfig, writeCliFixture } from '../train/support/tiny';
import { TextTokenizer } from '../../src/data/tokenizer';
import { evaluateFile, type EvalOptions } from '../../src/eval/llava_eval';
import { saveCheckpoint } from '../../src/model/checkpoint';
import { VwLmm } from '../../src/model/vwlmm';

const tmp = tempDirs('dist');
const root = path.join(__dirname, '..', '..');
const child = path.join(__dirname, 'support', 'rank_child.ts');
const haveMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const mpiInfo = (cpu().backendInfo() as { mpi?: { built: boolean; library: string } }).mpi;
const mpiReady = haveMpirun && !!mpiInfo?.built;
const required = process.env.VWLMM_REQUIRE_MPI === '1';

/** Runs the child on `np` ranks through the project's own launcher (mpirun underneath). */
async function ranks(np: number, mode: string, dir: string, opts: Record<string, unknown> = {}, timeoutMs = 90_000) {
  const t0 = Date.now();
  const r = await Promise.race([
    launchRanks({ nproc: np, backend: 'mpi', command: [process.execPath, '--import', 'tsx', child, mode, dir, JSON.stringify(opts)], stdio: 'pipe', env: { ...process.env }, graceMs: 2000 }),
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${mode}: the ranks did not end within ${timeoutMs} ms (a hang)`)), timeoutMs).unref()),
  ]);
  return { ...r, seconds: (Date.now() - t0) / 1000 };
}

function single(mode: string, dir: string, opts: Record<string, unknown>) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', child, mode, dir, JSON.stringify(opts)], { encoding: 'utf8', cwd: root, timeout: 90_000 });
  if (r.status !== 0) throw new Error(`single process ${mode} failed: ${r.stderr}`);
  return r;
}

const weights = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'weights.json'), 'utf8')) as { steps: number; weights: Record<string, number[]>; overlap: [number, number, number][] };
function maxDiff(a: Record<string, number[]>, b: Record<string, number[]>): number {
  let d = 0;
  for (const k of Object.keys(a)) a[k].forEach((x, i) => (d = Math.max(d, Math.abs(x - b[k][i]))));
  return d;
}

describe('the MPI backend is there where it must be', () => {
  it(required ? 'is built and mpirun runs (VWLMM_REQUIRE_MPI=1)' : 'reports whether it is built', () => {
    expect(typeof mpiInfo?.library).toBe('string');
    if (required) expect({ haveMpirun, built: mpiInfo?.built }).toEqual({ haveMpirun: true, built: true });
  });
});

describe.skipIf(!mpiReady)('data parallel over MPI, 2 ranks', () => {
  it('all-reduce, reduce-scatter, all-gather and broadcast match a float64 reference (fp32, bf16, int32; sizes 0, 1, 7, 1000); allGatherObject', async () => {
    const dir = tmp();
    const seed = runSeed % 100000;
    const r = await ranks(2, 'collectives', dir, { seed });
    expect(r.failure, r.output.join('\n')).toBeNull();
    const got = [0, 1].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `rank_${k}.json`), 'utf8')) as { rank: number; worldSize: number; localRank: number; library: string; threads: number; cpus: number; out: Record<string, number[]> });
    expect(got.map((g) => [g.rank, g.worldSize, g.localRank])).toEqual([[0, 2, 0], [1, 2, 1]]);
    expect(got[0].library).toMatch(/MPI/);
    // unbound by the launcher (--bind-to none), each rank sees every CPU and takes half of them as kernel threads
    // (rankThreads): not 2 threads per rank on one core each, as mpirun's default binding with the machine's count gave
    for (const g of got) expect([g.cpus, g.threads]).toEqual([os.availableParallelism(), Math.max(1, Math.floor(os.availableParallelism() / 2))]);
    const W = 2;
    const reduce = (op: string, xs: number[]) => op === 'sum' ? xs.reduce((a, b) => a + b) : op === 'avg' ? xs.reduce((a, b) => a + b) / W : op === 'max' ? Math.max(...xs) : Math.min(...xs);
    let worst = 0;
    const close = (a: number[], ref: number[], tol: number, what: string) => {
      expect(a.length, what).toBe(ref.length);
      a.forEach((x, i) => {
        const e = Math.abs(x - ref[i]) / Math.max(1, Math.abs(ref[i]));
        worst = Math.max(worst, tol === 1e-5 ? e : 0);
        if (!(e <= tol)) throw new Error(`${what}[${i}]: got ${x}, reference ${ref[i]}`);
      });
    };
    for (const n of [0, 1, 7, 1000]) {
      const ins = (s: number, len: number) => [0, 1].map((k) => Array.from(inputOf(s, k, len)));
      for (const op of ['sum', 'avg', 'max', 'min']) {
        const ar = ins(seed + n, n), ref = Array.from({ length: n }, (_, i) => reduce(op, ar.map((x) => x[i])));
        for (const k of [0, 1]) close(got[k].out[`all_reduce/${op}/${n}`], ref, 1e-5, `all_reduce ${op} n=${n} rank ${k}`);
        const rs = ins(seed + n + 1, n * W);
        for (const k of [0, 1]) close(got[k].out[`reduce_scatter/${op}/${n}`], Array.from({ length: n }, (_, i) => reduce(op, rs.map((x) => x[k * n + i]))), 1e-5, `reduce_scatter ${op} n=${n} rank ${k}`);
        // bf16: inputs rounded to bf16, reduced in float32, the result rounded once more (2 ranks: one partial)
        const bf = ins(seed + n + 2, n).map((x) => Array.from(bf16ToF32(f32ToBf16(Float32Array.from(x)))));
        const bref = Array.from(bf16ToF32(f32ToBf16(Float32Array.from({ length: n }, (_, i) => reduce(op, bf.map((x) => x[i]))))));
        for (const k of [0, 1]) close(got[k].out[`all_reduce_bf16/${op}/${n}`], bref, 1e-2, `all_reduce bf16 ${op} n=${n} rank ${k}`);
      }
      const ag = ins(seed + n + 3, n);
      for (const k of [0, 1]) close(got[k].out[`all_gather/${n}`], [...ag[0], ...ag[1]].map((x) => Math.fround(x)), 0, `all_gather n=${n}`);
      for (let rootRank = 0; rootRank < W; rootRank++) {
        const b = ins(seed + n + 4, n)[rootRank].map((x) => Math.fround(x));
        for (const k of [0, 1]) close(got[k].out[`broadcast/${rootRank}/${n}`], b, 0, `broadcast root ${rootRank} n=${n}`);
      }
      for (const k of [0, 1]) expect(got[k].out[`all_reduce_int32/sum/${n}`]).toEqual(Array.from({ length: n }, (_, i) => i * 3));
    }
    // three in flight at once, waited for in reverse order; a buffer in flight cannot be disposed
    for (let j = 0; j < 3; j++) {
      const a = [0, 1].map((k) => Array.from(inputOf(seed + 100 + j, k, 333)));
      for (const k of [0, 1]) close(got[k].out[`async/${j}`], a[0].map((x, i) => x + a[1][i]), 1e-5, `async ${j}`);
    }
    expect(got.map((g) => g.out.refusedDispose[0])).toEqual([1, 1]);
    // allGatherObject: every rank gets every rank's value, in rank order
    for (const g of got) expect(g.out.objects, `allGatherObject rank ${g.rank}`).toEqual([[objectOf(0), objectOf(1)], [null, null], ['', 'ü']]);
    expect(worst).toBeLessThan(1e-5);
  }, 60_000);

  it('a group of one hands back every input (benchmarks/gpu/collectives_verdict.ts: the check device_check.sh runs on one NCCL rank)', () => {
    const dir = tmp(), seed = runSeed % 1000;
    single('collectives', dir, { seed });
    const v = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'benchmarks', 'gpu', 'collectives_verdict.ts'), dir, String(seed)], { encoding: 'utf8', cwd: root, timeout: 60_000 });
    expect(v.status, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toMatch(/one rank, 65 collectives .*: PASS/);
    // and it fails a run whose numbers are not the inputs: here, another seed's
    const w = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'benchmarks', 'gpu', 'collectives_verdict.ts'), dir, String(seed + 1)], { encoding: 'utf8', cwd: root, timeout: 60_000 });
    expect([w.status, /FAIL\n  all_reduce\/sum\/1: got/.test(w.stdout)]).toEqual([1, true]);
  }, 60_000);

  it('evaluateFile over 3 ranks: each answers its share and every rank returns what one process does; a resumed answers file; a strict error on one rank ends every rank with it', async () => {
    const dir = tmp();
    const fx = writeCliFixture(dir, { images: 5 }); // 100 questions
    const tok = new TextTokenizer(fx.tokenizer);
    const c = tinyConfig(tok.vocabSize); // weights wide enough that the answers depend on question and image
    const model = VwLmm.create({ ...c, llm: { ...c.llm, initializerRange: 0.5 }, vision: { ...c.vision, initializerRange: 0.5 } }, 5);
    const checkpoint = path.join(dir, 'wide');
    saveCheckpoint(checkpoint, model, { tokenizer: fx.tokenizer });
    type Line = { question_id: string; text: string; answer_id: string };
    const linesOf = (f: string) => fs.readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
    const ev = (data: string, o: EvalOptions) => evaluateFile(model, tok, data, fx.imageFolder, { maxNewTokens: 4, modelId: 'm', ...o });
    try {
      // the model's own answers made the expected ones of every third record (accuracy neither 0 nor 1), and a record
      // whose image is missing in the last rank's share (records 68..100 of 101)
      const first = path.join(dir, 'first.jsonl');
      await ev(fx.data, { answers: first });
      const said = new Map(linesOf(first).map((l) => [l.question_id, l.text]));
      const recs = JSON.parse(fs.readFileSync(fx.data, 'utf8')) as { id: string; image: string; conversations: { value: string }[] }[];
      recs.forEach((r, i) => i % 3 === 0 && (r.conversations[1].value = said.get(r.id)!));
      recs.splice(80, 0, { ...recs[80], id: 'noimg', image: 'images/none.png' });
      const data = path.join(dir, 'rigged.json');
      fs.writeFileSync(data, JSON.stringify(recs));
      const one = await ev(data, { answers: path.join(dir, 'one.jsonl') });
      expect(one.accuracy).toBeGreaterThan(0.3);
      expect(one.accuracy).toBeLessThan(1);
      expect(one.skipped.map((x) => x.id)).toEqual(['noimg']);
      // a file that holds some answers already: records of rank 0's and rank 1's shares, and one past the limit (95)
      const oneLines = fs.readFileSync(path.join(dir, 'one.jsonl'), 'utf8').trim().split('\n');
      const held = new Set([0, 1, 2, 3, 4, 40, 41, 42, 43, 44, 45, 97].map((i) => recs[i].id));
      const seed = oneLines.filter((l) => held.has((JSON.parse(l) as Line).question_id)).map((l) => l + '\n').join('');
      for (const f of ['seed_one.jsonl', 'seed_ranks.jsonl']) fs.writeFileSync(path.join(dir, f), seed);
      const resumedOne = await ev(data, { answers: path.join(dir, 'seed_one.jsonl'), limit: 95 });
      expect(resumedOne.resumed).toBe(11);
      let strictError = '';
      await ev(data, { strict: true }).catch((e: Error) => (strictError = e.message));
      expect(strictError).toMatch(/record "noimg": image images\/none.png: loadImage: cannot read/);
      const [fresh, again] = [path.join(dir, 'ranks.jsonl'), path.join(dir, 'seed_ranks.jsonl')];
      const jobs = [
        { data, imageFolder: fx.imageFolder, options: { maxNewTokens: 4, modelId: 'm', answers: fresh } },
        { data, imageFolder: fx.imageFolder, options: { maxNewTokens: 4, modelId: 'm', answers: again, limit: 95 } },
        { data, imageFolder: fx.imageFolder, options: { maxNewTokens: 4, modelId: 'm', strict: true } },
      ];
      const r = await ranks(3, 'evaluate', dir, { checkpoint, jobs });
      expect(r.failure, r.output.join('\n')).toBeNull();
      const got = [0, 1, 2].map((k) => JSON.parse(fs.readFileSync(path.join(dir, `eval_rank_${k}.json`), 'utf8')) as Record<string, unknown>[]);
      for (let k = 0; k < 3; k++) {
        expect(got[k][0], `rank ${k}`).toEqual({ ...one, answers: fresh });
        expect(got[k][1], `rank ${k}`).toEqual({ ...resumedOne, answers: again });
        expect(got[k][2], `rank ${k}`).toEqual({ error: k === 2 ? strictError : `rank 2 of 3: ${strictError}` });
      }
      // rank 0's files: every answer of one process, in question order; the lines held before kept as they were
      const texts = (ls: Line[]) => ls.map((l) => [l.question_id, l.text]);
      expect(texts(linesOf(fresh))).toEqual(texts(linesOf(path.join(dir, 'one.jsonl'))));
      const resumed = linesOf(again);
      expect(resumed.map((l) => l.question_id)).toEqual([recs[97].id, ...recs.slice(0, 95).filter((x) => x.id !== 'noimg').map((x) => x.id)]);
      expect(new Map(texts(resumed) as [string, string][])).toEqual(new Map(texts(linesOf(path.join(dir, 'seed_one.jsonl'))) as [string, string][]));
      const before = new Map(seed.trim().split('\n').map((l) => [(JSON.parse(l) as Line).question_id, l]));
      const kept = fs.readFileSync(again, 'utf8').trim().split('\n').filter((l) => before.has((JSON.parse(l) as Line).question_id));
      expect(kept.sort()).toEqual([...before.values()].sort());
    } finally {
      model.dispose();
    }
  }, 90_000);

  it('2 ranks at batch B train the same weights as 1 rank at batch B with accumulation x2 (20 steps: accumulation, clipping, weight decay), and a ZeRO-1 checkpoint resumes exactly', async () => {
    // (1 rank at batch 2B would be the same only because this loss is a mean of per-sample losses: a micro-batch's
    // token mean weighs samples by their answers' lengths, so its micro-batch size is part of the objective)
    const one = tmp(), two = tmp(), cut = tmp();
    single('train', one, { noGroup: true, batchSize: 2, accumScale: 2 });
    const r = await ranks(2, 'train', two, { batchSize: 2 });
    expect(r.failure, r.output.join('\n')).toBeNull();
    const [a, b] = [weights(one), weights(two)];
    expect([a.steps, b.steps]).toEqual([20, 20]);
    // the comparison means something: training moved the weights by far more than the tolerance
    const init = tmp();
    single('train', init, { noGroup: true, batchSize: 4, steps: 0 });
    expect(maxDiff(a.weights, weights(init).weights)).toBeGreaterThan(1e-3);
    expect(maxDiff(a.weights, b.weights)).toBeLessThan(2e-6); // fp32 summation order only (observed 4e-7)
    // the weights' all-gather overlapping the next forward (the default: buckets still arriving when the step returns,
    // all of them but after a rebuild, [2, 10, 11]) changes no value: bit for bit without it (none arriving)
    expect(b.overlap.filter(([, total, arriving]) => !(arriving >= total && total > 0)), JSON.stringify(b.overlap)).toEqual([]);
    const blocking = tmp();
    const nb = await ranks(2, 'train', blocking, { batchSize: 2, overlapGather: false });
    expect(nb.failure, nb.output.join('\n')).toBeNull();
    expect(weights(blocking).overlap.every(([, , arriving]) => arriving === 0)).toBe(true);
    expect(maxDiff(weights(blocking).weights, b.weights)).toBe(0);
    // the gradient buckets (4 KiB here) start during the backward as their gradients become final, not after it:
    // from the second step of a stage on, once the buckets follow the order the backward finishes the gradients
    // (observed: 9 of 11 in stage b; the first step's buckets, in registration order, 2 of 10)
    const stageB = b.overlap.slice(10);
    expect(stageB.length).toBe(10);
    for (const [early, total] of stageB.slice(1)) {
      expect(total).toBeGreaterThan(5);
      expect(early).toBeGreaterThanOrEqual(total / 2);
    }
    // stopped at step 13 (stage b, with AdamW state sharded over the ranks) and saved
    const s = await ranks(2, 'train', cut, { batchSize: 2, stopAfterSteps: 13, saveEvery: 13 });
    expect(s.failure, s.output.join('\n')).toBeNull();
    const saved = readTrainerState(path.join(cut, 'checkpoint'));
    expect([saved.state.globalStep, (saved.state as { worldSize?: number }).worldSize]).toEqual([13, 2]);
    // the whole state (both ranks' shards) in the single-process layout: the entries and moments a single process
    // has at the same step
    const cutOne = tmp();
    single('train', cutOne, { noGroup: true, batchSize: 2, accumScale: 2, stopAfterSteps: 13, saveEvery: 13 });
    const ref = readTrainerState(path.join(cutOne, 'checkpoint')).optimizer;
    expect([...saved.optimizer.keys()].sort()).toEqual([...ref.keys()].sort());
    expect(ref.size).toBeGreaterThan(30);
    let momentErr = 0;
    for (const [k, t] of ref) {
      const got = saved.optimizer.get(k)!.data, want = t.data;
      // floors: the key bias's gradient is rounding noise (~1e-13; softmax ignores it), its moments as well
      const scale = Math.max(...Array.from(want, Math.abs), k.endsWith('.v') ? 1e-12 : 1e-6);
      for (let i = 0; i < want.length; i++) momentErr = Math.max(momentErr, Math.abs(got[i] - want[i]) / scale);
    }
    expect(momentErr).toBeLessThan(1e-4); // observed 5e-7
    // resumed on 2 ranks: bit for bit the uninterrupted run; on 1 rank at B with accumulation x2 (the same micro-batches):
    // within summation tolerance
    const again = tmp(), alone = tmp();
    fs.cpSync(cut, again, { recursive: true });
    fs.cpSync(cut, alone, { recursive: true });
    const c = await ranks(2, 'train', again, { batchSize: 2, resume: true });
    expect(c.failure, c.output.join('\n')).toBeNull();
    expect(weights(again).steps).toBe(7);
    expect(maxDiff(weights(again).weights, b.weights)).toBe(0);
    const solo = single('train', alone, { noGroup: true, batchSize: 2, accumScale: 2, resume: true });
    expect(maxDiff(weights(alone).weights, b.weights)).toBeLessThan(2e-6);
    // a float32 all-gather and one process round alike: no warning that the precision changed (there was one)
    expect(solo.stderr).not.toMatch(/all-gathered in|not bit for bit/);
  }, 120_000);

  it("a rank whose first step fails before its backward is armed still rebuilds the buckets with the others: the same weights as when every rank fails it; so does a kernel's refusal one rank learns of only at the step's read (async mode, a GPU's default)", async () => {
    const runs: [string, Record<string, unknown>][] = [
      ['rank 1', { failFirstLoss: 1 }],
      ['rank 0', { failFirstLoss: 0 }],
      ['every rank', { failFirstLoss: -1 }],
      ['rank 1, NaN pixel, async', { nanFirstLoss: 1, asyncMode: true }],
      ['rank 0, NaN pixel, async', { nanFirstLoss: 0, asyncMode: true }],
    ];
    const dirs = runs.map(() => tmp());
    for (const [k, [what, o]] of runs.entries()) {
      const r = await ranks(2, 'train', dirs[k], { batchSize: 2, steps: 3, timeoutMs: 20_000, ...o });
      expect(r.failure, `${what}: ${r.output.join('\n')}`).toBeNull();
    }
    const all = dirs.map((d) => weights(d));
    expect(all.map((w) => w.steps)).toEqual([5, 5, 5, 5, 5]); // the failed step is skipped on both ranks
    for (const [k, w] of all.entries()) expect(maxDiff(w.weights, all[2].weights), runs[k][0]).toBe(0);
    // rank 0 logs the refusal: its own, raised at its read; or rank 1's, through the all-reduce
    const skipped = (d: string) => fs.readFileSync(path.join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step?: number; detail?: string }).filter((x) => x.type === 'nonfinite').map((x) => [x.step, x.detail]);
    expect(skipped(dirs[4])).toEqual([[1, expect.stringMatching(/^\[(linear_cross_entropy|visual_word_kl)\] \w+ contains a non-finite value \(nan\) .*\(an asynchronous check/)]]);
    expect(skipped(dirs[3])).toEqual([[1, "a deferred data check failed on another rank (1 of 2; raised there at the step's read)"]]);
    // the record names the step's samples on every rank (2 ranks x batch 2), not rank 0's share alone
    const named = (d: string) => (fs.readFileSync(path.join(d, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; stepSamples?: number[] }).find((x) => x.type === 'nonfinite')!.stepSamples!);
    for (const d of [dirs[3], dirs[4]]) expect(new Set(named(d)).size).toBe(4);
  }, 150_000);

  it('gatherDtype bfloat16: every rank trains with the same bf16 weights, half the gather bytes; the float32 masters come back at the end and in checkpoints, which resume exactly on 2 ranks and on 1', async () => {
    const f32 = tmp(), b16 = tmp(), cut = tmp();
    const [r32, r16] = [await ranks(2, 'train', f32, { batchSize: 2, noOutDir: true, gatherDtype: 'float32' }), await ranks(2, 'train', b16, { batchSize: 2, gatherDtype: 'bfloat16' })];
    for (const r of [r32, r16]) expect(r.failure, r.output.join('\n')).toBeNull();
    type Seen = { seen: { bf16: boolean; sum: number }[]; gatherBytes: number[] };
    const seen = (dir: string, rank: number) => JSON.parse(fs.readFileSync(path.join(dir, `steps_rank_${rank}.json`), 'utf8')) as Seen;
    const [a0, a1, f0] = [seen(b16, 0), seen(b16, 1), seen(f32, 0)];
    // the weights of every micro-batch (10 steps, then 10 of 2), from the first: each stage's optimizer rounds them
    expect(a0.seen.length).toBe(30);
    a0.seen.forEach((x, i) => {
      expect(x.bf16, `micro-batch ${i}: a trainable weight is not a bf16 value`).toBe(true);
      expect(a1.seen[i].sum, `micro-batch ${i}: the ranks hold different weights`).toBe(x.sum);
    });
    expect(a0.gatherBytes.length).toBe(20);
    a0.gatherBytes.forEach((n, i) => {
      expect(n).toBeGreaterThan(0);
      expect(2 * n).toBe(f0.gatherBytes[i]);
    });
    // the float32 run's weights are not bf16 values: the check above can fail
    expect(f0.seen.some((x) => x.bf16)).toBe(false);
    // after the run the model holds the float32 masters (not bf16 values), close to the float32-gather run's
    const [w32, w16] = [weights(f32).weights, weights(b16).weights];
    const lowBits = Object.values(w16).flat().filter((x) => new Uint32Array(Float32Array.of(x).buffer)[0] & 0xffff).length;
    expect(lowBits).toBeGreaterThan(1000);
    const init = tmp();
    single('train', init, { noGroup: true, batchSize: 4, steps: 0 });
    const moved = maxDiff(w32, weights(init).weights), apart = maxDiff(w32, w16);
    console.log(`gatherDtype bfloat16: weights ${apart.toExponential(2)} from the float32 run's after 20 steps (moved ${moved.toExponential(2)}); ${lowBits} masters not bf16 values`);
    expect(apart).toBeGreaterThan(0);
    expect(apart).toBeLessThan(0.1 * moved); // observed 0.028: Adam gives near-zero gradients full-size steps, whose signs the rounding can flip
    // stopped at step 13 (stage b) and saved: the checkpoint's weights are the masters; resumed on 2 ranks, bit for bit
    const s = await ranks(2, 'train', cut, { batchSize: 2, stopAfterSteps: 13, saveEvery: 13, gatherDtype: 'bfloat16' });
    expect(s.failure, s.output.join('\n')).toBeNull();
    expect(readTrainerState(path.join(cut, 'checkpoint')).state.globalStep).toBe(13);
    // recorded, so that a resume in another gather dtype (or on one rank, which gathers nothing) is warned of
    expect(readTrainerState(path.join(cut, 'checkpoint')).state.stageSettings![0].gatherDtype).toBe('bfloat16');
    const alone = tmp();
    fs.cpSync(cut, alone, { recursive: true });
    const c = await ranks(2, 'train', cut, { batchSize: 2, resume: true, gatherDtype: 'bfloat16' });
    expect(c.failure, c.output.join('\n')).toBeNull();
    expect(weights(cut).steps).toBe(7);
    expect(maxDiff(weights(cut).weights, w16)).toBe(0);
    // the same checkpoint resumed by one process at B with accumulation x2 (float32 weights, plain AdamW): it
    // continues from the masters
    single('train', alone, { noGroup: true, batchSize: 2, accumScale: 2, resume: true });
    expect(weights(alone).steps).toBe(7);
    expect(maxDiff(weights(alone).weights, w16)).toBeLessThan(0.1 * moved);
  }, 120_000);

  it('vwlmm train --nproc-per-node 2 --gather-dtype bf16 trains over 2 ranks (through mpirun), rank 0 alone logging and writing the checkpoint', () => {
    const dir = tmp(), f = writeCliFixture(dir), out = path.join(dir, 'out');
    const args = ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), 'train', '--init', f.init, '--data', f.data, '--image-folder', f.imageFolder,
      '--out', out, '--steps', '3', '--batch-size', '2', '--lr', '1e-3', '--gather-dtype', 'bf16'];
    const alone = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(alone.status).not.toBe(0);
    expect(alone.stderr).toMatch(/--gather-dtype is for data-parallel runs/);
    const r = spawnSync(process.execPath, [...args, '--nproc-per-node', '2'], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr).toMatch(/starting 2 ranks \(mpi, through mpirun\)/);
    expect(r.stdout.match(/trained 3 steps/g)).toHaveLength(1);
    const state = readTrainerState(path.join(out, 'checkpoint')).state as { globalStep: number; worldSize?: number };
    expect([state.globalStep, state.worldSize]).toEqual([3, 2]);
    const train = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step?: number; gatherBytes?: number }).filter((x) => x.type === 'train');
    expect(train.map((x) => x.step)).toEqual([1, 2, 3]);
    // the same run gathering float32 weights moves twice the bytes each step
    const out32 = path.join(dir, 'out32');
    const r32 = spawnSync(process.execPath, [...args.map((a) => (a === out ? out32 : a === 'bf16' ? 'fp32' : a)), '--nproc-per-node', '2'], { encoding: 'utf8', cwd: root, timeout: 120_000 });
    expect(r32.status, r32.stderr + r32.stdout).toBe(0);
    const train32 = fs.readFileSync(path.join(out32, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; gatherBytes?: number }).filter((x) => x.type === 'train');
    expect(train.map((x) => 2 * x.gatherBytes!)).toEqual(train32.map((x) => x.gatherBytes));
    expect(train32[0].gatherBytes).toBeGreaterThan(0);
  }, 130_000);

  it('vwlmm demo --nproc-per-node 2: both ranks train and share the test questions, rank 0 alone writes the data and the answers and prints the one result', () => {
    const out = path.join(tmp(), 'demo');
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), 'demo', '--out', out, '--scale', '0.002', '--json', '--nproc-per-node', '2'],
      { encoding: 'utf8', cwd: root, timeout: 240_000 });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const lines = r.stdout.trim().split('\n').filter((l) => l.startsWith('{'));
    expect(lines).toHaveLength(1);
    const res = JSON.parse(lines[0]) as { ranks: number; nonRelationalAccuracy: number; categories: Record<string, { count: number }> };
    expect(res.ranks).toBe(2);
    expect(Object.values(res.categories).reduce((a, c) => a + c.count, 0)).toBe(1000); // the written test.json (50 images at this --scale), scored once
    for (const f of ['data/test.json', 'data/tokenizer.json', 'vw/checkpoint/model.safetensors', 'vw/metrics.jsonl', 'vw/loss_curve.png', 'vw/answers/test.jsonl']) expect(fs.existsSync(path.join(out, f)), f).toBe(true);
  }, 250_000);

  it('a rank killed in the middle of training ends the other one with an error, within seconds', async () => {
    const r = await ranks(2, 'die', tmp(), { batchSize: 2 }, 60_000);
    expect(r.failure).toMatch(/mpirun \(2 ranks\) (exited with code [1-9]|was killed)/);
    expect(r.output[0]).toMatch(/rank 1 .*(signal 9|Killed)|exited on signal/);
    expect(r.seconds).toBeLessThan(45);
  }, 70_000);

  it('a rank that hangs ends the waiting one with an error naming the collective and the timeout (not the tensor disposed after it)', async () => {
    const r = await ranks(2, 'hang', tmp(), { timeoutMs: 2000 }, 60_000);
    expect(r.failure).toMatch(/exited with code 1|was killed/);
    // waited for with the event loop running (Work.waitAsync), then synchronously: both name the deadline
    expect(r.output[0]).toMatch(/barrierAsync: \[all_reduce of 1 x int32\] rank 0 of 2: the collective did not complete within 2 s: another rank died, hangs/);
    expect(r.output[0].match(/did not complete within 2 s: /g), r.output[0]).toHaveLength(2);
    expect(r.seconds).toBeLessThan(40);
  }, 70_000);
});

describe('data shards', () => {
  const stage = (size: number, batchSize: number, gradAccum: number): Stage => ({ name: 's', size, batchSize, gradAccum, lr: 1, trainable: {}, makeBatch: () => { throw new Error('unused'); } });
  it('are disjoint and cover the epoch, deterministic per (seed, epoch, rank), and one rank at W x B sees what W ranks at B see', () => {
    for (const [size, B, accum, W] of [[24, 2, 3, 2], [36, 3, 2, 3], [10, 1, 1, 5]]) {
      const s = stage(size, B, accum), big = stage(size, B * W, accum);
      const steps = size / (B * accum * W);
      const seen: number[] = [];
      for (let step = 0; step < steps; step++) {
        for (let m = 0; m < accum; m++) {
          const perRank = Array.from({ length: W }, (_, r) => batchIndices(7, s, step, m, r, W));
          expect(perRank.flat().sort((x, y) => x - y)).toEqual([...batchIndices(7, big, step, m)].sort((x, y) => x - y));
          expect(batchIndices(7, s, step, m, 1, W)).toEqual(perRank[1]); // deterministic
          seen.push(...perRank.flat());
        }
      }
      expect([...seen].sort((x, y) => x - y)).toEqual(Array.from({ length: size }, (_, i) => i));
      // the next epoch is another permutation
      const first = (step: number) => Array.from({ length: W }, (_, r) => batchIndices(7, s, step, 0, r, W)).flat();
      expect(first(steps)).not.toEqual(first(0));
    }
  });
});

describe('launch environment and rendezvous', () => {
  it("an NCCL rank drives its local rank's GPU when several are visible, the only one otherwise, and says when it has none", () => {
    expect([0, 1, 3].map((l) => ncclDeviceIndex(l, 4))).toEqual([0, 1, 3]);
    expect([0, 1, 5].map((l) => ncclDeviceIndex(l, 1))).toEqual([0, 0, 0]); // CUDA_VISIBLE_DEVICES per rank
    expect(() => ncclDeviceIndex(2, 2)).toThrow(/local rank 2 has no GPU of its own: this machine shows 2 \(cuda:0 to cuda:1\)/);
  });

  it("several ranks on one machine share out its CPUs as their kernels' threads (at least one each); a single process keeps the pool's default", () => {
    expect(rankThreads({ RANK: '0', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2' }, 16)).toBe(8);
    expect(rankThreads({ RANK: '3', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '4' }, 2)).toBe(1);
    expect(rankThreads({ RANK: '1', WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3' }, 16)).toBe(5);
    expect(rankThreads({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '4', OMPI_COMM_WORLD_LOCAL_SIZE: '2' }, 6)).toBe(3); // 2 machines
    expect(rankThreads({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2' }, 1)).toBe(1); // mpirun bound it to a core
    expect(rankThreads({}, 16)).toBeNull();
    expect(rankThreads({ RANK: '0', WORLD_SIZE: '4', LOCAL_WORLD_SIZE: '1' }, 16)).toBeNull(); // one rank per machine
    expect(rankThreads({ RANK: 'x', WORLD_SIZE: '2' }, 16)).toBeNull(); // launchEnv names it where the command reads it
  });

  it('reads torchrun-style and mpirun variables, and names a malformed one', () => {
    expect(launchEnv({})).toMatchObject({ launcher: null, rank: 0, worldSize: 1 });
    expect(launchEnv({ RANK: '1', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'h', MASTER_PORT: '29500' }))
      .toEqual({ launcher: 'torchrun', rank: 1, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: 'h', masterPort: 29500 });
    expect(launchEnv({ OMPI_COMM_WORLD_RANK: '2', OMPI_COMM_WORLD_SIZE: '3', OMPI_COMM_WORLD_LOCAL_RANK: '0', OMPI_COMM_WORLD_LOCAL_SIZE: '1' }))
      .toMatchObject({ launcher: 'mpirun', rank: 2, worldSize: 3, localRank: 0, localWorldSize: 1 });
    expect(() => launchEnv({ RANK: 'x', WORLD_SIZE: '2' })).toThrow(/RANK must be an integer >= 0, got 'x'/);
    expect(() => launchEnv({ RANK: '2', WORLD_SIZE: '2' })).toThrow(/RANK 2 is not below WORLD_SIZE 2/);
    expect(() => launchEnv({ RANK: '0' })).toThrow(/RANK and WORLD_SIZE go together/);
    expect(() => launchEnv({ RANK: '0', WORLD_SIZE: '1', MASTER_PORT: '70000' })).toThrow(/MASTER_PORT must be a port number/);
  });

  it('hands rank 0 payload to every rank; a missing rank, a duplicate rank or another world size fails every rank with a clear error', async () => {
    const port = await freePort();
    const payload = Uint8Array.from({ length: 128 }, (_, i) => (i * 7) % 256);
    const o = { addr: '127.0.0.1', port, worldSize: 3, timeoutMs: 10_000 };
    // rank 2 starts first and retries until rank 0 listens
    const late = rendezvous({ ...o, rank: 2, payload: new Uint8Array(0) });
    await new Promise((r) => setTimeout(r, 300));
    const got = await Promise.all([rendezvous({ ...o, rank: 0, payload }), rendezvous({ ...o, rank: 1, payload: new Uint8Array(0) }), late]);
    for (const g of got) expect(Array.from(g)).toEqual(Array.from(payload));

    const p2 = await freePort(), o2 = { addr: '127.0.0.1', port: p2, worldSize: 3, timeoutMs: 1500 };
    const t0 = Date.now();
    const res = await Promise.allSettled([rendezvous({ ...o2, rank: 0, payload }), rendezvous({ ...o2, rank: 1, payload })]);
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(String((res[0] as PromiseRejectedResult).reason)).toMatch(/not every rank arrived within 1.5 s: missing rank\(s\) 2 of 3/);
    expect(String((res[1] as PromiseRejectedResult).reason)).toMatch(/missing rank\(s\) 2 of 3|did not all arrive/);

    const p3 = await freePort(), o3 = { addr: '127.0.0.1', port: p3, worldSize: 3, timeoutMs: 5000 };
    const dup = await Promise.allSettled([rendezvous({ ...o3, rank: 0, payload }), rendezvous({ ...o3, rank: 1, payload }), new Promise((r) => setTimeout(r, 200)).then(() => rendezvous({ ...o3, rank: 1, payload }))]);
    expect(dup.every((x) => x.status === 'rejected')).toBe(true);
    expect(String((dup[0] as PromiseRejectedResult).reason)).toMatch(/two processes claim rank 1/);
    // every rank's message says where once (the first-arrived rank 1 had 'rendezvous at ...:' twice)
    for (const x of dup) expect(String((x as PromiseRejectedResult).reason)).toBe(`Error: rendezvous at 127.0.0.1:${p3}: two processes claim rank 1 (check RANK of each)`);

    const p4 = await freePort();
    const mis = await Promise.allSettled([rendezvous({ addr: '127.0.0.1', port: p4, worldSize: 2, timeoutMs: 5000, rank: 0, payload }), rendezvous({ addr: '127.0.0.1', port: p4, worldSize: 3, timeoutMs: 5000, rank: 1, payload })]);
    expect(String((mis[0] as PromiseRejectedResult).reason)).toMatch(/rank 1 was started with WORLD_SIZE 3, rank 0 with 2/);
  }, 30_000);

  it('the torchrun-style launcher ends every rank when one fails, and names it', async () => {
    // rank 1 fails at once; rank 0 would wait a minute: the supervisor stops it
    const script = "const r = Number(process.env.RANK); if (process.env.WORLD_SIZE !== '3' || !process.env.MASTER_PORT) process.exit(9); if (r === 1) process.exit(3); setTimeout(() => {}, 60000);";
    const t0 = Date.now();
    const r = await launchRanks({ nproc: 3, backend: 'nccl', command: [process.execPath, '-e', script], stdio: 'pipe', graceMs: 1000 });
    expect(r.failure).toBe('rank 1 exited with code 3');
    expect(r.code).toBe(3);
    expect(Date.now() - t0).toBeLessThan(10_000);
    const ok = await launchRanks({ nproc: 2, backend: 'nccl', command: [process.execPath, '-e', 'process.exit(0)'], stdio: 'pipe' });
    expect(ok).toMatchObject({ code: 0, failure: null });
  }, 30_000);
});
