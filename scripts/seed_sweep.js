#!/usr/bin/env node
// Seed sweep (not part of CI): runs the seeded test suites once per seed and lists every test that failed,
// with its seed, so that no tolerance holds only for lucky inputs. The suites draw their random inputs from
// VWLMM_TEST_SEED (tests/support/random.ts); CI draws one fresh seed per run.
//
//   node scripts/seed_sweep.js [--count 200] [--base B] [--seeds s1,s2,...] [--out FILE] [suites...]
//
// Seeds are B, B+1, ..., B+count-1 (B random unless given; printed, so a sweep can be repeated), or the --seeds
// list. Default suites: every test folder that uses the seed except the fuzzer (its own budgeted run). ~20 s a
// seed on 2 cores. Writes a JSON summary to --out (default benchmarks/out/seed_sweep.json) and exits 1 when
// any seed failed.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const count = Number(opt('--count', '200'));
const base = Number(opt('--base', String(Math.floor(Math.random() * 2 ** 30))));
const list = opt('--seeds', '');
const out = path.resolve(opt('--out', path.join(root, 'benchmarks', 'out', 'seed_sweep.json')));
const suites = args.length ? args : ['tests/kernels', 'tests/engine', 'tests/autograd', 'tests/optim', 'tests/tensor.test.ts'];
const seeds = list ? list.split(',').map(Number) : Array.from({ length: count }, (_, i) => base + i);
if (!seeds.length || seeds.some((s) => !Number.isInteger(s) || s < 0)) {
  console.error(`seed_sweep: seeds must be non-negative integers, got ${list || `--count ${count} --base ${base}`}`);
  process.exit(2);
}

const vitest = path.join(root, 'node_modules', 'vitest', 'vitest.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vwlmm-sweep-'));
const failures = [];
const t0 = Date.now();
console.log(`seed_sweep: ${seeds.length} seeds (${list ? 'listed' : `base ${base}`}) over ${suites.join(' ')}`);
seeds.forEach((seed, n) => {
  const report = path.join(tmp, `${seed}.json`);
  const r = spawnSync(process.execPath, [vitest, 'run', ...suites, '--reporter=json', `--outputFile=${report}`],
    { cwd: root, env: { ...process.env, VWLMM_TEST_SEED: String(seed) }, encoding: 'utf8', maxBuffer: 1 << 28 });
  let failed = [];
  let total = 0;
  try {
    const j = JSON.parse(fs.readFileSync(report, 'utf8'));
    total = j.numTotalTests;
    for (const file of j.testResults) {
      if (file.status === 'failed' && !file.assertionResults.some((a) => a.status === 'failed'))
        failed.push({ file: path.relative(root, file.name), test: '(file failed to run)', message: String(file.message).split('\n')[0] });
      for (const a of file.assertionResults)
        if (a.status === 'failed')
          failed.push({ file: path.relative(root, file.name), test: a.fullName, message: String(a.failureMessages[0] ?? '').split('\n')[0] });
    }
  } catch (e) {
    failed = [{ file: '-', test: '(no report)', message: `vitest exited ${r.status}: ${(r.stderr || '').slice(-400)}` }];
  }
  if (r.status !== 0 && !failed.length) {
    // no failed test, yet a failed run: an unhandled error or a crashed worker, which vitest reports on its output
    const said = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').filter((l) => /error|unhandled|exited|killed|signal/i.test(l));
    failed = [{ file: '-', test: '(exit status)', message: `vitest exited ${r.status ?? r.signal}: ${said.slice(0, 12).join(' | ').slice(0, 2000)}` }];
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  if (failed.length) {
    for (const f of failed) failures.push({ seed, ...f });
    console.log(`[${n + 1}/${seeds.length}] seed ${seed}: ${failed.length} FAILED (${secs} s)`);
    for (const f of failed) console.log(`    ${f.file} > ${f.test}\n      ${f.message}\n      replay: VWLMM_TEST_SEED=${seed} npx vitest run ${f.file === '-' ? suites.join(' ') : f.file}`);
  } else {
    console.log(`[${n + 1}/${seeds.length}] seed ${seed}: ${total} tests passed (${secs} s)`);
  }
});
fs.rmSync(tmp, { recursive: true, force: true });
const failedSeeds = [...new Set(failures.map((f) => f.seed))];
const summary = { date: new Date().toISOString(), suites, seeds: seeds.length, base: list ? null : base, failedSeeds, failures,
  seconds: Math.round((Date.now() - t0) / 1000) };
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(summary, null, 2) + '\n');
console.log(`seed_sweep: ${seeds.length - failedSeeds.length} of ${seeds.length} seeds passed, ${failedSeeds.length} failed` +
  ` (${failures.length} test failures) in ${summary.seconds} s; summary in ${path.relative(process.cwd(), out)}`);
process.exit(failedSeeds.length ? 1 : 0);
