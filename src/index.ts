/// <reference types="node" preserve="true" />
// vwlmm public API.
import { BackendMemoryStats, cpu, cuda, cudaUnavailableReason, tryCuda } from './native';
import type { Device } from './tensor';
import { typeError } from './errors';
export type { BackendMemoryStats } from './native';

export { Tensor, scope, keep } from './tensor';
export type { DType, Device, TensorOptions, GradNode } from './tensor';
export { parseDevice, useDevice } from './device';
export type { DeviceSpec } from './device';
// The engine in three layers, one name each: `callOp` runs a row of the op table (native/core/ops.def);
// `fused` wraps the fused vocabulary ops with typed results; `F` is the differentiable layer (autograd),
// as torch.nn.functional is PyTorch's.
export { callOp, opNames, opConstants, opProfile, profileOps } from './call_op';
export type { OpProfileEntry, OpStats } from './call_op';
/** What opConstants() returns (call_op.ts keeps the type to itself: named here from the function). */
export type OpConstants = ReturnType<typeof import('./call_op').opConstants>;
export { OpProgram } from './program';
export type { OpProgramInfo, RecordOptions } from './program';
export type { NativeProgramInfo } from './native';
export { fused, DEFAULT_WORKSPACE_BUDGET } from './fused';
export * as F from './functional';
export { backward, gradientCheckpoint, noGrad, isGradEnabled, zeroGrad, clearTape, tapeLength, onGradReady } from './autograd';
export { autocast, computeDtype, defaultComputeDtype, parseComputeDtype } from './amp';
export type { ComputeDtype } from './amp';
export { AdamW, clipGradNorm, gradNorm } from './optim';
export type { AdamWOptions, ParamGroup } from './optim';
export { Generator } from './random';
export * as nn from './nn';
export type {
  Reduction, ChunkOptions, LinearCrossEntropyOptions, LinearCrossEntropyResult, VisualWordKLOptions,
  VisualWordKLResult, VisualWordsOptions,
} from './fused';

// The library above the engine: one public module per area (also the package's subpaths 'vwlmm/model',
// 'vwlmm/data', ...). `export *` compiles to __exportStar(require(...)), which Node's CommonJS named-export
// detection follows, so `import { VwLmm } from 'vwlmm'` works from ES modules too.
export * from './model';
export * from './data';
export * from './train';
export * from './eval';
export * from './demo';
export * from './distributed';
// Names two areas both export, resolved here: the CLIP constants (one frozen pair, data/images.ts's, which the model
// re-exports) and the template name (one type: the model's re-exports the conversation module's; the latter is also
// exported as ConversationTemplateName, a name kept for code written when the two differed).
export { CLIP_MEAN, CLIP_STD } from './model';
export type { TemplateName } from './model';
export type { TemplateName as ConversationTemplateName } from './data';

export interface BackendInfo {
  cpu: {
    device: 'cpu'; gemm: string; threads: number; simd: string; napiVersion: number;
    /**
     * The MPI backend of process groups, libvwlmm_mpi.so beside the CPU addon: there (`built`), loading with the MPI
     * it was linked against (`available`: that MPI's `version` and the `mpiLibrary` file), or the `reason` it does not.
     */
    mpi: { library: string; built: boolean; available: boolean; version?: string; mpiLibrary?: string; reason?: string };
  };
  cuda: { available: boolean; reason: string | null; [key: string]: unknown };
}

/** What the native core runs on: the CPU GEMM in use (OpenBLAS or built-in) and CUDA availability. */
export function backendInfo(): BackendInfo {
  const c = cpu().backendInfo() as BackendInfo['cpu'];
  const cudaAddon = tryCuda();
  const cuda = cudaAddon
    ? { ...(cudaAddon.backendInfo() as Record<string, unknown>), available: true, reason: null }
    : { available: false, reason: cudaUnavailableReason() };
  return { cpu: c, cuda };
}

/**
 * Per backend: live tensors (buffers, bytes; for leak checks) and the caching allocator's reserved, cached and
 * peak bytes and system allocations (a steady-state training step makes none). cuda is null until CUDA is used.
 */
export function memoryStats(): { cpu: BackendMemoryStats; cuda: BackendMemoryStats | null } {
  const cudaAddon = tryCuda();
  return { cpu: cpu().memoryStats(), cuda: cudaAddon ? cudaAddon.memoryStats() : null };
}

/**
 * How many times the host has waited for a backend so far: each read of a tensor's data (toArray, item) and,
 * on CUDA, each stream synchronisation inside an op. A Trainer step waits once (for what it logs); the
 * difference of two calls counts the waits in between. 0 for CUDA until CUDA is used.
 */
export function hostSyncs(device: Device = 'cpu'): number {
  if (device === 'cuda') return tryCuda()?.hostSyncs() ?? 0;
  if (device !== 'cpu') throw typeError('hostSyncs', 'device', "'cpu' or 'cuda'", device);
  return cpu().hostSyncs();
}

function addonOf(where: string, device: Device) {
  if (device === 'cuda') return cuda(where);
  if (device !== 'cpu') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
  return cpu();
}

/**
 * Waits for the device's enqueued work (torch.cuda.synchronize) and raises the first data check that failed
 * since the last synchronisation: an id, key-mask value or target out of range, with the op that found it.
 */
export function synchronize(device: Device = 'cpu'): void {
  addonOf('synchronize', device).synchronize();
}

/**
 * Async mode, per device (native/core/error_flags.h). On (CUDA's default): no op waits, and a failed check is
 * raised at the next synchronisation (a read of a tensor, synchronize()), naming the op that found it; what was
 * computed since is undefined, as after a PyTorch device-side assert. Off (the CPU's default; VWLMM_CUDA_ASYNC=0
 * starts CUDA so, as CUDA_LAUNCH_BLOCKING=1 does for PyTorch): every op raises its own data checks; on CUDA the
 * host waits after each op. The CPU runs its ops as they are called either way; its async mode defers only the
 * raise, so CI checks the path a GPU takes. Returns the previous mode.
 */
export function setAsync(device: Device, on: boolean): boolean {
  if (typeof on !== 'boolean') throw typeError('setAsync', 'on', 'a boolean', on);
  return addonOf('setAsync', device).setAsync(on);
}
export function isAsync(device: Device = 'cpu'): boolean {
  return addonOf('isAsync', device).isAsync();
}

/**
 * Which kernels run attention on CUDA, as torch.backends.cuda picks an SDPA backend:
 * - 'tiled': flash-style fused kernels on CUDA cores (native/cuda/engine/attention.cu);
 * - 'gemm': cuBLAS batched GEMMs on tensor cores with a softmax row pass between them, over chunks of query rows
 *   whose scores fit `workspaceBytes` (at least 16 rows; never the whole T x T). float32 (true fp32), and bf16 with
 *   a head size that is a multiple of 8 (cuBLAS's pointer alignment); other bf16 head sizes run 'tiled';
 * - 'auto' (the default): 'tiled' until 'gemm' has passed the backend parity table on a GPU.
 * VWLMM_CUDA_ATTENTION=tiled|gemm sets the starting kernel. The CPU has one attention kernel.
 */
export type AttentionKernel = 'auto' | 'tiled' | 'gemm';
export interface CudaAttentionSettings {
  kernel: AttentionKernel;
  workspaceBytes: number;
}
/** The settings, and how many attention calls (forward or backward) the gemm kernel has run in this process. */
export interface CudaAttentionState extends CudaAttentionSettings {
  gemmCalls: number;
}
const ATTENTION_KERNELS: readonly string[] = ['auto', 'tiled', 'gemm'];

/** Changes the CUDA attention settings given (see AttentionKernel); returns the previous ones (and the gemm kernel's call count). Needs CUDA. */
export function setCudaAttention(settings: Partial<CudaAttentionSettings>): CudaAttentionState {
  const where = 'setCudaAttention';
  if (typeof settings !== 'object' || settings === null) throw typeError(where, 'settings', 'an object', settings);
  const { kernel, workspaceBytes } = settings;
  if (kernel !== undefined && !ATTENTION_KERNELS.includes(kernel as string))
    throw typeError(where, 'kernel', "'auto', 'tiled' or 'gemm'", kernel);
  if (workspaceBytes !== undefined && !(Number.isSafeInteger(workspaceBytes) && workspaceBytes >= 1))
    throw typeError(where, 'workspaceBytes', 'an integer >= 1', workspaceBytes);
  return cuda(where).attentionSettings!(kernel, workspaceBytes) as CudaAttentionState;
}
/** The CUDA attention settings now; null without CUDA. */
export function cudaAttention(): CudaAttentionState | null {
  return (tryCuda()?.attentionSettings!() as CudaAttentionState | undefined) ?? null;
}

/**
 * Host memory of disposed tensors is kept in size-class free lists for reuse (up to 1 GiB): the bytes held
 * there now, and a call that returns them to the system (like torch.cuda.empty_cache).
 */
export function cachedHostBytes(): number {
  return cpu().memoryStats().cachedBytes;
}
export function releaseHostCache(): number {
  return cpu().releaseCache();
}
/** The CUDA caching allocator's cached blocks back to the driver (torch.cuda.empty_cache()); 0 without CUDA. */
export function releaseCudaCache(): number {
  return tryCuda()?.releaseCache() ?? 0;
}

export function cudaAvailable(): boolean {
  return tryCuda() !== null;
}
