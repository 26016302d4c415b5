// Where a decoder training step spends its time, per op of the table (native/core/ops.def): the engine
// benchmark's decoder (benchmarks/engine_cpu.ts) run with the op profile on (profileOps), plus the step's wall time,
// so the rest is the JS side (autograd, allocation, argument checks). Not a test; prints a table.
//
//   npx tsx benchmarks/profile_decoder.ts [--reps 5]
import { profileOps } from '../src';
import { addByOp, declareFlags, engineDecoder, numArg } from './support';

// the flags this script reads: any other is refused, as is a flag without its value (support.ts)
declareFlags(['reps']);
const reps = numArg('reps', 5, { integer: true, min: 1 });
const { cfg, batch: BATCH, seq: SEQ, step: decoderStep } = engineDecoder();

const step = () => decoderStep();
step();
step();
profileOps(true);
let wall = 0;
for (let r = 0; r < reps; r++) {
  const t0 = process.hrtime.bigint();
  step();
  wall += Number(process.hrtime.bigint() - t0) / 1e6;
}
const perOp = addByOp(profileOps(false), new Map());
const rows = [...perOp.entries()].map(([op, e]) => ({ op, ms: e.ms / reps, calls: e.calls / reps })).sort((a, b) => b.ms - a.ms);
const inOps = rows.reduce((s, r) => s + r.ms, 0);
console.log(`decoder step (B ${BATCH} x T ${SEQ}, d ${cfg.hiddenSize}, ${cfg.numLayers} layers): ${(wall / reps).toFixed(1)} ms per step, ${inOps.toFixed(1)} ms in ops, ${(wall / reps - inOps).toFixed(1)} ms outside (JS, allocation)`);
for (const r of rows) console.log(`  ${r.op.padEnd(28)} ${r.ms.toFixed(2).padStart(8)} ms  ${String(r.calls).padStart(4)} calls`);
