#!/usr/bin/env bash
# One GPU session's checks, run on a machine with a GPU, nvcc, cuBLAS and PyTorch but no Node/npm/network:
# unpack Node and node_modules carried in .device/, build both addons (CUDA for sm_90), run the test files
# whose cuda-f32 / cuda-bf16 backends and CPU-vs-CUDA parity cases need a GPU, then time the fused kernels
# against PyTorch eager and torch.compile on the same GPU. Logs and JSON go to $OUT; a table prints last.
#   .device/node.xz      Node 20 (../shared/device/node-v20.20.2-linux-x64.xz)
#   .device/nm.tar.xz    node_modules (without typescript)
#   .device/src.tar      `git archive HEAD` plus the files under test (isolates the run from edits in progress)
set -u
OUT=${OUT:-/tmp/vwlmm-gpu-out}; mkdir -p "$OUT"
here=$(pwd)
mkdir -p /tmp/nodebin && xz -dc .device/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
export PATH=/tmp/nodebin:$PATH
w=/tmp/vwlmm-work; rm -rf "$w"; mkdir -p "$w"
tar -xf .device/src.tar -C "$w" && tar -xJf .device/nm.tar.xz -C "$w" || { echo "unpack failed"; exit 1; }
cd "$w"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
# NCCL from the nvidia-nccl wheel PyTorch brings (header at build time, library dlopened at run time; issue 14)
ncclroot=$(python3 -c "import glob, site; c = [g for p in site.getsitepackages() for g in glob.glob(p + '/nvidia/nccl')]; print(c[0] if c else '')" 2>/dev/null)
[ -n "$ncclroot" ] && export VWLMM_NCCL_ROOT="$ncclroot" VWLMM_NCCL_LIBRARY="$ncclroot/lib/libnccl.so.2"
echo "NCCL: ${ncclroot:-not found in site-packages}"
t0=$(date +%s)
if ! VWLMM_CUDA_ARCHS=90 node node_modules/cmake-js/bin/cmake-js compile --directory . --CDVWLMM_CUDA=on -p 16 >"$OUT/build.log" 2>&1; then
  tail -60 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
echo "build: $(( $(date +%s) - t0 )) s"; grep -E "vwlmm: (CPU GEMM|CUDA addon)" "$OUT/build.log"
node -e "require('./node_modules/tsx/dist/cjs/api/index.cjs').register(); const v=require('./src'); console.log(JSON.stringify(v.backendInfo()))" 2>&1 | tee "$OUT/backend.json" | head -c 1500; echo
t0=$(date +%s)
timeout ${TEST_TIMEOUT:-240} node node_modules/vitest/vitest.mjs run ${TESTS:-tests/kernels tests/engine tests/tensor.test.ts tests/model/device.test.ts tests/model/mixed_precision.test.ts} >"$OUT/tests.log" 2>&1
echo "tests: rc $? in $(( $(date +%s) - t0 )) s"
grep -E "FAIL|✗|×|AssertionError|Error:" "$OUT/tests.log" | head -40
tail -8 "$OUT/tests.log"
# host synchronisations per training step on CUDA, with the per-op wait (default) and without (VWLMM_CUDA_ASYNC=1)
for mode in 0 1; do
  VWLMM_CUDA_ASYNC=$mode timeout 120 node node_modules/tsx/dist/cli.mjs benchmarks/host_syncs.ts --device cuda --steps 10 2>&1 | tail -1 | tee -a "$OUT/host_syncs.log"
done
# NCCL with one rank (issue 14): the same 20 training steps (tiny VW-LMM, fp32, ZeRO-1 over the group) as the
# single-process path on the GPU, bit for bit
rc=tests/distributed/support/rank_child.ts
timeout 120 node node_modules/tsx/dist/cli.mjs $rc train "$OUT/nccl_ref" '{"noGroup":true,"batchSize":4,"device":"cuda"}' >"$OUT/nccl.log" 2>&1
RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29561 timeout 120 node node_modules/tsx/dist/cli.mjs $rc train "$OUT/nccl_one" '{"backend":"nccl","batchSize":4,"device":"cuda"}' >>"$OUT/nccl.log" 2>&1
node -e "
const f = (d) => JSON.parse(require('fs').readFileSync(d + '/weights.json', 'utf8'));
try { const a = f('$OUT/nccl_ref'), b = f('$OUT/nccl_one'); let d = 0; for (const k in a.weights) a.weights[k].forEach((x, i) => (d = Math.max(d, Math.abs(x - b.weights[k][i]))));
  console.log('NCCL one rank vs single process: ' + b.steps + ' steps, max |weight difference| ' + d + (d === 0 ? ' (bit for bit)' : ' (NOT bit for bit)'));
} catch (e) { console.log('NCCL one-rank check failed: ' + e.message); }" | tee -a "$OUT/nccl.log"
tail -3 "$OUT/nccl.log"
# end to end against HF transformers (issue 11): the same VW-LMM training step, bf16, batch 16 x 325 tokens
timeout 300 python3 benchmarks/hf_vwlmm_train.py --device cuda 2>"$OUT/hf_train.err" | tail -1 > "$OUT/hf_train.json"
timeout 300 node node_modules/tsx/dist/cli.mjs benchmarks/train_throughput.ts --device cuda 2>"$OUT/vwlmm_train.err" | tail -1 > "$OUT/vwlmm_train.json"
python3 - "$OUT" <<'PY'
import json, sys, os
o = sys.argv[1]
try:
    hf, vw = (json.load(open(os.path.join(o, f))) for f in ("hf_train.json", "vwlmm_train.json"))
    print(f"train step (bf16, {hf['batch']}x{hf['seq']}): HF {hf['tokensPerSec']:.0f} tok/s, MFU {hf['mfu']:.3f}, peak {hf['peakBytes']/2**30:.2f} GiB | "
          f"vwlmm {vw['tokensPerSec']:.0f} tok/s, MFU {vw['mfu']:.3f}, peak {vw['peakBytes']/2**30:.2f} GiB, {vw['hostSyncsPerStep']} syncs/step | "
          f"ratio {vw['tokensPerSec']/hf['tokensPerSec']:.2f}x")
except Exception as e:
    print("train comparison failed:", e)
PY
t0=$(date +%s)
timeout ${BENCH_TIMEOUT:-300} node node_modules/tsx/dist/cli.mjs benchmarks/fused_kernels_gpu.ts ${BENCH_ARGS:-} --out "$OUT/bench.json" >"$OUT/bench.log" 2>&1
echo "bench: rc $? in $(( $(date +%s) - t0 )) s"
cat "$OUT/bench.log" | grep -v '^{'
