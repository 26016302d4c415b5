#!/usr/bin/env node
// Builds the native addons with cmake-js (offline: headers come from node-api-headers).
// Extra CMake definitions can be passed through VWLMM_CMAKE_ARGS, e.g. "-DVWLMM_CUDA=off".
// Checks first that the tools are there (cmake >= 3.18, make or ninja, a C++ compiler) and says what is missing.
// Afterwards it loads the built CPU addon and says which GEMM it runs; loudly when that is the built-in GEMM's
// portable kernel (no OpenBLAS found and no AVX2+FMA), which is several times slower than OpenBLAS.
// `node scripts/build-native.js` (npm run build:native) builds; required (scripts/install.js, tests) it only
// exports build() and the GEMM check.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const NEEDS = 'Needs cmake >= 3.18, make or ninja, and a C++17 compiler (Debian/Ubuntu: apt install cmake g++; ' +
  'optional: libopenblas-dev for a fast CPU GEMM, the CUDA toolkit + cuBLAS for the CUDA addon). ' +
  'Prebuilt binaries exist for linux-x64 (glibc) only.';

function which(cmd) {
  if (cmd.includes('/') || cmd.includes('\\')) return isExecutable(cmd) ? cmd : null;
  const exts = process.platform === 'win32' ? ['', '.exe', '.cmd', '.bat'] : [''];
  for (const dir of (process.env.PATH || '').split(path.delimiter).filter(Boolean)) {
    for (const ext of exts) if (isExecutable(path.join(dir, cmd + ext))) return path.join(dir, cmd + ext);
  }
  return null;
}
function isExecutable(f) {
  try {
    fs.accessSync(f, fs.constants.X_OK);
    return fs.statSync(f).isFile();
  } catch (e) {
    return false;
  }
}

function preflight() {
  const missing = [];
  const cmake = which('cmake');
  let cmakeVersion = '';
  if (!cmake) {
    missing.push('cmake (not on PATH)');
  } else {
    const out = spawnSync(cmake, ['--version'], { encoding: 'utf8' }).stdout || '';
    const m = /cmake version (\d+)\.(\d+)(\.\S+)?/.exec(out);
    cmakeVersion = m ? `${m[1]}.${m[2]}${m[3] || ''}` : 'unknown';
    if (!m || +m[1] < 3 || (+m[1] === 3 && +m[2] < 18)) missing.push(`cmake >= 3.18 (found ${cmake} version ${cmakeVersion})`);
  }
  if (process.platform !== 'win32') {
    if (!which('ninja') && !which('make')) missing.push('a build tool (neither make nor ninja is on PATH)');
    const cxxEnv = (process.env.CXX || '').trim().split(/\s+/)[0];
    const cxx = cxxEnv ? which(cxxEnv) : ['c++', 'g++', 'clang++'].map(which).find(Boolean);
    if (!cxx) missing.push(cxxEnv ? `a C++17 compiler (CXX=${process.env.CXX} is not found)` : 'a C++17 compiler (no c++, g++ or clang++ on PATH)');
  }
  if (missing.length) {
    console.error(`vwlmm: cannot build the native addon from source: missing ${missing.join('; ')}.\n${NEEDS}`);
    process.exit(1);
  }
  return cmakeVersion;
}

// The built-in GEMM (native/cpu/gemm_builtin.cpp) against OpenBLAS, time ratios on the 2-core AMD EPYC,
// 2026-12-03 (benchmarks/RESULTS.md: benchmarks/gemm_cpu.ts on a quiet machine; the demo's training steps by
// alternating the two addons): AVX2+FMA kernel 1.00x on the fused-kernel shapes, 0.90x on the demo's, the demo's
// steps 0.8-1.2x: on par, OpenBLAS is optional there; portable kernel (CPUs without AVX2+FMA, or
// VWLMM_SIMD=generic) ~3x, the demo's steps 1.0-1.5x. AVX-512F kernel (an AVX-512 AMD EPYC, 2026-12-07, against
// OpenBLAS's Haswell kernels there): 0.44-0.59x on the decoder's, demo's and answering's products, the demo's steps
// 0.8-0.85x; the default where it exists (native/cpu/gemm.cpp). The one copy of these figures: src/demo/estimate.ts
// quotes them from here. Re-measure when either GEMM changes.
const BUILTIN_VS_OPENBLAS = {
  portableGemm: '~3x', portableDemoSteps: '1.0-1.5x', avx2Gemm: '1.00x', avx2DemoSteps: '0.8-1.2x', avx512Gemm: '0.44-0.59x', avx512DemoSteps: '0.8-0.85x',
};

/** True when backendInfo().gemm names the built-in GEMM (native/cpu/gemm_builtin.cpp), not OpenBLAS. */
function isBuiltinGemm(gemm) {
  return /^builtin\b/.test(String(gemm).trim());
}

/**
 * The built-in GEMM runs its AVX2+FMA kernel where the CPU has both (the addon's backendInfo().simd names the
 * same run-time choice, native/cpu/isa.h), else its portable one.
 */
function hasAvx2Kernel(simd) {
  return /avx2/.test(String(simd || ''));
}

/**
 * The warning printed when the CPU addon runs the built-in GEMM's portable kernel (much slower than OpenBLAS),
 * or null (OpenBLAS, or the built-in AVX2+FMA kernel, which is on par with it).
 * how: 'build' (this source build found no OpenBLAS), 'prebuilt' (the shipped binary was built without it) or
 * 'existing' (an earlier source build); checkout: a git checkout (the fix is npm run build:native there).
 */
function gemmWarning(info, { how = 'build', file = 'the CPU addon', checkout = false } = {}) {
  if (!isBuiltinGemm(info.gemm) || hasAvx2Kernel(info.simd)) return null;
  const why = {
    build: 'this source build found no OpenBLAS (cblas.h + libopenblas), so it compiled the built-in GEMM',
    prebuilt: 'this prebuilt binary was made where no usable static OpenBLAS was found',
    existing: 'it was built from source where no OpenBLAS was found',
  }[how] || 'it was built without OpenBLAS';
  const rebuild = checkout
    ? 'sudo apt-get install -y libopenblas-dev && npm run build:native'
    : `sudo apt-get install -y libopenblas-dev${how === 'prebuilt' ? ' cmake g++' : ''} && VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm`;
  const bar = '!'.repeat(100);
  return [
    bar,
    `WARNING: ${file} uses the built-in GEMM with its portable kernel, not OpenBLAS`,
    `  (backendInfo(): gemm "${String(info.gemm).trim()}", simd "${info.simd}": no AVX2+FMA on this CPU, or VWLMM_SIMD=generic);`,
    `  ${why}.`,
    `  Matrix products run ${BUILTIN_VS_OPENBLAS.portableGemm} slower than with OpenBLAS (measured against its AVX2 kernels), the demo's`,
    `  training steps ${BUILTIN_VS_OPENBLAS.portableDemoSteps} as long (models whose time is mostly GEMM lose up to the ${BUILTIN_VS_OPENBLAS.portableGemm}).`,
    '  Fix (Debian/Ubuntu):',
    `    ${rebuild}`,
    '  Elsewhere: install OpenBLAS with its headers (or set OPENBLAS_ROOT to its prefix) and rebuild the same way.',
    bar,
  ].join('\n');
}

/**
 * backendInfo() of a CPU addon file, read in a child process (a build that does not load here, e.g. one with
 * sanitizers, cannot take this process down): { gemm, simd } or { error } saying why it could not be read.
 */
function addonInfo(file) {
  const code = 'const i = require(process.argv[1]).backendInfo(); process.stdout.write(JSON.stringify({ gemm: i.gemm, simd: i.simd }))';
  const r = spawnSync(process.execPath, ['-e', code, file], { encoding: 'utf8' });
  if (r.status !== 0) {
    // node prints the source line first; the "Error: ..." line says what went wrong (e.g. an undefined symbol)
    const lines = String(r.stderr || r.error || '').split('\n').map((l) => l.trim()).filter(Boolean);
    return { error: `${file} does not load (${lines.find((l) => /^\w*Error\b/.test(l)) || lines[0] || `exit ${r.status}`})` };
  }
  try {
    const info = JSON.parse(r.stdout);
    if (typeof info.gemm !== 'string') throw new Error('no gemm');
    return { gemm: info.gemm, simd: String(info.simd) };
  } catch (e) {
    return { error: `${file} did not report its GEMM (got ${JSON.stringify(r.stdout.slice(0, 80))})` };
  }
}

/**
 * Says which GEMM the addon the library will use runs: one line for OpenBLAS and for the built-in AVX2+FMA
 * kernel, the loud warning (stderr) for the built-in portable one. Returns the addon's { gemm, simd }, or null
 * when it could not be read (said on stderr).
 */
function reportGemm(file, how, out = { log: console.log, warn: console.error }) {
  const rel = path.relative(root, file) || file;
  const info = addonInfo(file);
  if (info.error) {
    out.warn(`vwlmm: could not check the CPU GEMM: ${info.error}`);
    return null;
  }
  const warning = gemmWarning(info, { how, file: rel, checkout: fs.existsSync(path.join(root, '.git')) });
  if (warning) out.warn(warning.split('\n').map((l) => `vwlmm: ${l}`).join('\n'));
  else if (isBuiltinGemm(info.gemm)) {
    // the build may link OpenBLAS and still run the built-in GEMM (its AVX-512 kernel, or OpenBLAS's kernels for this
    // CPU lack AVX2+FMA): say which kernel and why
    const gemm = String(info.gemm), avx512 = /^builtin \(avx512f/.test(gemm);
    const linked = /linked OpenBLAS chose its (\w+) kernels|faster than the (\w+) kernels the linked OpenBLAS chose/.exec(gemm);
    out.log(`vwlmm: CPU GEMM of ${rel}: the built-in one with its ${avx512 ? 'AVX-512F' : 'AVX2+FMA'} kernel (` +
      (avx512 ? `${BUILTIN_VS_OPENBLAS.avx512Gemm} of the time of OpenBLAS's AVX2 kernels, the demo's steps ${BUILTIN_VS_OPENBLAS.avx512DemoSteps}; `
        : `${BUILTIN_VS_OPENBLAS.avx2Gemm} of OpenBLAS's time on large matrices, the demo's steps ${BUILTIN_VS_OPENBLAS.avx2DemoSteps}; `) +
      (linked ? `chosen over the OpenBLAS it links, which picked its ${linked[1] ?? linked[2]} kernels on this CPU: VWLMM_GEMM=openblas uses them)` : 'no OpenBLAS needed)'));
  } else out.log(`vwlmm: CPU GEMM of ${rel}: ${info.gemm}`);
  return info;
}

/**
 * True when a CMake cache records that OpenBLAS was looked for and not found: CMake searches again for a
 * NOTFOUND result on every configure, but cmake-js compile skips the configure when a cache exists, so after
 * `apt-get install libopenblas-dev` the rebuild would keep the built-in GEMM.
 */
function cacheMissesOpenblas(cacheText) {
  if (/^VWLMM_BLAS:[A-Z]+=builtin\s*$/m.test(cacheText)) return false; // asked for the built-in one
  return /^OPENBLAS_(LIBRARY|INCLUDE_DIR):[A-Z]+=.*-NOTFOUND\s*$/m.test(cacheText);
}

function cmakeJs(command, extra) {
  const args = [require.resolve('cmake-js/bin/cmake-js'), command, '--directory', root, ...extra];
  return spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
}

function build() {
  const cmakeVersion = preflight();
  console.log(`vwlmm: compiling the native addon(s) with cmake-js (cmake ${cmakeVersion}) in ${path.join(root, 'build')}`);
  const extra = (process.env.VWLMM_CMAKE_ARGS || '').split(/\s+/).filter(Boolean).map((a) => (a.startsWith('-D') ? `--CD${a.slice(2)}` : a));
  const cache = path.join(root, 'build', 'CMakeCache.txt');
  if (fs.existsSync(cache) && cacheMissesOpenblas(fs.readFileSync(cache, 'utf8'))) {
    console.log('vwlmm: the previous configure found no OpenBLAS: configuring again to look for it');
    const c = cmakeJs('configure', extra);
    if (c.status !== 0) {
      console.error(`vwlmm: cmake configure failed (see above). ${NEEDS}`);
      process.exit(c.status || 1);
    }
  }
  const r = cmakeJs('compile', extra);
  if (r.status !== 0) {
    console.error(`vwlmm: native build failed (see above). ${NEEDS}`);
    process.exit(r.status || 1);
  }
  // the addon the library will load (build/ before prebuilds/, as at run time)
  let file = path.join(root, 'build', 'Release', 'vwlmm.node');
  try {
    file = require('node-gyp-build').resolve(root);
  } catch (e) { /* reportGemm names the missing file */ }
  reportGemm(file, 'build');
}

module.exports = { build, gemmWarning, isBuiltinGemm, hasAvx2Kernel, addonInfo, reportGemm, cacheMissesOpenblas, BUILTIN_VS_OPENBLAS };

if (require.main === module) build();
