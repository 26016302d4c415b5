// Loading the CUDA addon (src/native.ts): it loads wherever cuBLAS is complete, and where cuBLAS is not (libcublas
// without the libcublasLt it needs), the reason it gives names the missing library and what to install. Each case
// runs in a child process, since a process loads the addon once. Skipped where no CUDA addon was built.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { backendInfo, cudaAttention, cudaAvailable, setCudaAttention } from '../src';
import type { AttentionKernel } from '../src';
import { tempDirs } from './support/tmp';

const root = path.join(__dirname, '..');
const addon = path.join(root, 'build', 'Release', 'cuda', 'vwlmm_cuda.node');
const built = fs.existsSync(addon);
const tmp = tempDirs('loading');

/** backendInfo().cuda in a fresh Node process with env (LD_LIBRARY_PATH removed, so only the addon's RUNPATH counts). */
function cudaInfoIn(env: Record<string, string>): { available: boolean; reason: string | null } {
  const base = { ...process.env };
  delete base.LD_LIBRARY_PATH;
  delete base.VWLMM_DISABLE_CUDA;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e',
    "console.log(JSON.stringify(require('./src').backendInfo().cuda))"], { cwd: root, env: { ...base, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`child exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

/** Where the dynamic loader finds the addon's libcublas.so.N, or null. */
function resolvedCublas(): string | null {
  const r = spawnSync('ldd', [addon], { encoding: 'utf8' });
  const m = /^\s*libcublas\.so\S*\s+=>\s+(\/\S+)/m.exec(r.stdout ?? '');
  return m ? m[1] : null;
}

describe.skipIf(!built)('CUDA addon loading', () => {
  it('loads where cuBLAS is complete (available, or no device: never a failed load)', () => {
    const lib = resolvedCublas();
    expect(lib, `ldd ${addon} does not resolve libcublas`).not.toBeNull();
    const info = cudaInfoIn({});
    if (!info.available) expect(info.reason).toMatch(/^no usable CUDA device/);
  });

  it('where libcublas lacks the libcublasLt it needs, the reason names it and says what to install', () => {
    const lib = resolvedCublas()!;
    const lt = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' }).stdout ?? '';
    if (/libcublasLt\.so/.test(lt)) return; // a system-wide libcublasLt would complete any libcublas
    // A copy of the addon beside libcublas alone: the addon's RUNPATH starts with $ORIGIN, and libcublas looks
    // for libcublasLt through its own $ORIGIN, which then holds no libcublasLt.
    const dir = tmp();
    fs.copyFileSync(addon, path.join(dir, 'vwlmm_cuda.node'));
    try {
      fs.linkSync(fs.realpathSync(lib), path.join(dir, path.basename(lib)));
    } catch {
      fs.copyFileSync(lib, path.join(dir, path.basename(lib)));
    }
    const info = cudaInfoIn({ VWLMM_CUDA_ADDON: path.join(dir, 'vwlmm_cuda.node') });
    expect(info.available).toBe(false);
    expect(info.reason).toMatch(/loading .*vwlmm_cuda\.node failed: libcublasLt\.so\.\d+: cannot open shared object file/);
    expect(info.reason).toMatch(/cuBLAS is missing or incomplete: .*libcublas and libcublasLt/);
  });
});

describe('backendInfo', () => {
  it('reports the CPU GEMM and why CUDA is or is not available', () => {
    const info = backendInfo();
    expect(info.cpu.gemm).toMatch(/^(openblas|builtin)/);
    expect(info.cpu.threads).toBeGreaterThan(0);
    if (!info.cuda.available) expect(info.cuda.reason).toMatch(/\w/);
  });
});

/** Runs a snippet of TypeScript in a fresh process (tsx, in the package root) with these environment variables set. */
function runSnippet(code: string, env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ['--import', 'tsx', '-e', code],
    { cwd: root, env: { ...process.env, ...env }, encoding: 'utf8' });
}

/** A fresh process's backendInfo().cpu gemm and simd, and a small matmul's result ([5, 11, 14, 23]). */
const MATMUL_SNIPPET =
  "const v=require('./src');const a=v.Tensor.fromArray(new Float32Array([1,2,3,4,5,6]),[2,3]);" +
  "const b=v.Tensor.fromArray(new Float32Array([1,0,2,1,0,3]),[3,2]);" +
  "console.log(JSON.stringify({gemm:v.backendInfo().cpu.gemm,simd:v.backendInfo().cpu.simd,c:Array.from(v.F.matmul(a,b).toArray())}))";

describe('VWLMM_GEMM', () => {
  /** backendInfo().cpu.gemm and a small matmul's result in a fresh process with VWLMM_GEMM set. */
  const run = (value: string) => runSnippet(
    MATMUL_SNIPPET,
    { VWLMM_GEMM: value });
  it('builtin selects the built-in GEMM (and it computes the product)', () => {
    const r = run('builtin');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.gemm).toMatch(/^builtin/);
    // [[1,2,3],[4,5,6]] @ [[1,0],[2,1],[0,3]] by hand
    expect(out.c).toEqual([5, 11, 14, 23]);
  });
  // OpenBLAS's kernels as OPENBLAS_CORETYPE forces them (what its DYNAMIC_ARCH picks for a CPU it does not know:
  // Prescott, SSE3 only): unset, the built-in GEMM runs instead where this CPU has AVX2+FMA; VWLMM_GEMM=openblas keeps them
  const linked = /openblas/i.test(backendInfo().cpu.gemm), avx2 = /avx2/.test(String(backendInfo().cpu.simd));
  const avx512 = /avx512f/.test(String(backendInfo().cpu.simd));
  const withCore = (core: string, env: Record<string, string>) => {
    const r = runSnippet(
      MATMUL_SNIPPET,
      { OPENBLAS_CORETYPE: core, VWLMM_GEMM: '', ...env });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { gemm: string; c: number[] };
    expect(out.c).toEqual([5, 11, 14, 23]);
    return out.gemm;
  };
  it.skipIf(!linked)('unset: OpenBLAS, unless its kernels lack the AVX2+FMA the built-in GEMM uses on this CPU or the built-in GEMM has its AVX-512 kernel; openblas keeps them', () => {
    const weak = withCore('Prescott', {});
    if (avx2) expect(weak).toMatch(/^builtin \((avx512f 12x32|avx2\+fma 6x16): the linked OpenBLAS chose its Prescott kernels on this CPU; VWLMM_GEMM=openblas keeps them; linked: openblas /);
    else expect(weak).toMatch(/^openblas .*Prescott/);
    expect(withCore('Prescott', { VWLMM_GEMM: 'openblas' })).toMatch(/^openblas .*Prescott/);
    expect(withCore('Prescott', { VWLMM_SIMD: 'generic' })).toMatch(/^openblas .*Prescott/); // no AVX2 kernel to gain
    // OpenBLAS's AVX2 kernels: kept, unless the built-in GEMM has its AVX-512 kernel here (0.44-0.59x their time)
    // (VWLMM_SIMD=avx2 keeps the choice: its AVX2 kernel gives the AVX-512 kernel's bits, which the cap promises)
    if (avx512) {
      expect(withCore('Haswell', {})).toMatch(/^builtin \(avx512f 12x32: the built-in GEMM on this AVX-512 CPU, faster than the Haswell kernels the linked OpenBLAS chose; VWLMM_GEMM=openblas keeps them; linked: openblas /);
      expect(withCore('Haswell', { VWLMM_SIMD: 'avx2' })).toMatch(/^builtin \(avx2\+fma 6x16: the built-in GEMM on this AVX-512 CPU, faster than the Haswell kernels the linked OpenBLAS chose \(its AVX2 kernel under VWLMM_SIMD=avx2: the AVX-512 kernel's bits\); VWLMM_GEMM=openblas/);
    } else if (avx2) expect(withCore('Haswell', {})).toMatch(/^openblas .*Haswell/);
    expect(withCore('Haswell', { VWLMM_SIMD: 'generic' })).toMatch(/^openblas .*Haswell/); // the portable kernel: OpenBLAS
  });
  it('an unknown value is an error that names the variable and the choices', () => {
    const r = run('mkl');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/VWLMM_GEMM must be 'openblas' or 'builtin'.*got 'mkl'/);
  });
});

describe('VWLMM_SIMD', () => {
  const run = (value: string) => runSnippet(
    MATMUL_SNIPPET,
    { VWLMM_SIMD: value, VWLMM_GEMM: 'builtin' });
  const avx2 = /avx2/.test(String(backendInfo().cpu.simd));
  it('generic and avx2 cap the built-in GEMM\'s micro-kernel (and it computes the product)', () => {
    for (const [value, kernel, simd] of [['generic', /^builtin \(portable \dx8[;)]/, 'generic'], ['avx2', avx2 ? /^builtin \(avx2\+fma 6x16[;)]/ : /^builtin \(portable \dx8[;)]/, avx2 ? 'avx2+fma' : 'generic']] as const) {
      const r = run(value);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(out.gemm).toMatch(kernel);
      expect(out.simd).toBe(simd);
      expect(out.c).toEqual([5, 11, 14, 23]);
    }
  });
  it('an unknown value is an error that names the variable and the choices', () => {
    const r = run('avx512');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/VWLMM_SIMD must be 'generic' .* or 'avx2' .*got 'avx512'/);
  });
});

describe('VWLMM_SPIN_US', () => {
  // The pool's spin between jobs changes when its threads sleep, never what they compute.
  const run = (value: string) => runSnippet(
    "const v=require('./src');const a=v.Tensor.fromArray(Float32Array.from({length:600*70},(_, i)=>(i%13)-6),[600,70]);" +
      "const b=v.Tensor.fromArray(Float32Array.from({length:70*90},(_, i)=>(i%7)-3),[70,90]);" +
      "const c=v.F.matmul(a,b).toArray();let s=0;for(const x of c)s+=x*x;console.log(JSON.stringify({s}))",
    { VWLMM_SPIN_US: value, VWLMM_NUM_THREADS: '2' });
  it('0 (sleep at once) and a long spin both give the exact product on 2 threads', () => {
    // the same small-integer product in float64 (every partial sum exact in float32 too): sum of C's squares
    let want = 0;
    for (let i = 0; i < 600; i++)
      for (let j = 0; j < 90; j++) {
        let c = 0;
        for (let k = 0; k < 70; k++) c += (((i * 70 + k) % 13) - 6) * (((k * 90 + j) % 7) - 3);
        want += c * c;
      }
    for (const value of ['0', '20000']) {
      const r = run(value);
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout.trim().split('\n').pop()!).s, `VWLMM_SPIN_US=${value}`).toBe(want);
    }
  });
  it('a value that is not a whole number of microseconds is an error naming the variable', () => {
    const r = run('-5');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/VWLMM_SPIN_US must be a whole number of microseconds.*got '-5'/);
  });
});

describe('VWLMM_NUM_THREADS and a missing addon', () => {
  it('a thread count that is not one is an error naming the variable (natively it meant "all cores", silently)', () => {
    for (const bad of ['abc', '0', '-2', '2.5', '99999']) {
      const r = runSnippet("require('./src').backendInfo()", { VWLMM_NUM_THREADS: bad });
      expect(r.status, bad).not.toBe(0);
      expect(r.stderr).toContain(`VWLMM_NUM_THREADS must be a whole number of threads in [1, 1024] (unset: one per CPU this process may run on), got '${bad}'`);
    }
    const ok = runSnippet("console.log(require('./src').backendInfo().cpu.threads)", { VWLMM_NUM_THREADS: '1' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout.trim().split('\n').pop()).toBe('1');
  });

  it("unset, one thread per CPU the process may run on (all, or the one taskset or mpirun's binding leaves), shared out between the ranks on the machine", () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.VWLMM_NUM_THREADS;
    const threads = (prefix: string[], more: NodeJS.ProcessEnv = {}) => {
      const cmd = [...prefix, process.execPath, '--import', 'tsx', '-e', "console.log(require('./src').backendInfo().cpu.threads)"];
      const r = spawnSync(cmd[0], cmd.slice(1), { cwd: root, env: { ...env, ...more }, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return Number(r.stdout.trim().split('\n').pop());
    };
    expect(threads([])).toBe(os.availableParallelism()); // libuv reads the affinity mask too
    // one CPU of several: 2 threads on it only preempted each other while they spun (2 ranks x 2 threads on 2 cores)
    if (os.availableParallelism() > 1 && spawnSync('taskset', ['-c', '0', 'true']).status === 0) expect(threads(['taskset', '-c', '0'])).toBe(1);
    // one of 2 ranks on this machine (torchrun-style variables): half the CPUs, at least one; a set value stands
    const rank = { RANK: '0', WORLD_SIZE: '2', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '2' };
    expect(threads([], rank)).toBe(Math.max(1, Math.floor(os.availableParallelism() / 2)));
    expect(threads([], { ...rank, VWLMM_NUM_THREADS: '3' })).toBe(3);
  });

  it('an addon that does not load is named with its cause on one line, and the command that builds it here', () => {
    const r = runSnippet("require('./src').backendInfo()", { VWLMM_ADDON: path.join(tmp(), 'missing.node') });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/vwlmm: the native CPU addon could not be loaded: Cannot find module '.*missing\.node'[^\n]*\nBuild it with `npm run build:native` \(a source build needs cmake/);
    expect(r.stderr).not.toMatch(/\n\)\./); // node-gyp-build's multi-line message no longer leaves a stray ').'
    // a file require() loads that is not the addon (a .json): named as such, not "backendInfo is not a function" later
    const json = runSnippet("require('./src').backendInfo()", { VWLMM_ADDON: path.join(root, 'package.json') });
    expect(json.stderr).toContain(`the native CPU addon could not be loaded: ${path.join(root, 'package.json')} is not the vwlmm addon (no backendInfo / NativeBuffer: a vwlmm.node is needed; check VWLMM_ADDON)`);
    // and the CLI says where it comes from once (it printed 'vwlmm: vwlmm: ...')
    const cli = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'cli.ts'), 'info'],
      { cwd: root, env: { ...process.env, VWLMM_ADDON: path.join(tmp(), 'missing.node') }, encoding: 'utf8' });
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(/^vwlmm: the native CPU addon could not be loaded: /);
  });
});

describe('addon symbols', () => {
  // The addons export nothing of vwlmm's own: a default-visibility function-local static (error_flags(),
  // host_sync_counter(), the process-group state) is an STB_GNU_UNIQUE symbol, one object for every library in
  // the process, and the CPU and CUDA addons then shared their error flags and host-sync counts (a CPU read
  // raised a CUDA op's pending async check, on a GPU). CMakeLists.txt builds them with hidden symbols.
  const cpuAddon = process.env.VWLMM_ADDON ?? path.join(root, 'build', 'Release', 'vwlmm.node');
  const addons = [cpuAddon, addon].filter((f) => fs.existsSync(f));
  const readelf = spawnSync('readelf', ['--version'], { encoding: 'utf8' }).status === 0;
  it.skipIf(!readelf || addons.length === 0)('no vwlmm symbol is unique or exported; the Node-API entry points are', () => {
    for (const f of addons) {
      const r = spawnSync('readelf', ['-Ws', '--wide', f], { encoding: 'utf8', maxBuffer: 1 << 28 });
      expect(r.status, r.stderr).toBe(0);
      const rows = r.stdout.split('\n').map((l) => l.trim().split(/\s+/)); // Num: Value Size Type Bind Vis Ndx Name
      const ours = (name: string | undefined) => name !== undefined && /^_Z+N2vw/.test(name);
      expect(rows.filter((c) => c[4] === 'UNIQUE' && ours(c[7])).map((c) => c[7]), `${f}: unique`).toEqual([]);
      const exported = rows.filter((c) => (c[4] === 'GLOBAL' || c[4] === 'WEAK') && c[5] === 'DEFAULT' && c[6] !== 'UND').map((c) => c[7]);
      expect(exported.filter(ours), `${f}: exported`).toEqual([]);
      expect(exported).toContain('napi_register_module_v1');
    }
  });
});

describe('CUDA attention settings (setCudaAttention)', () => {
  it('checks its arguments before it needs CUDA', () => {
    expect(() => setCudaAttention({ kernel: 'flash' as AttentionKernel })).toThrow(/setCudaAttention: expected 'auto', 'tiled' or 'gemm' for kernel but received/);
    expect(() => setCudaAttention({ workspaceBytes: 0 })).toThrow(/expected an integer >= 1 for workspaceBytes/);
    expect(() => setCudaAttention({ workspaceBytes: 1.5 })).toThrow(/workspaceBytes/);
    expect(() => setCudaAttention(null as unknown as object)).toThrow(/expected an object for settings/);
    if (!cudaAvailable()) {
      expect(() => setCudaAttention({ kernel: 'gemm' })).toThrow(/setCudaAttention: CUDA is unavailable/);
      expect(cudaAttention()).toBeNull();
    }
  });

  // The binding itself, on the addon file: it loads and keeps its settings without a GPU.
  it.skipIf(!built)('the binding starts at auto / 64 MiB, keeps what it is given, returns the previous settings and refuses bad values', () => {
    const code = `const a=require(${JSON.stringify(addon)});const r=[a.attentionSettings()];r.push(a.attentionSettings('gemm',4096));` +
      "r.push(a.attentionSettings(undefined,12345));r.push(a.attentionSettings());" +
      "for(const bad of [['flash'],[undefined,0],[undefined,2.5],[7]]){try{a.attentionSettings(...bad);r.push('no error')}catch(e){r.push(e.message)}}" +
      'r.push(a.attentionSettings());console.log(JSON.stringify(r))';
    const env = { ...process.env };
    delete env.VWLMM_CUDA_ATTENTION;
    const r = spawnSync(process.execPath, ['-e', code], { cwd: root, env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.slice(0, 4)).toEqual([ // gemmCalls: no attention has run
      { kernel: 'auto', workspaceBytes: 64 * 2 ** 20, gemmCalls: 0 },
      { kernel: 'auto', workspaceBytes: 64 * 2 ** 20, gemmCalls: 0 },
      { kernel: 'gemm', workspaceBytes: 4096, gemmCalls: 0 },
      { kernel: 'gemm', workspaceBytes: 12345, gemmCalls: 0 },
    ]);
    expect(out[4]).toMatch(/kernel must be 'auto', 'tiled' or 'gemm'/);
    expect(out[5]).toMatch(/workspaceBytes must be an integer >= 1/);
    expect(out[6]).toMatch(/workspaceBytes must be an integer >= 1/);
    expect(out[7]).toMatch(/kernel must be/);
    expect(out[8]).toEqual({ kernel: 'gemm', workspaceBytes: 12345, gemmCalls: 0 }); // a refused call changes nothing
  });

  it.skipIf(!built)('VWLMM_CUDA_ATTENTION sets the starting kernel; another value is an error that names the choices', () => {
    const run = (value: string) => runSnippet(
      `const v=require('./src');v.backendInfo();console.log(JSON.stringify(require(${JSON.stringify(addon)}).attentionSettings()))`,
      { VWLMM_CUDA_ATTENTION: value });
    const ok = run('gemm');
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout.trim().split('\n').pop()!).kernel).toBe('gemm');
    const bad = run('flash');
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/VWLMM_CUDA_ATTENTION must be 'tiled' or 'gemm'.*got 'flash'/);
  });
});
