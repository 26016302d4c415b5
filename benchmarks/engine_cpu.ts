// Training-engine throughput on the CPU: forward + backward of a small LLaMA decoder (4 layers, d 256,
// 8 heads, seq 256, batch 8, vocab 4096, fused cross-entropy on next tokens) and a small CLIP ViT
// (4 layers, d 256, 8 heads, 64 px images in 8 px patches, batch 8, loss sum(h * R) on the LLaVA feature
// layer), next to the same models in PyTorch (transformers, eager and torch.compile) in the same run when
// python3 with torch and transformers is available (said so otherwise). Prints a table and one JSON line.
// Both ViTs stop at LLaVA's feature layer (-2): vwlmm with upToLayer, torch_engine.py with its encoder cut to L - 1
// layers and no post_layernorm (before 2026-12-06 torch ran all L layers + post_layernorm: a third more forward).
//
//   npx tsx benchmarks/engine_cpu.ts [--reps 3] [--rounds 1] [--models decoder,vit] [--torch-modes eager,compile] [--no-torch]
import { spawnSync } from 'child_process';
import * as os from 'os';
import { F, Generator, nn, scope, Tensor, zeroGrad } from '../src';
import { arg, declareFlags, engineDecoder, medianSeconds, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['reps', 'models', 'rounds', 'torch-modes'], ['no-torch']);

const args = process.argv.slice(2);
const reps = numArg('reps', 3, { integer: true, min: 1 });
const BATCH = 8, SEQ = 256;

const time = (step: () => void): number => medianSeconds(step, reps);

function decoder(): { seconds: number; tokens: number } {
  const d = engineDecoder();
  const seconds = time(() => d.step());
  d.model.dispose();
  return { seconds, tokens: d.batch * d.seq };
}

function vit(): { seconds: number; tokens: number } {
  const cfg: nn.ClipVisionConfig = { hiddenSize: 256, intermediateSize: 1024, numLayers: 4, numHeads: 8, imageSize: 64, patchSize: 8, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 };
  const gen = new Generator(1);
  const model = new nn.ClipVisionModel(cfg, { generator: gen });
  const pix = gen.normals(BATCH * 3 * 64 * 64);
  const nTok = 65;
  const R = gen.normals(BATCH * nTok * 256);
  const seconds = time(() =>
    scope(() => {
      const h = model.vision_model.forward(Tensor.fromArray(pix, [BATCH, 3, 64, 64]), { upToLayer: -2 }).lastHiddenState;
      F.sum(F.mul(h, Tensor.fromArray(R, [BATCH, nTok, 256]))).backward();
      zeroGrad(model.parameters());
    }),
  );
  model.dispose();
  return { seconds, tokens: BATCH * nTok };
}

function torchRun(model: string, mode: string): { seconds: number; tokensPerSecond: number; attention?: string } | { error: string } {
  const r = spawnSync('python3', ['benchmarks/torch_engine.py', '--model', model, '--mode', mode, '--reps', String(reps)], { encoding: 'utf8', timeout: 1_200_000 });
  try {
    return JSON.parse((r.stdout || '').trim().split('\n').pop() || '');
  } catch {
    return { error: (r.stderr || 'no output').slice(-300) };
  }
}

// Rounds alternate the implementations (vwlmm, torch eager, torch.compile per model), so a noisy machine's
// slow spells hit them alike; the table reports each implementation's median over the rounds, and the ratio
// of vwlmm to each PyTorch mode round by round (its median and range).
interface Row { model: string; impl: string; seconds: number; tokensPerSecond: number; note?: string; rounds: number[] }
const rows: Row[] = [];
const models = arg('models', 'decoder,vit').split(',').filter((m) => m === 'decoder' || m === 'vit');
const rounds = numArg('rounds', 1, { integer: true, min: 1 });
const torchModes = arg('torch-modes', 'eager,compile').split(',').filter((m) => m === 'eager' || m === 'compile');
const torchOk = !args.includes('--no-torch') && spawnSync('python3', ['-c', 'import torch, transformers'], { encoding: 'utf8' }).status === 0;
const add = (model: string, impl: string, seconds: number, tokens: number, note?: string): void => {
  let r = rows.find((x) => x.model === model && x.impl === impl);
  if (!r) rows.push((r = { model, impl, seconds: NaN, tokensPerSecond: NaN, note, rounds: [] }));
  r.rounds.push(seconds);
  const sorted = r.rounds.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  r.seconds = sorted.length ? sorted[Math.floor(sorted.length / 2)] : NaN;
  r.tokensPerSecond = tokens / r.seconds;
};
for (let round = 0; round < rounds; round++) {
  for (const name of models) {
    const r = (name === 'decoder' ? decoder : vit)();
    add(name, 'vwlmm', r.seconds, r.tokens);
    process.stderr.write(`  round ${round + 1}: ${name} vwlmm ${r.seconds.toFixed(3)} s\n`);
    if (!torchOk) continue;
    for (const mode of torchModes) {
      const t = torchRun(name, mode);
      if ('error' in t) add(name, `torch ${mode}`, NaN, r.tokens, t.error);
      else add(name, `torch ${mode}`, t.seconds, r.tokens, t.attention ? `attention=${t.attention}` : undefined);
      process.stderr.write(`  round ${round + 1}: ${name} torch ${mode} ${'error' in t ? 'failed' : t.seconds.toFixed(3) + ' s'}\n`);
    }
  }
}
const machine = `${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores`;
console.log(`\n${machine}; torch: ${torchOk ? 'yes' : 'not available or --no-torch'}; ${rounds} round(s), median of ${reps} steps each`);
console.log('| model | implementation | seconds (fwd+bwd, median of rounds) | tokens/s | vwlmm relative to it: per-round median (range) | note |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const base = rows.find((x) => x.model === r.model && x.impl === 'vwlmm')!;
  // ratio > 1: vwlmm is faster (its time is smaller)
  const ratios = r.rounds.map((t, i) => t / base.rounds[i]).filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  const rel = r === base || !ratios.length ? '' : `${ratios[Math.floor(ratios.length / 2)].toFixed(2)}x (${ratios[0].toFixed(2)}-${ratios[ratios.length - 1].toFixed(2)})`;
  console.log(`| ${r.model} | ${r.impl} | ${r.seconds.toFixed(3)} | ${r.tokensPerSecond.toFixed(0)} | ${rel} | ${r.note ?? ''} |`);
}
console.log(JSON.stringify({ date: new Date().toISOString(), machine, command: `npx tsx benchmarks/engine_cpu.ts ${args.join(' ')}`.trim(), rows }));
