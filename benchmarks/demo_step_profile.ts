// Where a demo training step's time goes: runs the default recipe (src/demo/recipe.ts) on a small split with short
// stages, records the op profile (profileOps) over the chosen stage's steps after its first 10, and prints the wall
// time per step, the time inside ops per step, and what the host cache and V8's collector did over those steps
// (stdout), then the ops and, with --top, the op shapes that take it (stderr, support.ts printOpProfile).
// The rest of a step's wall time is outside the ops: JavaScript, autograd, batch assembly.
//
//   npx tsx benchmarks/demo_step_profile.ts [--stage questions|captions|vision] [--steps 100] [--top 0]
//     [--replay on|off] [--device cpu|cuda]   (VWLMM_CUDA_GRAPHS=0: replays on CUDA call by call, without graphs)
// (`vision` is stage 0; `captions` stage 1 with the tower frozen. VWLMM_NUM_THREADS, VWLMM_GEMM apply as usual.)
// With replay on (TrainerOptions.replay, the default) the steps the trainer replays as op programs run no op through
// callOp, so the op profile sees only what stays in JavaScript (the optimizer); the last line prints the replay
// records and a hash of the trained weights, equal with replay on and off (the same numbers, bit for bit).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { constants, PerformanceObserver } from 'perf_hooks';
import { memoryStats, profileOps } from '../src';
import { DEFAULT_RECIPE, Recipe, runRecipe } from '../src/demo/recipe';
import { arg, declareFlags, numArg, printOpProfile } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['stage', 'steps', 'top', 'replay', 'device']);

// --top 0: no op/shape keys, only the time per op name
const stage = arg('stage', 'questions'), steps = numArg('steps', 100, { integer: true, min: 1 }), top = numArg('top', 0, { integer: true, min: 0 });
const replay = arg('replay', 'on') === 'on', device = arg('device', 'cpu') as 'cpu' | 'cuda';
const replayRecords: string[] = [];
const recordStage = { questions: 'questions', captions: 'captions-frozen-tower', vision: 'vision' }[stage];
if (!recordStage) throw new Error(`demo_step_profile: --stage must be questions, captions or vision, not '${stage}'`);
const n = (s: string) => (stage === s ? steps + 10 : 2);
const r: Recipe = {
  ...DEFAULT_RECIPE, trainImages: 512, testImages: 4, evalEvery: 0, evalQuestions: 10,
  stage0: { ...DEFAULT_RECIPE.stage0, steps: n('vision'), frozenSteps: n('captions') },
  stage1: { ...DEFAULT_RECIPE.stage1, steps: n('captions') },
  stage2: { ...DEFAULT_RECIPE.stage2, steps: n('questions') },
};
let weightHash = '';
(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-step-profile-'));
  let first = -1, last = -1, t0 = 0, t1 = 0;
  let entries: ReturnType<typeof profileOps> = [];
  let m0 = memoryStats().cpu, m1 = m0;
  // V8's collections during the recorded steps: a run of mark-compacts (major) costs steps several ms each on this
  // 2-core VM (the concurrent marker takes a core from the op threads; RESULTS, "A cost on the CPU demo")
  const gc = { major: 0, minor: 0, ms: 0 };
  const gcObserver = new PerformanceObserver((list) => {
    if (first < 0 || last === n(stage)) return;
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++;
      gc.ms += e.duration;
    }
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  try {
    const res = await runRecipe(r, {
      outDir: dir, logEvery: 10, replay, device,
      onLog: (rec) => {
        if (rec.type === 'replay' && rec.summary) {
          // the stage's end: its steps replayed, and on CUDA how many programs run as graphs (and why one does not)
          if (rec.stage === recordStage)
            replayRecords.push(`${rec.stage}: ${rec.replayed} replayed, ${rec.programs} programs${rec.graphs !== undefined ? `, ${rec.graphs} graphs launched ${rec.graphLaunches} times${rec.graphWhy ? ` (not a graph: ${rec.graphWhy})` : ''}` : ''}`);
        } else if (rec.type === 'replay') {
          replayRecords.push(`${rec.stage} step ${rec.step}: ${rec.used ? `replayed (${rec.ops} ops)` : `stopped: ${rec.why}`}`);
        }
        if (rec.stage !== recordStage || typeof rec.step !== 'number') return;
        if (first < 0 && rec.step >= 10) {
          profileOps(true);
          [first, t0, m0] = [rec.step, performance.now(), memoryStats().cpu];
        } else if (first >= 0 && last < n(stage)) {
          [last, t1, m1] = [rec.step, performance.now(), memoryStats().cpu];
          // the stage's last step: stop before the stages and the evaluation that follow it
          if (last === n(stage)) entries = profileOps(false);
        }
      },
    });
    // FNV-1a over every parameter's bytes: equal hashes, equal weights
    let h = 0x811c9dc5;
    for (const p of res.model.parameters()) {
      const b = new Uint8Array((p.toArray() as Float32Array).buffer);
      for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193) >>> 0;
    }
    weightHash = h.toString(16).padStart(8, '0');
    res.model.dispose();
  } finally {
    gcObserver.disconnect();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const k = last - first;
  if (k <= 0) throw new Error(`demo_step_profile: no ${stage} steps were recorded`);
  const opMs = entries.reduce((a, e) => a + e.ms, 0);
  console.log(`${stage}: ${k} steps, ${((t1 - t0) / k).toFixed(2)} ms a step, ${(opMs / k).toFixed(2)} ms in ops`);
  // the host cache over those steps: a steady-state step should ask the system for nothing
  const per = (a: number, b: number) => ((b - a) / k).toFixed(1);
  console.log(`host cache a step: ${per(m0.systemAllocs, m1.systemAllocs)} system allocations, ${per(m0.evictions, m1.evictions)} evictions, ${per(m0.cacheHits, m1.cacheHits)} hits; ${(m1.reservedBytes / 2 ** 20).toFixed(0)} MiB reserved (${(m1.cachedBytes / 2 ** 20).toFixed(0)} cached), peak ${(m1.peakReservedBytes / 2 ** 20).toFixed(0)} MiB`);
  console.log(`V8 collections over those steps: ${gc.major} mark-compact, ${gc.minor} scavenge, ${(gc.ms / k).toFixed(2)} ms a step paused`);
  printOpProfile(entries, k, top);
  console.log(`replay ${replay ? 'on' : 'off'} (${replayRecords.join('; ') || 'no replay records'}); weights ${weightHash}`);
})();
