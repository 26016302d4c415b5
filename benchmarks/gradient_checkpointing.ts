// What gradient checkpointing (VwLmm.gradientCheckpointing, per decoder / vision layer) costs and saves on the CPU:
// the engine benchmark's decoder (benchmarks/engine_cpu.ts: LLaMA d 256, 4 layers, 8 x 256 tokens) forward + backward
// with and without it, alternating: seconds per step (median), the native bytes held between forward and backward
// (activations kept for the backward), and the peak the caching allocator reserved. Prints a table and one JSON line.
//
//   npx tsx benchmarks/gradient_checkpointing.ts [--reps 5] [--rounds 3]
import * as os from 'os';
import { memoryStats, releaseHostCache } from '../src';
import { declareFlags, engineDecoder, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['reps', 'rounds']);

const reps = numArg('reps', 5, { integer: true, min: 1 }), rounds = numArg('rounds', 3, { integer: true, min: 1 });
const { cfg, model, batch: BATCH, seq: SEQ, step: decoderStep } = engineDecoder();

function step(): { seconds: number; held: number } {
  const base = memoryStats().cpu.liveBytes;
  let held = 0;
  const t0 = process.hrtime.bigint();
  decoderStep(() => (held = memoryStats().cpu.liveBytes - base));
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, held };
}

const results: Record<'off' | 'on', { seconds: number[]; held: number; peakReserved: number }> = {
  off: { seconds: [], held: 0, peakReserved: 0 }, on: { seconds: [], held: 0, peakReserved: 0 },
};
for (let r = 0; r < rounds; r++) {
  for (const mode of ['off', 'on'] as const) {
    model.model.gradientCheckpointing = mode === 'on';
    releaseHostCache(); // the peak below is this mode's own
    step(); // warm-up
    for (let k = 0; k < reps; k++) {
      const s = step();
      results[mode].seconds.push(s.seconds);
      results[mode].held = s.held;
    }
    results[mode].peakReserved = Math.max(results[mode].peakReserved, memoryStats().cpu.peakReservedBytes);
  }
}
const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const MiB = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(`${os.cpus()[0]?.model ?? 'cpu'}, ${os.cpus().length} cores; decoder d ${cfg.hiddenSize}, ${cfg.numLayers} layers, ${BATCH} x ${SEQ} tokens; ${rounds} rounds x ${reps} steps`);
console.log('| gradient checkpointing | seconds per step (median) | held between forward and backward (MiB) | peak reserved (MiB) |');
console.log('|---|---|---|---|');
for (const mode of ['off', 'on'] as const) console.log(`| ${mode} | ${med(results[mode].seconds).toFixed(3)} | ${MiB(results[mode].held)} | ${MiB(results[mode].peakReserved)} |`);
console.log(JSON.stringify({ date: new Date().toISOString(), command: `npx tsx benchmarks/gradient_checkpointing.ts ${process.argv.slice(2).join(' ')}`.trim(), results: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { seconds: med(v.seconds), heldBytes: v.held, peakReservedBytes: v.peakReserved }])) }));
model.dispose();
