// vwlmm public API.
import { cpu, cudaUnavailableReason, tryCuda } from './native';

export { Tensor, scope, keep } from './tensor';
export type { DType, Device, TensorOptions } from './tensor';
export { kernels } from './kernels';
export type {
  Reduction, ChunkOptions, LinearCrossEntropyOptions, LinearCrossEntropyResult, VisualWordKLOptions,
  VisualWordKLResult, VisualWordsOptions,
} from './kernels';

export interface BackendInfo {
  cpu: { device: 'cpu'; gemm: string; threads: number; simd: string; napiVersion: number };
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

/** Live native buffers and bytes per backend (for leak checks). */
export function memoryStats(): { cpu: { liveBuffers: number; liveBytes: number }; cuda: { liveBuffers: number; liveBytes: number } | null } {
  const cudaAddon = tryCuda();
  return { cpu: cpu().memoryStats(), cuda: cudaAddon ? cudaAddon.memoryStats() : null };
}

/** Names of the native ops (native/core/ops.def), the same on every backend. */
export function opNames(): string[] {
  return cpu().opNames();
}

export function cudaAvailable(): boolean {
  return tryCuda() !== null;
}
