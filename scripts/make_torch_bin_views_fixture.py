"""Views in torch.save files for src/io/torch_bin.ts (tests/io/torch_bin_views.test.ts), made with torch.save.

  python3 scripts/make_torch_bin_views_fixture.py     # torch (CPU); deterministic; writes tests/fixtures/torch_bin_views/

- views.bin: strided views of every element size (transposed float16 / bfloat16 / float32 / float64 / int64 matrices, a
  permuted 3-d tensor, a strided slice with a storage offset), a small stride-0 expand (torch.arange(3.).expand(4, 3)),
  and 'junk' = torch.zeros(1).expand(20000, 20000): 1.6 KB on disk, a view that torch.load keeps without allocating
  (a reader that copies it takes 1.6 GB). expected.json holds every tensor's shape and values (float64 / int) except
  junk's.
"""
import collections
import json
import os

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'torch_bin_views')


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 5, generator=g)
    state = collections.OrderedDict()
    state['f32_t'] = m.t()
    state['f16_t'] = m.to(torch.float16).t()
    state['bf16_t'] = m.to(torch.bfloat16).t()
    state['f64_t'] = m.to(torch.float64).t()
    state['i64_t'] = torch.arange(-7, 8, dtype=torch.int64).reshape(3, 5).t()
    state['permuted'] = torch.randn(2, 3, 4, generator=g).permute(2, 0, 1)
    state['sliced'] = torch.randn(6, 7, generator=g)[1:5:2, 2:7:3]
    state['repeat'] = torch.arange(3.0).expand(4, 3)
    state['junk'] = torch.zeros(1).expand(20000, 20000)
    torch.save(state, os.path.join(OUT, 'views.bin'))
    expected = {k: {'shape': list(v.shape), 'stride': list(v.stride()),
                    'values': v.to(torch.float64 if v.is_floating_point() else torch.int64).flatten().tolist()}
                for k, v in state.items() if k != 'junk'}
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(expected, f)


if __name__ == '__main__':
    main()
