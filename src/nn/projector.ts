// LLaVA multimodal projector: 'linear' or 'mlp{N}x_gelu' (Linear, then (GELU, Linear) x (N - 1)).
// Names as LLaVA's build_vision_projector makes them: 'linear' is a plain nn.Linear (mm_projector.weight / .bias);
// mlp{N}x_gelu an nn.Sequential, named by its indices: mm_projector.0, mm_projector.2, ... (GELUs hold no parameters).
// loadCheckpoint still reads a linear projector saved as mm_projector.0.* (vwlmm's name for it before).
import * as F from '../functional';
import { Tensor } from '../tensor';
import { Linear } from './layers';
import { InitOptions, Module } from './module';

export function parseProjectorType(type: string): number {
  if (type === 'linear') return 1;
  const m = /^mlp(\d+)x_gelu$/.exec(type);
  if (!m || Number(m[1]) < 1) throw new RangeError(`projector type '${type}' is not supported (linear | mlp{N}x_gelu)`);
  return Number(m[1]);
}

export class Projector extends Module {
  readonly linears: Linear[] = [];
  constructor(readonly type: string, inDim: number, outDim: number, opts: { std: number; init: InitOptions }) {
    super();
    const depth = parseProjectorType(type);
    if (type === 'linear') {
      // the Linear's own parameters, registered as the projector's (LLaVA's module is the nn.Linear itself)
      const linear = new Linear(inDim, outDim, { bias: true, std: opts.std, init: opts.init });
      this.param('weight', linear.weight);
      this.param('bias', linear.bias!);
      this.linears.push(linear);
      return;
    }
    for (let i = 0; i < depth; i++) {
      this.linears.push(this.child(String(2 * i), new Linear(i === 0 ? inDim : outDim, outDim, { bias: true, std: opts.std, init: opts.init })));
    }
  }
  forward(x: Tensor): Tensor {
    let h = this.linears[0].forward(x);
    for (let i = 1; i < this.linears.length; i++) h = this.linears[i].forward(F.gelu(h));
    return h;
  }
}
