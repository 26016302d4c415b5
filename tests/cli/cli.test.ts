// CLI smoke runs on tiny budgets (seconds): every command end to end, and clear errors on bad flags and
// paths (exit code 2, a message naming the problem, no stack trace).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';

const root = path.join(__dirname, '..', '..');
const cli = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 300_000 });
const out = tempDirs('cli')();

describe('vwlmm CLI', () => {
  let demo: Record<string, unknown>;
  let demoStderr = '';
  beforeAll(() => {
    const r = cli('demo', '--out', path.join(out, 'demo'), '--scale', '0.02', '--json');
    expect(r.status, r.stderr).toBe(0);
    demo = JSON.parse(r.stdout.trim().split('\n').pop()!);
    demoStderr = r.stderr;
  }, 300_000);

  it('demo --json ends with the accuracy summary and writes checkpoint, metrics, loss curve, visual words', () => {
    for (const k of ['nonRelationalAccuracy', 'relationalAccuracy', 'seconds', 'checkpoint']) expect(demo).toHaveProperty(k);
    // every question of the written test split is counted once, and the summary numbers are its averages
    const cats = demo.categories as Record<string, { accuracy: number; count: number }>;
    const testJson = JSON.parse(fs.readFileSync(path.join(out, 'demo', 'data', 'test.json'), 'utf8')) as unknown[];
    const mean = (names: string[]) => {
      const n = names.reduce((a, c) => a + cats[c].count, 0);
      return names.reduce((a, c) => a + cats[c].accuracy * cats[c].count, 0) / n;
    };
    expect(Object.keys(cats).sort()).toEqual(['closest', 'count', 'furthest', 'left', 'shape', 'top']);
    expect(Object.values(cats).reduce((a, c) => a + c.count, 0)).toBe(testJson.length);
    expect(demo.nonRelationalAccuracy as number).toBeCloseTo(mean(['shape', 'left', 'top']), 12);
    expect(demo.relationalAccuracy as number).toBeCloseTo(mean(['closest', 'furthest', 'count']), 12);
    expect(demo.accuracy as number).toBeCloseTo(mean(Object.keys(cats)), 12);
    // The tiny run (0.02 of the budget: 60 question steps) learns each question kind's answer words and answers
    // about at their chance level: 50.8% / 52.3% / 53.0% overall with seeds 0 / 1 / 2, while the untrained model
    // answers 0% (no answer word at all) and one giving one word to everything at most ~25% (the six kinds are
    // equally frequent; "square" is right for half of shape, closest and furthest). 0.35 keeps a margin of 15
    // points. (At 0.01 of the default recipe since stage 0's 'both' read-out, 30 question steps: 27.7%.)
    expect(demo.accuracy as number).toBeGreaterThan(0.35);
    // it said at its start which GEMM it runs and what it expects (on stderr: stdout holds only the JSON)
    const i = JSON.parse(cli('info', '--json').stdout) as { cpu: { gemm: string } };
    expect(demo.gemm).toBe(i.cpu.gemm);
    expect(demoStderr).toContain(`vwlmm demo: CPU GEMM: ${/^openblas/.test(i.cpu.gemm) ? 'OpenBLAS' : 'built-in'} (${i.cpu.gemm})`);
    expect(demoStderr).toMatch(/vwlmm demo: expected time on this machine: ~\d/);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'trainer_state.json', 'optimizer.safetensors']) expect(fs.existsSync(path.join(demo.checkpoint as string, f)), f).toBe(true);
    for (const k of ['metrics', 'lossCurve', 'visualWords']) expect(fs.statSync(demo[k] as string).size).toBeGreaterThan(100);
    // the accuracies score the answers file it kept (LLaVA's answer lines, one per test question, in its order)
    expect(demo.answers).toBe(path.join(out, 'demo', 'vw', 'answers', 'test.jsonl'));
    const answers = fs.readFileSync(demo.answers as string, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { question_id: string; model_id: string });
    expect(answers.map((a) => a.question_id)).toEqual((testJson as { id: string }[]).map((r) => r.id));
    // the name `vwlmm eval --checkpoint <out>/vw/checkpoint` gives it, so that eval resumes this answers file
    expect(answers[0].model_id).toBe('vw_checkpoint');
    // the in-training evaluations answer 600 questions at full scale, here 100 (at least 100 below --scale 1)
    const evals = fs.readFileSync(demo.metrics as string, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; questions?: number }).filter((r) => r.type === 'eval' && r.questions !== undefined);
    expect(evals.length).toBeGreaterThan(0);
    for (const r of evals) expect(r.questions).toBe(100);
  });

  it('eval --json on the generated test split, per category', () => {
    const r = cli('eval', '--checkpoint', demo.checkpoint as string, '--data', path.join(out, 'demo', 'data', 'test.json'), '--image-folder', path.join(out, 'demo', 'data'), '--limit', '30', '--json');
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { accuracy: number; count: number; categories: Record<string, { accuracy: number; count: number }> };
    expect(j.count).toBe(30);
    // the categories are those of the file's first 30 records, and the accuracy is their exact-match average
    const first = (JSON.parse(fs.readFileSync(path.join(out, 'demo', 'data', 'test.json'), 'utf8')) as { category: string }[]).slice(0, 30);
    const want: Record<string, number> = {};
    for (const rec of first) want[rec.category] = (want[rec.category] ?? 0) + 1;
    expect(Object.fromEntries(Object.entries(j.categories).map(([k, v]) => [k, v.count]))).toEqual(want);
    const right = Object.values(j.categories).reduce((a, c) => a + c.accuracy * c.count, 0);
    expect(Math.abs(right - Math.round(right))).toBeLessThan(1e-9); // exact match: whole answers right
    expect(j.accuracy).toBeCloseTo(right / 30, 12);
    // 18 / 19 / 18 of these 30 right after the demo runs of seeds 0 / 1 / 2; an untrained model gets 0
    expect(j.accuracy).toBeGreaterThan(0.2);
  });

  it("score sort-of-clevr on the demo's answers file gives the demo's numbers, without generating", () => {
    const r = cli('score', 'sort-of-clevr', '--answers', demo.answers as string, '--data', path.join(out, 'demo', 'data', 'test.json'), '--json');
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { accuracy: number; count: number; categories: Record<string, { accuracy: number; count: number }>; skipped: number };
    expect(j.accuracy).toBeCloseTo(demo.accuracy as number, 12);
    expect(j.categories).toEqual(demo.categories);
    expect(j.skipped).toBe(0);
  });

  it('score sort-of-clevr takes a folder of chunk files; eval with every record skipped fails, saying why', () => {
    const lines = fs.readFileSync(demo.answers as string, 'utf8').trim().split('\n');
    const chunks = path.join(out, 'chunks');
    fs.mkdirSync(chunks, { recursive: true });
    const half = Math.ceil(lines.length / 2);
    fs.writeFileSync(path.join(chunks, '2_0.jsonl'), lines.slice(0, half).join('\n') + '\n');
    fs.writeFileSync(path.join(chunks, '2_1.jsonl'), lines.slice(half).join('\n') + '\n');
    const r = cli('score', 'sort-of-clevr', '--answers', chunks, '--data', path.join(out, 'demo', 'data', 'test.json'), '--json');
    expect(r.status, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { accuracy: number }).accuracy).toBeCloseTo(demo.accuracy as number, 12);
    // no --image-folder: the images are looked for relative to the current directory, where they are not
    const e = cli('eval', '--checkpoint', demo.checkpoint as string, '--data', path.join(out, 'demo', 'data', 'test.json'), '--limit', '5');
    expect(e.status).toBe(2);
    expect(e.stderr).toMatch(/no record of .*test.json could be evaluated: 5 skipped: 5 image file not found \(first: images\/test_\d+\.png\) \(no --image-folder given/);
  });

  it('generate and visual-words on a generated image', () => {
    const img = path.join(out, 'demo', 'data', 'images', fs.readdirSync(path.join(out, 'demo', 'data', 'images')).find((f) => f.startsWith('test'))!);
    const g = cli('generate', '--checkpoint', demo.checkpoint as string, '--image', img, '--prompt', 'What shape is the red object?', '--max-new-tokens', '3');
    expect(g.status, g.stderr).toBe(0);
    // --json: the same answer with its prompt and ids, to compare token for token with transformers' generate
    const gj = cli('generate', '--checkpoint', demo.checkpoint as string, '--image', img, '--prompt', 'What shape is the red object?', '--max-new-tokens', '3', '--json');
    expect(gj.status, gj.stderr).toBe(0);
    const detail = JSON.parse(gj.stdout) as { prompt: string; inputIds: number[]; outputIds: number[]; text: string };
    expect(detail.text + '\n').toBe(g.stdout);
    expect(detail.prompt).toContain('USER: <image>\nWhat shape is the red object? ASSISTANT:');
    expect(detail.inputIds.filter((id) => id === -200)).toHaveLength(1);
    expect(detail.outputIds.length).toBeGreaterThan(0);
    expect(detail.outputIds.length).toBeLessThanOrEqual(3);
    const pic = path.join(out, 'vw.png');
    const v = cli('visual-words', '--checkpoint', demo.checkpoint as string, '--image', img, '--out', pic, '--top-k', '2');
    expect(v.status, v.stderr).toBe(0);
    const j = JSON.parse(v.stdout);
    expect(j.patches.length).toBe(25);
    expect(j.patches[0].words.length).toBe(2);
    expect(fs.statSync(pic).size).toBeGreaterThan(100);
  });

  it('train: one stage from a checkpoint on a LLaVA file, with a loss curve and a checkpoint', () => {
    const dataDir = path.join(out, 'demo', 'data');
    const r = cli('train', '--init', demo.checkpoint as string, '--data', path.join(dataDir, 'test.json'), '--image-folder', dataDir, '--out', path.join(out, 'train'), '--steps', '3', '--batch-size', '4', '--lr', '1e-3', '--trainable', 'vision,projector,llm,vm', '--mm-vision-tower-lr', '1e-4');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/step +3\/3 /);
    // the samples it saw (3 steps of 4), not the data set's size alone
    const total = (JSON.parse(fs.readFileSync(path.join(dataDir, 'test.json'), 'utf8')) as unknown[]).length;
    expect(r.stdout).toContain(`trained 3 steps on 12 samples (${+(12 / total).toFixed(2)} epochs of the ${total}) in `);
    for (const f of ['checkpoint/model.safetensors', 'metrics.jsonl', 'loss_curve.png']) expect(fs.existsSync(path.join(out, 'train', f)), f).toBe(true);
    const bad = cli('train', '--init', demo.checkpoint as string, '--data', path.join(dataDir, 'test.json'), '--image-folder', dataDir, '--out', path.join(out, 'train2'), '--trainable', 'brain');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown part\(s\) brain/);
    const frozenTower = cli('train', '--init', demo.checkpoint as string, '--data', path.join(dataDir, 'test.json'), '--image-folder', dataDir, '--out', path.join(out, 'train3'), '--mm-vision-tower-lr', '1e-4');
    expect(frozenTower.status).toBe(2);
    expect(frozenTower.stderr).toMatch(/--mm-vision-tower-lr needs the vision tower trainable/);
  });

  it('data sort-of-clevr and info', () => {
    const d = cli('data', 'sort-of-clevr', '--out', path.join(out, 'soc'), '--train', '3', '--test', '2', '--seed', '1');
    expect(d.status, d.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'soc', 'test.json'), 'utf8')).length).toBe(40);
    // a second data set over the first is refused; --overwrite-output-dir replaces it, leaving none of its images
    const again = cli('data', 'sort-of-clevr', '--out', path.join(out, 'soc'), '--train', '1', '--test', '1');
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/--out .*soc is not empty: data sort-of-clevr writes a new data set \(--overwrite-output-dir replaces/);
    expect(fs.readdirSync(path.join(out, 'soc', 'images'))).toHaveLength(5);
    expect(cli('data', 'sort-of-clevr', '--out', path.join(out, 'soc'), '--train', '1', '--test', '1', '--overwrite-output-dir').status).toBe(0);
    expect(fs.readdirSync(path.join(out, 'soc', 'images')).sort()).toEqual(['test_00000.png', 'train_00000.png']);
    // a folder of a user's files is not a data set to replace: nothing of it is removed
    const user = path.join(out, 'user');
    fs.mkdirSync(path.join(user, 'images'), { recursive: true });
    fs.writeFileSync(path.join(user, 'images', 'mine.png'), 'mine');
    fs.writeFileSync(path.join(user, 'train.json'), '[]');
    const mine = cli('data', 'sort-of-clevr', '--out', user, '--train', '1', '--test', '1', '--overwrite-output-dir');
    expect(mine.status).toBe(2);
    expect(mine.stderr).toMatch(/--out .*user holds files but no Sort-of-CLEVR data set \(no meta\.json of one\)/);
    expect(fs.readdirSync(path.join(user, 'images'))).toEqual(['mine.png']);
    expect(fs.readFileSync(path.join(user, 'train.json'), 'utf8')).toBe('[]');
    const i = cli('info', '--json');
    expect(i.status).toBe(0);
    expect(JSON.parse(i.stdout).cpu.gemm).toMatch(/openblas|builtin/);
  });

  it('bad flags and paths give a clear error and exit code 2', () => {
    const cases: [string[], RegExp][] = [
      [['eval', '--checkpoint', path.join(out, 'missing'), '--data', 'x.json'], /checkpoint .*missing does not exist/],
      [['eval', '--checkpoint', demo.checkpoint as string, '--data', path.join(out, 'none.json')], /data file .*none.json does not exist/],
      [['demo', '--scale', '-1'], /--scale must be > 0/],
      [['data', 'sort-of-clevr', '--out', path.join(out, 'x'), '--train', 'many'], /--train must be an integer/],
      [['data', 'sort-of-clevr', '--out', path.join(out, 'x'), '--train', '1000000000'], /--train must be at most 100000 .* got 1000000000/],
      // the generators are 32-bit: 2^32 would repeat seed 0's run; hexadecimal text is no decimal number
      [['data', 'sort-of-clevr', '--out', path.join(out, 'x'), '--seed', '4294967296'], /--seed must be an integer in \[0, 4294967295\] \(the random generators are 32-bit/],
      [['demo', '--out', path.join(out, 'x'), '--scale', '0x10'], /--scale must be a number/],
      [['demo', '--out', path.join(out, 'x'), '--scale', '1e9'], /--scale must be at most 100/],
      // refused before mpirun starts anything
      [['demo', '--out', path.join(out, 'x'), '--nproc-per-node', '100000'], /--nproc-per-node 100000 is more than 4 ranks per CPU core/],
      [['demo', '--out', path.join(out, 'x'), '--dtype', 'fp16'], /--dtype/],
      // an answers file that answers none of the records (as `eval` with no record answered): no accuracy over nothing
      [['score', 'sort-of-clevr', '--answers', path.join(out, 'empty.jsonl'), '--data', path.join(out, 'demo', 'data', 'test.json')], /no record of .*test.json could be scored against .*empty.jsonl: 1000 skipped: 1000 no answer in/],
      [['generate', '--checkpoint', demo.checkpoint as string, '--prompt', 'hi', '--top-p', '2'], /--top-p must be in \(0, 1\]/],
      [['frobnicate'], /unknown command/],
      [['train', '--init', demo.checkpoint as string, '--data', path.join(out, 'demo', 'data', 'test.json'), '--out', path.join(out, 'e0'), '--epochs', '0'], /--epochs must be > 0/],
      [['train', '--init', demo.checkpoint as string, '--data', path.join(out, 'demo', 'data', 'test.json'), '--out', path.join(out, 'e0'), '--max-grad-norm', '-1'], /--max-grad-norm must be >= 0/],
      // a LLaVA conversation file (a JSON array) where question lines are expected: one error, not a skip per line
      [['answer', '--checkpoint', demo.checkpoint as string, '--questions', path.join(out, 'demo', 'data', 'test.json'), '--answers', path.join(out, 'a.jsonl')], /test.json is a JSON array; model_vqa_loader's questions are JSON lines/],
      [['answer', '--checkpoint', demo.checkpoint as string, '--questions', path.join(out, 'demo', 'data', 'test.json'), '--answers', out], /answers .* is not a file/],
    ];
    fs.writeFileSync(path.join(out, 'empty.jsonl'), '');
    for (const [args, msg] of cases) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).not.toBe(0);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    // a refused demo made no --out (its options are checked before the folder is)
    expect(fs.existsSync(path.join(out, 'x'))).toBe(false);
  });
});
