"""A PEFT LoRA adapter on tests/fixtures/tiny_llama and the logits it gives, for src/model/lora.ts
(tests/model/lora.test.ts). Made with peft from the local package index.

  python3 scripts/make_lora_fixture.py     # torch (CPU), transformers, peft; deterministic; writes tests/fixtures/lora/

- peft_adapter/: PeftModel.save_pretrained of a LoraConfig(r=4, lora_alpha=8, lora_dropout=0, bias='none') on all
  seven Linear layers of every decoder layer (q/k/v/o, gate/up/down), lora_A and lora_B drawn N(0, 0.2^2) (seeded)
  so the adapter changes the logits.
- io.safetensors: `logits` of the adapted model (float64 computation of the float32 weights) on tiny_llama's
  input_ids / attention_mask, and `base_logits` of the base model alone.
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')
OUT = os.path.join(ROOT, 'lora')


def main():
    torch.manual_seed(0)
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, 'tiny_llama'), torch_dtype=torch.float32)
    io = load_file(os.path.join(ROOT, 'tiny_llama', 'io.safetensors'))
    ids, mask = io['input_ids'].long(), io['attention_mask'].long()
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias='none', task_type='CAUSAL_LM',
                     target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'])
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'lora_' in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    model.eval()
    os.makedirs(OUT, exist_ok=True)
    model.peft_config['default'].base_model_name_or_path = 'tests/fixtures/tiny_llama'  # not this machine's path
    model.save_pretrained(os.path.join(OUT, 'peft_adapter'))
    os.remove(os.path.join(OUT, 'peft_adapter', 'README.md'))  # PEFT's model-card stub
    m64 = model.double()
    with torch.no_grad():
        logits = m64(input_ids=ids, attention_mask=mask).logits
        with m64.disable_adapter():
            base_logits = m64(input_ids=ids, attention_mask=mask).logits
    save_file({'logits': logits.float().contiguous(), 'base_logits': base_logits.float().contiguous()}, os.path.join(OUT, 'io.safetensors'))


if __name__ == '__main__':
    main()
