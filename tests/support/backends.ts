// The backends every kernel case runs on: CPU float32 always; CUDA float32 and bfloat16 when a GPU is
// present (otherwise those cases are reported as skipped, never as passed).
import * as fs from 'fs';
import * as path from 'path';
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

/**
 * The op table as native/core/ops.def writes it: its VW_OP rows, and the ops its header says take bfloat16
 * ("Both backends take bf16 in matmul, cast, ..., rms_norm and the fused ops"): a name there covers the op of
 * that name and its _forward / _backward pair; "the fused ops" are those documented below its "fused" rule.
 * Read from the text, so a row or a bf16 op added there is seen by the tests that must cover it.
 */
export function opsDef(): { ops: string[]; bf16: string[]; arity: Record<string, OpArity>; text: string } {
  const text = fs.readFileSync(path.join(__dirname, '..', '..', 'native', 'core', 'ops.def'), 'utf8');
  const rows = [...text.matchAll(/^VW_OP\((\w+), (-?\d+), (-?\d+), (-?\d+), (-?\d+)\)\s*$/gm)];
  const ops = rows.map((m) => m[1]);
  const arity = Object.fromEntries(rows.map((m) => [m[1], { inputs: +m[2], outputs: +m[3], ints: +m[4], floats: +m[5] }]));
  const comment = text.split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(2)).join(' ').replace(/\s+/g, ' ');
  const said = /Both backends take bf16 in (.+?) \(/.exec(comment);
  if (!said) throw new Error('ops.def: no "Both backends take bf16 in ..." sentence');
  const fusedAt = text.indexOf('---- fused');
  const fused = fusedAt < 0 ? [] : [...text.slice(fusedAt).matchAll(/^\/\/ (\w+) /gm)].map((m) => m[1]).filter((n) => ops.includes(n));
  const bf16 = said[1].split(/, | and /).flatMap((name) => {
    const covered = name === 'the fused ops' ? fused : ops.filter((op) => op === name || op === `${name}_forward` || op === `${name}_backward`);
    if (covered.length === 0) throw new Error(`ops.def: "${name}" takes bf16 but names no op of the table`);
    return covered;
  });
  return { ops, bf16, arity, text };
}

/** A row's most inputs, outputs, integer and float parameters (-1: a list the op's count parameter sizes). */
export interface OpArity {
  inputs: number;
  outputs: number;
  ints: number;
  floats: number;
}
