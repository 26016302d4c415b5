#!/usr/bin/env node
// Builds the native addons with cmake-js (offline: headers come from node-api-headers).
// Extra CMake definitions can be passed through VWLMM_CMAKE_ARGS, e.g. "-DVWLMM_CUDA=off".
// Checks first that the tools are there (cmake >= 3.18, make or ninja, a C++ compiler) and says what is missing.
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

const cmakeVersion = preflight();
console.log(`vwlmm: compiling the native addon(s) with cmake-js (cmake ${cmakeVersion}) in ${path.join(root, 'build')}`);
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const extra = (process.env.VWLMM_CMAKE_ARGS || '').split(/\s+/).filter(Boolean).map((a) => (a.startsWith('-D') ? `--CD${a.slice(2)}` : a));
const args = [cmakeJs, 'compile', '--directory', root, ...extra];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
if (r.status !== 0) {
  console.error(`vwlmm: native build failed (see above). ${NEEDS}`);
  process.exit(r.status || 1);
}
