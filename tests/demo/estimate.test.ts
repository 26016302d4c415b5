// What `vwlmm demo` says at its start (src/demo/estimate.ts): the GEMM line, the work it counts from the
// recipe (checked against what the trainer really evaluates), the estimate from injected per-step costs, and
// a real calibration on a tiny model.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { memoryStats } from '../../src';
import { Calibration, calibrate, demoWork, estimateDemo, estimateNotice, gemmKind, gemmNotice } from '../../src/demo/estimate';
import { DEFAULT_RECIPE, Recipe, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { tempDirs } from '../support/tmp';

const tmp = tempDirs('estimate');
const tiny: Recipe = tinyRecipe({ trainImages: 12, evalEvery: 3, steps: [3, 7, 6], frozenSteps: 100 });

// Per-unit costs in the ballpark of the 2-core reference machine with OpenBLAS (benchmarks/RESULTS.md: stage 0
// 159 s for 8,000 steps); the other figures are round numbers, the test checks the arithmetic.
const cal: Calibration = {
  stage0Step: 159 / 8000, captionStep: 0.05, questionStep: 0.07, question: 0.002, fileQuestion: 0.004,
  captionEvalImage: 0.003, setupImage: 0.001, writeImage: 0.0015, seconds: 4,
};

describe('demo estimate', () => {
  it('counts the default demo\'s work from its recipe', () => {
    const w = demoWork(DEFAULT_RECIPE, { ablation: false });
    // 1 caption + 6 question evaluations (every 1,000 steps; the stage's last, 6,000, is one of them), each with the
    // caption metrics on 200 test images; the question ones answer 600 questions; then the 4,000 of test.json (not the
    // 4,000 of the validation split again: the demo runs runRecipe with validate false)
    expect(w).toEqual({
      stage0Steps: 6000, captionSteps: 1000, questionSteps: 6000, questions: 6 * 600, fileQuestions: 4000,
      captionEvalImages: 7 * 200, setupImages: 9800, writeImages: 10000,
    });
    const a = demoWork(DEFAULT_RECIPE, { ablation: true });
    // the ablation shares stage 0 and the data set, and repeats everything else
    expect(a).toEqual({ ...w, captionSteps: 2000, questionSteps: 12000, questions: 2 * w.questions, fileQuestions: 8000, captionEvalImages: 2800, setupImages: 19600 });
  });

  it('a resumed demo counts only what is left', () => {
    // the VW run stopped 500 steps into the questions: no stage 0, 5,500 question steps left
    const r = demoWork(DEFAULT_RECIPE, { ablation: true, done: { vw: 1500, llava: null } });
    expect(r.stage0Steps).toBe(6000); // the ablation then trains its own stage 0: the resumed run has no tower to give
    expect(r.captionSteps).toBe(1000);
    expect(r.questionSteps).toBe(5500 + 6000);
    const v = demoWork(DEFAULT_RECIPE, { ablation: false, done: { vw: 600, llava: null } });
    expect([v.stage0Steps, v.captionSteps, v.questionSteps]).toEqual([0, 400, 6000]);
    // evaluations left: caption step 1,000 and question steps 1,000..6,000
    expect(v.captionEvalImages).toBe(7 * 200);
    expect(v.questions).toBe(6 * 600);
    // stopped after the question evaluation at step 1,000 (global 2,000): the five after it are left
    const u = demoWork(DEFAULT_RECIPE, { ablation: false, done: { vw: 2200, llava: null } });
    expect([u.captionSteps, u.questionSteps, u.captionEvalImages, u.questions]).toEqual([0, 4800, 5 * 200, 5 * 600]);
  });

  it('counts evaluations as the trainer runs them', async () => {
    // evalEvery 3 with 7 caption and 6 question steps: after caption steps 3, 6, 7 and question steps 3, 6
    const evals: string[] = [];
    const res = await runRecipe(tiny, { outDir: tmp(), onLog: (r) => { if (r.type === 'eval') evals.push(String(r.stage)); } });
    res.model.dispose();
    const w = demoWork(tiny, { ablation: false });
    expect(evals.length).toBe(5);
    expect(w.captionEvalImages).toBe(evals.length * tiny.testImages);
    expect(w.questions).toBe(evals.filter((s) => s === 'questions').length * tiny.evalQuestions);
  });

  it('multiplies the work by the measured costs', () => {
    const e = estimateDemo(demoWork(DEFAULT_RECIPE, { ablation: false }), cal);
    expect(e.parts.stage0).toBeCloseTo(6000 * 159 / 8000, 9);
    expect(e.parts.captions).toBeCloseTo(50, 9);
    expect(e.parts.questions).toBeCloseTo(420, 9);
    expect(e.parts.evaluation).toBeCloseTo(3600 * 0.002 + 4000 * 0.004 + 1400 * 0.003, 9);
    expect(e.parts.data).toBeCloseTo(9800 * 0.001 + 10000 * 0.0015, 9);
    expect(e.seconds).toBeCloseTo(Object.values(e.parts).reduce((s, x) => s + x, 0), 9);
    // a GEMM 5x slower on every step: the training parts scale, the rest does not
    const slow = estimateDemo(demoWork(DEFAULT_RECIPE, { ablation: false }), { ...cal, stage0Step: 5 * cal.stage0Step, captionStep: 5 * cal.captionStep, questionStep: 5 * cal.questionStep });
    expect(slow.seconds - e.seconds).toBeCloseTo(4 * (6000 * 159 / 8000 + 50 + 420), 6);
    const line = estimateNotice(e, cal, { ablation: false, resumed: false });
    expect(line).toMatch(/expected time on this machine: ~10\.7 min \(the VW-LMM run: stage 0 2\.0 min, captions 50 s, questions 7\.0 min, evaluation 27 s, data 25 s\)/);
    expect(line).toMatch(/a stage-0 step 20 ms, a caption step 50 ms, a question step 70 ms/);
    expect(estimateNotice(e, cal, { ablation: true, resumed: true })).toMatch(/\(both runs, the part left to resume:/);
  });

  it('names the GEMM; for the built-in one its kernel, and for the slow portable one the cost and the fix', () => {
    const ob = 'openblas OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64';
    expect(gemmKind(ob)).toBe('OpenBLAS');
    expect(gemmKind('builtin')).toBe('built-in');
    expect(gemmKind('mkl')).toBe('unknown');
    expect(gemmNotice({ gemm: ob, threads: 2, simd: 'avx2+fma' })).toBe(`vwlmm demo: CPU GEMM: OpenBLAS (${ob}), 2 threads, avx2+fma`);
    expect(gemmNotice({ gemm: 'builtin', threads: 2, simd: 'avx2+fma' }))
      .toBe("vwlmm demo: CPU GEMM: built-in (builtin), 2 threads, avx2+fma: its AVX2+FMA kernel, on par with OpenBLAS (the demo's steps 0.8-1.2x of its time)");
    expect(gemmNotice({ gemm: 'builtin (avx512f 12x32)', threads: 2, simd: 'avx2+fma' }))
      .toBe("vwlmm demo: CPU GEMM: built-in (builtin (avx512f 12x32)), 2 threads, avx2+fma: its AVX-512F kernel (the AVX2+FMA kernel's bits at 1.0-2.2x its rate; the demo's steps 0.8-0.85x of their time with OpenBLAS's AVX2 kernels)");
    const b = gemmNotice({ gemm: 'builtin', threads: 2, simd: 'generic' });
    expect(b.split('\n')[0]).toBe('vwlmm demo: CPU GEMM: built-in (builtin), 2 threads, generic');
    expect(b).toMatch(/portable kernel \(no AVX2\+FMA\): ~3x slower matrix products than OpenBLAS, the demo's steps 1\.0-1\.5x as long/);
    expect(b).toMatch(/sudo apt-get install -y libopenblas-dev, then `VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm`/);
  });

  it('calibrates on real steps, leaving no native memory and no temporary files behind', async () => {
    const ours = () => fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('vwlmm-calibration-'));
    const before = new Set(ours());
    const live = memoryStats().cpu.liveBuffers;
    const c = await calibrate(tiny);
    for (const [k, v] of Object.entries(c)) expect(Number.isFinite(v) && v > 0, `${k} = ${v}`).toBe(true);
    // per step, per question and per image, not per calibration: each well under the calibration's own time
    for (const k of ['stage0Step', 'captionStep', 'questionStep', 'question', 'fileQuestion'] as const) expect(c[k]).toBeLessThan(c.seconds / 5);
    expect(memoryStats().cpu.liveBuffers).toBe(live);
    expect(ours().filter((f) => !before.has(f))).toEqual([]);
  });
});
