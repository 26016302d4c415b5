#!/usr/bin/env python3
"""The HF transformers side of the end-to-end training comparison (issue 11; the vwlmm side is
benchmarks/train_throughput.ts, same model, batch and formulas): transformers' LlavaForConditionalGeneration with a
CLIP ViT-B/16 tower at 224 px (12 layers, d 768, quick_gelu, select layer -2, patch features), an mlp2x_gelu
projector, a 16-layer LLaMA (d 1024, 16 heads, FFN 2816, V 32000) and a bias-free vm_head; the official VW loss:
cross-entropy on the text, plus KLDivLoss(batchmean) on the image rows (target softmax(vm_head(x_{t+1})), not
detached). bf16 autocast and fused AdamW on CUDA, batch 16 x (196 image + 129 text) tokens. Prints one JSON line:
tokens/s, peak memory, model-FLOPs utilisation (H200 bf16 dense peak 989 TFLOPs; formula in flops_per_step).
--size 7b (issue 12): LLaVA-1.5-7B's shapes (Vicuna-7B, CLIP ViT-L/14 at 336 px), batch 16 x 2048 tokens, built on the
device with the model in bf16 (the projector and vm_head in fp32). --lora R: PEFT's LoRA as LLaVA-1.5's recipe sets
it (r R, alpha 2R, dropout 0.05, every Linear of the language model; the projector and vm_head trained fully, the rest
frozen). --grad-ckpt: transformers' gradient checkpointing (non-reentrant). PEFT is imported from the environment.

  python3 benchmarks/hf_vwlmm_train.py [--size issue|tiny|7b] [--device cuda|cpu] [--steps 10] [--warmup 3] [--dtype bf16|fp32]
                                       [--batch B] [--lora R] [--grad-ckpt]
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
    "7b": dict(vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=336, patch_size=14),
               text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000),
               batch=16, text_tokens=1472),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PEAK_BF16 = 989e12  # H200 SXM dense bf16


def question_tokens(text):
    """Text tokens after the image that are not supervised (the question); the rest is the answer."""
    return max(1, text // 4)


def flops_per_step(s, batch, seq, patches, r=0):
    """6 x parameters x tokens for every matrix a token passes (forward + backward), plus attention scores and
    values (12 L d T^2 per sequence); with LoRA (r > 0) the frozen LLM's products 4x (no weight gradient) plus the
    adapters' 6x, the frozen tower's 2x (forward only) and its attention forward only. The same formula as
    benchmarks/train_throughput.ts."""
    v, t = s["vision"], s["text"]
    d, ff, L, V = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["vocab_size"]
    dv, ffv, Lv = v["hidden_size"], v["intermediate_size"], v["num_hidden_layers"]
    layers, heads = L * (4 * d * d + 3 * d * ff), 2 * V * d  # decoder layers; lm_head and vm_head
    adapters = L * r * (4 * 2 * d + 2 * (d + ff) + (ff + d))
    vit = Lv * (4 * dv * dv + 2 * dv * ffv)
    proj = dv * d + d * d
    attn_llm, attn_vit = 12 * L * d * seq * seq * batch, 12 * Lv * dv * (patches + 1) ** 2 * batch
    if r == 0:
        return 6 * ((layers + heads) * batch * seq + vit * batch * (patches + 1) + proj * batch * patches) + attn_llm + attn_vit
    return (4 * layers + 6 * (heads + adapters)) * batch * seq + 2 * vit * batch * (patches + 1) + 6 * proj * batch * patches + attn_llm + attn_vit / 3


def llava_config(s):
    """transformers' LlavaConfig of a size; the image token is the last id of the vocabulary."""
    return LlavaConfig(vision_config=CLIPVisionConfig(hidden_act="quick_gelu", **s["vision"]), text_config=LlamaConfig(**s["text"]),
                       image_token_index=s["text"]["vocab_size"] - 1, projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default")


def parse_sized(ap, default_size):
    """Adds --size and --device to a script's own arguments and parses them: (args, the size, the torch device)."""
    ap.add_argument("--size", choices=list(SIZES), default=default_size)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    torch.manual_seed(0)
    return a, SIZES[a.size], torch.device(a.device)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--batch", type=int, default=0, help="samples per step (default: the size's)")
    ap.add_argument("--lora", type=int, default=0)
    ap.add_argument("--grad-ckpt", action="store_true")
    a, s, dev = parse_sized(ap, "issue")
    cfg = llava_config(s)
    V, image_token = s["text"]["vocab_size"], cfg.image_token_index
    with dev:  # drawn on the device: a 7B model's init on the host takes minutes
        model = LlavaForConditionalGeneration(cfg)
        vm_head = torch.nn.Linear(s["text"]["hidden_size"], V, bias=False)
    projector = model.model.multi_modal_projector
    if a.size == "7b":  # the weights in bf16, as LLaVA's LoRA recipe loads them; what trains stays fp32
        model.to(torch.bfloat16)
        projector.float()
    if a.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_version = None
    if a.lora > 0:
        import peft
        from peft import LoraConfig, get_peft_model
        peft_version = peft.__version__
        targets = r".*language_model.*\.(" + "|".join(LORA_TARGETS) + ")"
        model = get_peft_model(model, LoraConfig(r=a.lora, lora_alpha=2 * a.lora, lora_dropout=0.05, target_modules=targets, bias="none"))
        for p in projector.parameters():
            p.requires_grad_(True)
        if a.grad_ckpt:
            model.enable_input_require_grads()
    patches = (s["vision"]["image_size"] // s["vision"]["patch_size"]) ** 2
    B, text = a.batch or s["batch"], s["text_tokens"]
    seq = patches + text
    prefix = 4  # text before the image (a system prompt's tail), the answer after it
    ids = torch.randint(0, V - 1, (B, seq), device=dev)
    ids[:, prefix:prefix + patches] = image_token
    labels = ids.clone()
    labels[:, :prefix + patches + question_tokens(text)] = -100  # the image and the question are not supervised
    pixels = torch.randn(B, 3, s["vision"]["image_size"], s["vision"]["image_size"], device=dev)
    captured = {}
    projector.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))
    params = [p for p in list(model.parameters()) + list(vm_head.parameters()) if p.requires_grad]
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
    fl = flops_per_step(s, B, seq, patches, a.lora)
    print(json.dumps({
        "impl": "hf", "size": a.size, "device": a.device, "dtype": a.dtype, "lora": a.lora, "gradientCheckpointing": a.grad_ckpt,
        "peft": peft_version, "trainableParams": sum(p.numel() for p in params), "batch": B, "seq": seq, "secondsPerStep": sec,
        "tokensPerSec": B * seq / sec, "peakBytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else None,
        # what vwlmm's peakBytes is (its caching allocator's reserved bytes): compare these two
        "peakReservedBytes": torch.cuda.max_memory_reserved() if dev.type == "cuda" else None,
        "flopsPerStep": fl, "mfu": fl / sec / PEAK_BF16 if dev.type == "cuda" else None, "loss": loss_value,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
