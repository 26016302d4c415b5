#!/usr/bin/env bash
# Tarball install check (issue 5). Builds the prebuilt addon(s), packs the npm tarball twice (with and without
# prebuilds) and installs each into an empty temporary project, the way a user would:
#   with prebuilds:    nothing compiles (no cmake output, no build/ in the installed package), no typescript needed;
#   without prebuilds: the install says why and builds from source, and that build works;
#   without tools:     VWLMM_BUILD_FROM_SOURCE=1 with no cmake/compiler on PATH fails and says what is needed.
# Each installed package is imported from the consumer project, runs a fused kernel (finite loss) and one AdamW
# training step of a tiny decoder (finite loss that falls, weights change); the prebuilt install also runs the
# README's API example as an ES module and as CommonJS; where the prebuild has the MPI backend (libvwlmm_mpi.so, built
# where Open MPI is installed; required under VWLMM_REQUIRE_MPI=1), the tarball ships it and 2 ranks of the installed
# package all-reduce through mpirun. Prints the install times and the tarball size. The
# checkout is left untouched: dist/ and prebuilds/ are built into a staging copy under $TMPDIR.
# vwlmm itself comes from the local tarball; its dependencies from the npm cache / registry.
# Env: VWLMM_PREBUILD_CUDA=auto|on|off (default auto: the CUDA addon is prebuilt when nvcc + cuBLAS are found,
#      VWLMM_CUBLAS_ROOT as for the normal build), VWLMM_PREBUILD_BUILD_DIR (reuse a cmake build folder),
#      KEEP=1 keeps the temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/vwlmm-tarball.XXXXXX")
finish() {
  rc=$?
  if [ "$rc" -ne 0 ] || [ -n "${KEEP:-}" ]; then echo "tarball: kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap finish EXIT
die() { echo "tarball: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)
unset VWLMM_BUILD_FROM_SOURCE VWLMM_ADDON VWLMM_CUDA_ADDON VWLMM_PREBUILD

# ---------------------------------------------------------------- stage: the packed files, fresh dist/ and prebuilds/
stage=$work/stage
mkdir -p "$stage"
npm pack --dry-run --json --ignore-scripts > "$work/files.json" 2>/dev/null
node -e '
  const fs = require("fs"), path = require("path");
  const [list, stage] = process.argv.slice(1);
  for (const f of JSON.parse(fs.readFileSync(list, "utf8"))[0].files) {
    if (/^(dist|prebuilds)\//.test(f.path)) continue;       // built fresh below
    fs.mkdirSync(path.join(stage, path.dirname(f.path)), { recursive: true });
    fs.copyFileSync(f.path, path.join(stage, f.path));
  }' "$work/files.json" "$stage"
npx tsc -p tsconfig.build.json --outDir "$stage/dist"
t0=$(now)
node scripts/prebuild.js --out "$stage/prebuilds" --build-dir "${VWLMM_PREBUILD_BUILD_DIR:-$work/prebuild-build}" \
  --cuda "${VWLMM_PREBUILD_CUDA:-auto}" > "$work/prebuild.log" 2>&1 || { tail -40 "$work/prebuild.log"; die "npm run prebuild"; }
t_prebuild=$(secs "$t0" "$(now)")
grep '^vwlmm prebuild:\|vwlmm: CUDA addon' "$work/prebuild.log"

mkdir -p "$work/with" "$work/without"
(cd "$stage" && npm pack --ignore-scripts --silent --pack-destination "$work/with" >/dev/null)
mv "$stage/prebuilds" "$work/prebuilds.off"
(cd "$stage" && npm pack --ignore-scripts --silent --pack-destination "$work/without" >/dev/null)
tgz_with=$(ls "$work"/with/*.tgz)
tgz_without=$(ls "$work"/without/*.tgz)
size() { node -e 'console.log((require("fs").statSync(process.argv[1]).size / 1048576).toFixed(1) + " MB")' "$1"; }
tar -tzf "$tgz_with" > "$work/with.list"
tar -tzf "$tgz_without" > "$work/without.list"
for f in package/prebuilds/linux-x64/vwlmm.napi.glibc.node package/dist/index.js package/dist/cli.js package/scripts/install.js \
         package/scripts/build-native.js package/CMakeLists.txt package/native/napi/addon_cpu.cc package/native/cuda/cuda.cmake; do
  grep -qx "$f" "$work/with.list" || die "the tarball lacks $f"
done
if grep -q prebuilds/ "$work/without.list"; then die "the no-prebuild tarball has prebuilds"; fi
# the MPI backend: in the prebuild where MPI was found (a machine that must have MPI must have it in the prebuild),
# and then in the tarball
have_mpi=0
if [ -f "$work/prebuilds.off/linux-x64/libvwlmm_mpi.so" ]; then
  have_mpi=1
  grep -qx package/prebuilds/linux-x64/libvwlmm_mpi.so "$work/with.list" || die "the tarball lacks prebuilds/linux-x64/libvwlmm_mpi.so"
elif [ "${VWLMM_REQUIRE_MPI:-}" = 1 ]; then
  die "VWLMM_REQUIRE_MPI=1 but the prebuild has no libvwlmm_mpi.so (see the prebuild's MPI line above)"
fi

# ---------------------------------------------------------------- consumer projects
smoke=$work/smoke.js
cat > "$smoke" <<'JS'
// Runs in the consumer project: the installed vwlmm, one fused kernel and one training step.
const path = require('path');
const pkg = path.dirname(require.resolve('vwlmm/package.json'));
if (!pkg.startsWith(path.join(process.cwd(), 'node_modules'))) throw new Error(`vwlmm resolved outside the project: ${pkg}`);
const vw = require('vwlmm');
const { Tensor, fused, scope, nn, AdamW, F, Generator, zeroGrad, backendInfo } = vw;
const binary = path.relative(pkg, require('node-gyp-build').resolve(pkg));
const info = backendInfo();
const gen = new Generator(1);
const rand = (n) => gen.normals(n);
// fused cross-entropy on small random tensors
const N = 8, d = 16, V = 50;
const ce = scope(() => {
  const r = fused.linearCrossEntropy(Tensor.fromArray(rand(N * d), [N, d]), Tensor.fromArray(rand(V * d), [V, d]),
    Tensor.fromArray(Int32Array.from({ length: N }, (_, i) => (i * 7) % V), [N]));
  if (r.dh.shape.join() !== `${N},${d}` || r.dw.shape.join() !== `${V},${d}`) throw new Error('bad gradient shapes');
  return r.loss;
});
if (!Number.isFinite(ce) || ce <= 0) throw new Error(`linearCrossEntropy loss is not finite/positive: ${ce}`);
// one AdamW step of a tiny decoder on a fixed batch (the README's training loop)
const cfg = { vocabSize: 50, hiddenSize: 32, intermediateSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2,
  rmsNormEps: 1e-6, ropeTheta: 10000, maxPositionEmbeddings: 64, initializerRange: 0.1 };
const model = new nn.LlamaForCausalLM(cfg, { generator: gen });
const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
const B = 2, T = 8;
const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 13 + 5) % cfg.vocabSize);
const targets = ids.map((t) => (t * 7 + 3) % cfg.vocabSize);
const before = model.lm_head.weight.toArray();
const step = (train) => scope(() => {
  const out = model.model.forward(model.model.embed_tokens.forward(Tensor.fromArray(ids, [B, T])));
  const loss = F.linearCrossEntropy(F.reshape(out.last, [B * T, cfg.hiddenSize]), model.lm_head.weight, Tensor.fromArray(targets, [B * T]));
  const v = loss.item();
  if (train) { loss.backward(); opt.step(); zeroGrad(model.parameters()); }
  return v;
});
const l0 = step(true), l1 = step(false);
const after = model.lm_head.weight.toArray();
if (!Number.isFinite(l0) || !Number.isFinite(l1)) throw new Error(`training loss is not finite: ${l0} -> ${l1}`);
if (!(l1 < l0)) throw new Error(`one AdamW step did not lower the loss: ${l0} -> ${l1}`);
if (before.every((x, i) => x === after[i])) throw new Error('the training step did not change the weights');
console.log(`smoke: binary ${binary}; GEMM ${info.cpu.gemm.split(' ').slice(0, 3).join(' ')}; CUDA ${info.cuda.available ? 'available' : 'unavailable: ' + info.cuda.reason}`);
console.log(`smoke: MPI ${info.cpu.mpi.available ? `available (${info.cpu.mpi.version}) from ${path.relative(pkg, info.cpu.mpi.library)}` : 'unavailable: ' + info.cpu.mpi.reason}`);
console.log(`smoke: linearCrossEntropy loss ${ce.toFixed(4)}; 1 AdamW step of a 2-layer decoder: loss ${l0.toFixed(4)} -> ${l1.toFixed(4)}`);
JS

# install TGZ into a fresh project NAME (extra env before the command), log in $work/NAME.log, seconds in $took
install_into() {
  local name=$1 tgz=$2; shift 2
  local proj=$work/$name
  mkdir -p "$proj"
  echo '{ "name": "consumer", "version": "1.0.0", "private": true }' > "$proj/package.json"
  local t0; t0=$(now)
  (cd "$proj" && env "$@" npm install --no-audit --no-fund --prefer-offline --foreground-scripts "$tgz") > "$work/$name.log" 2>&1 \
    || { tail -40 "$work/$name.log"; die "npm install of $(basename "$tgz") ($name)"; }
  took=$(secs "$t0" "$(now)")
  grep '^vwlmm:' "$work/$name.log" | sed "s/^/  [$name] /"
}

echo "== install with prebuilds ($(basename "$tgz_with"), $(size "$tgz_with"))"
install_into with-prebuild "$tgz_with"
t_with=$took
p=$work/with-prebuild/node_modules/vwlmm
grep -q '^vwlmm: using the prebuilt binary prebuilds/linux-x64/vwlmm.napi.glibc.node' "$work/with-prebuild.log" \
  || die "the install did not report using the prebuilt binary"
! grep -qi 'cmake-js\|compiling the native\|building the native' "$work/with-prebuild.log" || die "the prebuilt install ran a build"
[ ! -e "$p/build" ] || die "the prebuilt install has a build/ folder: something compiled"
[ ! -e "$work/with-prebuild/node_modules/typescript" ] || die "typescript was installed into the consumer"
(cd "$work/with-prebuild" && cp "$smoke" . && node smoke.js) | tee "$work/smoke-with.txt"
grep -q 'binary prebuilds/linux-x64/vwlmm.napi.glibc.node' "$work/smoke-with.txt" || die "the prebuilt install did not load the prebuild"
if [ -f "$work/prebuilds.off/linux-x64/cuda/vwlmm_cuda.node" ]; then
  # cuBLAS is complete here (the prebuild checked that its load chain resolves), so the addon must load: a
  # failed load is an error, not a pass; without a GPU it reports no device.
  grep -q 'CUDA available\|no usable CUDA device' "$work/smoke-with.txt" \
    || die "the prebuilt CUDA addon did not load in the installed package: $(grep -o 'CUDA unavailable.*' "$work/smoke-with.txt")"
fi
if [ "$have_mpi" = 1 ]; then
  # the installed package's addon finds its MPI backend beside itself, and 2 ranks all-reduce through it
  grep -q '^vwlmm: MPI backend prebuilds/linux-x64/libvwlmm_mpi.so (' "$work/with-prebuild.log" || die "the prebuilt install did not report its MPI backend"
  grep -q 'MPI available (.*) from prebuilds/linux-x64/libvwlmm_mpi.so' "$work/smoke-with.txt" \
    || die "the prebuilt install does not load its MPI backend: $(grep -o 'MPI unavailable.*' "$work/smoke-with.txt")"
  (cd "$work/with-prebuild" && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpirun -np 2 --oversubscribe node -e "
    const { initProcessGroup, Tensor } = require('vwlmm');
    initProcessGroup({ backend: 'mpi', timeoutMs: 60000 }).then((g) => {
      const t = Tensor.fromArray(new Float32Array([g.rank + 1, 10]), [2]);
      g.allReduce(t);
      const got = Array.from(t.toArray()).join();
      if (got !== '3,20') throw new Error('rank ' + g.rank + ': all-reduce gave ' + got + ', expected 3,20');
      if (g.rank === 0) console.log('mpi: 2 ranks of the installed package all-reduced over ' + g.library);
      g.destroy();
    }).catch((e) => { console.error(e.message); process.exit(1); });") > "$work/mpi.txt" 2>&1 \
    || { cat "$work/mpi.txt"; die "2 ranks of the prebuilt install could not all-reduce over MPI"; }
  sed 's/^/  /' "$work/mpi.txt"
fi
(cd "$work/with-prebuild" && npx --no-install vwlmm info) | sed 's/^/  [vwlmm info] /'
# The declarations type-check in a strict consumer that lists no global types ("types": []): they name Node's types
# (Buffer, NodeJS.ProcessEnv, Disposable), so the package brings @types/node and references it; both module settings.
mkdir -p "$work/with-prebuild/types-check"
cat > "$work/with-prebuild/types-check/use.ts" <<'TS'
import { VwLmm, Trainer, Tensor, F } from 'vwlmm';
import { loadCheckpoint } from 'vwlmm/model';
import { writeSortOfClevr } from 'vwlmm/data';
import { batchIndices } from 'vwlmm/train';
import { evaluateFile } from 'vwlmm/eval';
import { runDemo } from 'vwlmm/demo';
import { launchEnv } from 'vwlmm/distributed';
export const used = [VwLmm, Trainer, Tensor, F, loadCheckpoint, writeSortOfClevr, batchIndices, evaluateFile, runDemo, launchEnv];
TS
for mode in '"module": "nodenext", "moduleResolution": "nodenext"' '"module": "commonjs", "moduleResolution": "node"'; do
  echo "{ \"compilerOptions\": { \"strict\": true, $mode, \"types\": [], \"noEmit\": true, \"target\": \"es2022\" }, \"files\": [\"use.ts\"] }" > "$work/with-prebuild/types-check/tsconfig.json"
  (cd "$work/with-prebuild/types-check" && node "$repo/node_modules/typescript/bin/tsc" -p .) || die "the installed declarations do not type-check in a strict consumer ($mode, no global types)"
done
echo "  [types] the declarations type-check in a strict consumer with no global types (nodenext and commonjs)"
# The package's subpaths load from ES modules (the exports map), and the README's API example (the block after
# <!-- readme-api-example -->) runs against the installed package with plain node, as written (.mjs: `import ...
# from 'vwlmm'`, so Node must see the CommonJS names) and as CommonJS (.cjs: its imports turned into require
# calls). tests/api/readme_snippet.ts extracts and converts it and checks what it prints, as
# tests/api/readme_example.test.ts does from source.
(cd "$work/with-prebuild" && node --input-type=module -e "
  for (const s of ['model', 'data', 'train', 'eval', 'demo']) {
    const m = await import('vwlmm/' + s);
    if (Object.keys(m).length < 4) throw new Error('vwlmm/' + s + ' exports almost nothing');
  }") || die "a subpath of the package's exports map does not load"
snippet() { node "$repo/node_modules/tsx/dist/cli.mjs" "$repo/tests/api/readme_snippet.ts" "$@"; }
for f in readme_example.mjs readme_example.cjs; do
  snippet "$([ "${f##*.}" = mjs ] && echo esm || echo cjs)" "$repo/README.md" > "$work/with-prebuild/$f" || die "cannot extract the README API example"
  (cd "$work/with-prebuild" && TMPDIR=$work node "$f") > "$work/$f.out" 2>&1 || { cat "$work/$f.out"; die "the README API example fails as $f"; }
  snippet check < "$work/$f.out" | sed "s/^/  [$f] /" || { cat "$work/$f.out"; die "the README API example printed something else as $f"; }
done

echo "== install without prebuilds ($(basename "$tgz_without"), $(size "$tgz_without")): source build (CPU addon only)"
install_into no-prebuild "$tgz_without" VWLMM_CMAKE_ARGS=-DVWLMM_CUDA=off VWLMM_CUBLAS_ROOT=
t_without=$took
p=$work/no-prebuild/node_modules/vwlmm
grep -q '^vwlmm: building the native addon from source: this package was packed without prebuilt binaries' "$work/no-prebuild.log" \
  || die "the source-build install did not say why it builds"
[ -f "$p/build/Release/vwlmm.node" ] || die "no build/Release/vwlmm.node after the source build"
(cd "$work/no-prebuild" && cp "$smoke" . && node smoke.js) | tee "$work/smoke-without.txt"
grep -q 'binary build/Release/vwlmm.node' "$work/smoke-without.txt" || die "the source-build install did not load its build"

echo "== VWLMM_BUILD_FROM_SOURCE=1 without cmake or a compiler on PATH: must fail and say what is needed"
mkdir -p "$work/nodebin" && ln -sf "$(command -v node)" "$work/nodebin/node"
if (cd "$p" && env PATH="$work/nodebin" VWLMM_BUILD_FROM_SOURCE=1 node scripts/install.js) > "$work/notools.log" 2>&1; then
  die "install.js succeeded without cmake"
fi
sed 's/^/  /' "$work/notools.log"
grep -q 'building the native addon from source: VWLMM_BUILD_FROM_SOURCE=1' "$work/notools.log" || die "no VWLMM_BUILD_FROM_SOURCE message"
grep -q 'cannot build the native addon from source: missing cmake.*C++17 compiler' "$work/notools.log" || die "the error does not say what is missing"

echo "tarball: OK: install with prebuild ${t_with} s (nothing compiled), without prebuild ${t_without} s (source build," \
  "CPU addon); tarball $(size "$tgz_with") with prebuilds, $(size "$tgz_without") without; prebuild step ${t_prebuild} s;" \
  "total $(secs "$t_start" "$(now)") s"
