#!/usr/bin/env node
// npm install hook. Uses a native binary that is already there, without compiling anything: the prebuilt one
// shipped in the package (prebuilds/<platform>-<arch>/, linux-x64 in the npm tarball) or an existing build/Release
// from an earlier source build, picked exactly as the library picks it at run time (node-gyp-build) and loaded
// once to make sure it works on this machine. Otherwise (no binary for this platform, one that does not load
// here, or VWLMM_BUILD_FROM_SOURCE=1) it says why and builds from source with cmake-js (scripts/build-native.js).
// Either way it says which GEMM the CPU addon runs, and warns loudly when that is a slow one (build-native.js).
'use strict';
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const tuple = `${process.platform}-${process.arch}`;
const rel = (f) => path.relative(root, f);

/** { file } of a binary that loads here, or { reason } why there is none. */
function existingBinary() {
  let file;
  try {
    file = require('node-gyp-build').resolve(root);
  } catch (e) {
    let reason;
    if (fs.existsSync(path.join(root, '.git'))) reason = 'a source checkout (no build/Release or prebuilds/ yet)';
    else if (!fs.existsSync(path.join(root, 'prebuilds'))) reason = 'this package was packed without prebuilt binaries (no prebuilds/ folder)';
    else reason = `no prebuilt binary for ${tuple} that matches this system (prebuilt: linux-x64 glibc only)`;
    return { reason };
  }
  try {
    require(file);
  } catch (e) {
    return { reason: `${rel(file)} does not load on this machine (${String(e.message).split('\n')[0]})` };
  }
  return { file };
}

function cudaNote() {
  const candidates = [path.join(root, 'build', 'Release', 'cuda', 'vwlmm_cuda.node'),
    path.join(root, 'prebuilds', tuple, 'cuda', 'vwlmm_cuda.node')];
  const f = candidates.find((c) => fs.existsSync(c));
  if (!f) return 'no CUDA addon in this package (CPU only; a source build with nvcc + cuBLAS adds one)';
  let cublas = 'cuBLAS';
  try {
    const m = /libcublas\.so\.\d+/.exec(fs.readFileSync(f).toString('latin1'));
    if (m) cublas = m[0];
  } catch (e) { /* only for the message */ }
  return `CUDA addon ${rel(f)} (loaded on first use of device 'cuda'; needs an NVIDIA driver and ${cublas} on the library path)`;
}

/** The MPI backend of process groups beside the addon `file` (libvwlmm_mpi.so, dlopened on first use), or why there is none. */
function mpiNote(file) {
  let mpi;
  try {
    mpi = require(file).backendInfo().mpi;
  } catch (e) {
    return `could not check the MPI backend: ${String(e.message).split('\n')[0]}`;
  }
  if (!mpi || mpi.available === undefined) return `${rel(file)} does not report an MPI backend (a build older than it: npm run build:native)`;
  return mpi.available
    ? `MPI backend ${rel(mpi.library)} (${mpi.version}; process groups over MPI, launched with mpirun)`
    : `no working MPI backend for process groups (everything else works): ${mpi.reason}`;
}

function main() {
  const native = require('./build-native.js');
  const force = process.env.VWLMM_BUILD_FROM_SOURCE && !['0', 'false', ''].includes(process.env.VWLMM_BUILD_FROM_SOURCE);
  let reason;
  if (force) {
    reason = `VWLMM_BUILD_FROM_SOURCE=${process.env.VWLMM_BUILD_FROM_SOURCE}`;
  } else {
    const found = existingBinary();
    if (found.file) {
      const prebuilt = rel(found.file).startsWith('prebuilds');
      console.log(prebuilt
        ? `vwlmm: using the prebuilt binary ${rel(found.file)} (nothing to compile; VWLMM_BUILD_FROM_SOURCE=1 builds from source)`
        : `vwlmm: using the existing build ${rel(found.file)} (npm run build:native rebuilds it)`);
      native.reportGemm(found.file, prebuilt ? 'prebuilt' : 'existing');
      console.log(`vwlmm: ${cudaNote()}`);
      console.log(`vwlmm: ${mpiNote(found.file)}`);
      return;
    }
    reason = found.reason;
  }
  console.log(`vwlmm: building the native addon from source: ${reason}`);
  native.build();
}

main();
