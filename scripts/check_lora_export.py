"""Checks that PEFT loads an adapter vwlmm saved (saveLoraAdapter) onto the transformers model of the same base
weights and gets vwlmm's logits. Not a test (tests never run Python); its result is recorded in benchmarks/RESULTS.md.

  npx tsx scripts/export_lora_for_check.ts /tmp/lora-check     # vwlmm: adapter + its logits on tiny_llama's inputs
  python3 scripts/check_lora_export.py /tmp/lora-check          # PEFT: load it, compare
"""
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')


def main(d):
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, 'tiny_llama'), torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(d, 'adapter')).eval()
    io = load_file(os.path.join(ROOT, 'tiny_llama', 'io.safetensors'))
    ids, mask = io['input_ids'].long(), io['attention_mask'].long()
    with torch.no_grad():
        logits = model.double()(input_ids=ids, attention_mask=mask).logits.float()
    ours = load_file(os.path.join(d, 'ours.safetensors'))['logits']
    m = mask.bool()
    a, b = logits[m], ours[m]
    rel = ((a - b).norm() / b.norm()).item()
    base_rel = None
    with model.disable_adapter(), torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits.float()[m]
        base_rel = ((plain - b).norm() / b.norm()).item()
    print(f'PEFT vs vwlmm logits: relative error {rel:.2e} (the base model without the adapter: {base_rel:.2e}); {"OK" if rel < 1e-4 else "MISMATCH"}')
    sys.exit(0 if rel < 1e-4 else 1)


if __name__ == '__main__':
    main(sys.argv[1])
