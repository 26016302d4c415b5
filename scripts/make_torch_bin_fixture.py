"""Fixtures of PyTorch's own checkpoint format for src/io/torch_bin.ts (tests/io/torch_bin.test.ts), made with torch.save.

  python3 scripts/make_torch_bin_fixture.py     # torch (CPU); deterministic; writes tests/fixtures/torch_bin/

- state.bin: an OrderedDict state dict in torch.save's zip format with float32 / float16 / bfloat16 / float64 / int64 /
  bool tensors, a transposed view and a row of another tensor (both share that tensor's storage: strides and a
  storage offset), an nn.Parameter, a 0-dim and an empty tensor, and a non-tensor entry; expected.json holds every
  tensor's shape and values as float64 / int (bool as 0/1) of the same tensors.
- legacy.bin: a state dict in the pre-1.6 (non-zip) format, which the reader refuses by name.
- evil.bin: a torch.save file whose pickle calls os.system to create /tmp/vwlmm-evil-pickle-ran when unpickled by
  Python (torch.load(weights_only=False)); the reader must refuse the global without running anything.
- tiny_llama_bin/: the weights of tests/fixtures/tiny_llama as HF writes .bin checkpoints: two float32 shards
  pytorch_model-0000{1,2}-of-00002.bin plus pytorch_model.bin.index.json, and config.json.
"""
import collections
import json
import os
import shutil

import torch
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures')
OUT = os.path.join(ROOT, 'torch_bin')


class Evil:
    def __reduce__(self):
        return (os.system, ('touch /tmp/vwlmm-evil-pickle-ran',))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 4, generator=g)
    state = collections.OrderedDict()
    state['f32'] = torch.randn(2, 3, generator=g)
    state['f16'] = torch.tensor([0.5, -1.25, 65504.0, 6e-8, float('inf')], dtype=torch.float16)
    state['bf16'] = torch.randn(2, 2, generator=g).to(torch.bfloat16)
    state['f64'] = torch.tensor([1.0 / 3.0, -2.5, 1e-3], dtype=torch.float64)
    state['i64'] = torch.tensor([0, -7, 2 ** 31 - 1, -(2 ** 31)], dtype=torch.int64)
    state['bool'] = torch.tensor([True, False, True])
    state['base'] = base
    state['transposed'] = base.t()          # strides (1, 4): a view of base's storage
    state['row'] = base[1]                  # storage offset 4
    state['param'] = torch.nn.Parameter(torch.randn(3, generator=g))
    state['scalar'] = torch.tensor(2.75)
    state['empty'] = torch.zeros(0, 3)
    state['step'] = 17                      # not a tensor: skipped
    torch.save(state, os.path.join(OUT, 'state.bin'))
    expected = {k: {'shape': list(v.shape), 'values': v.detach().to(torch.float64 if v.is_floating_point() else torch.int64).flatten().tolist()}
                for k, v in state.items() if isinstance(v, torch.Tensor)}
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f, allow_nan=True)
    torch.save({'w': torch.ones(2)}, os.path.join(OUT, 'legacy.bin'), _use_new_zipfile_serialization=False)
    torch.save({'w': torch.zeros(2), 'payload': Evil()}, os.path.join(OUT, 'evil.bin'))

    # tiny_llama's weights as a sharded .bin checkpoint
    llama = os.path.join(ROOT, 'tiny_llama')
    out = os.path.join(OUT, 'tiny_llama_bin')
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(llama, 'config.json'), os.path.join(out, 'config.json'))
    weights = load_file(os.path.join(llama, 'model.safetensors'))
    names = sorted(weights)
    shards = [names[: len(names) // 2], names[len(names) // 2:]]
    weight_map = {}
    for i, part in enumerate(shards):
        fname = f'pytorch_model-{i + 1:05d}-of-{len(shards):05d}.bin'
        torch.save(collections.OrderedDict((n, weights[n]) for n in part), os.path.join(out, fname))
        weight_map.update({n: fname for n in part})
    with open(os.path.join(out, 'pytorch_model.bin.index.json'), 'w') as f:
        json.dump({'metadata': {'total_size': sum(w.numel() * 4 for w in weights.values())}, 'weight_map': weight_map}, f, indent=2)


if __name__ == '__main__':
    main()
