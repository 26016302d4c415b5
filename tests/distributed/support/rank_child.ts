// One rank of the data-parallel tests (tests/distributed/data_parallel.test.ts), started by `mpirun -np N` (or alone, as a
// group of one; with backend 'nccl', by torchrun-style variables: benchmarks/gpu/device_check.sh):
//   node --import tsx tests/distributed/support/rank_child.ts <mode> <outDir> [json options]
//   collectives  every collective on random tensors; writes what it got (rank_<r>.json) for the test to check
//   train        (noGroup: the same without a group, plain AdamW) the tiny VW-LMM trained with the Trainer over the group; rank 0 writes the weights
//                and its host waits per step (hostSyncs, tests/train/host_syncs.test.ts) (weights.json); noOutDir: no
//                metrics or checkpoints (a save's reads would count in the next step); gatherDtype: the Trainer's, and each
//                rank writes what its trainable weights were at every loss (steps_rank_<r>.json: all bf16 values?, their
//                sum; rank 0: the bytes of each step's weight all-gather)
//                failFirstLoss: this rank (-1: every rank) finds its first micro-batch's loss non-finite (the Trainer skips
//                the step on every rank), before its backward was ever armed; nanFirstLoss: this rank's first sample gets
//                a NaN pixel, which the fused losses refuse (with asyncMode, at the step's read: a GPU's default)
//                mixed: image and text-only samples (tests/train/support/mixed.ts), VwLmm.loss of model batches, projector +
//                vm_head trained (a text-only micro-batch reaches neither), one stage of `steps`; rank 0 writes the weights
//   die          trains, and rank 1 kills itself with SIGKILL in the third step
//   zero         ZeroAdamW driven directly for 3 steps, step() called after readWithFlags (withRead) or without: rank 0
//                writes the host reads each step() made and the weights (zero.json)
//                accumScale: both stages' gradient accumulation times this (1 rank at accumulation x2 is 2 ranks' objective);
//                perRank: options of one rank ({ "1": {...} }: seed, size, steps, batchSize, gradAccum, lr, bucketBytes,
//                trainVision, hidden: the LLM's hidden size, initSeed: the weights' seed, pif, loraAlpha: LoRA adapters of
//                r 2 at this alpha, dataSettings: that many Stage.dataSettings), the ranks then disagree; stageStartSyncs (weights.json): the
//                host waits between a stage's start and its first loss (the ranks' stage-start check), not in `syncs`
//   hang         rank 1 stops taking part (sleeps), rank 0 waits for a barrierAsync (as a Trainer's start) with a 2 s
//                timeout (timeoutFromEnv: the group's timeout from VWLMM_COLLECTIVE_TIMEOUT) and prints its error, then
//                for an all-reduce on the broken group, then disposes its tensor
//   evaluate     evaluateFile over the group for each of `jobs` (data, imageFolder, options) with the model of `checkpoint`;
//                each rank writes its results, or a job's error message (eval_rank_<r>.json)
//   checks       ranks that disagree, each refused on every rank (each rank writes the messages to checks_rank_<r>.json):
//                a collective of another size under checkCollectives, then ZeroAdamW over other parameters
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initProcessGroup } from '../../../src/distributed/process_group';
import { keep, scope, Tensor } from '../../../src/tensor';
import { ZeroAdamW } from '../../../src/distributed/zero';
import { VwLmm } from '../../../src/model/vwlmm';
import { Stage, Trainer } from '../../../src/train/trainer';
import { backendInfo, F, hostSyncs, setAsync } from '../../../src';
import { inputOf, objectOf } from './inputs';
import { tinyConfig, tinyData } from '../../train/support/tiny';
import { mixedData } from '../../train/support/mixed';
import { evaluateFile, type EvalOptions } from '../../../src/eval/llava_eval';
import { loadCheckpoint } from '../../../src/model/checkpoint';
import { applyLora } from '../../../src/model/lora';
import { TextTokenizer } from '../../../src/data/tokenizer';

const [mode, outDir, json] = process.argv.slice(2);
type Options = { mixed?: boolean; backend?: 'mpi' | 'nccl'; device?: 'cpu' | 'cuda'; noGroup?: boolean; seed?: number; batchSize?: number; steps?: number; gradAccum?: number; accumScale?: number; stopAfterSteps?: number; saveEvery?: number; noOutDir?: boolean; resume?: boolean; bucketBytes?: number; timeoutMs?: number; timeoutFromEnv?: boolean; gatherDtype?: 'float32' | 'bfloat16'; overlapGather?: boolean; failFirstLoss?: number; nanFirstLoss?: number; asyncMode?: boolean; withRead?: boolean; size?: number; lr?: number; trainVision?: boolean; hidden?: number; initSeed?: number; pif?: boolean; loraAlpha?: number; dataSettings?: number; checkpoint?: string; jobs?: { data: string; imageFolder: string; options: EvalOptions }[]; perRank?: Record<string, Partial<Options>> };
const given = JSON.parse(json ?? '{}') as Options;
let opts: Options = given;


async function main(): Promise<void> {
  if (opts.noGroup) return opts.mixed ? trainMixed(null, outDir) : trainTiny(null, outDir); // the single-process reference: AdamW, no group
  const group = await initProcessGroup({ backend: opts.backend ?? 'mpi', timeoutMs: opts.timeoutFromEnv ? undefined : opts.timeoutMs ?? 60_000, checkCollectives: mode === 'checks' });
  const { rank, worldSize } = group;
  opts = { ...given, ...given.perRank?.[String(rank)] };
  fs.mkdirSync(outDir, { recursive: true });
  if (mode === 'collectives') {
    const seed = opts.seed ?? 1, out: Record<string, number[]> = {};
    const dev = { device: group.device }; // NCCL: CUDA tensors (benchmarks/gpu/device_check.sh, one rank)
    scope(() => {
      for (const n of [0, 1, 7, 1000]) {
        for (const op of ['sum', 'avg', 'max', 'min'] as const) {
          const t = Tensor.fromArray(inputOf(seed + n, rank, n), [n], dev);
          group.allReduce(t, { op });
          out[`all_reduce/${op}/${n}`] = Array.from(t.toArray());
          const big = Tensor.fromArray(inputOf(seed + n + 1, rank, n * worldSize), [n * worldSize], dev);
          const small = Tensor.empty([n], dev);
          group.reduceScatter(small, big, { op });
          out[`reduce_scatter/${op}/${n}`] = Array.from(small.toArray());
          // bf16 travels as 16-bit words and reduces in float32, rounded once per partial result
          const tb = Tensor.fromArray(inputOf(seed + n + 2, rank, n), [n], { ...dev, dtype: 'bfloat16' });
          group.allReduce(tb, { op });
          out[`all_reduce_bf16/${op}/${n}`] = Array.from(tb.toArray());
        }
        const mine = Tensor.fromArray(inputOf(seed + n + 3, rank, n), [n], dev);
        const all = Tensor.empty([n * worldSize], dev);
        group.allGather(all, mine);
        out[`all_gather/${n}`] = Array.from(all.toArray());
        for (let root = 0; root < worldSize; root++) {
          const b = Tensor.fromArray(inputOf(seed + n + 4, rank, n), [n], dev);
          group.broadcast(b, root);
          out[`broadcast/${root}/${n}`] = Array.from(b.toArray());
        }
        const ints = Tensor.fromArray(Int32Array.from({ length: n }, (_, i) => i * (rank + 1)), [n], dev);
        group.allReduce(ints, { op: 'sum' });
        out[`all_reduce_int32/sum/${n}`] = Array.from(ints.toArray());
      }
      // async: several in flight at once, waited for in reverse order
      const ts = [0, 1, 2].map((k) => Tensor.fromArray(inputOf(seed + 100 + k, rank, 333), [333], dev));
      const works = ts.map((t) => group.allReduceAsync(t));
      let refused = '';
      try {
        ts[0].dispose();
      } catch (e) {
        refused = (e as Error).message;
      }
      works.reverse().forEach((w) => w.wait());
      ts.forEach((t, k) => (out[`async/${k}`] = Array.from(t.toArray())));
      out.refusedDispose = [refused.includes('in use by a collective') ? 1 : 0];
      // JSON values of different lengths per rank (rank 1's over 100 KB), UTF-8 beyond ASCII, undefined as null
      (out as Record<string, unknown>).objects = [group.allGatherObject(objectOf(rank)), group.allGatherObject(undefined), group.allGatherObject(rank === 0 ? '' : 'ü')];
      group.barrier();
    });
    fs.writeFileSync(path.join(outDir, `rank_${rank}.json`), JSON.stringify({ rank, worldSize, localRank: group.localRank, library: group.library, threads: backendInfo().cpu.threads, cpus: os.availableParallelism(), out }));
  } else if (mode === 'train' && opts.mixed) {
    trainMixed(group, outDir);
  } else if (mode === 'train' || mode === 'die') {
    trainTiny(group, outDir, mode === 'die');
  } else if (mode === 'zero') {
    // three parameters over 256-byte buckets; gradients that differ per rank and per step (loss: sum of p * c)
    const params = [37, 5, 120].map((n, k) => {
      const p = keep(Tensor.fromArray(inputOf(40 + k, 0, n), [n]));
      p.requiresGrad = true;
      return p;
    });
    const opt = new ZeroAdamW(group, [{ params }], { lr: 1e-2, weightDecay: 0.01, bucketBytes: 256 });
    const syncs: number[] = [];
    for (let step = 0; step < 3; step++) {
      opt.armForBackward();
      scope(() => params.map((p, k) => F.sum(F.mul(p, Tensor.fromArray(inputOf(50 + 3 * step + k, rank, p.size), [p.size])))).reduce((a, b) => F.add(a, b)).backward());
      opt.reduceGradients();
      if (opts.withRead) scope(() => opt.readWithFlags(Tensor.zeros([2])));
      const before = hostSyncs();
      opt.step();
      syncs.push(hostSyncs() - before);
    }
    if (rank === 0) fs.writeFileSync(path.join(outDir, 'zero.json'), JSON.stringify({ syncs, weights: params.map((p) => Array.from(p.toArray())) }));
    opt.dispose();
    params.forEach((p) => p.dispose());
  } else if (mode === 'checks') {
    const refused: string[] = [];
    const attempt = (fn: () => void) => {
      try {
        fn();
        refused.push('');
      } catch (e) {
        refused.push((e as Error).message);
      }
    };
    // rank 1's all-reduce has one element more: refused on both ranks before it reaches MPI, and the group goes on
    attempt(() => scope(() => group.allReduce(Tensor.zeros([4 + rank]))));
    attempt(() => scope(() => group.allReduce(Tensor.zeros([3]))));
    // ZeroAdamW over parameters of other sizes: refused on both ranks before any bucket is reduced
    attempt(() => {
      const params = [7, 5 + rank].map((n) => keep(Tensor.zeros([n])));
      try {
        new ZeroAdamW(group, [{ params }], { lr: 1e-2 }).dispose();
      } finally {
        params.forEach((p) => p.dispose());
      }
    });
    fs.writeFileSync(path.join(outDir, `checks_rank_${rank}.json`), JSON.stringify(refused));
  } else if (mode === 'hang') {
    if (rank === 1) {
      const until = Date.now() + 60_000;
      while (Date.now() < until) { /* never takes part */ }
    }
    try {
      await group.barrierAsync(); // rank 0: times out after timeoutMs, polling
    } catch (e) {
      process.stderr.write(`barrierAsync: ${(e as Error).message}\n`);
    }
    const t = Tensor.zeros([4]);
    try {
      group.allReduce(t); // the group's first failure again
    } finally {
      t.dispose(); // cleanup as the Trainer's: accepted, so the timeout stays the error (the memory is never reused)
    }
  } else if (mode === 'evaluate') {
    // evaluateFile over the group, job after job (a job's error is recorded, and the next one starts on every rank)
    const { model, tokenizerPath } = loadCheckpoint(opts.checkpoint!);
    const tok = new TextTokenizer(tokenizerPath!);
    const results: unknown[] = [];
    for (const job of opts.jobs!) {
      try {
        results.push(await evaluateFile(model, tok, job.data, job.imageFolder, { ...job.options, processGroup: group }));
      } catch (e) {
        results.push({ error: (e as Error).message });
      }
    }
    model.dispose();
    fs.writeFileSync(path.join(outDir, `eval_rank_${rank}.json`), JSON.stringify(results));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  group.destroy();
}

/** What the test compares across world sizes: the mean over samples of each sample's own loss (equal weights). */
function trainTiny(group: Awaited<ReturnType<typeof initProcessGroup>> | null, dir: string, die = false): void {
  const { tokenizer, samples, makeBatch } = tinyData(16);
  const config = tinyConfig(tokenizer.vocabSize);
  if (opts.hidden) config.llm = { ...config.llm, hiddenSize: opts.hidden };
  if (opts.pif !== undefined) config.pif = opts.pif;
  const model = VwLmm.create(config, opts.initSeed ?? 4, { device: opts.device ?? 'cpu' });
  if (opts.loraAlpha !== undefined) applyLora(model, { r: 2, alpha: opts.loraAlpha, dropout: 0 });
  const seen: { bf16: boolean; sum: number }[] = [], gatherBytes: number[] = [];
  let losses = 0;
  const perSample = (m: VwLmm, idx: number[]) => {
    if (stageStarted) {
      // the host waits of the stage's start (the ranks' stage-start check) count apart from its steps' ones
      stageStarted = false;
      stageStartSyncs.push(hostSyncs() - syncsAt);
      syncsAt = hostSyncs();
    }
    if (losses++ === 0 && opts.failFirstLoss !== undefined && (opts.failFirstLoss === -1 || opts.failFirstLoss === group?.rank))
      throw new RangeError('rank_child: the loss contains a non-finite value (failFirstLoss)');
    const poison = losses === 1 && opts.nanFirstLoss !== undefined && opts.nanFirstLoss === group?.rank;
    if (opts.gatherDtype) {
      // the weights this micro-batch computes with: on every rank, all bf16 values? and their sum
      let bf16 = true, sum = 0;
      for (const p of m.trainableParameters()) {
        const v = p.toArray() as Float32Array;
        const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
        for (let i = 0; i < v.length; i++) {
          if (bits[i] & 0xffff) bf16 = false;
          sum += v[i];
        }
      }
      seen.push({ bf16, sum });
    }
    const batchOf = (i: number, k: number) => {
      const b = makeBatch([i]);
      if (!poison || k > 0) return b;
      const px = b.pixelValues!.slice();
      px[123] = NaN;
      return { ...b, pixelValues: px };
    };
    return F.scale(idx.map((i, k) => m.loss(batchOf(i, k)).loss).reduce((a, b) => F.add(a, b)), 1 / idx.length);
  };
  const dataSettings = opts.dataSettings ? { dataSettings: Object.fromEntries(Array.from({ length: opts.dataSettings }, (_, k) => [`s${k}`, k])) } : {};
  const common = { size: opts.size ?? samples.length, batchSize: opts.batchSize ?? 2, lr: opts.lr ?? 3e-3, warmupRatio: 0.1, loss: perSample, ...dataSettings };
  const scale = opts.accumScale ?? 1;
  const stages: Stage[] = [
    { name: 'a', ...common, steps: opts.steps ?? 10, ...(scale !== 1 ? { gradAccum: scale } : {}), trainable: { projector: true, vmHead: true, visionTower: opts.trainVision } },
    { name: 'b', ...common, steps: opts.steps ?? 10, gradAccum: (opts.gradAccum ?? 2) * scale, maxGradNorm: 0.05, weightDecay: 0.01, trainable: { visionTower: true, projector: true, llm: true, vmHead: true } },
  ];
  let step = 0, syncsAt = 0, stageStarted = false;
  const stageStartSyncs: number[] = [];
  const overlap: [number, number, number][] = [];
  const syncs: number[] = [];
  const trainer = new Trainer(model, stages, {
    seed: opts.seed ?? 5, processGroup: group ?? undefined, onStageStart: () => { stageStarted = true; }, dtype: 'float32', outDir: opts.noOutDir ? undefined : dir, autoResume: opts.resume, saveEvery: opts.saveEvery, stopAfterSteps: opts.stopAfterSteps, bucketBytes: opts.bucketBytes ?? 4096, gatherDtype: opts.gatherDtype, overlapGather: opts.overlapGather,
    onLog: (r) => {
      if (r.type !== 'train') return;
      step++;
      syncs.push(hostSyncs() - syncsAt);
      syncsAt = hostSyncs();
      if (r.buckets !== undefined) overlap.push([r.bucketsInBackward as number, r.buckets as number, r.bucketsArriving as number]);
      if (r.gatherBytes !== undefined) gatherBytes.push(r.gatherBytes as number);
    },
  });
  if (die && group && group.rank === 1) {
    // dies inside the third step's backward, with collectives of the others in flight
    let n = 0;
    const orig = stages[0].loss!;
    stages[0].loss = (m, idx) => {
      if (++n === 3) process.kill(process.pid, 'SIGKILL');
      return orig(m, idx);
    };
  }
  syncsAt = hostSyncs();
  if (opts.asyncMode) setAsync(opts.device ?? 'cpu', true);
  trainer.run();
  if (opts.gatherDtype) fs.writeFileSync(path.join(dir, `steps_rank_${group?.rank ?? 0}.json`), JSON.stringify({ seen, gatherBytes }));
  if ((group?.rank ?? 0) === 0) {
    const weights: Record<string, number[]> = {};
    for (const [name, p] of model.namedParameters()) weights[name] = Array.from(p.toArray());
    fs.writeFileSync(path.join(dir, 'weights.json'), JSON.stringify({ steps: step, weights, overlap, syncs, stageStartSyncs }));
  }
  model.dispose();
}

/** Image and text-only samples, each rank `batchSize` of every micro-batch (1 rank: accumScale x the accumulation). */
function trainMixed(group: Awaited<ReturnType<typeof initProcessGroup>> | null, dir: string): void {
  const d = mixedData();
  const model = VwLmm.create(tinyConfig(d.tokenizer.vocabSize), 4);
  const stage: Stage = {
    name: 'mix', size: d.samples.length, makeBatch: d.makeBatch, steps: opts.steps ?? 12, batchSize: opts.batchSize ?? 1, gradAccum: opts.accumScale ?? 1,
    lr: 3e-3, weightDecay: 0.1, trainable: { projector: true, vmHead: true },
  };
  new Trainer(model, [stage], { seed: opts.seed ?? 5, processGroup: group ?? undefined, dtype: 'float32', outDir: dir, bucketBytes: opts.bucketBytes ?? 4096, checkpointFiles: { tokenizer: d.json } }).run();
  if ((group?.rank ?? 0) === 0) {
    const weights: Record<string, number[]> = {};
    for (const [name, p] of model.namedParameters()) weights[name] = Array.from(p.toArray());
    fs.writeFileSync(path.join(dir, 'weights.json'), JSON.stringify({ steps: stage.steps, weights }));
  }
  model.dispose();
}

main().catch((e) => {
  process.stderr.write(`rank error: ${(e as Error).message}\n`);
  process.exit(1);
});
