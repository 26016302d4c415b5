// F.*, the differentiable layer: each function checks its arguments, runs ops of the table (callOp ->
// native/<backend>/<op>)
// and, when an input requires grad, records its backward on the tape (src/autograd.ts). Inside
// autocast('bfloat16') (src/amp.ts) linear, patchEmbed and the fused losses run their products on bf16
// copies and return float32 (linear: bf16 with `bf16Output`). Backward
// functions return fresh tensors (the autograd ownership rule); the inputs and outputs a backward closure reads
// are named in its record's `reads` (the caller's scope keeps those and releases the rest, GradNode.reads), while
// `saved` holds what only the backward needs.
import { autocast, bf16Operand, castsToBf16, castTensor, checkStoredWeight, float32Operand } from './amp';
import { isGradEnabled, needsGrad, record } from './autograd';
import { callOp, opConstants } from './call_op';
import { checkedOptions, rangeError, typeError } from './errors';
import { fusedAt, LinearCrossEntropyOptions, VisualWordKLOptions } from './fused';
import { Generator } from './random';
import { Device, Tensor, viewShape } from './tensor';

const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const shapeStr = (s: readonly number[]) => `[${s.join(', ')}]`;

function check(where: string, name: string, t: unknown, opts: { rank?: number; minRank?: number; dtype?: string } = {}): Tensor {
  if (!(t instanceof Tensor)) throw typeError(where, name, 'a Tensor', t);
  if (t.isFreed()) throw new TypeError(`${where}: ${name} ${t.whyFreed()}`);
  if (opts.rank !== undefined && t.rank !== opts.rank) throw rangeError(where, `${name} must be ${opts.rank}-D, got shape ${shapeStr(t.shape)}`);
  if (opts.minRank !== undefined && t.rank < opts.minRank) throw rangeError(where, `${name} must have at least ${opts.minRank} dims, got shape ${shapeStr(t.shape)}`);
  const dtype = opts.dtype ?? 'float';
  if (dtype === 'float' ? t.dtype === 'int32' : t.dtype !== dtype) throw typeError(where, name, dtype === 'float' ? 'a float tensor' : `a ${dtype} tensor`, t);
  return t;
}

function sameShape(where: string, a: Tensor, b: Tensor, an: string, bn: string): void {
  if (a.rank !== b.rank || a.shape.some((s, i) => s !== b.shape[i]))
    throw rangeError(where, `${an} ${shapeStr(a.shape)} and ${bn} ${shapeStr(b.shape)} must have the same shape`);
  if (a.device !== b.device) throw new TypeError(`${where}: ${an} is on ${a.device} but ${bn} is on ${b.device}`);
}

/** A number parameter: finite, optionally an integer and/or >= min. */
function num(where: string, name: string, v: unknown, o: { integer?: boolean; min?: number; positive?: boolean } = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (o.integer && !Number.isInteger(v)))
    throw typeError(where, name, o.integer ? 'an integer' : 'a finite number', v);
  if ((o.min !== undefined && v < o.min) || (o.positive && !(v > 0)))
    throw rangeError(where, `${name} must be ${o.positive ? '> 0' : `>= ${o.min}`}, got ${v}`);
  return v;
}

const like = (t: Tensor, shape: readonly number[] = t.shape) => Tensor.empty(shape, { device: t.device, dtype: t.dtype });

/**
 * callOp into outputs made for this call alone: freed if the op throws (an id out of range, a key-mask value the kernel
 * refuses), so that a caller outside any scope does not keep them until the garbage collector runs.
 */
function callInto(op: string, device: Device, inputs: (Tensor | null)[], outputs: Tensor[], ints?: number[], floats?: number[]): void {
  try {
    callOp(op, device, inputs, outputs, ints, floats);
  } catch (e) {
    for (const t of outputs) t.dispose();
    throw e;
  }
}
const zerosLike = (t: Tensor, shape: readonly number[] = t.shape) => Tensor.zeros(shape, { device: t.device, dtype: t.dtype });

// ------------------------------------------------------------------ shape
/** A view with another shape (no copy; one dimension may be -1, inferred as torch's); its gradient is reshaped back. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  check('F.reshape', 'x', x, { dtype: x?.dtype });
  const out = x.view(viewShape('F.reshape', x.shape, shape));
  // the incoming gradient changes owner and shape, no copy
  if (needsGrad(x)) record('reshape', [x], [out], ([g]) => [g!.moveTo(x.shape)], [], []);
  return out;
}

// ------------------------------------------------------------------ elementwise
function binaryElementwise(where: string, a: Tensor, b: Tensor, an = 'a', bn = 'b'): void {
  check(where, an, a);
  check(where, bn, b);
  sameShape(where, a, b, an, bn);
  // no type promotion (torch would give float32): the kernels take one dtype
  if (a.dtype !== b.dtype) throw new TypeError(`${where}: ${an} is ${a.dtype} but ${bn} is ${b.dtype} (one float dtype for both: cast one first)`);
}

/** alpha * a + beta * b (same shapes). */
export function axpby(a: Tensor, b: Tensor, alpha = 1, beta = 1): Tensor {
  binaryElementwise('F.add', a, b);
  num('F.add', 'alpha', alpha);
  num('F.add', 'beta', beta);
  const out = like(a);
  callInto('axpby', a.device, [a, b], [out], [a.size], [alpha, beta]);
  if (needsGrad(a, b)) {
    // a gradient of alpha = 1 passes through unchanged (no copy); the other input gets its own
    record('axpby', [a, b], [out], ([g]) => {
      const ga = a.requiresGrad ? (alpha === 1 ? g! : scaled(g!, alpha)) : null;
      const gb = b.requiresGrad ? (beta === 1 && ga !== g ? g! : scaled(g!, beta)) : null;
      return [ga, gb];
    }, [], []);
  }
  return out;
}

export const add = (a: Tensor, b: Tensor) => axpby(a, b, 1, 1);
export const sub = (a: Tensor, b: Tensor) => axpby(a, b, 1, -1);

function scaled(g: Tensor, s: number): Tensor {
  const out = like(g);
  callOp('axpby', g.device, [g, out], [out], [g.size], [s, 0]);
  return out;
}

export function scale(x: Tensor, s: number): Tensor {
  check('F.scale', 'x', x);
  num('F.scale', 's', s);
  const out = scaled(x, s);
  if (needsGrad(x)) record('scale', [x], [out], ([g]) => [scaled(g!, s)], [], []);
  return out;
}

export function mul(a: Tensor, b: Tensor): Tensor {
  binaryElementwise('F.mul', a, b);
  const out = like(a);
  callInto('mul', a.device, [a, b], [out], [a.size]);
  if (needsGrad(a, b)) {
    record('mul', [a, b], [out], ([g]) => {
      const ga = a.requiresGrad ? like(a) : null, gb = b.requiresGrad ? like(b) : null;
      if (ga) callOp('mul', a.device, [g, b], [ga], [a.size]);
      if (gb) callOp('mul', a.device, [g, a], [gb], [a.size]);
      return [ga, gb];
    }, [], [a, b]);
  }
  return out;
}

/** x [B, ...rest] + y [...rest], y broadcast over the leading dim. */
export function addBroadcast(x: Tensor, y: Tensor): Tensor {
  const where = 'F.addBroadcast';
  check(where, 'x', x, { minRank: 1, dtype: 'float32' });
  check(where, 'y', y, { dtype: 'float32' });
  const n = y.size;
  // y of more dims than x (slice(negative) would compare x's last dims with y's first: [3, 1, 1] taken as [3])
  if (y.rank > x.rank || x.size % Math.max(n, 1) !== 0 || prod(x.shape.slice(x.rank - y.rank)) !== n || x.shape.slice(x.rank - y.rank).some((s, i) => s !== y.shape[i]))
    throw rangeError(where, `y ${shapeStr(y.shape)} must match the trailing dims of x ${shapeStr(x.shape)}`);
  const B = n === 0 ? 0 : x.size / n;
  const out = like(x);
  callInto('add_broadcast', x.device, [x, y], [out], [B, n]);
  if (needsGrad(x, y)) {
    record('add_broadcast', [x, y], [out], ([g]) => {
      const gy = y.requiresGrad ? Tensor.empty(y.shape, { device: y.device, dtype: y.dtype }) : null;
      if (gy) callOp('sum_rows', x.device, [g], [gy], [B, n, 0]);
      return [x.requiresGrad ? g! : null, gy]; // x's gradient passes through
    }, [], []);
  }
  return out;
}

/** sum of all elements -> [1]. */
export function sum(x: Tensor): Tensor {
  check('F.sum', 'x', x, { dtype: 'float32' });
  const out = Tensor.empty([1], { device: x.device, dtype: x.dtype });
  callInto('sum_rows', x.device, [x], [out], [x.size, 1, 0]);
  if (needsGrad(x)) {
    record('sum', [x], [out], ([g]) => {
      // ones scaled by g on the device: reading g would make the backward wait for the host
      const gx = like(x);
      callOp('fill', x.device, [], [gx], [x.size], [1]);
      callOp('mul_scalar', x.device, [gx, g!], [gx], [x.size]);
      return [gx];
    }, [], []);
  }
  return out;
}

// ------------------------------------------------------------------ matmul / linear
/**
 * a @ b with optional transposes. a [..., M, K] (or [..., K, M] with transA), b [K, N] shared or
 * [..., K, N] with the same leading dims (transB: [.., N, K]). Returns [..., M, N].
 */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}
const MATMUL_KEYS = { transA: true, transB: true } satisfies Record<keyof MatmulOptions, true>;

export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const where = 'F.matmul';
  opts = checkedOptions(where, opts, MATMUL_KEYS);
  check(where, 'a', a, { minRank: 2 });
  check(where, 'b', b, { minRank: 2 });
  const ta = !!opts.transA, tb = !!opts.transB;
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const M = ta ? ac : ar, K = ta ? ar : ac, Kb = tb ? bc : br, N = tb ? br : bc;
  if (K !== Kb) throw rangeError(where, `inner dimensions differ: a ${shapeStr(a.shape)}${ta ? '^T' : ''} @ b ${shapeStr(b.shape)}${tb ? '^T' : ''}`);
  const batchDims = a.shape.slice(0, -2);
  const batch = prod(batchDims);
  const bShared = b.rank === 2;
  if (!bShared && (b.rank !== a.rank || b.shape.slice(0, -2).some((s, i) => s !== batchDims[i])))
    throw rangeError(where, `batch dims of a ${shapeStr(a.shape)} and b ${shapeStr(b.shape)} differ`);
  if (a.device !== b.device) throw new TypeError(`${where}: a is on ${a.device} but b is on ${b.device}`);
  const out = Tensor.empty([...batchDims, M, N], { device: a.device, dtype: a.dtype });
  callInto('matmul', a.device, [a, b, null], [out], [batch, M, N, K, +ta, +tb, 0, 0, M * K, bShared ? 0 : K * N, M * N], [1]);
  if (needsGrad(a, b)) {
    record('matmul', [a, b], [out], ([g]) => {
      const sb = bShared ? 0 : K * N;
      let ga: Tensor | null = null, gb: Tensor | null = null;
      if (a.requiresGrad) {
        ga = like(a);
        if (!ta) mm(g!, b, ga, batch, M, K, N, false, !tb, M * N, sb, M * K, false); // dA = dC op(B)^T
        else mm(b, g!, ga, batch, K, M, N, tb, true, sb, M * N, M * K, false);      // dA^T = op(B) dC^T
      }
      if (b.requiresGrad) {
        // dB = op(A)^T dC (or its transpose when B is stored transposed), summed over the batch when B
        // is shared: strideC 0 with accumulate adds every batch entry into the same dB.
        gb = Tensor.zeros(b.shape, { device: b.device, dtype: b.dtype });
        const sc = bShared ? 0 : K * N;
        if (M === 0) {
          // an empty product: dB stays zero (and the batched calls below would have all strides 0)
        } else if (bShared && !ta) {
          // A and dC are contiguous [batch * M, K] and [batch * M, N]: one GEMM over all rows
          if (!tb) mm(a, g!, gb, 1, K, N, batch * M, true, false, 0, 0, 0, true);
          else mm(g!, a, gb, 1, N, K, batch * M, true, false, 0, 0, 0, true);
        } else if (!tb) mm(a, g!, gb, batch, K, N, M, !ta, false, M * K, M * N, sc, true);
        else mm(g!, a, gb, batch, N, K, M, true, ta, M * N, M * K, sc, true);
      }
      return [ga, gb];
    }, [], [a, b]); // the product's own values are not read: a scope frees them
  }
  return out;
}

/** Engine matmul: C[i] (=|+=) op(A[i]) op(B[i]) for i < batch, [M, K] x [K, N] after the transposes. */
function mm(A: Tensor, B: Tensor, C: Tensor, batch: number, M: number, N: number, K: number, ta: boolean, tb: boolean, sA: number, sB: number, sC: number, accumulate: boolean, bias: Tensor | null = null): void {
  callOp('matmul', A.device, [A, B, bias], [C], [batch, M, N, K, +ta, +tb, bias ? 1 : 0, +accumulate, sA, sB, sC], [1]);
}

export interface LinearOptions {
  /**
   * Under autocast('bfloat16'), return the product in bfloat16 (what torch's autocast returns) rather than float32,
   * for a consumer that takes bf16 (F.swiglu, F.activation, another F.linear, which then takes it without a cast):
   * the activation and what its consumers save for the backward take half the memory, and a cast pass goes away.
   * Its gradient arrives in bf16. Ignored outside autocast('bfloat16'). Default false.
   */
  bf16Output?: boolean;
}
const LINEAR_KEYS = { bf16Output: true } satisfies Record<keyof LinearOptions, true>;

/** x [..., in] @ w^T + b, w [out, in] (PyTorch/HF layout), b [out]. */
export function linear(x: Tensor, w: Tensor, b: Tensor | null = null, opts?: LinearOptions): Tensor {
  return linearsOf('F.linear', x, [w], [b], (i) => (i === 0 ? 'w' : 'b'), checkedOptions('F.linear', opts, LINEAR_KEYS))[0];
}

/**
 * Several Linears of one input: ys[i] = F.linear(x, ws[i], bs[i]), as attention's q/k/v and the MLP's gate/up
 * projections take them. The results and gradients are F.linear's; the difference is the work around the products:
 * under autocast('bfloat16') x is cast to bf16 and saved once (not once per weight), and the backward sums the
 * weights' contributions to dx in their GEMMs (accumulate) instead of autograd adding separate gradients.
 */
export function linears(x: Tensor, ws: readonly Tensor[], bs?: readonly (Tensor | null)[] | null, opts?: LinearOptions): Tensor[] {
  const where = 'F.linears';
  if (!Array.isArray(ws) || ws.length === 0) throw typeError(where, 'ws', 'a non-empty array of weight tensors', ws);
  const biases = bs ?? ws.map(() => null);
  if (!Array.isArray(biases) || biases.length !== ws.length) throw typeError(where, 'bs', `an array of ${ws.length} biases (null for none)`, bs);
  return linearsOf(where, x, ws, biases, (i) => (i < ws.length ? `ws[${i}]` : `bs[${i - ws.length}]`), checkedOptions(where, opts, LINEAR_KEYS));
}

/**
 * The products of F.linear / F.linears, in the precision of the region: float32; a frozen weight stored in bf16
 * widened for each product (storeFrozenWeights; never kept in float32 between forward and backward); or, under
 * autocast('bfloat16'), bf16 operands with fp32 accumulation into float32 outputs (bias float32), the backward casting
 * each gradient to bf16 for dx = g w and dw = g^T x. Saved for the backward: x's bf16 copy (half of x) in bf16, and
 * the weights' copies that the region does not cache (it recasts those it has freed since). A bf16 x (a bf16Output
 * upstream) is taken as it is, and its gradient is bf16.
 */
function linearsOf(where: string, x: Tensor, ws: readonly Tensor[], bs: readonly (Tensor | null)[], nameOf: (i: number) => string, opts: LinearOptions): Tensor[] {
  check(where, 'x', x, { minRank: 1 });
  if (opts.bf16Output !== undefined && typeof opts.bf16Output !== 'boolean') throw typeError(where, 'bf16Output', 'a boolean', opts.bf16Output);
  const I = x.shape[x.rank - 1];
  ws.forEach((w, i) => {
    check(where, nameOf(i), w, { rank: 2 });
    const b = bs[i];
    if (b !== null && b !== undefined) check(where, nameOf(ws.length + i), b, { rank: 1 });
    if (w.shape[1] !== I) throw rangeError(where, `x ${shapeStr(x.shape)} has ${I} features but ${nameOf(i)} ${shapeStr(w.shape)} expects ${w.shape[1]}`);
    if (b && b.shape[0] !== w.shape[0]) throw rangeError(where, `${nameOf(ws.length + i)} ${shapeStr(b.shape)} must have ${w.shape[0]} entries`);
    for (const [n, t] of [[nameOf(i), w], [nameOf(ws.length + i), b]] as const) if (t && t.device !== x.device) throw new TypeError(`${where}: ${n} is on ${t.device} but x is on ${x.device}`);
    checkStoredWeight(where, nameOf(i), w);
  });
  const R = prod(x.shape.slice(0, -1)); // rows also when there is no feature (I = 0: x.size is 0)
  const bias = (i: number) => bs[i] ?? null;
  const bf16 = castsToBf16(x, ...ws, ...bs);
  // the operand of weight i: the region's bf16 copy (or an owned cast); a bf16-stored weight widened (owned); or w
  const operand = (w: Tensor): { t: Tensor; owned: boolean } =>
    bf16 ? bf16Operand(w) : w.dtype === 'bfloat16' && x.dtype === 'float32' ? float32Operand(w) : { t: w, owned: false };
  const xo = bf16 && x.dtype !== 'bfloat16' ? castTensor(x, 'bfloat16') : x;
  const outDtype = bf16 ? (opts.bf16Output ? 'bfloat16' : 'float32') : x.dtype;
  const outs: Tensor[] = [];
  const kept: { t: Tensor; owned: boolean }[] = []; // bf16: the weight operands, for the backward
  const release = () => {
    if (xo !== x) xo.dispose();
    for (const k of kept) if (k.owned) k.t.dispose();
  };
  try {
    ws.forEach((w, i) => {
      const O = w.shape[0];
      const out = Tensor.empty([...x.shape.slice(0, -1), O], { device: x.device, dtype: outDtype });
      outs.push(out);
      const wo = operand(w);
      if (bf16) kept.push(wo);
      try {
        mm(xo, wo.t, out, 1, R, O, I, false, true, 0, 0, 0, false, bias(i));
      } finally {
        if (!bf16 && wo.owned) wo.t.dispose();
      }
    });
  } catch (e) {
    release();
    for (const o of outs) o.dispose();
    throw e;
  }
  if (!needsGrad(x, ...ws, ...bs)) {
    release();
    return outs;
  }
  // Which gradients the backward computes is decided here, at the forward, as torch records its graph's edges. x is
  // read only for a weight's gradient: with every weight frozen (LoRA's base) it is not kept (torch's mm keeps an
  // operand only when the other needs a gradient).
  const wantDx = x.requiresGrad, wantDw = ws.map((w) => w.requiresGrad), wantDb = bs.map((b) => !!b && b.requiresGrad);
  const needX = wantDw.some(Boolean);
  if (!needX && xo !== x) xo.dispose();
  // the weights' own bf16 copies are read only for dx
  const ownedW = kept.filter((k) => k.owned).map((k) => k.t);
  if (!wantDx) for (const t of ownedW) t.dispose();
  record(ws.length === 1 ? 'linear' : 'linears', [x, ...ws, ...bs.map((b) => b ?? null)], outs, (gs) => {
    let gx: Tensor | null = null;
    const gws: (Tensor | null)[] = [], gbs: (Tensor | null)[] = [];
    ws.forEach((w, i) => {
      const g = gs[i], b = bias(i), O = w.shape[0];
      if (!g) {
        gws.push(null);
        gbs.push(null);
        return;
      }
      const go = bf16 && g.dtype !== 'bfloat16' ? castTensor(g, 'bfloat16') : g;
      try {
        if (wantDx) {
          // the region's copy may have been freed since the forward (a backward after the region ended): recast
          const wo = bf16 ? (kept[i].owned || !kept[i].t.disposed ? kept[i] : bf16Operand(w)) : operand(w);
          const first = gx === null;
          gx ??= like(x);
          try {
            mm(go, wo.t, gx, 1, R, I, O, false, false, 0, 0, 0, !first);                  // dx (+)= g w
          } finally {
            if (wo !== kept[i] && wo.owned) wo.t.dispose();
          }
        }
        const gw = wantDw[i] ? like(w) : null;
        if (gw) mm(go, xo, gw, 1, O, I, R, true, false, 0, 0, 0, false);                  // dw = g^T x
        gws.push(gw);
        const gb = b && wantDb[i] ? like(b) : null;
        if (gb) {
          const gf = g.dtype === 'float32' ? g : castTensor(g, 'float32');              // sum_rows sums float32
          try {
            callOp('sum_rows', x.device, [gf], [gb], [R, O, 0]);                        // db = sum_rows g
          } finally {
            if (gf !== g) gf.dispose();
          }
        }
        gbs.push(gb);
      } finally {
        if (go !== g) go.dispose();
      }
    });
    return [gx, ...gws, ...gbs];
  }, [...(needX && xo !== x ? [xo] : []), ...(wantDx ? ownedW : [])], [...(wantDx ? ws : []), ...(needX && xo === x ? [x] : [])]);
  return outs;
}

/**
 * Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p), else 0 (torch's
 * F.dropout in training). The mask is a function of a seed drawn from `generator` and the element index
 * (native/core/dropout.h), computed on the tensor's device, never uploaded or stored: the backward rebuilds it.
 */
export function dropout(x: Tensor, p: number, generator: Generator): Tensor {
  const where = 'F.dropout';
  check(where, 'x', x);
  num(where, 'p', p, { min: 0 });
  if (!(p < 1)) throw rangeError(where, `p must be in [0, 1), got ${p}`);
  if (!(generator instanceof Generator)) throw typeError(where, 'generator', 'a Generator', generator);
  if (p === 0) return x;
  // 53 random bits: the seed of this call's mask
  const seed = Math.floor(generator.uniform() * 2 ** 21) * 2 ** 32 + Math.floor(generator.uniform() * 2 ** 32);
  const threshold = Math.round(p * 2 ** 24), scale = 1 / (1 - p);
  const apply = (t: Tensor) => {
    const out = like(t);
    callInto('dropout', t.device, [t], [out], [t.size, seed, threshold], [scale]);
    return out;
  };
  const out = apply(x);
  if (needsGrad(x)) record('dropout', [x], [out], ([g]) => [apply(g!)], [], []);
  return out;
}

/** x in another float dtype (float32 <-> bfloat16); the gradient is cast back to x's dtype. */
export function cast(x: Tensor, dtype: 'float32' | 'bfloat16'): Tensor {
  const where = 'F.cast';
  check(where, 'x', x);
  if (dtype !== 'float32' && dtype !== 'bfloat16') throw typeError(where, 'dtype', "'float32' or 'bfloat16'", dtype);
  const out = castTensor(x, dtype);
  if (needsGrad(x)) record('cast', [x], [out], ([g]) => [castTensor(g!, x.dtype as 'float32' | 'bfloat16')], [], []);
  return out;
}

// ------------------------------------------------------------------ embeddings and norms
/** table[ids]: ids int32 [...], table [V, D] -> [..., D]. */
export function embedding(ids: Tensor, table: Tensor): Tensor {
  const where = 'F.embedding';
  check(where, 'ids', ids, { dtype: 'int32' });
  check(where, 'table', table, { rank: 2, dtype: 'float32' });
  const [V, D] = table.shape, n = ids.size;
  const out = Tensor.empty([...ids.shape, D], { device: table.device, dtype: table.dtype });
  callInto('embedding_forward', table.device, [ids, table], [out], [n, V, D]);
  if (needsGrad(table)) {
    record('embedding', [ids, table], [out], ([g]) => {
      const gt = zerosLike(table);
      callOp('embedding_backward', table.device, [ids, g], [gt], [n, V, D]);
      return [null, gt];
    }, [], [ids]);
  }
  return out;
}

function rowsOf(where: string, x: Tensor, w: Tensor, name: string): [number, number] {
  const C = x.shape[x.rank - 1];
  if (w.rank !== 1 || w.shape[0] !== C) throw rangeError(where, `${name} ${shapeStr(w.shape)} must be [${C}] for x ${shapeStr(x.shape)}`);
  return [C === 0 ? 0 : x.size / C, C];
}

/** RMSNorm over the last dim (LLaMA). */
export function rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
  const where = 'F.rmsNorm';
  check(where, 'x', x, { minRank: 1 });
  check(where, 'w', w);
  num(where, 'eps', eps, { min: 0 });
  const [R, C] = rowsOf(where, x, w, 'w');
  const out = like(x);
  const rstd = Tensor.empty([R], { device: x.device });
  callInto('rms_norm_forward', x.device, [x, w], [out, rstd], [R, C], [eps]);
  if (needsGrad(x, w)) {
    record('rms_norm', [x, w], [out], ([g]) => {
      const gx = like(x), gw = zerosLike(w);
      callOp('rms_norm_backward', x.device, [g, x, w, rstd], [gx, gw], [R, C]);
      return [x.requiresGrad ? gx : (gx.dispose(), null), w.requiresGrad ? gw : (gw.dispose(), null)];
    }, [rstd], [x, w]);
  } else {
    rstd.dispose();
  }
  return out;
}

/** LayerNorm over the last dim (biased variance, as PyTorch). */
export function layerNorm(x: Tensor, w: Tensor, b: Tensor, eps: number): Tensor {
  const where = 'F.layerNorm';
  check(where, 'x', x, { minRank: 1, dtype: 'float32' });
  check(where, 'w', w, { dtype: 'float32' });
  check(where, 'b', b, { dtype: 'float32' });
  num(where, 'eps', eps, { min: 0 });
  const [R, C] = rowsOf(where, x, w, 'w');
  rowsOf(where, x, b, 'b');
  const out = like(x);
  const mean = Tensor.empty([R], { device: x.device }), rstd = Tensor.empty([R], { device: x.device });
  callInto('layer_norm_forward', x.device, [x, w, b], [out, mean, rstd], [R, C], [eps]);
  if (needsGrad(x, w, b)) {
    record('layer_norm', [x, w, b], [out], ([g]) => {
      const gx = like(x), gw = zerosLike(w), gb = zerosLike(b);
      callOp('layer_norm_backward', x.device, [g, x, w, mean, rstd], [gx, gw, gb], [R, C]);
      const keepOrDrop = (t: Tensor, want: boolean) => (want ? t : (t.dispose(), null));
      return [keepOrDrop(gx, x.requiresGrad), keepOrDrop(gw, w.requiresGrad), keepOrDrop(gb, b.requiresGrad)];
    }, [mean, rstd], [x, w]);
  } else {
    mean.dispose();
    rstd.dispose();
  }
  return out;
}

/** Rotary position embedding on x [B, T, H, Dh] (HF LLaMA rotate_half), positions posOffset + t. */
export function rope(x: Tensor, theta: number, posOffset = 0): Tensor {
  const where = 'F.rope';
  check(where, 'x', x, { rank: 4 });
  num(where, 'theta', theta, { positive: true });
  num(where, 'posOffset', posOffset, { integer: true, min: 0 });
  const [B, T, H, Dh] = x.shape;
  if (Dh % 2 !== 0) throw rangeError(where, `head size ${Dh} must be even`);
  const out = like(x);
  callInto('rope', x.device, [x], [out], [B, T, H, Dh, posOffset, 0], [theta]);
  if (needsGrad(x)) {
    record('rope', [x], [out], ([g]) => {
      const gx = like(x);
      callOp('rope', x.device, [g], [gx], [B, T, H, Dh, posOffset, 1], [theta]);
      return [gx];
    }, [], []);
  }
  return out;
}

/** softmax over the last dim. */
export function softmax(x: Tensor): Tensor {
  check('F.softmax', 'x', x, { minRank: 1, dtype: 'float32' });
  const C = x.shape[x.rank - 1], R = C === 0 ? 0 : x.size / C;
  const out = like(x);
  callInto('softmax_forward', x.device, [x], [out], [R, C]);
  if (needsGrad(x)) {
    record('softmax', [x], [out], ([g]) => {
      const gx = like(x);
      callOp('softmax_backward', x.device, [g, out], [gx], [R, C]);
      return [gx];
    }, [], [out]);
  }
  return out;
}

// ------------------------------------------------------------------ activations
/** The activation kinds; their numbers come from the op table (native/core/activation.h). */
export type Activation = 'gelu' | 'geluTanh' | 'quickGelu' | 'silu';

export function activation(x: Tensor, kind: Activation): Tensor {
  check('F.activation', 'x', x);
  const kinds = opConstants().activation;
  if (typeof kind !== 'string' || !Object.prototype.hasOwnProperty.call(kinds, kind)) throw typeError('F.activation', 'kind', Object.keys(kinds).join(' | '), kind);
  const k = kinds[kind];
  const out = like(x);
  callInto('activation_forward', x.device, [x], [out], [x.size, k]);
  if (needsGrad(x)) {
    record(kind, [x], [out], ([g]) => {
      const gx = like(x);
      callOp('activation_backward', x.device, [g, x], [gx], [x.size, k]);
      return [gx];
    }, [], [x]);
  }
  return out;
}
export const gelu = (x: Tensor) => activation(x, 'gelu');
export const geluTanh = (x: Tensor) => activation(x, 'geluTanh');
export const quickGelu = (x: Tensor) => activation(x, 'quickGelu');
export const silu = (x: Tensor) => activation(x, 'silu');

/** silu(gate) * up (LLaMA MLP). */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  binaryElementwise('F.swiglu', gate, up, 'gate', 'up');
  const out = like(gate);
  callInto('swiglu_forward', gate.device, [gate, up], [out], [gate.size]);
  if (needsGrad(gate, up)) {
    record('swiglu', [gate, up], [out], ([g]) => {
      const gg = like(gate), gu = like(up);
      callOp('swiglu_backward', gate.device, [g, gate, up], [gg, gu], [gate.size]);
      return [gate.requiresGrad ? gg : (gg.dispose(), null), up.requiresGrad ? gu : (gu.dispose(), null)];
    }, [], [gate, up]);
  }
  return out;
}

// ------------------------------------------------------------------ concatenation, slicing, gathering
// A tensor split at `axis` is [outer, axisLen * inner] rows; copy_2d moves whole row segments.
function axisGeometry(where: string, x: Tensor, axis: number): { outer: number; inner: number; ax: number } {
  if (typeof axis !== 'number' || !Number.isInteger(axis)) throw typeError(where, 'axis', 'an integer', axis);
  const ax = axis < 0 ? axis + x.rank : axis;
  if (ax < 0 || ax >= x.rank) throw rangeError(where, `axis ${axis} is out of range for shape ${shapeStr(x.shape)}`);
  return { outer: prod(x.shape.slice(0, ax)), inner: prod(x.shape.slice(ax + 1)), ax };
}

/** Concatenation along `axis` (the other dims must agree). */
export function concat(xs: Tensor[], axis = 0): Tensor {
  const where = 'F.concat';
  if (!Array.isArray(xs) || xs.length === 0) throw typeError(where, 'xs', 'a non-empty array of tensors', xs);
  for (let i = 0; i < xs.length; i++) check(where, `xs[${i}]`, xs[i], { dtype: 'float32' }); // (forEach would skip holes)
  const { outer, inner, ax } = axisGeometry(where, xs[0], axis);
  for (const [i, x] of xs.entries()) {
    if (x.rank !== xs[0].rank || x.shape.some((s, d) => d !== ax && s !== xs[0].shape[d]) || x.device !== xs[0].device)
      throw rangeError(where, `xs[${i}] ${shapeStr(x.shape)} does not match xs[0] ${shapeStr(xs[0].shape)} outside axis ${ax}`);
  }
  const total = xs.reduce((a, x) => a + x.shape[ax], 0);
  const shape = [...xs[0].shape];
  shape[ax] = total;
  const out = Tensor.empty(shape, { device: xs[0].device, dtype: xs[0].dtype });
  const dstStride = total * inner;
  let off = 0;
  const offsets: number[] = [];
  for (const x of xs) {
    const cols = x.shape[ax] * inner;
    offsets.push(off);
    callOp('copy_2d', x.device, [x], [out], [outer, cols, cols, dstStride, 0, off, 0]);
    off += cols;
  }
  if (needsGrad(...xs)) {
    record('concat', xs, [out], ([g]) =>
      xs.map((x, i) => {
        if (!x.requiresGrad) return null;
        const cols = x.shape[ax] * inner;
        const gx = like(x);
        callOp('copy_2d', x.device, [g], [gx], [outer, cols, dstStride, cols, offsets[i], 0, 0]);
        return gx;
      }),
    [], []);
  }
  return out;
}

/**
 * Writes src into dst along `axis` at `start`, in place: dst[..., start:start+n, ...] = src (every other axis equal).
 * Not differentiable (a cache's storage: generation's KV cache); an error if either side needs a gradient.
 */
export function writeAt(dst: Tensor, src: Tensor, axis: number, start: number): void {
  const where = 'F.writeAt';
  check(where, 'dst', dst);
  check(where, 'src', src);
  if (needsGrad(dst, src)) throw new TypeError(`${where}: not differentiable; dst and src must not need a gradient`);
  if (src.dtype !== dst.dtype || src.device !== dst.device) throw new TypeError(`${where}: src is ${src.dtype} on ${src.device} but dst is ${dst.dtype} on ${dst.device}`);
  const { outer, inner, ax } = axisGeometry(where, dst, axis);
  if (src.rank !== dst.rank || src.shape.some((n, i) => i !== ax && n !== dst.shape[i]))
    throw rangeError(where, `src ${shapeStr(src.shape)} must match dst ${shapeStr(dst.shape)} except along axis ${ax}`);
  const n = src.shape[ax];
  if (typeof start !== 'number' || !Number.isInteger(start) || start < 0) throw typeError(where, 'start', 'a non-negative integer', start);
  if (start + n > dst.shape[ax]) throw rangeError(where, `rows [${start}, ${start + n}) outside dst's ${dst.shape[ax]} along axis ${ax}`);
  if (outer === 0 || n * inner === 0) return;
  callOp('copy_2d', dst.device, [src], [dst], [outer, n * inner, n * inner, dst.shape[ax] * inner, 0, start * inner, 0]);
  dst.markWritten();
}

/** x[..., start:start+length, ...] along `axis` (a copy). */
export function slice(x: Tensor, axis: number, start: number, length: number): Tensor {
  const where = 'F.slice';
  check(where, 'x', x, { minRank: 1, dtype: 'float32' });
  const { outer, inner, ax } = axisGeometry(where, x, axis);
  const L = x.shape[ax];
  num(where, 'start', start, { integer: true, min: 0 });
  num(where, 'length', length, { integer: true, min: 0 });
  if (start + length > L)
    throw rangeError(where, `[${start}, ${start + length}) is outside axis ${ax} of length ${L}`);
  const shape = [...x.shape];
  shape[ax] = length;
  const out = like(x, shape);
  const cols = length * inner, srcStride = L * inner;
  callInto('copy_2d', x.device, [x], [out], [outer, cols, srcStride, cols, start * inner, 0, 0]);
  if (needsGrad(x)) {
    record('slice', [x], [out], ([g]) => {
      const gx = zerosLike(x);
      callOp('copy_2d', x.device, [g], [gx], [outer, cols, cols, srcStride, 0, start * inner, 1]);
      return [gx];
    }, [], []);
  }
  return out;
}

/** Rows of src [S, ...] picked by idx int32 [n] -> [n, ...] (splicing image features into sequences). */
export function gatherRows(src: Tensor, idx: Tensor): Tensor {
  const where = 'F.gatherRows';
  check(where, 'src', src, { minRank: 1, dtype: 'float32' });
  check(where, 'idx', idx, { rank: 1, dtype: 'int32' });
  const S = src.shape[0], C = S === 0 ? prod(src.shape.slice(1)) : src.size / S, n = idx.shape[0];
  const out = like(src, [n, ...src.shape.slice(1)]);
  callInto('gather_rows', src.device, [src, idx], [out], [S, n, C]);
  if (needsGrad(src)) {
    record('gather_rows', [src, idx], [out], ([g]) => {
      const gs = zerosLike(src);
      callOp('scatter_add_rows', src.device, [g, idx], [gs], [S, n, C]);
      return [gs, null];
    }, [], [idx]);
  }
  return out;
}

// ------------------------------------------------------------------ attention
export interface AttentionOptions {
  /**
   * Causal mask aligned bottom-right: query i sees keys up to Tk - Tq + i (HF's with a KV cache: the new queries are
   * the last positions). With Tq = Tk it is the usual one; torch SDPA's is_causal aligns top-left instead.
   */
  causal?: boolean;
  /** int32 [B, Tk]: 1 = key visible, 0 = padding. */
  keyMask?: Tensor | null;
  /** Default 1/sqrt(Dh). */
  scale?: number;
}
const ATTENTION_KEYS = { causal: true, keyMask: true, scale: true } satisfies Record<keyof AttentionOptions, true>;

/** Multi-head attention, q [B, Tq, Hq, Dh], k and v [B, Tk, Hkv, Dh] (grouped-query when Hkv < Hq). */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const where = 'F.attention';
  opts = checkedOptions(where, opts, ATTENTION_KEYS);
  check(where, 'q', q, { rank: 4 });
  check(where, 'k', k, { rank: 4 });
  check(where, 'v', v, { rank: 4 });
  const [B, Tq, Hq, Dh] = q.shape, [Bk, Tk, Hkv, Dk] = k.shape;
  sameShape(where, k, v, 'k', 'v');
  if (Bk !== B || Dk !== Dh) throw rangeError(where, `k ${shapeStr(k.shape)} does not fit q ${shapeStr(q.shape)}`);
  if (Hkv === 0 || Hq % Hkv !== 0) throw rangeError(where, `query heads (${Hq}) must be a multiple of key/value heads (${Hkv})`);
  // the default scale 1 / sqrt(Dh) would be infinite (the kernel's "scale must be finite" names no shape)
  if (Dh === 0) throw rangeError(where, `q ${shapeStr(q.shape)} has heads of size 0: attention needs a head size >= 1`);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype) throw new TypeError(`${where}: q, k and v must share one float dtype, got ${q.dtype}, ${k.dtype} and ${v.dtype}`);
  const mask = opts.keyMask ?? null;
  if (mask) {
    check(where, 'keyMask', mask, { rank: 2, dtype: 'int32' });
    if (mask.shape[0] !== B || mask.shape[1] !== Tk) throw rangeError(where, `keyMask ${shapeStr(mask.shape)} must be [${B}, ${Tk}]`);
  }
  const ints = [B, Tq, Tk, Hq, Hkv, Dh, opts.causal ? 1 : 0, mask ? 1 : 0];
  const floats = [opts.scale === undefined ? 1 / Math.sqrt(Dh) : num(where, 'scale', opts.scale)];
  const out = like(q);
  const lse = Tensor.empty([B, Hq, Tq], { device: q.device });
  callInto('attention_forward', q.device, [q, k, v, mask], [out, lse], ints, floats);
  if (needsGrad(q, k, v)) {
    record('attention', [q, k, v], [out], ([g]) => {
      const gq = like(q), gk = like(k), gv = like(v);
      callOp('attention_backward', q.device, [g, q, k, v, out, lse, mask], [gq, gk, gv], ints, floats);
      const keepOrDrop = (t: Tensor, want: boolean) => (want ? t : (t.dispose(), null));
      return [keepOrDrop(gq, q.requiresGrad), keepOrDrop(gk, k.requiresGrad), keepOrDrop(gv, v.requiresGrad)];
    }, [lse], [q, k, v, out, mask]); // the mask is no input of the node, but the backward reads it too
  } else {
    lse.dispose();
  }
  return out;
}

// ------------------------------------------------------------------ vision
/**
 * Patch embedding of a ViT: images [B, C, H, W], weight [D, C, p, p] (a stride-p Conv2d without bias)
 * -> [B, P, D], P = (H / p)(W / p) patches in row-major order. Gradients flow to the weight only.
 */
export function patchEmbed(images: Tensor, weight: Tensor): Tensor {
  const where = 'F.patchEmbed';
  check(where, 'images', images, { rank: 4 });
  check(where, 'weight', weight, { rank: 4 });
  const [B, C, H, W] = images.shape, [D, Cw, p, p2] = weight.shape;
  if (Cw !== C || p !== p2) throw rangeError(where, `weight ${shapeStr(weight.shape)} does not fit images ${shapeStr(images.shape)}`);
  if (H % p !== 0 || W % p !== 0) throw rangeError(where, `image size ${H}x${W} is not a multiple of the patch size ${p}`);
  // under noGrad nothing is recorded, so images that require grad are fine there (as torch)
  if (needsGrad(images)) throw new TypeError(`${where}: images requires grad, but gradients with respect to the pixels are not supported`);
  const P = (H / p) * (W / p), K = C * p * p;
  let cols = Tensor.empty([B, P, K], { device: images.device, dtype: images.dtype });
  callInto('im2col', images.device, [images], [cols], [B, C, H, W, p]);
  // autocast('bfloat16'): the patch columns and the weight as bf16 operands (fp32 output and gradient)
  const bf16 = castsToBf16(images, weight);
  if (bf16) {
    const c16 = castTensor(cols, 'bfloat16');
    cols.dispose();
    cols = c16;
  }
  checkStoredWeight(where, 'weight', weight);
  const wop = bf16 ? bf16Operand(weight) : cols.dtype === 'float32' ? float32Operand(weight) : { t: weight, owned: false };
  const out = Tensor.empty([B, P, D], { device: images.device, dtype: 'float32' });
  try {
    mm(cols, wop.t, out, 1, B * P, D, K, false, true, 0, 0, 0, false);
  } catch (e) {
    // refused (a dtype pair the product does not take): nothing of this call outlives it
    cols.dispose();
    out.dispose();
    throw e;
  } finally {
    if (wop.owned) wop.t.dispose();
  }
  if (needsGrad(weight)) {
    record('patch_embed', [images, weight], [out], ([g]) => {
      const gw = zerosLike(weight);
      const gop = bf16 ? castTensor(g!, 'bfloat16') : g!;
      try {
        mm(gop, cols, gw, 1, D, K, B * P, true, false, 0, 0, 0, true);
      } finally {
        if (gop !== g) gop.dispose();
      }
      return [null, gw];
    }, [cols], []); // the columns alone (saved): not the pixels' or the output's values, nor the weight's (its shape)
  } else {
    cols.dispose();
  }
  return out;
}

// ------------------------------------------------------------------ fused losses
// The kernels compute loss and gradients in one pass; the op keeps the gradients as `saved` and its
// backward only scales them by the upstream gradient, so the fusion (and its bounded memory) is kept.
// Only the gradients of operands that require one are computed (gradOutputs): a frozen lm_head (LoRA) costs
// no [V, d] float32 buffer and no weight-gradient GEMM.

// The loss stays on the device (deviceLoss) and the backward scales the saved gradients by the upstream
// gradient there too (mul_scalar): the host never waits for either (one host synchronisation per training
// step, tests/train/host_syncs.test.ts).
function takeScaled(t: Tensor | null, g: Tensor, want: boolean): Tensor | null {
  if (!t || !want) return null;
  callOp('mul_scalar', t.device, [t, g], [t], [t.size]);
  return t;
}

/**
 * Runs a fused op of `where` on the operands `named` (in order), as bf16 copies under autocast('bfloat16')
 * (castsToBf16), else as they are, a frozen weight stored in bf16 widened when the others are float32; the
 * copies made here are freed when it returns.
 */
function withOperands<R>(where: string, named: Record<string, Tensor>, run: (ops: Tensor[]) => R): R {
  for (const [n, t] of Object.entries(named)) checkStoredWeight(where, n, t);
  const ts = Object.values(named);
  const bf16 = castsToBf16(...ts);
  // float32 compute with a frozen weight stored in bf16 (storeFrozenWeights): that weight widened for the call
  const widen = !bf16 && ts.some((t) => t.dtype === 'float32') && ts.some((t) => t.dtype === 'bfloat16');
  const ops = [] as { t: Tensor; owned: boolean }[];
  try {
    for (const t of ts) ops.push(bf16 ? bf16Operand(t) : widen ? float32Operand(t) : { t, owned: false });
    return run(ops.map((o) => o.t));
  } finally {
    for (const o of ops) if (o.owned) o.t.dispose();
  }
}

/** A gradient the fused op wrote in bf16 (the dtype of its operand), as the float32 its input needs. */
function asFloat32(t: Tensor | null): Tensor | null {
  if (!t || t.dtype === 'float32') return t;
  try {
    return castTensor(t, 'float32');
  } finally {
    t.dispose();
  }
}

// The fused losses' options that F leaves to the caller: gradients, their scale and the device-resident loss are F's
// (autograd's) to set, so passing one is refused rather than overridden without a word.
export type LinearCrossEntropyLossOptions = Omit<LinearCrossEntropyOptions, 'grad' | 'gradOutputs' | 'gradScale' | 'deviceLoss'>;
export type VisualWordKLLossOptions = Omit<VisualWordKLOptions, 'grad' | 'gradOutputs' | 'gradScale' | 'deviceLoss'>;
const CE_KEYS = {
  chunkRows: true, workspaceBudget: true, ignoreIndex: true, reduction: true, labelSmoothing: true, zLossWeight: true,
} satisfies Record<keyof LinearCrossEntropyLossOptions, true>;
const KL_KEYS = {
  chunkRows: true, workspaceBudget: true, reduction: true, temperature: true, detachTarget: true,
} satisfies Record<keyof VisualWordKLLossOptions, true>;

/** Cross-entropy of h w^T against targets as a differentiable scalar (fused; no [N, V] logits). */
export function linearCrossEntropy(h: Tensor, w: Tensor, targets: Tensor, opts: LinearCrossEntropyLossOptions = {}): Tensor {
  opts = checkedOptions('F.linearCrossEntropy', opts, CE_KEYS);
  check('F.linearCrossEntropy', 'h', h);
  check('F.linearCrossEntropy', 'w', w);
  if (opts.reduction === 'none') throw rangeError('F.linearCrossEntropy', "reduction 'none' is not differentiable here; use fused.linearCrossEntropy");
  const grad = isGradEnabled() && (h.requiresGrad || w.requiresGrad);
  const gradOutputs = { dh: h.requiresGrad, dw: w.requiresGrad };
  const r = withOperands('F.linearCrossEntropy', { h, w }, ([hh, ww]) => fusedAt.linearCrossEntropy('F.linearCrossEntropy', hh, ww, targets, { ...opts, grad, gradOutputs, deviceLoss: true }));
  r.dh = asFloat32(r.dh);
  const out = r.lossTensor!;
  if (grad) {
    const saved = [r.dh, r.dw].filter((t): t is Tensor => t !== null);
    const node = record('linear_cross_entropy', [h, w, targets], [out], ([g]) => {
      const res = [takeScaled(r.dh, g!, h.requiresGrad), takeScaled(r.dw, g!, w.requiresGrad), null];
      node.saved = saved.filter((t) => !res.includes(t)); // the returned ones now belong to autograd
      return res;
    }, saved, []); // reads nothing: the gradients were computed in the forward, so h (the final hidden states) can go
  }
  return out;
}

/** Visual-word KL (VW-LMM image-token loss) as a differentiable scalar (fused). */
export function visualWordKL(h: Tensor, wLm: Tensor, x: Tensor, wVm: Tensor, opts: VisualWordKLLossOptions = {}): Tensor {
  opts = checkedOptions('F.visualWordKL', opts, KL_KEYS);
  ([['h', h], ['wLm', wLm], ['x', x], ['wVm', wVm]] as const).forEach(([n, t]) => check('F.visualWordKL', n, t));
  if (opts.reduction === 'none') throw rangeError('F.visualWordKL', "reduction 'none' is not differentiable here; use fused.visualWordKL");
  const needTarget = !opts.detachTarget && (x.requiresGrad || wVm.requiresGrad);
  const grad = isGradEnabled() && (h.requiresGrad || wLm.requiresGrad || needTarget);
  const gradOutputs = { dh: h.requiresGrad, dwLm: wLm.requiresGrad, dx: x.requiresGrad, dwVm: wVm.requiresGrad };
  const r = withOperands('F.visualWordKL', { h, wLm, x, wVm }, ([hh, wl, xx, wv]) =>
    fusedAt.visualWordKL('F.visualWordKL', hh, wl, xx, wv, { ...opts, grad, gradOutputs, detachTarget: !needTarget, deviceLoss: true }));
  r.dh = asFloat32(r.dh);
  r.dx = asFloat32(r.dx);
  const out = r.lossTensor!;
  if (grad) {
    const saved = [r.dh, r.dwLm, r.dx, r.dwVm].filter((t): t is Tensor => t !== null);
    const node = record('visual_word_kl', [h, wLm, x, wVm], [out], ([g]) => {
      const res = [takeScaled(r.dh, g!, h.requiresGrad), takeScaled(r.dwLm, g!, wLm.requiresGrad), takeScaled(r.dx, g!, x.requiresGrad), takeScaled(r.dwVm, g!, wVm.requiresGrad)];
      node.saved = saved.filter((t) => !res.includes(t));
      return res;
    }, saved, []); // as linearCrossEntropy: no input's values are read
  }
  return out;
}

/** PIF: softmax(x wVm^T) e, differentiable (fused forward and backward kernels). */
export function pseudoImageFeatures(x: Tensor, wVm: Tensor, e: Tensor): Tensor {
  ([['x', x], ['wVm', wVm], ['e', e]] as const).forEach(([n, t]) => check('F.pseudoImageFeatures', n, t));
  // under autocast('bfloat16') both kernels take bf16 copies (recast in the backward: x's copy is not kept)
  const bf16 = castsToBf16(x, wVm, e);
  const out = asFloat32(withOperands('F.pseudoImageFeatures', { x, wVm, e }, ([xx, wv, ee]) => fusedAt.pseudoImageFeatures('F.pseudoImageFeatures', xx, wv, ee)))!;
  if (needsGrad(x, wVm, e)) {
    record('pseudo_image_features', [x, wVm, e], [out], ([g]) => {
      const r = bf16
        ? autocast('bfloat16', () => withOperands('F.pseudoImageFeatures', { x, wVm, e, g: g! }, ([xx, wv, ee, gg]) => fusedAt.pseudoImageFeaturesBackward('F.pseudoImageFeatures (backward)', xx, wv, ee, gg)))
        : fusedAt.pseudoImageFeaturesBackward('F.pseudoImageFeatures (backward)', x, wVm, e, g!);
      r.dx = asFloat32(r.dx)!;
      const keepOrDrop = (t: Tensor, want: boolean) => (want ? t : (t.dispose(), null));
      return [keepOrDrop(r.dx, x.requiresGrad), keepOrDrop(r.dwVm, wVm.requiresGrad), keepOrDrop(r.de, e.requiresGrad)];
    }, [], [x, wVm, e]); // not the output's values
  }
  return out;
}
