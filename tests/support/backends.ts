// The backends every kernel case runs on: CPU float32 always; CUDA float32 and bfloat16 when a GPU is
// present (otherwise those cases are reported as skipped, never as passed).
import { expect } from 'vitest';
import { cudaAvailable, Tensor } from '../../src';
import type { Device, DType } from '../../src';
import { roundToBf16 } from '../../src/bf16';

export interface Backend {
  name: string;
  device: Device;
  dtype: DType;
  available: boolean;
  /** Normwise relative error allowed against the float64 reference. */
  tol: number;
}

const hasCuda = cudaAvailable();

export const backends: Backend[] = [
  { name: 'cpu-f32', device: 'cpu', dtype: 'float32', available: true, tol: 1e-5 },
  { name: 'cuda-f32', device: 'cuda', dtype: 'float32', available: hasCuda, tol: 1e-5 },
  { name: 'cuda-bf16', device: 'cuda', dtype: 'bfloat16', available: hasCuda, tol: 1e-2 },
];

/**
 * Inputs as the backend will see them: rounded to bf16 for bf16 backends, so the reference is computed
 * from exactly the values the kernel gets and the error measured is the kernel's own.
 */
export function asInput(b: Backend, a: Float32Array): Float32Array {
  return b.dtype === 'bfloat16' ? a.map(roundToBf16) : a;
}

export function tensor(b: Backend, a: Float32Array, shape: number[]): Tensor {
  return Tensor.fromArray(a, shape, { device: b.device, dtype: b.dtype });
}

export function ints(b: Backend, a: Int32Array): Tensor {
  return Tensor.fromArray(a, [a.length], { device: b.device });
}

/**
 * A fused loss run with a budget meant for gradient groups (native/core/fused_args.h plan_chunks): within the budget;
 * on CUDA in bf16, several groups of several logit chunks (of `requested` rows, whole ones, when given); elsewhere
 * one level (the gradient overwrites the logits).
 */
export function expectGroups(b: Backend, r: { chunkRows: number; groupRows: number; workspaceBytes: number }, rows: number, budget: number, requested?: number): void {
  expect(r.workspaceBytes).toBeLessThanOrEqual(budget);
  if (b.device === 'cuda' && b.dtype === 'bfloat16') {
    expect(r.groupRows).toBeGreaterThanOrEqual(2 * r.chunkRows);
    expect(r.groupRows).toBeLessThan(rows);
    if (requested) {
      expect(r.chunkRows).toBe(requested);
      expect(r.groupRows % requested).toBe(0);
    }
  } else {
    expect(r.groupRows).toBe(r.chunkRows);
  }
}
