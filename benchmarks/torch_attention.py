"""PyTorch's scaled_dot_product_attention, forward + backward in bf16, on one shape (benchmarks/attention_gpu.ts).

Inputs are [B, T, H, Dh] tensors viewed as [B, H, T, Dh], as HF's LLaMA and CLIP attention pass them; GQA through
enable_gqa. Prints one JSON line: the median seconds over --reps after warm-up (host time to a synchronize, as
attention_gpu.ts times vwlmm) and the backend used.
"""
import argparse, json, time
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
for name, default in [("B", 16), ("T", 325), ("Hq", 16), ("Hkv", 16), ("Dh", 64), ("causal", 1), ("reps", 10)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
dev, dt = "cuda", torch.bfloat16
g = torch.Generator(device=dev).manual_seed(0)
q = (torch.randn(a.B, a.T, a.Hq, a.Dh, device=dev, generator=g) * 0.6).to(dt).transpose(1, 2).requires_grad_()
k = (torch.randn(a.B, a.T, a.Hkv, a.Dh, device=dev, generator=g) * 0.6).to(dt).transpose(1, 2).requires_grad_()
v = (torch.randn(a.B, a.T, a.Hkv, a.Dh, device=dev, generator=g) * 0.3).to(dt).transpose(1, 2).requires_grad_()
dO = torch.randn(a.B, a.Hq, a.T, a.Dh, device=dev, generator=g).to(dt) * 0.06


def step():
    o = F.scaled_dot_product_attention(q, k, v, is_causal=bool(a.causal), enable_gqa=a.Hq != a.Hkv)
    torch.autograd.backward(o, dO)


for _ in range(3):
    step()
torch.cuda.synchronize()
times = []
for _ in range(a.reps):
    t0 = time.perf_counter()
    step()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t0)
times.sort()
backend = "flash" if torch.backends.cuda.flash_sdp_enabled() else "default"
print(json.dumps({"seconds": times[len(times) // 2], "backend": backend, "torch": torch.__version__}))
