// Raw access to the engine ops (native/core/engine_ops.def): buffers in, buffers out, integer and float
// parameters. Differentiable wrappers with shape checks live in src/ops.ts; this is the one place that
// talks to the binding.
import { typeError } from './errors';
import { addonFor } from './native';
import { Device, DType, Tensor } from './tensor';

export interface EngineAddon {
  engineCall(op: string, inputs: unknown[], inDtypes: string[], outputs: unknown[], outDtypes: string[], ints: number[], floats: number[]): void;
  engineOpNames(): string[];
}

/**
 * Runs engine op `op` on `device`. Inputs may contain null for absent optional inputs (their dtype is
 * then given by nullDtype). All tensors must live on `device`.
 */
export function callOp(op: string, device: Device, inputs: (Tensor | null)[], outputs: Tensor[], ints: number[] = [], floats: number[] = []): void {
  if (typeof op !== 'string') throw typeError('callOp', 'op', 'an engine op name (a string)', op);
  const where = `callOp [${op}]`;
  if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
  if (!Array.isArray(inputs)) throw typeError(where, 'inputs', 'an array of Tensors (null for an absent optional input)', inputs);
  if (!Array.isArray(outputs)) throw typeError(where, 'outputs', 'an array of Tensors', outputs);
  if (!Array.isArray(ints)) throw typeError(where, 'ints', 'an array of integers', ints);
  if (!Array.isArray(floats)) throw typeError(where, 'floats', 'an array of numbers', floats);
  const checkTensor = (t: unknown, name: string) => {
    if (!(t instanceof Tensor)) throw typeError(where, name, 'a Tensor', t);
    if (t.disposed) throw new TypeError(`${where}: ${name} has been disposed`);
    if (t.device !== device) throw new TypeError(`[${op}] a tensor is on ${t.device} but the op runs on ${device}`);
  };
  inputs.forEach((t, i) => t !== null && t !== undefined && checkTensor(t, `inputs[${i}]`));
  outputs.forEach((t, i) => checkTensor(t, `outputs[${i}]`));
  const addon = addonFor(device, op) as unknown as EngineAddon;
  addon.engineCall(
    op,
    inputs.map((t) => (t ? t.buffer : null)),
    inputs.map((t) => (t ? t.dtype : 'float32')),
    outputs.map((t) => t.buffer),
    outputs.map((t) => t.dtype),
    ints,
    floats,
  );
}

export function engineOpNames(device: Device = 'cpu'): string[] {
  return (addonFor(device, 'engineOpNames') as unknown as EngineAddon).engineOpNames();
}

export type { DType };
