// Where answering spends its time (issue 17): the phases of one batch of a question file made by
// benchmarks/answer_throughput.ts, on both sides, one after the other. vwlmm: reading and preprocessing the images,
// then per group of equal-length prompts (as VwLmm.generate runs them) the tower + projector, the decoder's prefill
// with the KV cache and the lm_head row, and decode steps; plus the time per op of the table over the whole batch
// (the op profile, profileOps, as benchmarks/profile_decoder.ts uses). transformers (hf_answer.py --profile): the image
// processor, get_image_features, the language model's prefill over the padded batch, decode steps.
// Not a test; prints two tables and one JSON line.
//
//   VWLMM_NUM_THREADS=2 npx tsx benchmarks/answer_profile.ts [--dir benchmarks/out/answer_throughput/d512]
//       [--batch-size 16] [--steps 4] [--python python3]
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { backendInfo, F, noGrad, profileOps, scope, Tensor } from '../src';
import { collate } from '../src/data/collate';
import { loadImage, preprocessClip } from '../src/data/images';
import { TextTokenizer } from '../src/data/tokenizer';
import { answerPrompt, answerQuestions } from '../src/eval/answer';
import { loadCheckpoint } from '../src/model/checkpoint';
import { KVCache } from '../src/nn/llama';
import { addByOp, arg, declareFlags, numArg, OpTotals } from './support';

declareFlags(['dir', 'batch-size', 'steps', 'python']);
const dir = path.resolve(arg('dir', 'benchmarks/out/answer_throughput/d512'));
const batchSize = numArg('batch-size', 16, { integer: true, min: 1 }), steps = numArg('steps', 4, { integer: true, min: 1 }); // ms per decode step: / steps
const python = arg('python', 'python3');

const perOp: OpTotals = new Map();
const decodeOps: OpTotals = new Map(); // the decode steps' share of perOp
let timing = false;
// The op profile (profileOps) since the last call, added to `into`, then restarted (while timing).
const collect = (into: OpTotals[]) => {
  if (!timing) return;
  const entries = profileOps(true);
  for (const m of into) addByOp(entries, m);
};
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function main(): Promise<void> {
  const modelDir = path.join(dir, 'model');
  const { model, config, tokenizerPath } = loadCheckpoint(modelDir);
  const tokenizer = new TextTokenizer(tokenizerPath!);
  const questions = fs.readFileSync(path.join(dir, 'questions.jsonl'), 'utf8').trim().split('\n').slice(0, batchSize).map((l) => JSON.parse(l) as { text: string; image: string });
  const P = model.numImageTokens, D = config.llm.hiddenSize;

  const phases = async () => {
    const ms = { images: 0, tower: 0, prefill: 0, decodeStep: 0, groups: 0 };
    let t = now();
    const prompts: { ids: Int32Array; positions: Int32Array; pixels: Float32Array }[] = [];
    for (const q of questions) {
      const rgb = await loadImage(path.join(dir, 'images', q.image));
      const pixels = await preprocessClip(rgb, { size: config.image.size, mean: config.image.mean, std: config.image.std, aspect: config.image.aspect === 'pad' ? 'pad' : 'resize_crop' });
      const ids = answerPrompt(q.text, true, config.template, tokenizer).inputIds!;
      const c = collate([{ inputIds: ids, labels: ids.map(() => -100), image: pixels }], { padId: tokenizer.padId ?? 0, numPatches: P });
      prompts.push({ ids: c.tokenIds, positions: c.imagePositions, pixels });
    }
    ms.images = now() - t;
    const byLength = new Map<number, typeof prompts>();
    for (const p of prompts) byLength.set(p.ids.length, [...(byLength.get(p.ids.length) ?? []), p]);
    ms.groups = byLength.size;
    for (const [T, group] of byLength) {
      const B = group.length, cache = new KVCache(config.llm.numLayers);
      noGrad(() => scope(() => {
        t = now();
        const pixels = new Float32Array(B * group[0].pixels.length);
        group.forEach((p, b) => pixels.set(p.pixels, b * p.pixels.length));
        const feats = model.imageFeatures(pixels, B);
        ms.tower += now() - t;
        t = now();
        const tokenIds = new Int32Array(B * T), imagePositions: number[] = [];
        group.forEach((p, b) => {
          tokenIds.set(p.ids, b * T);
          p.positions.forEach((pos) => imagePositions.push(b * T + pos));
        });
        const emb = model.inputEmbeddings({ B, T, tokenIds, imagePositions: Int32Array.from(imagePositions) }, feats);
        const hs = model.model.forward(emb, { cache }).last;
        model.lm_head.forward(F.reshape(F.slice(hs, 1, T - 1, 1), [B, D])).toArray();
        ms.prefill += now() - t;
        t = now();
        collect([perOp]);
        for (let s = 0; s < steps; s++) {
          scope(() => {
            const e = model.model.embed_tokens.forward(Tensor.fromArray(new Int32Array(B).fill(3 + s), [B, 1]));
            model.lm_head.forward(F.reshape(model.model.forward(e, { cache }).last, [B, D])).toArray();
          });
        }
        collect([perOp, decodeOps]);
        ms.decodeStep += (now() - t) / steps;
      }));
      cache.dispose();
    }
    return ms;
  };
  await phases(); // warm-up
  timing = true;
  profileOps(true);
  const t0 = now();
  const ms = await phases();
  const wall = now() - t0;
  collect([perOp]);
  profileOps(false);
  timing = false;
  // the same batch through answerQuestions at max_new_tokens 1 (what answer_throughput.ts times): its wall time less
  // the phases above is what the answering loop adds (images decoded again, answers file, fsync)
  const batchFile = path.join(dir, 'profile_questions.jsonl'), answers = path.join(dir, 'profile_answers.jsonl');
  fs.writeFileSync(batchFile, fs.readFileSync(path.join(dir, 'questions.jsonl'), 'utf8').trim().split('\n').slice(0, batchSize).join('\n') + '\n');
  let answerMs = Infinity;
  for (let rep = 0; rep < 2; rep++) {
    fs.rmSync(answers, { force: true });
    const t1 = now();
    await answerQuestions(model, tokenizer, { questions: batchFile, imageFolder: path.join(dir, 'images'), answers, modelId: 'profile', maxNewTokens: 1, batchSize, strict: true });
    answerMs = Math.min(answerMs, now() - t1);
  }
  model.dispose();

  const r = spawnSync(python, ['benchmarks/hf_answer.py', '--model', modelDir, '--questions', path.join(dir, 'questions.jsonl'), '--image-folder', path.join(dir, 'images'),
    '--answers-prefix', path.join(dir, 'profile'), '--batch-size', String(batchSize), '--threads', String(backendInfo().cpu.threads), '--profile', String(steps)],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], cwd: path.join(__dirname, '..') });
  // a failed transformers side does not discard vwlmm's measured side: it is printed, then the failure (exit 1)
  type Hf = { images: number; tower: number; prefill: number; decodeStep: number };
  let hf: Hf | null = null, hfError: string | null = null;
  if (r.status !== 0 || r.error) hfError = `hf_answer.py --profile failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}; its stderr is above)`;
  else {
    try {
      hf = JSON.parse((r.stdout ?? '').trim().split('\n').pop()!) as Hf;
    } catch {
      hfError = `hf_answer.py --profile printed no JSON line: ${(r.stdout ?? '').trim().split('\n').pop() || 'no output'}`;
    }
  }
  const side = (k: keyof Hf, per: number) => (hf ? (hf[k] / per).toFixed(1) : 'failed');

  const n = questions.length;
  console.log(`one batch of ${n} questions (${path.relative(process.cwd(), dir)}), ${backendInfo().cpu.threads} threads; ms per question, decode: ms per step of the batch (all groups)\n`);
  console.log('| phase | vwlmm | transformers |\n|---|---|---|');
  console.log(`| images read + preprocessed, prompts | ${(ms.images / n).toFixed(1)} | ${side('images', n)} |`);
  console.log(`| tower + projector | ${(ms.tower / n).toFixed(1)} | ${side('tower', n)} |`);
  console.log(`| decoder prefill + lm_head row | ${(ms.prefill / n).toFixed(1)} | ${side('prefill', n)} |`);
  console.log(`| one decode step (vwlmm: ${ms.groups} groups; transformers: 1 padded batch) | ${ms.decodeStep.toFixed(1)} | ${side('decodeStep', 1)} |`);
  console.log(`\nvwlmm: answerQuestions on the same batch at max_new_tokens 1: ${(answerMs / n).toFixed(1)} ms per question (best of 2), against ${((ms.images + ms.tower + ms.prefill) / n).toFixed(1)} for the phases above`);
  const ops = [...perOp.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const opTotal = ops.reduce((s, [, e]) => s + e.ms, 0);
  console.log(`\nvwlmm per op (whole batch: ${wall.toFixed(0)} ms wall, ${opTotal.toFixed(0)} ms in ops)\n| op | ms | calls | share of ops |\n|---|---|---|---|`);
  for (const [op, e] of ops.slice(0, 10)) console.log(`| ${op} | ${e.ms.toFixed(1)} | ${e.calls} | ${((100 * e.ms) / opTotal).toFixed(1)}% |`);
  const dops = [...decodeOps.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const dTotal = dops.reduce((a, [, e]) => a + e.ms, 0);
  console.log(`\nvwlmm per op in the ${steps} decode steps (${dTotal.toFixed(0)} ms in ops; copy_2d includes the KV cache's concat per layer and step)\n| op | ms per step | share |\n|---|---|---|`);
  for (const [op, e] of dops.slice(0, 6)) console.log(`| ${op} | ${(e.ms / steps).toFixed(1)} | ${((100 * e.ms) / dTotal).toFixed(1)}% |`);
  console.log(JSON.stringify({ benchmark: 'answer_profile', dir, questions: n, vwlmm: ms, transformers: hf, wallMs: wall, answerQuestionsMs: answerMs, ops: Object.fromEntries(ops.map(([k, e]) => [k, e])), decodeOps: Object.fromEntries(dops), ...(hfError ? { transformersError: hfError } : {}) }));
  if (hfError) {
    console.error(`transformers side: ${hfError}`);
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
