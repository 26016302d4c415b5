// Answering speed against transformers (issue 17, "Speed"): `vwlmm answer`'s answerQuestions and transformers'
// LlavaForConditionalGeneration.generate (benchmarks/hf_answer.py) on the same weights, the same question file and the
// same images, in one run, the sides taking turns (never at once): greedy, batched (--batch-size consecutive questions), a fixed
// max_new_tokens, float32, the same thread count (vwlmm's native pool; torch.set_num_threads on the other side).
//
//   VWLMM_NUM_THREADS=2 npx tsx benchmarks/answer_throughput.ts [--size demo|d512] [--questions 64] [--images 8]
//       [--batch-size 16] [--max-new-tokens 8] [--warmup 16] [--uniform] [--model DIR] [--out DIR] [--python python3]
//       [--device cuda] [--no-torch]
// Without torch and transformers importable by --python (or with --no-torch) only vwlmm's side runs (steps 1, 2, 4;
// the table has no transformers rows, checks or agreement) and the output says so.
// --device cuda (the GPU numbers of issue 17): both sides answer on the GPU in bf16, as LLaVA's evaluation runs; the
// check (step 3) stays float32 (vwlmm's logits from a CPU copy of the model, transformers' on the GPU in float32).
//
// What it does:
//   1. the model: --model DIR takes a transformers LLaVA directory (config.json, model.safetensors, tokenizer.json with
//      a BOS post-processor, vicuna_v1 prompts); otherwise one is made with random weights at --size and saved with
//      saveCheckpoint's transformers format, which both sides load:
//        demo   the Sort-of-CLEVR demo's model (src/demo/recipe.ts): LLaMA d 64, 2 layers, 8 heads, FFN 128, V 256;
//               CLIP d 64, 3 layers, 8 heads, FFN 256, 75 px, patch 15 (25 image tokens), select layer -1
//        d512   LLaMA d 512, 8 layers, 8 heads, FFN 1376, V 32000; a CLIP ViT-Ti/16 tower (d 192, 12 layers, 3 heads,
//               FFN 768, 224 px: 196 image tokens), select layer -2 (LLaVA-1.5's)
//      with a word-level tokenizer (BOS added as LLaMA's does; the question words, then filler words up to V - 1;
//      "<image>" the special token V - 1, the image token id, as in the llava-hf checkpoints);
//   2. --images PNGs at the tower's input size (coloured boxes) and --questions GQA-style questions (LLaVA's
//      llava_gqa_testdev_balanced.jsonl form: the question + "\nAnswer the question using a single word or phrase."),
//      of varied lengths unless --uniform (one template: every prompt the same length);
//   3. checks before any timing (hf_answer.py --check): the first questions' prompt ids, pixels and next-token logits
//      computed by vwlmm are recomputed by transformers from the same files; a mismatch stops the run (exit 2);
//   4. times, after a warm-up of --warmup questions, each side at max_new_tokens 1 (the prefill: images, the tower,
//      the prompt, one token) and at --max-new-tokens, in the order transformers 1, vwlmm 1, transformers N, vwlmm N
//      (other work on the machine then falls on both alike); the difference is the decode cost per further token;
//   5. compares the answers files of the two sides (exact text, and token by token), prints a table and one JSON line.
// Random weights almost never say </s>, so every answer runs to the budget; the GQA projections therefore use the
// measured prefill and decode costs with a stated answer length, and the H200 line is a bound, not a measurement.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { backendInfo, F, noGrad, scope } from '../src';
import { collate } from '../src/data/collate';
import { loadImage, preprocessClip } from '../src/data/images';
import { encodePng } from '../src/data/sort_of_clevr';
import { TextTokenizer } from '../src/data/tokenizer';
import { WORD_LEVEL_TOKENIZER_CONFIG, wordLevelPreTokenize, wordLevelTokenizerJson } from '../src/data/word_level_tokenizer';
import { answerPrompt, answerQuestions } from '../src/eval/answer';
import { HostTensor, writeSafetensors } from '../src/io/safetensors';
import { checkTokenizerVocab, loadCheckpoint, saveCheckpoint } from '../src/model/checkpoint';
import { CLIP_MEAN, CLIP_STD, VwLmmConfig } from '../src/model/config';
import { VwLmm } from '../src/model/vwlmm';
import { Generator } from '../src/random';
import { DeviceSpec, useDevice } from '../src/device';
import { arg, declareFlags, flag, numArg } from './support';

const GQA_QUESTIONS = 12578; // GQA testdev-balanced, llava_gqa_testdev_balanced.jsonl
const GQA_SUFFIX = '\nAnswer the question using a single word or phrase.';

type Size = 'demo' | 'd512';
function sizeConfig(size: Size): VwLmmConfig {
  const rgb = (v: readonly number[]) => [...v] as [number, number, number];
  if (size === 'demo')
    return {
      llm: { vocabSize: 256, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 8, numKvHeads: 8, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 1024, initializerRange: 0.05 },
      vision: { hiddenSize: 64, intermediateSize: 256, numLayers: 3, numHeads: 8, imageSize: 75, patchSize: 15, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.05, initializerFactor: 1 },
      visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -1, selectFeature: 'patch', vmWeight: 0, pif: false, detachTarget: false,
      template: 'vicuna_v1', image: { size: 75, mean: [1, 1, 1], std: [0.5, 0.5, 0.5], aspect: 'square' }, imageTokenIndex: -200,
    };
  return {
    // init std 0.05 (the demo's): at 0.02 a random model of this width gives nearly the same answer to every
    // question (3 distinct of 32), which would make the agreement check say little
    llm: { vocabSize: 32000, hiddenSize: 512, intermediateSize: 1376, numLayers: 8, numHeads: 8, numKvHeads: 8, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, initializerRange: 0.05 },
    vision: { hiddenSize: 192, intermediateSize: 768, numLayers: 12, numHeads: 3, imageSize: 224, patchSize: 16, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.05, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 0, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 224, mean: rgb(CLIP_MEAN), std: rgb(CLIP_STD), aspect: 'square' }, imageTokenIndex: -200,
  };
}

// GQA-style questions (GQA's question types: verify, query, choose, logical, compare), one word per slot
const COLORS = ['red', 'blue', 'green', 'yellow', 'gray', 'white', 'black', 'brown', 'purple', 'orange'];
const THINGS = ['table', 'chair', 'car', 'dog', 'cat', 'man', 'woman', 'shirt', 'tree', 'building', 'sign', 'bag', 'plate', 'cup', 'horse', 'bike', 'fence', 'window', 'door', 'hat'];
const SIDES = ['left', 'right'];
const ADJECTIVES = ['large', 'small', 'wooden', 'metal', 'old', 'young', 'tall', 'short', 'open', 'closed'];
const TEMPLATES: ((w: (list: string[]) => string) => string)[] = [
  (w) => `Is the ${w(COLORS)} ${w(THINGS)} to the ${w(SIDES)} of the ${w(THINGS)}?`,
  (w) => `What color is the ${w(THINGS)}?`,
  (w) => `Are there both ${w(THINGS)}s and ${w(THINGS)}s in the picture?`,
  (w) => `Who is wearing the ${w(THINGS)}?`,
  (w) => `Does the ${w(THINGS)} look ${w(ADJECTIVES)} or ${w(ADJECTIVES)}?`,
  (w) => `What is the ${w(COLORS)} ${w(THINGS)} made of?`,
  (w) => `Is the ${w(THINGS)} on the left or on the right of the image?`,
  (w) => `What is the name of the ${w(COLORS)} object that is to the ${w(SIDES)} of the ${w(ADJECTIVES)} ${w(THINGS)}?`,
  (w) => `Which side is the ${w(THINGS)} on?`,
  (w) => `Are the ${w(THINGS)} and the ${w(THINGS)} the same color?`,
];

interface Question { question_id: string; image: string; text: string; category: string }

function makeQuestions(n: number, images: number, uniform: boolean, seed: number): Question[] {
  const gen = new Generator(seed);
  const w = (list: string[]) => list[gen.int(list.length)];
  return Array.from({ length: n }, (_, i) => {
    const t = uniform ? 0 : gen.int(TEMPLATES.length);
    return { question_id: String(20000000 + i * 7919), image: `img${i % images}.png`, text: TEMPLATES[t](w) + GQA_SUFFIX, category: `template${t}` };
  });
}

/** PNGs of a few coloured boxes on white, at the tower's input size (no resize on either side). */
function writeImages(dir: string, n: number, size: number, seed: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const gen = new Generator(seed);
  for (let i = 0; i < n; i++) {
    const rgb = new Uint8Array(size * size * 3).fill(255);
    for (let b = 0; b < 4; b++) {
      const x0 = gen.int(size), y0 = gen.int(size), w = 1 + gen.int(size / 3), h = 1 + gen.int(size / 3);
      const c = [gen.int(256), gen.int(256), gen.int(256)];
      for (let y = y0; y < Math.min(size, y0 + h); y++) for (let x = x0; x < Math.min(size, x0 + w); x++) rgb.set(c, (y * size + x) * 3);
    }
    fs.writeFileSync(path.join(dir, `img${i}.png`), encodePng(rgb, size, size));
  }
}

/**
 * A word-level tokenizer.json of exactly V ids: <unk> <s> </s>, every word of the prompts, filler words, and
 * "<image>" (special) as id V - 1, the image token; BOS added by the post-processor, as LLaMA's tokenizer adds it.
 */
function tokenizerFor(V: number, texts: string[]): Record<string, unknown> {
  const words = new Set<string>();
  for (const t of texts) for (const p of wordLevelPreTokenize(t)) words.add(p);
  for (const s of ['<unk>', '<s>', '</s>']) words.delete(s);
  const fill = V - 4 - words.size;
  if (fill < 0) throw new RangeError(`the prompts have ${words.size} words: more than V = ${V} allows`);
  for (let i = 0; i < fill; i++) words.add(`w${String(i).padStart(5, '0')}`);
  const json = wordLevelTokenizerJson(words, { addBos: true });
  const vocab = (json.model as { vocab: Record<string, number> }).vocab;
  if (Object.keys(vocab).length !== V - 1) throw new Error(`tokenizer: ${Object.keys(vocab).length} ids, expected ${V - 1}`);
  vocab['<image>'] = V - 1;
  (json.added_tokens as Record<string, unknown>[]).push({ id: V - 1, content: '<image>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return json;
}

const SYSTEM = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.";

function makeModel(dir: string, size: Size, questions: Question[]): void {
  const cfg = sizeConfig(size);
  const V = cfg.llm.vocabSize;
  const model = VwLmm.create(cfg, 1234);
  try {
    saveCheckpoint(dir, model, {
      format: 'transformers', imageTokenIndex: V - 1,
      tokenizer: tokenizerFor(V, [SYSTEM, 'USER: ASSISTANT:', ...questions.map((q) => q.text)]),
      extraFiles: { 'tokenizer_config.json': JSON.stringify({ ...WORD_LEVEL_TOKENIZER_CONFIG, add_bos_token: true }, null, 2) + '\n' },
    });
  } finally {
    model.dispose();
  }
}

function writeJsonl(file: string, rows: object[]): void {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r) + '\n').join(''));
}

function readAnswers(file: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    const r = JSON.parse(l) as { question_id: string; text: string };
    m.set(String(r.question_id), r.text);
  }
  return m;
}

/** Exact-text agreement, and token agreement: tokens in the common prefix over the longer answer, summed. */
function agreement(a: Map<string, string>, b: Map<string, string>) {
  let same = 0, prefix = 0, longer = 0;
  for (const [id, ta] of a) {
    const tb = b.get(id);
    if (tb === undefined) throw new Error(`question ${id} has no transformers answer`);
    if (ta === tb) same++;
    const wa = ta ? ta.split(' ') : [], wb = tb ? tb.split(' ') : [];
    let k = 0;
    while (k < wa.length && k < wb.length && wa[k] === wb[k]) k++;
    prefix += k;
    longer += Math.max(wa.length, wb.length);
  }
  return { questions: a.size, exact: same / a.size, tokens: longer ? prefix / longer : 1, distinct: new Set(a.values()).size };
}

async function main(): Promise<void> {
  declareFlags(['size', 'questions', 'images', 'batch-size', 'max-new-tokens', 'warmup', 'python', 'out', 'model', 'device'], ['uniform', 'no-torch']);
  const size = arg('size', 'demo') as Size;
  if (size !== 'demo' && size !== 'd512') throw new RangeError(`--size must be demo or d512, got ${size}`);
  const nQuestions = numArg('questions', 64, { integer: true, min: 1 }), nImages = numArg('images', 8, { integer: true, min: 1 });
  // max new tokens at least 2: the decode cost is the difference to the 1-token run; --warmup 0: no warm-up
  const batchSize = numArg('batch-size', 16, { integer: true, min: 1 }), budget = numArg('max-new-tokens', 8, { integer: true, min: 2 });
  const warmup = numArg('warmup', batchSize, { integer: true, min: 0 }), uniform = flag('uniform');
  const python = arg('python', 'python3');
  // the transformers side needs torch and transformers; without them vwlmm's side still runs
  const noTorch = flag('no-torch');
  const torchOk = !noTorch && spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' }).status === 0;
  const torchNote = torchOk ? null : noTorch ? 'skipped (--no-torch)' : `not available (${python} -c "import torch, transformers" failed)`;
  if (torchNote) process.stderr.write(`transformers side ${torchNote}: timing vwlmm's side only\n`);
  const out = path.resolve(arg('out', `benchmarks/out/answer_throughput/${size}${uniform ? '-uniform' : ''}`));
  fs.mkdirSync(out, { recursive: true });
  // other work on the machine skews both sides: the load is printed with the results
  const loadAvg = () => Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const loadStart = fs.existsSync('/proc/loadavg') ? loadAvg() : null;

  // 1-2. model, images, questions
  const questions = makeQuestions(nQuestions, nImages, uniform, 7);
  const given = arg('model', '');
  const modelDir = given ? path.resolve(given) : path.join(out, 'model');
  if (!given) makeModel(modelDir, size, questions);
  const device = arg('device', 'cpu') as DeviceSpec;
  useDevice('--device', device);
  const onGpu = device !== 'cpu';
  const { model, config, tokenizerPath } = loadCheckpoint(modelDir);
  if (!tokenizerPath) throw new Error(`${modelDir} has no tokenizer.json`);
  const tokenizer = new TextTokenizer(tokenizerPath);
  checkTokenizerVocab(tokenizer.vocabSize, config.llm.vocabSize, tokenizerPath);
  const P = model.numImageTokens;
  const imageFolder = path.join(out, 'images');
  writeImages(imageFolder, nImages, config.image.size, 11);
  const qFile = path.join(out, 'questions.jsonl'), warmFile = path.join(out, 'warmup.jsonl');
  writeJsonl(qFile, questions);
  writeJsonl(warmFile, questions.slice(0, warmup));

  // prompt lengths: both sides pad each batch on the left (VwLmm.generate sorts the prompts by length first)
  const lengths = questions.map((q) => answerPrompt(q.text, true, config.template, tokenizer).inputIds!.length - 1 + P);
  const distinctLengths = new Set(lengths).size;

  // 3. what transformers must reproduce: the first questions' prompt ids, pixels and next-token logits
  const check = new Map<string, HostTensor>();
  for (let k = 0; k < Math.min(2, questions.length); k++) {
    const q = questions[k];
    const ids = answerPrompt(q.text, true, config.template, tokenizer).inputIds!;
    const pixels = await preprocessClip(await loadImage(path.join(imageFolder, q.image)), { size: config.image.size, mean: config.image.mean, std: config.image.std, aspect: config.image.aspect === 'pad' ? 'pad' : 'resize_crop' });
    const c = collate([{ inputIds: ids, labels: ids.map(() => -100), image: pixels }], { padId: tokenizer.padId ?? 0, numPatches: P });
    const logits = noGrad(() => scope(() => {
      const { h } = model.hidden({ B: 1, T: c.T, tokenIds: c.tokenIds, attentionMask: c.attentionMask, imagePositions: c.imagePositions, pixelValues: c.pixelValues });
      return model.lm_head.forward(F.slice(h, 0, c.T - 1, 1)).toArray() as Float32Array;
    }));
    check.set(`ids_${k}`, { dtype: 'int32', shape: [ids.length], data: Int32Array.from(ids) });
    check.set(`pixels_${k}`, { dtype: 'float32', shape: [pixels.length], data: pixels });
    check.set(`logits_${k}`, { dtype: 'float32', shape: [logits.length], data: Float32Array.from(logits) });
  }
  const checkFile = path.join(out, 'check.safetensors');
  writeSafetensors(checkFile, check);
  // the timed model: the checked one, or the same checkpoint on the GPU
  let timed = model;
  if (onGpu) {
    model.dispose();
    timed = loadCheckpoint(modelDir, { device }).model;
  }

  // the sides alternate, budget by budget (transformers first: its first call checks the inputs and the weights
  // before anything is timed), so that other work on the machine falls on both alike
  const threads = backendInfo().cpu.threads;
  type HfRun = { max_new_tokens: number; seconds: number; answered: number; generated_tokens: number; prompt_tokens: number };
  type HfOut = { torch: string; transformers: string; threads: number; attn_implementation: string; checks: Record<string, unknown> | null; runs: HfRun[]; error?: string };
  const transformers = (maxNewTokens: number, withCheck: boolean): HfOut => {
    process.stderr.write(`transformers: ${withCheck ? 'checking, then ' : ''}${nQuestions} questions at max_new_tokens ${maxNewTokens} ...\n`);
    const r = spawnSync(python, ['benchmarks/hf_answer.py', '--model', modelDir, '--questions', qFile, '--image-folder', imageFolder, '--answers-prefix', path.join(out, 'hf'),
      '--batch-size', String(batchSize), '--budgets', String(maxNewTokens), '--threads', String(threads), '--warmup', String(warmup), ...(withCheck ? ['--check', checkFile] : []),
      ...(onGpu ? ['--device', 'cuda', '--dtype', 'bf16'] : [])],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], cwd: path.join(__dirname, '..'), maxBuffer: 1 << 24 });
    const lastLine = (r.stdout ?? '').trim().split('\n').pop() ?? '';
    let o: HfOut;
    try {
      o = JSON.parse(lastLine) as HfOut;
    } catch {
      throw new Error(`hf_answer.py failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}): ${lastLine || 'no output'}`);
    }
    if (r.status !== 0 || o.error) throw new Error(`hf_answer.py: ${o.error ?? `exit ${r.status}`} (checks: ${JSON.stringify(o.checks)})`);
    return o;
  };
  const vwlmm = async (file: string, answers: string, maxNewTokens: number) => {
    fs.rmSync(answers, { force: true }); // answerQuestions resumes: a stale file would skip every question
    const t0 = process.hrtime.bigint();
    const res = await answerQuestions(timed, tokenizer, { questions: file, imageFolder, answers, modelId: path.basename(modelDir), maxNewTokens, batchSize, strict: true });
    return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, answered: res.answered, generated: res.generatedTokens };
  };
  const hf1 = torchOk ? transformers(1, true) : null;
  const hf = hf1 ? { ...hf1, checks: hf1.checks!, runs: [...hf1.runs] } : null;
  process.stderr.write(`vwlmm: warm-up, then ${nQuestions} questions at max_new_tokens 1 ...\n`);
  await vwlmm(warmFile, path.join(out, 'warmup_answers.jsonl'), budget);
  const ours = [await vwlmm(qFile, path.join(out, 'vwlmm.1.jsonl'), 1)];
  if (hf) hf.runs.push(...transformers(budget, false).runs);
  process.stderr.write(`vwlmm: ${nQuestions} questions at max_new_tokens ${budget} ...\n`);
  ours.push(await vwlmm(qFile, path.join(out, `vwlmm.${budget}.jsonl`), budget));
  timed.dispose();

  const loadEnd = loadStart === null ? null : loadAvg();

  // 5. agreement and the table
  const agree = hf ? [1, budget].map((b) => agreement(readAnswers(path.join(out, `vwlmm.${b}.jsonl`)), readAnswers(path.join(out, `hf.${b}.jsonl`)))) : null;
  const promptTokens = lengths.reduce((a, b) => a + b, 0) / lengths.length;
  const sides = [
    { name: 'vwlmm', runs: ours.map((o) => ({ seconds: o.seconds, answered: o.answered, generated: o.generated })) },
    ...(hf ? [{ name: 'transformers', runs: hf.runs.map((o) => ({ seconds: o.seconds, answered: o.answered, generated: o.generated_tokens })) }] : []),
  ].map((s) => {
    const [one, full] = s.runs;
    const prefillMs = (1000 * one.seconds) / one.answered; // per question: image, tower, prompt, first token, I/O
    const decodeMs = (1000 * (full.seconds - one.seconds)) / Math.max(1, full.generated - one.generated); // per further token
    // GQA-sized: 12,578 questions, each the measured prefill plus 2 decode steps (a 2-token answer and </s>)
    const gqaHours = (GQA_QUESTIONS * (prefillMs + 2 * decodeMs)) / 3.6e6;
    return {
      name: s.name, prefillMs, decodeMs, gqaHours,
      budgets: s.runs.map((o) => ({ answersPerSec: o.answered / o.seconds, tokensPerSec: o.generated / o.seconds, msPerToken: (1000 * o.seconds) / o.generated, seconds: o.seconds, generated: o.generated })),
    };
  });
  const [v, t] = sides; // t: undefined without the transformers side

  // H200 projection of LLaVA-1.5-7B on GQA (a bound from the hardware's peaks; nothing here was run on a GPU)
  const H200 = { bandwidth: 4.8e12, bf16: 989e12 };
  const llm7b = 6.74e9, clipL = 0.304e9, prompt7b = 576 + 64, clipTokens = 577, decodeSteps = 2;
  const prefillFlops = 2 * llm7b * prompt7b + 2 * clipL * clipTokens;
  const prefillBoundMs = (1000 * prefillFlops) / H200.bf16;
  const decodeStepBoundMs = (1000 * 2 * llm7b) / H200.bandwidth; // bf16 weights read once per step
  const h200 = {
    batch1Minutes: (GQA_QUESTIONS * (prefillBoundMs + decodeSteps * decodeStepBoundMs)) / 6e4,
    batch16Minutes: (GQA_QUESTIONS * (prefillBoundMs + (decodeSteps * decodeStepBoundMs) / 16)) / 6e4,
    realisticBatch1Minutes: (GQA_QUESTIONS * (prefillBoundMs / 0.5 + (decodeSteps * decodeStepBoundMs) / 0.7)) / 6e4,
    prefillBoundMs, decodeStepBoundMs,
  };

  const f = (x: number, d = 2) => x.toFixed(d);
  const cfg = config.llm, vis = config.vision;
  console.log(`\nanswering: ${given ? `${modelDir}:` : `${size} model`} (LLaMA d ${cfg.hiddenSize}, ${cfg.numLayers} layers, V ${cfg.vocabSize}; CLIP d ${vis.hiddenSize}, ${vis.numLayers} layers, ${P} image tokens), ` +
    `${nQuestions} questions over ${nImages} images${uniform ? ' (one template: equal prompt lengths)' : ''}, ${f(promptTokens, 1)} prompt tokens on average, batch ${batchSize}, ${onGpu ? `${device}, bf16` : `${threads} threads, float32`}`);
  if (hf) console.log(`checks (transformers recomputed vwlmm's first ${hf.checks.questions} questions): prompt ids equal ${hf.checks.prompt_ids_equal}, pixels max |diff| ${Number(hf.checks.pixels_max_abs_diff).toExponential(1)}, next-token logits rel. err ${Number(hf.checks.logits_rel_err).toExponential(1)}`);
  else console.log(`transformers side ${torchNote}: vwlmm's figures only, no checks, no comparison`);
  console.log(`${distinctLengths} distinct prompt lengths; both sides pad each batch on the left (vwlmm after sorting the prompts by length)\n`);
  console.log('| side | max_new_tokens | answers/s | generated tokens/s | ms per generated token | vwlmm / transformers (answers/s) | answers agree | tokens agree |');
  console.log('|---|---|---|---|---|---|---|---|');
  [1, budget].forEach((b, i) => {
    for (const s of sides) {
      const m = s.budgets[i];
      const cmp = s === v && t && agree;
      console.log(`| ${s.name} | ${b} | ${f(m.answersPerSec)} | ${f(m.tokensPerSec, 1)} | ${f(m.msPerToken, 1)} | ${cmp ? `${f(m.answersPerSec / t.budgets[i].answersPerSec)}x` : ''} | ${cmp ? `${f(100 * agree[i].exact, 1)}%` : ''} | ${cmp ? `${f(100 * agree[i].tokens, 1)}%` : ''} |`);
    }
  });
  console.log('');
  for (const s of sides) console.log(`${s.name}: prefill ${f(s.prefillMs, 1)} ms per question (the 1-token run), decode ${f(s.decodeMs, 2)} ms per further token (batched); GQA testdev (12,578 questions, 2-token answers + </s>) on this CPU at this size: ${f(s.gqaHours, 2)} h`);
  console.log(`distinct answers (vwlmm, ${budget} tokens): ${new Set(readAnswers(path.join(out, `vwlmm.${budget}.jsonl`)).values()).size} of ${nQuestions}; 1-minute load average ${loadStart} at the start, ${loadEnd} at the end (${threads} threads: more means other work shared the cores)`);
  console.log(`\nPROJECTION, not a measurement: LLaVA-1.5-7B on one H200, GQA testdev: prefill ${prompt7b} tokens + CLIP-L/336 at the bf16 peak (989 TFLOP/s) = ${f(prefillBoundMs, 1)} ms/question; ` +
    `decode ${decodeSteps} steps x 13.5 GB of bf16 weights at 4.8 TB/s = ${f(decodeStepBoundMs, 2)} ms/step: batch 1 >= ${f(h200.batch1Minutes, 1)} min, batch 16 >= ${f(h200.batch16Minutes, 1)} min; at 50% of peak FLOP/s and 70% of bandwidth, batch 1 ~ ${f(h200.realisticBatch1Minutes, 1)} min`);
  console.log(JSON.stringify({
    benchmark: 'answer_throughput', device, dtype: onGpu ? 'bf16' : 'fp32', size: given ? modelDir : size, questions: nQuestions, images: nImages, uniform, batchSize, maxNewTokens: budget, threads, promptTokens, distinctLengths, loadStart, loadEnd,
    gemm: backendInfo().cpu.gemm, torch: hf?.torch ?? torchNote, transformers: hf?.transformers ?? null, attn: hf?.attn_implementation ?? null, checks: hf?.checks ?? null, agreement: agree, sides, h200,
  }));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
