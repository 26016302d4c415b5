#!/usr/bin/env python3
"""Generate tests/fixtures/lora_parity/ : what PyTorch + transformers + PEFT make of 6 optimizer steps of LoRA
fine-tuning as LLaVA-1.5's LoRA recipe (finetune_lora.sh, llava/train/train.py + llava_trainer.py) runs it, for
tests/train/lora_parity.test.ts.

Regenerate (from the repository root; needs torch, transformers >= 5, peft, safetensors (made with torch 2.13,
transformers 5.18, peft 0.21 from the local package index), CPU, ~10 s):

    python3 scripts/make_lora_parity_fixture.py            # writes the fixture, prints the checks and its sizes
    python3 scripts/make_lora_parity_fixture.py --debug D  # also dumps step 1's gradients to D (diagnosis)

Deterministic (fixed generators, CPU, one thread). Tests never run Python.

Built on tests/fixtures/train_parity/ AS STORED: the tiny VW-LMM's initial weights (train_parity/init/) and the 12
micro-batches (train_parity/batches.safetensors) are read from there, not copied (regenerate this fixture after that
one). The model, the batches and the official VW-LMM loss (CE + 1.0 KL batchmean, target not detached) are the
train_parity script's (scripts/make_train_parity_fixture.py, whose helpers this one imports).

LoRA as LLaVA-1.5 applies it
----------------------------
  * peft.get_peft_model(LlavaForConditionalGeneration, LoraConfig(r=4, lora_alpha=8 (scaling alpha / r = 2),
    lora_dropout=0.0, bias='none', task_type='CAUSAL_LM', target_modules=...)). Dropout is OFF (LLaVA's recipe has
    0.05) so that both sides are deterministic: vwlmm's masks come from its own generator, torch's from torch's.
  * target_modules: LLaVA's find_all_linear_names (every nn.Linear outside mm_projector / vision_tower /
    vision_resampler, by its last name, lm_head removed) gives q/k/v/o_proj, gate/up/down_proj here (vm_head, a
    top-level Linear of VW-LMM, excluded as well: it trains fully). LLaVA calls get_peft_model before
    initialize_vision_modules, when the model has no tower yet; transformers' LLaVA has its CLIP tower (with q/k/v_proj
    of its own) from the start, so the list is passed as the string r'.*language_model\\.layers\\.\\d+\\.(...)'
    (PEFT re.fullmatch'es it): the same 14 Linear layers (7 per decoder layer), asserted.
  * PEFT's initialisation: lora_A kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) (torch.manual_seed(2468)),
    lora_B zeros. vwlmm draws its own A, so the test loads PEFT's (init_adapter/, B = 0 included) and both start
    identical. With B = 0 the adapters' A get a zero gradient until B moves (step 1 has lr 0 (warmup): B moves at
    step 2, A's gradient is non-zero from step 3 on).
  * get_peft_model freezes the base (tower, LLM weights, lm_head). The projector and vm_head train fully through
    requires_grad (LLaVA builds the projector after get_peft_model, so it stays trainable and is saved in
    non_lora_trainables.bin; not modules_to_save).
  * The optimizer as LLaVATrainer.create_optimizer builds it with mm_projector_lr: four AdamW groups over the
    parameters that require grad: decay (transformers' get_decay_parameter_names: no biases, no norms) / no decay,
    each split into non-projector (lr 5e-3) and projector ("mm_projector" in the name; here transformers'
    multi_modal_projector) at mm_projector_lr 2e-3. LoRA's A and B are decayed (0.1), like any weight.
  * transformers.get_cosine_schedule_with_warmup(warmup ceil(6 * 0.2) = 2 of 6) scales every group's own peak lr.
  * gradient accumulation 2 (each micro-batch's loss / 2), torch.nn.utils.clip_grad_norm_(model.parameters(), 4.0)
    (frozen parameters have no .grad: the norm is over the trained ones; 4 is set so that steps 1, 2 and 6 clip
    and steps 3-5 do not), AdamW(betas (0.9, 0.999), eps 1e-8).
  * text-only micro-batches: the projector and vm_head get a zero gradient where torch gives none (LLaVA's zero
    dummy image), as in train_parity; the adapters always get one.

The reference runs in float64 (make_fixtures.exact_float64 patches HF's float32-only spots); the same loop in float32
is run too and its distance to the float64 reference printed and stored: the scale of the test's tolerances.

Files (tests/fixtures/lora_parity/)
-----------------------------------
init_adapter/adapter_config.json, init_adapter/adapter_model.safetensors
    PeftModel.save_pretrained of the adapters before training (PEFT's init; B = 0), names as PEFT sees transformers'
    LLaVA: base_model.model.model.language_model.layers.N.self_attn.q_proj.lora_A.weight.
reference.json
    the hyperparameters; per step (6) of the float64 run (`float64`) and of the float32 run (`float32`): `loss`, `ce`,
    `kl` (means over the micro-batches), `grad_norm` (before clipping, over the trained parameters), `lr` (the
    non-projector groups'), `projector_lr`; `step1_grad` (per trained parameter, vwlmm name: {norm, cos} as the
    train_parity script's grad_summary; lora_A's are exactly 0); `trained` (the vwlmm names of the trained
    parameters); `float32FinalRelErr` (per trained parameter, the float32 run's relative L2 distance to the float64
    final weights) and `float32UpdateRelErr` (the same for the update, final - initial weights).
final.safetensors
    the trained parameters after the 6 steps (float64 run, rounded once to float32), by vwlmm name: 28 LoRA tensors
    (model.layers.N.{self_attn,mlp}.X.lora_{A,B}.weight), model.mm_projector.{0,2}.{weight,bias}, vm_head.weight.
    Every other parameter is unchanged in torch (asserted bit for bit here): the test checks vwlmm leaves it too.
"""

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import get_cosine_schedule_with_warmup
from transformers.trainer_pt_utils import get_parameter_names

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIX, exact_float64  # noqa: E402
from make_train_parity_fixture import ACCUM, STEPS, WARMUP_RATIO, WD, grad_summary, make_model, micro_loss, print_sizes, vwlmm_name  # noqa: E402

SRC = os.path.join(FIX, "train_parity")
OUT = os.path.join(FIX, "lora_parity")
LR, PROJECTOR_LR, MAX_NORM = 5e-3, 2e-3, 4.0
R, ALPHA, DROPOUT = 4, 8, 0.0
INIT_SEED = 2468


def find_all_linear_names(model: nn.Module) -> list:
    """LLaVA's llava/train/train.py find_all_linear_names, with transformers' names for the multimodal parts
    (multi_modal_projector for mm_projector) and VW-LMM's vm_head (a top-level Linear that trains fully) left out."""
    multimodal_keywords = ["mm_projector", "multi_modal_projector", "vision_tower", "vision_resampler", "vm_head"]
    names = set()
    for name, module in model.named_modules():
        if any(k in name for k in multimodal_keywords):
            continue
        if isinstance(module, nn.Linear):
            parts = name.split(".")
            names.add(parts[0] if len(parts) == 1 else parts[-1])
    names.discard("lm_head")
    return sorted(names)


def torch_to_vwlmm(n: str) -> str:
    """A parameter name of the PEFT-wrapped container -> vwlmm's."""
    return vwlmm_name(n.replace(".base_layer.", ".").replace(".default.", "."))


def load_init():
    """train_parity's initial weights (vwlmm names on disk) as the container's state dict, and its batches."""
    names = {vwlmm_name(n): n for n, _ in make_model().named_parameters()}
    w = load_file(os.path.join(SRC, "init", "model.safetensors"))
    assert sorted(w) == sorted(names), "train_parity/init does not hold the train_parity model"
    state = {names[k]: v for k, v in w.items()}
    t = load_file(os.path.join(SRC, "batches.safetensors"))
    batches = []
    for k in range(STEPS * ACCUM):
        b = {key: t[f"{k}.{key}"].long() for key in ("input_ids", "attention_mask", "labels", "image_positions")}
        b["pixel_values"] = t.get(f"{k}.pixel_values")
        batches.append(b)
    return state, batches


def lora_config(targets: list) -> LoraConfig:
    regex = r".*language_model\.layers\.\d+\.(self_attn|mlp)\.(" + "|".join(targets) + ")"
    return LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, bias="none", task_type="CAUSAL_LM", target_modules=regex)


def build(init_state, adapter_init=None):
    """The model with train_parity's weights, PEFT's adapters on its LLM (the PeftModel wraps m.llava in place), the
    projector and vm_head trainable; adapter_init (PEFT-wrapped names) overrides PEFT's draw."""
    m = make_model()
    m.load_state_dict(init_state)
    targets = find_all_linear_names(m)
    assert targets == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]), targets
    torch.manual_seed(INIT_SEED)
    peft_model = get_peft_model(m.llava, lora_config(targets))
    wrapped = sorted({n.split(".lora_")[0] for n, _ in m.named_parameters() if ".lora_" in n})
    assert len(wrapped) == 2 * 7 and all(".language_model.layers." in n for n in wrapped), wrapped
    for n, p in m.named_parameters():  # LLaVA: the projector is built after get_peft_model; vm_head is VW-LMM's
        if ".multi_modal_projector." in n or n.startswith("vm_head."):
            p.requires_grad_(True)
    if adapter_init is not None:
        with torch.no_grad():
            for n, p in m.named_parameters():
                if ".lora_" in n:
                    p.copy_(adapter_init[n])
    return m, peft_model


def train(init_state, adapter_init, batches, dtype, debug_dir=None):
    m, _ = build(init_state, adapter_init)
    m = m.to(dtype)
    m.train()  # lora_dropout 0, attention_dropout 0: deterministic
    named = list(m.named_parameters())
    trained = [(n, p) for n, p in named if p.requires_grad]
    # LLaVATrainer.create_optimizer with mm_projector_lr (transformers' get_decay_parameter_names for the decay set)
    decay = set(get_parameter_names(m, [nn.LayerNorm], [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]))
    decay = {n for n in decay if "bias" not in n}
    proj = {n for n, _ in named if "multi_modal_projector" in n}
    groups = [
        {"params": [p for n, p in trained if n in decay and n not in proj], "weight_decay": WD},
        {"params": [p for n, p in trained if n not in decay and n not in proj], "weight_decay": 0.0},
        {"params": [p for n, p in trained if n in decay and n in proj], "weight_decay": WD, "lr": PROJECTOR_LR},
        {"params": [p for n, p in trained if n not in decay and n in proj], "weight_decay": 0.0, "lr": PROJECTOR_LR},
    ]
    assert sum(len(g["params"]) for g in groups) == len(trained)
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=LR, betas=(0.9, 0.999), eps=1e-8)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=math.ceil(STEPS * WARMUP_RATIO), num_training_steps=STEPS)
    rec = {k: [] for k in ("loss", "ce", "kl", "grad_norm", "lr", "projector_lr")}
    for step in range(STEPS):
        lr, plr = opt.param_groups[0]["lr"], opt.param_groups[2]["lr"]
        tot = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
        for a in range(ACCUM):
            b = batches[step * ACCUM + a]
            b = {**b, "pixel_values": None if b["pixel_values"] is None else b["pixel_values"].to(dtype)}
            loss, ce, kl = micro_loss(m, b, dtype)
            (loss / ACCUM).backward()
            for k, v in (("loss", loss), ("ce", ce), ("kl", kl)):
                tot[k] += float(v.detach()) / ACCUM
        for n, p in trained:
            if p.grad is None:
                p.grad = torch.zeros_like(p)  # LLaVA's dummy image: a zero gradient, not none
        assert all(p.grad is None for n, p in named if not p.requires_grad)
        if step == 0:
            rec["step1_grad"] = {torch_to_vwlmm(n): grad_summary(p.grad) for n, p in trained}
            if debug_dir:
                os.makedirs(debug_dir, exist_ok=True)
                save_file({torch_to_vwlmm(n): p.grad.detach().double().contiguous() for n, p in trained},
                          os.path.join(debug_dir, f"grad_step1_{str(dtype).split('.')[-1]}.safetensors"))
        norm = torch.nn.utils.clip_grad_norm_(m.parameters(), MAX_NORM)  # as HF Trainer: model.parameters()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for k in tot:
            rec[k].append(tot[k])
        rec["grad_norm"].append(float(norm))
        rec["lr"].append(lr)
        rec["projector_lr"].append(plr)
        print(f"  step {step + 1}: loss {tot['loss']:.10f} ce {tot['ce']:.10f} kl {tot['kl']:.10f} "
              f"grad_norm {float(norm):.10f} ({'clipped' if float(norm) > MAX_NORM else 'not clipped'}) lr {lr:.6g} projector lr {plr:.6g}")
    return rec, {torch_to_vwlmm(n): p.detach() for n, p in named}, {torch_to_vwlmm(n) for n, _ in trained}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debug", help="dump step 1's gradients (float64 and float32 runs) to this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    init_state, batches = load_init()

    # PEFT's own initialisation, saved as PEFT saves an adapter
    m0, peft0 = build(init_state)
    adapter_init = {n: p.detach().clone() for n, p in m0.named_parameters() if ".lora_" in n}
    assert all(float(p.abs().max()) == 0 for n, p in adapter_init.items() if ".lora_B." in n)
    base0 = {torch_to_vwlmm(n): p.detach().clone() for n, p in m0.named_parameters()}

    print("float64 reference (exact_float64):")
    with exact_float64():
        rec, final, trained = train({k: v.double() for k, v in init_state.items()},
                                    {k: v.double() for k, v in adapter_init.items()}, batches, torch.float64, args.debug)
    print("float32 run:")
    rec32, final32, _ = train(init_state, adapter_init, batches, torch.float32, args.debug)

    # the frozen base: unchanged, bit for bit (float64 run rounded back; the float32 run as is)
    for n, w in final.items():
        if n not in trained:
            assert torch.equal(w.float(), base0[n]) and torch.equal(final32[n], base0[n]), n
    assert len(trained) == 28 + 4 + 1, sorted(trained)
    rel = lambda a, b: float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))  # noqa: E731
    for n in sorted(trained):
        assert not torch.equal(final[n].float(), base0[n]), f"{n} did not train"
    f32_err = {n: rel(final32[n], final[n]) for n in sorted(trained)}
    # what training moved (final - initial): lora_A moves little against its own size (it trains from step 3 on)
    f32_delta_err = {n: rel(final32[n] - base0[n], final[n] - base0[n].double()) for n in sorted(trained)}
    print(f"float32 vs float64 updates (final - initial): largest per-tensor relative L2 distance {max(f32_delta_err.values()):.3e} "
          f"({max(f32_delta_err, key=f32_delta_err.get)})")
    print(f"trained tensors {len(trained)}; frozen {len(final) - len(trained)} (unchanged). float32 run vs float64: largest "
          f"per-tensor relative L2 distance {max(f32_err.values()):.3e} ({max(f32_err, key=f32_err.get)}); step values: " + ", ".join(
              f"{k} {max(abs(a - b) / max(abs(b), 1e-3) for a, b in zip(rec32[k], rec[k])):.2e}" for k in rec if k != "step1_grad"))
    g64, g32 = rec["step1_grad"], rec32["step1_grad"]
    total = math.sqrt(sum(v["norm"] ** 2 for v in g64.values()))
    print("step 1 gradients, float32 vs float64: largest |norm difference| / global norm "
          f"{max(abs(g32[n]['norm'] - v['norm']) / total for n, v in g64.items()):.2e}, largest cosine difference over "
          f"tensors above 1e-4 of the global norm {max(abs(g32[n]['cos'] - v['cos']) for n, v in g64.items() if v['norm'] > 1e-4 * total):.2e}")
    print("  lora_A step-1 gradient norms (B = 0): " + str(sorted({v['norm'] for n, v in g64.items() if '.lora_A.' in n})))

    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    peft0.peft_config["default"].base_model_name_or_path = "tests/fixtures/train_parity/init"  # not this machine's path
    peft0.save_pretrained(os.path.join(OUT, "init_adapter"))
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(OUT, "init_adapter", "README.md"))  # PEFT's model-card stub
    saved = load_file(os.path.join(OUT, "init_adapter", "adapter_model.safetensors"))
    assert len(saved) == 28 and all(re.match(r"base_model\.model\.model\.language_model\.layers\.\d\.", k) for k in saved), sorted(saved)
    save_file({n: final[n].float().contiguous() for n in sorted(trained)}, os.path.join(OUT, "final.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump({"steps": STEPS, "gradAccum": ACCUM, "lr": LR, "projectorLr": PROJECTOR_LR, "warmupRatio": WARMUP_RATIO,
                   "weightDecay": WD, "maxGradNorm": MAX_NORM, "lora": {"r": R, "alpha": ALPHA, "dropout": DROPOUT},
                   "trained": sorted(trained), "float64": rec, "float32": rec32, "float32FinalRelErr": f32_err,
                   "float32UpdateRelErr": f32_delta_err}, f, indent=1)
        f.write("\n")
    print_sizes(OUT)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
