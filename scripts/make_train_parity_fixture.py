#!/usr/bin/env python3
"""Generate tests/fixtures/train_parity/ : a tiny random VW-LMM, 12 fixed micro-batches, and what PyTorch +
transformers make of 6 optimizer steps on them, for the training parity test (tests/train/torch_parity.test.ts).

Regenerate (from the repository root; needs torch, transformers >= 5 (made with torch 2.13, transformers 5.18) and
safetensors, CPU):

    python3 scripts/make_train_parity_fixture.py            # writes the fixture, prints its sizes and the checks
    python3 scripts/make_train_parity_fixture.py --debug D  # also dumps step 1's float64 gradients to D (diagnosis)

Deterministic (fixed generators, CPU, one thread). Tests never run Python.

The model (transformers' own modules, as LlavaForConditionalGeneration builds them, plus VW-LMM's vm_head)
-------------------------------------------------------------------------------------------------------
LlavaForConditionalGeneration(LlavaConfig(vision_config=CLIPVisionConfig(hidden 16, intermediate 24, 2 layers,
2 heads, image 8, patch 2 (16 patches), quick_gelu), text_config=LlamaConfig(vocab 64, hidden 32, intermediate
40, 2 layers, 4 heads / 2 KV heads, rope_theta 10000, untied), projector "gelu" with biases (mlp2x_gelu),
vision_feature_layer -2, strategy "default" (CLS dropped), image_token_index 63)) and vm_head =
nn.Linear(32, 64, bias=False). Weights: matrices N(0, 0.2^2), norm weights 1 + 0.1 N(0, 1), biases 0.1 N(0, 1).

One micro-batch's loss, as LLaVA + the official VW-LMM objective compute it (VISUAL_WORDS.md section 2):
  * features x = projector(CLIP(pixels).hidden_states[-2][:, 1:]) ([nImages * 16, 32], image by image);
  * the token embeddings with x written at the image-token positions in row-major order (transformers'
    masked_scatter, which is what LlavaModel.forward does), the LLaMA decoder on them (positions 0..T-1,
    right padding hidden by the attention mask), logits = lm_head(h);
  * CE = transformers' causal-LM loss with `labels` (shifted inside: mean over the supervised next tokens);
  * KL = KLDivLoss(reduction='batchmean')(log_softmax(logits[b, s - 1]), softmax(vm_head(x_k))) over every image
    feature k at (b, s) with s > 0 (the row just before the patch), M rows; the target is NOT detached;
  * loss = CE + 1.0 * KL (vm_weight 1).

The training loop, as transformers' Trainer runs it (LLaVA's trainer is a subclass):
  * gradient accumulation 2: each micro-batch's loss / 2 back-propagated (the custom VW-LMM forward takes no
    num_items_in_batch, so the Trainer divides by the accumulation steps); logged loss = mean of the two;
  * torch.nn.utils.clip_grad_norm_(params, 7.0) (its returned pre-clip norm is the logged grad_norm): 7 rather than
    transformers' default 1 so that both branches run (pre-clip norms 8.3, 8.2, 7.7 clip; 6.6, 6.7, 7.0 do not);
  * torch.optim.AdamW(betas (0.9, 0.999), eps 1e-8), two groups as Trainer.create_optimizer makes them: weight
    decay 0.1 for get_decay_parameter_names' parameters, 0 for biases and norms;
  * transformers.get_cosine_schedule_with_warmup(warmup = ceil(6 * 0.2) = 2, total 6); peak lr 5e-3;
  * every part trains (vision tower, projector, LLM, vm_head).
  * A micro-batch without images (text-only) runs without pixel_values. LLaVA runs such samples through the tower
    and projector on a zero dummy image whose features it drops (cur_image_features[0:0]), so those parts get a
    zero gradient rather than none and AdamW still steps them; this script does the same at the end of each step's
    backward for every trained parameter whose .grad is None, EXCEPT the tower's parameters that no loss can reach
    (the last CLIP encoder layer and post_layernorm, above vision_feature_layer -2): torch leaves their .grad None
    and AdamW skips them (no weight decay, no moments).

The schedule of batches (B = 2 rows each, one image per image row; P = 16 image tokens):
  step 1-3: image micro-batches (one row with the image right after BOS as LLaVA's plain template, one with text
            before the image as vicuna_v1; right padding; varied lengths); step 4: an image micro-batch whose
            second row is text-only, then a text-only micro-batch; step 5: two text-only micro-batches (the
            projector, tower and vm_head step on zero gradients); step 6: image micro-batches.

The reference runs in float64 (weights from the float32 initial ones; HF's float32-only spots patched:
make_fixtures.exact_float64); the same loop in float32 is run too and its distance to the float64 reference printed
(what float32 rounding alone does over 6 steps: the scale of the test's tolerances).

Files (tests/fixtures/train_parity/)
------------------------------------
init/config.json, init/model.safetensors
    the initial weights, float32, in LLaVA's own layout as vwlmm's saveCheckpoint writes it (vision tower embedded:
    model.embed_tokens, model.layers.N.*, model.norm, lm_head, vm_head, model.mm_projector.{0,2}.*,
    model.vision_tower.vision_tower.vision_model.*), config.json as vwlmm's configToJson (vm_weight 1).
batches.safetensors
    per micro-batch k = 0..11 (step k // 2 + 1, micro-batch k % 2): `k.input_ids` int32 [2, T] (image positions
    hold 63), `k.attention_mask` int32 [2, T], `k.labels` int32 [2, T] (HF, unshifted; -100 = none), `k.targets`
    int32 [2, T] (labels shifted left: vwlmm's ModelBatch.targets), `k.image_positions` int32 [nImages * 16]
    (b * T + t, image by image), `k.pixel_values` float32 [nImages, 3, 8, 8] (absent for a text-only micro-batch).
reference.json
    the hyperparameters; per step (6) of the float64 run (`float64`) and of the float32 run (`float32`): `loss`,
    `ce`, `kl` (means over the micro-batches), `grad_norm` (before clipping), `lr`, and `step1_grad`: per parameter,
    step 1's accumulated gradient (before clipping) summarised as {norm, cos} (L2 norm; cosine with the direction
    sin(1), sin(2), ... over the row-major elements), null where torch gives none; `float32FinalRelErr`: per
    parameter, the float32 run's relative L2 distance to the float64 final weights.
final.safetensors
    every parameter after the 6 steps (float64 run, rounded once to float32), by vwlmm name.
"""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, get_cosine_schedule_with_warmup
from transformers.trainer_pt_utils import get_parameter_names

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIX, exact_float64  # noqa: E402

OUT = os.path.join(FIX, "train_parity")
IMAGE_TOKEN = 63
V, D, P, IMG = 64, 32, 16, 8
STEPS, ACCUM, LR, WARMUP_RATIO, WD, MAX_NORM, VM_WEIGHT = 6, 2, 5e-3, 0.2, 0.1, 7.0, 1.0


def llava_config() -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, image_size=IMG,
        patch_size=2, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=16,
    )
    text = LlamaConfig(
        vocab_size=V, hidden_size=D, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False, hidden_act="silu", attention_bias=False, mlp_bias=False, pad_token_id=0,
    )
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN, image_seq_length=P,
        projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default",
        multimodal_projector_bias=True, tie_word_embeddings=False, attn_implementation="eager",
    )


class VwLlava(nn.Module):
    """transformers' LLaVA plus VW-LMM's vm_head (a bias-free Linear(hidden -> vocab), trained)."""

    def __init__(self, cfg: LlavaConfig):
        super().__init__()
        self.llava = LlavaForConditionalGeneration(cfg)
        self.vm_head = nn.Linear(cfg.text_config.hidden_size, cfg.text_config.vocab_size, bias=False)


def vwlmm_name(n: str) -> str:
    """The container's parameter name -> vwlmm's (LLaVA's own layout)."""
    if n == "vm_head.weight":
        return n
    n = n[len("llava."):]
    if n == "lm_head.weight":
        return n
    for a, b in (("model.language_model.", "model."), ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
                 ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
                 ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model.")):
        if n.startswith(a):
            return b + n[len(a):]
    raise KeyError(n)


def config_json(cfg: LlavaConfig) -> dict:
    """config.json as vwlmm's configToJson writes it (LLaVA layout, tower embedded)."""
    t, v = cfg.text_config, cfg.vision_config
    return {
        "architectures": ["vwLlamaForCausalLM"], "model_type": "llava",
        "vocab_size": t.vocab_size, "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads, "rms_norm_eps": t.rms_norm_eps, "rope_theta": 10000.0,
        "max_position_embeddings": t.max_position_embeddings, "hidden_act": "silu", "initializer_range": 0.02,
        "mm_vision_tower": "embedded", "mm_hidden_size": v.hidden_size, "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "image_aspect_ratio": "square",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "tie_word_embeddings": False,
        "vision_config": {
            "model_type": "clip_vision_model", "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "num_hidden_layers": v.num_hidden_layers, "num_attention_heads": v.num_attention_heads,
            "image_size": v.image_size, "patch_size": v.patch_size, "num_channels": v.num_channels,
            "layer_norm_eps": v.layer_norm_eps, "hidden_act": "quick_gelu", "initializer_range": 0.02,
            "initializer_factor": 1.0,
        },
        "vm_weight": VM_WEIGHT, "vm_pif": False, "vm_detach_target": False, "conversation_template": "vicuna_v1",
        "image_size": IMG, "image_token_index": -200,
    }


def make_model() -> VwLlava:
    torch.manual_seed(1357)
    m = VwLlava(llava_config()).to(torch.float32)
    g = torch.Generator().manual_seed(1357)
    with torch.no_grad():
        for name, p in m.named_parameters():
            is_norm = any(s in name for s in ("layer_norm", "layrnorm", "layernorm", "norm.weight"))
            if name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif is_norm:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return m


# ---------------------------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------------------------
def make_row(g, kind: str, before: int, answer: int, prompt_after: int = 0):
    """(ids, labels) of one row: BOS, `before` text tokens, P image tokens (kind 'image'), `prompt_after` prompt
    tokens, `answer` supervised tokens; text ids in [2, 63) (never the image token)."""
    text = lambda n: torch.randint(2, IMAGE_TOKEN, (n,), generator=g).tolist()  # noqa: E731
    ids = [1] + text(before)
    ids += [IMAGE_TOKEN] * P if kind == "image" else []
    ids += text(prompt_after)
    ans = text(answer)
    labels = [-100] * len(ids) + ans
    return ids + ans, labels


def make_batches(g):
    # (kind of row 0, kind of row 1) per micro-batch, with row shapes varied
    plan = [("image", "image")] * 6 + [("image", "text"), ("text", "text"), ("text", "text"), ("text", "text"),
                                        ("image", "image"), ("image", "image")]
    batches = []
    for k, kinds in enumerate(plan):
        rows = []
        for r, kind in enumerate(kinds):
            before = 0 if (k + r) % 2 == 0 else int(torch.randint(2, 6, (1,), generator=g))
            if kind == "text":
                before = int(torch.randint(3, 9, (1,), generator=g))
            rows.append(make_row(g, kind, before, int(torch.randint(3, 7, (1,), generator=g)),
                                 int(torch.randint(0, 4, (1,), generator=g))))
        T = max(len(i) for i, _ in rows) + (k % 3)  # some micro-batches padded in every row
        ids = torch.zeros(2, T, dtype=torch.long)
        mask = torch.zeros(2, T, dtype=torch.long)
        labels = torch.full((2, T), -100, dtype=torch.long)
        for b, (i, l) in enumerate(rows):
            ids[b, :len(i)] = torch.tensor(i)
            mask[b, :len(i)] = 1
            labels[b, :len(l)] = torch.tensor(l)
        n_img = sum(kd == "image" for kd in kinds)
        pixels = torch.randn(n_img, 3, IMG, IMG, generator=g) if n_img else None
        positions = (ids.reshape(-1) == IMAGE_TOKEN).nonzero().reshape(-1)  # row-major: image by image
        assert positions.numel() == n_img * P
        targets = torch.full_like(labels, -100)
        targets[:, :-1] = labels[:, 1:]
        batches.append(dict(input_ids=ids, attention_mask=mask, labels=labels, targets=targets,
                            image_positions=positions, pixel_values=pixels))
    return batches


# ---------------------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------------------
def micro_loss(m: VwLlava, batch, dtype):
    llava = m.llava
    ids, mask = batch["input_ids"], batch["attention_mask"]
    emb = llava.get_input_embeddings()(ids)
    feats = None
    if batch["pixel_values"] is not None:
        out = llava.model.get_image_features(batch["pixel_values"].to(dtype), vision_feature_layer=-2,
                                             vision_feature_select_strategy="default")
        pooled = out.pooler_output if hasattr(out, "pooler_output") else out
        feats = torch.cat(list(pooled), 0).reshape(-1, D)  # [nImages * P, D]
        sel = (ids == IMAGE_TOKEN).unsqueeze(-1).expand_as(emb)
        emb = emb.masked_scatter(sel, feats.to(emb.dtype))  # as LlavaModel.forward
    out = llava(inputs_embeds=emb, attention_mask=mask, labels=batch["labels"], use_cache=False)
    ce = out.loss
    kl = torch.zeros((), dtype=dtype)
    if feats is not None:
        T = ids.shape[1]
        pos = batch["image_positions"]
        keep = (pos % T) != 0
        rows = (pos - 1)[keep]
        logits = out.logits.reshape(-1, V)[rows]  # the row before each patch
        target = torch.softmax(m.vm_head(feats[keep]), -1)  # not detached (official)
        kl = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(logits, -1), target)
    return ce + VM_WEIGHT * kl, ce, kl


def unreachable(m: VwLlava):
    """Tower parameters above vision_feature_layer -2: no loss reaches them (their .grad stays None)."""
    L = m.llava.config.vision_config.num_hidden_layers
    return {n for n, _ in m.named_parameters() if n.startswith(f"llava.model.vision_tower.encoder.layers.{L - 1}.")
            or n.startswith("llava.model.vision_tower.post_layernorm.")}


def grad_summary(g):
    """A gradient's L2 norm and its cosine with the fixed direction sin(1), sin(2), ... (row-major), or None when
    torch gives it none: enough to tell a wrong scale or a wrong direction, at 2 numbers a tensor."""
    if g is None:
        return None
    flat = g.detach().to(torch.float64).reshape(-1)
    r = torch.sin(torch.arange(1, flat.numel() + 1, dtype=torch.float64))
    norm = float(flat.norm())
    return {"norm": norm, "cos": float(flat @ r) / max(norm * float(r.norm()), 1e-300)}


def train(init_state, batches, dtype, debug_dir=None):
    m = make_model()
    m.load_state_dict(init_state)
    m = m.to(dtype)
    m.train()  # no dropout anywhere (attention_dropout 0)
    decay = set(get_parameter_names(m, [nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]))
    named = list(m.named_parameters())
    groups = [{"params": [p for n, p in named if n in decay], "weight_decay": WD},
              {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-8)
    warm = math.ceil(STEPS * WARMUP_RATIO)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warm, num_training_steps=STEPS)
    skip = unreachable(m)
    rec = {k: [] for k in ("loss", "ce", "kl", "grad_norm", "lr")}
    for step in range(STEPS):
        lr = opt.param_groups[0]["lr"]
        tot = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
        for a in range(ACCUM):
            loss, ce, kl = micro_loss(m, batches[step * ACCUM + a], dtype)
            (loss / ACCUM).backward()
            for k, v in (("loss", loss), ("ce", ce), ("kl", kl)):
                tot[k] += float(v.detach()) / ACCUM
        for n, p in named:
            if p.grad is None and n not in skip:
                p.grad = torch.zeros_like(p)  # LLaVA's dummy image: a zero gradient, not none
        if step == 0:
            rec["step1_grad"] = {vwlmm_name(n): grad_summary(p.grad) for n, p in named}
        if step == 0 and debug_dir:
            os.makedirs(debug_dir, exist_ok=True)
            save_file({vwlmm_name(n): p.grad.detach().to(torch.float64).contiguous() for n, p in named if p.grad is not None},
                      os.path.join(debug_dir, f"grad_step1_{str(dtype).split('.')[-1]}.safetensors"))
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in named], MAX_NORM)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for k in tot:
            rec[k].append(tot[k])
        rec["grad_norm"].append(float(norm))
        rec["lr"].append(lr)
        print(f"  step {step + 1}: loss {tot['loss']:.10f} ce {tot['ce']:.10f} kl {tot['kl']:.10f} "
              f"grad_norm {float(norm):.10f} lr {lr:.6g}")
    return rec, {vwlmm_name(n): p.detach() for n, p in named}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debug", help="dump step 1's gradients (float64 and float32 runs) to this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = make_model()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = {vwlmm_name(n): p.detach().contiguous() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(97531)
    batches = make_batches(g)

    print("float64 reference (exact_float64):")
    with exact_float64():
        b64 = [{**b, "pixel_values": None if b["pixel_values"] is None else b["pixel_values"].double()} for b in batches]
        rec, final = train({k: v.double() for k, v in init.items()}, b64, torch.float64, args.debug)
    print("float32 run:")
    rec32, final32 = train(init, batches, torch.float32, args.debug)
    rel = lambda a, b: float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))  # noqa: E731
    changed = {n for n in final if not torch.equal(final[n].float(), params[n])}
    # CLIP's key biases left out: their gradient is 0 in exact arithmetic, so float32 steps them on rounding noise
    f32_err = max(rel(final32[n], final[n]) for n in final if not n.endswith("self_attn.k_proj.bias"))
    print(f"parameters changed by training: {len(changed)} of {len(final)}; float32 run vs float64 (k_proj biases aside): largest per-tensor "
          f"relative L2 distance {f32_err:.3e}; step values: " + ", ".join(
              f"{k} {max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(rec32[k], rec[k])):.2e}" for k in rec if k != "step1_grad"))
    g64, g32 = rec["step1_grad"], rec32["step1_grad"]
    total = math.sqrt(sum(v["norm"] ** 2 for v in g64.values() if v))
    print("step 1 gradients, float32 vs float64: largest |norm difference| / global norm "
          f"{max(abs(g32[n]['norm'] - v['norm']) / total for n, v in g64.items() if v):.2e}, largest cosine difference over "
          f"tensors above 1e-4 of the global norm {max(abs(g32[n]['cos'] - v['cos']) for n, v in g64.items() if v and v['norm'] > 1e-4 * total):.2e}")
    for n in final:
        if rel(final32[n], final[n]) > 1e-4 or n not in changed:
            print(f"    {n}: float32 vs float64 {rel(final32[n], final[n]):.3e}{'' if n in changed else ' (unchanged)'}")
    assert not any(n in changed for n in ("model.vision_tower.vision_tower.vision_model.post_layernorm.weight",))

    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "init"))
    save_file(params, os.path.join(OUT, "init", "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "init", "config.json"), "w") as f:
        json.dump(config_json(model.llava.config), f, indent=2)
        f.write("\n")
    io = {}
    for k, b in enumerate(batches):
        for key in ("input_ids", "attention_mask", "labels", "targets", "image_positions"):
            io[f"{k}.{key}"] = b[key].to(torch.int32).contiguous()
        if b["pixel_values"] is not None:
            io[f"{k}.pixel_values"] = b["pixel_values"].float().contiguous()
    save_file(io, os.path.join(OUT, "batches.safetensors"))
    save_file({n: p.float().contiguous() for n, p in final.items()}, os.path.join(OUT, "final.safetensors"))
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"steps": STEPS, "gradAccum": ACCUM, "lr": LR, "warmupRatio": WARMUP_RATIO, "weightDecay": WD,
                   "maxGradNorm": MAX_NORM, "float64": rec, "float32": rec32,
                   "float32FinalRelErr": {n: rel(final32[n], final[n]) for n in final}}, f, indent=1)
        f.write("\n")
    print_sizes(OUT)


def print_sizes(out: str) -> None:
    """Each file the fixture holds, and their total."""
    total = 0
    for root, _, files in os.walk(out):
        for fn in sorted(files):
            s = os.path.getsize(os.path.join(root, fn))
            total += s
            print(f"  {os.path.relpath(os.path.join(root, fn), out)}: {s} bytes")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
