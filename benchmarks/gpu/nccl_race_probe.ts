// NCCL ordering probe (one rank; device_check.sh nccl section): is each collective ordered after work the ops' stream queued before it (the `ready`
// event), and does a result read after wait() see the collective's output? The producer (fill / cast) is queued
// behind ~N^3 x reps of GEMMs, so on CUDA in async mode the host reaches the collective long before the GPU has
// run the producer: without the stream wait the collective would read the stale contents (0 / previous values).
//   NCCL: RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29563 node node_modules/tsx/dist/cli.mjs benchmarks/gpu/nccl_race_probe.ts cuda
//   MPI (CPU, to check the script): node node_modules/tsx/dist/cli.mjs benchmarks/gpu/nccl_race_probe.ts cpu
import { initProcessGroup } from '../../src/distributed/process_group';
import { callOp } from '../../src/call_op';
import { Tensor } from '../../src/tensor';

const dev = (process.argv[2] ?? 'cuda') as 'cpu' | 'cuda';
const N = dev === 'cuda' ? 4096 : 64, reps = dev === 'cuda' ? 20 : 1;
async function main() {
  const g = await initProcessGroup({ backend: dev === 'cuda' ? 'nccl' : 'mpi', timeoutMs: 60_000 });
  const A = Tensor.zeros([N, N], { device: dev }), C = Tensor.zeros([N, N], { device: dev });
  const slow = () => { for (let r = 0; r < reps; r++) callOp('matmul', dev, [A, A, null], [C], [1, N, N, N, 0, 0, 0, 0, 0, 0, 0], [1]); };
  const n = 1000, bad: string[] = [];
  const expectAll = (what: string, t: Tensor, v: number) => {
    const a = t.toArray();
    const k = a.findIndex((x) => x !== v);
    if (k >= 0) bad.push(`${what}: element ${k} is ${a[k]}, expected ${v}`);
  };
  const fresh = (dtype: 'float32' | 'bfloat16' = 'float32', size = n) => Tensor.zeros([size], { device: dev, dtype });
  const t0 = Date.now();
  for (let trial = 1; trial <= 3; trial++) {
    const v = trial + 0.5; // exact in bf16
    // all_reduce (sum, avg, max), in place
    for (const op of ['sum', 'avg', 'max'] as const) {
      const x = fresh();
      slow(); callOp('fill', dev, [], [x], [n], [v]);
      g.allReduceAsync(x, { op }).wait();
      expectAll(`all_reduce ${op} trial ${trial}`, x, v);
    }
    // reduce_scatter avg (ZeRO's gradients) and all_gather (ZeRO's weights), float32
    {
      const inp = fresh(), out = fresh();
      slow(); callOp('fill', dev, [], [inp], [n], [v]);
      const w = g.reduceScatterAsync(out, inp, { op: 'avg' });
      let refused = false;
      try { inp.dispose(); } catch { refused = true; }
      if (!refused) bad.push('a buffer in flight was disposed');
      w.wait();
      expectAll(`reduce_scatter avg trial ${trial}`, out, v);
      const shard = fresh(), flat = fresh();
      slow(); callOp('fill', dev, [], [shard], [n], [v]);
      g.allGatherAsync(flat, shard).wait();
      expectAll(`all_gather f32 trial ${trial}`, flat, v);
    }
    // the bf16 gather as ZeroAdamW does it: cast (after the slow work) -> all_gather bf16 -> cast back
    {
      const shard = fresh(), s16 = fresh('bfloat16'), f16 = fresh('bfloat16'), flat = fresh();
      callOp('fill', dev, [], [shard], [n], [v]);
      slow(); callOp('cast', dev, [shard], [s16], [n]);
      g.allGatherAsync(f16, s16).wait();
      callOp('cast', dev, [f16], [flat], [n]);
      expectAll(`all_gather bf16 trial ${trial}`, flat, v);
    }
    // broadcast int32 (the bucket order)
    {
      const t = Tensor.fromArray(Int32Array.from({ length: n }, () => 0), [n], { device: dev, dtype: 'int32' });
      // async mode: the upload goes through the staging ring on the ops' stream, behind the slow work
      slow(); t.buffer.write(Int32Array.from({ length: n }, (_, i) => i + trial));
      g.broadcastAsync(t, 0).wait();
      const a = t.toArray(); const k = a.findIndex((x, i) => x !== i + trial);
      if (k >= 0) bad.push(`broadcast int32 trial ${trial}: element ${k} is ${a[k]}`);
    }
  }
  console.log(JSON.stringify({ probe: 'nccl_race_probe', device: dev, library: g.library, ok: bad.length === 0, bad: bad.slice(0, 10), seconds: (Date.now() - t0) / 1000 }));
  g.destroy();
  process.exit(bad.length ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(2); });
