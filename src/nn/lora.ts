// LoRA (Hu et al. 2021) as PEFT implements it for nn.Linear: y = W x + b + (alpha / r) B A dropout(x), A [r, in]
// initialised as PEFT does (kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))), B [out, r] zeros, so a new
// adapter changes nothing until it trains. The adapter hangs off the Linear as children lora_A / lora_B, so its
// parameter names are PEFT's minus the adapter name ("model.layers.0.self_attn.q_proj.lora_A.weight"); PEFT's
// adapter files (adapter_config.json + adapter_model.safetensors, names prefixed "base_model.model.") are read
// and written by src/model/lora.ts.
// Dropout masks come from a LoraDropoutStream: the mask of the adapter's k-th training forward is a pure function of
// the stream's seed and k (not of what was drawn before), so a checkpoint that records k (and the seed) resumes the
// masks exactly (src/model/lora.ts loraTrainingRecord / resumeLoraTraining).
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
  /**
   * Seed of the adapter's dropout masks (LoraDropoutStream; applyLora: a function of its seed and the module's name);
   * by default one drawn from the adapter's generator.
   */
  dropoutSeed?: number;
}

/** 32-bit avalanche of two words (murmur3's finaliser over their mix). */
function mix32(a: number, b: number): number {
  let h = (Math.imul(a ^ 0x5bd1e995, 0xcc9e2d51) ^ Math.imul(b ^ 0x1b873593, 0x9e3779b1)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The dropout seed applyLora gives the adapter of module `name` (e.g. "model.layers.3.mlp.up_proj") for LoRA seed `seed`. */
export function loraDropoutSeed(seed: number, name: string): number {
  let h = mix32(Math.floor(seed) >>> 0, Math.floor(seed / 2 ** 32) >>> 0);
  for (let i = 0; i < name.length; i++) h = mix32(h, name.charCodeAt(i));
  return h;
}

/**
 * An adapter's dropout masks: before each training forward, next() puts the stream at a state that is a pure function
 * of (seed, calls) and counts the call, so the k-th forward's masks do not depend on what came before: a resume that
 * sets `calls` back draws the masks the uninterrupted run drew (a fresh stream would repeat the first step's). Its
 * saveState / restoreState carry `calls`, so gradient checkpointing, which replays a layer's draws from a saved state,
 * re-draws the forward's masks. A replayed op program (src/train/replay.ts) would repeat a recorded call's seed; the
 * Trainer never replays such steps: each step's seeds differ, so its two recordings differ and replay stays off.
 */
export class LoraDropoutStream extends Generator {
  /** Training forwards so far (masks drawn): the stream's position. */
  calls = 0;
  constructor(public seed: number) {
    super(seed);
  }

  /** Positions the stream for the next forward's masks and counts it. */
  next(): void {
    super.restoreState({ state: mix32(this.seed >>> 0, mix32(this.calls >>> 0, Math.floor(this.calls / 2 ** 32) >>> 0)), spare: null });
    this.calls++;
  }

  override saveState(): { state: number; spare: number | null; calls: number } {
    return { ...super.saveState(), calls: this.calls };
  }

  override restoreState(s: { state: number; spare: number | null; calls?: number }): void {
    super.restoreState(s);
    if (s.calls !== undefined) this.calls = s.calls;
  }
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
  /** Draws the dropout masks (seeded, so a run is reproducible; gradient checkpointing replays it; a resume sets its calls). */
  readonly dropoutGenerator: LoraDropoutStream;
  /** applyLora's seed when applyLora made this adapter (its dropout seed is then loraDropoutSeed(seed, name)), else null. */
  loraSeed: number | null = null;
  constructor(readonly base: Linear, readonly opts: LoraOptions, generator: Generator) {
    super();
    const { r, alpha } = opts, dropout = opts.dropout ?? 0;
    if (!Number.isInteger(r) || r < 1) throw new RangeError(`LoRA: r must be a positive integer, got ${r}`);
    if (!(alpha > 0 && Number.isFinite(Math.fround(alpha / r)))) throw new RangeError(`LoRA: alpha must be > 0, and alpha / r finite in float32 (the update's scale), got ${alpha}`);
    if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`LoRA: dropout must be in [0, 1), got ${dropout}`);
    const bound = 1 / Math.sqrt(base.inFeatures);
    const a = Float32Array.from({ length: r * base.inFeatures }, () => (2 * generator.uniform() - 1) * bound);
    this.lora_A = this.child('lora_A', new LoraWeight(Tensor.fromArray(a, [r, base.inFeatures], { device: base.weight.device })));
    this.lora_B = this.child('lora_B', new LoraWeight(Tensor.zeros([base.outFeatures, r], { device: base.weight.device })));
    this.scaling = alpha / r;
    this.dropout = dropout;
    const drawn = Math.floor(generator.fork('lora-dropout').uniform() * 2 ** 32);
    const seed = opts.dropoutSeed ?? drawn;
    if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new RangeError(`LoRA: dropoutSeed must be an integer in [0, 2^32), got ${seed}`);
    this.dropoutGenerator = new LoraDropoutStream(seed);
  }

  /** (alpha / r) B A dropout(x): [..., out] (in bf16 under autocast with opts.bf16Output, else float32). */
  delta(x: Tensor, training: boolean, opts: F.LinearOptions = {}): Tensor {
    const A = this.lora_A.weight;
    // Inverted dropout on the device, its mask a function of a seed from the adapter's generator. A's weight gradient
    // reads dropout(x); rather than keeping that copy, the backward rebuilds it from x and the replayed seed (and
    // recomputes A's rank-r product). x is kept instead: one tensor for q/k/v's three adapters and for gate/up's two,
    // and o_proj's the attention keeps anyway. In bf16 at 7B and 16 x 2048 tokens, ~1 GiB less per layer in its
    // backward; the same values and gradients.
    // The stream is positioned before the checkpoint saves its state: the recomputation draws this call's masks.
    if (training && this.dropout > 0) this.dropoutGenerator.next();
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
