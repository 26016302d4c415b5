"""PyTorch's scaled_dot_product_attention, forward + backward in bf16, on one shape (benchmarks/attention_gpu.ts).

Inputs are [B, T, H, Dh] tensors viewed as [B, H, T, Dh], as HF's LLaMA and CLIP attention pass them; GQA through
enable_gqa. Prints one JSON line: the median seconds over --reps after warm-up (host time to a synchronize, as
attention_gpu.ts times vwlmm) and the backend SDPA used: read from the aten op that one profiled call of the timed
step's forward dispatched to (flash, efficient, cudnn or math; "unknown" if none of them shows). Until 2026-12-06
"backend" was torch.backends.cuda.flash_sdp_enabled(), whether flash was allowed, not what ran; that flag is now
"flashEnabled".

  python3 benchmarks/torch_attention.py [--B 16] [--T 325] [--Hq 16] [--Hkv 16] [--Dh 64] [--causal 1] [--reps 10]
      [--device cuda]    (--device cpu: a check of the script itself, not a benchmark)
"""
import argparse, json, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
for name, default in [("B", 16), ("T", 325), ("Hq", 16), ("Hkv", 16), ("Dh", 64), ("causal", 1), ("reps", 10)]:
    p.add_argument(f"--{name}", type=int, default=default)
p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
a = p.parse_args()
dev, dt = a.device, torch.bfloat16
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
g = torch.Generator(device=dev).manual_seed(0)
q = (torch.randn(a.B, a.T, a.Hq, a.Dh, device=dev, generator=g) * 0.6).to(dt).transpose(1, 2).requires_grad_()
k = (torch.randn(a.B, a.T, a.Hkv, a.Dh, device=dev, generator=g) * 0.6).to(dt).transpose(1, 2).requires_grad_()
v = (torch.randn(a.B, a.T, a.Hkv, a.Dh, device=dev, generator=g) * 0.3).to(dt).transpose(1, 2).requires_grad_()
dO = torch.randn(a.B, a.Hq, a.T, a.Dh, device=dev, generator=g).to(dt) * 0.06


def forward():
    return F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal), enable_gqa=a.Hq != a.Hkv)


def step():
    torch.autograd.backward(forward(), dO)


# SDPA's aten ops per backend (the CPU flash op is _scaled_dot_product_flash_attention_for_cpu)
BACKENDS = [("_scaled_dot_product_flash_attention", "flash"), ("_scaled_dot_product_cudnn_attention", "cudnn"),
            ("_scaled_dot_product_efficient_attention", "efficient"), ("_scaled_dot_product_attention_math", "math"),
            ("_scaled_dot_product_fused_attention_overrideable", "overrideable")]


def used_backend():
    """The backend the timed forward dispatches to, from the op names of one profiled call (inputs requiring grad, as
    timed: SDPA's choice depends on it)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward()
        sync()
    names = [e.key for e in prof.key_averages()]
    for op, name in BACKENDS:
        if any(op in n for n in names):
            return name
    return "unknown"


for _ in range(3):
    step()
sync()
times = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "backend": used_backend(), "flashEnabled": torch.backends.cuda.flash_sdp_enabled(),
                  "device": dev, "torch": torch.__version__}))
