// fused.*: typed wrappers of the fused vocabulary ops of the op table (native/core/ops.def,
// native/core/fused_args.h). This layer validates every argument with a message that names it, allocates
// the outputs on the tensors' device, runs the op through callOp and returns the outputs with the op's
// stats. The kernels live in native/cpu/<op>.cpp and native/cuda/<op>.cu; the float64 references in
// tests/support/reference.ts. The differentiable versions are F.linearCrossEntropy etc. (src/functional.ts).
import { callOp, opConstants } from './call_op';
import { checkKeys, rangeError, typeError } from './errors';
import { OpStats } from './native';
import { Device, DType, Tensor } from './tensor';

export type Reduction = 'mean' | 'sum' | 'none';

/** Options shared by every kernel: how the vocabulary-sized scratch is bounded. */
export interface ChunkOptions {
  /**
   * Rows per chunk of the float32 logits (0 or undefined: as many as fit in workspaceBudget; on CUDA in bf16 the
   * losses cap them at 256 and give the rest of the budget to their gradient groups, see groupRows).
   */
  chunkRows?: number;
  /**
   * Bytes the op may allocate as scratch, mainly the [chunkRows, V] float32 logit blocks: default
   * DEFAULT_WORKSPACE_BUDGET (64 MiB on the CPU, 1 GiB on CUDA). What it used is the result's workspaceBytes.
   */
  workspaceBudget?: number;
}

export interface LinearCrossEntropyOptions extends ChunkOptions {
  ignoreIndex?: number;
  reduction?: Reduction;
  gradScale?: number;
  labelSmoothing?: number;
  zLossWeight?: number;
  /** Compute dh and dw (default true); false gives the loss only. */
  grad?: boolean;
  /**
   * With grad, which gradients to compute, by their names in the result (each default true). One left out
   * is null in the result and costs nothing: `{ dw: false }` for a frozen weight allocates no [V, d] buffer
   * and skips its GEMM per chunk; `{ dh: false }` when only the weight gradient is wanted. Both false is
   * the loss only, as grad: false. dh is the same with or without dw (bitwise on the CPU).
   */
  gradOutputs?: { dh?: boolean; dw?: boolean };
  /**
   * Keep the reduced loss on the device (default false): the result's lossTensor holds it ([1] float32) and
   * the host never waits for it; loss is then NaN and losses empty (the training path: src/functional.ts).
   */
  deviceLoss?: boolean;
}

export interface LinearCrossEntropyResult {
  /** 'mean': mean over non-ignored rows; 'sum' and 'none': the sum of the per-row losses. */
  loss: number;
  /** Per-row losses [N] (0 for ignored rows). This is the result of reduction 'none'. */
  losses: Float32Array;
  /** Number of non-ignored rows (0 after a bad target); -1 with deviceLoss on CUDA, where counting them would be a read. */
  rows: number;
  /** null without grad or when gradOutputs leaves it out (as dw). */
  dh: Tensor | null;
  dw: Tensor | null;
  /** With deviceLoss: the reduced loss, [1] float32 on the device (the caller owns it); else null. */
  lossTensor: Tensor | null;
  /** Rows per chunk of the float32 logits (the logit GEMMs and the row pass). */
  chunkRows: number;
  /**
   * Rows whose gradient the backward GEMMs take at once (each such pass adds to the float32 weight gradients):
   * chunkRows where the gradient overwrites the logits (float32, and every dtype on the CPU); on CUDA in bf16, a
   * group of chunks that fills the rest of workspaceBudget with bf16 gradient rows (native/core/fused_args.h
   * plan_chunks).
   */
  groupRows: number;
  workspaceBytes: number;
}

export interface VisualWordKLOptions extends ChunkOptions {
  /**
   * 'batchmean' (default; KLDivLoss(reduction='batchmean'), what VW-LMM trains with): the sum over rows / M; 'sum';
   * 'none'. PyTorch's 'mean' (divided by M x V elements) is refused rather than silently taken as batchmean.
   */
  reduction?: 'batchmean' | 'sum' | 'none';
  temperature?: number;
  gradScale?: number;
  detachTarget?: boolean;
  grad?: boolean;
  /**
   * As LinearCrossEntropyOptions.gradOutputs, over dh, dwLm, dx, dwVm (dx and dwVm are null with detachTarget
   * anyway): `{ dwLm: false }` for a frozen lm_head, `{ dwVm: false }` for a frozen vm_head.
   */
  gradOutputs?: { dh?: boolean; dwLm?: boolean; dx?: boolean; dwVm?: boolean };
  /** As LinearCrossEntropyOptions.deviceLoss. */
  deviceLoss?: boolean;
}

export interface VisualWordKLResult {
  /** 'batchmean': sum of row KLs / M; 'sum' and 'none': the sum. */
  loss: number;
  /** KL of each row [M]. */
  losses: Float32Array;
  /** null without grad or when gradOutputs leaves it out (as the others; dx and dwVm also with detachTarget). */
  dh: Tensor | null;
  dwLm: Tensor | null;
  dx: Tensor | null;
  dwVm: Tensor | null;
  /** With deviceLoss: the reduced loss, [1] float32 on the device (the caller owns it); else null. */
  lossTensor: Tensor | null;
  /** Rows per chunk of the float32 logits (the logit GEMMs and the row pass). */
  chunkRows: number;
  /**
   * Rows whose gradient the backward GEMMs take at once (each such pass adds to the float32 weight gradients):
   * chunkRows where the gradient overwrites the logits (float32, and every dtype on the CPU); on CUDA in bf16, a
   * group of chunks that fills the rest of workspaceBudget with bf16 gradient rows (native/core/fused_args.h
   * plan_chunks).
   */
  groupRows: number;
  workspaceBytes: number;
}

export interface VisualWordsOptions extends ChunkOptions {
  topK?: number;
}

const isTensor = (t: unknown): t is Tensor => t instanceof Tensor;

function matrix(where: string, name: string, t: unknown, dims: string): [number, number] {
  if (!isTensor(t)) throw typeError(where, name, `a Tensor [${dims}]`, t);
  if (t.isFreed()) throw new TypeError(`${where}: ${name} ${t.whyFreed()}`);
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

/**
 * The default workspace budget per device, defined here only. On CUDA it is larger because there the fp32
 * weight-gradient accumulation, one read and write of dW per chunk, costs more than the GEMMs below ~2,000
 * rows per chunk (benchmarks/RESULTS.md).
 */
export const DEFAULT_WORKSPACE_BUDGET: Record<Device, number> = { cpu: 64 * 2 ** 20, cuda: 2 ** 30 };

/** [chunkRows, workspaceBudget], the last two integer parameters of every fused op. */
function chunkInts(where: string, o: ChunkOptions, device: Device): [number, number] {
  const rows = o.chunkRows ?? 0;
  if (!Number.isInteger(rows) || rows < 0) throw typeError(where, 'chunkRows', 'a non-negative integer', o.chunkRows);
  const budget = o.workspaceBudget ?? DEFAULT_WORKSPACE_BUDGET[device];
  if (!Number.isInteger(budget) || budget < 1 || budget > Number.MAX_SAFE_INTEGER) throw typeError(where, 'workspaceBudget', 'a positive integer (bytes)', o.workspaceBudget);
  return [rows, budget];
}

/** Outputs of one call, freed if the op throws (the caller takes them over otherwise). */
function outputs<T extends Record<string, Tensor | null>>(make: () => T, run: (o: T) => OpStats | null): { out: T; stats: OpStats } {
  const out = make();
  try {
    const stats = run(out);
    if (!stats) throw new Error('a fused op returned no stats (the native addon does not match this build)');
    return { out, stats };
  } catch (e) {
    for (const t of Object.values(out)) t?.dispose();
    throw e;
  }
}

/** The per-row losses as a host array (the rowLoss output is freed); none with deviceLoss (no host read). */
function hostLosses(t: Tensor, deviceLoss: boolean): Float32Array {
  try {
    return deviceLoss ? new Float32Array(0) : (t.toArray() as Float32Array);
  } finally {
    t.dispose();
  }
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

/** gradOutputs: which of `names` to compute (an object of booleans, each default true), all false without grad. */
function gradOutputs<K extends string>(where: string, v: unknown, names: readonly K[], grad: boolean): Record<K, boolean> {
  const expected = `an object of booleans { ${names.join(', ')} }`;
  if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) throw typeError(where, 'gradOutputs', expected, v);
  const o = (v ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!(names as readonly string[]).includes(k)) throw typeError(where, `gradOutputs.${k}`, `one of ${names.join(', ')}`, k);
  return Object.fromEntries(names.map((n) => [n, bool(where, `gradOutputs.${n}`, o[n], true) && grad])) as Record<K, boolean>;
}

// Each op's option names (checkKeys: a misspelt or torch-spelt one, label_smoothing, is refused, not ignored)
const CHUNK_KEYS = { chunkRows: true, workspaceBudget: true } satisfies Record<keyof ChunkOptions, true>;
const CE_KEYS = {
  ...CHUNK_KEYS, ignoreIndex: true, reduction: true, gradScale: true, labelSmoothing: true, zLossWeight: true, grad: true, gradOutputs: true, deviceLoss: true,
} satisfies Record<keyof LinearCrossEntropyOptions, true>;
const KL_KEYS = {
  ...CHUNK_KEYS, reduction: true, temperature: true, gradScale: true, detachTarget: true, grad: true, gradOutputs: true, deviceLoss: true,
} satisfies Record<keyof VisualWordKLOptions, true>;
const VISUAL_WORDS_KEYS = { ...CHUNK_KEYS, topK: true } satisfies Record<keyof VisualWordsOptions, true>;

function options(where: string, o: unknown, known: Record<string, true>): Record<string, unknown> {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object') throw typeError(where, 'options', 'an object', o);
  checkKeys(where, 'option', o, known);
  return o as Record<string, unknown>;
}

const empty = (shape: number[], dtype: DType, device: Device, wanted = true) => (wanted ? Tensor.empty(shape, { dtype, device }) : null);

/**
 * Fused linear + cross-entropy: loss of softmax(h w^T) against targets, with dL/dh and dL/dw, without
 * materialising the [N, V] logits. Rows whose target is ignoreIndex contribute nothing.
 */
function linearCrossEntropy(h: Tensor, w: Tensor, targets: Tensor, opts?: LinearCrossEntropyOptions): LinearCrossEntropyResult {
  return linearCrossEntropyAt('fused.linearCrossEntropy', h, w, targets, opts);
}

function linearCrossEntropyAt(where: string, h: Tensor, w: Tensor, targets: Tensor, opts?: LinearCrossEntropyOptions): LinearCrossEntropyResult {
  const o = options(where, opts, CE_KEYS) as LinearCrossEntropyOptions;
  const [N, d] = matrix(where, 'h', h, 'N, d');
  const [V, dw] = matrix(where, 'w', w, 'V, d');
  equalDim(where, 'h and w must have the same hidden size d', d, dw);
  if (!isTensor(targets) || targets.dtype !== 'int32' || targets.rank !== 1) throw typeError(where, 'targets', 'an int32 Tensor [N]', targets);
  if (targets.isFreed()) throw new TypeError(`${where}: targets ${targets.whyFreed()}`);
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
  const want = gradOutputs(where, o.gradOutputs, ['dh', 'dw'] as const, bool(where, 'grad', o.grad, true));
  const grad = want.dh || want.dw;
  const gradScale = finiteNumber(where, 'gradScale', o.gradScale, 1);
  const deviceLoss = bool(where, 'deviceLoss', o.deviceLoss, false);
  const ints = [N, d, V, ignoreIndex, opConstants().reduction[reduction], grad ? 1 : 0, ...chunkInts(where, o, device)];
  const { out, stats } = outputs(
    () => ({
      rowLoss: empty([N], 'float32', device)!, dh: empty([N, d], dtype, device, want.dh), dw: empty([V, d], 'float32', device, want.dw),
      loss: empty([1], 'float32', device, deviceLoss),
    }),
    (r) => callOp('linear_cross_entropy', device, [h, w, targets], [r.rowLoss, r.dh, r.dw, r.loss], ints, [gradScale, labelSmoothing, zLossWeight]),
  );
  return {
    loss: stats.loss, losses: hostLosses(out.rowLoss, deviceLoss), rows: stats.rows, dh: out.dh, dw: out.dw, lossTensor: out.loss,
    chunkRows: stats.chunkRows, groupRows: stats.groupRows, workspaceBytes: stats.workspaceBytes,
  };
}

/**
 * Visual-word KL (VW-LMM's image-token objective): sum over rows of KL(softmax(x wVm^T / T) ||
 * softmax(h wLm^T / T)), with gradients to both sides (to h/wLm only when detachTarget).
 */
function visualWordKL(h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor, opts?: VisualWordKLOptions): VisualWordKLResult {
  return visualWordKLAt('fused.visualWordKL', h, wLm, x, wVm, opts);
}

function visualWordKLAt(where: string, h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor, opts?: VisualWordKLOptions): VisualWordKLResult {
  const o = options(where, opts, KL_KEYS) as VisualWordKLOptions;
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
  if (reduction === ('mean' as string)) throw rangeError(where, "reduction 'mean' is PyTorch's mean over all M x V elements, which VW-LMM does not use; use 'batchmean' (the sum over rows / M, KLDivLoss's recommended reduction) or 'sum'");
  if (!['batchmean', 'sum', 'none'].includes(reduction)) throw typeError(where, 'reduction', "'batchmean' | 'sum' | 'none'", reduction);
  const temperature = finiteNumber(where, 'temperature', o.temperature, 1);
  if (temperature <= 0) throw rangeError(where, `temperature must be > 0, got ${temperature}`);
  const detachTarget = bool(where, 'detachTarget', o.detachTarget, false);
  const want = gradOutputs(where, o.gradOutputs, ['dh', 'dwLm', 'dx', 'dwVm'] as const, bool(where, 'grad', o.grad, true));
  if (detachTarget) want.dx = want.dwVm = false;
  const grad = want.dh || want.dwLm || want.dx || want.dwVm;
  const gradScale = finiteNumber(where, 'gradScale', o.gradScale, 1);
  const red = opConstants().reduction[reduction === 'batchmean' ? 'mean' : reduction];
  const deviceLoss = bool(where, 'deviceLoss', o.deviceLoss, false);
  const ints = [M, d, V, red, grad ? 1 : 0, detachTarget ? 1 : 0, ...chunkInts(where, o, device)];
  const { out, stats } = outputs(
    () => ({
      rowLoss: empty([M], 'float32', device)!, dh: empty([M, d], dtype, device, want.dh), dwLm: empty([V, d], 'float32', device, want.dwLm),
      dx: empty([M, d], dtype, device, want.dx), dwVm: empty([V, d], 'float32', device, want.dwVm), loss: empty([1], 'float32', device, deviceLoss),
    }),
    (r) => callOp('visual_word_kl', device, [h, wLm, x, wVm], [r.rowLoss, r.dh, r.dwLm, r.dx, r.dwVm, r.loss], ints, [temperature, gradScale]),
  );
  return {
    loss: stats.loss, losses: hostLosses(out.rowLoss, deviceLoss), dh: out.dh, dwLm: out.dwLm, dx: out.dx, dwVm: out.dwVm, lossTensor: out.loss,
    chunkRows: stats.chunkRows, groupRows: stats.groupRows, workspaceBytes: stats.workspaceBytes,
  };
}

/** The top-k visual words of each row: ids [N, k] int32 and probs [N, k] (softmax over the whole vocabulary). */
function visualWords(x: Tensor, wVm: Tensor, opts?: VisualWordsOptions): { ids: Tensor; probs: Tensor } {
  const where = 'fused.visualWords';
  const o = options(where, opts, VISUAL_WORDS_KEYS) as VisualWordsOptions;
  const [N, d] = matrix(where, 'x', x, 'N, d');
  const [V, d1] = matrix(where, 'wVm', wVm, 'V, d');
  equalDim(where, 'x and wVm must have the same hidden size d', d, d1);
  const { device, dtype } = sameKind(where, x, 'x', { wVm });
  const topK = o.topK ?? 1;
  if (!Number.isInteger(topK) || topK < 1) throw typeError(where, 'topK', 'a positive integer', topK);
  if (topK > V) throw rangeError(where, `topK (${topK}) exceeds the vocabulary size V (${V})`);
  const ints = [N, d, V, topK, ...chunkInts(where, o, device)];
  const { out } = outputs(
    () => ({ ids: empty([N, topK], 'int32', device)!, probs: empty([N, topK], 'float32', device)! }),
    (r) => callOp('visual_words', device, [x, wVm], [r.ids, r.probs], ints),
  );
  return out;
}

function pifArgs(where: string, x: Tensor, wVm: Tensor, e: Tensor) {
  const [N, d] = matrix(where, 'x', x, 'N, d');
  const [V, d1] = matrix(where, 'wVm', wVm, 'V, d');
  const [Ve, dE] = matrix(where, 'e', e, 'V, dE');
  equalDim(where, 'x and wVm must have the same hidden size d', d, d1);
  equalDim(where, 'e must have one row per vocabulary entry of wVm', Ve, V);
  const kind = sameKind(where, x, 'x', { wVm, e });
  return { N, d, V, dE, ...kind };
}

/** Pseudo image features (PIF): softmax(x wVm^T) e, [N, dE], streamed without an [N, V] tensor. */
function pseudoImageFeatures(x: Tensor, wVm: Tensor, e: Tensor, opts?: ChunkOptions): Tensor {
  return pseudoImageFeaturesAt('fused.pseudoImageFeatures', x, wVm, e, opts);
}

function pseudoImageFeaturesAt(where: string, x: Tensor, wVm: Tensor, e: Tensor, opts?: ChunkOptions): Tensor {
  const o = options(where, opts, CHUNK_KEYS) as ChunkOptions;
  const { N, d, V, dE, device, dtype } = pifArgs(where, x, wVm, e);
  const { out } = outputs(
    () => ({ out: empty([N, dE], dtype, device)! }),
    (r) => callOp('pseudo_image_features', device, [x, wVm, e], [r.out], [N, d, V, dE, ...chunkInts(where, o, device)]),
  );
  return out.out;
}

/** Backward of pseudoImageFeatures for upstream gradient gradOut [N, dE]: { dx, dwVm, de }. */
function pseudoImageFeaturesBackward(x: Tensor, wVm: Tensor, e: Tensor, gradOut: Tensor, opts?: ChunkOptions): { dx: Tensor; dwVm: Tensor; de: Tensor } {
  return pseudoImageFeaturesBackwardAt('fused.pseudoImageFeaturesBackward', x, wVm, e, gradOut, opts);
}

function pseudoImageFeaturesBackwardAt(where: string, x: Tensor, wVm: Tensor, e: Tensor, gradOut: Tensor, opts?: ChunkOptions): { dx: Tensor; dwVm: Tensor; de: Tensor } {
  const o = options(where, opts, CHUNK_KEYS) as ChunkOptions;
  const { N, d, V, dE, device, dtype } = pifArgs(where, x, wVm, e);
  const [Ng, dEg] = matrix(where, 'gradOut', gradOut, 'N, dE');
  equalDim(where, 'gradOut must have one row per row of x', Ng, N);
  equalDim(where, 'gradOut must have the width dE of e', dEg, dE);
  sameKind(where, x, 'x', { gradOut });
  const { out } = outputs(
    () => ({ dx: empty([N, d], dtype, device)!, dwVm: empty([V, d], 'float32', device)!, de: empty([V, dE], 'float32', device)! }),
    (r) => callOp('pseudo_image_features_backward', device, [x, wVm, e, gradOut], [r.dx, r.dwVm, r.de], [N, d, V, dE, ...chunkInts(where, o, device)]),
  );
  return out;
}

export const fused = { linearCrossEntropy, visualWordKL, visualWords, pseudoImageFeatures, pseudoImageFeaturesBackward };

/** The same ops with the caller's name in their errors: F's differentiable wrappers, which users call as F.*. */
export const fusedAt = {
  linearCrossEntropy: linearCrossEntropyAt, visualWordKL: visualWordKLAt,
  pseudoImageFeatures: pseudoImageFeaturesAt, pseudoImageFeaturesBackward: pseudoImageFeaturesBackwardAt,
};
