"""Checks that PEFT loads an adapter vwlmm saved (saveLoraAdapter) onto the transformers model of the same base
weights and gets vwlmm's logits, on two bases:
- tests/fixtures/tiny_llama (LlamaForCausalLM);
- tests/fixtures/tiny_llava/hf (transformers' LlavaForConditionalGeneration): the adapter in that layout
  (base_model.model.model.language_model.layers.N...), a target_modules that PEFT must match on the LLM's Linear layers
  only (not CLIP's q/k/v_proj: checked on the modules PEFT wrapped), and the projector as modules_to_save.
Not a test (tests never run Python); tests/model/lora_peft_layout.test.ts checks the names against a PEFT-made
adapter (tests/fixtures/lora/llava_peft) instead.

  npx tsx scripts/export_lora_for_check.ts /tmp/lora-check     # vwlmm: adapters + their logits
  python3 scripts/check_lora_export.py /tmp/lora-check          # PEFT: load them, compare
"""
import os
import sys

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file
from transformers import LlamaForCausalLM, LlavaForConditionalGeneration

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')


def compare(name, model, d, ours_file, inputs, mask):
    with torch.no_grad():
        logits = model.double()(**inputs).logits.float()
    ours = load_file(os.path.join(d, ours_file))['logits']
    m = mask.bool()
    a, b = logits[m], ours[m]
    rel = ((a - b).norm() / b.norm()).item()
    with model.disable_adapter(), torch.no_grad():
        plain = model(**inputs).logits.float()[m]
        base_rel = ((plain - b).norm() / b.norm()).item()
    ok = rel < 1e-4
    print(f'{name}: PEFT vs vwlmm logits: relative error {rel:.2e} (the base model without the adapter: {base_rel:.2e}); {"OK" if ok else "MISMATCH"}')
    return ok


def main(d):
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, 'tiny_llama'), torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(d, 'adapter')).eval()
    io = load_file(os.path.join(ROOT, 'tiny_llama', 'io.safetensors'))
    ids, mask = io['input_ids'].long(), io['attention_mask'].long()
    ok = compare('tiny_llama', model, d, 'ours.safetensors', dict(input_ids=ids, attention_mask=mask), mask)

    hf = os.path.join(ROOT, 'tiny_llava', 'hf')
    base = LlavaForConditionalGeneration.from_pretrained(hf, dtype=torch.float32, attn_implementation='eager')
    model = PeftModel.from_pretrained(base, os.path.join(d, 'adapter_llava')).eval()
    wrapped = [n for n, mod in model.named_modules() if isinstance(mod, LoraLayer)]
    layers = base.config.text_config.num_hidden_layers
    only_llm = all('.language_model.layers.' in n for n in wrapped) and len(wrapped) == 7 * layers
    print(f'tiny_llava: PEFT wrapped {len(wrapped)} modules ({7 * layers} Linear layers of the LLM expected), '
          f'{sum(".vision_tower." in n for n in wrapped)} of the vision tower; {"OK" if only_llm else "MISMATCH"}')
    io = load_file(os.path.join(ROOT, 'tiny_llava', 'io.safetensors'))
    ids, mask = io['input_ids'].long(), io['attention_mask'].long()
    ok = compare('tiny_llava', model, d, 'ours_llava.safetensors',
                 dict(input_ids=ids, attention_mask=mask, pixel_values=io['pixel_values'].double(), use_cache=False), mask) and ok and only_llm
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main(sys.argv[1])
