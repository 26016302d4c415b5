// Basic layers with HF parameter names (weight, bias) and layouts (Linear weight [out, in]).
import { castTensor } from '../amp';
import { isTraining } from '../autograd';
import { checkKeys, checkedOptions, rangeError, typeError } from '../errors';
import * as F from '../functional';
import { Generator } from '../random';
import { scope, Tensor } from '../tensor';
import { LoraAdapter, LoraOptions } from './lora';
import { constParam, InitOptions, Module, normalParam } from './module';

/** The options of a layer's constructor: its initialisation (HF's normal(std)) and where the parameters go. */
function layerOptions(where: string, opts: object, known: Record<string, true>): void {
  if (opts === null || typeof opts !== 'object') throw typeError(where, 'options', `an object { ${Object.keys(known).join(', ')} }`, opts);
  checkKeys(where, 'option', opts, known);
}
/** Most values one parameter may hold: a typed array's limit (2^32 elements), named rather than "Invalid typed array length". */
const MAX_PARAM_VALUES = 2 ** 32 - 1;

/** A layer's sizes (Linear's inFeatures and outFeatures, Embedding's num and dim): non-negative integers of a parameter that fits. */
function layerSizes(where: string, sizes: Record<string, unknown>): void {
  let n = 1;
  for (const [name, v] of Object.entries(sizes)) {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw typeError(where, name, 'a non-negative integer', v);
    n *= v;
  }
  if (n > MAX_PARAM_VALUES) throw rangeError(where, `${Object.entries(sizes).map(([k, v]) => `${k} ${v}`).join(' x ')} make a weight of ${n} values, more than one tensor holds (${MAX_PARAM_VALUES})`);
}

const LINEAR_KEYS = { bias: true, std: true, init: true } satisfies Record<'bias' | 'std' | 'init', true>;
const EMBEDDING_KEYS = { std: true, init: true } satisfies Record<'std' | 'init', true>;

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias: boolean; std: number; init: InitOptions }) {
    super();
    layerSizes('Linear', { inFeatures, outFeatures });
    layerOptions('Linear', opts, LINEAR_KEYS);
    this.weight = this.param('weight', normalParam([outFeatures, inFeatures], opts.std, opts.init, 0, opts.init?.linearDtype));
    this.bias = opts.bias ? this.param('bias', constParam([outFeatures], 0, opts.init)) : null;
  }
  /** A LoRA adapter (src/nn/lora.ts) whose update is added to the output; null without one. */
  lora: LoraAdapter | null = null;

  forward(x: Tensor, opts?: F.LinearOptions): Tensor {
    return Linear.forwardMany(x, [this], opts)[0];
  }

  /**
   * The layers' outputs for one input x (attention's q/k/v, the MLP's gate/up): their products through F.linears
   * (under autocast, x cast and saved once for all of them), each one's LoRA update added (in the output's dtype:
   * bf16 with opts.bf16Output under autocast, as PEFT's update is under torch's autocast).
   */
  static forwardMany(x: Tensor, layers: readonly Linear[], opts: F.LinearOptions = {}): Tensor[] {
    const ys = layers.length === 1 ? [F.linear(x, layers[0].weight, layers[0].bias, opts)] : F.linears(x, layers.map((l) => l.weight), layers.map((l) => l.bias), opts);
    return ys.map((y, i) => {
      const a = layers[i].lora;
      if (!a) return y;
      // in a scope: the update's intermediates that no backward reads (dropout's output, B's input cast) go at once
      // dropout while the adapter trains (a forward that will be back-propagated, its weights requiring grad): PEFT's
      // lora_dropout runs in training mode only, and an evaluation here (a frozen adapter, or noGrad) is deterministic
      const training = isTraining() && (a.lora_A.weight.requiresGrad || a.lora_B.weight.requiresGrad);
      const delta = scope(() => a.delta(x, training, opts));
      const out = F.add(y, delta);
      // the base output and the update stay in the graph as links only: no backward reads them (the products'
      // backwards read their inputs and weights, the sum's nothing), so their memory goes now rather than when the
      // caller's scope ends (at 7B and 16 x 2048 tokens, gate's and up's are 688 MiB each)
      y.release();
      delta.release();
      return out;
    });
  }

  /** Attaches a LoRA adapter (children lora_A, lora_B: PEFT's names); the base weight is left as it is. */
  addLora(opts: LoraOptions, generator: Generator): LoraAdapter {
    if (this.lora) throw new Error('Linear: already has a LoRA adapter');
    const a = new LoraAdapter(this, opts, generator);
    this.child('lora_A', a.lora_A);
    this.child('lora_B', a.lora_B);
    this.lora = a;
    return a;
  }

  /** Detaches the adapter: merged into the weight first (merge = true), or dropped. Its tensors are freed. */
  removeLora(merge: boolean): void {
    const a = this.lora;
    if (!a) return;
    if (merge) a.mergeInto();
    this.removeChild('lora_A');
    this.removeChild('lora_B');
    this.lora = null;
    a.dispose();
  }
}

/** What storeFrozenWeights changed. */
export interface StoredWeights {
  /** Linear weights now stored in bfloat16 / back in float32. */
  toBf16: number;
  toFloat32: number;
  /** Bytes of the Linear weights before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * Stores the frozen weights of every Linear under `root` in `dtype`, and every trainable one in float32: what
 * LoRA fine-tuning at 7B needs to fit (the frozen base in bf16, half the memory; LLaVA's LoRA scripts load it so).
 * The products take a bf16 weight as it is under autocast('bfloat16') and widen it for the call in float32 compute
 * (src/amp.ts float32Operand), so in float32 compute the results equal those of float32 weights holding the
 * rounded values. Rounding to bf16 is lossy once; back to float32 is exact. Skipped: modules named in `exclude`
 * (the last name component, e.g. 'vm_head', whose weight the visual-word ops also take directly). A weight changed
 * loses its pending gradient. The Trainer applies it at the start of each stage (TrainerOptions.frozenDtype).
 */
export function storeFrozenWeights(root: Module, dtype: 'bfloat16' | 'float32', opts: { exclude?: readonly string[] } = {}): StoredWeights {
  opts = checkedOptions('storeFrozenWeights', opts, { exclude: true });
  if (dtype !== 'bfloat16' && dtype !== 'float32') throw new TypeError(`storeFrozenWeights: dtype must be 'bfloat16' or 'float32', got ${String(dtype)}`);
  const exclude = new Set(opts.exclude ?? []);
  const r: StoredWeights = { toBf16: 0, toFloat32: 0, bytesBefore: 0, bytesAfter: 0 };
  const bytes = (t: Tensor) => t.size * (t.dtype === 'bfloat16' ? 2 : 4);
  for (const [name, m] of root.namedModules()) {
    if (!(m instanceof Linear) || exclude.has(name.split('.').pop()!)) continue;
    const w = m.weight;
    r.bytesBefore += bytes(w);
    const want = w.requiresGrad ? 'float32' : dtype;
    if (w.dtype !== want) {
      const copy = castTensor(w, want);
      w.adoptStorage(copy);
      if (want === 'bfloat16') r.toBf16++;
      else r.toFloat32++;
    }
    r.bytesAfter += bytes(w);
  }
  return r;
}

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly num: number, readonly dim: number, opts: { std: number; init: InitOptions }) {
    super();
    layerSizes('Embedding', { num, dim });
    layerOptions('Embedding', opts, EMBEDDING_KEYS);
    this.weight = this.param('weight', normalParam([num, dim], opts.std, opts.init));
  }
  forward(ids: Tensor): Tensor {
    return F.embedding(ids, this.weight);
  }
}

export class RMSNorm extends Module {
  readonly weight: Tensor;
  constructor(readonly dim: number, readonly eps: number, init: InitOptions) {
    super();
    layerSizes('RMSNorm', { dim });
    this.weight = this.param('weight', constParam([dim], 1, init));
  }
  forward(x: Tensor): Tensor {
    return F.rmsNorm(x, this.weight, this.eps);
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(readonly dim: number, readonly eps: number, init: InitOptions) {
    super();
    layerSizes('LayerNorm', { dim });
    this.weight = this.param('weight', constParam([dim], 1, init));
    this.bias = this.param('bias', constParam([dim], 0, init));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.weight, this.bias, this.eps);
  }
}
