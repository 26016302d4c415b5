// The nccl section's verdicts (benchmarks/gpu/device_check.sh): node benchmarks/gpu/nccl_verdicts.js "$L". Expected values are those of
// the same runs on the CPU over MPI (one rank).
const fs = require('fs'), L = process.argv[2];
const f = (d, n = 'weights.json') => JSON.parse(fs.readFileSync(`${L}/${d}/${n}`, 'utf8'));
const md = (a, b) => { let d = 0; for (const k in a.weights) { if (!b.weights[k]) return NaN; a.weights[k].forEach((x, i) => (d = Math.max(d, Math.abs(x - b.weights[k][i])))); } return d; };
const t = (name, fn) => { try { console.log(`${name}: ${fn()}`); } catch (e) { console.log(`${name}: check FAILED (${e.message})`); } };
t('NCCL one rank fp32 vs single process', () => {
  const a = f('nccl_ref'), b = f('nccl_one'), d = md(a, b);
  const arriving = b.overlap.filter(([, tot, arr]) => arr >= tot && tot > 0).length;
  // [buckets started in the backward, buckets, buckets still arriving after the step], as on the CPU over MPI
  const cpu = JSON.stringify([...Array(10).fill([2, 2, 2]), [2, 10, 11], ...Array(9).fill([9, 11, 11])]);
  return `${b.steps} steps, max |dw| ${d} ${d === 0 && b.steps === 20 ? 'PASS (bit for bit)' : 'FAIL'}; steps that left every bucket arriving (overlap path taken): ${arriving}/${b.overlap.length}; buckets per step ${JSON.stringify(b.overlap) === cpu ? 'as on the CPU' : 'DIFFER from the CPU: ' + JSON.stringify(b.overlap)}`;
});
t('NCCL one rank bf16 gather', () => {
  const one = f('nccl_one'), b = f('nccl_b16'), k = f('nccl_b16_blk'), s = f('nccl_b16', 'steps_rank_0.json'), sk = f('nccl_b16_blk', 'steps_rank_0.json');
  const moved = md(f('nccl_ref'), f('nccl_init')), apart = md(one, b), ob = md(b, k);
  const allB = s.seen.length === 30 && s.seen.every((x) => x.bf16);
  const same = ob === 0 && JSON.stringify(s.seen) === JSON.stringify(sk.seen);
  return `${s.seen.filter((x) => x.bf16).length}/${s.seen.length} micro-batches on bf16 weights ${allB ? 'PASS' : 'FAIL'}; ` +
    `max |dw| from the fp32 gather ${apart.toExponential(2)} of ${moved.toExponential(2)} moved ${apart > 0 && apart < 0.1 * moved ? 'PASS' : 'FAIL'} (CPU/MPI one rank: 8.43e-04 of 3.00e-02); ` +
    `overlapped vs blocking gather ${ob} ${same ? 'PASS (bit for bit)' : 'FAIL'}`;
});
t('NCCL one rank, a deferred refusal skips the step', () => {
  const a = f('nccl_fail'), b = f('nccl_nan'), d = md(a, b);
  const log = fs.readFileSync(`${L}/nccl_nan/metrics.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'nonfinite');
  const named = log.length === 1 && log[0].step === 1 && /contains a non-finite value .*an asynchronous check/.test(log[0].detail);
  return `${a.steps} and ${b.steps} steps, max |dw| ${d} ${d === 0 && a.steps === 5 && b.steps === 5 ? 'PASS (bit for bit)' : 'FAIL'}; the refusal logged at step 1 ${named ? 'PASS' : 'FAIL: ' + JSON.stringify(log)}`;
});
