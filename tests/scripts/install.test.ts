// The install-time GEMM check (scripts/build-native.js, used by scripts/install.js): an addon with the built-in
// GEMM's slow portable kernel gets a loud warning naming the cost and the fix; OpenBLAS and the built-in AVX2+FMA
// kernel (on par with it) one line each; and `node scripts/install.js` on this checkout reports the GEMM its
// addon really has.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { tempDirs } from '../support/tmp';

type Info = { gemm: string; simd: string };
const root = path.join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const native = require(path.join(root, 'scripts', 'build-native.js')) as {
  gemmWarning(info: Info, o?: { how?: string; file?: string; checkout?: boolean }): string | null;
  isBuiltinGemm(gemm: string): boolean;
  hasAvx2Kernel(simd: string): boolean;
  addonInfo(file: string): Partial<Info> & { error?: string };
  reportGemm(file: string, how: string, out: { log(s: string): void; warn(s: string): void }): Info | null;
  cacheMissesOpenblas(cache: string): boolean;
};
const tmp = tempDirs('install');
const OPENBLAS = 'openblas OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64';

/** A stand-in for a CPU addon: a module whose backendInfo() reports `gemm` and `simd` (require loads it like the addon). */
function fakeAddon(gemm: string, simd: string): string {
  const f = path.join(tmp(), 'fake_addon.js');
  fs.writeFileSync(f, `module.exports = { backendInfo: () => ({ device: 'cpu', gemm: ${JSON.stringify(gemm)}, threads: 2, simd: ${JSON.stringify(simd)} }) };\n`);
  return f;
}

describe('install: CPU GEMM check', () => {
  it('warns about the built-in portable kernel with the measured cost and the command that fixes it', () => {
    expect(native.isBuiltinGemm('builtin')).toBe(true);
    expect(native.isBuiltinGemm(OPENBLAS)).toBe(false);
    expect(native.gemmWarning({ gemm: OPENBLAS, simd: 'generic' })).toBeNull();
    expect(native.gemmWarning({ gemm: 'builtin', simd: 'avx2+fma' })).toBeNull(); // on par with OpenBLAS
    const w = native.gemmWarning({ gemm: 'builtin', simd: 'generic' }, { how: 'prebuilt', file: 'prebuilds/linux-x64/vwlmm.napi.glibc.node' })!;
    expect(w.split('\n').length).toBeGreaterThanOrEqual(6);
    expect(w).toMatch(/WARNING: prebuilds\/linux-x64\/vwlmm\.napi\.glibc\.node uses the built-in GEMM with its portable kernel, not OpenBLAS/);
    expect(w).toMatch(/gemm "builtin", simd "generic": no AVX2\+FMA on this CPU/);
    expect(w).toMatch(/Matrix products run ~3x slower than with OpenBLAS[^]*training steps 1\.0-1\.5x as long/);
    // the prebuilt case needs a source build, hence the compiler too
    expect(w).toMatch(/sudo apt-get install -y libopenblas-dev cmake g\+\+ && VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm/);
    expect(native.gemmWarning({ gemm: 'builtin', simd: 'generic' }, { how: 'build' })).toMatch(/this source build found no OpenBLAS[^\n]*\n[^]*sudo apt-get install -y libopenblas-dev && VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm/);
    expect(native.gemmWarning({ gemm: 'builtin', simd: 'generic' }, { how: 'existing', checkout: true })).toMatch(/sudo apt-get install -y libopenblas-dev && npm run build:native/);
  });

  it('reads the GEMM from the addon file and reports it: one line, or the warning on stderr for the portable kernel', () => {
    expect(native.addonInfo(fakeAddon('builtin', 'generic'))).toEqual({ gemm: 'builtin', simd: 'generic' });
    const broken = path.join(tmp(), 'broken.js');
    fs.writeFileSync(broken, 'throw new Error("undefined symbol: cblas_sgemm")\n');
    expect(native.addonInfo(broken).error).toMatch(/broken\.js does not load .*undefined symbol: cblas_sgemm/);
    const capture = () => {
      const o = { logs: [] as string[], warns: [] as string[] };
      return { o, out: { log: (s: string) => o.logs.push(s), warn: (s: string) => o.warns.push(s) } };
    };
    const slow = capture();
    expect(native.reportGemm(fakeAddon('builtin', 'generic'), 'prebuilt', slow.out)).toEqual({ gemm: 'builtin', simd: 'generic' });
    expect(slow.o.logs).toEqual([]);
    expect(slow.o.warns.join('\n')).toMatch(/^vwlmm: !{20,}\nvwlmm: WARNING: .*fake_addon\.js uses the built-in GEMM with its portable kernel/);
    const avx = capture();
    native.reportGemm(fakeAddon('builtin', 'avx2+fma'), 'build', avx.out);
    expect(avx.o.warns).toEqual([]);
    expect(avx.o.logs).toEqual([expect.stringMatching(/^vwlmm: CPU GEMM of .*fake_addon\.js: the built-in one with its AVX2\+FMA kernel \(1\.00x of OpenBLAS's time/)]);
    expect(avx.o.logs[0]).toMatch(/; no OpenBLAS needed\)$/);
    // a build that links OpenBLAS but runs the built-in GEMM (OpenBLAS's kernels for this CPU lack AVX2+FMA) says so
    const linked = capture();
    native.reportGemm(fakeAddon('builtin (AVX2+FMA: the linked OpenBLAS chose its Prescott kernels on this CPU; VWLMM_GEMM=openblas keeps them; linked: openblas OpenBLAS 0.3.21)', 'avx2+fma'), 'build', linked.out);
    expect(linked.o.logs).toEqual([expect.stringMatching(/the built-in one with its AVX2\+FMA kernel .*; chosen over the OpenBLAS it links, which picked its Prescott kernels on this CPU: VWLMM_GEMM=openblas uses them\)$/)]);
    const ob = capture();
    native.reportGemm(fakeAddon(OPENBLAS, 'avx2+fma'), 'prebuilt', ob.out);
    expect(ob.o.warns).toEqual([]);
    expect(ob.o.logs).toEqual([expect.stringMatching(new RegExp(`^vwlmm: CPU GEMM of .*fake_addon\\.js: ${OPENBLAS}$`))]);
    const bad = capture();
    expect(native.reportGemm(broken, 'existing', bad.out)).toBeNull();
    expect(bad.o.warns.join('\n')).toMatch(/could not check the CPU GEMM: .*broken\.js does not load/);
  });

  it('configures again when the last configure found no OpenBLAS (cmake-js compile would keep the built-in GEMM)', () => {
    const cache = (lib: string, inc: string, blas = 'auto') =>
      `VWLMM_BLAS:STRING=${blas}\nOPENBLAS_INCLUDE_DIR:PATH=${inc}\nOPENBLAS_LIBRARY:FILEPATH=${lib}\n`;
    expect(native.cacheMissesOpenblas(cache('OPENBLAS_LIBRARY-NOTFOUND', 'OPENBLAS_INCLUDE_DIR-NOTFOUND'))).toBe(true);
    expect(native.cacheMissesOpenblas(cache('/usr/lib/x86_64-linux-gnu/libopenblas.a', 'OPENBLAS_INCLUDE_DIR-NOTFOUND'))).toBe(true);
    expect(native.cacheMissesOpenblas(cache('/usr/lib/x86_64-linux-gnu/libopenblas.a', '/usr/include/x86_64-linux-gnu/openblas-pthread'))).toBe(false);
    expect(native.cacheMissesOpenblas(cache('OPENBLAS_LIBRARY-NOTFOUND', 'OPENBLAS_INCLUDE_DIR-NOTFOUND', 'builtin'))).toBe(false);
    expect(native.cacheMissesOpenblas('VWLMM_BLAS:STRING=builtin\n')).toBe(false);
  });

  it('node scripts/install.js on this checkout names the GEMM its addon has (and warns only for the portable kernel)', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const file = (require('node-gyp-build') as { resolve(dir: string): string }).resolve(root); // built, so nothing compiles
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const info = (require(file) as { backendInfo(): Info }).backendInfo();
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'install.js')], { cwd: root, encoding: 'utf8', env: { ...process.env, VWLMM_BUILD_FROM_SOURCE: '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^vwlmm: using the (existing build|prebuilt binary) /);
    const rel = path.relative(root, file);
    if (!native.isBuiltinGemm(info.gemm)) expect(r.stdout).toContain(`vwlmm: CPU GEMM of ${rel}: ${info.gemm}\n`);
    else if (native.hasAvx2Kernel(info.simd)) expect(r.stdout).toContain(`vwlmm: CPU GEMM of ${rel}: the built-in one with its ${/^builtin \(avx512f/.test(info.gemm) ? 'AVX-512F' : 'AVX2+FMA'} kernel`);
    if (native.isBuiltinGemm(info.gemm) && !native.hasAvx2Kernel(info.simd)) expect(r.stderr).toMatch(/WARNING: .* uses the built-in GEMM with its portable kernel/);
    else expect(r.stderr).not.toMatch(/WARNING/);
  });
});
