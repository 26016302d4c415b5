// The verdict on a one-rank `collectives` run of tests/distributed/support/rank_child.ts (device_check.sh's nccl
// section: NCCL's dtypes, all_gather's and broadcast's layouts, int32 and allGatherObject on CUDA tensors; the MPI
// tests run the same mode on 2 ranks). With one rank every collective hands back its input: fp32 as stored, bf16
// rounded once, int32 exactly, and allGatherObject a list of the one value.
//   node --import tsx benchmarks/gpu/collectives_verdict.ts DIR SEED      (exit 1 on a failed check)
import * as fs from 'fs';
import * as path from 'path';
import { bf16ToF32, f32ToBf16 } from '../../src/bf16';
import { inputOf, objectOf } from '../../tests/distributed/support/inputs';

const [dir, seedArg] = process.argv.slice(2);
const seed = Number(seedArg ?? 1);
const got = JSON.parse(fs.readFileSync(path.join(dir, 'rank_0.json'), 'utf8')) as { worldSize: number; library: string; out: Record<string, unknown> };
const bad: string[] = [];
const same = (key: string, want: unknown) => {
  if (JSON.stringify(got.out[key]) !== JSON.stringify(want)) bad.push(`${key}: got ${JSON.stringify(got.out[key])?.slice(0, 80)}, expected ${JSON.stringify(want).slice(0, 80)}`);
};
const f32 = (s: number, n: number) => Array.from(inputOf(s, 0, n));
if (got.worldSize !== 1) bad.push(`worldSize ${got.worldSize}, expected 1`);
let checks = 0;
for (const n of [0, 1, 7, 1000]) {
  for (const op of ['sum', 'avg', 'max', 'min']) {
    same(`all_reduce/${op}/${n}`, f32(seed + n, n));
    same(`reduce_scatter/${op}/${n}`, f32(seed + n + 1, n));
    same(`all_reduce_bf16/${op}/${n}`, Array.from(bf16ToF32(f32ToBf16(inputOf(seed + n + 2, 0, n)))));
    checks += 3;
  }
  same(`all_gather/${n}`, f32(seed + n + 3, n));
  same(`broadcast/0/${n}`, f32(seed + n + 4, n));
  same(`all_reduce_int32/sum/${n}`, Array.from({ length: n }, (_, i) => i));
  checks += 3;
}
for (let k = 0; k < 3; k++) same(`async/${k}`, f32(seed + 100 + k, 333));
same('refusedDispose', [1]);
same('objects', [[objectOf(0)], [null], ['']]);
checks += 5;
console.log(`${got.library} one rank, ${checks} collectives (fp32, bf16, int32, async, allGatherObject): ${bad.length ? `FAIL\n  ${bad.slice(0, 5).join('\n  ')}` : 'PASS'}`);
process.exitCode = bad.length ? 1 : 0;
