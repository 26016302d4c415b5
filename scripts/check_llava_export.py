#!/usr/bin/env python3
"""Check that transformers loads a LLaVA directory written by our saveCheckpoint(..., { format: 'transformers' })
and reproduces the reference logits of tests/fixtures/tiny_llava (a one-off check, not run by the tests).

    VWLMM_LLAVA_EXPORT_DIR=/tmp/llava-export npx vitest run tests/model/llava_parity.test.ts
    python3 scripts/check_llava_export.py /tmp/llava-export

The test loads tests/fixtures/tiny_llava/hf with our loader and saves it again in the transformers format; the
environment variable makes it keep a copy of that directory. This script then:
  * loads it with LlavaForConditionalGeneration.from_pretrained and requires no missing, unexpected or
    mismatched tensors (anything missing would be randomly initialised: the logits would not match);
  * requires every weight to equal (bit for bit) the one transformers reads from the fixture's own hf/;
  * runs the fixture's inputs in float64 (HF's float32-only spots patched, as in make_fixtures.py) and in
    float32 and compares the logits with the stored float64 reference (normwise relative, non-padded rows).
Exit status 0 when all of it holds.
"""

import argparse
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import FIX, exact_float64, rel_err  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="directory written by saveCheckpoint(..., { format: 'transformers' })")
    ap.add_argument("--fixture", default=os.path.join(FIX, "tiny_llava"), help="tiny_llava fixture directory")
    args = ap.parse_args()
    torch.set_num_threads(1)

    io = load_file(os.path.join(args.fixture, "io.safetensors"))
    ids, mask = io["input_ids"].long(), io["attention_mask"].long()
    pixels, ref = io["pixel_values"], io["logits"].double()
    keep = mask.bool()

    model, info = LlavaForConditionalGeneration.from_pretrained(
        args.dir, attn_implementation="eager", dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    print("loading info:", problems or "no missing / unexpected / mismatched tensors")
    ok = not problems

    theirs = LlavaForConditionalGeneration.from_pretrained(
        os.path.join(args.fixture, "hf"), attn_implementation="eager", dtype=torch.float32)
    a, b = model.state_dict(), theirs.state_dict()
    same = set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    print(f"weights identical to the fixture's hf/ ({len(a)} tensors):", same)
    ok = ok and same

    with torch.no_grad():
        l32 = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, use_cache=False).logits
        m64 = model.double()
        with exact_float64():
            l64 = m64(input_ids=ids, attention_mask=mask, pixel_values=pixels.double(), use_cache=False).logits
    e64, e32 = rel_err(l64[keep], ref[keep]), rel_err(l32[keep], ref[keep])
    print("logits vs reference, float64: %.2e   float32: %.2e" % (e64, e32))
    ok = ok and e64 < 1e-6 and e32 < 1e-4
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
