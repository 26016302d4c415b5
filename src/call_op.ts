// Raw access to the op table (native/core/ops.def): buffers in, buffers out, integer and float parameters,
// through the one binding. The differentiable layer (src/functional.ts, `F`) and the typed fused-op
// wrappers (src/fused.ts, `fused`) are written on top of callOp; this is the one place that talks to it.
import { typeError } from './errors';
import { Addon, addonFor, cpu, OpStats } from './native';
import { Device, DType, Tensor } from './tensor';

export type { OpStats };

/**
 * Runs op `op` on `device`. Inputs and outputs may contain null for absent optional buffers (their dtype is
 * then sent as float32). All tensors must live on `device`. Returns the op's stats (the fused ops) or null.
 */
export function callOp(op: string, device: Device, inputs: (Tensor | null)[], outputs: (Tensor | null)[], ints: number[] = [], floats: number[] = []): OpStats | null {
  if (typeof op !== 'string') throw typeError('callOp', 'op', 'an op name (a string)', op);
  const where = `callOp [${op}]`;
  if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
  if (!Array.isArray(inputs)) throw typeError(where, 'inputs', 'an array of Tensors (null for an absent optional input)', inputs);
  if (!Array.isArray(outputs)) throw typeError(where, 'outputs', 'an array of Tensors (null for an absent optional output)', outputs);
  if (!Array.isArray(ints)) throw typeError(where, 'ints', 'an array of integers', ints);
  if (!Array.isArray(floats)) throw typeError(where, 'floats', 'an array of numbers', floats);
  const checkTensor = (t: unknown, name: string) => {
    if (!(t instanceof Tensor)) throw typeError(where, name, 'a Tensor', t);
    if (t.disposed) throw new TypeError(`${where}: ${name} has been disposed`);
    if (t.device !== device) throw new TypeError(`[${op}] a tensor is on ${t.device} but the op runs on ${device}`);
  };
  inputs.forEach((t, i) => t !== null && t !== undefined && checkTensor(t, `inputs[${i}]`));
  outputs.forEach((t, i) => t !== null && t !== undefined && checkTensor(t, `outputs[${i}]`));
  return addonFor(device, op).callOp(
    op,
    inputs.map((t) => (t ? t.buffer : null)),
    inputs.map((t) => (t ? t.dtype : 'float32')),
    outputs.map((t) => (t ? t.buffer : null)),
    outputs.map((t) => (t ? t.dtype : 'float32')),
    ints,
    floats,
  );
}

/** Names of the ops (native/core/ops.def), in table order; every backend implements all of them. */
export function opNames(device: Device = 'cpu'): string[] {
  return addonFor(device, 'opNames').opNames();
}

type OpConstants = ReturnType<Addon['opConstants']>;
let constants: OpConstants | null = null;
/** The enums ops take as integers (activation kinds, reductions), as the native table defines them. */
export function opConstants(): OpConstants {
  return (constants ??= cpu().opConstants());
}

export type { DType };
