#!/usr/bin/env python3
"""The transformers side of benchmarks/generate_throughput.ts (issue 12): LlavaForConditionalGeneration at a size of
hf_vwlmm_train.py's SIZES, built on the device in bf16 with a vm_head; B prompts of 4 prefix tokens, the image and Q
question tokens; greedy generate with min_new_tokens = max_new_tokens (every answer runs the budget, as on the vwlmm
side), one batch. Times max_new_tokens 1 and N (median of --reps, host time to a synchronize); visual words: the top-5
of softmax(vm_head(projected features)) of every patch of B images. Prints one JSON line.

  python3 benchmarks/hf_generate.py [--size 7b|issue|tiny] [--device cuda|cpu] [--batch 16] [--question 64] [--new-tokens 32] [--reps 3]
"""
import argparse
import json
import time

import torch
from transformers import LlavaForConditionalGeneration

from hf_vwlmm_train import llava_config, parse_sized


def median_seconds(fn, reps, sync):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--question", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    a, s, dev = parse_sized(ap, "7b")
    cfg = llava_config(s)
    V, image_token = s["text"]["vocab_size"], cfg.image_token_index
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    with dev:
        model = LlavaForConditionalGeneration(cfg).to(dtype).eval()
        vm_head = torch.nn.Linear(s["text"]["hidden_size"], V, bias=False).to(dtype)
    S = s["vision"]["image_size"]
    P = (S // s["vision"]["patch_size"]) ** 2
    B, prefix = a.batch, 4
    ids = torch.randint(1, V - 1, (B, prefix + P + a.question), device=dev)
    ids[:, prefix:prefix + P] = image_token
    mask = torch.ones_like(ids)
    pixels = torch.randn(B, 3, S, S, device=dev, dtype=dtype)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def gen(n):
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    captured = {}  # the projector's output (what get_image_features returns differs between transformers versions)
    model.model.multi_modal_projector.register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))

    def words():
        with torch.no_grad():
            model.model.get_image_features(pixel_values=pixels, vision_feature_layer=-2, vision_feature_select_strategy="default")
            torch.softmax(vm_head(captured["x"]).float(), -1).topk(5, -1).indices.cpu()

    prefill = median_seconds(lambda: gen(1), a.reps, sync)
    full = median_seconds(lambda: gen(a.new_tokens), max(1, a.reps - 1), sync)
    w = median_seconds(words, a.reps, sync)
    N = a.new_tokens
    print(json.dumps({
        "impl": "hf", "size": a.size, "device": a.device, "batch": B, "promptTokens": prefix + P + a.question, "newTokens": N,
        "prefillSeconds": prefill, "fullSeconds": full, "decodeTokensPerSec": B * (N - 1) / (full - prefill), "answersTokensPerSec": B * N / full,
        "visualWordsImagesPerSec": B / w, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
