#!/usr/bin/env node
// `npm run prebuild`: builds the release addons with cmake-js and puts them where node-gyp-build (CPU addon) and
// src/native.ts (CUDA addon) look in an installed package:
//   prebuilds/<platform>-<arch>/vwlmm.napi[.glibc|.musl].node   CPU addon, self-contained: static OpenBLAS
//                                                               (built-in GEMM when no usable static OpenBLAS)
//   prebuilds/<platform>-<arch>/cuda/vwlmm_cuda.node            CUDA addon, when nvcc + cuBLAS are found:
//                                                               static cudart, cuBLAS shared (found at run time)
//   prebuilds/<platform>-<arch>/libvwlmm_mpi.so                 the MPI backend of process groups, when MPI is found:
//                                                               linked against this machine's MPI (Open MPI 4:
//                                                               libmpi.so.40, needed at run time only by process
//                                                               groups); the CPU addon dlopens it from its own folder
// Then checks the result and fails loudly: `ldd` shows only system libraries (libc, libstdc++, libm, libgcc_s,
// libpthread, ld-linux); the CUDA addon's own NEEDED entries (readelf -d) add only libdl, librt and cuBLAS, never
// libcudart, and every library of its load chain resolves (a missing libcublasLt is named as an incomplete cuBLAS);
// both addons load, and node-gyp-build resolves exactly the new file. libvwlmm_mpi.so needs only system libraries
// and one libmpi, and the placed CPU addon finds it beside itself and loads it.
// Options (flag or environment variable):
//   --cuda auto|on|off        VWLMM_PREBUILD_CUDA   (default auto: built when nvcc and cuBLAS are found;
//                                                    VWLMM_CUBLAS_ROOT as for build:native)
//   --blas auto|openblas|builtin  VWLMM_PREBUILD_BLAS (default auto: static OpenBLAS, else built-in GEMM)
//   --mpi auto|on|off         VWLMM_PREBUILD_MPI    (default auto: the MPI backend where CMake finds MPI)
//   --build-dir DIR           VWLMM_PREBUILD_BUILD_DIR (cmake-js build folder, default build/prebuild; reused, so a
//                                                    second run is incremental; a folder built by `npm install` with
//                                                    default options, e.g. build/, only needs a reconfigure)
//   --out DIR                 VWLMM_PREBUILD_OUT    (the prebuilds folder, default <package>/prebuilds)
//   VWLMM_CMAKE_ARGS          extra CMake definitions, as for build:native (e.g. "-DOPENBLAS_LIBRARY=/path/libopenblas.a")
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { addonInfo } = require('./build-native.js');

const root = path.join(__dirname, '..');

function option(flag, env, def) {
  const i = process.argv.indexOf(flag);
  if (i >= 0 && process.argv[i + 1]) return process.argv[i + 1];
  return process.env[env] || def;
}
const cudaMode = option('--cuda', 'VWLMM_PREBUILD_CUDA', 'auto');
const blasMode = option('--blas', 'VWLMM_PREBUILD_BLAS', 'auto');
const mpiMode = option('--mpi', 'VWLMM_PREBUILD_MPI', 'auto');
const buildDir = path.resolve(option('--build-dir', 'VWLMM_PREBUILD_BUILD_DIR', path.join(root, 'build', 'prebuild')));
const outRoot = path.resolve(option('--out', 'VWLMM_PREBUILD_OUT', path.join(root, 'prebuilds')));
for (const [name, v, ok] of [['cuda', cudaMode, ['auto', 'on', 'off']], ['blas', blasMode, ['auto', 'openblas', 'builtin']], ['mpi', mpiMode, ['auto', 'on', 'off']]]) {
  if (!ok.includes(v)) fail(`--${name} must be one of ${ok.join(', ')} (got "${v}")`);
}

function fail(msg) {
  console.error(`\nvwlmm prebuild: FAILED: ${msg}`);
  process.exit(1);
}
function log(msg) {
  console.log(`vwlmm prebuild: ${msg}`);
}

const tuple = `${process.platform}-${process.arch}`;
const libc = process.platform !== 'linux' ? '' : fs.existsSync('/etc/alpine-release') ? 'musl' : 'glibc';
// node-gyp-build tags: "napi" (any Node-API runtime, any ABI) and the libc, so a musl system never picks a glibc build.
const cpuName = `vwlmm.napi${libc ? '.' + libc : ''}.node`;
const builtCpu = path.join(buildDir, 'Release', 'vwlmm.node');
const builtCuda = path.join(buildDir, 'Release', 'cuda', 'vwlmm_cuda.node');
const builtMpi = path.join(buildDir, 'Release', 'libvwlmm_mpi.so');

let cudaConfigured = false, mpiConfigured = false;
function build(blas) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const common = ['--directory', root, '--out', buildDir, '--config', 'Release'];
  const extra = (process.env.VWLMM_CMAKE_ARGS || '').split(/\s+/).filter(Boolean).map((a) => (a.startsWith('-D') ? `--CD${a.slice(2)}` : a));
  log(`building in ${buildDir} (VWLMM_CUDA=${cudaMode}, VWLMM_BLAS=${blas})`);
  // Configure explicitly: `cmake-js build/compile` skips configuring when a cache exists, and would then ignore
  // changed -D options (e.g. the built-in GEMM fallback below). Its output says whether this configuration has
  // the CUDA target, so a stale vwlmm_cuda.node left in a reused build folder is never shipped.
  const conf = spawnSync(process.execPath, [cmakeJs, 'configure', ...common, ...extra, `--CDVWLMM_CUDA=${cudaMode}`, `--CDVWLMM_BLAS=${blas}`,
      `--CDVWLMM_MPI=${mpiMode}`, '--CDVWLMM_SANITIZE=OFF'],
    { stdio: ['inherit', 'pipe', 'inherit'], cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  process.stdout.write(conf.stdout || '');
  if (conf.status !== 0) fail(`cmake-js configure failed (exit ${conf.status}, see the output above); needs cmake >= 3.18, make or ninja and a C++17 compiler`);
  cudaConfigured = /vwlmm: CUDA addon built:/.test(conf.stdout || '');
  // likewise for the MPI backend: a libvwlmm_mpi.so left by an earlier configuration is never shipped
  mpiConfigured = /vwlmm: MPI backend = /.test(conf.stdout || '');
  const r = spawnSync(process.execPath, [cmakeJs, 'build', ...common], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) fail(`cmake-js build failed (exit ${r.status}, see the output above)`);
  if (!fs.existsSync(builtCpu)) fail(`the build finished but ${builtCpu} is missing`);
  if (cudaConfigured && !fs.existsSync(builtCuda)) fail(`CMake configured the CUDA addon but ${builtCuda} is missing`);
  if (mpiConfigured && !fs.existsSync(builtMpi)) fail(`CMake configured the MPI backend but ${builtMpi} is missing`);
}

const BASE_LIBS = [/^linux-vdso\.so/, /^linux-gate\.so/, /^libc\.so/, /^libstdc\+\+\.so/, /^libm\.so/, /^libgcc_s\.so/,
  /^libpthread\.so/, /^ld-linux[-\w.]*\.so/];
// static cudart itself needs libdl/librt; cuBLAS is shared (and brings libcublasLt).
const CUDA_LIBS = [...BASE_LIBS, /^libdl\.so/, /^librt\.so/, /^libcublas\.so/, /^libcublasLt\.so/];

/** The shared libraries `ldd` reports for file: [{ name, where }]. null where ldd is not available. */
function lddOf(file) {
  if (process.platform !== 'linux') return null;
  const r = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (r.error) return null;
  if (r.status !== 0) fail(`ldd ${file} failed: ${r.stderr || r.stdout}`);
  return r.stdout.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => {
    const m = /^(\S+)(?:\s+=>\s+(.*?))?\s*(?:\(0x[0-9a-f]+\))?$/.exec(l);
    const name = path.basename(m ? m[1] : l.split(/\s/)[0]);
    return { name, where: m && m[2] ? m[2] : '' , line: l };
  });
}

/** The NEEDED entries of file's dynamic section (its own dependencies, not theirs); null where readelf is missing. */
function neededOf(file) {
  if (process.platform !== 'linux') return null;
  const r = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  if (r.error) return null;
  if (r.status !== 0) fail(`readelf -d ${file} failed: ${r.stderr || r.stdout}`);
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** Libraries of file outside allowed (and unresolved ones); [] when clean, null when not checkable. */
function offenders(file, allowed) {
  const libs = lddOf(file);
  if (!libs) return null;
  return libs.filter((l) => !allowed.some((re) => re.test(l.name)) || /not found/.test(l.where)).map((l) => l.line);
}

let blas = blasMode;
build(blas);
let bad = offenders(builtCpu, BASE_LIBS);
if (bad === null) {
  log(`ldd is not available on ${process.platform}: the self-containment check is skipped (prebuilds are checked on linux)`);
} else if (bad.length) {
  const reason = `the CPU addon is not self-contained with VWLMM_BLAS=${blas}: it needs ${bad.join('; ')}`;
  if (blas !== 'auto') fail(`${reason}\n(use a static libopenblas.a without libgfortran, or --blas builtin)`);
  console.warn(`\nvwlmm prebuild: ${reason}.\nvwlmm prebuild: no usable static OpenBLAS (a shared libopenblas or one that needs ` +
    'libgfortran): falling back to the built-in GEMM for the prebuilt CPU addon (slower GEMMs; install libopenblas-dev ' +
    'with its libopenblas.a for the fast one).\n');
  blas = 'builtin';
  build(blas);
  bad = offenders(builtCpu, BASE_LIBS);
  if (bad && bad.length) fail(`the CPU addon still needs non-system libraries with the built-in GEMM: ${bad.join('; ')}`);
}
if (bad) log(`ldd check passed: ${builtCpu} needs only ${lddOf(builtCpu).map((l) => l.name).join(', ')}`);

// The CPU addon loads and reports its GEMM (a child process: loading it here would pin this file in memory).
const cpuInfo = addonInfo(builtCpu);
if (cpuInfo.error) fail(`the built CPU addon does not load: ${cpuInfo.error}`);
log(`CPU addon loads: GEMM ${cpuInfo.gemm}, ${cpuInfo.simd}`);

const haveCuda = cudaConfigured;
if (cudaMode === 'on' && !haveCuda) fail('--cuda on but the CUDA addon was not built');
if (haveCuda) {
  // What the addon itself needs (its NEEDED entries) is ours to check: system libraries and cuBLAS, never the
  // shared cudart. What cuBLAS needs in turn (libcublasLt) is cuBLAS's: a missing one means the cuBLAS found at
  // build time is incomplete, which is said as such, with the library that is missing.
  const needed = neededOf(builtCuda);
  const libs = lddOf(builtCuda);
  if (needed) {
    const cudart = needed.filter((n) => /^libcudart\.so/.test(n));
    if (cudart.length) fail(`the CUDA addon links the shared cudart (${cudart[0]}); it must use the static one`);
    const own = needed.filter((n) => !CUDA_LIBS.some((re) => re.test(n)));
    if (own.length) fail(`the CUDA addon needs libraries beyond the system ones and cuBLAS: ${own.join(', ')}`);
  }
  if (libs) {
    const missing = libs.filter((l) => /not found/.test(l.where)).map((l) => l.name);
    const direct = missing.filter((n) => !needed || needed.includes(n));
    if (direct.length) fail(`the CUDA addon needs ${direct.join(', ')}, not found on this machine (ldd ${builtCuda})`);
    if (missing.length) {
      const cublas = libs.find((l) => /^libcublas\.so/.test(l.name));
      fail(`the cuBLAS the CUDA addon was linked against is incomplete: ${cublas ? cublas.where : 'libcublas'} needs ` +
        `${missing.join(', ')}, which is not found. Install cuBLAS whole (libcublas and libcublasLt of one CUDA ` +
        'major, from the CUDA toolkit or the whole lib/ folder of the nvidia-cublas wheel).');
    }
    log(`ldd check passed: ${builtCuda} needs ${needed ? needed.join(', ') : '(readelf unavailable)'} ` +
      `and loads with ${libs.map((l) => l.name).join(', ')} (static cudart; cuBLAS shared)`);
  }
  const cinfo = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(builtCuda)}).backendInfo()))`],
    { encoding: 'utf8' });
  if (cinfo.status !== 0) fail(`the built CUDA addon does not load here: ${cinfo.stderr}`);
  const ci = JSON.parse(cinfo.stdout);
  log(`CUDA addon loads (${ci.available ? 'device ' + (ci.name || ci.device || 'available') : 'no device here: ' + ci.reason})`);
} else {
  log('no CUDA addon (not requested, or no nvcc / cuBLAS: see the "vwlmm: CUDA addon not built" line above)');
}

// The MPI backend needs the system libraries and one MPI library (the one CMake found: its soname, e.g. Open MPI
// 4's libmpi.so.40, is what a user's machine must have for process groups; nothing else of vwlmm needs it).
let mpiSoname = null;
if (mpiMode === 'on' && !mpiConfigured) fail('--mpi on but the MPI backend was not built');
if (mpiConfigured) {
  const needed = neededOf(builtMpi);
  if (needed) {
    const mpiLibs = needed.filter((n) => /^libmpi\.so/.test(n));
    const own = needed.filter((n) => !mpiLibs.includes(n) && ![...BASE_LIBS, /^libdl\.so/].some((re) => re.test(n)));
    if (mpiLibs.length !== 1) fail(`libvwlmm_mpi.so should link exactly one libmpi, it needs: ${needed.join(', ')}`);
    if (own.length) fail(`libvwlmm_mpi.so needs libraries beyond the system ones and MPI: ${own.join(', ')}`);
    mpiSoname = mpiLibs[0];
  }
  const missing = (lddOf(builtMpi) || []).filter((l) => /not found/.test(l.where)).map((l) => l.name);
  if (missing.length) fail(`libvwlmm_mpi.so needs ${missing.join(', ')}, not found on this machine (ldd ${builtMpi})`);
  log(`MPI backend built: ${builtMpi} (links ${mpiSoname || 'libmpi'})`);
} else {
  log(`no MPI backend (${mpiMode === 'off' ? '--mpi off' : 'CMake found no MPI: see the "vwlmm: MPI backend" line above'}); installs of this ` +
    'prebuild will need a source build to train over MPI (apt install libopenmpi-dev for one here)');
}

// Place them. The whole <platform>-<arch> folder is replaced so no stale file (e.g. an old CUDA addon) survives.
const dest = path.join(outRoot, tuple);
fs.rmSync(dest, { recursive: true, force: true });
fs.mkdirSync(dest, { recursive: true });
const destCpu = path.join(dest, cpuName);
fs.copyFileSync(builtCpu, destCpu);
let destCuda = null;
if (haveCuda) {
  fs.mkdirSync(path.join(dest, 'cuda'));
  destCuda = path.join(dest, 'cuda', 'vwlmm_cuda.node');
  fs.copyFileSync(builtCuda, destCuda);
}
// beside the CPU addon: it dlopens libvwlmm_mpi.so from the folder it was itself loaded from
let destMpi = null, mpiInfo = null;
if (mpiConfigured) {
  destMpi = path.join(dest, 'libvwlmm_mpi.so');
  fs.copyFileSync(builtMpi, destMpi);
  const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(destCpu)}).backendInfo().mpi))`], { encoding: 'utf8' });
  if (r.status !== 0) fail(`the placed CPU addon does not load: ${r.stderr}`);
  mpiInfo = JSON.parse(r.stdout);
  if (path.resolve(mpiInfo.library) !== destMpi) fail(`the placed CPU addon looks for its MPI backend at ${mpiInfo.library}, not beside itself (${destMpi})`);
  if (!mpiInfo.available) fail(`the placed MPI backend does not load here: ${mpiInfo.reason}`);
}

// node-gyp-build, reading prebuilds only, must pick exactly this file.
if (path.basename(outRoot) === 'prebuilds') {
  const r = spawnSync(process.execPath, ['-e', `console.log(require('node-gyp-build').resolve(${JSON.stringify(path.dirname(outRoot))}))`],
    { encoding: 'utf8', cwd: root, env: { ...process.env, PREBUILDS_ONLY: '1' } });
  const got = (r.stdout || '').trim();
  if (r.status !== 0 || path.resolve(got) !== destCpu) fail(`node-gyp-build does not resolve ${destCpu} (got: ${got || r.stderr})`);
}
const show = (f) => (path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f));
const mb = (f) => (fs.statSync(f).size / 1048576).toFixed(1) + ' MB';
log(`wrote ${show(destCpu)} (${mb(destCpu)}, GEMM: ${cpuInfo.gemm.split(' ').slice(0, 3).join(' ')})`);
if (destCuda) log(`wrote ${show(destCuda)} (${mb(destCuda)}; needs an NVIDIA driver and cuBLAS at run time)`);
if (destMpi) log(`wrote ${show(destMpi)} (${mb(destMpi)}; ${mpiInfo.version}: process groups over MPI need ${mpiSoname || 'that MPI'} at run time)`);
