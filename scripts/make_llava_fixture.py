#!/usr/bin/env python3
"""Generate tests/fixtures/tiny_llava/ : a tiny random transformers `LlavaForConditionalGeneration` and float64
reference logits, for the transformers parity / interchange test (tests/model/llava_parity.test.ts).

Regenerate (from the repository root; needs torch, transformers >= 5 (made with 5.18) and safetensors, CPU):

    python3 scripts/make_llava_fixture.py

Same conventions as scripts/make_fixtures.py (whose helpers it imports): deterministic (fixed generators, CPU,
one thread), weights re-initialised with plain normals, references computed in float64 from the float32 weights
and inputs stored here with HF's float32-only spots patched (`exact_float64`), then stored as float32. It
overwrites the files below and prints their sizes. Tests never run Python.

The model
---------
LlavaConfig(vision_config=CLIPVisionConfig(hidden 32, intermediate 48, 3 layers, 4 heads, image 16, patch 4,
quick_gelu), text_config=LlamaConfig(vocab 64, hidden 32, intermediate 40, 2 layers, 4 heads, 2 KV heads,
rope_theta 10000, untied), projector_hidden_act "gelu" (LLaVA's mlp2x_gelu: linear_1, GELU, linear_2, with
biases), vision_feature_layer -2, vision_feature_select_strategy "default" (CLS dropped: 16 features per
image), image_token_index 63 (the last vocabulary id, as llava-hf puts <image> after the text vocabulary)).
Weights: matrices/embeddings N(0, 0.2^2), LayerNorm/RMSNorm weights 1 + 0.1 N(0, 1), biases 0.1 N(0, 1).

How transformers 5.x runs it (checked below by an explicit re-implementation, `manual_logits`):
  * the prompt carries one image token per image feature (the processor expands <image> to image_seq_length
    = 16 tokens); LlavaModel embeds input_ids as usual, then `inputs_embeds.masked_scatter(input_ids ==
    image_token_id, features)` overwrites the embeddings at those positions, in row-major (batch, position)
    order, with the features of image 0 patch 0..15, image 1 patch 0..15, ...; nothing is inserted or shifted;
  * position ids are 0..T-1 for every row (right padding does not shift them); the attention mask is causal
    and hides padded keys;
  * features = multi_modal_projector(vision_tower(pixels).hidden_states[-2][:, 1:]) (hidden_states[0] is the
    pre_layrnorm'd embedding output; the last encoder layer and post_layernorm do not contribute).

Files
-----
tests/fixtures/tiny_llava/hf/   exactly what `save_pretrained` writes (config.json, generation_config.json,
                                model.safetensors). NOTE the tensor names on disk: transformers 5.18 saves the
                                *legacy* LLaVA layout, reversing its load-time conversion mapping:
                                  language_model.model.{embed_tokens,layers.N.*,norm}.weight
                                  language_model.lm_head.weight
                                  multi_modal_projector.linear_{1,2}.{weight,bias}
                                  vision_tower.{embeddings.*,pre_layrnorm.*,encoder.layers.N.*,post_layernorm.*}
                                (in memory they are model.language_model.*, lm_head.*, model.multi_modal_projector.*,
                                model.vision_tower.*; the llava-hf hub checkpoints made by transformers 4.x have
                                vision_tower.vision_model.* for the CLIP tower).
tests/fixtures/tiny_llava/io.safetensors
                                input_ids       int32 [2, 24]: row 0 = BOS, 2 text, 16 x <image>, 5 text;
                                                row 1 = BOS, 3 text, 16 x <image>, 2 text, 2 x pad (id 0)
                                attention_mask  int32 [2, 24]: row 0 all ones, row 1 zeros at 22, 23 (right padding)
                                pixel_values    float32 [2, 3, 16, 16] ~ N(0, 1) (image b belongs to row b)
                                image_features  float32 [2, 16, 32]: projected patch features (what is scattered)
                                logits          float32 [2, 24, 64]: float64 reference
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIX, exact_float64, f32_contig, rel_err, sizes  # noqa: E402

IMAGE_TOKEN = 63
OUT = os.path.join(FIX, "tiny_llava")


def llava_config() -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=16,
        patch_size=4, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16,
    )
    text = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False, hidden_act="silu", attention_bias=False, mlp_bias=False, pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=16,
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        multimodal_projector_bias=True, tie_word_embeddings=False, attn_implementation="eager",
    )


def make_inputs(g: torch.Generator, V: int):
    B, T, P = 2, 24, 16
    input_ids = torch.zeros(B, T, dtype=torch.long)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    # row 0: BOS t t <img>x16 t t t t t ; row 1: BOS t t t <img>x16 t t pad pad
    for b, (before, after) in enumerate([(2, 5), (3, 2)]):
        text = torch.randint(3, IMAGE_TOKEN, (before + after,), generator=g)  # never the image token
        row = [1] + text[:before].tolist() + [IMAGE_TOKEN] * P + text[before:].tolist()
        input_ids[b, :len(row)] = torch.tensor(row)
        attention_mask[b, len(row):] = 0
    assert int((input_ids == IMAGE_TOKEN).sum()) == B * P
    pixel_values = torch.randn(B, 3, 16, 16, generator=g)
    return input_ids, attention_mask, pixel_values


def run(model, input_ids, attention_mask, pixel_values):
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    pixel_values=pixel_values.to(model.dtype), use_cache=False)
    return out.logits, out.image_hidden_states


@torch.no_grad()
def manual_logits(model, input_ids, attention_mask, pixel_values):
    """The layout spelled out: features from hidden_states[-2] without CLS, projected; written into the token
    embeddings at the image-token positions in row-major order; LLaMA on those embeddings, positions 0..T-1."""
    m = model.model
    hs = m.vision_tower(pixel_values.to(model.dtype), output_hidden_states=True).hidden_states
    feats = m.multi_modal_projector(hs[-2][:, 1:])  # [nImages, P, D]
    flat = feats.reshape(-1, feats.shape[-1])
    emb = m.language_model.embed_tokens(input_ids).clone()
    k = 0
    for b in range(input_ids.shape[0]):
        for t in range(input_ids.shape[1]):
            if input_ids[b, t] == IMAGE_TOKEN:
                emb[b, t] = flat[k]
                k += 1
    assert k == flat.shape[0]
    B, T = input_ids.shape
    pos = torch.arange(T)[None].expand(B, T)
    h = m.language_model(inputs_embeds=emb, attention_mask=attention_mask, position_ids=pos).last_hidden_state
    return model.lm_head(h), feats


def make_llava():
    torch.manual_seed(2468)
    cfg = llava_config()
    model = LlavaForConditionalGeneration(cfg).to(torch.float32)
    assert model.config.text_config._attn_implementation == "eager"
    assert model.config.vision_config._attn_implementation == "eager"
    g = torch.Generator().manual_seed(2468)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = any(s in name for s in ("layer_norm", "layrnorm", "layernorm", "norm.weight"))
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif is_norm:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    model.eval()
    V = cfg.text_config.vocab_size
    input_ids, attention_mask, pixel_values = make_inputs(g, V)

    # hf/: exactly what save_pretrained writes (float32 weights)
    hf_dir = os.path.join(OUT, "hf")
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    model.save_pretrained(hf_dir)

    logits32, _ = run(model, input_ids, attention_mask, pixel_values)
    model64 = model.double()
    logits_hf, _ = run(model64, input_ids, attention_mask, pixel_values)
    with exact_float64():
        logits, feats = run(model64, input_ids, attention_mask, pixel_values)
        manual, manual_feats = manual_logits(model64, input_ids, attention_mask, pixel_values)
    assert rel_err(manual, logits) < 1e-12, "the LLaVA layout is not what manual_logits assumes"
    assert rel_err(manual_feats.reshape(-1, 32), feats.reshape(-1, 32)) < 1e-12
    assert rel_err(logits_hf, logits) < 1e-5

    save_file(f32_contig({
        "input_ids": input_ids.to(torch.int32),
        "attention_mask": attention_mask.to(torch.int32),
        "pixel_values": pixel_values,
        "image_features": feats.reshape(2, 16, 32),
        "logits": logits,
    }), os.path.join(OUT, "io.safetensors"), metadata={"format": "pt"})

    # transformers must load hf/ back and reproduce the float64 logits
    m = LlavaForConditionalGeneration.from_pretrained(hf_dir, attn_implementation="eager", dtype=torch.float64).eval()
    with exact_float64():
        l, _ = run(m, input_ids, attention_mask, pixel_values)
    assert rel_err(l, logits) < 1e-12, "reloaded tiny_llava/hf differs"

    mask = attention_mask.bool()
    print("tiny_llava float32 vs float64 (non-padded rows): logits %.2e"
          % rel_err(logits32[mask], logits[mask]))
    print("tiny_llava HF-float64 (float32 softmax/RMSNorm/RoPE) vs exact float64: logits %.2e"
          % rel_err(logits_hf, logits))
    print("tiny_llava magnitudes: |logits|max %.2f, std %.2f" % (logits.abs().max(), logits.std()))
    with open(os.path.join(hf_dir, "config.json")) as f:
        conf = json.load(f)
    print("tiny_llava hf/config.json keys:", sorted(conf))


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    make_llava()
    sizes(OUT)


if __name__ == "__main__":
    sys.exit(main())
