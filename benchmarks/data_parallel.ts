// Data-parallel training on this machine (issue 14): the demo's VW-LMM on Sort-of-CLEVR question batches (stage 2:
// everything trained but the tower), one process at the global batch against N ranks over MPI at 1/N of it each, the
// same global batch and the same samples. Prints one JSON line per run; run it once per arm:
//   VWLMM_NUM_THREADS=2 npx tsx benchmarks/data_parallel.ts --batch 32
//   VWLMM_NUM_THREADS=1 mpirun -np 2 --oversubscribe npx tsx benchmarks/data_parallel.ts --batch 16 [--gather-dtype bfloat16]
//     [--no-overlap-gather]   (the weights' all-gather waited for in the step, not overlapped with the next forward)
// (as root, Open MPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1). Measures the time per
// optimizer step after `--warmup` steps, the samples per second of the whole group, and the bytes each rank's
// collectives move per step. On 2 cores this shows the overhead of the group (the ranks share the same 2 cores), not a
// speed-up; the GPU numbers are for a machine with several GPUs (scaling model: benchmarks/scaling_model.ts).
import { initProcessGroup, launchEnv, ProcessGroup } from '../src/distributed';
import { DEFAULT_RECIPE, recipeConfig } from '../src/demo/recipe';
import { batchOf, makeSplit, makeTokenizer, questionConversation, tokenizeSamples } from '../src/demo/task';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { Trainer } from '../src/train/trainer';
import { arg, declareFlags, flag, numArg } from './support';

declareFlags(['batch', 'steps', 'warmup', 'gather-dtype'], ['no-overlap-gather']);
const batch = numArg('batch', 32, { integer: true, min: 1 }), steps = numArg('steps', 20, { integer: true, min: 1 }), warmup = numArg('warmup', 3, { integer: true, min: 0 });
const gatherDtype = arg('gather-dtype', 'float32') as 'float32' | 'bfloat16';
if (gatherDtype !== 'float32' && gatherDtype !== 'bfloat16') throw new RangeError(`data_parallel: --gather-dtype takes float32 or bfloat16, got '${gatherDtype}'`);
const overlapGather = !flag('no-overlap-gather');

async function main(): Promise<void> {
  const env = launchEnv();
  const group: ProcessGroup | null = env.worldSize > 1 ? await initProcessGroup({ backend: 'mpi' }) : null;
  const { tokenizer } = makeTokenizer();
  const split = makeSplit(256, new Generator(1), { nonRelational: 2, relational: 2 });
  const { samples } = tokenizeSamples(split.questions.map((q, i) => ({ image: i, turns: questionConversation(q) })), tokenizer, 'vicuna_v1');
  const r = DEFAULT_RECIPE;
  const model = VwLmm.create(recipeConfig(r, tokenizer.vocabSize), 0);
  const bopts = { imageSize: 75, numPatches: (75 / r.model.patch) ** 2, padId: tokenizer.padId, mean: r.imageMean, std: r.imageStd };
  const times: number[] = [];
  let last = Date.now(), gatherBytes = 0;
  const trainer = new Trainer(model, [{ name: 'questions', size: samples.length, steps: warmup + steps, batchSize: batch, lr: 1e-4, makeBatch: (idx) => batchOf(idx.map((i) => samples[i]), split, bopts), trainable: { projector: true, llm: true, vmHead: true } }], {
    seed: 0, processGroup: group ?? undefined, gatherDtype, overlapGather,
    onLog: (rec) => {
      if (rec.type !== 'train') return;
      gatherBytes = (rec.gatherBytes as number | undefined) ?? 0;
      const now = Date.now();
      times.push(now - last);
      last = now;
    },
  });
  last = Date.now();
  trainer.run();
  const trained = model.trainableParameters().reduce((a, p) => a + p.size, 0);
  const world = group?.worldSize ?? 1;
  const sec = times.slice(warmup).reduce((a, b) => a + b, 0) / 1000 / steps;
  if ((group?.rank ?? 0) === 0) {
    console.log(JSON.stringify({
      ranks: world, batchPerRank: batch, globalBatch: batch * world, threads: Number(process.env.VWLMM_NUM_THREADS ?? 0) || null, secondsPerStep: sec,
      samplesPerSec: (batch * world) / sec, trainedParameters: trained,
      // reduce-scatter of the gradients (float32) + all-gather of the weights (gatherDtype), each rank (W - 1) / W of the
      // buffer each way; gatherBytes: what the last step's all-gather brought this rank, counted by ZeroAdamW
      gatherDtype, overlapGather, bytesPerStepPerRank: world > 1 ? ((world - 1) / world) * trained * (4 + (gatherDtype === 'bfloat16' ? 2 : 4)) : 0, gatherBytes, library: group?.library ?? null,
    }));
  }
  model.dispose();
  group?.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
