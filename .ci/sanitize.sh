#!/usr/bin/env bash
# Sanitizer run (issue 5): builds the CPU addon with AddressSanitizer + UndefinedBehaviorSanitizer
# (-DVWLMM_SANITIZE=on, see CMakeLists.txt) into its own folder, then runs the native-facing tests and the
# Node-API fuzzer under it. Node itself is not instrumented, so the ASan runtime is preloaded
# (LD_PRELOAD); vitest's workers and the fuzzer's child process inherit it through the environment, as
# they inherit VWLMM_ADDON (src/native.ts loads that addon instead of build/Release).
# Fails on a non-zero exit and on any sanitizer report in the output (a report in a worker that vitest
# only logs as "Worker exited unexpectedly" is caught by the grep too).
#
#   .ci/sanitize.sh                    # ~3 min on 2 cores: build ~1 min, tests ~40 s, fuzzing <= 60 s
# Env: VWLMM_SANITIZE_BUILD (build folder, default ./build-sanitize), VWLMM_FUZZ_SEED (replay a
# seed), VWLMM_FUZZ_TIME_MS / VWLMM_FUZZ_CALLS (fuzzing budget, default 60 s / 1,000,000 calls).
# Test subset: tests/kernels, tests/engine, tests/tensor.test.ts, tests/autograd, tests/io, tests/fuzz (every
# test that drives the native code directly) plus tests/nn and tests/model (the LLaMA / CLIP / VW-LMM modules
# on those ops, a few seconds) and tests/train/replay.test.ts (op programs recorded and replayed by the Trainer). Left out: tests/cli (trains the demo for minutes) and tests/data (no native
# code of ours; sharp's uninstrumented libvips under a preloaded ASan is not something to debug here).
set -euo pipefail
cd "$(dirname "$0")/.."

build="${VWLMM_SANITIZE_BUILD:-$PWD/build-sanitize}"  # per checkout: a CMake cache is tied to its source folder
log="$build/sanitize.log"
start=$(date +%s)

echo "sanitize: building the ASan+UBSan CPU addon in $build"
node node_modules/cmake-js/bin/cmake-js configure --directory "$PWD" --out "$build" \
  --CDVWLMM_SANITIZE=on --CDVWLMM_CUDA=off --log-level warn
node node_modules/cmake-js/bin/cmake-js build --directory "$PWD" --out "$build" --log-level warn
addon="$build/Release/vwlmm.node"
test -f "$addon"

asan_rt="$(gcc -print-file-name=libasan.so)"
test -f "$asan_rt" || { echo "sanitize: no ASan runtime ($asan_rt); install gcc's libasan" >&2; exit 1; }
export LD_PRELOAD="$asan_rt"
export VWLMM_ADDON="$addon"
# detect_leaks=0: V8 is not leak-clean (leaks of our own buffers are counted by the tests instead);
# allocator_may_return_null=1: a failing huge allocation returns null (the addon then throws "out of host
# memory", which the tests expect) instead of ASan aborting the process.
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export VWLMM_FUZZ_TIME_MS="${VWLMM_FUZZ_TIME_MS:-60000}"
export VWLMM_FUZZ_CALLS="${VWLMM_FUZZ_CALLS:-1000000}"

# The addon that runs must be the instrumented one, with the runtime loaded.
node -e '
  const a = require(process.env.VWLMM_ADDON);
  const maps = require("fs").readFileSync("/proc/self/maps", "utf8");
  if (!/libasan/.test(maps) || !/libubsan/.test(maps)) { console.error("sanitize: ASan/UBSan runtime not loaded"); process.exit(1); }
  if (!maps.includes(process.env.VWLMM_ADDON)) { console.error("sanitize: wrong addon loaded"); process.exit(1); }
  console.log("sanitize: instrumented addon loaded:", a.backendInfo().gemm.split(" ")[0]);
'

status=0
npx vitest run tests/kernels tests/engine tests/tensor.test.ts tests/autograd tests/io tests/nn tests/model tests/fuzz tests/train/replay.test.ts 2>&1 | tee "$log" || status=$?

if grep -E -q 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' "$log"; then
  echo "sanitize: FAILED: sanitizer report(s) in $log:" >&2
  grep -E -n -A 12 'ERROR: AddressSanitizer|runtime error:' "$log" | head -80 >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize: FAILED: the tests exited with status $status (log: $log)" >&2
  exit "$status"
fi
echo "sanitize: OK, no sanitizer reports ($(( $(date +%s) - start )) s, log: $log)"
