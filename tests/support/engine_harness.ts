// Calling engine ops on the CPU from the tests: tensors from plain arrays and a one-line runner that
// returns the outputs as host arrays. Call inside scope(() => ...) so the tensors are freed.
import { afterAll, expect } from 'vitest';
import { Tensor } from '../../src';
import { callOp } from '../../src/call_op';

/** A float32 CPU tensor holding `a` (rounded to float32). */
export function f32(a: ArrayLike<number>, shape: number[] = [a.length]): Tensor {
  return Tensor.fromArray(Float32Array.from(a), shape);
}

export function i32(a: ArrayLike<number>): Tensor {
  return Tensor.fromArray(Int32Array.from(a), [a.length]);
}

/** An uninitialised float32 CPU tensor of n elements (for outputs the op overwrites). */
export function out(n: number): Tensor {
  return Tensor.empty([n]);
}

/** An output tensor pre-filled with `value` (NaN by default): an op that must overwrite it cannot hide. */
export function poisoned(n: number, value = NaN): Tensor {
  return Tensor.fromArray(new Float32Array(n).fill(value), [n]);
}

/** Runs `op` on the CPU and returns its outputs as Float32Arrays. */
export function run(op: string, inputs: (Tensor | null)[], outputs: Tensor[], ints: number[] = [], floats: number[] = []): Float32Array[] {
  callOp(op, 'cpu', inputs, outputs, ints, floats);
  return outputs.map((t) => t.toArray() as Float32Array);
}

/** Bitwise equality of two float arrays (NaN equal to NaN of the same bits). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length), y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

// Worst error seen per label, printed at the end of a file when VWLMM_ERR_REPORT is set.
const worst = new Map<string, number>();

/** expect(err) <= tol (a failure names label and detail), and remember the worst err per label for the report. */
export function expectErr(label: string, err: number, tol: number, detail?: string): void {
  worst.set(label, Math.max(worst.get(label) ?? 0, err));
  expect(err, `${label}${detail ? `: ${detail}` : ''}`).toBeLessThanOrEqual(tol);
}

afterAll(() => {
  if (!process.env.VWLMM_ERR_REPORT) return;
  const rows = [...worst].map(([k, v]) => `  ${k.padEnd(40)} ${v.toExponential(2)}`);
  console.log(`worst errors:\n${rows.join('\n')}`);
  worst.clear();
});
