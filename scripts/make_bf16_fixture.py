"""A model loaded in bf16, as LLaVA's LoRA recipe loads it, against float64: the reference for the bf16 residual stream
(LlamaDecoder.residualDtype 'bfloat16'; tests/model/bf16_reference.test.ts). Made with peft from the local package index.

  python3 scripts/make_bf16_fixture.py     # torch (CPU), transformers, peft; deterministic; writes tests/fixtures/lora/bf16.safetensors

tests/fixtures/tiny_llama with the PEFT adapter of tests/fixtures/lora/peft_adapter, on `input_ids` [16, 16] (random,
seeded) and `attention_mask` (rows 3 and 9 right-padded by 5 and 9), with labels = input_ids where the mask is 1
(-100 elsewhere; transformers shifts them): the logits, the mean cross-entropy over the predicted tokens, and its
gradient with respect to every lora_A / lora_B weight. Sixteen sequences, because on one or two the two bf16
computations' errors are a draw of their rounding: on tiny_llama's own two, ours came out 1.3x transformers'.
- `bf16.*`: transformers + PEFT with torch_dtype=bfloat16 and the adapters cast to bf16 too (LLaVA's train.py with
  --bf16 and LoRA: `model.to(torch.bfloat16)`), eager attention: `bf16.logits` [16, 16, 61], `bf16.loss` [1],
  `bf16.grad.<name>`.
- `f64.*`: the same from the float32 weights in float64 (transformers' RMSNorm and rotary tables stay float32: ~1e-7,
  far under bf16's 4e-3): `f64.logits`, `f64.loss`, `f64.grad.<name>`.
<name> is ours: PEFT's without `base_model.model.` and `.default` (e.g. model.layers.0.self_attn.q_proj.lora_A.weight).
Values are stored as float32.
"""
import os

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')


def inputs():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 61, (16, 16), generator=g)
    mask = torch.ones_like(ids)
    mask[3, -5:] = 0
    mask[9, -9:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def run(dtype, ids, mask):
    base = LlamaForCausalLM.from_pretrained(os.path.join(ROOT, 'tiny_llama'), torch_dtype=dtype, attn_implementation='eager')
    model = PeftModel.from_pretrained(base, os.path.join(ROOT, 'lora', 'peft_adapter'), is_trainable=True).to(dtype)
    model.train()  # as LLaVA's trainer runs it (the adapter's dropout is 0, so nothing is dropped)
    labels = ids.masked_fill(mask == 0, -100)
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = {}
    for n, p in model.named_parameters():
        if 'lora_' in n:
            assert p.dtype == dtype, n
            grads[n.replace('base_model.model.', '', 1).replace('.default', '')] = p.grad.float().contiguous()
    return out.logits.detach().float().contiguous(), out.loss.detach().float().reshape(1), grads


def main():
    torch.manual_seed(0)
    ids, mask = inputs()
    logits16, loss16, grads16 = run(torch.bfloat16, ids, mask)
    logits64, loss64, grads64 = run(torch.float64, ids, mask)
    t = {'input_ids': ids.int(), 'attention_mask': mask.int(), 'bf16.logits': logits16, 'bf16.loss': loss16,
         'f64.logits': logits64, 'f64.loss': loss64}
    for n, g in grads16.items():
        t['bf16.grad.' + n] = g
    for n, g in grads64.items():
        t['f64.grad.' + n] = g
    save_file(t, os.path.join(ROOT, 'lora', 'bf16.safetensors'))


if __name__ == '__main__':
    main()
