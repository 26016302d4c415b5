"""A PEFT LoRA adapter on tests/fixtures/tiny_llama and the logits it gives, for src/model/lora.ts
(tests/model/lora.test.ts). Made with peft from the local package index.

  python3 scripts/make_lora_fixture.py     # torch (CPU), transformers, peft; deterministic; writes tests/fixtures/lora/

- peft_adapter/: PeftModel.save_pretrained of a LoraConfig(r=4, lora_alpha=8, lora_dropout=0, bias='none') on all
  seven Linear layers of every decoder layer (q/k/v/o, gate/up/down), lora_A and lora_B drawn N(0, 0.2^2) (seeded)
  so the adapter changes the logits.
- peft_adapter_bin/: the same adapter as LLaVA's own LoRA checkpoints store it: adapter_model.bin (torch.save) and
  non_lora_trainables.bin with the fully trained parts under LLaVA's names (here tiny_llama's final norm and lm_head,
  "base_model.model."-prefixed, values in io.safetensors as `norm` and `lm_head`).
  (PEFT writes target_modules from a set: their order in adapter_config.json can differ between runs.)
- io.safetensors: `logits` of the adapted model (float64 computation of the float32 weights) on tiny_llama's
  input_ids / attention_mask, and `base_logits` of the base model alone.

  python3 scripts/make_lora_fixture.py llava   # writes only tests/fixtures/lora/llava_peft/ and llava_io.safetensors

- llava_peft/: PeftModel.save_pretrained of a LoraConfig(r=2, lora_alpha=4, lora_dropout=0) on transformers'
  LlavaForConditionalGeneration (tests/fixtures/tiny_llava/hf), target_modules the *string*
  r'.*language_model.*\.(q_proj|v_proj|down_proj)' (PEFT re.fullmatch'es it: only the LLM's Linear layers, not CLIP's
  q/v_proj) and modules_to_save=['multi_modal_projector'] (PEFT saves the trained copy under the module's own names,
  base_model.model.model.multi_modal_projector.linear_{1,2}.*); lora_A / lora_B ~ N(0, 0.2^2), the projector copy
  moved by N(0, 0.05^2) (seeded), so both change the logits. Tensor names as PEFT sees transformers 5.x in memory:
  base_model.model.model.language_model.layers.N.self_attn.q_proj.lora_A.weight.
- llava_io.safetensors: `logits` of that adapted model and `base_logits` of tiny_llava alone (float64 computation),
  on tiny_llava/io.safetensors' input_ids / attention_mask / pixel_values.
"""
import os
import shutil

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
    adapter_dir = os.path.join(OUT, 'peft_adapter')
    bin_dir = os.path.join(OUT, 'peft_adapter_bin')
    os.makedirs(bin_dir, exist_ok=True)
    shutil.copy(os.path.join(adapter_dir, 'adapter_config.json'), bin_dir)
    torch.save(load_file(os.path.join(adapter_dir, 'adapter_model.safetensors')), os.path.join(bin_dir, 'adapter_model.bin'))
    norm = 1 + 0.1 * torch.randn(base.config.hidden_size, generator=g)
    head = 0.3 * torch.randn(base.config.vocab_size, base.config.hidden_size, generator=g)
    torch.save({'base_model.model.model.norm.weight': norm, 'base_model.model.lm_head.weight': head}, os.path.join(bin_dir, 'non_lora_trainables.bin'))
    m64 = model.double()
    with torch.no_grad():
        logits = m64(input_ids=ids, attention_mask=mask).logits
        with m64.disable_adapter():
            base_logits = m64(input_ids=ids, attention_mask=mask).logits
    save_file({'logits': logits.float().contiguous(), 'base_logits': base_logits.float().contiguous(), 'norm': norm, 'lm_head': head}, os.path.join(OUT, 'io.safetensors'))


LLAVA_TARGETS = r'.*language_model.*\.(q_proj|v_proj|down_proj)'


def main_llava():
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_fixtures import exact_float64
    from transformers import LlavaForConditionalGeneration
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    hf = os.path.join(ROOT, 'tiny_llava', 'hf')
    io = load_file(os.path.join(ROOT, 'tiny_llava', 'io.safetensors'))
    ids, mask, pix = io['input_ids'].long(), io['attention_mask'].long(), io['pixel_values']
    base = LlavaForConditionalGeneration.from_pretrained(hf, attn_implementation='eager', dtype=torch.float32).eval()
    cfg = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, bias='none', target_modules=LLAVA_TARGETS, modules_to_save=['multi_modal_projector'])
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if 'lora_' in n:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif 'modules_to_save.default' in n:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    wrapped = sorted({n.split('.lora_')[0] for n, _ in model.named_parameters() if '.lora_' in n})
    assert len(wrapped) == 2 * 3 and all('.language_model.layers.' in n for n in wrapped), wrapped
    model.eval()
    out = os.path.join(OUT, 'llava_peft')
    shutil.rmtree(out, ignore_errors=True)
    model.peft_config['default'].base_model_name_or_path = 'tests/fixtures/tiny_llava/hf'  # not this machine's path
    model.save_pretrained(out)
    os.remove(os.path.join(out, 'README.md'))  # PEFT's model-card stub
    m64 = model.double()
    with torch.no_grad(), exact_float64():
        logits = m64(input_ids=ids, attention_mask=mask, pixel_values=pix.double(), use_cache=False).logits
        with m64.disable_adapter():
            base_logits = m64(input_ids=ids, attention_mask=mask, pixel_values=pix.double(), use_cache=False).logits
    m = mask.bool()
    print('llava_peft: adapted vs base logits (non-padded rows): %.2e' % ((logits[m] - base_logits[m]).norm() / base_logits[m].norm()).item())
    save_file({'logits': logits.float().contiguous(), 'base_logits': base_logits.float().contiguous()}, os.path.join(OUT, 'llava_io.safetensors'), metadata={'format': 'pt'})
    for d, _, fs in os.walk(out):
        for f in sorted(fs):
            print(f'  {os.path.join(d, f)} {os.path.getsize(os.path.join(d, f))} bytes')
    print(f'  {os.path.join(OUT, "llava_io.safetensors")} {os.path.getsize(os.path.join(OUT, "llava_io.safetensors"))} bytes')


if __name__ == '__main__':
    import sys
    main_llava() if sys.argv[1:] == ['llava'] else main()
