// Mixed precision as PyTorch's autocast(dtype=torch.bfloat16) (what LLaVA's `--bf16 True` runs): inside
// autocast('bfloat16', fn), the products of F.linear, F.patchEmbed and the fused vocabulary ops
// (F.linearCrossEntropy, F.visualWordKL, F.pseudoImageFeatures) take bfloat16 copies of their operands and
// accumulate in fp32; their results are float32, or bf16 where F.linear's `bf16Output` asks for it (the
// activations inside the attention and the MLPs, as torch's autocast keeps them; their gradients are then bf16).
// The parameters are the fp32 master weights (the optimizer and its moments stay fp32), and the norms with their
// statistics, the residual stream, softmax, the log-sum-exp and the loss stay fp32.
// A parameter's bf16 copy is made once per autocast region and reused by every use inside it (torch's
// autocast weight cache): a region around all micro-batches of an optimizer step casts each weight once.
// Weights must not change inside a region (the Trainer steps the optimizer after it ends).
import { callOp } from './call_op';
import { isGradEnabled } from './autograd';
import { typeError } from './errors';
import { isParameter } from './nn/module';
import { keep, Tensor } from './tensor';

/** The dtype the products run in: 'float32' (no autocast) or 'bfloat16'. */
export type ComputeDtype = 'float32' | 'bfloat16';

let current: ComputeDtype = 'float32';
/** Parameter -> its bf16 copy; exists while the outermost region runs. */
let weightCopies: Map<Tensor, Tensor> | null = null;

/** Checks a user-given compute dtype ('float32' | 'bfloat16'; 'fp32' and 'bf16' are the CLI's spellings). */
export function parseComputeDtype(where: string, v: unknown): ComputeDtype {
  if (v === 'float32' || v === 'fp32') return 'float32';
  if (v === 'bfloat16' || v === 'bf16') return 'bfloat16';
  throw typeError(where, 'dtype', "'bf16' or 'fp32' ('bfloat16' / 'float32')", v);
}

/** The default compute dtype of a device: bf16 on CUDA (as LLaVA trains), float32 on the CPU. */
export function defaultComputeDtype(device: string): ComputeDtype {
  return device === 'cuda' || device.startsWith('cuda:') ? 'bfloat16' : 'float32';
}

/**
 * Runs fn with the products in `dtype` (see the header); fn must be synchronous. Nested regions take the
 * inner dtype; the weight copies live until the outermost region ends, then are freed.
 */
export function autocast<T>(dtype: ComputeDtype, fn: () => T): T {
  const dt = parseComputeDtype('autocast', dtype);
  const prev = current;
  const outermost = weightCopies === null;
  if (outermost) weightCopies = new Map();
  current = dt;
  try {
    const r = fn();
    // the refused promise still runs: caught here, so its later rejection cannot end the process as unhandled
    if (r instanceof Promise) {
      r.catch(() => {});
      throw new TypeError('autocast: fn must be synchronous (it returned a Promise); wrap each synchronous forward and backward instead');
    }
    return r;
  } finally {
    current = prev;
    if (outermost) {
      for (const c of weightCopies!.values()) c.dispose();
      weightCopies = null;
    }
  }
}

/** The compute dtype of the region the caller runs in ('float32' outside any). */
export function computeDtype(): ComputeDtype {
  return current;
}

/** True when a product over these float operands runs in bf16 here (a weight stored in bf16 is taken as it is). */
export function castsToBf16(...ts: (Tensor | null | undefined)[]): boolean {
  return current === 'bfloat16' && ts.every((t) => !t || t.dtype === 'float32' || t.dtype === 'bfloat16');
}

/**
 * A weight stored in bfloat16 (storeFrozenWeights, src/nn/layers.ts) as the operand of a float32 product:
 * widened for the call (owned), as QLoRA dequantises its base weights; a float32 one as it is. Only frozen
 * weights are stored so: a trainable one must be a float32 master, and `where` says so.
 */
export function float32Operand(w: Tensor): { t: Tensor; owned: boolean } {
  if (w.dtype !== 'bfloat16') return { t: w, owned: false };
  return { t: castTensor(w, 'float32'), owned: true };
}

/** Refuses a trainable weight stored in bfloat16 (its gradient and AdamW need a float32 master). */
export function checkStoredWeight(where: string, name: string, w: Tensor): void {
  if (!(w instanceof Tensor)) return; // not a tensor: the caller's argument checks name it
  if (w.dtype === 'bfloat16' && w.requiresGrad && isParameter(w) && isGradEnabled())
    throw new TypeError(`${where}: ${name} is stored in bfloat16 and requires grad; only frozen weights may be stored in bf16 (trainable ones are float32 masters)`);
}

/** A new tensor holding x in `dtype` (the native cast op; not recorded by autograd). */
export function castTensor(x: Tensor, dtype: 'float32' | 'bfloat16'): Tensor {
  const out = Tensor.empty(x.shape, { device: x.device, dtype });
  callOp('cast', x.device, [x], [out], [x.size]);
  return out;
}

/**
 * The bf16 operand for x: a parameter's cached copy (owned: false, the region frees it), or a fresh
 * cast the caller owns. A parameter used outside any region (a backward run after its region ended) gets
 * a fresh copy as well.
 */
export function bf16Operand(x: Tensor): { t: Tensor; owned: boolean } {
  if (x.dtype === 'bfloat16') return { t: x, owned: false }; // stored in bf16 already
  if (weightCopies !== null && isParameter(x)) {
    let c = weightCopies.get(x);
    if (!c || c.disposed) {
      c = keep(castTensor(x, 'bfloat16'));
      weightCopies.set(x, c);
    }
    return { t: c, owned: false };
  }
  return { t: castTensor(x, 'bfloat16'), owned: true };
}
