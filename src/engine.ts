// Raw access to the engine ops (native/core/engine_ops.def): buffers in, buffers out, integer and float
// parameters. Differentiable wrappers with shape checks live in src/ops.ts; this is the one place that
// talks to the binding.
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
  for (const t of [...inputs, ...outputs]) {
    if (t && t.device !== device) throw new TypeError(`[${op}] a tensor is on ${t.device} but the op runs on ${device}`);
  }
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
