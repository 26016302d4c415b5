// Tensor: shape + dtype + device over a NativeBuffer that owns the memory. Memory is freed by dispose()
// (idempotent; any later use throws) or by the innermost enclosing scope(); the garbage collector is only
// a safety net (the native finalizer frees what was forgotten).
import { f32ToBf16, bf16ToF32 } from './bf16';
import { checkedOptions, rangeError, typeError } from './errors';
import { addonFor, NativeBuffer } from './native';

export type DType = 'float32' | 'int32' | 'bfloat16';
export type Device = 'cpu' | 'cuda';

const DTYPE_BYTES: Record<DType, number> = { float32: 4, int32: 4, bfloat16: 2 };

export interface TensorOptions {
  device?: Device;
  dtype?: DType;
}

function checkShape(where: string, shape: readonly number[]): number {
  if (!Array.isArray(shape)) throw typeError(where, 'shape', 'an array of non-negative integers', shape);
  let n = 1;
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw typeError(where, 'shape', 'an array of non-negative integers', shape);
    n *= s;
  }
  if (n > Number.MAX_SAFE_INTEGER) throw rangeError(where, `shape [${shape.join(', ')}] has more than 2^53 elements`);
  return n;
}

/**
 * The shape a view of `from` takes for `shape`, its one -1 (if any) inferred from the element count as torch's
 * view / reshape infer it; errors name `where`.
 */
export function viewShape(where: string, from: readonly number[], shape: readonly number[]): number[] {
  const expected = 'an array of non-negative integers (one of them may be -1)';
  if (!Array.isArray(shape)) throw typeError(where, 'shape', expected, shape);
  const n = from.reduce((a, b) => a * b, 1);
  let infer = -1, minusOnes = 0, known = 1;
  shape.forEach((s, i) => {
    if (!Number.isInteger(s) || s < -1) throw typeError(where, 'shape', expected, shape);
    if (s !== -1) known *= s;
    else [infer, minusOnes] = [i, minusOnes + 1];
  });
  // the messages are built only now: the entries are numbers (a hostile array's join would throw its own error)
  const show = `[${shape.join(', ')}]`, was = `[${from.join(', ')}] (${n} elements)`;
  if (minusOnes > 1) throw rangeError(where, `only one dimension can be -1, got ${show}`);
  if (infer < 0) {
    if (known !== n) throw rangeError(where, `cannot view ${was} as ${show} (${known} elements)`);
    return [...shape];
  }
  // as torch: beside a 0 any size would do, so the -1 is refused as ambiguous
  if (known === 0) throw rangeError(where, `cannot view ${was} as ${show}: the -1 is ambiguous beside a 0 dimension`);
  if (n % known !== 0) throw rangeError(where, `cannot view ${was} as ${show}: ${n} is not a multiple of ${known}, the product of the other dimensions`);
  const out = [...shape];
  out[infer] = n / known;
  return out;
}

const isDType = (v: unknown): v is DType => typeof v === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, v);

const TENSOR_OPTION_KEYS = { device: true, dtype: true } satisfies Record<keyof TensorOptions, true>;

function checkOptions(where: string, opts: unknown): TensorOptions {
  return checkedOptions(where, opts as TensorOptions | undefined, TENSOR_OPTION_KEYS);
}

// --- scopes -------------------------------------------------------------------------------------
const scopes: Set<Tensor>[] = [];
/** Per open scope, the tensors keep() took out of it: their views' bases and graphs are kept as a result's are. */
const keptOut: Tensor[][] = [];

function track(t: Tensor): void {
  if (scopes.length > 0) scopes[scopes.length - 1].add(t);
}

/** What a scope keeps of its tensors: those reachable from its result, and graph tensors no backward reads. */
interface Reach {
  kept: Set<Tensor>;
  /** Kept as themselves (a result, what a graph reads), not only as the memory a kept view views. */
  selves: Set<Tensor>;
  /** In a kept graph but read by no backward: their memory is freed, the tensor stays as the graph's link. */
  links: Set<Tensor>;
  /** Tensors created in the scope (the walk stops at nodes that have none). */
  mine: Set<Tensor>;
}

function collectTensors(value: unknown, r: Reach, seen: Set<unknown>, asBase = false): void {
  if (value instanceof Tensor && !asBase) r.selves.add(value);
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof Tensor) {
    r.kept.add(value);
    if (value.base) collectTensors(value.base, r, seen, true); // a kept view keeps the memory it views
    // A returned tensor that autograd recorded keeps its graph alive (as a PyTorch graph keeps tensors alive): the
    // saved tensors and the inputs and outputs its backward reads (GradNode.reads) move to the enclosing scope with
    // it; the others stay as links of the graph without their memory (Tensor.release).
    visitNode(value.gradFn, r, seen);
    return;
  }
  if (ArrayBuffer.isView(value)) return;
  if (Array.isArray(value)) {
    for (const v of value) collectTensors(v, r, seen);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collectTensors(v, r, seen);
    return;
  }
  for (const v of Object.values(value as Record<string, unknown>)) collectTensors(v, r, seen);
}

function visitNode(node: GradNode | null, r: Reach, seen: Set<unknown>): void {
  // a node with nothing of this scope was recorded before it began: nothing behind it is this scope's to keep
  if (!node || seen.has(node) || ![...node.outputs, ...node.inputs, ...node.saved].some((t) => t && r.mine.has(t))) return;
  seen.add(node);
  const reads = node.reads ?? [...node.inputs, ...node.outputs];
  for (const t of [...reads, ...node.saved]) if (t) collectTensors(t, r, seen);
  for (const t of [...node.inputs, ...node.outputs]) {
    if (!t || reads.includes(t)) continue;
    r.links.add(t);
    visitNode(t.gradFn, r, seen);
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except the tensors reachable from its return
 * value (a tensor, or arrays / plain objects / Maps holding tensors); those move to the enclosing scope.
 * Also disposes on throw. Async functions are not supported (the scope would close before they finish).
 */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  const kept: Tensor[] = [];
  keptOut.push(kept);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) {
      result.catch(() => {}); // refused, but still running: its later rejection must not go unhandled and end the process
      throw new TypeError('scope: fn must be synchronous (it returned a Promise)');
    }
  } catch (e) {
    scopes.pop();
    keptOut.pop();
    for (const t of mine) t.dispose();
    throw e;
  }
  scopes.pop();
  keptOut.pop();
  const r: Reach = { kept: new Set(), selves: new Set(), links: new Set(), mine };
  collectTensors(result, r, new Set());
  // outermost: what is kept only for a recorded graph (the activations a backward reads) has no scope to free it;
  // autograd frees it once no recorded node reads it (graphHeld), as torch frees a graph's saved tensors
  const outermost = scopes.length === 0;
  const direct = outermost ? directTensors([result, kept], new Set()) : null;
  // what keep() took out: itself no longer the scope's, but the memory it views and its graph are kept for it (and
  // by the enclosing scopes too: a kept tensor outlives them all)
  if (kept.length > 0) {
    collectTensors(kept, r, new Set());
    keptOut[keptOut.length - 1]?.push(...kept);
  }
  // a tensor kept as itself, by any scope (one reached through a view's .base, or read by a kept graph), is no longer
  // held for views alone (after the kept tensors' walk: their graphs' reads count too)
  for (const t of r.selves) heldForViews.delete(t);
  for (const t of mine) {
    if (r.kept.has(t)) {
      track(t);
      if (direct && !direct.has(t)) graphHeld.add(t);
      // kept only as the memory of the views it hands out: those views' dispose frees it (Tensor.dispose)
      if (!r.selves.has(t)) heldForViews.add(t);
    } else if (r.links.has(t) && t.gradFn) {
      // memory freed, the link moves out too: an enclosing scope walks the graph through the tensors it owns, and
      // without its links a nested scope's kept tensors behind them would look unreachable there
      t.release();
      track(t);
    } else t.dispose();
  }
  return result;
}

/** The tensors a value holds itself (and the memory its views view), not through a recorded graph. */
function directTensors(value: unknown, out: Set<Tensor>, seen = new Set<unknown>()): Set<Tensor> {
  if (value === null || typeof value !== 'object' || seen.has(value) || ArrayBuffer.isView(value)) return out;
  seen.add(value);
  if (value instanceof Tensor) {
    for (let t: Tensor | null = value; t; t = t.base) out.add(t);
  } else if (Array.isArray(value)) {
    for (const v of value) directTensors(v, out, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) directTensors(v, out, seen);
  } else {
    for (const v of Object.values(value as Record<string, unknown>)) directTensors(v, out, seen);
  }
  return out;
}

/**
 * Tensors an outermost scope kept only because a recorded graph reads them (a model's activations, returned with the
 * loss that needs them for its backward): nothing else owns them, so autograd disposes them once no recorded node
 * reads them (after the backward that consumes their nodes, or when those nodes are dropped unreached). Without this
 * a loss computed outside any scope left them to the garbage collector: ~0.5 MiB per step of a tiny model.
 */
const graphHeld = new Set<Tensor>();

/**
 * Tensors a scope kept only as the memory of views it returned (`scope(() => F.reshape(y, ...))`: the user holds the
 * view, not the tensor it views): freed when their last view is disposed, as torch frees a storage with its last
 * view. A view never disposed leaves it to the garbage collector, as before.
 */
const heldForViews = new WeakSet<Tensor>();

/** For autograd: whether any tensor is graph-held (none in a run whose losses and backwards are inside scopes). */
export function anyGraphHeld(): boolean {
  return graphHeld.size > 0;
}

/** For autograd: whether t is held for a graph alone (graphHeld). */
export function isGraphHeld(t: Tensor): boolean {
  return graphHeld.has(t);
}

/** For autograd: disposes a graph-held tensor that no recorded node reads any more. */
export function disposeGraphHeld(t: Tensor): void {
  if (graphHeld.has(t)) t.disposeWith('was freed by autograd once no recorded graph read it: an outermost scope had kept it only for a graph (return it from the scope, or keep() it, to hold it longer)');
}

/**
 * Removes t from the current scope so it outlives it (it must then be disposed by hand). As for a scope's result, what
 * t needs stays too: the tensor a view of it views, and its recorded graph (a loss kept for a backward after the scope).
 */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  graphHeld.delete(t); // whoever keeps it owns it (a leaf's .grad that a fused op saved for its backward)
  heldForViews.delete(t);
  if (keptOut.length > 0 && (t.base !== null || t.gradFn !== null)) keptOut[keptOut.length - 1].push(t);
  return t;
}

// --- values still arriving -----------------------------------------------------------------------
/** Tensors whose values are still arriving, with what completes them (see onFirstAccess). */
const arriving = new Map<Tensor, () => void>();

/**
 * Runs `complete` before the first access to t's memory (Tensor.buffer: an op's input or output, a read, a write):
 * for values still in flight, as ZeroAdamW's all-gather of the updated weights while the next forward starts
 * (src/distributed/zero.ts). `complete` runs once; it must bring t's values in (or cancel the entry of every tensor
 * it completes, cancelFirstAccess, before it reads or writes them).
 */
export function onFirstAccess(t: Tensor, complete: () => void): void {
  arriving.set(t, complete);
}

/** Drops t's pending completion (it has run, or t's values came in another way). */
export function cancelFirstAccess(t: Tensor): void {
  arriving.delete(t);
}

// --- Tensor ---------------------------------------------------------------------------------------
// Passed by this file's allocation paths (alloc, fromArray, view, moveTo) to the constructor: the buffer was just made
// or taken from a live tensor for this shape, so the constructor's checks (two of them calls into the addon) are
// skipped. Not exported: every other caller gets the checks.
const CHECKED: unique symbol = Symbol('vwlmm.tensor.checked');

// autograd.ts installs the implementation of Tensor.backward (tensor.ts cannot import it: cycle).
let backwardImpl: ((root: Tensor, gradient?: Tensor) => void) | null = null;
export function setBackwardImpl(fn: (root: Tensor, gradient?: Tensor) => void): void {
  backwardImpl = fn;
}
// and whether a recorded node (on the tape, or in a backward under way) refers to a tensor's memory
let readByGraph: ((t: Tensor) => boolean) | null = null;
export function setReadByGraph(fn: (t: Tensor) => boolean): void {
  readByGraph = fn;
}

/** What autograd (src/autograd.ts) records about the op that produced a tensor. */
export interface GradNode {
  readonly name: string;
  readonly inputs: readonly (Tensor | null)[];
  readonly outputs: readonly Tensor[];
  saved: Tensor[];
  /**
   * The inputs and outputs whose values the backward reads, and any other tensor it reads that the caller's scope owns
   * (attention's key mask); absent: all inputs and outputs. A scope that ends frees the memory of the inputs and
   * outputs not named (they stay in the graph as links, Tensor.release): what torch's saved tensors achieve.
   */
  readonly reads?: readonly (Tensor | null)[];
  /** writeStamp() when the node was recorded: a tensor its backward reads written after it (F.writeAt) is an error. */
  readonly stamp?: number;
}

// --- in-place writes -------------------------------------------------------------------------------
/** In-place writes so far (F.writeAt): each stamps the memory it wrote, torch's version counter in one number. */
let writes = 0;

/** The number of in-place writes so far: what a recorded node compares a tensor's Tensor.writtenAt with. */
export function writeStamp(): number {
  return writes;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly device: Device;
  private buf: NativeBuffer | null;
  /** False for views (reshape): they share the buffer of the tensor they view and never free it. */
  private readonly owner: boolean;
  /** The tensor a view views (null for an owner): what a scope must keep with a view it keeps. */
  readonly base: Tensor | null = null;
  /** Views of this memory created and not yet disposed or released (an owner's count; see heldForViews). */
  private liveViews = 0;
  /** Set by release(): the memory was freed at the end of a scope because no backward reads it. */
  private released = false;
  /** What freed it, when not a plain dispose() (disposeWith: a module's dispose, autograd's graph-held freeing), for whyFreed. */
  private freedWith: string | null = null;
  /** writeStamp() of the last in-place write into this memory (kept on the owner: a view's write is its base's). */
  private lastWrite = 0;
  private needsGrad = false;
  /** Autograd: whether gradients flow to / through this tensor. Set on parameters by the user; float tensors only. */
  get requiresGrad(): boolean {
    return this.needsGrad;
  }
  set requiresGrad(v: boolean) {
    // an int32 tensor (ids, masks) has no gradient: torch refuses requires_grad on one too
    if (v && this.dtype === 'int32') throw new TypeError(`Tensor: an int32 tensor (shape [${this.shape.join(', ')}]) cannot require gradients: only float tensors have them`);
    this.needsGrad = v;
  }
  /** Autograd: accumulated gradient of a leaf (owned by the tensor, freed by zeroGrad or dispose). */
  grad: Tensor | null = null;
  /** Autograd: the recorded op that produced this tensor (null for leaves). */
  gradFn: GradNode | null = null;

  /**
   * Wraps a NativeBuffer (takes ownership unless `owner` is false). Use Tensor.fromArray etc. The buffer
   * must be a live one of `device` holding at least the shape's elements of `dtype`.
   */
  constructor(buffer: NativeBuffer, shape: readonly number[], dtype: DType, device: Device, owner = true, checked?: typeof CHECKED) {
    if (checked !== CHECKED) {
      const where = 'new Tensor';
      const n = checkShape(where, shape);
      if (!isDType(dtype)) throw typeError(where, 'dtype', "'float32', 'int32' or 'bfloat16'", dtype);
      if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
      if (!(buffer instanceof addonFor(device, where).NativeBuffer)) throw typeError(where, 'buffer', `a ${device} NativeBuffer`, buffer);
      if (buffer.disposed) throw new TypeError(`${where}: the buffer has been disposed`);
      if (buffer.bytes < n * DTYPE_BYTES[dtype])
        throw rangeError(where, `the buffer holds ${buffer.bytes} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${n * DTYPE_BYTES[dtype]}`);
    }
    this.buf = buffer;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.device = device;
    this.owner = owner;
    track(this);
  }

  /**
   * A view with another shape of the same elements (no copy; one dimension may be -1, inferred from the others, as
   * torch's). The view is valid while this tensor is; disposing the view frees nothing of this tensor, unless a scope
   * kept this tensor only as the memory of its views (it returned the view, not this): then the last view's dispose
   * frees it. Autograd-aware code should use F.reshape.
   */
  view(shape: readonly number[]): Tensor {
    shape = viewShape('Tensor.view', this.shape, shape);
    const v = new Tensor(this.buffer, shape, this.dtype, this.device, false, CHECKED);
    const root = this.base ?? this;
    (v as { base: Tensor | null }).base = root;
    root.liveViews++;
    return v;
  }

  static fromArray(data: Float32Array | Int32Array, shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const where = 'Tensor.fromArray';
    opts = checkOptions(where, opts);
    const device = opts.device ?? 'cpu';
    if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
    const n = checkShape(where, shape);
    let dtype = opts.dtype;
    if (!ArrayBuffer.isView(data)) throw typeError(where, 'data', 'a Float32Array or Int32Array', data);
    if (data instanceof Float32Array) dtype ??= 'float32';
    else if (data instanceof Int32Array) dtype ??= 'int32';
    else throw typeError(where, 'data', 'a Float32Array or Int32Array', data);
    if (dtype !== 'float32' && dtype !== 'int32' && dtype !== 'bfloat16')
      throw typeError(where, 'dtype', "'float32', 'int32' or 'bfloat16'", dtype);
    if ((dtype === 'int32') !== data instanceof Int32Array)
      throw typeError(where, 'data', dtype === 'int32' ? 'an Int32Array for dtype int32' : `a Float32Array for dtype ${dtype}`, data);
    if (data.length !== n)
      throw rangeError(where, `data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`);
    const addon = addonFor(device, where);
    const buf = new addon.NativeBuffer(n * DTYPE_BYTES[dtype]);
    try {
      if (n > 0) buf.write(dtype === 'bfloat16' ? f32ToBf16(data as Float32Array) : data);
    } catch (e) {
      buf.dispose();
      throw e;
    }
    return new Tensor(buf, shape, dtype, device, true, CHECKED);
  }

  /** A tensor of zeros, allocated and cleared natively (no host copy). */
  static zeros(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    return Tensor.alloc('Tensor.zeros', shape, opts, true);
  }

  /** A tensor with unspecified contents (for outputs that an op overwrites completely). */
  static empty(shape: readonly number[], opts: TensorOptions = {}): Tensor {
    return Tensor.alloc('Tensor.empty', shape, opts, false);
  }

  private static alloc(where: string, shape: readonly number[], opts: TensorOptions, zero: boolean): Tensor {
    opts = checkOptions(where, opts);
    const device = opts.device ?? 'cpu';
    const dtype = opts.dtype ?? 'float32';
    if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
    if (!isDType(dtype)) throw typeError(where, 'dtype', "'float32', 'int32' or 'bfloat16'", dtype);
    const n = checkShape(where, shape);
    const addon = addonFor(device, where);
    return new Tensor(new addon.NativeBuffer(n * DTYPE_BYTES[dtype], zero), shape, dtype, device, true, CHECKED);
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }
  get disposed(): boolean {
    return this.buf === null || this.buf.disposed;
  }

  /** True for a view (Tensor.view, F.reshape): it shares another tensor's memory and frees nothing itself (see view()). */
  get isView(): boolean {
    return !this.owner;
  }

  /**
   * Whether this tensor was disposed, released or moved (moveTo), or is a view of one that was: what the JS layer
   * knows without asking the backend. `disposed` also asks the buffer (one call into the addon), which sees a
   * NativeBuffer disposed by hand; the argument checks of F and callOp take this one, and the binding refuses a
   * disposed buffer all the same ("[op] inputs[k] has been disposed").
   */
  isFreed(): boolean {
    return this.buf === null || (this.base !== null && this.base.buf !== this.buf);
  }

  /** The native buffer (for bindings); throws if the tensor has been disposed. */
  get buffer(): NativeBuffer {
    if (arriving.size > 0) this.arrive();
    if (this.buf === null || this.buf.disposed) throw new TypeError(`Tensor [${this.shape.join(', ')}] ${this.dtype} ${this.whyFreed()}`);
    return this.buf;
  }

  /**
   * The buffer as callOp passes it to the binding, or null when isFreed() (then whyFreed() says how); values still
   * arriving are completed first. The binding checks the buffer itself.
   */
  bufferFor(): NativeBuffer | null {
    if (arriving.size > 0) this.arrive();
    return this.isFreed() ? null : this.buf;
  }

  private arrive(): void {
    const complete = arriving.get(this);
    if (complete) {
      arriving.delete(this);
      complete();
    }
  }

  /** Marks this tensor's memory written in place (F.writeAt, AdamW.step), for the backward of a node that read it before. */
  markWritten(): void {
    (this.base ?? this).lastWrite = ++writes;
  }

  /** writeStamp() of the last in-place write into this tensor's memory (0: none). */
  get writtenAt(): number {
    return (this.base ?? this).lastWrite;
  }

  /** How a freed tensor went: 'has been disposed', or (released by a scope) what freed it and why. */
  whyFreed(): string {
    if (this.released) return 'was freed when its scope ended: it is an intermediate of a recorded graph that no backward reads (GradNode.reads)';
    return this.freedWith ?? 'has been disposed';
  }

  /**
   * dispose(), with what whyFreed says of it then ("has been disposed with its module: ...", "was freed by autograd
   * ..."); a tensor freed already keeps the first reason (a module disposed after resize's consume freed its weights).
   */
  disposeWith(why: string): void {
    const first = !this.disposed;
    this.dispose();
    if (first) this.freedWith = why;
  }

  /**
   * Moves this tensor's memory into a new tensor of another shape (same element count) without a copy;
   * this tensor is left disposed. Used where a value changes owner (autograd passing a gradient on).
   */
  moveTo(shape: readonly number[]): Tensor {
    const n = checkShape('Tensor.moveTo', shape);
    if (n !== this.size) throw rangeError('Tensor.moveTo', `cannot move [${this.shape.join(', ')}] into [${shape.join(', ')}]`);
    if (!this.owner) throw new TypeError('Tensor.moveTo: a view does not own its memory');
    const buf = this.buffer;
    this.buf = null;
    graphHeld.delete(this); // its memory has a new owner
    return new Tensor(buf, shape, this.dtype, this.device, true, CHECKED);
  }

  /** Back-propagates from this (scalar) tensor: see autograd.backward. */
  backward(gradient?: Tensor): void {
    if (!backwardImpl) throw new Error('autograd is not loaded');
    backwardImpl(this, gradient);
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw rangeError('Tensor.item', `expected one element, the shape is [${this.shape.join(', ')}]`);
    return this.toArray()[0];
  }

  /** A host copy: Int32Array for int32, Float32Array for float32 and bfloat16. */
  toArray(): Float32Array | Int32Array {
    const buf = this.buffer;
    const n = this.size;
    if (this.dtype === 'int32') {
      const out = new Int32Array(n);
      if (n > 0) buf.read(out);
      return out;
    }
    if (this.dtype === 'bfloat16') {
      const raw = new Uint16Array(n);
      if (n > 0) buf.read(raw);
      return bf16ToF32(raw);
    }
    const out = new Float32Array(n);
    if (n > 0) buf.read(out);
    return out;
  }

  /** A copy on `device` (and optionally another float dtype); `this` is unchanged. */
  to(device: Device, dtype?: DType): Tensor {
    const where = 'Tensor.to';
    if (device !== 'cpu' && device !== 'cuda') throw typeError(where, 'device', "'cpu' or 'cuda'", device);
    if (dtype !== undefined && !isDType(dtype)) throw typeError(where, 'dtype', "'float32', 'int32' or 'bfloat16'", dtype);
    const target = dtype ?? this.dtype;
    if ((target === 'int32') !== (this.dtype === 'int32')) throw typeError(where, 'dtype', `a ${this.dtype === 'int32' ? 'int32' : 'float'} dtype for a ${this.dtype} tensor`, target);
    addonFor(device, where); // a clear error when CUDA is unavailable
    const data = this.toArray();
    return Tensor.fromArray(data, this.shape, { device, dtype: target });
  }

  /**
   * Takes over `from`'s memory and dtype in place (same shape and device), as torch's `p.data = q`: every
   * reference to this tensor sees the new storage (a parameter stored in another dtype, src/nn/layers.ts
   * storeFrozenWeights). The old memory and any gradient are freed; `from` is left disposed. Neither may be a view.
   */
  adoptStorage(from: Tensor): void {
    const where = 'Tensor.adoptStorage';
    if (!this.owner || !from.owner) throw new TypeError(`${where}: views share another tensor's memory and cannot adopt or give theirs`);
    if (from.device !== this.device || from.shape.length !== this.shape.length || from.shape.some((d, i) => d !== this.shape[i]))
      throw rangeError(where, `[${from.shape.join(', ')}] on ${from.device} does not fit [${this.shape.join(', ')}] on ${this.device}`);
    const buf = from.buffer;
    this.buffer.dispose();
    this.grad?.dispose();
    this.grad = null;
    this.buf = buf;
    (this as { dtype: DType }).dtype = from.dtype;
    from.buf = null;
  }

  /**
   * Frees the memory but stays in the autograd graph (gradFn kept): what a scope does with an intermediate that a
   * recorded graph leads through but no backward reads. Any later read of its values throws.
   */
  release(): void {
    if (this.buf) {
      if (this.owner) this.buf.dispose();
      else if (this.base) this.base.viewGone(this.buf); // (a non-owner made by hand has no base: nothing counts it)
      this.buf = null;
      this.released = true;
    }
  }

  /** A view of this memory was disposed or released: the last one frees memory kept only for views (heldForViews). */
  private viewGone(buf: NativeBuffer): void {
    // (a memory adopted since, adoptStorage, is not the views'; a non-owner frees nothing)
    if (--this.liveViews > 0 || !heldForViews.has(this) || this.buf !== buf || !this.owner) return;
    heldForViews.delete(this);
    // a recorded graph still reads it (one built from view.base, outside the scope that kept it): autograd frees it
    // once no recorded node reads it, as it frees an outermost scope's activations (graphHeld)
    if (readByGraph?.(this)) {
      graphHeld.add(this);
      return;
    }
    if (arriving.size > 0) arriving.delete(this);
    graphHeld.delete(this);
    this.buf.dispose();
    this.buf = null;
    // gradFn stays: it may link a recorded graph that still leads through this tensor (as release() leaves it)
    this.freedWith = 'was freed with the last view of it: a scope had kept it only as the memory of the views it returned';
  }

  dispose(): void {
    if (arriving.size > 0) arriving.delete(this);
    if (graphHeld.size > 0) graphHeld.delete(this);
    if (this.buf) {
      if (this.owner) this.buf.dispose();
      else if (this.base) this.base.viewGone(this.buf); // (a non-owner made by hand has no base: nothing counts it)
      this.buf = null;
    }
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
    this.gradFn = null;
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

// `using t = ...` disposes t at the end of the block. Symbol.dispose exists from Node 20.4 (engines allows 20.0): on a
// runtime without it the method is left out rather than installed under the key 'undefined'.
export interface Tensor extends Disposable {}
if (typeof Symbol.dispose === 'symbol') Tensor.prototype[Symbol.dispose] = function (this: Tensor): void { this.dispose(); };
