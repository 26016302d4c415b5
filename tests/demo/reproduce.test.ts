// The demo's stages 1 and 2 again with `vwlmm train`: runRecipe (with `reproduce`, as the demo runs it) writes the
// stage files, <run>/init and <run>/reproduce.sh; the script run through the CLI gives the run's per-step losses,
// learning rates and gradient norms and its final weights bit for bit (same machine and thread count: the paths are
// identical, src/demo/reproduce.ts says why). The last command on a shuffled copy of its file must differ, so the
// comparison can fail.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { COLOURS, writeSortOfClevr } from '../../src/data/sort_of_clevr';
import { paperSchedule, Recipe, runRecipe } from '../../src/demo/recipe';
import { tinyRecipe } from './support/tiny_recipe';
import { stageOptions } from '../../src/demo/reproduce';
import { readSafetensors } from '../../src/io/safetensors';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const tmp = tempDirs('reproduce');
// a seed other than the CLI's default, the tower trained in stage 2 at its own rate (--mm-vision-tower-lr), and an
// evaluation after every step (the demo's run evaluates, the file run does not)
const tiny: Recipe = tinyRecipe({ seed: 3, trainImages: 12, evalEvery: 1, steps: [2, 3, 3], stage2: { visionTowerLr: 1e-3 } });

type Rec = { type: string; stage: string; step: number; loss: number; ce: number; kl: number; lr: number; gradNorm: number };
const trainRecords = (file: string, stage?: string) => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec)
  .filter((r) => r.type === 'train' && (stage === undefined || r.stage === stage)).map(({ step, loss, ce, kl, lr, gradNorm }) => ({ step, loss, ce, kl, lr, gradNorm }));
const weights = (dir: string) => readSafetensors(path.join(dir, 'model.safetensors'));
/** Names of the tensors whose bytes differ (or that only one side has). */
function differing(a: ReturnType<typeof weights>, b: ReturnType<typeof weights>): string[] {
  const names = new Set([...a.keys(), ...b.keys()]);
  return [...names].filter((n) => {
    const x = a.get(n), y = b.get(n);
    if (!x || !y) return true;
    const bx = Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), by = Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength);
    return x.dtype !== y.dtype || !bx.equals(by);
  });
}
const bash = (script: string, out: string) => spawnSync('bash', [script, out], {
  encoding: 'utf8', cwd: root, timeout: 240_000,
  env: { ...process.env, VWLMM: `${process.execPath} --import tsx ${path.join(root, 'src', 'cli.ts')}` },
});

/** Runs the recipe as the demo does (data first, then runRecipe writing the stage files); returns the paths. */
async function demoRun(r: Recipe) {
  const dir = tmp(), data = path.join(dir, 'data'), run = path.join(dir, 'vw'), out = path.join(dir, 'again');
  writeSortOfClevr(data, { train: r.trainImages, test: 2, seed: r.seed });
  const res = await runRecipe(r, { outDir: run, reproduce: { dataDir: data }, logEvery: 1 });
  res.model.dispose();
  return { data, run, out, script: fs.readFileSync(path.join(run, 'reproduce.sh'), 'utf8') };
}
const commands = (script: string) => script.split('\n').filter((l) => l.startsWith('$vwlmm train'));
/** Every stage's train records (step, loss, CE, KL, lr, gradient norm) and the last checkpoint's bytes are the run's. */
function expectSameRun(run: string, out: string, stages: string[]): void {
  for (const s of stages) {
    const demo = trainRecords(path.join(run, 'metrics.jsonl'), s);
    expect(demo.length, s).toBeGreaterThan(0);
    expect(trainRecords(path.join(out, s, 'metrics.jsonl')), s).toEqual(demo);
  }
  expect(differing(weights(path.join(run, 'checkpoint')), weights(path.join(out, stages[stages.length - 1], 'checkpoint')))).toEqual([]);
}

describe('vwlmm demo reproduce.sh', () => {
  it('runs stages 1 and 2 again with `vwlmm train`: the same losses step by step and the same weights, bit for bit', async () => {
    const { data, run, out, script } = await demoRun(tiny);
    const stages = ['captions-frozen-tower', 'captions', 'questions'];
    expect(commands(script).map((l) => /--stage (\S+)/.exec(l)![1])).toEqual(stages);
    expect(script).toContain('--seed 3 ');
    expect(script).toContain('--trainable vision,projector,llm,vm --mm-vision-tower-lr 0.001 ');
    // stage 2's file: its 36 conversations (12 images x 20 questions, 8 a conversation) then 12 captions (25%)
    const questions = JSON.parse(fs.readFileSync(path.join(data, 'stages', 'questions.json'), 'utf8')) as { image: string; conversation_template: string }[];
    expect(questions.map((q) => q.conversation_template)).toEqual([...Array(36).fill('vicuna_v1'), ...Array(12).fill('plain')]);
    expect(questions[0].image).toBe('images/train_00000.png');
    const captions = JSON.parse(fs.readFileSync(path.join(data, 'stages', 'captions.json'), 'utf8')) as { image: string }[];
    expect(captions.map((c) => c.image)).toEqual(Array.from({ length: 12 }, (_, i) => `images/caption-subsets_${String(i).padStart(5, '0')}.png`));
    for (const c of captions) expect(fs.existsSync(path.join(data, c.image))).toBe(true);

    const r = bash(path.join(run, 'reproduce.sh'), out);
    expect(r.status, r.stderr).toBe(0);
    expectSameRun(run, out, stages);

    // the last command again on its file with the records reversed: other batches, other losses and weights
    fs.writeFileSync(path.join(data, 'stages', 'questions-reversed.json'), JSON.stringify([...questions].reverse()));
    const last = commands(script).pop()!;
    const head = script.split('\n').filter((l) => !l.startsWith('$vwlmm train')).join('\n');
    const reversed = path.join(run, 'reversed.sh'); // beside reproduce.sh: its paths are relative to the script
    fs.writeFileSync(reversed, `${head}\n${last.replace('/stages/questions.json', '/stages/questions-reversed.json').replace('--out "$out/questions"', '--out "$out/reversed"')}\n`);
    const rr = bash(reversed, out);
    expect(rr.status, rr.stderr).toBe(0);
    expect(trainRecords(path.join(out, 'reversed', 'metrics.jsonl')).map((x) => x.loss)).not.toEqual(trainRecords(path.join(run, 'metrics.jsonl'), 'questions').map((x) => x.loss));
    expect(differing(weights(path.join(run, 'checkpoint')), weights(path.join(out, 'reversed', 'checkpoint'))).length).toBeGreaterThan(0);
  }, 180_000);

  it('stage2.nonRelationalSteps: a stage of its own before questions, holding only the non-relational questions; stage2.positionPairs: the pairs', async () => {
    const { data, script } = await demoRun({ ...tiny, stage2: { ...tiny.stage2, nonRelationalSteps: 2 } });
    expect(commands(script).map((l) => /--stage (\S+)/.exec(l)![1])).toEqual(['captions-frozen-tower', 'captions', 'questions-non-relational', 'questions']);
    const read = (name: string) => JSON.parse(fs.readFileSync(path.join(data, 'stages', `${name}.json`), 'utf8')) as { conversation_template: string; conversations: { from: string; value: string }[] }[];
    const asked = (recs: ReturnType<typeof read>) => recs.filter((r) => r.conversation_template === 'vicuna_v1').flatMap((r) => r.conversations.filter((t) => t.from === 'human').map((t) => t.value.replace('<image>\n', '')));
    const kindOf = (q: string) => /^What shape /.test(q) ? 'shape' : /^Is the \S+ object on the (left|top)\?$/.exec(q)?.[1] ?? (/^What is the \S+ object\?$/.test(q) ? 'describe' : 'relational');
    const nonRel = new Set(asked(read('questions-non-relational')).map(kindOf)), all = new Set(asked(read('questions')).map(kindOf));
    expect([...nonRel].sort(), [...nonRel].join()).toEqual(['describe', 'left', 'shape', 'top']);
    expect(all.has('relational')).toBe(true);
    // stage2.positionPairs (2 by default): each conversation ends with that many pairs of the left and the top question
    // about one object, in either order, each answered yes or no
    const pairs = tiny.stage2.positionPairs!;
    expect(pairs).toBeGreaterThan(0);
    for (const r of read('questions').filter((x) => x.conversation_template === 'vicuna_v1')) {
      const tail = r.conversations.slice(-4 * pairs);
      for (let p = 0; p < pairs; p++) {
        const [q1, a1, q2, a2] = tail.slice(4 * p, 4 * p + 4);
        const m1 = /^Is the (\S+) object on the (left|top)\?$/.exec(q1.value), m2 = /^Is the (\S+) object on the (left|top)\?$/.exec(q2.value);
        expect(m1 && m2 && m1[1] === m2[1] && m1[2] !== m2[2], `${q1.value} / ${q2.value}`).toBe(true);
        expect([a1.value, a2.value].every((a) => a === 'yes' || a === 'no')).toBe(true);
      }
    }
  }, 120_000);

  it("stage1.positionCaptions: that share of the captions, in stage 1 and stage 2, name only the objects' colours and positions", async () => {
    type Rec = { image: string; conversation_template: string; conversations: { from: string; value: string }[] };
    const read = (data: string, name: string) => (JSON.parse(fs.readFileSync(path.join(data, 'stages', `${name}.json`), 'utf8')) as Rec[]);
    const captions = (recs: Rec[]) => recs.filter((x) => x.conversation_template === 'plain').map((x) => ({ image: x.image, text: x.conversations[1].value }));
    const POSITION = /^\w+ (left|right) (top|bottom)( , \w+ (left|right) (top|bottom))*$/;
    const full = await demoRun({ ...tiny, stage1: { ...tiny.stage1, positionCaptions: 0 } }), all = await demoRun({ ...tiny, stage1: { ...tiny.stage1, positionCaptions: 1 } });
    const half = await demoRun({ ...tiny, stage1: { ...tiny.stage1, positionCaptions: 0.5 } });
    // 0: none; with 1 every caption of both stages, each the full caption of its image without the shape and
    // relation words (stage 2's captions are the training images, in the same order in both runs)
    for (const stage of ['captions', 'questions']) expect(captions(read(full.data, stage)).some((c) => POSITION.test(c.text))).toBe(false);
    expect(captions(read(all.data, 'captions')).every((c) => POSITION.test(c.text))).toBe(true);
    const kept = new Set<string>([...COLOURS, 'left', 'right', 'top', 'bottom']);
    const want = captions(read(full.data, 'questions')).map((c) => ({ image: c.image, text: c.text.split(' , ').map((o) => o.split(' ').filter((w) => kept.has(w)).join(' ')).join(' , ') }));
    expect(want.length).toBeGreaterThan(0);
    expect(captions(read(all.data, 'questions'))).toEqual(want);
    // 0.5: drawn per caption, so both kinds
    const kinds = new Set(['captions', 'questions'].flatMap((stage) => captions(read(half.data, stage)).map((c) => POSITION.test(c.text))));
    expect([...kinds].sort()).toEqual([false, true]);
    await expect(runRecipe({ ...tiny, stage1: { ...tiny.stage1, positionCaptions: 1.5 } }, { outDir: tmp() })).rejects.toThrow(/positionCaptions must be a share in \[0, 1\], got 1.5/);
  }, 180_000);

  it("with the paper's schedule: init/ is the model after the text stage, stage 1 keeps the LLM frozen", async () => {
    const paper = paperSchedule({ ...tiny, text: { steps: 2, batchSize: 4, lr: 3e-3 } });
    const { run, out, script } = await demoRun(paper);
    expect(commands(script)[0]).toContain('--trainable projector,vm ');
    const r = bash(path.join(run, 'reproduce.sh'), out);
    expect(r.status, r.stderr).toBe(0);
    expectSameRun(run, out, ['captions-frozen-tower', 'captions', 'questions']);
  }, 120_000);
});

describe('reproduce.sh of a data-parallel demo', () => {
  it("runs each stage on as many ranks, each rank's share of the stage's batch (as the demo split it)", () => {
    const stage = { name: 'questions', steps: 5, batchSize: 32, gradAccum: 1, lr: 1e-3, warmupRatio: 0.03, weightDecay: 0, maxGradNorm: 1, trainable: { projector: true, llm: true, vmHead: true } } as unknown as Parameters<typeof stageOptions>[0];
    const one = stageOptions(stage, { seed: 0, device: 'cpu', dtype: 'float32', ranks: 1 });
    expect(one).not.toContain('--nproc-per-node');
    expect(one[one.indexOf('--batch-size') + 1]).toBe('32');
    const two = stageOptions(stage, { seed: 0, device: 'cpu', dtype: 'float32', ranks: 2 });
    expect(two.slice(0, 2)).toEqual(['--nproc-per-node', '2']);
    expect(two[two.indexOf('--batch-size') + 1]).toBe('16');
    expect(() => stageOptions(stage, { seed: 0, device: 'cpu', dtype: 'float32', ranks: 3 })).toThrow("stage 'questions': its batch of 32 does not split over 3 ranks");
  });
});
