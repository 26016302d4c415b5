#!/usr/bin/env python3
"""Generate the committed test fixtures under tests/fixtures/ (reference data made with PyTorch + HF).

Regenerate (from the repository root; needs torch, transformers >= 5 and safetensors, CPU is enough):

    python3 scripts/make_fixtures.py

The script is deterministic (fixed torch seeds, CPU, float64 references; every file carries at most one
metadata key, because the safetensors library writes a multi-key __metadata__ map in random order); it
overwrites the files below and prints their sizes. Tests never run Python: they only read these files.

What each file holds
--------------------
tests/fixtures/tiny_llama/
  config.json          HF LlamaConfig (vocab 61, hidden 32, intermediate 40, 2 layers, 4 heads, 2 KV heads,
                       head_dim 8, max positions 64, rms_norm_eps 1e-6, rope_theta 10000, untied lm_head,
                       silu, no biases). Written by transformers 5 (`rope_parameters`) with the classic
                       top-level `rope_theta` added, as transformers 4.x checkpoints carry it.
  model.safetensors    LlamaForCausalLM weights, float32, HF names (model.embed_tokens.weight,
                       model.layers.N.self_attn.{q,k,v,o}_proj.weight, model.layers.N.mlp.{gate,up,down}_proj.weight,
                       model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight).
                       Every matrix ~ N(0, 0.3^2); RMSNorm weights = 1 + 0.1 N(0, 1).
  io.safetensors       Reference inputs/outputs. All references are computed in float64 from the float32 weights
                       and inputs stored here (model.double(), attn_implementation="eager"), then cast to float32:
                         input_ids        int32 [2, 7]   (row 1 positions 5, 6 are padding, id 0)
                         attention_mask   int32 [2, 7]   row 0 all ones; row 1 = 1 1 1 1 1 0 0 (right padding)
                         logits           float32 [2, 7, 61]
                         hidden_states.K  float32 [2, 7, 32], K = 0..2: HF output_hidden_states. K = 0 is the
                                          embedding output, K = k the output of decoder layer k-1, EXCEPT the last
                                          one (K = num_layers), which is the final output AFTER model.norm (HF
                                          replaces the last layer's raw output by last_hidden_state).
                         R                float32 [2, 7, 61] ~ N(0, 1), +0 at padded positions
                         grad.<param>     float32, d(sum(logits * R)) / d(param) for every parameter
                       No position_ids are passed, so HF uses 0..6 for both rows (padding does not shift them).
                       The padded query positions attend to the non-padded keys only (causal & key mask); their
                       logits are stored as HF computes them, but R = 0 there so they never reach the gradients.
tests/fixtures/tiny_llama_sharded/
                       The same weights saved by transformers' save_pretrained with a small max_shard_size:
                       config.json, model.safetensors.index.json (metadata.total_size, weight_map) and
                       model-0000i-of-0000n.safetensors shards; for the sharded-checkpoint reader.
tests/fixtures/tiny_clip/
  config.json          HF CLIPVisionConfig (hidden 32, intermediate 48, 3 layers, 4 heads, image 16, patch 4,
                       3 channels, quick_gelu, layer_norm_eps 1e-5, projection_dim 16).
  model.safetensors    CLIPVisionModel weights, float32, with the hub names `vision_model.*` (as in
                       openai/clip-vit-*: vision_model.embeddings.{patch_embedding.weight, class_embedding,
                       position_embedding.weight}, vision_model.pre_layrnorm.{weight,bias},
                       vision_model.encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2,
                       layer_norm2}.{weight,bias}, vision_model.post_layernorm.{weight,bias}).
                       Matrices/embeddings ~ N(0, 0.2^2); LayerNorm weights 1 + 0.1 N(0,1); all biases 0.1 N(0,1).
  io.safetensors       float64 references cast to float32 (eager attention):
                         pixel_values     float32 [2, 3, 16, 16] ~ N(0, 1)
                         hidden_states.K  float32 [2, 17, 32], K = 0..3: HF encoder hidden states; K = 0 is the
                                          embedding output after pre_layrnorm, K = k the output of encoder layer
                                          k-1; the last one is NOT post-layernormed (equals last_hidden_state).
                         last_hidden_state float32 [2, 17, 32] (no post_layernorm, as HF)
                         pooler_output    float32 [2, 32] = post_layernorm(last_hidden_state[:, 0])
                         R                float32 [2, 17, 32] ~ N(0, 1) (the shape of hidden_states.2)
                         grad.<param>     d(sum(hidden_states[-2][:, 1:, :] * R[:, 1:, :])) / d(param), for every
                                          parameter that receives a gradient (LLaVA features: select_layer -2,
                                          CLS dropped); the last encoder layer and post_layernorm get none and
                                          are omitted. Names use the `vision_model.` prefix.
                         grad.pixel_values float32 [2, 3, 16, 16]
tests/fixtures/dtypes.safetensors
                       Small tensors with exactly known values in every dtype the reader converts (F32, F16, BF16,
                       F64, I64, I32, I16, I8, U8, BOOL), plus metadata {"format": "pt"}. The tests
                       carry the expected values as literals (see make_dtypes below).

Float64: HF's modelling code keeps float32 in the eager attention softmax, in LlamaRMSNorm and in the LLaMA
rotary embedding even after model.double(); `exact_float64()` below makes those run in float64 too, so the
references are float64 throughout (plain HF float64 differs from them by ~4e-7 relative, i.e. float32 level).

Gradients that are zero in exact arithmetic: grad.vision_model.encoder.layers.N.self_attn.k_proj.bias (softmax
is invariant to a per-query shift, which is all a key bias adds) is ~1e-15 in the file; compare such tensors
with an absolute tolerance scaled by the other gradients, not relative to their own norm.

Cross-check printed at the end: the float32 forward/backward against the float64 references (max relative
error), so one can see that a float32 implementation can meet the 1e-4 relative tolerance.
"""

import contextlib
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file, load_file
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normwise relative error max|a - b| / max|b|."""
    a = a.double()
    b = b.double()
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def f32_contig(d):
    return {k: v.detach().to(torch.float32).contiguous() if v.is_floating_point() else v.contiguous()
            for k, v in d.items()}


@contextlib.contextmanager
def exact_float64():
    """HF's modelling code forces float32 in three places even after model.double(): the eager attention softmax
    (`softmax(..., dtype=torch.float32)`, LLaMA and CLIP), LlamaRMSNorm (`hidden_states.to(torch.float32)`) and
    LlamaRotaryEmbedding (inv_freq, positions, cos/sin in float32). Within this context those run in float64 when
    their input is float64 (same formulas), so that the references really are float64. Unpatched float64 HF
    agrees with the patched result to float32 accuracy (asserted in make_llama/make_clip)."""
    F = torch.nn.functional
    orig_softmax = F.softmax
    orig_rms = modeling_llama.LlamaRMSNorm.forward
    orig_rope = modeling_llama.LlamaRotaryEmbedding.forward

    def softmax(input, dim=None, _stacklevel=3, dtype=None):
        if input.dtype == torch.float64 and dtype == torch.float32:
            dtype = None
        return orig_softmax(input, dim=dim, dtype=dtype)

    def rms_forward(self, hidden_states):
        if hidden_states.dtype != torch.float64:
            return orig_rms(self, hidden_states)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))

    def rope_forward(self, x, position_ids):
        if x.dtype != torch.float64:
            return orig_rope(self, x, position_ids)
        assert self.rope_type == "default"
        cfg = self.config
        base = cfg.rope_parameters["rope_theta"]
        dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        freqs = position_ids.to(torch.float64)[:, :, None] * inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.device), (emb.sin() * self.attention_scaling).to(x.device)

    F.softmax = softmax
    modeling_llama.LlamaRMSNorm.forward = rms_forward
    modeling_llama.LlamaRotaryEmbedding.forward = rope_forward
    try:
        yield
    finally:
        F.softmax = orig_softmax
        modeling_llama.LlamaRMSNorm.forward = orig_rms
        modeling_llama.LlamaRotaryEmbedding.forward = orig_rope


def config_json(cfg, architecture):
    conf = json.loads(cfg.to_json_string())  # the non-default keys, as save_pretrained writes them
    for k in ("_attn_implementation_autoset", "attn_implementation", "_attn_implementation"):
        conf.pop(k, None)
    conf["architectures"] = [architecture]
    conf["torch_dtype"] = "float32"
    return conf


# ----------------------------------------------------------------------------------------------------------------
# tiny LLaMA
# ----------------------------------------------------------------------------------------------------------------
def llama_config() -> LlamaConfig:
    return LlamaConfig(
        vocab_size=61, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False, hidden_act="silu", attention_bias=False, mlp_bias=False,
        attn_implementation="eager",
    )


def llama_forward_backward(model, input_ids, attention_mask, R):
    """Returns (logits, hidden_states tuple, {name: grad}) for sum(logits * R)."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    (out.logits * R.to(out.logits.dtype)).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), tuple(h.detach() for h in out.hidden_states), grads


def make_llama():
    torch.manual_seed(1234)
    cfg = llama_config()
    model = LlamaForCausalLM(cfg).to(torch.float32)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # input_layernorm, post_attention_layernorm, model.norm
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    model.eval()

    B, T, V = 2, 7, cfg.vocab_size
    input_ids = torch.randint(1, V, (B, T), generator=g)
    attention_mask = torch.ones(B, T, dtype=torch.long)
    attention_mask[1, 5:] = 0
    input_ids[1, 5:] = 0  # pad = unk = 0 as in LLaVA
    R = torch.randn(B, T, V, generator=g)
    R = R.masked_fill(attention_mask[:, :, None] == 0, 0.0)  # +0, not -0

    # float32 run (only for the printed cross-check)
    logits32, hidden32, grads32 = llama_forward_backward(model, input_ids, attention_mask, R)
    weights32 = {n: p.detach().clone() for n, p in model.state_dict().items()}

    # float64 references from the same float32 weights
    model64 = model.double()
    logits_hf, hidden_hf, grads_hf = llama_forward_backward(model64, input_ids, attention_mask, R.double())
    with exact_float64():
        logits, hidden, grads = llama_forward_backward(model64, input_ids, attention_mask, R.double())
        check_llama_conventions(model64, cfg, input_ids, attention_mask, logits, hidden)
    assert rel_err(logits_hf, logits) < 1e-5 and max(rel_err(grads_hf[n], grads[n]) for n in grads) < 1e-4

    d = os.path.join(FIX, "tiny_llama")
    os.makedirs(d, exist_ok=True)
    conf = config_json(cfg, "LlamaForCausalLM")
    conf["rope_theta"] = 10000.0
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(sorted(conf.items())), f, indent=2)
        f.write("\n")
    save_file(f32_contig(weights32), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    io = {
        "input_ids": input_ids.to(torch.int32),
        "attention_mask": attention_mask.to(torch.int32),
        "logits": logits,
        "R": R,
    }
    for k, h in enumerate(hidden):
        io[f"hidden_states.{k}"] = h
    for n, gr in grads.items():
        io[f"grad.{n}"] = gr
    assert set(grads) == set(weights32), "every llama parameter must have a gradient"
    save_file(f32_contig(io), os.path.join(d, "io.safetensors"),
              metadata={"format": "pt"})

    # Sharded copy, written by HF itself.
    sd = os.path.join(FIX, "tiny_llama_sharded")
    shutil.rmtree(sd, ignore_errors=True)
    m32 = LlamaForCausalLM(cfg).to(torch.float32)
    m32.load_state_dict(weights32)
    m32.save_pretrained(sd, max_shard_size="30KB")
    for extra in ("generation_config.json",):
        p = os.path.join(sd, extra)
        if os.path.exists(p):
            os.remove(p)
    shutil.copyfile(os.path.join(d, "config.json"), os.path.join(sd, "config.json"))

    # Reload both checkpoints with HF and check they reproduce the float64 logits.
    for path in (d, sd):
        m = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=torch.float64).eval()
        with torch.no_grad(), exact_float64():
            l = m(input_ids=input_ids, attention_mask=attention_mask).logits
        assert rel_err(l, logits) < 1e-12, f"reloaded {path} differs"

    print("tiny_llama float32 vs float64:  logits %.2e" % rel_err(logits32, logits),
          " hidden %.2e" % max(rel_err(a, b) for a, b in zip(hidden32, hidden)),
          " grads %.2e" % max(rel_err(grads32[n], grads[n]) for n in grads))
    print("tiny_llama HF-float64 (float32 softmax/RMSNorm/RoPE) vs exact float64:  logits %.2e  grads %.2e"
          % (rel_err(logits_hf, logits), max(rel_err(grads_hf[n], grads[n]) for n in grads)))
    print("tiny_llama magnitudes: |logits|max %.2f, std %.2f" % (logits.abs().max(), logits.std()))


@torch.no_grad()
def check_llama_conventions(model64, cfg, input_ids, attention_mask, logits, hidden):
    """hidden_states convention (HF 5.x): K = 0 is the embedding output, K = k the output of layer k-1, and the
    last one is the final norm applied to the last layer's output (not the raw layer output)."""
    B, T = input_ids.shape
    assert len(hidden) == cfg.num_hidden_layers + 1
    emb = model64.model.embed_tokens(input_ids)
    assert torch.equal(hidden[0], emb), "hidden_states[0] is not the embedding output"
    x = hidden[0]
    pos = torch.arange(T)[None].expand(B, T)
    pe = model64.model.rotary_emb(x, position_ids=pos)
    from transformers.masking_utils import create_causal_mask
    mask = create_causal_mask(config=model64.config, inputs_embeds=x, attention_mask=attention_mask,
                              past_key_values=None, position_ids=pos)
    for k, layer in enumerate(model64.model.layers):
        x = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
        if isinstance(x, tuple):
            x = x[0]
        if k < cfg.num_hidden_layers - 1:
            assert rel_err(hidden[k + 1], x) < 1e-12, f"hidden_states[{k + 1}] != layer {k} output"
    assert rel_err(hidden[-1], model64.model.norm(x)) < 1e-12, "hidden_states[-1] is not norm(last layer)"
    assert rel_err(logits, model64.lm_head(hidden[-1])) < 1e-12



# ----------------------------------------------------------------------------------------------------------------
# tiny CLIP vision tower
# ----------------------------------------------------------------------------------------------------------------
def clip_config() -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=16,
        patch_size=4, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16,
        attn_implementation="eager",
    )


def hub_name(n: str) -> str:
    """transformers 5 keeps CLIPVisionModel's parameters without the `vision_model.` prefix that the hub
    checkpoints (and transformers 4.x) use; the fixture uses the hub names."""
    return n if n.startswith("vision_model.") else "vision_model." + n


def make_clip():
    torch.manual_seed(4321)
    cfg = clip_config()
    model = CLIPVisionModel(cfg).to(torch.float32)
    g = torch.Generator().manual_seed(4321)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_ln = ("layer_norm" in name) or ("layrnorm" in name) or ("layernorm" in name)
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif is_ln:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    model.eval()
    B, C, S = 2, cfg.num_channels, cfg.image_size
    pixel_values = torch.randn(B, C, S, S, generator=g)
    n_tok = (S // cfg.patch_size) ** 2 + 1
    R = torch.randn(B, n_tok, cfg.hidden_size, generator=g)

    def run(m, dtype):
        m.zero_grad(set_to_none=True)
        pv = pixel_values.to(dtype).clone().requires_grad_(True)
        out = m(pixel_values=pv, output_hidden_states=True)
        hs = out.hidden_states
        (hs[-2][:, 1:, :] * R.to(dtype)[:, 1:, :]).sum().backward()
        grads = {hub_name(n): p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}
        return out, pv.grad.detach().clone(), grads

    out32, gpv32, grads32 = run(model, torch.float32)
    weights32 = {hub_name(n): t.detach().clone() for n, t in model.state_dict().items()}
    model64 = model.double()
    out_hf, gpv_hf, grads_hf = run(model64, torch.float64)
    with exact_float64():
        out, gpv, grads = run(model64, torch.float64)
    hs = out.hidden_states
    assert rel_err(out_hf.hidden_states[2], hs[2]) < 1e-5 and rel_err(gpv_hf, gpv) < 1e-4
    assert len(hs) == cfg.num_hidden_layers + 1
    # Conventions: hs[0] = pre_layrnorm(embeddings); last = last_hidden_state (no post_layernorm);
    # pooler_output = post_layernorm(last_hidden_state[:, 0]).
    with torch.no_grad():
        emb = model64.embeddings(pixel_values.double())
        assert rel_err(hs[0], model64.pre_layrnorm(emb)) < 1e-12
        assert torch.equal(hs[-1], out.last_hidden_state)
        assert rel_err(out.pooler_output, model64.post_layernorm(out.last_hidden_state[:, 0])) < 1e-12
    no_grad = sorted(set(weights32) - set(grads))
    assert all(n.startswith("vision_model.encoder.layers.2.") or n.startswith("vision_model.post_layernorm.")
               for n in no_grad), no_grad

    d = os.path.join(FIX, "tiny_clip")
    os.makedirs(d, exist_ok=True)
    conf = config_json(cfg, "CLIPVisionModel")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(sorted(conf.items())), f, indent=2)
        f.write("\n")
    save_file(f32_contig(weights32), os.path.join(d, "model.safetensors"), metadata={"format": "pt"})

    io = {
        "pixel_values": pixel_values,
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
        "R": R,
        "grad.pixel_values": gpv,
    }
    for k, h in enumerate(hs):
        io[f"hidden_states.{k}"] = h
    for n, gr in grads.items():
        io[f"grad.{n}"] = gr
    save_file(f32_contig(io), os.path.join(d, "io.safetensors"),
              metadata={"format": "pt"})

    # HF must load the hub-named checkpoint back.
    m = CLIPVisionModel.from_pretrained(d, attn_implementation="eager", dtype=torch.float64).eval()
    with torch.no_grad(), exact_float64():
        o = m(pixel_values=pixel_values.double(), output_hidden_states=True)
    assert rel_err(o.hidden_states[2], hs[2]) < 1e-12 and rel_err(o.pooler_output, out.pooler_output) < 1e-12, \
        "reloaded tiny_clip differs"

    print("tiny_clip float32 vs float64:  hidden %.2e" % max(rel_err(a, b) for a, b in zip(out32.hidden_states, hs)),
          " grads %.2e" % max(rel_err(grads32[n], grads[n]) for n in grads if "k_proj.bias" not in n),
          " grad.pixel_values %.2e" % rel_err(gpv32, gpv))
    print("tiny_clip grad of k_proj.bias (exactly 0 in exact arithmetic: softmax is shift invariant): max %.1e"
          % max(float(grads[n].abs().max()) for n in grads if "k_proj.bias" in n))
    print("tiny_clip HF-float64 (float32 softmax) vs exact float64:  hidden %.2e  grads %.2e"
          % (max(rel_err(a, b) for a, b in zip(out_hf.hidden_states, hs)),
             max(rel_err(grads_hf[n], grads[n]) for n in grads if "k_proj.bias" not in n)))


# ----------------------------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------------------------
def make_dtypes():
    """Values are chosen to be exactly representable in their dtype (so the expected float32/int32 values
    in tests/io/safetensors.test.ts are literals); the F64 tensor also has values that round to float32."""
    inf = float("inf")
    t = {
        "f32": torch.tensor([[1.5, -2.25, 0.0], [3.0e38, -1.0e-45, 7.0]], dtype=torch.float32),
        # f16: 1, -2, 0.5, max 65504, min subnormal 2^-24, -0, inf, -inf, 0.333251953125 (nearest f16 to 1/3)
        "f16": torch.tensor([1.0, -2.0, 0.5, 65504.0, 2.0 ** -24, -0.0, inf, -inf, 0.333251953125],
                            dtype=torch.float16),
        "f16_nan": torch.tensor([float("nan")], dtype=torch.float16),
        # bf16 [2, 3]: 1, -3.5, 2^-7, max 3.3895313892515355e38, 2^-133 (smallest subnormal), 2^100
        "bf16": torch.tensor([[1.0, -3.5, 0.0078125], [3.3895313892515355e38, 2.0 ** -133, 2.0 ** 100]],
                             dtype=torch.bfloat16),
        # f64: exact ones, then 0.1 and 1/3 that round to float32, then 1e300 -> inf in float32
        "f64": torch.tensor([1.0, -0.5, 1024.0, 0.1, 1.0 / 3.0, 1e300], dtype=torch.float64),
        "i64": torch.tensor([[0, -1, 2147483647], [-2147483648, 123456789, -42]], dtype=torch.int64),
        "i32": torch.tensor([7, -7, 2147483647], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 0, -5], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, -1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 128, 1], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True, False], dtype=torch.bool),
        "scalar_f16": torch.tensor(2.5, dtype=torch.float16),  # shape []
        "empty_bf16": torch.zeros((0, 3), dtype=torch.bfloat16),  # shape [0, 3]
    }
    assert float(t["bf16"][1, 0]) == 3.3895313892515355e38 and float(t["bf16"][1, 1]) == 2.0 ** -133
    assert float(t["f16"][8]) == 0.333251953125
    save_file(t, os.path.join(FIX, "dtypes.safetensors"),
              metadata={"format": "pt"})
    back = load_file(os.path.join(FIX, "dtypes.safetensors"))
    for k in t:
        assert back[k].dtype == t[k].dtype and torch.equal(back[k].nan_to_num(), t[k].nan_to_num()), k


def sizes(folder=None):
    """Prints every file under folder (default: the fixtures folder) with its size."""
    total = 0
    for dirpath, _, files in sorted(os.walk(folder or FIX)):
        for fn in sorted(files):
            p = os.path.join(dirpath, fn)
            s = os.path.getsize(p)
            total += s
            print(f"  {os.path.relpath(p, ROOT):60s} {s:9d} bytes")
    print(f"  total {total} bytes")


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(FIX, exist_ok=True)
    make_llama()
    make_clip()
    make_dtypes()
    sizes()


if __name__ == "__main__":
    sys.exit(main())
