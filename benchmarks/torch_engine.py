"""PyTorch reference for benchmarks/engine_cpu.ts: forward + backward of a small LLaMA decoder (transformers
LlamaForCausalLM, cross-entropy on next tokens) and a small CLIP ViT (CLIPVisionModel, loss sum(h * R) on
the LLaVA feature layer), float32, CPU, eager (default attention implementation) or torch.compile.
Prints one JSON line with tokens/s.

The ViT does the work vwlmm's side does (forward with upToLayer -2: the embeddings, pre_layrnorm and all layers
but the last): its encoder is cut to its first L - 1 layers and post_layernorm made the identity, and the loss
is on that last_hidden_state, which is the full model's hidden_states[-2] (LLaVA's select_layer -2). Until
2026-12-06 it ran all L layers + post_layernorm with output_hidden_states and took hidden_states[-2]: a third
more forward work at L = 4 than vwlmm's side.

  python3 benchmarks/torch_engine.py --model decoder|vit --mode eager|compile --reps 3
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

DECODER = dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
               num_key_value_heads=8, max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False)
VIT = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8, image_size=64,
           patch_size=8, num_channels=3, hidden_act="quick_gelu")
BATCH, SEQ = 8, 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["decoder", "vit"], required=True)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.model == "decoder":
        model = LlamaForCausalLM(LlamaConfig(**DECODER))
        ids = torch.randint(0, DECODER["vocab_size"], (BATCH, SEQ))

        def loss_fn():
            logits = model(input_ids=ids).logits
            return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        tokens = BATCH * SEQ
    else:
        model = CLIPVisionModel(CLIPVisionConfig(**VIT))
        # stop where LLaVA's feature layer (-2) is: drop the last layer (and post_layernorm, here only on the
        # pooled CLS row), so that torch runs the same layers as vwlmm's upToLayer -2
        vm = getattr(model, "vision_model", model)  # transformers 4 nests the transformer; 5 does not
        vm.encoder.layers = vm.encoder.layers[:-1]
        vm.post_layernorm = torch.nn.Identity()
        pix = torch.randn(BATCH, 3, VIT["image_size"], VIT["image_size"])
        n_tok = (VIT["image_size"] // VIT["patch_size"]) ** 2 + 1
        R = torch.randn(BATCH, n_tok, VIT["hidden_size"])

        def loss_fn():
            h = model(pixel_values=pix).last_hidden_state
            return (h * R).sum()
        tokens = BATCH * n_tok
    fn = torch.compile(loss_fn) if a.mode == "compile" else loss_fn

    def step():
        model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        return loss.item()

    t0 = time.perf_counter()
    step()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    s = times[len(times) // 2]
    print(json.dumps({"impl": f"torch {a.mode}", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "model": a.model, "seconds": s, "tokensPerSecond": tokens / s, "warmupSeconds": warm,
                      "attention": getattr(model.config, "_attn_implementation", None)}))


if __name__ == "__main__":
    main()
