// Basic layers with HF parameter names (weight, bias) and layouts (Linear weight [out, in]).
import * as F from '../functional';
import { Tensor } from '../tensor';
import { constParam, InitOptions, Module, normalParam } from './module';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: { bias: boolean; std: number; init: InitOptions }) {
    super();
    this.weight = this.param('weight', normalParam([outFeatures, inFeatures], opts.std, opts.init));
    this.bias = opts.bias ? this.param('bias', constParam([outFeatures], 0, opts.init)) : null;
  }
  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
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
