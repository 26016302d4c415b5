// Host memory of loading a checkpoint: loadCheckpoint streams the weights into the model one tensor at a time, so its
// peak RSS should be about the model itself plus one tensor; reading the whole checkpoint first (readCheckpointWeights
// + loadStateDict, the former path) holds a second full copy. A synthetic VW-LMM with a large LLM (default ~0.5B
// parameters, 2.2 GB of float32) is saved once; each way of loading runs in its own child process, which reports its
// peak RSS. Prints a table and one JSON line.
//
//   npx tsx benchmarks/checkpoint_load_memory.ts [--hidden 2048] [--layers 8] [--dir DIR]
// Without --dir the checkpoint goes to a fresh temporary folder, removed at the end. With --dir it is kept there and
// reused by a later run with the same --hidden / --layers (its bench_config.json must match; a different one is
// rebuilt); a folder holding a checkpoint this script did not write is refused, not overwritten.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadCheckpoint, readCheckpointWeights, saveCheckpoint, VwLmm } from '../src';
import type { VwLmmConfig } from '../src';
import { arg, declareFlags, numArg } from './support';

function bigConfig(hidden: number, layers: number): VwLmmConfig {
  return {
    llm: { vocabSize: 32000, hiddenSize: hidden, intermediateSize: Math.round((hidden * 11) / 4 / 64) * 64, numLayers: layers, numHeads: hidden / 128, numKvHeads: hidden / 128, rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 2048, initializerRange: 0.02 },
    vision: { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 2, imageSize: 32, patchSize: 8, numChannels: 3, layerNormEps: 1e-5, hiddenAct: 'quick_gelu', initializerRange: 0.02, initializerFactor: 1 },
    visionTower: 'embedded', projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', vmWeight: 1, pif: false, detachTarget: false,
    template: 'vicuna_v1', image: { size: 32, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711], aspect: 'square' }, imageTokenIndex: -200,
  };
}

declareFlags(['child', 'dir', 'hidden', 'layers']);
const mode = arg('child', '');
if (mode) {
  // child: load one way, report peak RSS (KiB -> bytes) and the model's size
  const dir = arg('dir', '');
  const t0 = Date.now();
  let params = 0;
  if (mode === 'stream') {
    const { model } = loadCheckpoint(dir);
    params = model.numParameters();
  } else {
    const weights = readCheckpointWeights(dir);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'bench_config.json'), 'utf8')) as VwLmmConfig;
    const model = VwLmm.create(cfg, 0);
    model.loadStateDict(weights, { strict: false });
    params = model.numParameters();
  }
  console.log(JSON.stringify({ mode, peakRssBytes: process.resourceUsage().maxRSS * 1024, params, seconds: (Date.now() - t0) / 1000 }));
} else {
  const hidden = numArg('hidden', 2048, { integer: true, min: 128 }), layers = numArg('layers', 8, { integer: true, min: 1 });
  if (hidden % 128 !== 0) throw new RangeError(`checkpoint_load_memory: --hidden takes a positive multiple of 128 (heads of 128), got ${hidden}`);
  const given = arg('dir', '');
  const dir = given || fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-load-bench-'));
  const cfg = bigConfig(hidden, layers);
  const benchConfig = path.join(dir, 'bench_config.json');
  const written = fs.existsSync(benchConfig) ? fs.readFileSync(benchConfig, 'utf8') : undefined;
  if (written === undefined && fs.existsSync(path.join(dir, 'model.safetensors')))
    throw new Error(`checkpoint_load_memory: ${dir} holds a checkpoint this script did not write (no bench_config.json): give another --dir`);
  if (written !== JSON.stringify(cfg) || !fs.existsSync(path.join(dir, 'model.safetensors'))) {
    // none yet, or one of other sizes (an earlier run's --hidden / --layers): (re)build it, so that the table and the
    // JSON line measure the model this command names
    if (written !== undefined) console.error(`checkpoint_load_memory: ${dir} holds a checkpoint of other sizes; rebuilding it for --hidden ${hidden} --layers ${layers}`);
    const m = VwLmm.create(cfg, 1);
    saveCheckpoint(dir, m);
    m.dispose();
    fs.writeFileSync(benchConfig, JSON.stringify(cfg));
  }
  const fileBytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
  const rows: { mode: string; peakRssBytes: number; params: number; seconds: number }[] = [];
  try {
    for (const m of ['stream', 'whole']) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', __filename, '--child', m, '--dir', dir], { encoding: 'utf8', cwd: path.join(__dirname, '..'), maxBuffer: 1 << 20 });
      if (r.status !== 0) throw new Error(`${m}: ${r.stderr}`);
      rows.push(JSON.parse(r.stdout.trim().split('\n').pop()!));
    }
  } finally {
    if (!given) fs.rmSync(dir, { recursive: true, force: true });
  }
  const GB = (b: number) => (b / 1e9).toFixed(2);
  const modelBytes = rows[0].params * 4;
  console.log(`${os.cpus()[0]?.model ?? 'cpu'}; checkpoint ${GB(fileBytes)} GB (${(rows[0].params / 1e6).toFixed(0)}M parameters, float32); the model itself ${GB(modelBytes)} GB`);
  console.log('| loading | peak RSS (GB) | peak RSS - model (GB) | seconds |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.mode === 'stream' ? 'loadCheckpoint (streamed)' : 'readCheckpointWeights + loadStateDict'} | ${GB(r.peakRssBytes)} | ${GB(r.peakRssBytes - modelBytes)} | ${r.seconds.toFixed(1)} |`);
  console.log(JSON.stringify({ date: new Date().toISOString(), command: `npx tsx benchmarks/checkpoint_load_memory.ts ${process.argv.slice(2).join(' ')}`.trim(), fileBytes, modelBytes, rows }));
}
