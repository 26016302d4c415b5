#!/usr/bin/env python3
"""The HF transformers side of the end-to-end training comparison (issue 11; the vwlmm side is
benchmarks/train_throughput.ts, same model, batch and formulas): transformers' LlavaForConditionalGeneration with a
CLIP ViT-B/16 tower at 224 px (12 layers, d 768, quick_gelu, select layer -2, patch features), an mlp2x_gelu
projector, a 16-layer LLaMA (d 1024, 16 heads, FFN 2816, V 32000) and a bias-free vm_head; the official VW loss:
cross-entropy on the text, plus KLDivLoss(batchmean) on the image rows (target softmax(vm_head(x_{t+1})), not
detached). bf16 autocast and fused AdamW on CUDA, batch 16 x (196 image + 129 text) tokens. Prints one JSON line:
tokens/s, peak memory, model-FLOPs utilisation (H200 bf16 dense peak 989 TFLOPs; formula in flops_per_step).

  python3 benchmarks/hf_vwlmm_train.py [--size issue|tiny] [--device cuda|cpu] [--steps 10] [--warmup 3] [--dtype bf16|fp32]
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

SIZES = {
    "issue": dict(vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=224, patch_size=16),
                  text=dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, vocab_size=32000),
                  batch=16, text_tokens=129),
    "tiny": dict(vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
                 text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, vocab_size=512),
                 batch=2, text_tokens=9),
}
PEAK_BF16 = 989e12  # H200 SXM dense bf16


def question_tokens(text):
    """Text tokens after the image that are not supervised (the question); the rest is the answer."""
    return max(1, text // 4)


def flops_per_step(s, batch, seq, patches):
    """6 x parameters x tokens for every matrix a token passes (forward + backward), plus attention scores and
    values (12 L d T^2 per sequence); the same formula as benchmarks/train_throughput.ts."""
    v, t = s["vision"], s["text"]
    d, ff, L, V = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    dv, ffv, Lv = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    llm = L * (4 * d * d + 3 * d * ff) + 2 * V * d  # layers, lm_head and vm_head
    vit = Lv * (4 * dv * dv + 2 * dv * ffv)
    proj = dv * d + d * d
    return 6 * (llm * batch * seq + vit * batch * (patches + 1) + proj * batch * patches) + 12 * L * d * seq * seq * batch + 12 * Lv * dv * (patches + 1) ** 2 * batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=list(SIZES), default="issue")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    a = ap.parse_args()
    s = SIZES[a.size]
    torch.manual_seed(0)
    dev = torch.device(a.device)
    V = s["text"]["vocab_size"]
    image_token = V - 1
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(hidden_act="quick_gelu", **s["vision"]), text_config=LlamaConfig(**s["text"]),
                      image_token_index=image_token, projector_hidden_act="gelu", vision_feature_layer=-2,
                      vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(cfg).to(dev)
    vm_head = torch.nn.Linear(s["text"]["hidden_size"], V, bias=False).to(dev)
    patches = (s["vision"]["image_size"] // s["vision"]["patch_size"]) ** 2
    B, text = s["batch"], s["text_tokens"]
    seq = patches + text
    prefix = 4  # text before the image (a system prompt's tail), the answer after it
    ids = torch.randint(0, V - 1, (B, seq), device=dev)
    ids[:, prefix:prefix + patches] = image_token
    labels = ids.clone()
    labels[:, :prefix + patches + question_tokens(text)] = -100  # the image and the question are not supervised
    pixels = torch.randn(B, 3, s["vision"]["image_size"], s["vision"]["image_size"], device=dev)
    captured = {}
    model.model.multi_modal_projector.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
    params = list(model.parameters()) + list(vm_head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, fused=dev.type == "cuda")
    kl_fn = torch.nn.KLDivLoss(reduction="batchmean")

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            out = model(input_ids=ids, pixel_values=pixels, labels=labels)
            x = captured["x"].reshape(B, patches, -1)  # projected patch features, the LLM's image inputs
            # rows t whose next position is a patch: the token before the image and patches 1..P-1
            q_logits = out.logits[:, prefix - 1:prefix + patches - 1]
            p_logits = vm_head(x)
            kl = kl_fn(F.log_softmax(q_logits.float().reshape(-1, V), -1), F.softmax(p_logits.float().reshape(-1, V), -1))
            loss = out.loss + kl
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss_value = float(loss.detach())  # waits for the last step
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / a.steps
    fl = flops_per_step(s, B, seq, patches)
    print(json.dumps({
        "impl": "hf", "size": a.size, "device": a.device, "dtype": a.dtype, "batch": B, "seq": seq, "secondsPerStep": sec,
        "tokensPerSec": B * seq / sec, "peakBytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else None,
        "flopsPerStep": fl, "mfu": fl / sec / PEAK_BF16 if dev.type == "cuda" else None, "loss": loss_value,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
