#!/usr/bin/env python3
"""One line per comparison of device_check.sh's sections that run vwlmm and transformers side by side: reads the
JSON lines the two sides wrote to LOGDIR and prints them with their ratio; when a side wrote nothing readable, prints
the tail of its .err file instead.

  python3 benchmarks/gpu/compare_sides.py train|lora|generate LOGDIR
"""
import json
import os
import sys


def load(o, f):
    return json.load(open(os.path.join(o, f)))


def err_tails(o, *files):
    for f in files:
        p = os.path.join(o, f.replace(".json", ".err"))
        print(f.replace(".json", ".err"), open(p).read()[-1500:] if os.path.exists(p) else "(no file)")


def hf_peak(hf):
    # HF's allocated peak, and its reserved peak: vwlmm's peakBytes are its allocator's reserved bytes
    r = hf.get("peakReservedBytes")
    return f"peak {hf['peakBytes']/2**30:.1f} GiB allocated" + (f" / {r/2**30:.1f} GiB reserved" if r else "")


def train(o):
    # the issue-11 step, vwlmm with each attention kernel
    for name, f in (("tiled attention", "vwlmm_train.json"), ("gemm attention", "vwlmm_train_gemm.json")):
        try:
            hf, vw = load(o, "hf_train.json"), load(o, f)
            print(f"train step (bf16, {hf['batch']}x{hf['seq']}): HF {hf['tokensPerSec']:.0f} tok/s, MFU {hf['mfu']:.3f}, {hf_peak(hf)} | "
                  f"vwlmm, {name}: {vw['tokensPerSec']:.0f} tok/s, MFU {vw['mfu']:.3f}, peak {vw['peakBytes']/2**30:.2f} GiB reserved, {vw['hostSyncsPerStep']} syncs/step | "
                  f"ratio {vw['tokensPerSec']/hf['tokensPerSec']:.2f}x")
        except Exception as e:
            print(f"train comparison ({name}) failed:", e)
            err_tails(o, "hf_train.json", f)


def lora(o):
    try:
        hf, vw = load(o, "hf_lora.json"), load(o, "vwlmm_lora.json")
        print(f"LoRA 7B (r {hf['lora']}, {hf['batch']}x{hf['seq']}, grad ckpt): HF+PEFT {hf['peft']} {hf['tokensPerSec']:.0f} tok/s, {hf_peak(hf)}, "
              f"{hf['trainableParams']/1e6:.0f}M trained | vwlmm {vw['tokensPerSec']:.0f} tok/s, peak {vw['peakBytes']/2**30:.1f} GiB reserved, {vw['trainableParams']/1e6:.0f}M trained | "
              f"ratio {vw['tokensPerSec']/hf['tokensPerSec']:.2f}x (target 1.5x at no more memory)")
    except Exception as e:
        print("LoRA comparison failed:", e)
        err_tails(o, "hf_lora.json", "vwlmm_lora.json")


def generate(o):
    try:
        hf, vw = load(o, "hf_generate.json"), load(o, "vwlmm_generate.json")
        for k, name in (("prefillSeconds", "prefill s"), ("decodeTokensPerSec", "decode tok/s"), ("visualWordsImagesPerSec", "visual words img/s")):
            print(f"generate 7B ({hf['batch']} x {hf['promptTokens']} + {hf['newTokens']}), {name}: HF {hf[k]:.3g} | vwlmm {vw[k]:.3g}")
    except Exception as e:
        print("generate comparison failed:", e)
        err_tails(o, "hf_generate.json", "vwlmm_generate.json")


if __name__ == "__main__":
    {"train": train, "lora": lora, "generate": generate}[sys.argv[1]](sys.argv[2])
