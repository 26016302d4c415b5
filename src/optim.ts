// AdamW (decoupled weight decay, bias correction: torch.optim.AdamW semantics) as one fused native update
// over all parameters per step, and global-norm gradient clipping (torch.nn.utils.clip_grad_norm_).
import { callOp } from './call_op';
import { checkedOptions, checkKeys, rangeError, typeError } from './errors';
import { keep, Tensor } from './tensor';

export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/**
 * A parameter group (torch's param_groups): its parameters update with lr * lrScale, so one schedule
 * setting `lr` moves every group together (LLaVA's mm_vision_tower_lr is such a group), and decay with the
 * group's weightDecay (default: the optimizer's; transformers' Trainer puts biases and norms in a group with 0).
 */
export interface ParamGroup {
  params: Tensor[];
  lrScale?: number;
  weightDecay?: number;
}

const ADAMW_KEYS = { lr: true, betas: true, eps: true, weightDecay: true } satisfies Record<keyof AdamWOptions, true>;
const GROUP_KEYS = { params: true, lrScale: true, weightDecay: true } satisfies Record<keyof ParamGroup, true>;
const STEP_KEYS = { gradScale: true } satisfies Record<'gradScale', true>;
const CLIP_KEYS = { errorIfNonfinite: true } satisfies Record<'errorIfNonfinite', true>;

/** A parameter AdamW can update: a live float32 tensor (the update's kernel reads and writes float32). */
function checkParam(name: string, p: unknown): void {
  if (!(p instanceof Tensor) || p.dtype !== 'float32') throw typeError('AdamW', name, 'a float32 tensor (a parameter to train)', p);
  if (p.isFreed()) throw new TypeError(`AdamW: ${name} (a float32 tensor of shape [${p.shape.join(', ')}]) has been disposed`);
}

interface ParamState {
  m: Tensor;
  v: Tensor;
  step: number;
}

export class AdamW {
  /** All parameters, groups concatenated in order (the indices optimizer checkpoints use). */
  readonly params: Tensor[];
  readonly groups: { params: Tensor[]; lrScale: number; weightDecay: number }[];
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<Tensor, ParamState>();

  constructor(params: Iterable<Tensor> | readonly ParamGroup[], opts: AdamWOptions) {
    if (params === null || typeof params !== 'object' || typeof (params as Iterable<Tensor>)[Symbol.iterator] !== 'function')
      throw typeError('AdamW', 'params', 'an iterable of tensors or parameter groups', params);
    if (opts === null || typeof opts !== 'object') throw typeError('AdamW', 'options', 'an object with lr', opts);
    checkKeys('AdamW', 'option', opts, ADAMW_KEYS);
    const list = [...params] as (Tensor | ParamGroup)[];
    // as torch ("optimizer got an empty parameter list"): an optimizer of nothing is a mistake upstream. A group without
    // parameters is accepted (a ZeRO-1 rank whose shard of a group is empty: src/distributed/zero.ts)
    if (list.length === 0) throw rangeError('AdamW', 'params is empty: expected the tensors to train (or parameter groups of them) but received none');
    const isGroup = (x: Tensor | ParamGroup): x is ParamGroup => !(x instanceof Tensor);
    if (list.some(isGroup) && !list.every(isGroup)) throw new TypeError('AdamW: pass either tensors or parameter groups, not both');
    const bad = (name: string, v: number, ok: boolean, where = '') => {
      if (!Number.isFinite(v) || !ok) throw new RangeError(`AdamW: invalid ${name} ${v}${where}`);
    };
    this.weightDecay = opts.weightDecay ?? 0.01;
    bad('weightDecay', this.weightDecay, this.weightDecay >= 0);
    this.groups = list.length > 0 && isGroup(list[0])
      ? (list as ParamGroup[]).map((g, i) => {
        if (g === null || typeof g !== 'object' || !Array.isArray(g.params)) throw typeError('AdamW', `parameter group ${i}`, '{ params: Tensor[], lrScale?, weightDecay? }', g);
        // torch's per-group lr has no place here: a group's rate is lr x lrScale, so one schedule moves them all
        checkKeys('AdamW', `key of parameter group ${i}`, g, GROUP_KEYS);
        const scale = g.lrScale ?? 1, decay = g.weightDecay ?? this.weightDecay;
        bad('lrScale', scale, scale >= 0, ` in parameter group ${i}`);
        bad('weightDecay', decay, decay >= 0, ` in parameter group ${i}`);
        g.params.forEach((p, j) => checkParam(`params[${j}] of parameter group ${i}`, p));
        return { params: [...g.params], lrScale: scale, weightDecay: decay };
      })
      : [{ params: list as Tensor[], lrScale: 1, weightDecay: this.weightDecay }];
    if (!isGroup(list[0])) list.forEach((p, i) => checkParam(`params[${i}]`, p));
    this.params = this.groups.flatMap((g) => g.params);
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    bad('lr', this.lr, this.lr >= 0);
    bad('beta1', this.betas[0], this.betas[0] >= 0 && this.betas[0] < 1);
    bad('beta2', this.betas[1], this.betas[1] >= 0 && this.betas[1] < 1);
    bad('eps', this.eps, this.eps >= 0);
    if (new Set(this.params).size !== this.params.length) throw new RangeError('AdamW: a parameter appears twice');
  }

  /** One update of every parameter that has a gradient (others are skipped, as in PyTorch). */
  step(opts: { gradScale?: number } = {}): void {
    opts = checkedOptions('AdamW.step', opts, STEP_KEYS);
    const where = 'AdamW.step';
    // everything checked before any state changes: a refused step leaves the step counts and moments as they were
    // (else the next step's bias correction would count the refused one)
    if (typeof this.lr !== 'number' || !Number.isFinite(this.lr) || this.lr < 0) throw typeError(where, 'lr', 'a finite number >= 0', this.lr);
    if (opts.gradScale !== undefined && (typeof opts.gradScale !== 'number' || !Number.isFinite(opts.gradScale)))
      throw typeError(where, 'gradScale', 'a finite number', opts.gradScale);
    const updated: [Tensor, number][] = [];
    let index = 0; // into this.params
    this.groups.forEach((g, gi) => {
      for (const p of g.params) {
        const name = `parameter ${index} (AdamW.params[${index}], a ${p.dtype} tensor of shape [${p.shape.join(', ')}])`;
        index++;
        // a disposed parameter has no gradient: skipping it, as one without a gradient, would hide the mistake
        if (p.isFreed()) throw new TypeError(`${where}: ${name} ${p.whyFreed()}`);
        if (!p.grad) continue;
        const gr = p.grad;
        if (gr.isFreed()) throw new TypeError(`${where}: the gradient of ${name} ${gr.whyFreed()}`);
        if (p.dtype !== 'float32') throw typeError(where, name, 'a float32 parameter (AdamW updates float32 weights)', p.dtype);
        if (gr.dtype !== 'float32' || gr.device !== p.device || gr.shape.length !== p.shape.length || gr.shape.some((d, i) => d !== p.shape[i]))
          throw typeError(where, `the gradient of ${name}`, `a float32 tensor of the same shape on ${p.device}`, gr);
        updated.push([p, gi]);
      }
    });
    // one native call per group, device and step count (parameters first updated later have fewer steps)
    const calls = new Map<string, Tensor[]>();
    for (const [p, gi] of updated) {
      let st = this.state.get(p);
      if (!st) {
        st = { m: keep(Tensor.zeros(p.shape, { device: p.device })), v: keep(Tensor.zeros(p.shape, { device: p.device })), step: 0 };
        this.state.set(p, st);
      }
      st.step += 1;
      const key = `${gi}:${p.device}:${st.step}`;
      calls.set(key, [...(calls.get(key) ?? []), p]);
    }
    for (const [key, ps] of calls) {
      const [gi, device, step] = key.split(':');
      const sts = ps.map((p) => this.state.get(p)!);
      callOp('adamw_step', device as 'cpu' | 'cuda', ps.map((p) => p.grad!), [...ps, ...sts.map((s) => s.m), ...sts.map((s) => s.v)],
        [ps.length, Number(step), ...ps.map((p) => p.size)],
        [this.lr * this.groups[Number(gi)].lrScale, this.betas[0], this.betas[1], this.eps, this.groups[Number(gi)].weightDecay, opts.gradScale ?? 1]);
      // updated in place: a graph recorded before the step that reads them can no longer be back-propagated (torch's
      // version counter refuses it too)
      for (const p of ps) p.markWritten();
    }
  }

  /** Optimizer state for checkpoints: per parameter index, its step and moment tensors. */
  stateEntries(): { index: number; step: number; m: Tensor; v: Tensor }[] {
    return this.params.flatMap((p, index) => {
      const s = this.state.get(p);
      return s ? [{ index, step: s.step, m: s.m, v: s.v }] : [];
    });
  }

  /** Restores state saved by stateEntries (host data); every entry is checked before any state changes. */
  loadState(entries: { index: number; step: number; m: Float32Array; v: Float32Array }[]): void {
    const where = 'AdamW.loadState';
    if (!Array.isArray(entries)) throw typeError(where, 'entries', 'an array of { index, step, m, v }', entries);
    const seen = new Set<number>();
    entries.forEach((e, k) => {
      const at = `entry ${k}`;
      if (e === null || typeof e !== 'object') throw typeError(where, at, '{ index, step, m, v }', e);
      if (!Number.isInteger(e.index) || e.index < 0 || e.index >= this.params.length)
        throw typeError(where, `${at}'s index`, `an integer in [0, ${this.params.length - 1}] (a parameter's place in AdamW.params)`, e.index);
      if (seen.has(e.index)) throw rangeError(where, `${at}: parameter ${e.index} has two entries`);
      seen.add(e.index);
      // the count of steps taken: the bias corrections of the next step follow from it
      if (!Number.isSafeInteger(e.step) || e.step < 1) throw typeError(where, `${at}'s step`, 'an integer >= 1 (the steps this parameter has taken)', e.step);
      const p = this.params[e.index];
      for (const [name, a] of [['m', e.m], ['v', e.v]] as const) {
        if (!(a instanceof Float32Array)) throw typeError(where, `${at}'s ${name}`, 'a Float32Array', a);
        if (a.length !== p.size) throw rangeError(where, `${at}'s ${name} has ${a.length} elements but parameter ${e.index} (shape [${p.shape.join(', ')}]) has ${p.size}`);
        // a moment that is not finite, or a negative second moment, would turn the next step's update into NaN
        const bad = firstBadMoment(a, name === 'v');
        if (bad >= 0) throw rangeError(where, `${at}'s ${name}[${bad}] is ${a[bad]}: expected a finite number${name === 'v' ? ' >= 0 (a second moment)' : ''}`);
      }
    });
    for (const e of entries) {
      const p = this.params[e.index];
      this.state.get(p)?.m.dispose();
      this.state.get(p)?.v.dispose();
      this.state.set(p, {
        step: e.step,
        m: keep(Tensor.fromArray(e.m, p.shape, { device: p.device })),
        v: keep(Tensor.fromArray(e.v, p.shape, { device: p.device })),
      });
    }
  }

  dispose(): void {
    for (const s of this.state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.state.clear();
  }
}

/** The first element that is not finite (or, for a second moment, negative); -1 for none. A plain loop: 7B moments. */
function firstBadMoment(a: Float32Array, second: boolean): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    // x - x is 0 for a finite x, NaN for NaN or an infinity
    if (x - x !== 0 || (second && x < 0)) return i;
  }
  return -1;
}

/** The global L2 norm of the gradients (parameters without a gradient are ignored). */
export function gradNorm(params: Iterable<Tensor>): number {
  const grads = [...params].map((p) => p.grad).filter((g): g is Tensor => g !== null);
  let total = 0;
  const byDevice = new Map<string, Tensor[]>();
  for (const g of grads) byDevice.set(g.device, [...(byDevice.get(g.device) ?? []), g]);
  for (const [device, gs] of byDevice) {
    const out = sumSquares(gs, device as 'cpu' | 'cuda');
    total += out.toArray()[0];
    out.dispose();
  }
  return Math.sqrt(total);
}

/** The sum of squares of every element of `ts` (all on `device`) as a [1] float32 tensor there: no host read. */
export function sumSquares(ts: Tensor[], device: 'cpu' | 'cuda'): Tensor {
  const out = Tensor.empty([1], { device });
  callOp('sum_squares', device, ts, [out], [ts.length, ...ts.map((t) => t.size)]);
  return out;
}

/**
 * Scales all gradients so their global norm is at most maxNorm (torch.nn.utils.clip_grad_norm_:
 * factor maxNorm / (norm + 1e-6) when it is below 1). Returns the norm before clipping. A non-finite norm
 * throws, or with errorIfNonfinite: false (torch's error_if_nonfinite) is returned with the gradients untouched.
 */
export function clipGradNorm(params: Iterable<Tensor>, maxNorm: number, opts: { errorIfNonfinite?: boolean } = {}): number {
  // a negative maxNorm made a negative factor, flipping every gradient's sign; 0 zeroes them (as torch), Infinity clips none
  if (typeof maxNorm !== 'number' || Number.isNaN(maxNorm)) throw typeError('clipGradNorm', 'maxNorm', 'a number >= 0', maxNorm);
  if (maxNorm < 0) throw rangeError('clipGradNorm', `expected a number >= 0 for maxNorm (the largest global gradient norm to leave) but received ${maxNorm}`);
  opts = checkedOptions('clipGradNorm', opts, CLIP_KEYS);
  const ps = [...params];
  const norm = gradNorm(ps);
  if (!Number.isFinite(norm)) {
    if (opts.errorIfNonfinite === false) return norm; // gradients left as they are; the caller skips the step
    throw new RangeError(`clipGradNorm: the gradient norm is ${norm} (NaN or Inf in a gradient)`);
  }
  const factor = maxNorm / (norm + 1e-6);
  if (factor < 1) {
    for (const p of ps) if (p.grad) callOp('axpby', p.grad.device, [p.grad, p.grad], [p.grad], [p.grad.size], [factor, 0]);
  }
  return norm;
}
