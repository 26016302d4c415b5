// Loading of the native addons. The CPU addon (vwlmm.node) is required: it is found by node-gyp-build
// in build/Release or prebuilds/<platform>-<arch>/. The CUDA addon (vwlmm_cuda.node) is optional and
// loaded lazily on first use of the 'cuda' device; why it is unavailable is kept and reported.
import * as fs from 'fs';
import * as path from 'path';
import { rankThreads } from './distributed/env';

/** A block of backend memory owned by JS (native/napi/buffer.h). */
export interface NativeBuffer {
  readonly bytes: number;
  readonly disposed: boolean;
  readonly device: 'cpu' | 'cuda';
  dispose(): void;
  write(src: ArrayBufferView, byteOffset?: number): void;
  read(dst: ArrayBufferView, byteOffset?: number): void;
}

/** What a fused op reports besides its outputs (native OpStats). */
export interface OpStats {
  loss: number;
  rows: number;
  chunkRows: number;
  groupRows: number;
  /** Scratch the op actually allocated, which the workspaceBudget bounded. */
  workspaceBytes: number;
}

export interface Addon {
  /** new NativeBuffer(bytes, zero = false) */
  NativeBuffer: new (bytes: number, zero?: boolean) => NativeBuffer;
  /** Runs a row of native/core/ops.def (see src/call_op.ts). */
  callOp(op: string, inputs: (NativeBuffer | null)[], inDtypes: string[], outputs: (NativeBuffer | null)[], outDtypes: string[], ints: number[], floats: number[]): OpStats | null;
  /** The op table's names, in table order. */
  opNames(): string[];
  /** The enums ops take as integers, defined once natively (native/core/activation.h, fused_args.h). */
  opConstants(): { activation: Record<string, number>; reduction: Record<string, number> };
  /** plan_chunks (native/core/fused_args.h): how the CUDA fused losses split their rows; for tests. */
  chunkPlan(requested: number, n: number, V: number, f32Blocks: number, bf16Blocks: number, budget: number): { logitRows: number; groupRows: number };
  memoryStats(): BackendMemoryStats;
  /** The caching allocator's cached blocks back to the system; returns the bytes. */
  releaseCache(): number;
  /** How many times the host has waited for this backend (native/core/host_sync.h). */
  hostSyncs(): number;
  /** Waits for the backend's work; raises the first failed asynchronous check (native/core/error_flags.h). */
  synchronize(): void;
  /** Async mode on or off; returns the previous mode. */
  setAsync(on: boolean): boolean;
  isAsync(): boolean;
  backendInfo(): Record<string, unknown>;
  /** The process group's collectives (native/napi/dist_napi.h; src/distributed/process_group.ts). */
  distInit(backend: string, options: Record<string, unknown>): DistGroupInfo;
  distInfo(): DistGroupInfo | null;
  distStart(collective: string, input: NativeBuffer, output: NativeBuffer, dtype: string, count: number, op: string, root: number): number;
  distTest(handle: number): boolean;
  distWait(handle: number, timeoutMs: number, waitedMs?: number): void;
  distDestroy(timeoutMs: number): void;
  /** Op programs (native/napi/program.h; src/program.ts): record a sequence of op calls, replay it natively. */
  programBegin(inputs: ArrayBufferView[], poolOf?: ProgramHandle, graph?: boolean): void;
  programEnd(): ProgramHandle;
  programAbort(): boolean;
  programReplay(program: ProgramHandle, inputs: ArrayBufferView[]): void;
  programCompare(a: ProgramHandle, b: ProgramHandle): string | null;
  programInfo(program: ProgramHandle): NativeProgramInfo;
  programDispose(program: ProgramHandle): void;
  /** Tests: host graphs on a backend without graphs of its own (the CPU), so CI runs the graph logic; the old value. */
  programHostGraphs(on: boolean, failLaunches?: number): boolean;
  /** CUDA addon only: makes GPU `index` this process's device (src/device.ts). */
  selectDevice?(index: number): void;
  /** CUDA addon only: the attention kernels' settings, changed where given; returns the previous ones (src/index.ts). */
  attentionSettings?(kernel?: string, workspaceBytes?: number): { kernel: string; workspaceBytes: number; gemmCalls: number };
  sgemm?(ta: boolean, tb: boolean, M: number, N: number, K: number, A: NativeBuffer, B: NativeBuffer, C: NativeBuffer, opts?: { builtin?: boolean; alpha?: number; beta?: number; lda?: number; ldb?: number; ldc?: number }): void;
}

/** A recorded op program (a napi External; opaque to JS). */
export type ProgramHandle = { readonly __opProgram: unique symbol };

/** What an op program holds (native/napi/program.cc programInfo). */
export interface NativeProgramInfo {
  ops: number;
  uploads: number;
  zeros: number;
  /** Bytes uploaded from data that is not an input, kept by the program. */
  constantBytes: number;
  /** Per input, its size in bytes. */
  inputBytes: number[];
  /** Buffers made before the recording that the program uses. */
  externals: number;
  /** The memory of the program's own buffers (its pool's, shared with the programs recorded into it). */
  poolBytes: number;
  /** The most its own buffers held at once while it was recorded: its step's temporaries. */
  stepBytes: number;
  opNames: string[];
  /**
   * The backend's graph of a replay (CUDA graphs; program.cc "Graphs"): null where there are none (the CPU) or none is
   * wanted; else whether one was captured (at the first replay that could), its nodes, its launches, and why there is
   * none (null: captured, or not tried yet).
   */
  graph: { captured: boolean; nodes: number; launches: number; reason: string | null } | null;
}

/** What a backend reports of its process group. */
export interface DistGroupInfo {
  backend: string;
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  library: string;
}

/** One backend's memory: live tensors, and what its caching allocator (native/core/block_cache.h) holds. */
export interface BackendMemoryStats {
  liveBuffers: number;
  /** Bytes of live tensors (as requested). */
  liveBytes: number;
  /** Held from the system: live blocks (at their size class) plus cached ones. */
  reservedBytes: number;
  /** Free blocks kept for reuse. */
  cachedBytes: number;
  peakReservedBytes: number;
  /** Allocations the cache could not serve (each one a system allocation: a cudaMalloc on CUDA). */
  systemAllocs: number;
  cacheHits: number;
  /** Cached blocks handed back to the system, least recently freed first, to keep the cache under its cap. */
  evictions: number;
}

export const packageRoot = path.join(__dirname, '..');

let cpuAddon: Addon | null = null;

export function cpu(): Addon {
  if (cpuAddon) return cpuAddon;
  // OpenBLAS worker threads spin for ~2^28 cycles after each GEMM by default, stealing the cores from the
  // element-wise kernels that run between GEMMs (measured: those ran 2x slower). 2^4 cycles makes them
  // sleep at once; read by OpenBLAS when the addon loads, so set before. A user's own value wins.
  if (process.env.OPENBLAS_THREAD_TIMEOUT === undefined) process.env.OPENBLAS_THREAD_TIMEOUT = '4';
  // VWLMM_GEMM picks the CPU GEMM of a build that has OpenBLAS (read natively at the first GEMM; native/cpu/gemm.cpp).
  const gemm = process.env.VWLMM_GEMM;
  if (gemm !== undefined && gemm !== '' && gemm !== 'openblas' && gemm !== 'builtin')
    throw new RangeError(`vwlmm: VWLMM_GEMM must be 'openblas' or 'builtin' (or unset: the built-in GEMM on a CPU with AVX-512F, else OpenBLAS where the build has it, unless its kernels for this CPU lack AVX2+FMA), got '${gemm}'`);
  // VWLMM_SIMD caps the CPU kernels' instruction set (read natively at the first op; native/cpu/isa.h, vec.cpp).
  const simd = process.env.VWLMM_SIMD;
  if (simd !== undefined && simd !== '' && simd !== 'generic' && simd !== 'avx2')
    throw new RangeError(`vwlmm: VWLMM_SIMD must be 'generic' (the portable kernels) or 'avx2' (no AVX-512), or unset (the best this CPU has), got '${simd}'`);
  // VWLMM_SPIN_US: how long the CPU thread pool spins between jobs before sleeping (read natively at the first op).
  const spin = process.env.VWLMM_SPIN_US;
  if (spin !== undefined && spin !== '' && !/^\d{1,7}$/.test(spin))
    throw new RangeError(`vwlmm: VWLMM_SPIN_US must be a whole number of microseconds (0 = sleep at once; unset: 500), got '${spin}'`);
  // VWLMM_NUM_THREADS: the CPU thread pool's size (read natively at the first op; there, anything else meant "all cores").
  const threads = process.env.VWLMM_NUM_THREADS;
  if (threads !== undefined && threads !== '' && !(/^\d{1,4}$/.test(threads) && Number(threads) >= 1 && Number(threads) <= 1024))
    throw new RangeError(`vwlmm: VWLMM_NUM_THREADS must be a whole number of threads in [1, 1024] (unset: one per CPU this process may run on), got '${threads}'`);
  // one of several ranks on this machine: its share of the CPUs (set before the pool exists; distributed/env.ts)
  const shared = threads === undefined || threads === '' ? rankThreads() : null;
  if (shared !== null) process.env.VWLMM_NUM_THREADS = String(shared);
  try {
    // VWLMM_ADDON points at a specific vwlmm.node (e.g. a second build directory); else build/ or prebuilds/.
    const explicit = process.env.VWLMM_ADDON;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => Addon;
    const loaded = explicit ? (require(explicit) as Addon) : load(packageRoot);
    // require() also loads a .js or .json file: VWLMM_ADDON pointing at one gave "backendInfo is not a function" later
    if (typeof loaded?.backendInfo !== 'function' || typeof loaded?.NativeBuffer !== 'function')
      throw new Error(`${explicit ?? packageRoot} is not the vwlmm addon (no backendInfo / NativeBuffer: a vwlmm.node is needed${explicit ? '; check VWLMM_ADDON' : ''})`);
    cpuAddon = loaded;
  } catch (e) {
    // a git checkout builds with its own script; an installed package, by running its install script again
    const checkout = fs.existsSync(path.join(packageRoot, '.git'));
    const why = (e as Error).message.trim().split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
    throw new Error(
      `vwlmm: the native CPU addon could not be loaded: ${why}\n` +
        `Build it with \`${checkout ? 'npm run build:native' : 'npm rebuild vwlmm'}\` (a source build needs cmake >= 3.18 and a C++17 compiler; ` +
        'apt install libopenblas-dev for a fast GEMM)',
    );
  }
  return cpuAddon;
}

let cudaAddon: Addon | null = null;
let cudaReason: string | null = null;

function cudaCandidates(): string[] {
  const env = process.env.VWLMM_CUDA_ADDON;
  const list = [
    path.join(packageRoot, 'build', 'Release', 'cuda', 'vwlmm_cuda.node'),
    path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'cuda', 'vwlmm_cuda.node'),
  ];
  return env ? [env, ...list] : list;
}

/** What to do when the dynamic loader could not find a library of the CUDA addon's chain (cuBLAS, most often). */
function missingLibraryHint(message: string): string {
  const lib = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec(message)?.[1];
  if (!lib) return '';
  const what = /^libcublas(Lt)?\.so/.test(lib)
    ? 'cuBLAS is missing or incomplete: the CUDA addon needs libcublas and libcublasLt of one CUDA major, ' +
      'from the CUDA toolkit or the whole lib/ folder of the nvidia-cublas wheel'
    : `the CUDA addon needs ${lib}`;
  return ` (${what}; put the folder holding ${lib} on LD_LIBRARY_PATH or in the loader's configuration)`;
}

/** The CUDA addon, or null with the reason in cudaUnavailableReason(). Tried once per process. */
export function tryCuda(): Addon | null {
  if (cudaAddon || cudaReason) return cudaAddon;
  // VWLMM_CUDA_ATTENTION picks the starting attention kernel (read natively when the addon loads).
  const attention = process.env.VWLMM_CUDA_ATTENTION;
  if (attention !== undefined && attention !== '' && attention !== 'tiled' && attention !== 'gemm')
    throw new RangeError(`vwlmm: VWLMM_CUDA_ATTENTION must be 'tiled' or 'gemm' (or unset: 'auto'), got '${attention}'`);
  if (process.env.VWLMM_DISABLE_CUDA) {
    cudaReason = 'disabled by VWLMM_DISABLE_CUDA';
    return null;
  }
  const file = cudaCandidates().find((f) => fs.existsSync(f));
  if (!file) {
    // the source build says why it built none (native/cuda/cuda.cmake); a prebuilt package carries no such note
    let why = '';
    try {
      why = fs.readFileSync(path.join(packageRoot, 'build', 'Release', 'cuda', 'NOT_BUILT.txt'), 'utf8').trim();
    } catch {
      /* no source build, or one older than the note */
    }
    cudaReason = `the CUDA addon was not built (${why || 'no source build here said why: a build needs nvcc and cuBLAS (VWLMM_BUILD_FROM_SOURCE=1 npm rebuild vwlmm)'}); looked in ${cudaCandidates().join(', ')}`;
    return null;
  }
  let addon: Addon;
  try {
    addon = require(file) as Addon;
  } catch (e) {
    cudaReason = `loading ${file} failed: ${(e as Error).message}${missingLibraryHint((e as Error).message)}`;
    return null;
  }
  const info = addon.backendInfo() as { available?: boolean; reason?: string };
  if (!info.available) {
    cudaReason = `no usable CUDA device: ${info.reason ?? 'unknown'}`;
    return null;
  }
  cudaAddon = addon;
  return addon;
}

export function cudaUnavailableReason(): string | null {
  tryCuda();
  return cudaReason;
}

export function cuda(where: string): Addon {
  const a = tryCuda();
  if (!a) throw new Error(`${where}: CUDA is unavailable: ${cudaReason}`);
  return a;
}

export function addonFor(device: 'cpu' | 'cuda', where: string): Addon {
  return device === 'cpu' ? cpu() : cuda(where);
}
