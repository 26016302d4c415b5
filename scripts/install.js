#!/usr/bin/env node
// npm install hook: use a prebuilt binary (prebuilds/<platform>-<arch>/) when one loads, else build from
// source with cmake-js. VWLMM_BUILD_FROM_SOURCE=1 forces the source build.
'use strict';
const path = require('path');

const root = path.join(__dirname, '..');
if (!process.env.VWLMM_BUILD_FROM_SOURCE) {
  try {
    require('node-gyp-build')(root);
    console.log('vwlmm: using the existing native binary');
    process.exit(0);
  } catch (e) {
    // no usable binary: build one
  }
}
require('./build-native.js');
