"""PyTorch reference for benchmarks/fused_kernels_cpu.ts: the official VW-LMM formulation of the visual-word
KL (KLDivLoss batchmean of log_softmax(lm_head(h)) against softmax(vm_head(x)), gradients to both sides) and
plain F.cross_entropy, forward + backward, eager or torch.compile. Prints one JSON line.

  python3 benchmarks/torch_reference.py --op kl --N 576 --d 1024 --V 32000 --mode eager --reps 3
  python3 benchmarks/torch_reference.py --op kl --N 9216 --d 4096 --device cuda --dtype bfloat16

On CUDA the inputs and weights are in --dtype and the logits are upcast to float32 before the softmax
(what HF LLaMA/LLaVA do for the loss); memory is torch.cuda.max_memory_allocated() minus the inputs.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", choices=["kl", "ce"], required=True)
    ap.add_argument("--N", type=int, default=576)
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--V", type=int, default=32000)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    a = ap.parse_args()
    torch.manual_seed(0)
    dev, dt = torch.device(a.device), getattr(torch, a.dtype)
    cuda = a.device == "cuda"

    def param(*shape):
        return (torch.rand(*shape, device=dev) - 0.5).mul_(0.2).to(dt).requires_grad_()

    h, w_lm, x, w_vm = param(a.N, a.d), param(a.V, a.d), param(a.N, a.d), param(a.V, a.d)
    t = torch.randint(0, a.V, (a.N,), device=dev)
    rss_inputs = current_rss_mib()
    if cuda:
        torch.cuda.synchronize()
        mem_inputs = torch.cuda.memory_allocated()

    def kl():
        # as in the official model code: KLDivLoss(batchmean)(log q, p), target not detached
        logq = F.log_softmax((h @ w_lm.T).float(), dim=-1)
        p = F.softmax((x @ w_vm.T).float(), dim=-1)
        return F.kl_div(logq, p, reduction="batchmean")

    def ce():
        return F.cross_entropy((h @ w_lm.T).float(), t)

    fn = kl if a.op == "kl" else ce
    if a.mode == "compile":
        fn = torch.compile(fn)

    def step():
        for p in (h, w_lm, x, w_vm):
            p.grad = None
        loss = fn()
        loss.backward()
        return loss.item()  # waits for the GPU

    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    times.sort()
    extra = {}
    if cuda:
        extra = {"device": torch.cuda.get_device_name(), "peakMemGrowthMiB": (torch.cuda.max_memory_allocated() - mem_inputs) / 2 ** 20}
    print(json.dumps({**extra,
        "impl": f"torch {a.mode}", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "seconds": times[len(times) // 2], "warmupSeconds": warm, "loss": loss,
        # peak RSS of the process minus RSS once the inputs exist: what forward+backward needs (outputs,
        # i.e. the gradients, included; for torch.compile also the compiler's own memory)
        "peakRssGrowthMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_inputs,
    }))


def current_rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


if __name__ == "__main__":
    main()
