// LoRA (Hu et al. 2021) as PEFT implements it for nn.Linear: y = W x + b + (alpha / r) B A dropout(x), A [r, in]
// initialised as PEFT does (kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zeros, so a new
// adapter changes nothing until it trains. The adapter hangs off the Linear as children lora_A / lora_B, so its
// parameter names are PEFT's minus the adapter name ("model.layers.0.self_attn.q_proj.lora_A.weight"); PEFT's
// adapter files (adapter_config.json + adapter_model.safetensors, names prefixed "base_model.model.") are read
// and written by src/model/lora.ts.
import { float32Operand } from '../amp';
import { gradientCheckpoint, noGrad } from '../autograd';
import { f32ToBf16 } from '../bf16';
import * as F from '../functional';
import { Generator } from '../random';
import { scope, Tensor } from '../tensor';
import { Linear } from './layers';
import { Module } from './module';

export interface LoraOptions {
  /** Rank r (LLaVA-1.5's recipe: 128). */
  r: number;
  /** lora_alpha: the update is scaled by alpha / r (LLaVA-1.5: 256). */
  alpha: number;
  /** lora_dropout on the adapter's input while training (LLaVA-1.5: 0.05); 0 by default. */
  dropout?: number;
}

class LoraWeight extends Module {
  readonly weight: Tensor;
  constructor(w: Tensor) {
    super();
    this.weight = this.param('weight', w);
  }
}

/** The adapter of one Linear (its children lora_A, lora_B). */
export class LoraAdapter extends Module {
  readonly lora_A: LoraWeight;
  readonly lora_B: LoraWeight;
  readonly scaling: number;
  readonly dropout: number;
  /** Draws the dropout masks (seeded, so a run is reproducible; gradient checkpointing replays it). */
  readonly dropoutGenerator: Generator;
  constructor(readonly base: Linear, readonly opts: LoraOptions, generator: Generator) {
    super();
    const { r, alpha } = opts, dropout = opts.dropout ?? 0;
    if (!Number.isInteger(r) || r < 1) throw new RangeError(`LoRA: r must be a positive integer, got ${r}`);
    if (!(alpha > 0)) throw new RangeError(`LoRA: alpha must be > 0, got ${alpha}`);
    if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`LoRA: dropout must be in [0, 1), got ${dropout}`);
    const bound = 1 / Math.sqrt(base.inFeatures);
    const a = Float32Array.from({ length: r * base.inFeatures }, () => (2 * generator.uniform() - 1) * bound);
    this.lora_A = this.child('lora_A', new LoraWeight(Tensor.fromArray(a, [r, base.inFeatures], { device: base.weight.device })));
    this.lora_B = this.child('lora_B', new LoraWeight(Tensor.zeros([base.outFeatures, r], { device: base.weight.device })));
    this.scaling = alpha / r;
    this.dropout = dropout;
    this.dropoutGenerator = generator.fork('lora-dropout');
  }

  /** (alpha / r) B A dropout(x): [..., out] (in bf16 under autocast with opts.bf16Output, else float32). */
  delta(x: Tensor, training: boolean, opts: F.LinearOptions = {}): Tensor {
    const A = this.lora_A.weight;
    // Inverted dropout on the device, its mask a function of a seed from the adapter's generator. A's weight gradient
    // reads dropout(x); rather than keeping that copy, the backward rebuilds it from x and the replayed seed (and
    // recomputes A's rank-r product). x is kept instead: one tensor for q/k/v's three adapters and for gate/up's two,
    // and o_proj's the attention keeps anyway. In bf16 at 7B and 16 x 2048 tokens, ~1 GiB less per layer in its
    // backward; the same values and gradients.
    const down = training && this.dropout > 0
      ? gradientCheckpoint((xi) => F.linear(F.dropout(xi, this.dropout, this.dropoutGenerator), A), [x], [A], [this.dropoutGenerator])
      : F.linear(x, A);
    // scaled at rank r, before B (PEFT scales B's output): the same product (exactly so when alpha / r is a power of
    // two, as LLaVA's 2), without a second [..., out] tensor in the forward and in the backward
    return F.linear(F.scale(down, this.scaling), this.lora_B.weight, null, opts);
  }

  /** W += (alpha / r) B A, in place (the base weight then holds the adapter; the caller removes it). */
  mergeInto(): void {
    const w = this.base.weight;
    scope(() => noGrad(() => {
      const w32 = float32Operand(w).t; // a base stored in bf16 (storeFrozenWeights) widened; the sum is rounded back
      const merged = F.add(w32, F.scale(F.matmul(this.lora_B.weight, this.lora_A.weight), this.scaling));
      const data = merged.toArray() as Float32Array;
      w.buffer.write(w.dtype === 'bfloat16' ? f32ToBf16(data) : data);
    }));
  }
}

/** The Linear layer names PEFT targets for LLaVA-1.5's LoRA: every Linear of the LLM's decoder layers. */
export const LLM_LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
