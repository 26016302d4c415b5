// Basic layers with HF parameter names (weight, bias) and layouts (Linear weight [out, in]).
import { isTraining } from '../autograd';
import * as F from '../functional';
import { Generator } from '../random';
import { Tensor } from '../tensor';
import { LoraAdapter, LoraOptions } from './lora';
import { constParam, InitOptions, Module, normalParam } from './module';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias: boolean; std: number; init: InitOptions }) {
    super();
    this.weight = this.param('weight', normalParam([outFeatures, inFeatures], opts.std, opts.init));
    this.bias = opts.bias ? this.param('bias', constParam([outFeatures], 0, opts.init)) : null;
  }
  /** A LoRA adapter (src/nn/lora.ts) whose update is added to the output; null without one. */
  lora: LoraAdapter | null = null;

  forward(x: Tensor): Tensor {
    const y = F.linear(x, this.weight, this.bias);
    return this.lora ? F.add(y, this.lora.delta(x, isTraining())) : y;
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

export class Embedding extends Module {
  readonly weight: Tensor;
  constructor(readonly num: number, readonly dim: number, opts: { std: number; init: InitOptions }) {
    super();
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
    this.weight = this.param('weight', constParam([dim], 1, init));
    this.bias = this.param('bias', constParam([dim], 0, init));
  }
  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.weight, this.bias, this.eps);
  }
}
