#!/usr/bin/env node
// Builds the native addons with cmake-js (offline: headers come from node-api-headers).
// Extra CMake definitions can be passed through VWLMM_CMAKE_ARGS, e.g. "-DVWLMM_CUDA=off".
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.join(__dirname, '..');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const extra = (process.env.VWLMM_CMAKE_ARGS || '').split(/\s+/).filter(Boolean).map((a) => (a.startsWith('-D') ? `--CD${a.slice(2)}` : a));
const args = [cmakeJs, 'compile', '--directory', root, ...extra];
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
if (r.status !== 0) {
  console.error('vwlmm: native build failed (see above). Needs cmake >= 3.18 and a C++17 compiler.');
  process.exit(r.status || 1);
}
