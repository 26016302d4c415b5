// kernels.*: the fused vocabulary kernels (native/core/ops.def). This layer validates every argument with
// a message that names it, picks the addon of the tensors' device, and wraps the outputs as Tensors.
// The math lives in native/cpu/<op>.cpp and native/cuda/<op>.cu; the float64 references in tests/reference.
import { rangeError, typeError } from './errors';
import { addonFor, NativeBuffer } from './native';
import { Device, DType, Tensor } from './tensor';

export type Reduction = 'mean' | 'sum' | 'none';

/** Options shared by every kernel: how the vocabulary-sized scratch is bounded. */
export interface ChunkOptions {
  /** Rows per chunk (0 or undefined: as many as fit in workspaceBytes). */
  chunkRows?: number;
  /**
   * Budget for the [chunkRows, V] float32 logit blocks: default 64 MiB on the CPU, 1 GiB on CUDA (there the
   * fp32 weight-gradient accumulation, one read and write of dW per chunk, costs more than the GEMMs below
   * ~2,000 rows per chunk; benchmarks/RESULTS.md).
   */
  workspaceBytes?: number;
}

export interface LinearCrossEntropyOptions extends ChunkOptions {
  ignoreIndex?: number;
  reduction?: Reduction;
  gradScale?: number;
  labelSmoothing?: number;
  zLossWeight?: number;
  /** Compute dh and dw (default true); false gives the loss only. */
  grad?: boolean;
}

export interface LinearCrossEntropyResult {
  /** 'mean': mean over non-ignored rows; 'sum' and 'none': the sum of the per-row losses. */
  loss: number;
  /** Per-row losses [N] (0 for ignored rows). This is the result of reduction 'none'. */
  losses: Float32Array;
  /** Number of non-ignored rows. */
  rows: number;
  dh: Tensor | null;
  dw: Tensor | null;
  chunkRows: number;
  workspaceBytes: number;
}

export interface VisualWordKLOptions extends ChunkOptions {
  reduction?: 'batchmean' | 'mean' | 'sum' | 'none';
  temperature?: number;
  gradScale?: number;
  detachTarget?: boolean;
  grad?: boolean;
}

export interface VisualWordKLResult {
  /** 'batchmean' / 'mean': sum of row KLs / M; 'sum' and 'none': the sum. */
  loss: number;
  /** KL of each row [M]. */
  losses: Float32Array;
  dh: Tensor | null;
  dwLm: Tensor | null;
  dx: Tensor | null;
  dwVm: Tensor | null;
  chunkRows: number;
  workspaceBytes: number;
}

export interface VisualWordsOptions extends ChunkOptions {
  topK?: number;
}

const isTensor = (t: unknown): t is Tensor => t instanceof Tensor;

function matrix(where: string, name: string, t: unknown, dims: string): [number, number] {
  if (!isTensor(t)) throw typeError(where, name, `a Tensor [${dims}]`, t);
  if (t.disposed) throw new TypeError(`${where}: ${name} has been disposed`);
  if (t.rank !== 2) throw rangeError(where, `expected ${name} to be 2-D [${dims}] but its shape is [${t.shape.join(', ')}]`);
  if (t.dtype !== 'float32' && t.dtype !== 'bfloat16') throw typeError(where, name, 'a float32 or bfloat16 tensor', t);
  return [t.shape[0], t.shape[1]];
}

function sameKind(where: string, ref: Tensor, refName: string, others: Record<string, Tensor>): { device: Device; dtype: DType } {
  for (const [name, t] of Object.entries(others)) {
    if (t.device !== ref.device)
      throw new TypeError(`${where}: ${name} is on ${t.device} but ${refName} is on ${ref.device}; move them to one device`);
    if (t.dtype !== ref.dtype) throw new TypeError(`${where}: ${name} is ${t.dtype} but ${refName} is ${ref.dtype}; use one dtype`);
  }
  return { device: ref.device, dtype: ref.dtype };
}

function equalDim(where: string, what: string, a: number, b: number): void {
  if (a !== b) throw rangeError(where, `${what} (${a} vs ${b})`);
}

/** Default workspaceBytes per device (the native side's own default, 64 MiB, is the CPU's). */
export const DEFAULT_WORKSPACE_BYTES: Record<Device, number> = { cpu: 64 * 2 ** 20, cuda: 2 ** 30 };

function chunkOpts(where: string, o: ChunkOptions, device: Device): { chunkRows?: number; workspaceBytes?: number } {
  const r: { chunkRows?: number; workspaceBytes?: number } = { workspaceBytes: DEFAULT_WORKSPACE_BYTES[device] };
  if (o.chunkRows !== undefined) {
    if (!Number.isInteger(o.chunkRows) || o.chunkRows < 0) throw typeError(where, 'chunkRows', 'a non-negative integer', o.chunkRows);
    r.chunkRows = o.chunkRows;
  }
  if (o.workspaceBytes !== undefined) {
    if (!Number.isInteger(o.workspaceBytes) || o.workspaceBytes < 1) throw typeError(where, 'workspaceBytes', 'a positive integer', o.workspaceBytes);
    r.workspaceBytes = o.workspaceBytes;
  }
  return r;
}

function finiteNumber(where: string, name: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw typeError(where, name, 'a finite number', v);
  return v;
}

function bool(where: string, name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw typeError(where, name, 'a boolean', v);
  return v;
}

function options(where: string, o: unknown): Record<string, unknown> {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object') throw typeError(where, 'options', 'an object', o);
  return o as Record<string, unknown>;
}

function wrap(buf: NativeBuffer | null, shape: number[], dtype: DType, device: Device): Tensor | null {
  return buf ? new Tensor(buf, shape, dtype, device) : null;
}

/**
 * Fused linear + cross-entropy: loss of softmax(h w^T) against targets, with dL/dh and dL/dw, without
 * materialising the [N, V] logits. Rows whose target is ignoreIndex contribute nothing.
 */
function linearCrossEntropy(h: Tensor, w: Tensor, targets: Tensor, opts?: LinearCrossEntropyOptions): LinearCrossEntropyResult {
  const where = 'kernels.linearCrossEntropy';
  const o = options(where, opts) as LinearCrossEntropyOptions;
  const [N, d] = matrix(where, 'h', h, 'N, d');
  const [V, dw] = matrix(where, 'w', w, 'V, d');
  equalDim(where, 'h and w must have the same hidden size d', d, dw);
  if (!isTensor(targets) || targets.dtype !== 'int32' || targets.rank !== 1) throw typeError(where, 'targets', 'an int32 Tensor [N]', targets);
  if (targets.disposed) throw new TypeError(`${where}: targets has been disposed`);
  equalDim(where, 'targets must have one entry per row of h', targets.shape[0], N);
  if (targets.device !== h.device) throw new TypeError(`${where}: targets is on ${targets.device} but h is on ${h.device}`);
  const { device, dtype } = sameKind(where, h, 'h', { w });
  const ignoreIndex = o.ignoreIndex ?? -100;
  if (!Number.isInteger(ignoreIndex) || Math.abs(ignoreIndex) > 2 ** 31 - 1) throw typeError(where, 'ignoreIndex', 'an int32 integer', ignoreIndex);
  const reduction = o.reduction ?? 'mean';
  if (!['mean', 'sum', 'none'].includes(reduction)) throw typeError(where, 'reduction', "'mean' | 'sum' | 'none'", reduction);
  const labelSmoothing = finiteNumber(where, 'labelSmoothing', o.labelSmoothing, 0);
  if (labelSmoothing < 0 || labelSmoothing > 1) throw rangeError(where, `labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  const zLossWeight = finiteNumber(where, 'zLossWeight', o.zLossWeight, 0);
  if (zLossWeight < 0) throw rangeError(where, `zLossWeight must be >= 0, got ${zLossWeight}`);
  const grad = bool(where, 'grad', o.grad, true);
  const r = addonFor(device, where).linearCrossEntropy(h.buffer, w.buffer, targets.buffer, { N, d, V }, {
    dtype, ignoreIndex, reduction, grad, labelSmoothing, zLossWeight,
    gradScale: finiteNumber(where, 'gradScale', o.gradScale, 1),
    ...chunkOpts(where, o, device),
  });
  return {
    loss: r.loss,
    losses: r.rowLoss,
    rows: r.rows,
    dh: wrap(r.dh, [N, d], dtype, device),
    dw: wrap(r.dw, [V, d], 'float32', device),
    chunkRows: r.chunkRows,
    workspaceBytes: r.workspaceBytes,
  };
}

/**
 * Visual-word KL (VW-LMM's image-token objective): sum over rows of KL(softmax(x wVm^T / T) ||
 * softmax(h wLm^T / T)), with gradients to both sides (to h/wLm only when detachTarget).
 */
function visualWordKL(h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor, opts?: VisualWordKLOptions): VisualWordKLResult {
  const where = 'kernels.visualWordKL';
  const o = options(where, opts) as VisualWordKLOptions;
  const [M, d] = matrix(where, 'h', h, 'M, d');
  const [V, d1] = matrix(where, 'wLm', wLm, 'V, d');
  const [Mx, d2] = matrix(where, 'x', x, 'M, d');
  const [Vv, d3] = matrix(where, 'wVm', wVm, 'V, d');
  equalDim(where, 'wLm must have the hidden size d of h', d1, d);
  equalDim(where, 'x must have as many rows as h', Mx, M);
  equalDim(where, 'x must have the hidden size d of h', d2, d);
  equalDim(where, 'wVm must have as many rows (vocabulary) as wLm', Vv, V);
  equalDim(where, 'wVm must have the hidden size d of h', d3, d);
  const { device, dtype } = sameKind(where, h, 'h', { wLm, x, wVm });
  const reduction = o.reduction ?? 'batchmean';
  if (!['batchmean', 'mean', 'sum', 'none'].includes(reduction)) throw typeError(where, 'reduction', "'batchmean' | 'sum' | 'none'", reduction);
  const temperature = finiteNumber(where, 'temperature', o.temperature, 1);
  if (temperature <= 0) throw rangeError(where, `temperature must be > 0, got ${temperature}`);
  const detachTarget = bool(where, 'detachTarget', o.detachTarget, false);
  const grad = bool(where, 'grad', o.grad, true);
  const r = addonFor(device, where).visualWordKL(h.buffer, wLm.buffer, x.buffer, wVm.buffer, { M, d, V }, {
    dtype, reduction, temperature, detachTarget, grad,
    gradScale: finiteNumber(where, 'gradScale', o.gradScale, 1),
    ...chunkOpts(where, o, device),
  });
  return {
    loss: r.loss,
    losses: r.rowLoss,
    dh: wrap(r.dh, [M, d], dtype, device),
    dwLm: wrap(r.dwLm, [V, d], 'float32', device),
    dx: wrap(r.dx, [M, d], dtype, device),
    dwVm: wrap(r.dwVm, [V, d], 'float32', device),
    chunkRows: r.chunkRows,
    workspaceBytes: r.workspaceBytes,
  };
}

/** The top-k visual words of each row: ids [N, k] int32 and probs [N, k] (softmax over the whole vocabulary). */
function visualWords(x: Tensor, wVm: Tensor, opts?: VisualWordsOptions): { ids: Tensor; probs: Tensor } {
  const where = 'kernels.visualWords';
  const o = options(where, opts) as VisualWordsOptions;
  const [N, d] = matrix(where, 'x', x, 'N, d');
  const [V, d1] = matrix(where, 'wVm', wVm, 'V, d');
  equalDim(where, 'x and wVm must have the same hidden size d', d, d1);
  const { device, dtype } = sameKind(where, x, 'x', { wVm });
  const topK = o.topK ?? 1;
  if (!Number.isInteger(topK) || topK < 1) throw typeError(where, 'topK', 'a positive integer', topK);
  if (topK > V) throw rangeError(where, `topK (${topK}) exceeds the vocabulary size V (${V})`);
  const r = addonFor(device, where).visualWords(x.buffer, wVm.buffer, { N, d, V }, { dtype, topK, ...chunkOpts(where, o, device) });
  return { ids: new Tensor(r.ids, [N, topK], 'int32', device), probs: new Tensor(r.probs, [N, topK], 'float32', device) };
}

function pifArgs(where: string, x: Tensor, wVm: Tensor, e: Tensor) {
  const [N, d] = matrix(where, 'x', x, 'N, d');
  const [V, d1] = matrix(where, 'wVm', wVm, 'V, d');
  const [Ve, dE] = matrix(where, 'e', e, 'V, dE');
  equalDim(where, 'x and wVm must have the same hidden size d', d, d1);
  equalDim(where, 'e must have one row per vocabulary entry of wVm', Ve, V);
  const kind = sameKind(where, x, 'x', { wVm, e });
  return { dims: { N, d, V, dE }, ...kind };
}

/** Pseudo image features (PIF): softmax(x wVm^T) e, [N, dE], streamed without an [N, V] tensor. */
function pseudoImageFeatures(x: Tensor, wVm: Tensor, e: Tensor, opts?: ChunkOptions): Tensor {
  const where = 'kernels.pseudoImageFeatures';
  const o = options(where, opts) as ChunkOptions;
  const { dims, device, dtype } = pifArgs(where, x, wVm, e);
  const r = addonFor(device, where).pseudoImageFeatures(x.buffer, wVm.buffer, e.buffer, dims, { dtype, ...chunkOpts(where, o, device) });
  return new Tensor(r.out, [dims.N, dims.dE], dtype, device);
}

/** Backward of pseudoImageFeatures for upstream gradient gradOut [N, dE]: { dx, dwVm, de }. */
function pseudoImageFeaturesBackward(x: Tensor, wVm: Tensor, e: Tensor, gradOut: Tensor, opts?: ChunkOptions): { dx: Tensor; dwVm: Tensor; de: Tensor } {
  const where = 'kernels.pseudoImageFeaturesBackward';
  const o = options(where, opts) as ChunkOptions;
  const { dims, device, dtype } = pifArgs(where, x, wVm, e);
  const [Ng, dEg] = matrix(where, 'gradOut', gradOut, 'N, dE');
  equalDim(where, 'gradOut must have one row per row of x', Ng, dims.N);
  equalDim(where, 'gradOut must have the width dE of e', dEg, dims.dE);
  sameKind(where, x, 'x', { gradOut });
  const r = addonFor(device, where).pseudoImageFeaturesBackward(x.buffer, wVm.buffer, e.buffer, gradOut.buffer, dims, { dtype, ...chunkOpts(where, o, device) });
  return {
    dx: new Tensor(r.dx, [dims.N, dims.d], dtype, device),
    dwVm: new Tensor(r.dwVm, [dims.V, dims.d], 'float32', device),
    de: new Tensor(r.de, [dims.V, dims.dE], 'float32', device),
  };
}

export const kernels = { linearCrossEntropy, visualWordKL, visualWords, pseudoImageFeatures, pseudoImageFeaturesBackward };
