// Raw access to the op table (native/core/ops.def): buffers in, buffers out, integer and float parameters,
// through the one binding. The differentiable layer (src/functional.ts, `F`) and the typed fused-op
// wrappers (src/fused.ts, `fused`) are written on top of callOp; this is the one place that talks to it.
import { typeError } from './errors';
import { Addon, addonFor, cpu, NativeBuffer, OpStats } from './native';
import { Device, DType, Tensor } from './tensor';

export type { OpStats };

/**
 * Runs op `op` on `device`. Inputs and outputs may contain null for absent optional buffers (their dtype is
 * then sent as float32). All tensors must live on `device`. Returns the op's stats (the fused ops) or null.
 */
export function callOp(op: string, device: Device, inputs: (Tensor | null)[], outputs: (Tensor | null)[], ints: number[] = [], floats: number[] = []): OpStats | null {
  if (typeof op !== 'string') throw typeError('callOp', 'op', 'an op name (a string)', op);
  if (device !== 'cpu' && device !== 'cuda') throw typeError(`callOp [${op}]`, 'device', "'cpu' or 'cuda'", device);
  if (!Array.isArray(inputs)) throw typeError(`callOp [${op}]`, 'inputs', 'an array of Tensors (null for an absent optional input)', inputs);
  if (!Array.isArray(outputs)) throw typeError(`callOp [${op}]`, 'outputs', 'an array of Tensors (null for an absent optional output)', outputs);
  if (!Array.isArray(ints)) throw typeError(`callOp [${op}]`, 'ints', 'an array of integers', ints);
  if (!Array.isArray(floats)) throw typeError(`callOp [${op}]`, 'floats', 'an array of numbers', floats);
  // one pass per list: each tensor checked and its buffer and dtype taken (the binding checks the buffers again);
  // no strings are built unless a check fails (a step makes hundreds of calls)
  const inBufs = buffersOf(op, device, inputs, 'inputs'), outBufs = buffersOf(op, device, outputs, 'outputs');
  const inDtypes = dtypesOf(inputs), outDtypes = dtypesOf(outputs);
  const addon = addonFor(device, op);
  if (profile === null) return addon.callOp(op, inBufs, inDtypes, outBufs, outDtypes, ints, floats);
  const t0 = process.hrtime.bigint();
  try {
    return addon.callOp(op, inBufs, inDtypes, outBufs, outDtypes, ints, floats);
  } finally {
    const shapes = inputs.slice(0, 6).map((t) => (t ? `${t.dtype === 'float32' ? 'f32' : t.dtype === 'bfloat16' ? 'bf16' : t.dtype}[${t.shape.join(',')}]` : '-'));
    const more = inputs.length > 6 ? ` +${inputs.length - 6} inputs` : '';
    const key = `${device} ${op} ${shapes.join(' ')}${more}${ints.length > 0 && ints.length <= 8 ? ` (${ints.join(',')})` : ''}`;
    const e = profile.get(key) ?? { calls: 0, ns: 0n };
    e.calls++;
    e.ns += process.hrtime.bigint() - t0;
    profile.set(key, e);
  }
}

/** The buffers of a list of tensors (null stays null), each checked: a Tensor, on `device`, not freed. */
function buffersOf(op: string, device: Device, ts: (Tensor | null)[], list: string): (NativeBuffer | null)[] {
  const bufs = new Array<NativeBuffer | null>(ts.length);
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    if (t === null || t === undefined) {
      bufs[i] = null;
      continue;
    }
    if (!(t instanceof Tensor)) throw typeError(`callOp [${op}]`, `${list}[${i}]`, 'a Tensor', t);
    if (t.device !== device) throw new TypeError(`[${op}] a tensor is on ${t.device} but the op runs on ${device}`);
    const buf = t.bufferFor();
    if (buf === null) throw new TypeError(`callOp [${op}]: ${list}[${i}] ${t.whyFreed()}`);
    bufs[i] = buf;
  }
  return bufs;
}

/** The dtypes of a list of tensors; an absent optional one is sent as float32. */
function dtypesOf(ts: (Tensor | null)[]): DType[] {
  const dtypes = new Array<DType>(ts.length);
  for (let i = 0; i < ts.length; i++) dtypes[i] = ts[i] ? (ts[i] as Tensor).dtype : 'float32';
  return dtypes;
}

// The op profile: host wall time per op call, keyed by device, op and input dtypes and shapes. In CUDA's sync
// mode (setAsync('cuda', false), VWLMM_CUDA_ASYNC=0) each op waits for its kernels, so it is the op's GPU time
// plus its launch and wait overhead; in async mode (CUDA's default) it is the launch cost alone. Off unless asked for (one Map lookup per op when on).
let profile: Map<string, { calls: number; ns: bigint }> | null = null;

export interface OpProfileEntry {
  /** `<device> <op> <dtype[shape]> ...` of the inputs ('-' for an absent optional input). */
  key: string;
  calls: number;
  /** Total host wall time of those calls, in milliseconds. */
  ms: number;
}

/** Starts (true: from zero) or stops (false) recording the op profile; returns the entries recorded so far. */
export function profileOps(on: boolean): OpProfileEntry[] {
  if (typeof on !== 'boolean') throw typeError('profileOps', 'on', 'a boolean', on);
  const entries = opProfile();
  profile = on ? new Map() : null;
  return entries;
}

/** The op profile recorded since profileOps(true), the most time first (empty when it is off). */
export function opProfile(): OpProfileEntry[] {
  if (profile === null) return [];
  return [...profile].map(([key, e]) => ({ key, calls: e.calls, ms: Number(e.ns) / 1e6 })).sort((a, b) => b.ms - a.ms);
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
